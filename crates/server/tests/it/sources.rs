//! Directory sources in the server against a real slapd (syncprov overlay): a
//! `[sources.corp]` LDAP source kept by its `source:corp` job, its state served by
//! `/api/v1/sources`, a full refresh on request (admin only), and a wrong bind password
//! shown as `failed` with the reason — never the password. A further CUCM cluster
//! (`[sources.east] kind = "cucm"`, a second lab) kept by `source:east`, and the devices
//! job provisioning each cluster's users on that cluster (a user synced from one cluster
//! who also appears on another keeps the device on its own; a cluster that does not answer
//! stops none of the others).

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

/// The lab's AXL client (the lab's CA trusted).
async fn lab_axl(lab: &ucbridge_lab::RunningLab) -> ucbridge_axl::AxlClient {
    let defaults = ucbridge_lab::LabConfig::default();
    let mut config =
        ucbridge_axl::AxlConfig::new(lab.axl_url(), defaults.username, defaults.password);
    config.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    ucbridge_axl::AxlClient::connect(config)
        .await
        .expect("the lab answers AXL")
}

/// Whether the lab holds the phone `name` (getPhone).
async fn has_phone(client: &ucbridge_axl::AxlClient, name: &str) -> bool {
    match client.get_phone(ucbridge_axl::Key::Name(name)).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("getPhone {name}: {e}"),
    }
}

