//! The integration tests of `ucbridge-store`, in one binary so they link once
//! (one module per former test file; run one with `cargo test -p ucbridge-store --test it MODULE::`).

mod backup;
mod both_backends;
mod crash_recovery;
mod devices;
mod ldap_export;
mod server_tables;
mod sign_in;
mod sources;
mod stats;
