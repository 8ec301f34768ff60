//! The node's application without a socket ([`ucbridge_server::Server::router`] driven by
//! `tower::ServiceExt::oneshot`): the API's error shape for what no handler takes (404,
//! 405, 414), the headers every answer carries, a read refused without a login, and the
//! route classes (admin routes, the end user's `/api/v1/me`, CSRF on session writes).

use axum::http::{Method, StatusCode};
use serde_json::json;
use ucbridge_store::Role;

use crate::common::{self, App, ADMIN_PW};

#[tokio::test]
async fn what_no_handler_takes_is_an_error_in_the_api_shape() {
    let app = App::new(common::local_config()).await;

    let r = app.get("/api/v1/no-such-thing", &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.error_code(), "not_found", "{}", r.text);
    assert!(
        r.error_message().contains("/api/v1/no-such-thing"),
        "{}",
        r.text
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));

    let r = app
        .call(App::request(Method::DELETE, "/healthz", &[], None))
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);
    assert_eq!(r.error_code(), "method_not_allowed", "{}", r.text);
    assert!(r.error_message().contains("DELETE"), "{}", r.text);

    // Over 8 KiB of request target: 414 in the same shape, before any handler or login.
    let long = format!("/api/v1/status?q={}", "a".repeat(9 * 1024));
    let r = app.get(&long, &[]).await;
    assert_eq!(r.status, StatusCode::URI_TOO_LONG, "{}", r.text);
    assert_eq!(r.error_code(), "uri_too_long", "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));

    // Health needs nothing, and is not under the API's no-store rule.
    let r = app.get("/healthz", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.header("cache-control"), None);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
}

#[tokio::test]
async fn reads_need_a_login_and_each_route_class_takes_only_its_callers() {
    let app = App::new(common::local_config()).await;

    // Nobody: the API, metrics and the end user's routes all answer 401.
    for path in ["/api/v1/status", "/api/v1/users", "/metrics", "/api/v1/me"] {
        let r = app.get(path, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.text);
        assert_eq!(r.error_code(), "unauthorized", "{path}");
    }

    // An admin session: reads pass; the end user's routes refuse it; a write needs the
    // CSRF header of the session.
    let login = app
        .call(App::request(
            Method::POST,
            "/api/v1/session",
            &[],
            Some(&json!({"username": "root", "password": ADMIN_PW})),
        ))
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let cookie = login
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let csrf = login.json["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_owned();
    let session = [("cookie", cookie.as_str())];
    let r = app.get("/api/v1/status", &session).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json["jobs"].is_array(), "{}", r.text);
    for path in ["/api/v1/me", "/api/v1/me/device/sip-credentials"] {
        let r = app.get(path, &session).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text);
        assert_eq!(r.error_code(), "not_end_user", "{path}");
    }
    let rules = json!({"max_removal_share": "lots"});
    let r = app
        .call(App::request(
            Method::PUT,
            "/api/v1/rules",
            &session,
            Some(&rules),
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.error_code(), "csrf");
    // With the header the write reaches the handler (which validates the rules).
    let r = app
        .call(App::request(
            Method::PUT,
            "/api/v1/rules",
            &[("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())],
            Some(&rules),
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    // A read-only API token reads, cannot write, and is no end user either.
    let token = "ucb_router_test_token_0123456789";
    app.store
        .create_api_token(
            "t",
            &ucbridge_server::auth::token_hash(token),
            Role::ReadOnly,
        )
        .await
        .expect("the token is stored");
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let r = app.get("/api/v1/status", &auth).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .call(App::request(
            Method::POST,
            "/api/v1/jobs/user_sync/run",
            &auth,
            None,
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.error_code(), "read_only", "{}", r.text);
    let r = app.get("/api/v1/me", &auth).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}
