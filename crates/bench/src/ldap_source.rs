//! `ucbridge-bench --scenario ldap-source`: an LDAP directory source of `--users` entries
//! in a throwaway OpenLDAP `slapd` (syncprov overlay, mdb without fsync, through the test
//! kit): a full refresh by paged search (RFC 2696, pages of 500), a no-op full refresh,
//! then how long one change takes to reach the snapshot through syncrepl refreshAndPersist
//! (RFC 4533) and through a modifyTimestamp poll.
//!
//! Memory is reported per phase: before each phase the process's high-water mark is reset
//! (Linux `clear_refs` 5, see proc(5)) and `VmHWM` is read after it, so loading the
//! directory into slapd — the benchmark's own work, not the source's — is shown apart from
//! the refresh, the no-op refresh and syncrepl.

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
use crate::common::{peak_rss_mib, print_json, reset_peak_rss};

/// Adds in flight while loading the directory (one connection; ldap3 multiplexes).
const LOAD_CONCURRENCY: usize = 16;

#[derive(Serialize)]
struct Report {
    entries: usize,
    load_seconds: f64,
    full_refresh_seconds: f64,
    entries_per_second: f64,
    noop_refresh_seconds: f64,
    syncrepl_refresh_phase_seconds: f64,
    syncrepl_change_ms: f64,
    poll_change_ms: f64,
    /// Changes made while no session ran, more than slapd's session log keeps.
    resume_changes: usize,
    /// The refresh phase of the session resuming after them (slapd's present phase).
    resume_refresh_phase_seconds: f64,
    /// Peak RSS of each phase (MiB), in order; the load into slapd is the first.
    phases: Vec<PhasePeak>,
    /// The highest phase peak after the load: what the source itself needs.
    source_peak_rss_mib: Option<f64>,
}

/// The memory of one phase: resident before it, and its own high-water mark.
#[derive(Serialize, Clone, Debug)]
pub(crate) struct PhasePeak {
    pub phase: &'static str,
    pub seconds: f64,
    pub rss_before_mib: Option<f64>,
    pub peak_rss_mib: Option<f64>,
}

/// Resident memory now (`VmRSS`), in MiB.
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Times phases and their peak memory: [`Phases::start`] resets the high-water mark
/// (writing 5 to `/proc/self/clear_refs` makes `VmHWM` the current RSS, proc(5)).
#[derive(Default)]
pub(crate) struct Phases {
    pub done: Vec<PhasePeak>,
    current: Option<(&'static str, Instant, Option<f64>)>,
}

impl Phases {
    pub fn start(&mut self, phase: &'static str) {
        self.end();
        if !reset_peak_rss() {
            tracing::warn!("cannot reset the peak RSS; per-phase peaks include earlier ones");
        }
        self.current = Some((phase, Instant::now(), rss_mib()));
    }

    /// Ends the running phase; its duration in seconds.
    pub fn end(&mut self) -> f64 {
        let Some((phase, t, before)) = self.current.take() else {
            return 0.0;
        };
        let seconds = t.elapsed().as_secs_f64();
        self.done.push(PhasePeak {
            phase,
            seconds,
            rss_before_mib: before,
            peak_rss_mib: peak_rss_mib(),
        });
        seconds
    }

    /// The highest peak of the phases after the first `skip`.
    pub fn peak_after(&self, skip: usize) -> Option<f64> {
        self.done
            .iter()
            .skip(skip)
            .filter_map(|p| p.peak_rss_mib)
            .reduce(f64::max)
    }

