//! The voicemail job under the server: connections from the API's store, the continuous
//! engine's first reconcile, a CUC event pushed to the server's `/callbacks/cuc` route and
//! the voicemail appearing in the user's Dovecot mailbox; "Test connection" for IMAP.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ucbridge_auth::{Credentials, TlsOptions};
use ucbridge_cuc::{CucClient, CucConfig, UserQuery};
use ucbridge_lab::{CucLabConfig, LabConfig, NewVoicemail, RunningLab};
use ucbridge_server::connections::{self, ConnectionSettings, ConnectionUpdate};
use ucbridge_server::{Server, ServerConfig};
use ucbridge_store::{Role, UserRecord};
use ucbridge_testkit::dovecot::{Dovecot, MASTER_PASSWORD, MASTER_USER};

use crate::common::{self, ApiClient};

fn settings(url: String, user: &str, ca: Option<&str>, options: Value) -> ConnectionSettings {
    ConnectionSettings {
        url,
        username: user.into(),
        ca_pem: ca.map(str::to_owned),
        options: options.as_object().cloned().unwrap_or_default(),
        ..ConnectionSettings::default()
    }
}

/// Whether any file under `dir` contains `needle`.
fn maildir_contains(dir: &std::path::Path, needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            maildir_contains(&p, needle)
        } else {
            std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voicemail_job_pushes_through_the_server_callback() {
    let lab = RunningLab::start(LabConfig {
        users: 3,
        seed: 11,
        cuc: CucLabConfig {
            messages_per_user: 2,
            ..CucLabConfig::default()
        },
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let mut cuc_config = CucConfig::new(
        lab.cuc_url(),
        Credentials::basic("administrator", "ucbridge-lab"),
    );
    cuc_config.tls = TlsOptions {
        ca_pem: lab.ca_certificate_pem().map(str::to_owned),
        ..TlsOptions::default()
    };
    let aliases: Vec<String> = CucClient::new(cuc_config)
        .unwrap()
        .all_users(&UserQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.alias)
        .collect();
    let refs: Vec<&str> = aliases.iter().map(String::as_str).collect();
    let Some(dovecot) = Dovecot::start(&refs) else {
        return;
    };
    let (store, _dir) = common::sqlite_store().await;
    for alias in &aliases {
        store
            .create_local_user(&UserRecord {
                username: alias.clone(),
                email: Some(format!("{alias}@example.com")),
                source: "local".into(),
                ..UserRecord::default()
            })
            .await
            .unwrap();
    }
    let secrets = common::secret_box();
    let ca = lab.ca_certificate_pem();
    for (kind, s, password) in [
        (
            "cuc",
            settings(lab.cuc_url(), "administrator", ca, json!({})),
            "ucbridge-lab",
        ),
        (
            "imap",
            settings(
                format!("imap://127.0.0.1:{}", dovecot.port()),
                MASTER_USER,
                None,
                json!({"security": "plain"}),
            ),
            MASTER_PASSWORD,
        ),
    ] {
        connections::save(
            &store,
            &secrets,
            kind,
            ConnectionUpdate {
                settings: s,
                password: Some(password.into()),
            },
            None,
            false,
        )
        .await
        .unwrap();
    }
    let token = ucbridge_server::auth::new_api_token();
    store
        .create_api_token("t", &ucbridge_server::auth::token_hash(&token), Role::Admin)
        .await
        .unwrap();
    let config = ServerConfig {
        lease_ttl: Duration::from_secs(3),
        tick: Duration::from_millis(100),
        ..common::local_config()
    };
    let server = Server::start(store.clone(), secrets, config).await.unwrap();
    let base = server.url();
    let api = ApiClient::with_token(&base, &token);

    // Options with this node's callback URL; the running job restarts with them.
    api.put_json(
        "/api/v1/voicemail",
        &json!({"callback_url": format!("{base}/callbacks/cuc"), "debounce": "1s"}),
    )
    .await
    .expect(StatusCode::OK);
    api.put_json("/api/v1/voicemail", &json!({"debounce": "soon"}))
        .await
        .expect(StatusCode::BAD_REQUEST);

    // The continuous job reconciles every account and subscribes with our callback.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = api.get("/api/v1/voicemail").await.json;
        let accounts = v["accounts"].as_array().cloned().unwrap_or_default();
        let subscribed = lab
            .cuc()
            .subscriptions()
            .iter()
            .any(|s| s.callback_url.starts_with(&format!("{base}/callbacks/cuc")));
        if accounts.len() == aliases.len()
            && accounts.iter().all(|a| a["last_success_at"].is_i64())
            && subscribed
        {
            assert!(
                accounts
                    .iter()
                    .all(|a| a["messages"].as_i64().unwrap() >= 2),
                "{v}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no initial reconcile with subscription: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A new voicemail: CUC -> POST /callbacks/cuc on the server -> the user's mailbox.
    let alias = &aliases[0];
    lab.cuc()
        .deliver_voicemail(
            alias,
            NewVoicemail {
                caller_number: "+14085550100".into(),
                caller_name: "Pushed Through Server".into(),
                duration_ms: 1500,
                ..NewVoicemail::default()
            },
        )
        .unwrap();
    let started = Instant::now();
    while !maildir_contains(&dovecot.mail_dir(), "Pushed Through Server") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pushed voicemail not in IMAP; {}",
            dovecot.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (delivered, _) = lab.cuc().notifications();
    assert!(
        delivered >= 1,
        "CUC's event went through the server's callback route"
    );
    // This node runs the job, so the page shows the engine's counters: the event it got.
    let v = api.get("/api/v1/voicemail").await.json;
    assert!(
        v["engine"]["events_received"].as_u64().unwrap_or(0) >= 1,
        "{}",
        v["engine"]
    );
    assert_eq!(v["total"], aliases.len(), "{v}");

    // The user's page shows the voicemail state; Test connection logs in to a mailbox.
    let one = api.get(&format!("/api/v1/users/{alias}")).await.json;
    assert_eq!(one["voicemail"]["cuc_alias"], alias.as_str(), "{one}");
    let report = api.post("/api/v1/connections/imap/test").await.json;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["account_count"], aliases.len(), "{report}");
    // Callbacks without the engine's credentials are refused.
    let anon = ApiClient::new(&base);
    let r = anon
        .send(anon.request(Method::POST, "/callbacks/cuc").body("<x/>"))
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    server.shutdown().await;
}
