//! `ucbridge-bench --scenario ldap-source`: an LDAP directory source of `--users` entries
//! in a throwaway OpenLDAP `slapd` (syncprov overlay, mdb without fsync, through the test
//! kit): a full refresh by paged search (RFC 2696, pages of 500), a no-op full refresh,
//! then how long one change takes to reach the snapshot through syncrepl refreshAndPersist
//! (RFC 4533) and through a modifyTimestamp poll. Peak RSS is the benchmark process's.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod};
use serde::Serialize;
use ucbridge_auth::Secret;
use ucbridge_store::Store;
use ucbridge_sync::{LdapSource, LdapSourceSettings};
use ucbridge_testkit::slapd::{Slapd, SlapdFeatures, SlapdOptions};

use crate::args::BenchArgs;
use crate::common::{peak_rss_mib, print_json};

/// Adds in flight while loading the directory (one connection; ldap3 multiplexes).
const LOAD_CONCURRENCY: usize = 16;

#[derive(Serialize)]
struct Report {
    entries: usize,
    load_seconds: f64,
    full_refresh_seconds: f64,
    entries_per_second: f64,
    noop_refresh_seconds: f64,
    syncrepl_change_ms: f64,
    poll_change_ms: f64,
    peak_rss_mib: Option<f64>,
}

async fn admin(slapd: &Slapd) -> Result<Ldap> {
    let (driver, mut ldap) =
        LdapConnAsync::with_settings(LdapConnSettings::new(), &slapd.url).await?;
    ldap3::drive!(driver);
    ldap.simple_bind(slapd.admin_dn(), slapd.admin_password())
        .await?
        .success()?;
    Ok(ldap)
}

async fn load(slapd: &Slapd, n: usize) -> Result<()> {
    use futures::StreamExt;
    let ldap = admin(slapd).await?;
    let people = slapd.people_dn();
    let mut adds = futures::stream::iter(0..n)
        .map(|i| {
            let mut ldap = ldap.clone();
            async move {
                let uid = format!("user{i:06}");
                let one = |v: String| HashSet::from([v]);
                let attrs = vec![
                    ("objectClass".to_owned(), one("inetOrgPerson".into())),
                    ("uid".to_owned(), one(uid.clone())),
                    ("cn".to_owned(), one(format!("Bench User {i}"))),
                    ("sn".to_owned(), one(format!("User{i}"))),
                    ("givenName".to_owned(), one("Bench".into())),
                    ("mail".to_owned(), one(format!("{uid}@example.com"))),
                    (
                        "telephoneNumber".to_owned(),
                        one(format!("+1 555 {:06}", i)),
                    ),
                    ("title".to_owned(), one("Engineer".into())),
                ];
                ldap.add(&format!("uid={uid},{people}"), attrs)
                    .await?
                    .success()
                    .map(|_| ())
            }
        })
        .buffer_unordered(LOAD_CONCURRENCY);
    while let Some(r) = adds.next().await {
        r.context("adding an entry")?;
    }
    Ok(())
}

/// Time until `check` holds, polling the store every 10 ms, at most 60 s.
async fn until(store: &Store, uid: &str, title: &str) -> Result<f64> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        let e = store.source_entries_by_userid("bench", uid).await?;
        if e.first().and_then(|e| e.user.title.as_deref()) == Some(title) {
            return Ok(t.elapsed().as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the change of {uid} did not arrive within 60 s")
}

async fn retitle(ldap: &mut Ldap, people: &str, uid: &str, title: &str) -> Result<()> {
    let value: HashSet<&str> = HashSet::from([title]);
    ldap.modify(
        &format!("uid={uid},{people}"),
        vec![Mod::Replace("title", value)],
    )
    .await?
    .success()?;
    Ok(())
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let features = SlapdFeatures {
        syncprov: true,
        ad_schema: false,
    };
    let Some(slapd) = Slapd::start_with_features(SlapdOptions::default(), features) else {
        bail!("slapd is not installed (Debian packages slapd and ldap-utils)");
    };
    let dir = tempfile::tempdir()?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let store = Store::open(&url)
        .await
        .context("cannot open the benchmark database")?;
    let n = args.users;
    eprintln!("Loading {n} entries into slapd ...");
    let t = Instant::now();
    load(&slapd, n).await?;
    let load_seconds = t.elapsed().as_secs_f64();
    let settings = LdapSourceSettings::new(
        slapd.url.clone(),
        slapd.admin_dn(),
        Secret::new(slapd.admin_password()),
        slapd.people_dn(),
    );
    let source = LdapSource::new("bench", settings, store.clone()).await?;
    let t = Instant::now();
    let first = source.full_refresh().await?;
    let full_refresh_seconds = t.elapsed().as_secs_f64();
    if first.swap.total != n as u64 {
        bail!("the snapshot has {} entries, not {n}", first.swap.total);
    }
    let t = Instant::now();
    source.full_refresh().await?;
    let noop_refresh_seconds = t.elapsed().as_secs_f64();

    let mut ldap = admin(&slapd).await?;
    let people = slapd.people_dn();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = {
        let source = source.clone();
        tokio::spawn(async move {
            source
                .follow(async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    // The refresh phase of a new session re-sends every entry; wait for the cookie.
    let t = Instant::now();
    while store.snapshot_state("bench").await?.sync_cookie.is_none() {
        if t.elapsed() > Duration::from_secs(120) {
            bail!("syncrepl did not finish its refresh phase within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    retitle(&mut ldap, people, "user000001", "Followed").await?;
    let syncrepl_change_ms = until(&store, "user000001", "Followed").await?;
    let _ = stop.send(());
    follower.await??;
    retitle(&mut ldap, people, "user000002", "Polled").await?;
    let t = Instant::now();
    source.poll_changes().await?;
    let poll_change_ms = t.elapsed().as_secs_f64() * 1000.0;
    until(&store, "user000002", "Polled").await?;
    let report = Report {
        entries: n,
        load_seconds,
        full_refresh_seconds,
        entries_per_second: n as f64 / full_refresh_seconds.max(1e-9),
        noop_refresh_seconds,
        syncrepl_change_ms,
        poll_change_ms,
        peak_rss_mib: peak_rss_mib(),
    };
    if args.json {
        return print_json(&report);
    }
    println!("LDAP source of {n} entries in a local slapd (syncprov, mdb, no fsync):");
    println!(
        "  full refresh (paged, 500/page) : {full_refresh_seconds:>8.2} s  ({:.0} entries/s)",
        report.entries_per_second
    );
    println!("  no-op full refresh             : {noop_refresh_seconds:>8.2} s");
    println!("  change -> snapshot, syncrepl   : {syncrepl_change_ms:>8.0} ms");
    println!("  change -> snapshot, one poll   : {poll_change_ms:>8.0} ms");
    match report.peak_rss_mib {
        Some(m) => println!("  peak RSS                       : {m:>8.1} MiB"),
        None => println!("  peak RSS                       : unknown (no /proc)"),
    }
    Ok(())
}