    pub fn print(&self) {
        println!("  per phase (RSS before -> peak during, MiB):");
        for p in &self.done {
            let mib = |m: Option<f64>| m.map_or("?".to_owned(), |m| format!("{m:.1}"));
            println!(
                "    {:<44} {:>8.2} s  {:>7} -> {:>7}",
                p.phase,
                p.seconds,
                mib(p.rss_before_mib),
                mib(p.peak_rss_mib)
            );
        }
    }
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

/// One inetOrgPerson the benchmarks add to slapd.
pub(crate) struct Person {
    pub uid: String,
    pub given_name: String,
    pub surname: String,
    pub mail: String,
    pub telephone: String,
    pub title: String,
}

/// Add `people` under the people DN, [`LOAD_CONCURRENCY`] at a time.
pub(crate) async fn add_people(slapd: &Slapd, people: impl Iterator<Item = Person>) -> Result<()> {
    use futures::StreamExt;
    let ldap = admin(slapd).await?;
    let under = slapd.people_dn();
    let mut adds = futures::stream::iter(people)
        .map(|p| {
            let mut ldap = ldap.clone();
            async move {
                let one = |v: String| HashSet::from([v]);
                let dn = format!("uid={},{under}", p.uid);
                let attrs = vec![
                    ("objectClass".to_owned(), one("inetOrgPerson".into())),
                    (
                        "cn".to_owned(),
                        one(format!("{} {}", p.given_name, p.surname)),
                    ),
                    ("uid".to_owned(), one(p.uid)),
                    ("sn".to_owned(), one(p.surname)),
                    ("givenName".to_owned(), one(p.given_name)),
                    ("mail".to_owned(), one(p.mail)),
                    ("telephoneNumber".to_owned(), one(p.telephone)),
                    ("title".to_owned(), one(p.title)),
                ];
                ldap.add(&dn, attrs).await?.success().map(|_| ())
            }
        })
        .buffer_unordered(LOAD_CONCURRENCY);
    while let Some(r) = adds.next().await {
        r.context("adding an entry")?;
    }
    Ok(())
}

async fn load(slapd: &Slapd, n: usize) -> Result<()> {
    add_people(
        slapd,
        (0..n).map(|i| {
            let uid = format!("user{i:06}");
            Person {
                mail: format!("{uid}@example.com"),
                uid,
                given_name: "Bench".into(),
                surname: format!("User{i}"),
                telephone: format!("+1 555 {i:06}"),
                title: "Engineer".into(),
            }
        }),
    )
    .await
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

/// Changes made while no session runs: more than the test kit's `syncprov-sessionlog 1000`,
/// so the next session's refresh phase is slapd's present phase (RFC 4533 §3.3.1): the
/// changed entries in full and every other entry as a bare "present" message.
const RESUME_CHANGES: usize = 2_000;

/// Change [`RESUME_CHANGES`] entries with no session running, then time a session's
/// refresh phase (and its memory). Returns the changes made and that time.
async fn resume_after_many(
    source: &LdapSource,
    slapd: &Slapd,
    phases: &mut Phases,
    n: usize,
) -> Result<(usize, f64)> {
    use futures::StreamExt;
    let changes = RESUME_CHANGES.min(n);
    let ldap = admin(slapd).await?;
    let people = slapd.people_dn();
    let mut mods = futures::stream::iter(0..changes)
        .map(|i| {
            let mut ldap = ldap.clone();
            async move {
                let uid = format!("user{:06}", i * (n / changes));
                retitle(&mut ldap, people, &uid, "Resumed").await
            }
        })
        .buffer_unordered(LOAD_CONCURRENCY);
    while let Some(r) = mods.next().await {
        r?;
    }
    phases.start("syncrepl: resume after 2000 changes");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tell, persisting) = tokio::sync::oneshot::channel::<()>();
    let follower = {
        let source = source.clone();
        tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            source.follow_and_tell(stopped, Some(tell)).await
        })
    };
    let ready = tokio::time::timeout(Duration::from_secs(300), persisting).await;
    let seconds = phases.end();
    let _ = stop.send(());
    let report = follower.await??;
    match ready {
        Ok(Ok(())) => {}
        _ => bail!("the resumed session did not end its refresh phase"),
    }
    if (report.entries_seen as usize) < changes {
        bail!(
            "the resumed session saw {} changed entries, not {changes}",
            report.entries_seen
        );
    }
    Ok((changes, seconds))
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let features = SlapdFeatures {
        syncprov: true,
        ad_schema: false,
    };
    let Some(slapd) = Slapd::start_with_features(SlapdOptions::default(), features) else {
        bail!("slapd is not installed (Debian packages slapd and ldap-utils)");
    };
    let (_db_dir, store) = crate::common::open_store(&args).await?;
    let n = args.users;
    eprintln!("Loading {n} entries into slapd ...");
    let mut phases = Phases::default();
    phases.start("load into slapd (bench, not source)");
    load(&slapd, n).await?;
    let load_seconds = phases.end();
    let settings = LdapSourceSettings::new(
        slapd.url.clone(),
        slapd.admin_dn(),
        Secret::new(slapd.admin_password()),
        slapd.people_dn(),
    );
    let source = LdapSource::new("bench", settings, store.clone()).await?;
    phases.start("full refresh");
    let first = source.full_refresh().await?;
    let full_refresh_seconds = phases.end();
    if first.swap.total != n as u64 {
        bail!("the snapshot has {} entries, not {n}", first.swap.total);
    }
    phases.start("no-op full refresh");
    source.full_refresh().await?;
    let noop_refresh_seconds = phases.end();

