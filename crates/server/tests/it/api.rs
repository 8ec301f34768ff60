//! The server over real HTTP: login, CSRF, roles, API tokens, CORS, secrets, connections
//! against the lab, "run now" through the scheduler, metrics and the OpenAPI document.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_server::{Server, ServerConfig};
use ucbridge_store::Role;

use crate::common::{self, ApiClient, TestNode, ADMIN_PW};

const VIEWER_PW: &str = "Viewer-pass-1";
const LAB_USERS: usize = 40;

/// A node (accounts `root` and `viewer`, one CORS origin) and the lab.
struct Fixture {
    node: TestNode,
    lab: RunningLab,
}

async fn start() -> Fixture {
    let lab = RunningLab::start(LabConfig {
        users: LAB_USERS,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let node = TestNode::start(ServerConfig {
        node_id: Some("test-node".into()),
        lease_ttl: Duration::from_secs(2),
        tick: Duration::from_millis(100),
        cors_origins: vec!["https://portal.example.com".into()],
        ..common::local_config()
    })
    .await;
    common::account(&node.store, "viewer", VIEWER_PW, Role::ReadOnly).await;
    Fixture { node, lab }
}

#[tokio::test]
async fn login_csrf_roles_connections_and_run_now() {
    let f = start().await;
    let anon = f.node.client();

    // Health needs nothing; the API and metrics need a login.
    anon.get("/healthz").await.expect(StatusCode::OK);
    anon.get("/readyz").await.expect(StatusCode::OK);
    let r = anon
        .get("/api/v1/status")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "unauthorized");
    anon.get("/metrics").await.expect(StatusCode::UNAUTHORIZED);
    for (user, pw) in [("root", "wrong"), ("nobody", ADMIN_PW)] {
        anon.post_json(
            "/api/v1/session",
            &json!({"username": user, "password": pw}),
        )
        .await
        .expect(StatusCode::UNAUTHORIZED);
    }

    let admin = f.node.admin().await;
    let status = admin.get("/api/v1/status").await.json;
    assert_eq!(status["data_source_type"], "CUCM (AXL)");
    assert_eq!(status["snapshot"]["state"], "empty");
    let user_sync = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "user_sync")
        .unwrap();
    assert_eq!(
        user_sync["here"]["blocked"],
        "configure the cucm connection first"
    );

    // A write with the cookie but without the CSRF header is refused.
    let cucm = json!({
        "url": f.lab.axl_url(),
        "username": "administrator",
        "password": "ucbridge-lab",
        "ca_pem": f.lab.ca_certificate_pem().unwrap(),
    });
    let r = admin
        .with_csrf(None)
        .put_json("/api/v1/connections/cucm", &cucm)
        .await
        .expect(StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "csrf");
    admin
        .with_csrf(Some("forged"))
        .put_json("/api/v1/connections/cucm", &cucm)
        .await
        .expect(StatusCode::FORBIDDEN);
    let text = admin
        .put_json("/api/v1/connections/cucm", &cucm)
        .await
        .expect(StatusCode::OK)
        .text;
    assert!(text.contains("\"password_set\":true"), "{text}");
    assert!(
        !text.contains("ucbridge-lab"),
        "the password is never returned: {text}"
    );
    // At rest the password is sealed.
    let raw = f
        .node
        .store
        .setting("connection.cucm")
        .await
        .unwrap()
        .unwrap();
    assert!(!raw.value.contains("ucbridge-lab"));
    assert!(raw.secret.is_some());
    // A bad URL is a clear 400.
    let r = admin
        .put_json("/api/v1/connections/cuc", &json!({"url": "ftp://x"}))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert!(r.text.contains("must start with"), "{}", r.text);

    // Misspelt fields and malformed JSON are errors in the API's shape.
    let r = admin
        .put_json(
            "/api/v1/connections/cuc",
            &json!({"url": "https://cuc.example.com", "usrname": "typo"}),
        )
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error_message().contains("usrname"), "{}", r.json);
    let r = admin
        .send(
            admin
                .request(Method::PUT, "/api/v1/connections/cuc")
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "bad_request");
    // A query string or path segment that does not parse: the same JSON error shape.
    for path in [
        "/api/v1/job-runs?limit=ten",
        "/api/v1/job-runs/not-a-number",
    ] {
        let r = admin.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(r.json.is_object(), "{path}: a JSON error body: {}", r.text);
        assert_eq!(r.error_code(), "bad_request", "{path}: {}", r.json);
        assert!(!r.error_message().is_empty(), "{}", r.json);
    }

    // Test connection lists the lab's users.
    let report = admin
        .post("/api/v1/connections/cucm/test")
        .await
        .expect(StatusCode::OK)
        .json;
    assert_eq!(report["ok"], true);
    assert_eq!(report["account_count"], LAB_USERS);
    assert_eq!(report["accounts"].as_array().unwrap().len(), 10);

    // A read-only account reads but cannot run jobs.
    let viewer = f.node.login("viewer", VIEWER_PW).await;
    viewer.get("/api/v1/jobs").await.expect(StatusCode::OK);
    let r = viewer
        .post("/api/v1/jobs/user_sync/run")
        .await
        .expect(StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "read_only");

    // Run now: a full refresh of the snapshot, then the user sync.
    admin.run_job("snapshot").await;
    // The continuous keeper may have refreshed first; a refresh under way refuses the
    // manual one. Either way the snapshot ends up idle with the lab's users.
    let run = admin.wait_for_run("snapshot").await;
    assert!(
        ["succeeded", "refused"].contains(&run["status"].as_str().unwrap()),
        "{run}"
    );
    for _ in 0..100 {
        let s = admin.get("/api/v1/status").await.json;
        if s["snapshot"]["state"] == "idle" && s["snapshot"]["users_count"] == LAB_USERS {
            assert!(s["snapshot"]["source_updated_at"].is_i64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin.run_job("user_sync").await;
    let run = admin.wait_for_run("user_sync").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["requested_by"], "root");
    assert_eq!(run["node"], "test-node");
    assert_eq!(run["result"]["summary"]["creates"], LAB_USERS);
    let sync_run_id = run["result"]["sync_run_id"].as_i64().unwrap();
    let detail = admin
        .get(&format!("/api/v1/sync-runs/{sync_run_id}"))
        .await
        .json;
    assert!(detail["plan_json"].is_object(), "{detail}");
    let audit = admin
        .get(&format!("/api/v1/audit?run_id={sync_run_id}"))
        .await
        .json;
    assert_eq!(audit.as_array().unwrap().len(), LAB_USERS);

    let users = admin.get("/api/v1/users?limit=5").await.json;
    assert_eq!(users["total"], LAB_USERS);
    assert_eq!(users["users"].as_array().unwrap().len(), 5);
    let name = users["users"][0]["username"].as_str().unwrap().to_owned();
    // Search looks at identities, not at field names or other users' values.
    let found = admin.get(&format!("/api/v1/users?q={name}")).await.json;
    assert_eq!(found["total"], 1, "{found}");
    let found = admin.get("/api/v1/users?q=source").await.json;
    assert_eq!(found["total"], 0, "{found}");
    let one = admin.get(&format!("/api/v1/users/{name}")).await.json;
    assert_eq!(one["user"]["username"], name);
    assert!(one["device"].is_null());

    // Rules are validated before they are saved.
    admin
        .put_json("/api/v1/rules", &json!({"max_removal_share": "lots"}))
        .await
        .expect(StatusCode::BAD_REQUEST);
    admin
        .put_json(
            "/api/v1/jobs/user_sync",
            &json!({"schedule": "every now and then"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    admin
        .put_json("/api/v1/jobs/user_sync", &json!({"schedule": "every 1h"}))
        .await
        .expect(StatusCode::OK);

    // Metrics: AXL calls by operation, job runs, HTTP requests by route template.
    let metrics = admin.get("/metrics").await.text;
    for needle in [
        "ucbridge_job_runs_total{job=\"user_sync\",status=\"succeeded\"} 1",
        "ucbridge_axl_requests_total{operation=\"listUser\",outcome=\"ok\"}",
        "ucbridge_http_requests_total{route=\"/api/v1/users/{username}\"",
        "ucbridge_sync_changes_total{action=\"create\"}",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }

    // Logout ends the session.
    admin
        .delete("/api/v1/session")
        .await
        .expect(StatusCode::NO_CONTENT);
    admin
        .get("/api/v1/status")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    f.node.shutdown().await;
}

#[tokio::test]
async fn api_tokens_cors_and_openapi() {
    let f = start().await;
    let base = f.node.url();
    let admin = f.node.admin().await;
    let token = admin
        .post_json(
            "/api/v1/tokens",
            &json!({"name": "monitoring", "role": "read_only"}),
        )
        .await
        .expect(StatusCode::CREATED)
        .json["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(token.starts_with("ucb_"));
    // The token is not kept: listing shows names only.
    let list = admin.get("/api/v1/tokens").await.text;
    assert!(list.contains("monitoring") && !list.contains(&token));

    let script = ApiClient::with_token(&base, &token);
    script.get("/api/v1/status").await.expect(StatusCode::OK);
    // Tokens need no CSRF header, but a read-only token cannot write.
    script
        .post("/api/v1/jobs/user_sync/run")
        .await
        .expect(StatusCode::FORBIDDEN);
    script.get("/metrics").await.expect(StatusCode::OK);
    ApiClient::with_token(&base, "ucb_forged")
        .get("/api/v1/status")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let anon = ApiClient::new(&base);
    anon.send(
        anon.request(Method::GET, "/api/v1/status")
            .header("authorization", "Basic cm9vdDp4"),
    )
    .await
    .expect(StatusCode::UNAUTHORIZED);

    // CORS: the configured origin only, and never with credentials.
    let r = script
        .send(
            script
                .request(Method::GET, "/api/v1/status")
                .header("origin", "https://portal.example.com"),
        )
        .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://portal.example.com")
    );
    assert!(r.header("access-control-allow-credentials").is_none());
    let r = script
        .send(
            script
                .request(Method::GET, "/api/v1/status")
                .header("origin", "https://evil.example.net"),
        )
        .await;
    assert!(r.header("access-control-allow-origin").is_none());
    let r = anon
        .send(
            anon.request(Method::OPTIONS, "/api/v1/status")
                .header("origin", "https://portal.example.com")
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization"),
        )
        .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://portal.example.com")
    );

    // Revoked tokens stop working at once.
    admin
        .delete("/api/v1/tokens/monitoring")
        .await
        .expect(StatusCode::NO_CONTENT);
    script
        .get("/api/v1/status")
        .await
        .expect(StatusCode::UNAUTHORIZED);

    // The OpenAPI document is generated from the handlers.
    let doc = anon.get("/openapi.json").await.json;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/status",
        "/api/v1/jobs/{job}/run",
        "/api/v1/connections/{kind}/test",
        "/metrics",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
    // The admin page is served with a strict CSP.
    let r = anon.get("/").await;
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));
    f.node.shutdown().await;
}

/// The LDAP connection from the API: test it, export (incremental), re-synchronize.
#[tokio::test]
async fn ldap_connection_test_and_export_jobs() {
    let Some(slapd) = ucbridge_testkit::slapd::Slapd::start() else {
        return;
    };
    let f = start().await;
    for i in 0..5 {
        let record = ucbridge_store::UserRecord {
            username: format!("ldapuser{i}"),
            first_name: Some("Lee".into()),
            last_name: Some(format!("Dap{i}")),
            email: Some(format!("ldapuser{i}@example.com")),
            extension: Some(format!("+1 (555) 01{i}")),
            source: "local".into(),
            ..ucbridge_store::UserRecord::default()
        };
        f.node.store.create_local_user(&record).await.unwrap();
    }
    let admin = f.node.admin().await;
    admin
        .put_json(
            "/api/v1/connections/ldap",
            &json!({
                "url": slapd.url,
                "username": slapd.admin_dn(),
                "password": slapd.admin_password(),
                "options": {"base_dn": slapd.people_dn(), "uid_from": "username", "phone_from": "numeric_phone"},
            }),
        )
        .await
        .expect(StatusCode::OK);
    let before = admin
        .post("/api/v1/connections/ldap/test")
        .await
        .expect(StatusCode::OK)
        .json;
    assert_eq!(before["account_count"], 0, "{before}");

    for job in ["ldap_export", "ldap_resync"] {
        admin.run_job(job).await;
        let run = admin.wait_for_run(job).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let counts = &run["result"]["counts"];
        if job == "ldap_export" {
            assert_eq!(counts["added"], 5, "{run}");
        } else {
            assert_eq!(counts["unchanged"], 5, "{run}");
        }
    }
    let after = admin
        .post("/api/v1/connections/ldap/test")
        .await
        .expect(StatusCode::OK)
        .json;
    assert_eq!(after["account_count"], 5, "{after}");
    assert!(
        after["accounts"][0]
            .as_str()
            .unwrap()
            .starts_with("uid=ldapuser"),
        "{after}"
    );

    // A wrong bind password is a clear 502 naming LDAP, and never echoes the password.
    admin
        .put_json(
            "/api/v1/connections/ldap",
            &json!({
                "url": slapd.url, "username": slapd.admin_dn(), "password": "Wr0ng-secret",
                "options": {"base_dn": slapd.people_dn()},
            }),
        )
        .await;
    let text = admin
        .post("/api/v1/connections/ldap/test")
        .await
        .expect(StatusCode::BAD_GATEWAY)
        .text;
    assert!(
        text.contains("LDAP") && !text.contains("Wr0ng-secret"),
        "{text}"
    );
    f.node.shutdown().await;
}

#[tokio::test]
async fn login_attempts_are_throttled_per_address_and_username() {
    let node = TestNode::start(ServerConfig {
        login_attempts_per_minute: 3,
        run_jobs: false,
        ..common::local_config()
    })
    .await;
    let http = node.client();
    let attempt = |user: &'static str, pw: &'static str| {
        let http = http.clone();
        async move {
            http.post_json(
                "/api/v1/session",
                &json!({"username": user, "password": pw}),
            )
            .await
        }
    };
    for _ in 0..3 {
        attempt("root", "guess")
            .await
            .expect(StatusCode::UNAUTHORIZED);
    }
    // Over the limit: refused before the password is even looked at, the right one too.
    let r = attempt("root", ADMIN_PW)
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=21).contains(&retry_after), "{retry_after}");
    assert_eq!(r.error_code(), "too_many_attempts", "{}", r.json);
    // The address is spent for every username.
    attempt("someone-else", "x")
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    node.shutdown().await;
}

