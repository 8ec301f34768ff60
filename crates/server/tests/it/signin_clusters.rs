//! Sign-in for users of a further CUCM cluster (issue #15), against two labs over HTTPS:
//! the default cluster (west, the stored `cucm` connection) and `[sources.east] kind =
//! "cucm"`. A user who exists only on east, synced by merged user sync, signs in with
//! east's password; a wrong password (west's) is refused and counted on east alone; west
//! never sees a doAuthenticateUser for them; the WebPhone of the first sign-in is created
//! on east only; an IdS token naming them (SSO) finds them too; and a west user still signs
//! in on west, with east not asked.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};
use ucbridge_axl::{AxlClient, Key, NewUser};
use ucbridge_lab::{CredentialKind, LabConfig, RunningLab};
use ucbridge_server::ServerConfig;
use ucbridge_sync::{CucmSourceSettings, SourceConfig};

use crate::common::{self, ApiClient, TestNode};

/// East's end-user password (the lab's default for users without their own).
const EAST_PW: &str = "East-user-pass-7";
/// West's (the lab default).
const WEST_PW: &str = "ucbridge-user";
const EAST_ONLY: &str = "east.only";

/// The lab's AXL client (the lab's CA trusted).
async fn lab_axl(lab: &RunningLab) -> AxlClient {
    let defaults = LabConfig::default();
    let mut config =
        ucbridge_axl::AxlConfig::new(lab.axl_url(), defaults.username, defaults.password);
    config.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    AxlClient::connect(config)
        .await
        .expect("the lab answers AXL")
}

/// Whether the lab holds the phone `name` (getPhone).
async fn has_phone(client: &AxlClient, name: &str) -> bool {
    match client.get_phone(Key::Name(name)).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("getPhone {name}: {e}"),
    }
}

/// doAuthenticateUser requests the lab has answered.
fn auth_requests(lab: &RunningLab) -> u64 {
    let stats = lab.stats();
    stats
        .by_operation
        .get("doAuthenticateUser")
        .copied()
        .unwrap_or(0)
}

/// `[sources.east]` over the east lab, its CA in a file under `dir`.
fn east_settings(lab: &RunningLab, dir: &std::path::Path) -> CucmSourceSettings {
    let ca = dir.join("east-ca.pem");
    std::fs::write(&ca, lab.ca_certificate_pem().expect("the lab's CA")).expect("CA file");
    let defaults = LabConfig::default();
    toml::from_str(&format!(
        "url = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\nca_file = \"{}\"\n",
        lab.axl_url(),
        defaults.username,
        defaults.password,
        ca.display()
    ))
    .expect("a cluster table")
}

/// Wait (bounded: 30 s) until source `name` is idle with `users` users.
async fn wait_idle(admin: &ApiClient, name: &str, users: u64) {
    let mut last = Value::Null;
    for _ in 0..300 {
        let list = admin
            .get("/api/v1/sources")
            .await
            .expect(StatusCode::OK)
            .json;
        if let Some(s) = list
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name))
        {
            if s["state"] == "idle" && s["users_count"] == users {
                return;
            }
            last = s.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("source {name} never got idle with {users} users; last seen: {last}");
}

/// An end-user sign-in at `/api/v1/me/session` on a fresh client: the client (its
/// session and CSRF token kept on success) and the answer's status.
async fn end_user(node: &TestNode, body: Value) -> (ApiClient, StatusCode, Value) {
    let mut client = node.client().with_csrf(Some(""));
    let answer = client.post_json("/api/v1/me/session", &body).await;
    if answer.status == StatusCode::OK {
        client.csrf = answer.json["csrf_token"].as_str().map(str::to_owned);
    }
    (client, answer.status, answer.json)
}

