//! Shared helpers of the server's integration tests: a node on a temporary SQLite store
//! ([`TestNode`]), a typed client of its API ([`ApiClient`] answering [`Answer`]s), and the
//! same application without a socket ([`App`], driven with `tower::ServiceExt::oneshot`).
//! A test then reads as the scenario it checks: `admin.put_json(path, &body).await
//! .expect(StatusCode::OK)` instead of a hand-written reqwest chain.

#![allow(dead_code)] // not every module of the binary uses every helper

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;
use ucbridge_auth::SecretBox;
use ucbridge_server::{RunningServer, Server, ServerConfig};
use ucbridge_store::{Role, Store};

/// The password of the `root` admin account every [`TestNode`] and [`App`] has.
pub const ADMIN_PW: &str = "Admin-pass-1";

/// A fresh SQLite store in a temporary directory (kept alive by the returned guard).
pub async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(&format!("sqlite://{}", dir.path().join("u.db").display()))
        .await
        .expect("the SQLite store opens");
    (store, dir)
}

/// A fresh secret key.
pub fn secret_box() -> SecretBox {
    SecretBox::from_base64(&SecretBox::generate_key_base64(), "test").expect("a generated key")
}

/// A node configuration on 127.0.0.1, any free port; the rest as the defaults.
pub fn local_config() -> ServerConfig {
    ServerConfig {
        bind: "127.0.0.1:0".parse().expect("an address"),
        ..ServerConfig::default()
    }
}

/// Create (or reset) an account.
pub async fn account(store: &Store, name: &str, password: &str, role: Role) {
    ucbridge_server::auth::set_account(store, name, password, role)
        .await
        .expect("the account is saved");
}

