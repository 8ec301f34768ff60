//! `ucbridge bench`: list every user of a seeded lab and report throughput and memory.
//!
//! The lab runs as a child process (`ucbridge lab`) so that the peak memory reported is the
//! client's alone, and the client talks to it over real HTTPS as it would to a CUCM.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use ucbridge_axl::{AxlClient, AxlConfig, AxlError, ListOptions, UserSearch, UserTag};

#[derive(Args)]
pub struct BenchArgs {
    /// Users seeded in the lab and listed.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) users: usize,
    /// Rows per listUser request.
    #[arg(long, default_value_t = 1000)]
    page_size: u32,
    /// Lab response-size cap; lower it to exercise page shrinking.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    max_response_bytes: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// What to measure: listing users, or directory sync (refresh + sync + change latency).
    #[arg(long, value_enum, default_value_t = Scenario::List)]
    scenario: Scenario,
    /// api-load: concurrent connections of the load generator.
    #[arg(long, default_value_t = 16)]
    pub(crate) connections: usize,
    /// voicemail: mailboxes synced (each with --messages messages).
    #[arg(long, default_value_t = 1000)]
    pub(crate) mailboxes: usize,
    /// voicemail: messages per mailbox (inbox + one sent + one deleted).
    #[arg(long, default_value_t = 20)]
    pub(crate) messages: usize,
    /// Database for the directory-sync scenario (default: a temporary SQLite file).
    #[arg(long, env = "UCBRIDGE_BENCH_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    List,
    DirectorySync,
    /// Load on the server's status endpoint while it refreshes and syncs the lab's users.
    ApiLoad,
    /// Voicemail sync: initial sync of many mailboxes into Dovecot, CUC -> IMAP latency.
    Voicemail,
    /// LDAP export of `--users` local users into a throwaway slapd.
    LdapExport,
}

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

#[derive(Serialize)]
struct Report {
    users_seeded: usize,
    users_listed: u64,
    pages: u64,
    final_page_size: u32,
    axl_requests: u64,
    page_shrinks: u64,
    lab_start_seconds: f64,
    list_seconds: f64,
    users_per_second: f64,
    client_peak_rss_mib: Option<f64>,
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A lab in a child process: its AXL URL and the path of its CA.
pub(crate) struct ChildLab {
    _child: tokio::process::Child,
    pub(crate) url: String,
    pub(crate) ca_path: std::path::PathBuf,
    pub(crate) started: Duration,
    _dir: tempfile::TempDir,
}

pub(crate) async fn start_lab(args: &BenchArgs) -> Result<ChildLab> {
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let ca_path = dir.path().join("lab-ca.pem");
    let exe = std::env::current_exe().context("cannot find the ucbridge binary")?;
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args(["lab", "--bind", "127.0.0.1:0", "--users"])
        .arg(args.users.to_string())
        .arg("--max-response-bytes")
        .arg(args.max_response_bytes.to_string())
        .arg("--ca-out")
        .arg(&ca_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the lab process")?;
    let stdout = child.stdout.take().context("lab has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.trim().strip_prefix("AXL endpoint:") {
                return Ok::<_, std::io::Error>(Some(url.trim().to_owned()));
            }
        }
        Ok(None)
    })
    .await
    .context("the lab did not start within 5 minutes")??;
    let Some(url) = url else {
        bail!("the lab exited before announcing its endpoint");
    };
    // Keep reading what the lab prints so it never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(ChildLab {
        _child: child,
        url,
        ca_path,
        started: started.elapsed(),
        _dir: dir,
    })
}

async fn connect(lab: &ChildLab) -> Result<AxlClient> {
    let mut config = AxlConfig::new(lab.url.clone(), "administrator", "ucbridge-lab");
    config.ca_file = Some(lab.ca_path.clone());
    Ok(AxlClient::connect(config).await?)
}

pub async fn run(args: BenchArgs) -> Result<()> {
    match args.scenario {
        Scenario::List => run_list(args).await,
        Scenario::DirectorySync => run_directory_sync(args).await,
        Scenario::ApiLoad => crate::bench_api::run(args).await,
        Scenario::Voicemail => crate::bench_voicemail::run(args).await,
        Scenario::LdapExport => crate::bench_ldap::run(args).await,
    }
}

async fn run_list(args: BenchArgs) -> Result<()> {
    let lab = start_lab(&args).await?;
    let lab_start = lab.started;
    let client = connect(&lab).await?;
    let tags = [
        UserTag::Userid,
        UserTag::FirstName,
        UserTag::LastName,
        UserTag::Mailid,
        UserTag::Department,
        UserTag::TelephoneNumber,
        UserTag::PrimaryExtension,
    ];
    let progress = indicatif::ProgressBar::new(args.users as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} users ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let list_started = Instant::now();
    let mut checksum = 0usize;
    let summary = client
        .for_each_user_page(
            &UserSearch::all(),
            &tags,
            ListOptions {
                page_size: args.page_size,
                ..ListOptions::default()
            },
            async |page| {
                // Touch the data so nothing is optimised away; pages are dropped at once.
                checksum += page.iter().filter(|u| u.mailid.is_some()).count();
                progress.inc(page.len() as u64);
                Ok::<_, AxlError>(())
            },
        )
        .await?;
    let list_time = list_started.elapsed();
    progress.finish_and_clear();
    drop(lab);
    tracing::debug!(checksum, "users with mail");

    let stats = client.stats();
    let report = Report {
        users_seeded: args.users,
        users_listed: summary.items,
        pages: summary.pages,
        final_page_size: summary.final_page_size,
        axl_requests: stats.requests,
        page_shrinks: stats.page_shrinks,
        lab_start_seconds: lab_start.as_secs_f64(),
        list_seconds: list_time.as_secs_f64(),
        users_per_second: summary.items as f64 / list_time.as_secs_f64().max(1e-9),
        client_peak_rss_mib: peak_rss_mib(),
    };
    if args.json {
        return crate::output::json(&report);
    }
    println!("listUser benchmark against the lab over HTTPS");
    println!(
        "  users seeded / listed : {} / {}",
        report.users_seeded, report.users_listed
    );
    println!(
        "  pages                 : {} (final page size {}, {} shrinks)",
        report.pages, report.final_page_size, report.page_shrinks
    );
    println!("  AXL requests          : {}", report.axl_requests);
    println!(
        "  lab start (seeding)   : {:.2} s",
        report.lab_start_seconds
    );
    println!("  list time             : {:.2} s", report.list_seconds);
    println!(
        "  throughput            : {:.0} users/s",
        report.users_per_second
    );
    match report.client_peak_rss_mib {
        Some(m) => println!("  client peak RSS       : {m:.1} MiB"),
        None => println!("  client peak RSS       : unknown (no /proc)"),
    }
    Ok(())
}

async fn run_directory_sync(args: BenchArgs) -> Result<()> {
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
        return crate::output::json(&report);
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