#[tokio::test]
async fn a_cucm_cluster_is_kept_as_a_source_and_its_users_get_devices_on_it() {
    use ucbridge_lab::{LabConfig, RunningLab};
    let west_lab = RunningLab::start(LabConfig {
        users: 2,
        ..LabConfig::default()
    })
    .await
    .expect("the west lab starts");
    let east_lab = RunningLab::start(LabConfig {
        users: 0,
        seed: 7,
        ..LabConfig::default()
    })
    .await
    .expect("the east lab starts");
    let (west, east) = (lab_axl(&west_lab).await, lab_axl(&east_lab).await);
    east.add_user(&ucbridge_axl::NewUser {
        userid: "east.only".into(),
        last_name: "East".into(),
        ..ucbridge_axl::NewUser::default()
    })
    .await
    .expect("a user of east");

    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("east-ca.pem");
    std::fs::write(&ca, east_lab.ca_certificate_pem().expect("the lab's CA")).expect("CA file");
    let defaults = LabConfig::default();
    let settings: ucbridge_sync::CucmSourceSettings = toml::from_str(&format!(
        "url = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\nca_file = \"{}\"\n",
        east_lab.axl_url(),
        defaults.username,
        defaults.password,
        ca.display()
    ))
    .expect("a cluster table");
    // A cluster nothing answers for (a port that was just free).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let down: ucbridge_sync::CucmSourceSettings = toml::from_str(&format!(
        "url = \"https://127.0.0.1:{port}/axl/\"\nusername = \"axl\"\npassword = \"pw\"\n"
    ))
    .expect("a cluster table");
    let node = TestNode::start(ServerConfig {
        lease_ttl: Duration::from_secs(3),
        tick: Duration::from_millis(100),
        sources: vec![
            ("east".to_owned(), SourceConfig::Cucm(settings)),
            ("down".to_owned(), SourceConfig::Cucm(down)),
        ],
        ..common::local_config()
    })
    .await;
    let admin = node.admin().await;
    admin
        .put_json(
            "/api/v1/connections/cucm",
            &serde_json::json!({
                "url": west_lab.axl_url(), "username": defaults.username,
                "password": defaults.password,
                "ca_pem": west_lab.ca_certificate_pem(),
            }),
        )
        .await
        .expect(StatusCode::OK);

    // The job keeps the cluster; "Refresh now" runs one full refresh of it.
    let source = wait_for_source(&admin, "east", |s| {
        s["state"] == "idle" && s["users_count"] == 1
    })
    .await;
    assert_eq!(
        (source["kind"].as_str(), source["cluster"].as_str()),
        (Some("cucm"), Some("east"))
    );
    assert_eq!(source["job"], "source:east");
    admin
        .post("/api/v1/sources/east/refresh")
        .await
        .expect(StatusCode::ACCEPTED);
    let run = admin.wait_for_run("source:east").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["result"]["source"], "east", "{run}");

    // User sync over both clusters records each user's cluster.
    wait_for_source(&admin, "cucm", |s| {
        s["state"] == "idle" && s["users_count"] == 2
    })
    .await;
    admin
        .put_json(
            "/api/v1/rules",
            &serde_json::json!({"sources": ["cucm", "east"]}),
        )
        .await
        .expect(StatusCode::OK);
    admin.run_job("user_sync").await;
    let run = admin.wait_for_run("user_sync").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["result"]["summary"]["creates"], 3, "{run}");
    let west_user = west
        .list_users(
            &ucbridge_axl::UserSearch {
                userid: Some("%".into()),
                ..Default::default()
            },
            &[ucbridge_axl::UserTag::Userid],
        )
        .await
        .expect("west's users")
        .into_iter()
        .find_map(|u| u.userid)
        .expect("a west user");
    let mut clusters_of = Vec::new();
    for user in node.store.local_users().await.expect("local users") {
        let cluster = node
            .store
            .user_cluster_source(&user.record.username)
            .await
            .expect("read");
        clusters_of.push((user.record.username, cluster));
    }
    assert_eq!(
        clusters_of
            .iter()
            .filter(|(_, c)| c.as_deref() == Some("east"))
            .count(),
        1,
        "{clusters_of:?}"
    );
    // West's user turns up on east too after the sync: still west's user.
    east.add_user(&ucbridge_axl::NewUser {
        userid: west_user.clone(),
        last_name: "Twin".into(),
        ..ucbridge_axl::NewUser::default()
    })
    .await
    .expect("west's user on east");
    // A userid on both clusters that sync never linked: whose device it is is unknown.
    for lab in [&west, &east] {
        lab.add_user(&ucbridge_axl::NewUser {
            userid: "twin.unsynced".into(),
            last_name: "Twin".into(),
            ..ucbridge_axl::NewUser::default()
        })
        .await
        .expect("an unsynced twin");
    }

    // Devices for everyone: each cluster's users on that cluster, reported per cluster.
    admin
        .put_json(
            "/api/v1/provisioning",
            &serde_json::json!({"users": "%", "provisioning": {}}),
        )
        .await
        .expect(StatusCode::OK);
    admin.run_job("devices").await;
    let run = admin.wait_for_run("devices").await;
    // The cluster that does not answer fails the run, not the other clusters' users.
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["result"]["clusters"][2]["cluster"], "down", "{run}");
    assert!(run["result"]["clusters"][2]["error"].is_string(), "{run}");
    let clusters = &run["result"]["clusters"];
    assert_eq!(clusters[0]["cluster"], "cucm", "{run}");
    assert_eq!(clusters[0]["outcomes"]["created"], 2, "{run}");
    assert_eq!(clusters[1]["cluster"], "east", "{run}");
    assert_eq!(clusters[1]["outcomes"]["created"], 1, "{run}");
    assert_eq!(clusters[1]["on_another_cluster"], 1, "{run}");
    for cluster in [&clusters[0], &clusters[1]] {
        assert_eq!(
            cluster["on_several_clusters"],
            serde_json::json!(["twin.unsynced"]),
            "{run}"
        );
    }
    assert!(node
        .store
        .provisioned_device("twin.unsynced")
        .await
        .expect("read")
        .is_none());
    let device = node
        .store
        .provisioned_device("east.only")
        .await
        .expect("read")
        .expect("a device was provisioned")
        .device_name;
    assert!(has_phone(&east, &device).await, "{device} is on east");
    assert!(!has_phone(&west, &device).await, "{device} is not on west");
    let west_device = node
        .store
        .provisioned_device(&west_user)
        .await
        .expect("read")
        .expect("a west device")
        .device_name;
    assert!(has_phone(&west, &west_device).await);
    assert!(!has_phone(&east, &west_device).await);
    node.shutdown().await;
}
