//! Directory sources in the server against a real slapd (syncprov overlay): a
//! `[sources.corp]` LDAP source kept by its `source:corp` job, its state served by
//! `/api/v1/sources`, a full refresh on request (admin only), and a wrong bind password
//! shown as `failed` with the reason — never the password.

use std::collections::HashSet;
use std::time::Duration;

use axum::http::StatusCode;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};
use serde_json::Value;
use ucbridge_auth::Secret;
use ucbridge_server::{Server, ServerConfig};
use ucbridge_store::Role;
use ucbridge_sync::{LdapSourceSettings, SourceConfig};
use ucbridge_testkit::slapd::{Slapd, SlapdFeatures, SlapdOptions};

use crate::common::{self, ApiClient, TestNode};

const WRONG_PASSWORD: &str = "Wr0ng-bind-secret-4711";

async fn directory_admin(slapd: &Slapd) -> Ldap {
    let (driver, mut ldap) = LdapConnAsync::with_settings(LdapConnSettings::new(), &slapd.url)
        .await
        .expect("slapd answers");
    ldap3::drive!(driver);
    ldap.simple_bind(slapd.admin_dn(), slapd.admin_password())
        .await
        .expect("the bind is answered")
        .success()
        .expect("the admin binds");
    ldap
}

async fn add_person(ldap: &mut Ldap, people: &str, uid: &str) {
    let attrs: Vec<(&str, HashSet<&str>)> = vec![
        ("objectClass", HashSet::from(["inetOrgPerson"])),
        ("uid", HashSet::from([uid])),
        ("cn", HashSet::from([uid])),
        ("sn", HashSet::from(["Person"])),
        ("givenName", HashSet::from(["Test"])),
    ];
    ldap.add(&format!("uid={uid},{people}"), attrs)
        .await
        .expect("the add is answered")
        .success()
        .expect("the person is added");
}

fn config(slapd: &Slapd, password: &str) -> ServerConfig {
    let settings = LdapSourceSettings::new(
        slapd.url.clone(),
        slapd.admin_dn(),
        Secret::new(password),
        slapd.people_dn(),
    );
    ServerConfig {
        lease_ttl: Duration::from_secs(3),
        tick: Duration::from_millis(100),
        sources: vec![("corp".to_owned(), SourceConfig::Ldap(settings))],
        ..common::local_config()
    }
}

/// The source `name` of `GET /api/v1/sources` once `ready` holds (bounded: 30 s).
async fn wait_for_source(client: &ApiClient, name: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        let list = client
            .get("/api/v1/sources")
            .await
            .expect(StatusCode::OK)
            .json;
        if let Some(s) = list
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == name))
        {
            if ready(s) {
                return s.clone();
            }
            last = s.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("source {name} never got there; last seen: {last}");
}

