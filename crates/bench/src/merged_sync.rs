//! `ucbridge-bench --scenario merged-sync`: user sync over three directory sources, as in
//! scenario 1 of seed 004 — Active Directory (here slapd) is primary for names and mail,
//! the CUCM clusters add the primary extension and the devices.
//!
//! - `east` and `west`: two CUCM clusters of `--users / 2` end users each, two labs in
//!   child processes (seeds 1 and 2: other pkids and mostly other userids), kept as
//!   `kind = "cucm"` sources.
//! - `corp`: an LDAP source of `--users` entries in a throwaway slapd holding the same
//!   people: one entry per distinct userid of the two clusters (read back from their
//!   snapshots, so the key matches whatever the lab generated), padded with people that
//!   only the directory knows. The lab draws userids from one pool of names whatever the
//!   seed, so some userids are on both clusters (15% at 2 x 50k): one person with an entry
//!   in each, counted in the report.
//! - Rules: `sources = ["corp", "east", "west"]`, key userid ↔ username, the clusters
//!   supplying only `primary_extension` and `associated_devices`.
//!
//! Timed, each with its own peak RSS (the high-water mark is reset before each phase):
//! each source's full refresh, the first merged sync (all creates), a no-op merged sync
//! and a full merged comparison. Loading slapd is the benchmark's own work and is shown
//! apart.

use std::collections::{BTreeMap, HashSet};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use ucbridge_auth::Secret;
use ucbridge_store::Store;
use ucbridge_sync::{
    run_user_sync, LdapSource, LdapSourceSettings, SnapshotKeeper, SnapshotOptions, SyncOptions,
    SyncRules,
};
use ucbridge_testkit::slapd::{Slapd, SlapdFeatures, SlapdOptions};

use crate::args::BenchArgs;
use crate::common::{connect, print_json, start_lab_with, ChildLab};
use crate::ldap_source::{add_people, Person, PhasePeak, Phases};

/// Snapshot entries read per page when the directory is built from the clusters.
const PAGE: u32 = 5_000;

#[derive(Serialize)]
struct Report {
    users: usize,
    per_cluster: usize,
    ldap_entries: usize,
    /// Userids both labs generated (one person with an entry on each cluster).
    userids_on_both_clusters: usize,
    creates: u64,
    problems: u64,
    phases: Vec<PhasePeak>,
    /// The highest phase peak of the refreshes and syncs (not the slapd load).
    peak_rss_mib: Option<f64>,
    measured_at_unix: u64,
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let n = args.users;
    let half = n / 2;
    ensure!(half > 0, "--users must be at least 2");
    let features = SlapdFeatures {
        syncprov: true,
        ad_schema: false,
    };
    let Some(slapd) = Slapd::start_with_features(SlapdOptions::default(), features) else {
        bail!("slapd is not installed (Debian packages slapd and ldap-utils)");
    };
    eprintln!("Starting two labs of {half} users each ...");
    let (east_lab, west_lab) = tokio::try_join!(
        start_lab_with(half, 1, args.max_response_bytes),
        start_lab_with(half, 2, args.max_response_bytes)
    )?;
    let (_db_dir, store) = crate::common::open_store(&args).await?;

    let mut phases = Phases::default();
    for (name, lab) in [("east", &east_lab), ("west", &west_lab)] {
        phases.start(if name == "east" {
            "refresh east (CUCM)"
        } else {
            "refresh west (CUCM)"
        });
        refresh_cluster(&store, name, lab, args.page_size).await?;
        phases.end();
    }
    drop((east_lab, west_lab));

    phases.start("load slapd (bench, not a source)");
    let (ldap_entries, on_both) = load_directory(&slapd, &store, n).await?;
    phases.end();

    phases.start("refresh corp (LDAP)");
    let settings = LdapSourceSettings::new(
        slapd.url.clone(),
        slapd.admin_dn(),
        Secret::new(slapd.admin_password()),
        slapd.people_dn(),
    );
    let corp = LdapSource::new("corp", settings, store.clone()).await?;
    let refreshed = corp.full_refresh().await?;
    phases.end();
    ensure!(
        refreshed.swap.total == ldap_entries as u64,
        "corp has {} entries, not {ldap_entries}",
        refreshed.swap.total
    );

