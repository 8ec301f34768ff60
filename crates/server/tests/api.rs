//! The server over real HTTP: login, CSRF, roles, API tokens, CORS, secrets, connections
//! against the lab, "run now" through the scheduler, metrics and the OpenAPI document.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use ucbridge_auth::SecretBox;
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_server::{RunningServer, Server, ServerConfig};
use ucbridge_store::{Role, Store};

const ADMIN_PW: &str = "Admin-pass-1";
const VIEWER_PW: &str = "Viewer-pass-1";
const LAB_USERS: usize = 40;

struct Fixture {
    server: RunningServer,
    store: Store,
    lab: RunningLab,
    _dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("u.db").display()))
        .await
        .unwrap();
    let lab = RunningLab::start(LabConfig {
        users: LAB_USERS,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    ucbridge_server::auth::set_account(&store, "root", ADMIN_PW, Role::Admin)
        .await
        .unwrap();
    ucbridge_server::auth::set_account(&store, "viewer", VIEWER_PW, Role::ReadOnly)
        .await
        .unwrap();
    let secrets = SecretBox::from_base64(&SecretBox::generate_key_base64(), "test").unwrap();
    let config = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        node_id: Some("test-node".into()),
        lease_ttl: Duration::from_secs(2),
        tick: Duration::from_millis(100),
        cors_origins: vec!["https://portal.example.com".into()],
        ..ServerConfig::default()
    };
    let server = Server::start(store.clone(), secrets, config).await.unwrap();
    Fixture {
        server,
        store,
        lab,
        _dir: dir,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

/// Log in; returns the CSRF token.
async fn login(http: &reqwest::Client, base: &str, user: &str, pw: &str) -> String {
    let r = http
        .post(format!("{base}/api/v1/session"))
        .json(&json!({"username": user, "password": pw}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let body: Value = r.json().await.unwrap();
    body["csrf_token"].as_str().unwrap().to_owned()
}

async fn wait_for_run(http: &reqwest::Client, base: &str, job: &str) -> Value {
    for _ in 0..300 {
        let runs: Value = http
            .get(format!("{base}/api/v1/job-runs?job={job}&limit=1"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(run) = runs.as_array().and_then(|a| a.first()) {
            if run["status"] != "running" {
                return run.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{job} did not finish");
}

#[tokio::test]
async fn login_csrf_roles_connections_and_run_now() {
    let f = start().await;
    let base = f.server.url();
    let anon = reqwest::Client::new();

    // Health needs nothing; the API and metrics need a login.
    assert_eq!(
        anon.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        anon.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = anon
        .get(format!("{base}/api/v1/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(
        anon.get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let r = anon
        .post(format!("{base}/api/v1/session"))
        .json(&json!({"username": "root", "password": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = anon
        .post(format!("{base}/api/v1/session"))
        .json(&json!({"username": "nobody", "password": ADMIN_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let admin = client();
    let csrf = login(&admin, &base, "root", ADMIN_PW).await;
    let status: Value = admin
        .get(format!("{base}/api/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
        .put(format!("{base}/api/v1/connections/cucm"))
        .json(&cucm)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "csrf");
    let r = admin
        .put(format!("{base}/api/v1/connections/cucm"))
        .header("x-csrf-token", "forged")
        .json(&cucm)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = admin
        .put(format!("{base}/api/v1/connections/cucm"))
        .header("x-csrf-token", &csrf)
        .json(&cucm)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(text.contains("\"password_set\":true"), "{text}");
    assert!(
        !text.contains("ucbridge-lab"),
        "the password is never returned: {text}"
    );
    // At rest the password is sealed.
    let raw = f.store.setting("connection.cucm").await.unwrap().unwrap();
    assert!(!raw.value.contains("ucbridge-lab"));
    assert!(raw.secret.is_some());
    // A bad URL is a clear 400.
    let r = admin
        .put(format!("{base}/api/v1/connections/cuc"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"url": "ftp://x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("must start with"));

    // Misspelt fields and malformed JSON are errors in the API's shape.
    let r = admin
        .put(format!("{base}/api/v1/connections/cuc"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"url": "https://cuc.example.com", "usrname": "typo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("usrname"),
        "{body}"
    );
    let r = admin
        .put(format!("{base}/api/v1/connections/cuc"))
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "bad_request"
    );
    // A query string or path segment that does not parse: the same JSON error shape.
    for url in [
        format!("{base}/api/v1/job-runs?limit=ten"),
        format!("{base}/api/v1/job-runs/not-a-number"),
    ] {
        let r = admin.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{url}");
        let body: Value = r.json().await.expect("a JSON error body");
        assert_eq!(body["error"]["code"], "bad_request", "{url}: {body}");
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{body}"
        );
    }

    // Test connection lists the lab's users.
    let r = admin
        .post(format!("{base}/api/v1/connections/cucm/test"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["account_count"], LAB_USERS);
    assert_eq!(report["accounts"].as_array().unwrap().len(), 10);

    // A read-only account reads but cannot run jobs.
    let viewer = client();
    let vcsrf = login(&viewer, &base, "viewer", VIEWER_PW).await;
    assert_eq!(
        viewer
            .get(format!("{base}/api/v1/jobs"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = viewer
        .post(format!("{base}/api/v1/jobs/user_sync/run"))
        .header("x-csrf-token", &vcsrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "read_only"
    );

    // Run now: a full refresh of the snapshot, then the user sync.
    let r = admin
        .post(format!("{base}/api/v1/jobs/snapshot/run"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // The continuous keeper may have refreshed first; a refresh under way refuses the
    // manual one. Either way the snapshot ends up idle with the lab's users.
    let run = wait_for_run(&admin, &base, "snapshot").await;
    assert!(
        ["succeeded", "refused"].contains(&run["status"].as_str().unwrap()),
        "{run}"
    );
    for _ in 0..100 {
        let s: Value = admin
            .get(format!("{base}/api/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["snapshot"]["state"] == "idle" && s["snapshot"]["users_count"] == LAB_USERS {
            assert!(s["snapshot"]["source_updated_at"].is_i64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = admin
        .post(format!("{base}/api/v1/jobs/user_sync/run"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let run = wait_for_run(&admin, &base, "user_sync").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["requested_by"], "root");
    assert_eq!(run["node"], "test-node");
    assert_eq!(run["result"]["summary"]["creates"], LAB_USERS);
    let sync_run_id = run["result"]["sync_run_id"].as_i64().unwrap();
    let detail: Value = admin
        .get(format!("{base}/api/v1/sync-runs/{sync_run_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(detail["plan_json"].is_object(), "{detail}");
    let audit: Value = admin
        .get(format!("{base}/api/v1/audit?run_id={sync_run_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit.as_array().unwrap().len(), LAB_USERS);

    let users: Value = admin
        .get(format!("{base}/api/v1/users?limit=5"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users["total"], LAB_USERS);
    assert_eq!(users["users"].as_array().unwrap().len(), 5);
    let name = users["users"][0]["username"].as_str().unwrap().to_owned();
    // Search looks at identities, not at field names or other users' values.
    let found: Value = admin
        .get(format!("{base}/api/v1/users?q={name}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["total"], 1, "{found}");
    let found: Value = admin
        .get(format!("{base}/api/v1/users?q=source"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["total"], 0, "{found}");
    let one: Value = admin
        .get(format!("{base}/api/v1/users/{name}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["user"]["username"], name);
    assert!(one["device"].is_null());

    // Rules are validated before they are saved.
    let r = admin
        .put(format!("{base}/api/v1/rules"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"max_removal_share": "lots"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = admin
        .put(format!("{base}/api/v1/jobs/user_sync"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"schedule": "every now and then"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = admin
        .put(format!("{base}/api/v1/jobs/user_sync"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"schedule": "every 1h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Metrics: AXL calls by operation, job runs, HTTP requests by route template.
    let metrics = admin
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "ucbridge_job_runs_total{job=\"user_sync\",status=\"succeeded\"} 1",
        "ucbridge_axl_requests_total{operation=\"listUser\",outcome=\"ok\"}",
        "ucbridge_http_requests_total{route=\"/api/v1/users/{username}\"",
        "ucbridge_sync_changes_total{action=\"create\"}",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }

    // Logout ends the session.
    let r = admin
        .delete(format!("{base}/api/v1/session"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        admin
            .get(format!("{base}/api/v1/status"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    f.server.shutdown().await;
}

#[tokio::test]
async fn api_tokens_cors_and_openapi() {
    let f = start().await;
    let base = f.server.url();
    let admin = client();
    let csrf = login(&admin, &base, "root", ADMIN_PW).await;
    let r = admin
        .post(format!("{base}/api/v1/tokens"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "monitoring", "role": "read_only"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(token.starts_with("ucb_"));
    // The token is not kept: listing shows names only.
    let list = admin
        .get(format!("{base}/api/v1/tokens"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains("monitoring") && !list.contains(&token));

    let script = reqwest::Client::new();
    let r = script
        .get(format!("{base}/api/v1/status"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Tokens need no CSRF header, but a read-only token cannot write.
    let r = script
        .post(format!("{base}/api/v1/jobs/user_sync/run"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        script
            .get(format!("{base}/metrics"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = script
        .get(format!("{base}/api/v1/status"))
        .bearer_auth("ucb_forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = script
        .get(format!("{base}/api/v1/status"))
        .header("authorization", "Basic cm9vdDp4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // CORS: the configured origin only, and never with credentials.
    let r = script
        .get(format!("{base}/api/v1/status"))
        .bearer_auth(&token)
        .header("origin", "https://portal.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://portal.example.com"
    );
    assert!(r
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
    let r = script
        .get(format!("{base}/api/v1/status"))
        .bearer_auth(&token)
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let r = script
        .request(reqwest::Method::OPTIONS, format!("{base}/api/v1/status"))
        .header("origin", "https://portal.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://portal.example.com"
    );

    // Revoked tokens stop working at once.
    let r = admin
        .delete(format!("{base}/api/v1/tokens/monitoring"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        script
            .get(format!("{base}/api/v1/status"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // The OpenAPI document is generated from the handlers.
    let doc: Value = script
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    let r = script.get(format!("{base}/")).send().await.unwrap();
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    f.server.shutdown().await;
}

/// The LDAP connection from the API: test it, export (incremental), re-synchronize.
#[tokio::test]
async fn ldap_connection_test_and_export_jobs() {
    let Some(slapd) = ucbridge_testkit::slapd::Slapd::start() else {
        return;
    };
    let f = start().await;
    let base = f.server.url();
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
        f.store.create_local_user(&record).await.unwrap();
    }
    let admin = client();
    let csrf = login(&admin, &base, "root", ADMIN_PW).await;
    let r = admin
        .put(format!("{base}/api/v1/connections/ldap"))
        .header("x-csrf-token", &csrf)
        .json(&json!({
            "url": slapd.url,
            "username": slapd.admin_dn(),
            "password": slapd.admin_password(),
            "options": {"base_dn": slapd.people_dn(), "uid_from": "username", "phone_from": "numeric_phone"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let test = |admin: reqwest::Client, csrf: String, base: String| async move {
        let r = admin
            .post(format!("{base}/api/v1/connections/ldap/test"))
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()
    };
    let before = test(admin.clone(), csrf.clone(), base.clone()).await;
    assert_eq!(before["account_count"], 0, "{before}");

    for job in ["ldap_export", "ldap_resync"] {
        let r = admin
            .post(format!("{base}/api/v1/jobs/{job}/run"))
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let run = wait_for_run(&admin, &base, job).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        let counts = &run["result"]["counts"];
        if job == "ldap_export" {
            assert_eq!(counts["added"], 5, "{run}");
        } else {
            assert_eq!(counts["unchanged"], 5, "{run}");
        }
    }
    let after = test(admin.clone(), csrf.clone(), base.clone()).await;
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
        .put(format!("{base}/api/v1/connections/ldap"))
        .header("x-csrf-token", &csrf)
        .json(&json!({
            "url": slapd.url, "username": slapd.admin_dn(), "password": "Wr0ng-secret",
            "options": {"base_dn": slapd.people_dn()},
        }))
        .send()
        .await
        .unwrap();
    let r = admin
        .post(format!("{base}/api/v1/connections/ldap/test"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("LDAP") && !text.contains("Wr0ng-secret"),
        "{text}"
    );
    f.server.shutdown().await;
}

#[tokio::test]
async fn login_attempts_are_throttled_per_address_and_username() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("u.db").display()))
        .await
        .unwrap();
    ucbridge_server::auth::set_account(&store, "root", ADMIN_PW, Role::Admin)
        .await
        .unwrap();
    let secrets = SecretBox::from_base64(&SecretBox::generate_key_base64(), "test").unwrap();
    let config = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        login_attempts_per_minute: 3,
        run_jobs: false,
        ..ServerConfig::default()
    };
    let server = Server::start(store.clone(), secrets, config).await.unwrap();
    let base = server.url();
    let http = client();
    let attempt = |user: &'static str, pw: &'static str| {
        let http = http.clone();
        let url = format!("{base}/api/v1/session");
        async move {
            http.post(url)
                .json(&json!({"username": user, "password": pw}))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..3 {
        assert_eq!(
            attempt("root", "guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Over the limit: refused before the password is even looked at, the right one too.
    let r = attempt("root", ADMIN_PW).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=21).contains(&retry_after), "{retry_after}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_attempts", "{body}");
    // The address is spent for every username.
    assert_eq!(
        attempt("someone-else", "x").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    server.shutdown().await;
}

#[tokio::test]
async fn serves_https_with_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("u.db").display()))
        .await
        .unwrap();
    ucbridge_server::auth::set_account(&store, "root", ADMIN_PW, Role::Admin)
        .await
        .unwrap();
    let (ca_pem, certificate) = ucbridge_testkit::tls::localhost_certificate();
    let cert_file = dir.path().join("server.pem");
    let key_file = dir.path().join("server.key");
    std::fs::write(&cert_file, &certificate.cert_pem).unwrap();
    std::fs::write(&key_file, &certificate.key_pem).unwrap();
    let secrets = SecretBox::from_base64(&SecretBox::generate_key_base64(), "test").unwrap();
    let config = |tls| ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        run_jobs: false,
        tls,
        ..ServerConfig::default()
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
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    assert_eq!(
        trusting
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // Over HTTPS the session cookie is Secure without being told.
    let r = trusting
        .post(format!("{base}/api/v1/session"))
        .json(&json!({"username": "root", "password": ADMIN_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
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
    let base = f.server.url();
    let admin = client();
    let csrf = login(&admin, &base, "root", ADMIN_PW).await;
    // The lab's IdS without its CA: the certificate cannot be verified.
    let r = admin
        .put(format!("{base}/api/v1/connections/ids"))
        .header("x-csrf-token", &csrf)
        .json(&json!({
            "url": f.lab.ids_token_url(),
            "username": "administrator",
            "password": "ucbridge-lab",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = admin
        .post(format!("{base}/api/v1/connections/ids/test"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("UnknownIssuer"), "{message}");
    assert!(!message.contains("ucbridge-lab"), "{message}");
    f.server.shutdown().await;
}

/// Issue #16 item 1: each kind's options are typed. A mistyped key is a 400 naming it
/// (not a silent default); options are stored as typed; a stored key the kind does not
/// know (a hand-edited database) shows as the view's `problem` and stops the connection's
/// use with a 409 naming it, until the admin saves the connection again.
#[tokio::test]
async fn connection_options_are_typed_per_kind() {
    let f = start().await;
    let base = f.server.url();
    let admin = client();
    let csrf = login(&admin, &base, "root", ADMIN_PW).await;
    let put = |kind: &'static str, body: Value| {
        let (admin, csrf, url) = (
            admin.clone(),
            csrf.clone(),
            format!("{base}/api/v1/connections/{kind}"),
        );
        async move {
            admin
                .put(url)
                .header("x-csrf-token", csrf)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
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
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{kind} {named}");
        let body: Value = r.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{message}");
    }
    assert!(f.store.setting("connection.ldap").await.unwrap().is_none());

    // Stored as typed: blanks dropped, LDAP defaults written out.
    let r = put(
        "ldap",
        json!({"url": "ldap://127.0.0.1:1389", "username": "cn=admin",
               "options": {"base_dn": "ou=people,dc=example,dc=com", "uid_from": "primary_alias", "timeout_secs": 5}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = put(
        "ids",
        json!({"url": f.lab.ids_token_url(), "options": {"client_id": "", "status_url": f.lab.unifiedconfig_url()}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let views: Value = admin
        .get(format!("{base}/api/v1/connections"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
    let mut stored: Value = serde_json::from_str(
        &f.store
            .setting("connection.ldap")
            .await
            .unwrap()
            .unwrap()
            .value,
    )
    .unwrap();
    stored["options"]["export_uid"] = json!("username");
    f.store
        .put_setting(
            "connection.ldap",
            &stored.to_string(),
            ucbridge_store::SecretUpdate::Keep,
            None,
            false,
        )
        .await
        .unwrap();
    let views: Value = admin
        .get(format!("{base}/api/v1/connections"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
        .post(format!("{base}/api/v1/connections/ldap/test"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("export_uid"),
        "{body}"
    );
    f.server.shutdown().await;
}
