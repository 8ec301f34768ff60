//! `ucbridge-bench --scenario directory-sync`: full snapshot refresh, first sync (all
//! creates), no-op resyncs, and the time from a change on CUCM to the snapshot with the
//! keeper polling every 500 ms; against a lab in a child process.
//!
//! Every phase reports its own time and its own peak RSS: the high-water mark is reset
//! before it (`/proc/self/clear_refs`), so a phase's figure is not the peak of an earlier
//! one. `--phases refresh` stops after the full refresh (a 200k first sync is slow).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use ucbridge_axl::AxlClient;
use ucbridge_store::Store;

use crate::args::BenchArgs;
use crate::common::{connect, peak_rss_mib, print_json, reset_peak_rss, rss_mib, start_lab};

/// Which phases `--phases` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Phases {
    /// Refresh, first sync, no-op resync, no-op full comparison, change latency.
    All,
    /// Only the full snapshot refresh.
    Refresh,
}

#[derive(Serialize)]
struct PhaseFigures {
    phase: &'static str,
    seconds: f64,
    /// Peak RSS during this phase alone (None without /proc). Never below the RSS the
    /// phase starts with: memory freed by earlier phases is not always returned to the OS.
    peak_rss_mib: Option<f64>,
    /// RSS when the phase started, to tell what the phase itself added.
    start_rss_mib: Option<f64>,
}

#[derive(Serialize)]
struct SyncReport {
    users: usize,
    database: &'static str,
    page_size: u32,
    refresh_pages: u64,
    phases: Vec<PhaseFigures>,
    change_latency_ms: Vec<u128>,
    /// The whole run's peak (the largest phase, or the start-up before the first).
    client_peak_rss_mib: Option<f64>,
}

