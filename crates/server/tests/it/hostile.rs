//! The server against hostile clients and upstreams (issue 18): half-open and idle
//! connections, a flood of idle sockets, slow bodies, junk methods, forged log lines,
//! and "Test connection" against a CUCM that trickles.
//!
//! Every wait is bounded; timeouts are configured short so the tests need no tight
//! timing: they only check that the server acts well within a generous bound.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ucbridge_auth::SecretBox;
use ucbridge_server::{HttpLimits, RunningServer, Server, ServerConfig};
use ucbridge_store::{Role, Store};
use ucbridge_testkit::hostile::{Behaviour, HostileServer};

const ADMIN_PW: &str = "Admin-pass-1";
/// The bound on every "the server closes it" wait: far above the configured timeouts.
const BOUND: Duration = Duration::from_secs(30);

struct Node {
    server: RunningServer,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn node(change: impl FnOnce(&mut ServerConfig)) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("u.db").display()))
        .await
        .unwrap();
    ucbridge_server::auth::set_account(&store, "root", ADMIN_PW, Role::Admin)
        .await
        .unwrap();
    let secrets = SecretBox::from_base64(&SecretBox::generate_key_base64(), "test").unwrap();
    let mut config = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        run_jobs: false,
        ..ServerConfig::default()
    };
    change(&mut config);
    let server = Server::start(store.clone(), secrets, config).await.unwrap();
    Node {
        server,
        store,
        _dir: dir,
    }
}

fn short_timeouts(c: &mut ServerConfig) {
    c.http = HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        max_connections: 64,
    };
}

/// Reads until the peer closes (`true`), or gives up after `bound` (`false`). What the
/// server may send first (an error response) is skipped.
async fn closed_by_peer(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(bound, read_all).await.is_ok()
}