    let (creates, problems) = sync_phases(&store, &mut phases).await?;
    store.close().await;
    let report = Report {
        users: n,
        per_cluster: half,
        ldap_entries,
        userids_on_both_clusters: on_both,
        creates,
        problems,
        peak_rss_mib: phases
            .done
            .iter()
            .filter(|p| !p.phase.starts_with("load"))
            .filter_map(|p| p.peak_rss_mib)
            .reduce(f64::max),
        phases: phases.done.clone(),
        measured_at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    if args.json {
        return print_json(&report);
    }
    println!(
        "Merged sync: CUCM east + west ({half} users each, labs in child processes), \
         LDAP corp ({ldap_entries} entries in slapd), SQLite unless --database-url:"
    );
    println!(
        "  first sync: {creates} creates, {problems} problems \
         ({on_both} userids are on both clusters)"
    );
    phases.print();
    if let Some(m) = report.peak_rss_mib {
        println!("  peak RSS of refreshes and syncs: {m:.1} MiB");
    }
    Ok(())
}

/// A full refresh of the cluster `name` into its own snapshot.
async fn refresh_cluster(store: &Store, name: &str, lab: &ChildLab, page_size: u32) -> Result<()> {
    let client = connect(lab).await?;
    let options = SnapshotOptions {
        page_size,
        ..SnapshotOptions::default()
    };
    let keeper = SnapshotKeeper::for_source(client, store.clone(), options, name, None).await?;
    keeper
        .full_refresh(|_| {})
        .await
        .with_context(|| format!("full refresh of {name}"))?;
    Ok(())
}

/// Fill slapd with one entry per distinct userid of the clusters (names and mail as the
/// directory has them), padded to `n` with directory-only people. Returns the number of
/// entries and how many userids both clusters have.
async fn load_directory(slapd: &Slapd, store: &Store, n: usize) -> Result<(usize, usize)> {
    let mut seen: HashSet<String> = HashSet::with_capacity(n);
    let mut on_both = 0;
    for source in ["east", "west"] {
        let mut after: Option<String> = None;
        loop {
            let page = store
                .source_entries_page(source, after.as_deref(), PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.user.uuid.clone());
            let mut people = Vec::with_capacity(page.len());
            for e in &page {
                let u = &e.user;
                if !seen.insert(u.userid.to_lowercase()) {
                    on_both += 1;
                    continue;
                }
                people.push(Person {
                    uid: u.userid.clone(),
                    given_name: u.first_name.clone().unwrap_or_else(|| "Corp".into()),
                    surname: u.last_name.clone().unwrap_or_else(|| u.userid.clone()),
                    mail: format!("{}@corp.example.com", u.userid),
                    telephone: format!("+1 650 555 {:04}", seen.len() % 10_000),
                    title: "Corp directory".into(),
                });
            }
            add_people(slapd, people.into_iter()).await?;
        }
    }
    let from_clusters = seen.len();
    let padding = n.saturating_sub(from_clusters);
    add_people(
        slapd,
        (0..padding).map(|i| {
            let uid = format!("corp.only{i:06}");
            Person {
                mail: format!("{uid}@corp.example.com"),
                uid,
                given_name: "Corp".into(),
                surname: format!("Only{i}"),
                telephone: format!("+1 650 556 {:04}", i % 10_000),
                title: "Corp directory".into(),
            }
        }),
    )
    .await?;
    Ok((from_clusters + padding, on_both))
}

/// The first merged sync (all creates), a no-op one and a full comparison; returns the
/// first run's creates and problems.
async fn sync_phases(store: &Store, phases: &mut Phases) -> Result<(u64, u64)> {
    let cluster_fields = vec![
        "primary_extension".to_owned(),
        "associated_devices".to_owned(),
    ];
    let rules = SyncRules {
        sources: vec!["corp".into(), "east".into(), "west".into()],
        source_fields: BTreeMap::from([
            ("east".to_owned(), cluster_fields.clone()),
            ("west".to_owned(), cluster_fields),
        ]),
        ..SyncRules::default()
    }
    .compile()?;
    phases.start("first merged sync (creates)");
    let first = run_user_sync(store, &rules, SyncOptions::default(), |_, _| {}).await?;
    phases.end();
    let summary = first.plan.summary();
    ensure!(
        summary.creates > 0,
        "the first merged sync created nobody: {:?} {:?}",
        first.status,
        first.message
    );
    phases.start("no-op merged sync");
    let noop = run_user_sync(store, &rules, SyncOptions::default(), |_, _| {}).await?;
    phases.end();
    ensure!(
        noop.plan.changes.is_empty(),
        "the second merged sync was not a no-op"
    );
    let full = SyncOptions {
        full: true,
        ..SyncOptions::default()
    };
    phases.start("full merged comparison");
    let compared = run_user_sync(store, &rules, full, |_, _| {}).await?;
    phases.end();
    ensure!(
        compared.plan.changes.is_empty(),
        "the full merged comparison found changes"
    );
    Ok((summary.creates, summary.errors))
}