/// Phase timing and per-phase peak memory, plus the overall peak.
#[derive(Default)]
struct Meter {
    phases: Vec<PhaseFigures>,
    overall: Option<f64>,
    current: Option<(&'static str, Instant, Option<f64>)>,
}

impl Meter {
    fn note_peak(&mut self, peak: Option<f64>) {
        self.overall = match (self.overall, peak) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    fn start(&mut self, phase: &'static str) {
        // What ran before (start-up, or the previous phase's tail) counts for the overall.
        self.note_peak(peak_rss_mib());
        if !reset_peak_rss() {
            tracing::warn!("cannot reset the peak RSS; per-phase peaks include earlier ones");
        }
        self.current = Some((phase, Instant::now(), rss_mib()));
    }

    fn end(&mut self) -> Duration {
        let Some((phase, started, start_rss_mib)) = self.current.take() else {
            return Duration::ZERO;
        };
        let elapsed = started.elapsed();
        let peak = peak_rss_mib();
        self.note_peak(peak);
        tracing::info!(phase, seconds = elapsed.as_secs_f64(), peak_rss_mib = ?peak, "phase done");
        self.phases.push(PhaseFigures {
            phase,
            seconds: elapsed.as_secs_f64(),
            peak_rss_mib: peak,
            start_rss_mib,
        });
        elapsed
    }
}

pub async fn run(args: BenchArgs) -> Result<()> {
    use ucbridge_sync::{SnapshotKeeper, SnapshotOptions};

    let lab = start_lab(&args).await?;
    let client = connect(&lab).await?;
    let db_dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let (url, database) = match &args.database_url {
        Some(url) => (
            url.clone(),
            if url.starts_with("postgres") {
                "postgresql"
            } else {
                "sqlite"
            },
        ),
        None => (
            format!("sqlite://{}", db_dir.path().join("bench.db").display()),
            "sqlite",
        ),
    };
    let store = Store::open(&url).await?;
    let options = SnapshotOptions {
        poll_interval: Duration::from_millis(500),
        page_size: args.page_size,
        ..SnapshotOptions::default()
    };
    let keeper = SnapshotKeeper::new(client.clone(), store.clone(), options);

    let mut meter = Meter::default();
    meter.start("full refresh");
    let refreshed = keeper.full_refresh(|_| {}).await?;
    meter.end();
    let mut latencies = Vec::new();
    if args.phases == Phases::All {
        sync_phases(&store, args.users, &mut meter).await?;
        meter.start("change latency");
        latencies = change_latency(&keeper, &client, &store).await?;
        meter.end();
    }
    store.close().await;
    drop(lab);
    meter.note_peak(peak_rss_mib());

    let report = SyncReport {
        users: args.users,
        database,
        page_size: args.page_size,
        refresh_pages: refreshed.pages,
        phases: meter.phases,
        change_latency_ms: latencies,
        client_peak_rss_mib: meter.overall,
    };
    if args.json {
        return print_json(&report);
    }
    print_table(&report);
    Ok(())
}

/// First sync (all creates), a no-op resync, and a no-op resync comparing every user
/// (what a changed rule or a `--full` run costs).
async fn sync_phases(store: &Store, users: usize, meter: &mut Meter) -> Result<()> {
    use ucbridge_sync::{run_user_sync, SyncOptions, SyncRules};

    let rules = SyncRules::default().compile()?;
    meter.start("first sync");
    let first = run_user_sync(store, &rules, SyncOptions::default(), |_, _| {}).await?;
    meter.end();
    anyhow::ensure!(
        first.plan.summary().creates as usize == users,
        "first sync created {} users, expected {users}",
        first.plan.summary().creates,
    );
    meter.start("no-op resync");
    let noop = run_user_sync(store, &rules, SyncOptions::default(), |_, _| {}).await?;
    meter.end();
    anyhow::ensure!(noop.plan.changes.is_empty(), "the resync was not a no-op");
    let full = SyncOptions {
        full: true,
        ..SyncOptions::default()
    };
    meter.start("no-op full comparison");
    let compared = run_user_sync(store, &rules, full, |_, _| {}).await?;
    meter.end();
    anyhow::ensure!(
        compared.plan.changes.is_empty(),
        "the full resync was not a no-op"
    );
    Ok(())
}

/// Five users spread over the key space, read from the lab one row each (bounded: loading
/// every snapshot user for a sample would inflate the peak this benchmark reports).
async fn sample_userids(client: &AxlClient) -> Result<Vec<String>> {
    let mut sample = Vec::new();
    for from in ["2", "5", "8", "b", "e"] {
        let query = ucbridge_axl::SqlQuery::new(
            "SELECT FIRST 1 userid FROM enduser WHERE pkid > ? ORDER BY pkid",
        )
        .bind(from);
        let rows = client.execute_sql_query(query).await?;
        if let Some(userid) = rows.first().and_then(|r| r.get("userid")) {
            sample.push(userid.to_owned());
        }
    }
    anyhow::ensure!(!sample.is_empty(), "the lab has no users to change");
    Ok(sample)
}

/// A change on CUCM until it is in the snapshot, with the keeper polling.
async fn change_latency(
    keeper: &ucbridge_sync::SnapshotKeeper,
    client: &AxlClient,
    store: &Store,
) -> Result<Vec<u128>> {
    use ucbridge_axl::{Key, UserUpdate};

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn({
        let keeper = keeper.clone();
        async move {
            keeper
                .run(async {
                    let _ = stop_rx.await;
                })
                .await
        }
    });
    let mut latencies = Vec::new();
    for (i, userid) in sample_userids(client).await?.iter().enumerate() {
        let marker = format!("Bench {i}");
        let t = Instant::now();
        client
            .update_user(
                Key::Name(userid),
                &UserUpdate {
                    department: Some(marker.clone()),
                    ..UserUpdate::default()
                },
            )
            .await?;
        loop {
            let seen = store.source_user(userid).await?;
            if seen.and_then(|u| u.department).as_deref() == Some(marker.as_str()) {
                break;
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(60),
                "change never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        latencies.push(t.elapsed().as_millis());
    }
    let _ = stop_tx.send(());
    runner.await.ok();
    Ok(latencies)
}

fn print_table(report: &SyncReport) {
    let mib = |m: Option<f64>| {
        m.map_or_else(
            || "unknown (no /proc)".to_owned(),
            |m| format!("{m:.1} MiB"),
        )
    };
    println!(
        "directory sync benchmark against the lab over HTTPS ({})",
        report.database
    );
    println!("  users                         : {}", report.users);
    println!(
        "  refresh pages                 : {} ({} rows each)",
        report.refresh_pages, report.page_size
    );
    for p in &report.phases {
        println!(
            "  {:<30}: {:>8.2} s, peak RSS {} (from {})",
            p.phase,
            p.seconds,
            mib(p.peak_rss_mib),
            mib(p.start_rss_mib)
        );
    }
    if !report.change_latency_ms.is_empty() {
        println!(
            "  CUCM change -> snapshot (ms)  : {:?}",
            report.change_latency_ms
        );
    }
    println!(
        "  peak RSS, whole run           : {}",
        mib(report.client_peak_rss_mib)
    );
}
