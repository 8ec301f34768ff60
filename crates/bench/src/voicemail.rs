//! `ucbridge-bench --scenario voicemail`: initial sync of `--mailboxes` CUC mailboxes with
//! `--messages` messages each into a throwaway Dovecot, then the latency from a new CUC
//! message (delivered on the lab, pushed by CUNI) to its file in the user's maildir, the
//! IMAP change → CUC latency (a mail client's read change, pushed by Dovecot's plugin,
//! synced after the shipped debounce), and the no-op reconcile with IMAP checked and
//! trusting IMAP push (issue 17 item 4).

#[path = "voicemail_push.rs"]
mod push;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::Rng;
use serde::Serialize;
use ucbridge_auth::{Credentials, TlsOptions};
use ucbridge_cuc::{CucClient, CucConfig, UserQuery};
use ucbridge_lab::{CucLabConfig, LabConfig, NewVoicemail, RunningLab};
use ucbridge_store::{Store, UserRecord};
use ucbridge_testkit::dovecot::{Dovecot, MASTER_PASSWORD, MASTER_USER};
use ucbridge_voicemail::{ImapSettings, VoicemailEngine, VoicemailOptions};

use crate::args::BenchArgs;
use crate::common::{peak_rss_mib, print_json};

#[derive(Serialize)]
struct Report {
    mailboxes: usize,
    messages_per_mailbox: usize,
    messages_appended: u64,
    initial_sync_seconds: f64,
    messages_per_second: f64,
    /// No-op reconcile checking every account's IMAP folders (push not heard yet).
    noop_resync_seconds: f64,
    /// No-op reconcile in the continuous mode once push is healthy: no IMAP login for
    /// accounts without a notification since their last check.
    noop_trusting_push_seconds: f64,
    noop_trusting_push_skipped: usize,
    noop_trusting_push_imap_logins: u64,
    imap_to_cuc_samples: usize,
    imap_to_cuc_p50_ms: f64,
    imap_to_cuc_p95_ms: f64,
    imap_to_cuc_max_ms: f64,
    latency_samples: usize,
    latency_p50_ms: f64,
    latency_p95_ms: f64,
    latency_max_ms: f64,
    peak_rss_mib: Option<f64>,
}

