//! `ucbridge-bench --scenario api-load`: throughput and latency of the server's status
//! endpoint (`GET /api/v1/status`, what the admin page polls) first idle, then while the
//! server refreshes its snapshot of a big lab and syncs every user.
//!
//! The lab runs as a child process; the server and the load generator share this process.
//! The generator is closed-loop and bounded: `--connections` clients, each sending its
//! next request when the previous one is answered, for the duration of the phase.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;
use ucbridge_auth::SecretBox;
use ucbridge_server::connections::{self, ConnectionSettings, ConnectionUpdate};
use ucbridge_server::{Server, ServerConfig};
use ucbridge_store::{JobRunStatus, Role, Store};

use crate::args::BenchArgs;
use crate::common::start_lab;

#[derive(Serialize, Default, Clone)]
struct LoadFigures {
    requests: u64,
    errors: u64,
    seconds: f64,
    requests_per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Serialize)]
struct ApiLoadReport {
    users: usize,
    connections: usize,
    idle: LoadFigures,
    during_sync: LoadFigures,
    snapshot_refresh_seconds: f64,
    user_sync_seconds: f64,
    users_created: u64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Hit `url` with `connections` closed-loop clients until `stop` is set.
async fn load(
    url: String,
    token: String,
    connections: usize,
    stop: Arc<AtomicBool>,
) -> LoadFigures {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap_or_default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (http, url, token, stop) = (http.clone(), url.clone(), token.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies_us = Vec::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = match http.get(&url).bearer_auth(&token).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies_us.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (latencies_us, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();
    LoadFigures {
        requests: all.len() as u64,
        errors,
        seconds,
        requests_per_second: all.len() as f64 / seconds.max(1e-9),
        p50_ms: percentile(&all, 0.50),
        p90_ms: percentile(&all, 0.90),
        p99_ms: percentile(&all, 0.99),
        max_ms: all.last().map_or(0.0, |m| *m as f64 / 1000.0),
    }
}

pub(crate) async fn run_job(
    store: &Store,
    http: &reqwest::Client,
    base: &str,
    token: &str,
    job: &str,
) -> Result<(f64, serde_json::Value)> {
    let before = store
        .job_runs(Some(job), 1)
        .await?
        .first()
        .map(|r| r.id)
        .unwrap_or(0);
    let started = Instant::now();
    let r = http
        .post(format!("{base}/api/v1/jobs/{job}/run"))
        .bearer_auth(token)
        .send()
        .await?;
    if r.status() != 202 {
        bail!("run {job}: {}", r.text().await.unwrap_or_default());
    }
    loop {
        if let Some(run) = store.job_runs(Some(job), 1).await?.into_iter().next() {
            if run.id > before && run.status != JobRunStatus::Running {
                if run.status != JobRunStatus::Succeeded {
                    bail!(
                        "{job} ended {:?}: {}",
                        run.status,
                        run.error.unwrap_or_default()
                    );
                }
                return Ok((
                    started.elapsed().as_secs_f64(),
                    run.result.unwrap_or_default(),
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(args: BenchArgs) -> Result<()> {
    eprintln!("Starting a lab with {} users ...", args.users);
    let lab = start_lab(&args).await?;
    let (_db_dir, store) = crate::common::open_store(&args).await?;
    let secrets = SecretBox::from_base64(&SecretBox::generate_key_base64(), "bench")?;
    let ca_pem = std::fs::read_to_string(&lab.ca_path)?;
    connections::save(
        &store,
        &secrets,
        "cucm",
        ConnectionUpdate {
            settings: ConnectionSettings {
                url: lab.url.clone(),
                username: "administrator".into(),
                ca_pem: Some(ca_pem),
                ..ConnectionSettings::default()
            },
            password: Some("ucbridge-lab".into()),
        },
        Some("bench"),
        false,
    )
    .await?;
    let token = ucbridge_server::auth::new_api_token();
    store
        .create_api_token(
            "bench",
            &ucbridge_server::auth::token_hash(&token),
            Role::Admin,
        )
        .await?;
    // A long poll interval keeps the continuous keeper from refreshing on its own: the
    // benchmark's refresh is the one it asks for.
    let mut config = ServerConfig {
        bind: "127.0.0.1:0".parse()?,
        ..ServerConfig::default()
    };
    config.snapshot.poll_interval = Duration::from_secs(3600);
    let server = Server::start(store.clone(), secrets, config).await?;
    let base = server.url();
    let status_url = format!("{base}/api/v1/status");
    let http = reqwest::Client::new();

    // Wait until the keeper's own first refresh (it starts with one) is done, so the
    // idle phase is idle.
    eprintln!("Waiting for the server's first snapshot refresh ...");
    loop {
        let s = store.snapshot_state(ucbridge_store::SOURCE_CUCM).await?;
        if s.state == ucbridge_store::RefreshState::Idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    eprintln!("Idle load for 10 s ({} connections) ...", args.connections);
    let stop = Arc::new(AtomicBool::new(false));
    let idle = tokio::spawn(load(
        status_url.clone(),
        token.clone(),
        args.connections,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let idle = idle.await?;

    eprintln!(
        "Load while a full refresh and a user sync of {} users run ...",
        args.users
    );
    let stop = Arc::new(AtomicBool::new(false));
    let busy = tokio::spawn(load(
        status_url,
        token.clone(),
        args.connections,
        stop.clone(),
    ));
    let (refresh_s, _) = run_job(&store, &http, &base, &token, "snapshot").await?;
    let (sync_s, result) = run_job(&store, &http, &base, &token, "user_sync").await?;
    stop.store(true, Ordering::Relaxed);
    let during = busy.await?;
    server.shutdown().await;

    let report = ApiLoadReport {
        users: args.users,
        connections: args.connections,
        idle,
        during_sync: during,
        snapshot_refresh_seconds: refresh_s,
        user_sync_seconds: sync_s,
        users_created: result["summary"]["creates"].as_u64().unwrap_or(0),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "GET /api/v1/status, {} closed-loop connections, {} users in the lab",
            report.connections, report.users
        );
        for (phase, f) in [
            ("idle", &report.idle),
            ("during refresh+sync", &report.during_sync),
        ] {
            println!(
                "  {phase:<20} {:>8.0} req/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} requests, {} errors, {:.1} s)",
                f.requests_per_second, f.p50_ms, f.p90_ms, f.p99_ms, f.max_ms, f.requests, f.errors, f.seconds
            );
        }
        println!(
            "  snapshot refresh {:.1} s, user sync {:.1} s ({} users created) under that load",
            report.snapshot_refresh_seconds, report.user_sync_seconds, report.users_created
        );
    }
    Ok(())
}
