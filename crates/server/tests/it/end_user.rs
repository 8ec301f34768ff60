//! End users on the server (issue #12 item 5), against the lab over HTTPS and SQLite:
//! sign-in with the CUCM password or an IdS token, the WebPhone ensured on the first
//! sign-in (and only then, or when missing), the SIP credentials to their own user only,
//! one answer for every refusal, and the confinement of an end-user session to
//! `/api/v1/me` and the session routes, checked for every route of the OpenAPI document.
//! The store's side (sessions apart from admin sessions, no `user` role for admin
//! accounts or tokens) runs on SQLite and, when available, PostgreSQL.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use ucbridge_auth::SecretBox;
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_server::{RunningServer, Server, ServerConfig};
use ucbridge_store::{Role, Store};

use crate::common::{self, ApiClient, ADMIN_PW};

const USER_PW: &str = "ucbridge-user";
const LAB_USERS: usize = 6;

/// One client with its cookie jar and CSRF token (sent, empty, before any sign-in),
/// answering (status, JSON body): a face of [`ApiClient`] for these scenarios.
struct Client(ApiClient);

impl Client {
    fn new(base: &str) -> Client {
        Client(ApiClient::new(base).with_csrf(Some("")))
    }

    /// Send with the CSRF header; status and JSON body (`Null` when not JSON).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.0.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = self.0.send(request).await;
        (answer.status, answer.json)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    /// Sign in at `path`; keeps the CSRF token on success.
    async fn sign_in(&mut self, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, answer) = self.call(Method::POST, path, Some(body)).await;
        if status == StatusCode::OK {
            self.0.csrf = Some(answer["csrf_token"].as_str().unwrap().to_owned());
        }
        (status, answer)
    }
}

struct Fixture {
    server: RunningServer,
    store: Store,
    lab: RunningLab,
    secrets: SecretBox,
    admin: Client,
    _dir: tempfile::TempDir,
}

