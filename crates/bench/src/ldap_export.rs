//! `ucbridge-bench --scenario ldap-export`: export `--users` local users into a throwaway
//! OpenLDAP `slapd` (started on 127.0.0.1 through the test kit, mdb without fsync), then
//! time a no-op incremental export and a no-op re-synchronize.

use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;
use ucbridge_auth::Secret;
use ucbridge_ldap::{ExportMode, LdapExportSettings, LdapExporter};
use ucbridge_store::UserRecord;
use ucbridge_testkit::slapd::Slapd;

use crate::args::BenchArgs;

#[derive(Serialize)]
struct Phase {
    phase: &'static str,
    seconds: f64,
    users_per_second: f64,
    added: u64,
    unchanged: u64,
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let Some(slapd) = Slapd::start() else {
        bail!("slapd is not installed (Debian packages slapd and ldap-utils)");
    };
    let (_db_dir, store) = crate::common::open_store(&args).await?;
    let n = args.users;
    eprintln!("Creating {n} local users ...");
    // One hash for everyone: hashing is not what is measured.
    let hash = ucbridge_sync::password::hash_password("Bench-pass-1")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for i in 0..n {
        let name = format!("user{i:06}");
        store
            .create_local_user(&UserRecord {
                username: name.clone(),
                first_name: Some("Bench".into()),
                last_name: Some(format!("User{i}")),
                email: Some(format!("{name}@example.com")),
                extension: Some((10_000 + i).to_string()),
                source: "local".into(),
                ..UserRecord::default()
            })
            .await?;
        store.set_password_hash(&name, &hash).await?;
    }
    let settings = LdapExportSettings::new(
        slapd.url.clone(),
        slapd.admin_dn(),
        Secret::new(slapd.admin_password()),
        slapd.people_dn(),
    );
    let exporter = LdapExporter::new(settings, store)?;
    let mut phases = Vec::new();
    for (phase, mode) in [
        ("first export", ExportMode::Incremental),
        ("no-op incremental", ExportMode::Incremental),
        ("no-op resynchronize", ExportMode::Resynchronize),
    ] {
        let t = Instant::now();
        let s = exporter.export(mode).await?;
        if s.counts.failed > 0 {
            bail!("{phase}: {} users failed", s.counts.failed);
        }
        let seconds = t.elapsed().as_secs_f64();
        phases.push(Phase {
            phase,
            seconds,
            users_per_second: n as f64 / seconds.max(1e-9),
            added: s.counts.added,
            unchanged: s.counts.unchanged,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&phases)?);
    } else {
        println!("LDAP export of {n} users into a local slapd (mdb, no fsync):");
        for p in &phases {
            println!(
                "  {:<20} {:>7.2} s  {:>7.0} users/s  (added {}, unchanged {})",
                p.phase, p.seconds, p.users_per_second, p.added, p.unchanged
            );
        }
    }
    Ok(())
}
