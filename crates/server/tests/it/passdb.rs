//! `POST /api/v1/passdb` on a running server: the lab's CUCM behind the stored `cucm`
//! connection, users synced into SQLite. Token, every answer class (200, one 403 for all
//! refusals, 429 before CUCM, 400/413 for bad input, 503 for CUCM down, grace), the cache
//! counted in the lab's doAuthenticateUser requests, and a connection edited at runtime.

use reqwest::StatusCode;
use serde_json::{json, Value};
use ucbridge_auth::SecretBox;
use ucbridge_axl::{AxlClient, AxlConfig, Secret};
use ucbridge_lab::{CredentialKind, LabConfig, RunningLab};
use ucbridge_server::connections::{self, ConnectionSettings, ConnectionUpdate};
use ucbridge_server::{RunningServer, Server, ServerConfig};
use ucbridge_signin::SignInFileConfig;
use ucbridge_store::{LocalUser, Store};

use crate::common::{self, Answer, ApiClient};

const PASSWORD: &str = "ucbridge-user";
const TOKEN: &str = "passdb-token-0123456789abcdef";

struct Setup {
    lab: RunningLab,
    store: Store,
    secrets: SecretBox,
    users: Vec<LocalUser>,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let lab = RunningLab::start(LabConfig {
        users: 8,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let (store, dir) = common::sqlite_store().await;
    let mut axl = AxlConfig::new(lab.axl_url(), "administrator", Secret::new("ucbridge-lab"));
    axl.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    let client = AxlClient::connect(axl).await.unwrap();
    ucbridge_sync::SnapshotKeeper::new(client, store.clone(), Default::default())
        .full_refresh(|_| {})
        .await
        .unwrap();
    let rules = ucbridge_sync::SyncRules::default().compile().unwrap();
    ucbridge_sync::run_user_sync(&store, &rules, Default::default(), |_, _| {})
        .await
        .unwrap();
    let users = store.local_users().await.unwrap();
    let secrets = common::secret_box();
    std::fs::write(dir.path().join("passdb.token"), format!("{TOKEN}\n")).unwrap();
    let s = Setup {
        lab,
        store,
        secrets,
        users,
        dir,
    };
    let url = s.lab.axl_url();
    save_cucm(&s, url).await;
    s
}

async fn save_cucm(s: &Setup, url: String) {
    connections::save(
        &s.store,
        &s.secrets,
        "cucm",
        ConnectionUpdate {
            settings: ConnectionSettings {
                url,
                username: "administrator".into(),
                ca_pem: s.lab.ca_certificate_pem().map(str::to_owned),
                ..ConnectionSettings::default()
            },
            password: Some("ucbridge-lab".into()),
        },
        None,
        false,
    )
    .await
    .unwrap();
}

async fn start(s: &Setup, signin: Value) -> RunningServer {
    let mut signin: SignInFileConfig = serde_json::from_value(signin).unwrap();
    signin.passdb_token_file = Some(s.dir.path().join("passdb.token"));
    let config = ServerConfig {
        run_jobs: false,
        signin,
        ..common::local_config()
    };
    Server::start(s.store.clone(), s.secrets.clone(), config)
        .await
        .unwrap()
}

fn auth_requests(lab: &RunningLab) -> u64 {
    lab.stats()
        .by_operation
        .get("doAuthenticateUser")
        .copied()
        .unwrap_or(0)
}

async fn ask(server: &RunningServer, token: Option<&str>, body: Value) -> Answer {
    let client = match token {
        Some(t) => ApiClient::with_token(&server.url(), t),
        None => ApiClient::new(&server.url()),
    };
    client.post_json("/api/v1/passdb", &body).await
}

fn login(user: &str, password: &str) -> Value {
    json!({"user": user, "password": password, "remote_ip": "198.51.100.7", "service": "imap"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passdb_answers_each_outcome_alike_for_every_refusal() {
    let s = setup().await;
    let server = start(
        &s,
        json!({"refusal_delay": "50ms", "attempts_per_minute_per_user": 4}),
    )
    .await;
    let user = s
        .users
        .iter()
        .find(|u| u.record.extension.is_some())
        .unwrap();
    let name = user.record.username.clone();

    for token in [None, Some("wrong-token-wrong-token")] {
        ask(&server, token, login(&name, PASSWORD))
            .await
            .expect(StatusCode::UNAUTHORIZED);
    }
    let before = auth_requests(&s.lab);
    let v = ask(&server, Some(TOKEN), login(&name, PASSWORD))
        .await
        .expect(StatusCode::OK)
        .json;
    assert_eq!(v, json!({"user": name}));
    // By extension: the mailbox name comes back, from the cache.
    let ext = user.record.extension.clone().unwrap();
    let v = ask(&server, Some(TOKEN), login(&ext, PASSWORD)).await.json;
    assert_eq!(v, json!({"user": name}));
    assert_eq!(auth_requests(&s.lab), before + 1);

    // Wrong password, locked user, unknown user: the same status and body.
    let wrong_user = &s.users[1].record.username;
    let locked_user = &s.users[2].record.username;
    s.lab
        .credentials()
        .set_locked_by_administrator(locked_user, CredentialKind::Password, true)
        .unwrap();
    let mut bodies = Vec::new();
    for (u, p) in [
        (wrong_user.as_str(), "not-the-password"),
        (locked_user.as_str(), PASSWORD),
        ("nobody-here", PASSWORD),
    ] {
        let r = ask(&server, Some(TOKEN), login(u, p)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{u}");
        let text = r.text;
        assert!(!text.contains(p), "{text}");
        bodies.push(text);
    }
    assert!(bodies.iter().all(|b| b == &bodies[0]), "{bodies:?}");

    // Bad input: 400 (too long, binary), 413 (oversized body); CUCM not asked.
    let asked = auth_requests(&s.lab);
    let other = &s.users[3].record.username;
    for password in ["x".repeat(300), "bin\u{0}ary".into()] {
        let r = ask(&server, Some(TOKEN), login(other, &password))
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert!(!r.text.contains(&password));
    }
    ask(&server, Some(TOKEN), login(other, &"y".repeat(8000)))
        .await
        .expect(StatusCode::PAYLOAD_TOO_LARGE);
    ask(&server, Some(TOKEN), json!({"user": other}))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(auth_requests(&s.lab), asked);

    // Throttling: the fifth attempt for one name in a minute is 429, CUCM not asked.
    let target = &s.users[4].record.username;
    for _ in 0..4 {
        ask(&server, Some(TOKEN), login(target, "guess"))
            .await
            .expect(StatusCode::FORBIDDEN);
    }
    let asked = auth_requests(&s.lab);
    let r = ask(&server, Some(TOKEN), login(target, PASSWORD))
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait >= 1);
    assert_eq!(auth_requests(&s.lab), asked);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cucm_down_is_503_unless_a_grace_is_configured() {
    let s = setup().await;
    let name = s.users[0].record.username.clone();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://127.0.0.1:{}/axl/", l.local_addr().unwrap().port())
    };
    for grace in ["0s", "1h"] {
        save_cucm(&s, s.lab.axl_url()).await;
        let server = start(
            &s,
            json!({"cache_ttl": "0s", "unavailable_grace": grace, "refusal_delay": "10ms"}),
        )
        .await;
        ask(&server, Some(TOKEN), login(&name, PASSWORD))
            .await
            .expect(StatusCode::OK);
        // The admin points the connection elsewhere (a closed port): picked up at once.
        save_cucm(&s, closed.clone()).await;
        let during = ask(&server, Some(TOKEN), login(&name, PASSWORD))
            .await
            .status;
        let wrong = ask(&server, Some(TOKEN), login(&name, "wrong"))
            .await
            .status;
        if grace == "0s" {
            assert_eq!(during, 503);
        } else {
            assert_eq!(during, 200, "a cached password within the grace");
        }
        assert_eq!(wrong, 503, "grace never accepts another password");
        save_cucm(&s, s.lab.axl_url()).await;
        ask(&server, Some(TOKEN), login(&name, PASSWORD))
            .await
            .expect(StatusCode::OK);
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_route_does_not_exist() {
    let s = setup().await;
    let config = ServerConfig {
        run_jobs: false,
        ..common::local_config()
    };
    let server = Server::start(s.store.clone(), s.secrets.clone(), config)
        .await
        .unwrap();
    let name = s.users[0].record.username.clone();
    ask(&server, Some(TOKEN), login(&name, PASSWORD))
        .await
        .expect(StatusCode::NOT_FOUND);
    server.shutdown().await;
}