/// A server with the lab's CUCM and IdS connections and the lab's users synced.
async fn start(signin: ucbridge_signin::SignInFileConfig) -> Fixture {
    let (store, dir) = common::sqlite_store().await;
    let lab = RunningLab::start(LabConfig {
        users: LAB_USERS,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    common::account(&store, "root", ADMIN_PW, Role::Admin).await;
    let secrets = common::secret_box();
    let config = ServerConfig {
        node_id: Some("test-node".into()),
        lease_ttl: Duration::from_secs(2),
        tick: Duration::from_millis(100),
        signin,
        ..common::local_config()
    };
    let server = Server::start(store.clone(), secrets.clone(), config)
        .await
        .unwrap();
    let mut admin = Client::new(&server.url());
    let (status, _) = admin
        .sign_in(
            "/api/v1/session",
            json!({"username": "root", "password": ADMIN_PW}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let f = Fixture {
        server,
        store,
        lab,
        secrets,
        admin,
        _dir: dir,
    };
    f.connect("cucm", f.lab.axl_url()).await;
    f.connect("ids", f.lab.ids_token_url()).await;
    f.sync_users().await;
    f
}

impl Fixture {
    async fn connect(&self, kind: &str, url: String) {
        let (status, body) = self
            .admin
            .call(
                Method::PUT,
                &format!("/api/v1/connections/{kind}"),
                Some(json!({
                    "url": url, "username": "administrator", "password": "ucbridge-lab",
                    "ca_pem": self.lab.ca_certificate_pem().unwrap(),
                })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn run(&self, job: &str) -> Value {
        let (status, body) = self
            .admin
            .call(Method::POST, &format!("/api/v1/jobs/{job}/run"), None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        for _ in 0..600 {
            let (_, runs) = self
                .admin
                .get(&format!("/api/v1/job-runs?job={job}&limit=1"))
                .await;
            if let Some(run) = runs.as_array().and_then(|a| a.first()) {
                if run["status"] != "running" {
                    return run.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{job} did not finish");
    }

    async fn sync_users(&self) {
        let run = self.run("snapshot").await;
        assert!(["succeeded", "refused"].contains(&run["status"].as_str().unwrap()));
        for _ in 0..300 {
            let (_, s) = self.admin.get("/api/v1/status").await;
            if s["snapshot"]["state"] == "idle" && s["snapshot"]["users_count"] == LAB_USERS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let run = self.run("user_sync").await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["result"]["summary"]["creates"], LAB_USERS, "{run}");
    }

    /// The provisioning settings; the devices job's user pattern matches nobody, so only
    /// sign-ins ensure devices here.
    async fn configure_provisioning(&self) {
        let (status, body) = self
            .admin
            .call(
                Method::PUT,
                "/api/v1/provisioning",
                Some(json!({"users": "no-such-user-%", "provisioning": {}})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// (local username, CUCM userid) of the synced users.
    async fn synced(&self) -> Vec<(String, String)> {
        let source = self.store.source_users().await.unwrap();
        let mut out = Vec::new();
        for user in self.store.local_users().await.unwrap() {
            let key = user.record.source_key.clone().unwrap();
            let cucm = source.iter().find(|s| s.uuid == key).unwrap();
            out.push((user.record.username.clone(), cucm.userid.clone()));
        }
        assert_eq!(out.len(), LAB_USERS);
        out
    }

    /// An access token of the lab IdS (password grant).
    async fn token(&self, user: &str, password: &str) -> String {
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.lab.ca_certificate_pem().unwrap().as_bytes())
                    .unwrap(),
            )
            .build()
            .unwrap();
        let r = http
            .post(self.lab.ids_token_url())
            .form(&[
                ("grant_type", "password"),
                ("username", user),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A signed-in end user (SSO).
    async fn sso_user(&self, cucm_userid: &str) -> Client {
        let token = self.token(cucm_userid, USER_PW).await;
        let mut c = Client::new(&self.server.url());
        let (status, body) = c
            .sign_in("/api/v1/me/session", json!({"access_token": token}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["role"], "user");
        c
    }

    /// Audit entries with this action (and username).
    async fn audit(&self, action: &str, username: &str) -> Vec<ucbridge_store::AuditEntry> {
        let all = self.store.audit_log(None, 10_000).await.unwrap();
        all.into_iter()
            .filter(|e| e.action == action && e.username == username)
            .collect()
    }

    /// An AXL-side provisioner over the lab, as the devices job builds it.
    async fn provisioner(&self) -> ucbridge_provision::Provisioner {
        let mut config = ucbridge_axl::AxlConfig::new(
            self.lab.axl_url(),
            "administrator",
            ucbridge_axl::Secret::new("ucbridge-lab".to_owned()),
        );
        config.ca_pem = self.lab.ca_certificate_pem().map(str::to_owned);
        let client = ucbridge_axl::AxlClient::connect(config).await.unwrap();
        ucbridge_provision::Provisioner::new(
            client,
            self.store.clone(),
            ucbridge_provision::ProvisioningConfig::default()
                .compile()
                .unwrap(),
            self.secrets.clone(),
        )
    }
}

#[tokio::test]
async fn sso_sign_in_ensures_the_webphone_once_and_only_its_user_reads_the_credentials() {
    let f = start(Default::default()).await;
    f.configure_provisioning().await;
    let users = f.synced().await;
    let (alice, alice_id) = users[0].clone();
    let bob_id = users[1].1.clone();

    let me = f.sso_user(&alice_id).await;
    let (status, session) = me.get("/api/v1/session").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["role"], "user");
    assert_eq!(session["username"], alice.as_str());
    let (_, profile) = me.get("/api/v1/me").await;
    assert_eq!(profile["username"], alice.as_str(), "{profile}");
    assert_eq!(profile["cucm_userid"], alice_id.as_str());
    assert_eq!(profile["signed_in_with"], "sso");
    assert!(profile["first_signin_at"].is_i64());

    // The first sign-in created the WebPhone (digest user = the user) through the engine.
    let (_, device) = me.get("/api/v1/me/device").await;
    assert_eq!(device["status"], "ready", "{device}");
    assert_eq!(
        device["device_name"],
        ucbridge_provision::device_name("UCB", &alice_id).as_str()
    );
    assert_eq!(device["digest_user"], alice_id.as_str());
    assert!(device["problem"].is_null(), "{device}");
    let shown = f.provisioner().await.show(&alice_id).await.unwrap();
    assert_eq!(
        shown.device.as_ref().and_then(|p| p.digest_user.as_deref()),
        Some(alice_id.as_str())
    );
    assert!(shown.associated && shown.problems.is_empty(), "{shown:?}");
    assert!(
        !device.to_string().contains("password\""),
        "no password in the device view"
    );

    // The SIP credentials: the digest password ucbridge sealed for this user.
    let (status, creds) = me.get("/api/v1/me/device/sip-credentials").await;
    assert_eq!(status, StatusCode::OK, "{creds}");
    let record = f
        .store
        .provisioned_device(&alice_id)
        .await
        .unwrap()
        .unwrap();
    let sealed = f
        .secrets
        .open(&alice_id, &record.digest_password_enc, &record.key_id)
        .unwrap();
    assert_eq!(creds["password"], sealed.expose());
    assert_eq!(creds["digest_user"], alice_id.as_str());
    assert_eq!(f.audit("webphone_ensured", &alice).await.len(), 1);
    assert_eq!(f.audit("end_user_signin", &alice).await.len(), 1);
    let reads = f.audit("sip_credentials_read", &alice).await;
    assert_eq!(reads.len(), 1);
    let audit_text = format!("{:?}", f.store.audit_log(None, 10_000).await.unwrap());
    assert!(
        !audit_text.contains(sealed.expose()),
        "no password in the audit log"
    );

    // Bob sees his own device and credentials, never Alice's.
    let bob_client = f.sso_user(&bob_id).await;
    let (_, bob_creds) = bob_client.get("/api/v1/me/device/sip-credentials").await;
    assert_eq!(bob_creds["digest_user"], bob_id.as_str());
    assert_ne!(bob_creds["password"], creds["password"]);

    // A second sign-in does not ensure again; a missing device is ensured again.
    let _again = f.sso_user(&alice_id).await;
    assert_eq!(f.audit("end_user_signin", &alice).await.len(), 2);
    assert_eq!(f.audit("webphone_ensured", &alice).await.len(), 1);
    f.provisioner().await.remove(&alice_id).await.unwrap();
    let (_, gone) = me.get("/api/v1/me/device").await;
    assert_eq!(gone["status"], "none", "{gone}");
    let _third = f.sso_user(&alice_id).await;
    assert_eq!(f.audit("webphone_ensured", &alice).await.len(), 2);
    let (_, back) = me.get("/api/v1/me/device").await;
    assert_eq!(back["status"], "ready", "{back}");

    // Sign out: the session is gone.
    let (status, _) = me.call(Method::DELETE, "/api/v1/session", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(me.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(f.audit("end_user_signout", &alice).await.len(), 1);
    f.server.shutdown().await;
}

/// Every operation of the OpenAPI document as (method, path with sample parameters).
async fn documented_operations(admin: &Client) -> Vec<(Method, String)> {
    let (_, doc) = admin.get("/openapi.json").await;
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (name, method) in [
            ("get", Method::GET),
            ("put", Method::PUT),
            ("post", Method::POST),
            ("delete", Method::DELETE),
        ] {
            if item.get(name).is_some() {
                let sample = path
                    .replace("{job}", "user_sync")
                    .replace("{kind}", "cucm")
                    .replace(['{', '}'], "");
                out.push((method, sample));
            }
        }
    }
    out
}

#[tokio::test]
async fn an_end_user_session_reaches_only_its_own_routes() {
    let f = start(Default::default()).await;
    let users = f.synced().await;
    let me = f.sso_user(&users[0].1).await;
    let public = ["/healthz", "/readyz"];
    let session_routes = ["/api/v1/session", "/api/v1/session/password"];

    // Public: as for anyone.
    for path in public {
        assert_eq!(me.get(path).await.0, StatusCode::OK, "{path}");
    }
    // Every documented admin route, read or write, refuses the session with 403 — the
    // CSRF header is sent, so the refusal is the role's.
    let operations = documented_operations(&f.admin).await;
    let mut checked = 0;
    for (method, path) in &operations {
        let own = path.starts_with("/api/v1/me");
        if own || public.contains(&path.as_str()) || path == "/api/v1/session" {
            continue;
        }
        // The mail server's passdb takes its own bearer token, never a session: without a
        // configured token it does not exist (404), with one a session is not it (401).
        if path == "/api/v1/passdb" {
            let (status, answer) = me.call(method.clone(), path, Some(json!({}))).await;
            assert!(
                [StatusCode::NOT_FOUND, StatusCode::UNAUTHORIZED].contains(&status),
                "{method} {path}: {status} {answer}"
            );
            continue;
        }
        let body = (*method != Method::GET && *method != Method::DELETE).then(|| json!({}));
        let (status, answer) = me.call(method.clone(), path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "end_user", "{method} {path}");
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} routes documented?");
    assert!(operations
        .iter()
        .any(|(m, p)| *m == Method::GET && p == "/api/v1/status"));
    assert!(operations
        .iter()
        .any(|(m, p)| *m == Method::POST && p == "/api/v1/jobs/user_sync/run"));
    assert!(session_routes
        .iter()
        .all(|r| operations.iter().any(|(_, p)| p == r)));
    // The read route classes by name too (a route missing from the document is still
    // refused): reads, admin writes, the audit log, metrics.
    for (method, path) in [
        (Method::GET, "/api/v1/users"),
        (Method::GET, "/api/v1/audit"),
        (Method::GET, "/metrics"),
        (Method::GET, "/api/v1/tokens"),
        (Method::PUT, "/api/v1/rules"),
        (Method::POST, "/api/v1/tokens"),
        (Method::DELETE, "/api/v1/connections/ids"),
    ] {
        let (status, _) = me.call(method.clone(), path, Some(json!({}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    // Its own routes and whoami answer; a write without the CSRF header does not.
    for path in ["/api/v1/me", "/api/v1/me/voicemail", "/api/v1/me/device"] {
        assert_eq!(me.get(path).await.0, StatusCode::OK, "{path}");
    }
    let (status, who) = me.get("/api/v1/session").await;
    assert_eq!(
        (status, who["role"].as_str()),
        (StatusCode::OK, Some("user"))
    );
    let forged = Client(me.0.with_csrf(Some("forged")));
    let (status, answer) = forged
        .call(Method::POST, "/api/v1/me/device/ensure", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(answer["error"]["code"], "csrf");

    // The me routes take only an end user: not an admin session, not an API token, not
    // anyone.
    for path in ["/api/v1/me", "/api/v1/me/device/sip-credentials"] {
        let (status, answer) = f.admin.get(path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(answer["error"]["code"], "not_end_user");
        assert_eq!(
            Client::new(&f.server.url()).get(path).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let token = "ucb_end_user_test_token_0123456789";
    f.store
        .create_api_token("t", &ucbridge_server::auth::token_hash(token), Role::Admin)
        .await
        .unwrap();
    ApiClient::with_token(&f.server.url(), token)
        .get("/api/v1/me")
        .await
        .expect(StatusCode::FORBIDDEN);
    f.server.shutdown().await;
}

#[tokio::test]
async fn refusals_are_one_answer_and_a_provisioning_problem_does_not_block() {
    let f = start(ucbridge_signin::SignInFileConfig {
        attempts_per_minute_per_user: Some(3),
        refusal_delay: Some("200ms".into()),
        ..Default::default()
    })
    .await;
    let users = f.synced().await;
    let (carol, carol_id) = users[2].clone();
    // Eve's attempts go wrong: they spend her sign-in budget (3 a minute), not Carol's.
    let eve_id = users[5].1.clone();
    let base = f.server.url();
    let attempt = |body: Value| {
        let base = base.clone();
        async move {
            let mut c = Client::new(&base);
            c.sign_in("/api/v1/me/session", body).await
        }
    };

    // SSO refusals: a token never issued, a revoked user's, one naming no synced user.
    let revoked = users[3].1.clone();
    let revoked_token = f.token(&revoked, USER_PW).await;
    f.lab.ids().revoke_user(&revoked);
    let admin_token = f.token("administrator", "ucbridge-lab").await;
    let forged = "MjpkMTI2NDgyOS1mMDg1LTRhY2UtOGM3Yy1hMmY0ZjQ0ODUxNGQ";
    let mut answers = Vec::new();
    for token in [forged, revoked_token.as_str(), admin_token.as_str()] {
        let (status, body) = attempt(json!({"access_token": token})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        answers.push(body);
    }
    // CUCM password refusals: wrong password, unknown user.
    for (login, pw) in [
        (eve_id.as_str(), "wrong-password"),
        ("nobody-here", USER_PW),
    ] {
        let (status, body) = attempt(json!({"username": login, "password": pw})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        answers.push(body);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let refused = f.store.audit_log(None, 10_000).await.unwrap();
    let reasons: Vec<&str> = refused
        .iter()
        .filter(|e| e.action == "end_user_signin_refused")
        .filter_map(|e| e.after.as_deref())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("inactive")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no synced local user")),
        "{reasons:?}"
    );
    // The password refusals' reasons are in the audit log too (the sign-in service's).
    let password_reasons: Vec<&str> = refused
        .iter()
        .filter(|e| e.action == "sign_in_refused")
        .filter_map(|e| e.after.as_deref())
        .collect();
    assert!(
        password_reasons.iter().any(|r| r.contains("unknown user"))
            && password_reasons
                .iter()
                .any(|r| r.contains("refused by CUCM")),
        "{password_reasons:?}"
    );

    // Bad input is a clean 400; neither nor both credentials too.
    for body in [
        json!({"username": eve_id, "password": "x".repeat(4000)}),
        json!({"username": eve_id, "password": "pass\u{0}word"}),
        json!({"access_token": "not a token"}),
        json!({}),
        json!({"username": eve_id, "password": USER_PW, "access_token": forged}),
    ] {
        let (status, answer) = attempt(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }

    // Provisioning not configured: the sign-in works, the page shows why there is no
    // device, the audit log has it; once configured, "ensure" makes it.
    let (status, body) = {
        let mut c = Client::new(&base);
        let r = c
            .sign_in(
                "/api/v1/me/session",
                json!({"username": carol_id, "password": USER_PW}),
            )
            .await;
        let device = c.get("/api/v1/me/device").await.1;
        assert_eq!(device["status"], "none", "{device}");
        assert!(
            device["problem"]
                .as_str()
                .is_some_and(|p| p.contains("not configured")),
            "{device}"
        );
        f.configure_provisioning().await;
        let (status, ensured) = c.call(Method::POST, "/api/v1/me/device/ensure", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ensured["status"], "ready", "{ensured}");
        assert!(ensured["problem"].is_null(), "{ensured}");
        r
    };
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "user");
    assert_eq!(f.audit("webphone_failed", &carol).await.len(), 1);
    assert_eq!(f.audit("webphone_ensured", &carol).await.len(), 1);

    // Throttled: Eve's budget is spent (a wrong and two bad passwords), so even the right
    // password gets 429 with Retry-After, before CUCM is asked.
    let r = ApiClient::new(&base)
        .post_json(
            "/api/v1/me/session",
            &json!({"username": eve_id, "password": USER_PW}),
        )
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));

    // Without the ids connection SSO cannot be checked: 503, not a refusal.
    let (status, _) = f
        .admin
        .call(Method::DELETE, "/api/v1/connections/ids", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = attempt(json!({"access_token": forged})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    f.server.shutdown().await;
}

#[tokio::test]
async fn an_admin_name_that_is_also_a_cucm_userid_stays_two_accounts() {
    let f = start(Default::default()).await;
    let users = f.synced().await;
    let (dave, dave_id) = users[4].clone();
    // An admin account with the same name as a CUCM user, and another password.
    ucbridge_server::auth::set_account(&f.store, &dave_id, ADMIN_PW, Role::Admin)
        .await
        .unwrap();
    let base = f.server.url();
    // The CUCM password opens the user page, never the admin API...
    let mut user = Client::new(&base);
    let (status, body) = user
        .sign_in(
            "/api/v1/me/session",
            json!({"username": dave_id, "password": USER_PW}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["role"].as_str(), body["username"].as_str()),
        (Some("user"), Some(dave.as_str()))
    );
    assert_eq!(user.get("/api/v1/status").await.0, StatusCode::FORBIDDEN);
    let mut admin_try = Client::new(&base);
    let (status, _) = admin_try
        .sign_in(
            "/api/v1/session",
            json!({"username": dave_id, "password": USER_PW}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // ...and the admin password opens the admin API, never the user page.
    let (status, _) = Client::new(&base)
        .sign_in(
            "/api/v1/me/session",
            json!({"username": dave_id, "password": ADMIN_PW}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut admin = Client::new(&base);
    let (status, body) = admin
        .sign_in(
            "/api/v1/session",
            json!({"username": dave_id, "password": ADMIN_PW}),
        )
        .await;
    assert_eq!(
        (status, body["role"].as_str()),
        (StatusCode::OK, Some("admin"))
    );
    assert_eq!(admin.get("/api/v1/me").await.0, StatusCode::FORBIDDEN);
    f.server.shutdown().await;
}

/// The store's side on SQLite and (when available) PostgreSQL: migration 0010, sessions
/// apart from admin sessions, first sign-in, the `user` role refused for admin accounts
/// and API tokens.
#[tokio::test]
async fn end_user_sessions_are_stored_apart_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec![
        Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .unwrap(),
    ];
    if let Some(url) = ucbridge_testkit::postgres_database() {
        stores.push(Store::open(&url).await.unwrap());
    }
    for store in stores {
        let id = store
            .create_local_user(&ucbridge_store::UserRecord {
                username: "erin".into(),
                source: "local".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        store
            .create_end_user_session(&ucbridge_store::NewEndUserSession {
                token_hash: "h1",
                user_id: id,
                cucm_userid: "erin",
                method: ucbridge_store::SignInMethod::Sso,
                csrf_token: "c1",
                expires_at: ucbridge_store::now_millis() + 60_000,
            })
            .await
            .unwrap();
        let s = store.end_user_session("h1").await.unwrap().unwrap();
        assert_eq!((s.username.as_str(), s.user_id), ("erin", id));
        assert_eq!(s.method, ucbridge_store::SignInMethod::Sso);
        assert!(
            store.session("h1").await.unwrap().is_none(),
            "not an admin session"
        );
        assert!(store.note_end_user_signin(id).await.unwrap());
        assert!(!store.note_end_user_signin(id).await.unwrap());
        store
            .record_webphone_check(id, Some("no provisioning"))
            .await
            .unwrap();
        let state = store.end_user_state(id).await.unwrap().unwrap();
        assert_eq!(state.webphone_problem.as_deref(), Some("no provisioning"));
        assert!(store
            .local_user_for_cucm_userid("erin")
            .await
            .unwrap()
            .is_none());
        store.delete_end_user_session("h1").await.unwrap();
        assert!(store.end_user_session("h1").await.unwrap().is_none());
        assert!(store
            .upsert_admin_account("erin", "$argon2id$x", Role::User)
            .await
            .is_err());
        assert!(store.create_api_token("t", "th", Role::User).await.is_err());
    }
    assert!(serde_json::from_str::<Role>("\"user\"").is_err());
    assert_eq!(serde_json::to_string(&Role::User).unwrap(), "\"user\"");
}