/// A started node on its own SQLite store, with the `root` admin account ([`ADMIN_PW`]).
/// Call [`TestNode::shutdown`] at the end.
pub struct TestNode {
    pub server: RunningServer,
    pub store: Store,
    pub secrets: SecretBox,
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// Start a node with `config` (see [`local_config`]).
    pub async fn start(config: ServerConfig) -> TestNode {
        let (store, dir) = sqlite_store().await;
        account(&store, "root", ADMIN_PW, Role::Admin).await;
        let secrets = secret_box();
        let server = Server::start(store.clone(), secrets.clone(), config)
            .await
            .expect("the server starts");
        TestNode {
            server,
            store,
            secrets,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// A client without a session.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.url())
    }

    /// A client logged in as `user` (see [`ApiClient::login`]).
    pub async fn login(&self, user: &str, password: &str) -> ApiClient {
        let mut client = self.client();
        client.login(user, password).await;
        client
    }

    /// A client logged in as `root`.
    pub async fn admin(&self) -> ApiClient {
        self.login("root", ADMIN_PW).await
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// One client of the API: a cookie jar (the session), the CSRF token of its login, and
/// optionally an API token sent as `Authorization: Bearer`.
#[derive(Clone)]
pub struct ApiClient {
    pub http: reqwest::Client,
    pub base: String,
    pub csrf: Option<String>,
    pub bearer: Option<String>,
}

impl ApiClient {
    /// A client with its own cookie jar, no session yet.
    pub fn new(base: &str) -> ApiClient {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .expect("a reqwest client");
        ApiClient::with_http(http, base)
    }

    /// A client over a given reqwest client (e.g. one trusting a test CA).
    pub fn with_http(http: reqwest::Client, base: &str) -> ApiClient {
        ApiClient {
            http,
            base: base.to_owned(),
            csrf: None,
            bearer: None,
        }
    }

    /// A client that authenticates with an API token only (no cookies).
    pub fn with_token(base: &str, token: &str) -> ApiClient {
        ApiClient {
            bearer: Some(token.to_owned()),
            ..ApiClient::with_http(reqwest::Client::new(), base)
        }
    }

    /// The same session (shared cookie jar) sending `csrf` instead of its own token
    /// (`None`: no CSRF header at all).
    pub fn with_csrf(&self, csrf: Option<&str>) -> ApiClient {
        ApiClient {
            csrf: csrf.map(str::to_owned),
            ..self.clone()
        }
    }

    /// Log in with `POST /api/v1/session`, expecting 200, a `HttpOnly; SameSite=Strict`
    /// session cookie and a CSRF token, which the client keeps for its writes.
    pub async fn login(&mut self, user: &str, password: &str) -> Answer {
        let answer = self
            .post_json(
                "/api/v1/session",
                &json!({"username": user, "password": password}),
            )
            .await
            .expect(StatusCode::OK);
        let cookie = answer.header("set-cookie").unwrap_or_default().to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let csrf = answer.json["csrf_token"]
            .as_str()
            .unwrap_or_else(|| panic!("a CSRF token in {}", answer.json));
        self.csrf = Some(csrf.to_owned());
        answer
    }

    /// A request to `path` (under the base URL) with the client's CSRF header and token;
    /// for the odd header, send it with [`ApiClient::send`].
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(csrf) = &self.csrf {
            request = request.header("x-csrf-token", csrf);
        }
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Send a request built with [`ApiClient::request`].
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let r = request.send().await.expect("the server answers");
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("a complete body");
        Answer::new(status, headers, text)
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(Method::GET, path)).await
    }

    /// `POST` without a body.
    pub async fn post(&self, path: &str) -> Answer {
        self.send(self.request(Method::POST, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Answer {
        self.send(self.request(Method::PUT, path).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(Method::DELETE, path)).await
    }

    /// `POST /api/v1/jobs/{job}/run`, expecting 202 Accepted.
    pub async fn run_job(&self, job: &str) -> Answer {
        self.post(&format!("/api/v1/jobs/{job}/run"))
            .await
            .expect(StatusCode::ACCEPTED)
    }

    /// The latest run of `job` once it is no longer running (bounded: 30 s).
    pub async fn wait_for_run(&self, job: &str) -> Value {
        for _ in 0..300 {
            let runs = self
                .get(&format!("/api/v1/job-runs?job={job}&limit=1"))
                .await
                .json;
            if let Some(run) = runs.as_array().and_then(|a| a.first()) {
                if run["status"] != "running" {
                    return run.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{job} did not finish");
    }
}

/// One answer: status, headers, the body as text and (when it is JSON) parsed.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    /// `Value::Null` when the body is not JSON.
    pub json: Value,
}

impl Answer {
    fn new(status: StatusCode, headers: HeaderMap, text: String) -> Answer {
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    /// Assert the status (the body is in the failure message); the answer for chaining.
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Answer {
        assert_eq!(self.status, status, "{}", self.text);
        self
    }

    /// A header's value, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of an error in the API's shape ("" when absent).
    pub fn error_code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or_default()
    }

    /// `error.message` of an error in the API's shape ("" when absent).
    pub fn error_message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or_default()
    }
}

/// The node's application without a socket ([`Server::router`]): requests go through
/// `tower::ServiceExt::oneshot`. The store has the `root` admin account ([`ADMIN_PW`]).
pub struct App {
    pub router: axum::Router,
    pub store: Store,
    _dir: tempfile::TempDir,
}

impl App {
    pub async fn new(config: ServerConfig) -> App {
        let (store, dir) = sqlite_store().await;
        account(&store, "root", ADMIN_PW, Role::Admin).await;
        let router = Server::router(store.clone(), secret_box(), config)
            .await
            .expect("the router is built");
        App {
            router,
            store,
            _dir: dir,
        }
    }

    /// Send one request through the router.
    pub async fn call(&self, request: Request<Body>) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body under 1 MiB");
        Answer::new(
            status,
            headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    /// A request with optional extra headers and JSON body.
    pub fn request(
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Request<Body> {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("a valid request")
    }

    pub async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> Answer {
        self.call(App::request(Method::GET, uri, headers, None))
            .await
    }
}