#[tokio::test]
async fn serves_https_with_its_own_certificate() {
    let (store, dir) = common::sqlite_store().await;
    common::account(&store, "root", ADMIN_PW, Role::Admin).await;
    let (ca_pem, certificate) = ucbridge_testkit::tls::localhost_certificate();
    let cert_file = dir.path().join("server.pem");
    let key_file = dir.path().join("server.key");
    std::fs::write(&cert_file, &certificate.cert_pem).unwrap();
    std::fs::write(&key_file, &certificate.key_pem).unwrap();
    let secrets = common::secret_box();
    let config = |tls| ServerConfig {
        run_jobs: false,
        tls,
        ..common::local_config()
    };

    // A key that is not one is refused at start, naming the file.
    let wrong = ucbridge_server::TlsFiles {
        cert_file: cert_file.clone(),
        key_file: cert_file.clone(),
    };
    let err = Server::start(store.clone(), secrets.clone(), config(Some(wrong)))
        .await
        .err()
        .expect("a certificate is not a key");
    assert!(err.to_string().contains("server.pem"), "{err}");

    let tls = ucbridge_server::TlsFiles {
        cert_file,
        key_file,
    };
    let server = Server::start(store, secrets, config(Some(tls)))
        .await
        .unwrap();
    let base = server.url();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let trusting = ApiClient::with_http(
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap(),
        &base,
    );
    trusting.get("/healthz").await.expect(StatusCode::OK);
    // Over HTTPS the session cookie is Secure without being told.
    let r = trusting
        .post_json(
            "/api/v1/session",
            &json!({"username": "root", "password": ADMIN_PW}),
        )
        .await
        .expect(StatusCode::OK);
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // A client that does not trust the CA, and plain HTTP on the same port, get nowhere.
    assert!(reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err());
    let plain = base.replacen("https://", "http://", 1);
    let answered = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    assert!(!answered, "plain HTTP must not be served on the HTTPS port");
    server.shutdown().await;
}