    let mut ldap = admin(&slapd).await?;
    let people = slapd.people_dn();
    phases.start("syncrepl: session start (refresh phase)");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tell, persisting) = tokio::sync::oneshot::channel::<()>();
    let mut follower = {
        let source = source.clone();
        tokio::spawn(async move {
            source
                .follow_and_tell(
                    async {
                        let _ = stopped.await;
                    },
                    Some(tell),
                )
                .await
        })
    };
    // The session persists once its refresh phase (the changes since the refresh's
    // cookie) is applied.
    tokio::select! {
        r = persisting => if r.is_err() {
            (&mut follower).await??;
            bail!("syncrepl ended during its refresh phase");
        },
        r = &mut follower => {
            r??;
            bail!("syncrepl ended during its refresh phase");
        }
        _ = tokio::time::sleep(Duration::from_secs(120)) => {
            bail!("syncrepl did not finish its refresh phase within 120 s");
        }
    }
    let syncrepl_refresh_phase_seconds = phases.end();
    phases.start("syncrepl: one change");
    retitle(&mut ldap, people, "user000001", "Followed").await?;
    let syncrepl_change_ms = until(&store, "user000001", "Followed").await?;
    let _ = stop.send(());
    follower.await??;
    phases.start("poll: one change");
    retitle(&mut ldap, people, "user000002", "Polled").await?;
    let t = Instant::now();
    source.poll_changes().await?;
    let poll_change_ms = t.elapsed().as_secs_f64() * 1000.0;
    until(&store, "user000002", "Polled").await?;
    phases.end();
    let resumed = resume_after_many(&source, &slapd, &mut phases, n).await?;
    let report = Report {
        entries: n,
        load_seconds,
        full_refresh_seconds,
        entries_per_second: n as f64 / full_refresh_seconds.max(1e-9),
        noop_refresh_seconds,
        syncrepl_refresh_phase_seconds,
        syncrepl_change_ms,
        poll_change_ms,
        resume_changes: resumed.0,
        resume_refresh_phase_seconds: resumed.1,
        phases: phases.done.clone(),
        source_peak_rss_mib: phases.peak_after(1),
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
    println!("  syncrepl session start         : {syncrepl_refresh_phase_seconds:>8.2} s");
    println!("  change -> snapshot, syncrepl   : {syncrepl_change_ms:>8.0} ms");
    println!("  change -> snapshot, one poll   : {poll_change_ms:>8.0} ms");
    println!(
        "  resume after {} changes       : {:>8.2} s  (present phase)",
        report.resume_changes, report.resume_refresh_phase_seconds
    );
    phases.print();
    Ok(())
}