#[tokio::test]
async fn an_ldap_source_runs_as_a_job_and_is_refreshed_on_request() {
    let features = SlapdFeatures {
        syncprov: true,
        ad_schema: false,
    };
    let Some(slapd) = Slapd::start_with_features(SlapdOptions::default(), features) else {
        return;
    };
    let mut ldap = directory_admin(&slapd).await;
    for uid in ["ann", "bob", "cyd"] {
        add_person(&mut ldap, slapd.people_dn(), uid).await;
    }
    let node = TestNode::start(config(&slapd, slapd.admin_password())).await;
    let admin = node.admin().await;

    // The job keeps the source: idle with the three people, the default cucm listed too.
    let corp = wait_for_source(&admin, "corp", |s| {
        s["state"] == "idle" && s["users_count"] == 3
    })
    .await;
    assert_eq!(corp["kind"], "ldap");
    assert_eq!(corp["job"], "source:corp");
    assert_eq!(corp["problem_count"], 0);
    assert!(corp["source_updated_at"].as_i64().is_some(), "{corp}");
    let list = admin.get("/api/v1/sources").await.json;
    assert_eq!(list[0]["name"], "cucm", "{list}");
    assert_eq!(list[0]["job"], "snapshot");
    assert_eq!(list[0]["state"], "empty");
    let jobs = admin.get("/api/v1/jobs").await.json;
    let job = jobs
        .as_array()
        .and_then(|a| a.iter().find(|j| j["job"] == "source:corp"))
        .expect("the source's job is listed")
        .clone();
    assert_eq!(job["mode"], "continuous");
    assert_eq!(job["here"]["held_here"], true, "{job}");
    let one = admin
        .get("/api/v1/sources/corp")
        .await
        .expect(StatusCode::OK);
    assert_eq!(one.json["users_count"], 3);

    // "Refresh now" as an admin: one full refresh that reads the new fourth person.
    add_person(&mut ldap, slapd.people_dn(), "dee").await;
    let asked = admin
        .post("/api/v1/sources/corp/refresh")
        .await
        .expect(StatusCode::ACCEPTED);
    assert_eq!(asked.json["job"], "source:corp");
    let run = admin.wait_for_run("source:corp").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["result"]["entries_read"], 4, "{run}");
    wait_for_source(&admin, "corp", |s| s["users_count"] == 4).await;

    // A read-only token reads but cannot refresh; unknown sources are 404.
    let token = "ucb_sources_readonly_0123456789abcdef";
    node.store
        .create_api_token(
            "viewer",
            &ucbridge_server::auth::token_hash(token),
            Role::ReadOnly,
        )
        .await
        .expect("the token is saved");
    let viewer = ApiClient::with_token(&node.url(), token);
    viewer.get("/api/v1/sources").await.expect(StatusCode::OK);
    viewer
        .post("/api/v1/sources/corp/refresh")
        .await
        .expect(StatusCode::FORBIDDEN);
    node.client()
        .get("/api/v1/sources")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    admin
        .get("/api/v1/sources/nosuch")
        .await
        .expect(StatusCode::NOT_FOUND);
    admin
        .post("/api/v1/sources/nosuch/refresh")
        .await
        .expect(StatusCode::NOT_FOUND);
    node.shutdown().await;
}

#[tokio::test]
async fn a_wrong_bind_password_fails_the_source_with_the_reason_and_no_password() {
    let Some(slapd) = Slapd::start() else {
        return;
    };
    let node = TestNode::start(config(&slapd, WRONG_PASSWORD)).await;
    let admin = node.admin().await;
    let corp = wait_for_source(&admin, "corp", |s| s["state"] == "failed").await;
    let reason = corp["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("refused the bind"), "{corp}");
    assert_eq!(corp["users_count"], 0);

    // "Refresh now" fails the run with the same reason.
    admin
        .post("/api/v1/sources/corp/refresh")
        .await
        .expect(StatusCode::ACCEPTED);
    let run = admin.wait_for_run("source:corp").await;
    assert_eq!(run["status"], "failed", "{run}");

    // The password is in no answer.
    for path in [
        "/api/v1/sources",
        "/api/v1/sources/corp",
        "/api/v1/jobs",
        "/api/v1/job-runs?job=source:corp",
    ] {
        let text = admin.get(path).await.expect(StatusCode::OK).text;
        assert!(!text.contains(WRONG_PASSWORD), "{path}: {text}");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn a_source_that_cannot_work_stops_the_server_from_starting() {
    let (store, _dir) = common::sqlite_store().await;
    let mut settings = LdapSourceSettings::new(
        "http://directory.invalid",
        "cn=reader",
        Secret::new(WRONG_PASSWORD),
        "dc=example",
    );
    settings.page_size = 10;
    let config = ServerConfig {
        sources: vec![("bad".to_owned(), SourceConfig::Ldap(settings))],
        ..common::local_config()
    };
    let err = match Server::start(store, common::secret_box(), config).await {
        Ok(_) => panic!("a source with an http:// URL was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("[sources.bad]") && err.contains("ldap://"),
        "{err}"
    );
    assert!(!err.contains(WRONG_PASSWORD), "{err}");
}