/// Messages in a maildir++ folder (`.Voicemail/{new,cur}`), as Dovecot stores them.
fn maildir_count(user_dir: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .filter_map(|d| std::fs::read_dir(user_dir.join(".Voicemail").join(d)).ok())
        .map(|entries| entries.count())
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub async fn run(args: BenchArgs) -> Result<()> {
    if args.messages < 3 {
        bail!("--messages must be at least 3 (inbox messages, one sent, one deleted)");
    }
    eprintln!("Starting the lab with {} mailboxes...", args.mailboxes);
    let lab = RunningLab::start(LabConfig {
        users: args.mailboxes,
        seed: 7,
        cuc: CucLabConfig {
            // The lab adds one sent and one deleted message to the inbox ones.
            messages_per_user: args.messages - 2,
            ..CucLabConfig::default()
        },
        ..LabConfig::default()
    })
    .await
    .context("cannot start the lab")?;
    let mut cuc_config = CucConfig::new(
        lab.cuc_url(),
        Credentials::basic("administrator", "ucbridge-lab"),
    );
    cuc_config.tls = TlsOptions {
        ca_pem: lab.ca_certificate_pem().map(str::to_owned),
        ..TlsOptions::default()
    };
    let cuc = CucClient::new(cuc_config)?;
    let aliases: Vec<String> = cuc
        .all_users(&UserQuery {
            rows_per_page: 1000,
            ..UserQuery::default()
        })
        .await?
        .into_iter()
        .map(|u| u.alias)
        .collect();
    let refs: Vec<&str> = aliases.iter().map(String::as_str).collect();
    let mut push = push::PushSetup::new().await?;
    let Some(dovecot) = Dovecot::builder(&refs)
        .lua_push(Some(push.lua_push()))
        .start()
    else {
        bail!("the voicemail benchmark needs dovecot (Debian package dovecot-imapd)");
    };
    let dir = tempfile::tempdir()?;
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))
    .await?;
    for alias in &aliases {
        store
            .create_local_user(&UserRecord {
                username: alias.clone(),
                source: "local".into(),
                ..UserRecord::default()
            })
            .await?;
    }
    let options = VoicemailOptions {
        // Keep the timed run free of background work.
        reconcile_every: Duration::from_secs(3600),
        imap_poll_every: Duration::from_secs(3600),
        // Otherwise the shipped defaults (debounce 5 s, trust_imap_push).
        imap_push_token: Some(push::PUSH_TOKEN.into()),
        ..VoicemailOptions::default()
    };
    let imap = ImapSettings::plain_loopback(dovecot.port(), MASTER_USER, MASTER_PASSWORD);
    let engine = VoicemailEngine::new(store.clone(), cuc, imap, options);
    push.serve(&engine);

    eprintln!(
        "Initial sync: {} mailboxes x {} messages into Dovecot...",
        args.mailboxes, args.messages
    );
    let started = Instant::now();
    let summary = engine.sync_all(&|_, _| {}).await?;
    let initial = started.elapsed().as_secs_f64();
    if !summary.failed.is_empty() {
        bail!(
            "{} accounts failed, first: {:?}",
            summary.failed.len(),
            summary.failed[0]
        );
    }
    let started = Instant::now();
    engine.sync_all(&|_, _| {}).await?;
    let noop = started.elapsed().as_secs_f64();

    // Latency: continuous mode with a CUNI subscription to a local callback listener.
    let (stop_tx, run_task) = start_continuous(&engine, &lab, args.mailboxes, noop).await?;
    let mut latencies = cuc_to_imap_latencies(&lab, &dovecot, &aliases).await?;
    let imap_samples = 30.min(aliases.len());
    eprintln!("Latency: {imap_samples} read changes on IMAP -> CUC (pushed, debounced)...");
    let picked: Vec<String> = aliases.iter().take(imap_samples).cloned().collect();
    let mut imap_latencies = push::imap_to_cuc_latencies(&lab, dovecot.port(), &picked).await?;
    imap_latencies.sort_by(|a, b| a.total_cmp(b));
    // Push is healthy now. The first reconcile re-reads the accounts whose CUC
    // fingerprint the samples' own writes moved; the second is the no-op one.
    engine.sync_all(&|_, _| {}).await?;
    let logins_before = engine.status().await?.imap_logins;
    let started = Instant::now();
    let trusted = engine.sync_all(&|_, _| {}).await?;
    let noop_trusting = started.elapsed().as_secs_f64();
    let trusted_logins = engine.status().await?.imap_logins - logins_before;
    let _ = stop_tx.send(());
    let _ = run_task.await;
    latencies.sort_by(|a, b| a.total_cmp(b));
    let report = Report {
        mailboxes: args.mailboxes,
        messages_per_mailbox: args.messages,
        messages_appended: summary.appended,
        initial_sync_seconds: initial,
        messages_per_second: summary.appended as f64 / initial.max(1e-9),
        noop_resync_seconds: noop,
        noop_trusting_push_seconds: noop_trusting,
        noop_trusting_push_skipped: trusted.skipped_trusting_push,
        noop_trusting_push_imap_logins: trusted_logins,
        imap_to_cuc_samples: imap_latencies.len(),
        imap_to_cuc_p50_ms: percentile(&imap_latencies, 50.0),
        imap_to_cuc_p95_ms: percentile(&imap_latencies, 95.0),
        imap_to_cuc_max_ms: imap_latencies.last().copied().unwrap_or_default(),
        latency_samples: latencies.len(),
        latency_p50_ms: percentile(&latencies, 50.0),
        latency_p95_ms: percentile(&latencies, 95.0),
        latency_max_ms: latencies.last().copied().unwrap_or_default(),
        peak_rss_mib: peak_rss_mib(),
    };
    store.close().await;
    if args.json {
        return print_json(&report);
    }
    print_report(&report);
    Ok(())
}