/// Issue 18: an API error keeps its cause ("UnknownIssuer"), not only "error sending
/// request".
#[tokio::test]
async fn test_connection_errors_keep_their_cause() {
    let f = start().await;
    let admin = f.node.admin().await;
    // The lab's IdS without its CA: the certificate cannot be verified.
    admin
        .put_json(
            "/api/v1/connections/ids",
            &json!({
                "url": f.lab.ids_token_url(),
                "username": "administrator",
                "password": "ucbridge-lab",
            }),
        )
        .await
        .expect(StatusCode::OK);
    let r = admin
        .post("/api/v1/connections/ids/test")
        .await
        .expect(StatusCode::BAD_GATEWAY);
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(!message.contains("ucbridge-lab"), "{message}");
    f.node.shutdown().await;
}

/// Issue #16 item 1: each kind's options are typed. A mistyped key is a 400 naming it
/// (not a silent default); options are stored as typed; a stored key the kind does not
/// know (a hand-edited database) shows as the view's `problem` and stops the connection's
/// use with a 409 naming it, until the admin saves the connection again.
#[tokio::test]
async fn connection_options_are_typed_per_kind() {
    let f = start().await;
    let admin = f.node.admin().await;
    let put = |kind: &str, body: Value| {
        let (admin, path) = (admin.clone(), format!("/api/v1/connections/{kind}"));
        async move { admin.put_json(&path, &body).await }
    };
    for (kind, body, named) in [
        (
            "cucm",
            json!({"url": f.lab.axl_url(), "options": {"schema_versoin": "14.0"}}),
            "schema_versoin",
        ),
        (
            "cucm",
            json!({"url": f.lab.axl_url(), "options": {"schema_version": "9.1"}}),
            "9.1",
        ),
        (
            "ldap",
            json!({"url": "ldap://127.0.0.1:1389", "options": {"base_dn": "ou=p", "uid_form": "username"}}),
            "uid_form",
        ),
        (
            "ldap",
            json!({"url": "ldap://127.0.0.1:1389", "options": {"base_dn": "ou=p", "phone_from": "fax"}}),
            "fax",
        ),
        (
            "imap",
            json!({"url": "imaps://mail.example.com", "options": {"security": "plain"}}),
            "imap://",
        ),
    ] {
        let r = put(kind, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{kind} {named}");
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{message}");
    }
    assert!(f
        .node
        .store
        .setting("connection.ldap")
        .await
        .unwrap()
        .is_none());

    // Stored as typed: blanks dropped, LDAP defaults written out.
    put(
        "ldap",
        json!({"url": "ldap://127.0.0.1:1389", "username": "cn=admin",
               "options": {"base_dn": "ou=people,dc=example,dc=com", "uid_from": "primary_alias", "timeout_secs": 5}}),
    )
    .await
    .expect(StatusCode::OK);
    put(
        "ids",
        json!({"url": f.lab.ids_token_url(), "options": {"client_id": "", "status_url": f.lab.unifiedconfig_url()}}),
    )
    .await
    .expect(StatusCode::OK);
    let views = admin.get("/api/v1/connections").await.json;
    let options = |kind: &str| {
        views
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["kind"] == kind)
            .unwrap()["settings"]["options"]
            .clone()
    };
    assert_eq!(
        options("ldap"),
        json!({"base_dn": "ou=people,dc=example,dc=com", "object_classes": ["inetOrgPerson"],
               "uid_from": "primary_alias", "phone_from": "phone", "naming_attribute": "uid",
               "removal": "delete_created", "timeout_secs": 5})
    );
    assert_eq!(
        options("ids"),
        json!({"status_url": f.lab.unifiedconfig_url()})
    );

    // A stored key the kind does not know: shown, and named when the connection is used.
    let store = &f.node.store;
    let mut stored: Value = serde_json::from_str(
        &store
            .setting("connection.ldap")
            .await
            .unwrap()
            .unwrap()
            .value,
    )
    .unwrap();
    stored["options"]["export_uid"] = json!("username");
    store
        .put_setting(
            "connection.ldap",
            &stored.to_string(),
            ucbridge_store::SecretUpdate::Keep,
            None,
            false,
        )
        .await
        .unwrap();
    let views = admin.get("/api/v1/connections").await.json;
    let ldap = views
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["kind"] == "ldap")
        .unwrap();
    assert!(
        ldap["problem"].as_str().unwrap().contains("export_uid"),
        "{ldap}"
    );
    let r = admin
        .post("/api/v1/connections/ldap/test")
        .await
        .expect(StatusCode::CONFLICT);
    assert!(r.error_message().contains("export_uid"), "{}", r.json);
    f.node.shutdown().await;
}