async fn login(http: &reqwest::Client, base: &str) -> String {
    let r = http
        .post(format!("{base}/api/v1/session"))
        .json(&json!({"username": "root", "password": ADMIN_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn cookie_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

#[tokio::test]
async fn silent_half_header_and_idle_keep_alive_connections_are_closed() {
    let n = node(short_timeouts).await;
    let addr = n.server.addr();
    // Connects and says nothing.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Sends half a request head.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // Completes one request, then keeps the connection open without another.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 64];
    let got = tokio::time::timeout(BOUND, kept.read(&mut first))
        .await
        .expect("an answer")
        .unwrap();
    assert!(
        first[..got].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        &first[..got]
    );
    for (what, stream) in [
        ("silent", &mut silent),
        ("half a header", &mut half),
        ("idle keep-alive", &mut kept),
    ] {
        assert!(
            closed_by_peer(stream, BOUND).await,
            "{what}: still open after {BOUND:?}"
        );
    }
    n.server.shutdown().await;
}

#[tokio::test]
async fn a_body_that_never_completes_is_cut_off() {
    let n = node(short_timeouts).await;
    let mut slow = TcpStream::connect(n.server.addr()).await.unwrap();
    slow.write_all(
        b"POST /api/v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"username\": \"ro",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(BOUND, slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection stayed open past {BOUND:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 4"),
        "expected a 4xx or a close: {text}"
    );
    n.server.shutdown().await;
}

#[tokio::test]
async fn healthz_answers_while_idle_sockets_fill_the_connection_limit() {
    const LIMIT: usize = 20;
    const IDLE: usize = 200;
    let n = node(|c| {
        // Long timeouts: only the limit's eviction of idle sockets can make room here.
        c.http.header_read_timeout = Duration::from_secs(120);
        c.http.idle_timeout = Duration::from_secs(120);
        c.http.max_connections = LIMIT;
    })
    .await;
    let addr = n.server.addr();
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(s);
    }
    let http = reqwest::Client::builder().timeout(BOUND).build().unwrap();
    let r = http
        .get(format!("{}/healthz", n.server.url()))
        .send()
        .await
        .expect("/healthz answers while idle sockets hold the limit");
    assert_eq!(r.status(), StatusCode::OK);
    // The server holds at most LIMIT of them: the others were closed to make room.
    let checks = idle
        .iter_mut()
        .map(|s| closed_by_peer(s, Duration::from_secs(5)));
    let closed = futures::future::join_all(checks)
        .await
        .into_iter()
        .filter(|c| *c)
        .count();
    assert!(
        closed >= IDLE - LIMIT,
        "only {closed} of {IDLE} idle sockets were closed with a limit of {LIMIT}"
    );
    n.server.shutdown().await;
}

#[tokio::test]
async fn https_handshakes_that_never_come_are_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, certificate) = ucbridge_testkit::tls::localhost_certificate();
    let cert_file = dir.path().join("server.pem");
    let key_file = dir.path().join("server.key");
    std::fs::write(&cert_file, &certificate.cert_pem).unwrap();
    std::fs::write(&key_file, &certificate.key_pem).unwrap();
    let n = node(|c| {
        short_timeouts(c);
        c.tls = Some(ucbridge_server::TlsFiles {
            cert_file,
            key_file,
        });
    })
    .await;
    let mut silent = TcpStream::connect(n.server.addr()).await.unwrap();
    assert!(
        closed_by_peer(&mut silent, BOUND).await,
        "a TCP connection without a TLS handshake stayed open"
    );
    n.server.shutdown().await;
}

#[tokio::test]
async fn junk_methods_share_one_metrics_label() {
    let n = node(|c| c.metrics_public = true).await;
    let http = reqwest::Client::new();
    let base = n.server.url();
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("JUNKMETHOD{i}").as_bytes()).unwrap();
        let r = http
            .request(method, format!("{base}/api/v1/no-such-thing-{i}"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("JUNKMETHOD"), "{metrics}");
    assert!(!metrics.contains("no-such-thing"), "{metrics}");
    assert!(
        metrics.contains("method=\"other\"") && metrics.contains("route=\"unmatched\""),
        "{metrics}"
    );
    n.server.shutdown().await;
}

/// Everything the server logs in this test binary.
fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Capture(sink.clone()))
            .try_init();
        log
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded, in case a regression floods the log.
        if log.len() < 64 << 20 {
            log.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn login_names_cannot_forge_or_flood_log_lines() {
    let log = captured_log();
    let n = node(|_| {}).await;
    let base = n.server.url();
    let http = reqwest::Client::new();
    let attempt = |username: String| {
        let http = http.clone();
        let url = format!("{base}/api/v1/session");
        async move {
            http.post(url)
                .json(&json!({"username": username, "password": "guess"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let forged = "eve\nFORGEDMARK 2026-01-01T00:00:00.000000Z  INFO ucbridge_server::api: logged in username=root";
    assert_eq!(attempt(forged.into()).await, StatusCode::UNAUTHORIZED);
    let long = format!("LONGMARK{}", "z".repeat(100_000));
    assert_eq!(attempt(long).await, StatusCode::PAYLOAD_TOO_LARGE);
    let medium = format!("MEDIUMMARK{}", "z".repeat(8_000));
    assert_eq!(attempt(medium).await, StatusCode::UNAUTHORIZED);
    // 1.9 MB: refused by size before it is parsed, throttled, looked up or logged.
    let huge = "y".repeat(1_900_000);
    assert_eq!(attempt(huge).await, StatusCode::PAYLOAD_TOO_LARGE);

    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    let forged_lines: Vec<&str> = text.lines().filter(|l| l.contains("FORGEDMARK")).collect();
    assert!(
        !forged_lines.is_empty(),
        "the refused login is logged:\n{text}"
    );
    for line in &forged_lines {
        assert!(
            line.contains("login refused") && line.contains("eve\\nFORGEDMARK"),
            "a username started its own log line: {line}"
        );
    }
    let medium_lines: Vec<&str> = text.lines().filter(|l| l.contains("MEDIUMMARK")).collect();
    assert!(!medium_lines.is_empty(), "{text}");
    for line in medium_lines {
        assert!(line.len() < 400, "a {} byte log line", line.len());
    }
    assert!(
        !text.contains("LONGMARK"),
        "an over-size body reached the log"
    );
    n.server.shutdown().await;
}

#[tokio::test]
async fn test_connection_of_a_trickling_cucm_times_out() {
    // Headers at once, then one byte a second: every read makes progress, so only a
    // total deadline ends it.
    let body = b"<?xml version=\"1.0\"?><soapenv:Envelope>".repeat(100);
    let upstream = HostileServer::start(Behaviour::Trickle {
        status: 200,
        body,
        every: Duration::from_secs(1),
    });
    let n = node(|c| c.connection_test_timeout = Duration::from_secs(2)).await;
    let base = n.server.url();
    let admin = cookie_client();
    let csrf = login(&admin, &base).await;
    let r = admin
        .put(format!("{base}/api/v1/connections/cucm"))
        .header("x-csrf-token", &csrf)
        .json(&json!({
            "url": format!("{}/axl/", upstream.base_url()),
            "username": "administrator",
            "password": "Tr1ckle-secret",
            "options": {"schema_version": "14.0"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = admin
        .post(format!("{base}/api/v1/connections/cucm/test"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("Test connection answers well within the client's 60 s");
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("timed out after 2 s"), "{message}");
    assert!(!message.contains("Tr1ckle-secret"), "{message}");
    let health = admin.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    n.server.shutdown().await;
}

#[tokio::test]
async fn a_request_that_hangs_past_request_timeout_loses_its_connection() {
    // An upstream that never answers, and a test deadline longer than request_timeout:
    // the listener's own bound ends the request.
    let upstream = HostileServer::start(Behaviour::Silent);
    let n = node(|c| {
        c.http.request_timeout = Duration::from_secs(2);
        c.connection_test_timeout = Duration::from_secs(600);
    })
    .await;
    let base = n.server.url();
    let admin = cookie_client();
    let csrf = login(&admin, &base).await;
    let r = admin
        .put(format!("{base}/api/v1/connections/cucm"))
        .header("x-csrf-token", &csrf)
        .json(&json!({
            "url": format!("{}/axl/", upstream.base_url()),
            "username": "administrator",
            "password": "S1lent-secret",
            "options": {"schema_version": "14.0"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let started = std::time::Instant::now();
    let r = admin
        .post(format!("{base}/api/v1/connections/cucm/test"))
        .header("x-csrf-token", &csrf)
        .timeout(BOUND)
        .send()
        .await;
    let err = r.expect_err("the connection is closed, no answer");
    assert!(
        !err.is_timeout(),
        "closed by the server, not by the client's {BOUND:?}: {err}"
    );
    assert!(started.elapsed() < BOUND);
    assert_eq!(
        admin
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    n.server.shutdown().await;
}

// --- secrets (item 6) -------------------------------------------------------------------

#[tokio::test]
async fn a_connection_moved_elsewhere_needs_its_password_again() {
    let n = node(|_| {}).await;
    let base = n.server.url();
    let admin = cookie_client();
    let csrf = login(&admin, &base).await;
    let put = |body: Value| {
        let (admin, csrf, url) = (
            admin.clone(),
            csrf.clone(),
            format!("{base}/api/v1/connections/cucm"),
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
    let saved = json!({"url": "https://cucm.example.com:8443/axl/", "username": "axl", "password": "S3cret-axl"});
    assert_eq!(put(saved).await.status(), StatusCode::OK);
    let stored_before = n.store.setting("connection.cucm").await.unwrap().unwrap();
    // 443 (the default) is another port than 8443; a host in capitals is the same host.
    let r = put(json!({"url": "https://CUCM.example.com/axl/", "username": "axl2"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "443 is not 8443");
    let r = put(json!({"url": "https://CUCM.example.com:8443/axl/", "username": "axl2"})).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // Another host, another port, plain HTTP: refused without the password.
    for url in [
        "https://attacker.example.net:8443/axl/",
        "https://cucm.example.com:9443/axl/",
        "http://cucm.example.com:8443/axl/",
    ] {
        let r = put(json!({"url": url, "username": "axl"})).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{url}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "password_required", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("password again"), "{message}");
    }
    let stored = n.store.setting("connection.cucm").await.unwrap().unwrap();
    assert!(
        stored
            .value
            .to_lowercase()
            .contains("cucm.example.com:8443"),
        "{}",
        stored.value
    );
    assert_eq!(
        stored.secret.as_ref().map(|s| &s.sealed),
        stored_before.secret.as_ref().map(|s| &s.sealed)
    );
    // With the password (or after removing it), the move is the admin's informed choice.
    let r = put(json!({"url": "https://cucm2.example.com:8443/axl/", "username": "axl", "password": "N3w-secret"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = put(
        json!({"url": "https://cucm3.example.com:8443/axl/", "username": "axl", "password": ""}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Credentials inside the URL are refused: they would bypass all of this.
    let r = put(json!({"url": "https://u:p@cucm.example.com/axl/", "password": "x"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    n.server.shutdown().await;
}

#[tokio::test]
async fn moving_the_identity_service_drops_the_sso_passwords_it_would_receive() {
    let n = node(|_| {}).await;
    let base = n.server.url();
    let admin = cookie_client();
    let csrf = login(&admin, &base).await;
    let put = |kind: &'static str, body: Value| {
        let (admin, csrf, url) = (
            admin.clone(),
            csrf.clone(),
            format!("{base}/api/v1/connections/{kind}"),
        );
        async move {
            let r = admin
                .put(url)
                .header("x-csrf-token", csrf)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        }
    };
    // The identity service holds no secret of its own (no client secret): nothing guards
    // its move, so the passwords that would be sent to it must be dropped instead.
    put(
        "ids",
        json!({"url": "https://ids.example.com:8553/ids/v1/oauth/token"}),
    )
    .await;
    put(
        "cucm",
        json!({"url": "https://cucm.example.com:8443/axl/", "username": "axl",
        "auth": "sso", "password": "Sso-secret-1"}),
    )
    .await;
    put(
        "cuc",
        json!({"url": "https://cuc.example.com", "username": "cumi",
        "password": "Basic-secret-1"}),
    )
    .await;
    let secret = |name: &'static str| {
        let store = n.store.clone();
        async move { store.setting(name).await.unwrap().unwrap().secret.is_some() }
    };
    // Same origin, another path: nothing is dropped.
    put(
        "ids",
        json!({"url": "https://IDS.example.com:8553/ids/v2/oauth/token"}),
    )
    .await;
    assert!(secret("connection.cucm").await);
    put(
        "ids",
        json!({"url": "https://attacker.example.net:8553/ids/v1/oauth/token"}),
    )
    .await;
    assert!(
        !secret("connection.cucm").await,
        "the SSO password must not follow the IdS"
    );
    assert!(
        secret("connection.cuc").await,
        "a Basic password never goes to the IdS"
    );
    n.server.shutdown().await;
}

#[tokio::test]
async fn a_password_change_ends_the_accounts_other_sessions() {
    let n = node(|_| {}).await;
    let base = n.server.url();
    let (mine, other) = (cookie_client(), cookie_client());
    let csrf = login(&mine, &base).await;
    login(&other, &base).await;
    let status = |c: &reqwest::Client| {
        let (c, url) = (c.clone(), format!("{base}/api/v1/status"));
        async move { c.get(url).send().await.unwrap().status() }
    };
    assert_eq!(status(&other).await, StatusCode::OK);
    let change = |current: &str, new: &str| {
        let body = json!({"current_password": current, "new_password": new});
        mine.put(format!("{base}/api/v1/session/password"))
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
    };
    let r = change("wrong", "Another-pass-2").await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        status(&other).await,
        StatusCode::OK,
        "a refused change ends nothing"
    );
    let r = change(ADMIN_PW, "short").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "the password policy holds"
    );
    let r = change(ADMIN_PW, "Another-pass-2").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "{}",
        r.text().await.unwrap()
    );
    assert_eq!(
        status(&mine).await,
        StatusCode::OK,
        "the changing session stays"
    );
    assert_eq!(
        status(&other).await,
        StatusCode::UNAUTHORIZED,
        "other sessions end"
    );

    // A change from the shell (`ucbridge admin set-account`) ends every session.
    ucbridge_server::auth::set_account(&n.store, "root", "Third-pass-3", Role::Admin)
        .await
        .unwrap();
    assert_eq!(status(&mine).await, StatusCode::UNAUTHORIZED);
    n.server.shutdown().await;
}

// --- API answers (item 7) ---------------------------------------------------------------

#[tokio::test]
async fn api_errors_are_json_never_cached_and_bearer_is_case_insensitive() {
    let n = node(|_| {}).await;
    let base = n.server.url();
    let http = reqwest::Client::new();
    let token = ucbridge_server::auth::new_api_token();
    n.store
        .create_api_token(
            "script",
            &ucbridge_server::auth::token_hash(&token),
            Role::ReadOnly,
        )
        .await
        .unwrap();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = http
            .get(format!("{base}/api/v1/status"))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{scheme}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{scheme}");
    }
    let long_query = format!("{base}/api/v1/users?q={}", "a".repeat(10_000));
    let cases = [
        (
            reqwest::Method::GET,
            format!("{base}/api/v1/no-such-endpoint"),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            reqwest::Method::DELETE,
            format!("{base}/api/v1/status"),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            reqwest::Method::GET,
            long_query,
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
        ),
        (
            reqwest::Method::GET,
            format!("{base}/api/v1/status"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
    ];
    for (method, url, status, code) in cases {
        let r = http.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(r.status(), status, "{method} {}", &url[..url.len().min(80)]);
        assert_eq!(r.headers()["cache-control"], "no-store", "{method}");
        let body: Value = r.json().await.expect("a JSON error body");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // The login answer (cookie, CSRF token) is not cacheable either.
    let r = http
        .post(format!("{base}/api/v1/session"))
        .json(&json!({"username": "root", "password": ADMIN_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    n.server.shutdown().await;
}