/// Run the engine continuously with a CUNI subscription to a local callback listener, and
/// wait until its start-up reconcile and the subscription are done.
async fn start_continuous(
    engine: &VoicemailEngine,
    lab: &RunningLab,
    mailboxes: usize,
    noop: f64,
) -> Result<(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let callback = format!("http://{}/callbacks/cuc", listener.local_addr()?);
    let app = axum::Router::new().nest("/callbacks/cuc", engine.callback_router());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = engine.clone();
    let run_task = tokio::spawn(async move {
        runner
            .run(Some(callback), async {
                let _ = stop_rx.await;
            })
            .await;
    });
    // Its start-up reconcile finds nothing to do; wait for it and the subscription.
    let settle = Instant::now();
    while lab.cuc().subscriptions().len() < mailboxes.div_ceil(500)
        || settle.elapsed() < Duration::from_secs(1)
    {
        if settle.elapsed() > Duration::from_secs(120) {
            bail!("the engine did not subscribe to CUNI");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2).max(Duration::from_secs_f64(noop * 1.2))).await;
    Ok((stop_tx, run_task))
}

/// CUC -> IMAP: new voicemails delivered on the lab, timed until they are in the maildir.
async fn cuc_to_imap_latencies(
    lab: &RunningLab,
    dovecot: &Dovecot,
    aliases: &[String],
) -> Result<Vec<f64>> {
    let samples = 50.min(aliases.len() * 5);
    let mut latencies = Vec::with_capacity(samples);
    let mut rng = rand::thread_rng();
    eprintln!("Latency: {samples} new voicemails, CUC -> IMAP...");
    for i in 0..samples {
        let alias = &aliases[rng.gen_range(0..aliases.len())];
        let user_dir = dovecot.mail_dir().join(alias);
        let before = maildir_count(&user_dir);
        let t0 = Instant::now();
        lab.cuc()
            .deliver_voicemail(
                alias,
                NewVoicemail {
                    caller_number: format!("+1408555{i:04}"),
                    caller_name: "Bench Caller".into(),
                    duration_ms: 3000,
                    ..NewVoicemail::default()
                },
            )
            .map_err(|e| anyhow::anyhow!(e))?;
        loop {
            if maildir_count(&user_dir) > before {
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("voicemail for {alias} did not arrive in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(latencies)
}

fn print_report(report: &Report) {
    println!(
        "mailboxes: {} x {} messages ({} appended)",
        report.mailboxes, report.messages_per_mailbox, report.messages_appended
    );
    println!(
        "initial sync: {:.1} s ({:.0} messages/s); no-op resync: {:.1} s",
        report.initial_sync_seconds, report.messages_per_second, report.noop_resync_seconds
    );
    println!(
        "no-op reconcile trusting IMAP push: {:.2} s ({} of {} accounts skipped without login, {} IMAP logins)",
        report.noop_trusting_push_seconds,
        report.noop_trusting_push_skipped,
        report.mailboxes,
        report.noop_trusting_push_imap_logins
    );
    println!(
        "CUC -> IMAP latency over {} messages: p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        report.latency_samples, report.latency_p50_ms, report.latency_p95_ms, report.latency_max_ms
    );
    println!(
        "IMAP -> CUC latency over {} read changes (debounce 5 s): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        report.imap_to_cuc_samples,
        report.imap_to_cuc_p50_ms,
        report.imap_to_cuc_p95_ms,
        report.imap_to_cuc_max_ms
    );
    if let Some(rss) = report.peak_rss_mib {
        println!("peak RSS (ucbridge + in-process lab): {rss:.0} MiB");
    }
}
