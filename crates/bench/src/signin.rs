//! `ucbridge-bench --scenario signin`: end users' sign-in with CUCM credentials against the
//! lab (in this process, so its doAuthenticateUser counter can be read), 100 users synced
//! into a temporary SQLite store.
//!
//! - cold: every sign-in asks CUCM (the cache is cleared before each round) and stores a
//!   new argon2id verifier;
//! - warm: every sign-in is answered from the cache (one argon2id verification);
//! - mail clients: 1,000 IMAP-style logins — each of the 100 users logs in once a minute,
//!   at its own second of the minute, for 10 minutes — with the default 5-minute cache
//!   TTL. Time is compressed with the authenticator's `ManualClock`: the simulated clock
//!   advances one second per step, so ten minutes take as long as the 1,000 sign-ins do.
//!   Reported: CUCM requests per 1,000 logins (the goal: at most one per user per TTL,
//!   i.e. 200 here).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::Rng;
use serde::Serialize;
use ucbridge_axl::{AxlClient, AxlConfig, Secret};
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_signin::{Authenticator, ManualClock, SignInAttempt, SignInConfig};
use ucbridge_store::Store;

use crate::args::BenchArgs;

const USERS: usize = 100;
const CONCURRENCY: usize = 8;
const PASSWORD: &str = "ucbridge-user";

#[derive(Serialize)]
struct Phase {
    phase: &'static str,
    sign_ins: usize,
    concurrency: usize,
    seconds: f64,
    sign_ins_per_second: f64,
    cucm_requests: u64,
}

#[derive(Serialize)]
struct MailClients {
    users: usize,
    logins: usize,
    simulated_minutes: u64,
    cache_ttl_seconds: u64,
    cucm_requests: u64,
    cucm_requests_per_1000_logins: f64,
    most_requests_for_one_user: u64,
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let lab = RunningLab::start(LabConfig {
        users: USERS,
        ..LabConfig::default()
    })
    .await
    .context("cannot start the lab")?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))
    .await
    .context("cannot open the benchmark database")?;
    let client = sync_users(&lab, &store).await?;
    let names: Vec<String> = store
        .local_users()
        .await?
        .into_iter()
        .map(|u| u.record.username)
        .collect();
    let clock = Arc::new(ManualClock::default());
    let config = SignInConfig {
        attempts_per_minute_per_user: 0,
        attempts_per_minute_per_address: 0,
        ..SignInConfig::default()
    };
    let auth = Authenticator::with_clock(config, Arc::new(client), store, clock.clone());
    let mut phases = Vec::new();
    for (phase, concurrency) in [("cold", 1), ("cold", CONCURRENCY)] {
        auth.clear_cache();
        phases.push(measure(&lab, &auth, phase, &names, 1, concurrency).await?);
    }
    phases.push(measure(&lab, &auth, "warm", &names, 10, CONCURRENCY).await?);
    auth.clear_cache();
    let mail = mail_clients(&lab, &auth, &clock, &names).await?;
    if args.json {
        crate::common::print_json(&serde_json::json!({"phases": phases, "mail_clients": mail}))?;
    } else {
        for p in &phases {
            println!(
                "{:<5} {:>5} sign-ins, concurrency {:>2}: {:>8.1}/s ({:.2} s, {} CUCM requests)",
                p.phase,
                p.sign_ins,
                p.concurrency,
                p.sign_ins_per_second,
                p.seconds,
                p.cucm_requests
            );
        }
        println!(
            "mail clients: {} logins of {} users over {} simulated minutes, TTL {} s: {} CUCM \
             requests ({:.0} per 1,000 logins; at most {} for one user)",
            mail.logins,
            mail.users,
            mail.simulated_minutes,
            mail.cache_ttl_seconds,
            mail.cucm_requests,
            mail.cucm_requests_per_1000_logins,
            mail.most_requests_for_one_user
        );
    }
    Ok(())
}

async fn sync_users(lab: &RunningLab, store: &Store) -> Result<AxlClient> {
    let mut axl = AxlConfig::new(lab.axl_url(), "administrator", Secret::new("ucbridge-lab"));
    axl.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    let client = AxlClient::connect(axl).await?;
    ucbridge_sync::SnapshotKeeper::new(client.clone(), store.clone(), Default::default())
        .full_refresh(|_| {})
        .await?;
    let rules = ucbridge_sync::SyncRules::default().compile()?;
    ucbridge_sync::run_user_sync(store, &rules, Default::default(), |_, _| {}).await?;
    Ok(client)
}

fn auth_requests(lab: &RunningLab) -> u64 {
    lab.stats()
        .by_operation
        .get("doAuthenticateUser")
        .copied()
        .unwrap_or(0)
}

fn attempt(login: &str) -> SignInAttempt<'_> {
    SignInAttempt {
        login,
        password: PASSWORD,
        client: None,
        via: "imap",
    }
}

/// `rounds` sign-ins of every user by `concurrency` workers.
async fn measure(
    lab: &RunningLab,
    auth: &Authenticator,
    phase: &'static str,
    names: &[String],
    rounds: usize,
    concurrency: usize,
) -> Result<Phase> {
    let total = names.len() * rounds;
    let next = Arc::new(AtomicUsize::new(0));
    let names = Arc::new(names.to_vec());
    let before = auth_requests(lab);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (auth, next, names) = (auth.clone(), next.clone(), names.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let name = &names[i % names.len()];
                auth.authenticate(attempt(name))
                    .await
                    .with_context(|| format!("sign-in of {name}"))?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Phase {
        phase,
        sign_ins: total,
        concurrency,
        seconds,
        sign_ins_per_second: total as f64 / seconds,
        cucm_requests: auth_requests(lab) - before,
    })
}

/// Each user logs in once a minute at its own second, for 10 simulated minutes.
async fn mail_clients(
    lab: &RunningLab,
    auth: &Authenticator,
    clock: &ManualClock,
    names: &[String],
) -> Result<MailClients> {
    const MINUTES: u64 = 10;
    let mut rng = rand::thread_rng();
    let offsets: Vec<u64> = names.iter().map(|_| rng.gen_range(0..60)).collect();
    let before = auth_requests(lab);
    let mut per_user = vec![0u64; names.len()];
    let mut logins = 0;
    for second in 0..MINUTES * 60 {
        for (i, name) in names.iter().enumerate() {
            if second % 60 == offsets[i] {
                let asked = auth_requests(lab);
                auth.authenticate(attempt(name)).await?;
                per_user[i] += auth_requests(lab) - asked;
                logins += 1;
            }
        }
        clock.advance(Duration::from_secs(1));
    }
    let requests = auth_requests(lab) - before;
    Ok(MailClients {
        users: names.len(),
        logins,
        simulated_minutes: MINUTES,
        cache_ttl_seconds: auth.config().cache_ttl.as_secs(),
        cucm_requests: requests,
        cucm_requests_per_1000_logins: requests as f64 * 1000.0 / logins as f64,
        most_requests_for_one_user: per_user.into_iter().max().unwrap_or(0),
    })
}
