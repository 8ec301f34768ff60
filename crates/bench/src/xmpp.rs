//! `ucbridge-bench --scenario xmpp [--sessions N]`: N concurrent IM sessions
//! (`ucbridge_im::ImSession`, STARTTLS with the test CA, SCRAM) against a throwaway
//! Prosody started through the test kit (accounts written straight into its store), then
//! message latency from `send_message` to the receiving session's event.
//!
//! Figures: time to log all sessions in (at most `LOGIN_CONCURRENCY` logins in flight, as
//! a server signing users in would), resident memory per session (`VmRSS` growth of this
//! process divided by N, after all are online), and p50/p99 latency of `MESSAGES`
//! messages sent one after another from rotating sessions to one receiving session; then
//! the same through ucbridge's REST API ([`crate::chat_api`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};
use ucbridge_im::{ImEvent, ImSession, ImSettings};
use ucbridge_testkit::prosody::{Prosody, USER_PASSWORD};

use crate::args::BenchArgs;

const LOGIN_CONCURRENCY: usize = 64;
const MESSAGES: usize = 500;

#[derive(Serialize)]
struct Figures {
    sessions: usize,
    tls: &'static str,
    login_seconds: f64,
    logins_per_second: f64,
    rss_before_mib: f64,
    rss_after_mib: f64,
    rss_per_session_kib: f64,
    messages: usize,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    api_messages: usize,
    api_latency_p50_ms: f64,
    api_latency_p99_ms: f64,
    api_latency_max_ms: f64,
}

/// This process's resident memory (`VmRSS`), KiB.
fn rss_kib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let n = args.sessions.max(1);
    let users: Vec<String> = (0..n).map(|i| format!("user{i:05}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let mut builder = Prosody::builder(&names);
    builder = builder.user("receiver", USER_PASSWORD);
    let Some(prosody) = builder.start() else {
        bail!("prosody is not installed (Debian package prosody)");
    };
    let mut settings = ImSettings::new("127.0.0.1", prosody.port(), prosody.domain());
    settings.ca_file = Some(prosody.ca_file().to_owned());
    settings.connect_timeout = Duration::from_secs(60);

    let (receiver, mut receiver_rx) =
        ImSession::open(&settings, "receiver", USER_PASSWORD, "bench")
            .await
            .context("receiver session")?;
    let rss_before = rss_kib().unwrap_or(0.0);
    eprintln!("Logging in {n} sessions (STARTTLS, SCRAM) ...");
    let started = Instant::now();
    let sessions = login_all(&settings, &users).await?;
    let login_seconds = started.elapsed().as_secs_f64();
    let rss_after = rss_kib().unwrap_or(0.0);
    eprintln!("Measuring {MESSAGES} messages ...");
    let latencies = latencies(&sessions, &receiver, &mut receiver_rx).await?;
    eprintln!("Measuring {MESSAGES} messages through the server's REST API ...");
    let api = crate::chat_api::latencies(&prosody, &receiver, &mut receiver_rx, MESSAGES).await?;
    let figures = Figures {
        sessions: n,
        tls: "starttls",
        login_seconds,
        logins_per_second: n as f64 / login_seconds,
        rss_before_mib: rss_before / 1024.0,
        rss_after_mib: rss_after / 1024.0,
        rss_per_session_kib: (rss_after - rss_before) / n as f64,
        messages: latencies.len(),
        latency_p50_ms: percentile(&latencies, 0.50),
        latency_p99_ms: percentile(&latencies, 0.99),
        latency_max_ms: latencies.last().copied().unwrap_or(0.0),
        api_messages: api.len(),
        api_latency_p50_ms: percentile(&api, 0.50),
        api_latency_p99_ms: percentile(&api, 0.99),
        api_latency_max_ms: api.last().copied().unwrap_or(0.0),
    };
    for (s, _) in &sessions {
        s.close().await;
    }
    receiver.close().await;
    if args.json {
        crate::common::print_json(&figures)
    } else {
        print_table(&figures);
        Ok(())
    }
}

/// Open every session, `LOGIN_CONCURRENCY` at a time; any failure ends the benchmark.
async fn login_all(
    settings: &ImSettings,
    users: &[String],
) -> Result<Vec<(ImSession, mpsc::Receiver<ImEvent>)>> {
    let gate = Arc::new(Semaphore::new(LOGIN_CONCURRENCY));
    let mut tasks = Vec::with_capacity(users.len());
    for user in users {
        let (gate, settings, user) = (gate.clone(), settings.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            ImSession::open(&settings, &user, USER_PASSWORD, "bench")
                .await
                .with_context(|| format!("login of {user}"))
        }));
    }
    let mut sessions = Vec::with_capacity(tasks.len());
    for t in tasks {
        sessions.push(t.await??);
    }
    Ok(sessions)
}

/// Send `MESSAGES` messages one after another, each from the next session; the time from
/// `send_message` to the receiver's event, sorted, in ms.
async fn latencies(
    sessions: &[(ImSession, mpsc::Receiver<ImEvent>)],
    receiver: &ImSession,
    rx: &mut mpsc::Receiver<ImEvent>,
) -> Result<Vec<f64>> {
    let to = receiver.bare_jid();
    let mut out = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let (sender, _) = &sessions[i % sessions.len()];
        let body = format!("bench {i}");
        let sent = Instant::now();
        sender.send_message(&to, &body).await?;
        let wait = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(ev) = rx.recv().await {
                if matches!(&ev, ImEvent::Message { message } if message.body == body) {
                    return true;
                }
            }
            false
        });
        if !wait.await.unwrap_or(false) {
            bail!("message {i} did not arrive within 10 s");
        }
        out.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn print_table(f: &Figures) {
    println!("XMPP sessions against Prosody on 127.0.0.1 ({})", f.tls);
    println!("  sessions               {}", f.sessions);
    println!(
        "  log-in of all          {:.2} s ({:.0}/s, {LOGIN_CONCURRENCY} in flight)",
        f.login_seconds, f.logins_per_second
    );
    println!(
        "  memory per session     {:.1} KiB (VmRSS {:.1} -> {:.1} MiB)",
        f.rss_per_session_kib, f.rss_before_mib, f.rss_after_mib
    );
    println!(
        "  message latency        p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} messages)",
        f.latency_p50_ms, f.latency_p99_ms, f.latency_max_ms, f.messages
    );
    println!(
        "  API -> Jabber client   p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} messages: POST /api/v1/me/chat/messages to the other session's event)",
        f.api_latency_p50_ms, f.api_latency_p99_ms, f.api_latency_max_ms, f.api_messages
    );
}
