//! `ucbridge-bench --scenario directory-sync`: full snapshot refresh, first sync (all
//! creates), no-op resyncs, and the time from a change on CUCM to the snapshot with the
//! keeper polling every 500 ms; against a lab in a child process.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::args::BenchArgs;
use crate::common::{connect, peak_rss_mib, print_json, start_lab};

#[derive(Serialize)]
struct SyncReport {
    users: usize,
    database: &'static str,
    full_refresh_seconds: f64,
    first_sync_seconds: f64,
    noop_resync_seconds: f64,
    noop_full_comparison_seconds: f64,
    change_latency_ms: Vec<u128>,
    client_peak_rss_mib: Option<f64>,
}

pub async fn run(args: BenchArgs) -> Result<()> {
    use ucbridge_axl::{Key, UserUpdate};
    use ucbridge_store::{Store, SOURCE_CUCM};
    use ucbridge_sync::{run_user_sync, SnapshotKeeper, SnapshotOptions, SyncOptions, SyncRules};

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
        ..SnapshotOptions::default()
    };
    let keeper = SnapshotKeeper::new(client.clone(), store.clone(), options);
    let rules = SyncRules::default().compile()?;

    let t = Instant::now();
    keeper.full_refresh(|_| {}).await?;
    let full_refresh = t.elapsed();
    tracing::info!(peak_rss_mib = ?peak_rss_mib(), "after the full refresh");
    let t = Instant::now();
    let first = run_user_sync(&store, &rules, SyncOptions::default(), |_, _| {}).await?;
    let first_sync = t.elapsed();
    tracing::info!(peak_rss_mib = ?peak_rss_mib(), "after the first sync");
    anyhow::ensure!(
        first.plan.summary().creates as usize == args.users,
        "first sync created {} users, expected {}",
        first.plan.summary().creates,
        args.users
    );
    let t = Instant::now();
    let noop = run_user_sync(&store, &rules, SyncOptions::default(), |_, _| {}).await?;
    let noop_sync = t.elapsed();
    anyhow::ensure!(noop.plan.changes.is_empty(), "the resync was not a no-op");
    // The same with every user compared (what a changed rule or a --full run costs).
    let t = Instant::now();
    let full = SyncOptions {
        full: true,
        ..SyncOptions::default()
    };
    let compared = run_user_sync(&store, &rules, full, |_, _| {}).await?;
    let noop_full = t.elapsed();
    anyhow::ensure!(
        compared.plan.changes.is_empty(),
        "the full resync was not a no-op"
    );

    // Change latency: a change on CUCM until it is in the snapshot, with the keeper polling.
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
    let sample: Vec<String> = store
        .source_users()
        .await?
        .into_iter()
        .step_by((args.users / 5).max(1))
        .take(5)
        .map(|u| u.userid)
        .collect();
    let mut latencies = Vec::new();
    for (i, userid) in sample.iter().enumerate() {
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
    let state = store.snapshot_state(SOURCE_CUCM).await?;
    tracing::debug!(?state, "final snapshot state");
    store.close().await;
    drop(lab);

    let report = SyncReport {
        users: args.users,
        database,
        full_refresh_seconds: full_refresh.as_secs_f64(),
        first_sync_seconds: first_sync.as_secs_f64(),
        noop_resync_seconds: noop_sync.as_secs_f64(),
        noop_full_comparison_seconds: noop_full.as_secs_f64(),
        change_latency_ms: latencies,
        client_peak_rss_mib: peak_rss_mib(),
    };
    if args.json {
        return print_json(&report);
    }
    println!("directory sync benchmark against the lab over HTTPS ({database})");
    println!("  users                         : {}", report.users);
    println!(
        "  full snapshot refresh         : {:.2} s",
        report.full_refresh_seconds
    );
    println!(
        "  first sync (all creates)      : {:.2} s",
        report.first_sync_seconds
    );
    println!(
        "  no-op resync                  : {:.2} s",
        report.noop_resync_seconds
    );
    println!(
        "  CUCM change -> snapshot (ms)  : {:?}",
        report.change_latency_ms
    );
    match report.client_peak_rss_mib {
        Some(m) => println!("  peak RSS                      : {m:.1} MiB"),
        None => println!("  peak RSS                      : unknown (no /proc)"),
    }
    Ok(())
}
