//! Rebuild when a migration is added: `sqlx::migrate!` embeds the directories at compile
//! time but does not track new files (sqlx's documented `build.rs` line).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
