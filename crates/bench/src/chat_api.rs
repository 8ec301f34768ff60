//! The `xmpp` scenario's second phase: message latency **through ucbridge's REST API** —
//! a lab user signed in with the CUCM password (`POST /api/v1/me/session`) sends with
//! `POST /api/v1/me/chat/messages`; the time until a separate `ImSession` (the Jabber-side
//! user) receives it. The server, the lab (CUCM for sign-in and user sync) and the client
//! share this process; Prosody is the one the first phase started.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use ucbridge_auth::SecretBox;
use ucbridge_im::{ImEvent, ImSession};
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_server::connections::{self, ConnectionSettings, ConnectionUpdate};
use ucbridge_server::{Server, ServerConfig};
use ucbridge_store::{Role, Store};
use ucbridge_testkit::prosody::Prosody;

use crate::api_load::run_job;

/// The lab's end-user password: CUCM accepts it, and the Prosody account is made with it.
const LAB_PASSWORD: &str = "ucbridge-user";

/// A signed-in end user's session: cookie and CSRF token.
struct EndUser {
    cookie: String,
    csrf: String,
}

/// Sorted latencies (ms) of `messages` messages sent through the REST API to `receiver`.
pub async fn latencies(
    prosody: &Prosody,
    receiver: &ImSession,
    receiver_rx: &mut mpsc::Receiver<ImEvent>,
    messages: usize,
) -> Result<Vec<f64>> {
    let lab = RunningLab::start(LabConfig {
        users: 1,
        ..LabConfig::default()
    })
    .await
    .context("cannot start the lab")?;
    let dir = tempfile::tempdir()?;
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("chat.db").display()
    ))
    .await
    .context("cannot open the benchmark database")?;
    let secrets = SecretBox::from_base64(&SecretBox::generate_key_base64(), "bench")?;
    configure(&store, &secrets, &lab, prosody).await?;
    let token = ucbridge_server::auth::new_api_token();
    let hash = ucbridge_server::auth::token_hash(&token);
    store.create_api_token("bench", &hash, Role::Admin).await?;
    let config = ServerConfig {
        bind: "127.0.0.1:0".parse()?,
        ..ServerConfig::default()
    };
    let server = Server::start(store.clone(), secrets, config).await?;
    let base = server.url();
    let http = reqwest::Client::new();
    wait_for_snapshot(&store).await?;
    run_job(&store, &http, &base, &token, "user_sync").await?;
    let Some(user) = store.source_users().await?.into_iter().next() else {
        bail!("the user sync made no user");
    };
    prosody.add_user(&user.userid, LAB_PASSWORD)?;
    let me = sign_in(&http, &base, &user.userid).await?;
    wait_online(&http, &base, &me).await?;
    let to = receiver.bare_jid();
    let mut out = Vec::with_capacity(messages);
    for i in 0..messages {
        let body = format!("api {i}");
        let sent = Instant::now();
        send(&http, &base, &me, &to, &body).await?;
        if !received(receiver_rx, &body).await {
            bail!("API message {i} did not arrive within 10 s");
        }
        out.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    server.shutdown().await;
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// The server's snapshot keeper refreshes on its own at start: wait (at most 60 s) until
/// that refresh is done, rather than asking for another (it would be refused).
async fn wait_for_snapshot(store: &Store) -> Result<()> {
    for _ in 0..600 {
        let s = store.snapshot_state(ucbridge_store::SOURCE_CUCM).await?;
        if s.state == ucbridge_store::RefreshState::Idle {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the server's first snapshot refresh did not finish within 60 s")
}

/// The lab's CUCM (sign-in, user sync) and the benchmark's Prosody as IM&P.
async fn configure(
    store: &Store,
    secrets: &SecretBox,
    lab: &RunningLab,
    prosody: &Prosody,
) -> Result<()> {
    let cucm = ConnectionSettings {
        url: lab.axl_url(),
        username: "administrator".into(),
        ca_pem: lab.ca_certificate_pem().map(str::to_owned),
        ..ConnectionSettings::default()
    };
    let mut options = serde_json::Map::new();
    options.insert("domain".into(), json!(prosody.domain()));
    let xmpp = ConnectionSettings {
        url: format!("xmpp://127.0.0.1:{}", prosody.port()),
        ca_pem: Some(prosody.ca_pem().to_owned()),
        options,
        ..ConnectionSettings::default()
    };
    for (kind, settings, password) in [
        ("cucm", cucm, Some("ucbridge-lab".to_owned())),
        ("xmpp", xmpp, None),
    ] {
        let update = ConnectionUpdate { settings, password };
        connections::save(store, secrets, kind, update, Some("bench"), false).await?;
    }
    Ok(())
}

async fn sign_in(http: &reqwest::Client, base: &str, userid: &str) -> Result<EndUser> {
    let r = http
        .post(format!("{base}/api/v1/me/session"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(json!({"username": userid, "password": LAB_PASSWORD}).to_string())
        .send()
        .await?;
    if !r.status().is_success() {
        bail!(
            "sign-in of {userid}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    let cookie = r
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("the sign-in set no cookie")?
        .to_owned();
    let answer: Value = serde_json::from_slice(&r.bytes().await?)?;
    let csrf = answer["csrf_token"].as_str().context("no csrf_token")?;
    Ok(EndUser {
        cookie,
        csrf: csrf.to_owned(),
    })
}

/// Wait (at most 30 s) until the user's XMPP session, opened at sign-in, is online.
async fn wait_online(http: &reqwest::Client, base: &str, me: &EndUser) -> Result<()> {
    for _ in 0..300 {
        let r = http
            .get(format!("{base}/api/v1/me/chat"))
            .header(reqwest::header::COOKIE, &me.cookie)
            .send()
            .await?;
        let chat: Value = serde_json::from_slice(&r.bytes().await?).unwrap_or_default();
        if chat["state"]["state"] == "online" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the user's chat did not come online within 30 s")
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    me: &EndUser,
    to: &str,
    body: &str,
) -> Result<()> {
    let r = http
        .post(format!("{base}/api/v1/me/chat/messages"))
        .header(reqwest::header::COOKIE, &me.cookie)
        .header("X-CSRF-Token", &me.csrf)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(json!({"to": to, "body": body}).to_string())
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("send: {}", r.text().await.unwrap_or_default());
    }
    Ok(())
}

/// Whether `body` reaches the receiver within 10 s.
async fn received(rx: &mut mpsc::Receiver<ImEvent>, body: &str) -> bool {
    let wait = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = rx.recv().await {
            if matches!(&ev, ImEvent::Message { message } if message.body == body) {
                return true;
            }
        }
        false
    });
    wait.await.unwrap_or(false)
}