/// An access token of the lab's IdS (password grant).
async fn ids_token(lab: &RunningLab, user: &str, password: &str) -> String {
    let ca = lab.ca_certificate_pem().expect("the lab's CA");
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("a CA"))
        .build()
        .expect("a client");
    let answer: Value = http
        .post(lab.ids_token_url())
        .form(&[
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await
        .expect("the IdS answers")
        .json()
        .await
        .expect("JSON");
    answer["access_token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn a_user_of_a_further_cluster_signs_in_on_that_cluster_only() {
    let west_lab = RunningLab::start(LabConfig {
        users: 2,
        ..LabConfig::default()
    })
    .await
    .expect("the west lab starts");
    let east_lab = RunningLab::start(LabConfig {
        users: 0,
        seed: 7,
        user_password: EAST_PW.into(),
        ..LabConfig::default()
    })
    .await
    .expect("the east lab starts");
    let (west, east) = (lab_axl(&west_lab).await, lab_axl(&east_lab).await);
    east.add_user(&NewUser {
        userid: EAST_ONLY.into(),
        last_name: "East".into(),
        ..NewUser::default()
    })
    .await
    .expect("a user of east");

    let dir = tempfile::tempdir().expect("tempdir");
    let node = TestNode::start(ServerConfig {
        lease_ttl: Duration::from_secs(3),
        tick: Duration::from_millis(100),
        sources: vec![(
            "east".to_owned(),
            SourceConfig::Cucm(east_settings(&east_lab, dir.path())),
        )],
        ..common::local_config()
    })
    .await;
    let admin = node.admin().await;
    let defaults = LabConfig::default();
    for (kind, url, lab) in [
        ("cucm", west_lab.axl_url(), &west_lab),
        ("ids", east_lab.ids_token_url(), &east_lab),
    ] {
        admin
            .put_json(
                &format!("/api/v1/connections/{kind}"),
                &json!({
                    "url": url, "username": defaults.username,
                    "password": defaults.password, "ca_pem": lab.ca_certificate_pem(),
                }),
            )
            .await
            .expect(StatusCode::OK);
    }
    // Merged user sync over both clusters: west's two users and east's one.
    wait_idle(&admin, "east", 1).await;
    wait_idle(&admin, "cucm", 2).await;
    admin
        .put_json("/api/v1/rules", &json!({"sources": ["cucm", "east"]}))
        .await
        .expect(StatusCode::OK);
    admin.run_job("user_sync").await;
    let run = admin.wait_for_run("user_sync").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["result"]["summary"]["creates"], 3, "{run}");
    // Only sign-ins ensure devices here (the devices job's pattern matches nobody).
    admin
        .put_json(
            "/api/v1/provisioning",
            &json!({"users": "no-such-user-%", "provisioning": {}}),
        )
        .await
        .expect(StatusCode::OK);

    // West's password is refused: asked of east once (one failed logon there), not of west.
    let (_, status, body) =
        end_user(&node, json!({"username": EAST_ONLY, "password": WEST_PW})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let failed = east_lab
        .credentials()
        .failed_logons(EAST_ONLY, CredentialKind::Password);
    assert_eq!(failed.expect("the lab answers"), Some(1));
    assert_eq!(auth_requests(&east_lab), 1);
    assert_eq!(
        auth_requests(&west_lab),
        0,
        "west was asked about an east user"
    );

    // East's password signs in, and the first sign-in's WebPhone is made on east only.
    let (me, status, body) =
        end_user(&node, json!({"username": EAST_ONLY, "password": EAST_PW})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        auth_requests(&west_lab),
        0,
        "west was asked about an east user"
    );
    let device = me
        .get("/api/v1/me/device")
        .await
        .expect(StatusCode::OK)
        .json;
    assert_eq!(device["status"], "ready", "{device}");
    let name = ucbridge_provision::device_name("UCB", EAST_ONLY);
    assert_eq!(device["device_name"], name.as_str(), "{device}");
    assert!(has_phone(&east, &name).await, "{name} is on east");
    assert!(!has_phone(&west, &name).await, "{name} is not on west");
    let signed_in = node.store.audit_log(None, 1_000).await.expect("audit");
    let entry = signed_in
        .iter()
        .find(|e| e.action == "sign_in")
        .and_then(|e| e.after.as_deref())
        .expect("the sign-in is audited");
    assert!(entry.contains("\"cluster\":\"east\""), "{entry}");

    // An IdS token naming the east user (SSO) finds them too.
    let token = ids_token(&east_lab, EAST_ONLY, EAST_PW).await;
    let (sso, status, body) = end_user(&node, json!({"access_token": token})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let profile = sso.get("/api/v1/me").await.expect(StatusCode::OK).json;
    assert_eq!(profile["cucm_userid"], EAST_ONLY, "{profile}");

    // A west user signs in on west; east is not asked.
    let mut west_userid = None;
    for user in node.store.local_users().await.expect("local users") {
        let found = node
            .store
            .sign_in_candidates(ucbridge_store::LoginKey::Username, &user.record.username, 2)
            .await
            .expect("read");
        if let [one] = found.as_slice() {
            if one.cluster == ucbridge_store::SOURCE_CUCM {
                west_userid = Some(one.cucm_userid.clone());
            }
        }
    }
    let west_userid = west_userid.expect("a west user");
    let east_asked = auth_requests(&east_lab);
    let (_, status, body) =
        end_user(&node, json!({"username": west_userid, "password": WEST_PW})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(auth_requests(&west_lab), 1);
    assert_eq!(
        auth_requests(&east_lab),
        east_asked,
        "east was asked about a west user"
    );
    node.shutdown().await;
}
