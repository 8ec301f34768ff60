//! "Test connection" of a `cucm` connection whose server answers 200,000 nested
//! elements (issue 18, item 1): the server must answer an error and stay up. A parser
//! that recursed per element overflowed the stack and aborted the whole process, so this
//! test lives alone in its binary (an abort takes no other test with it).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use ucbridge_auth::SecretBox;
use ucbridge_server::{Server, ServerConfig};
use ucbridge_store::{Role, Store};
use ucbridge_testkit::hostile::{Behaviour, HostileServer};

const ADMIN_PW: &str = "Admin-pass-1";

#[tokio::test]
async fn test_connection_of_a_deeply_nested_cucm_answers_an_error_and_the_server_stays_up() {
    let upstream = HostileServer::start(Behaviour::NestedXml {
        status: 200,
        depth: 200_000,
        closed: true,
    });
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
        run_jobs: false,
        connection_test_timeout: Duration::from_secs(20),
        ..ServerConfig::default()
    };
    let server = Server::start(store, secrets, config).await.unwrap();
    let base = server.url();
    let admin = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let r = admin
        .post(format!("{base}/api/v1/session"))
        .json(&json!({"username": "root", "password": ADMIN_PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csrf = r.json::<Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = admin
        .put(format!("{base}/api/v1/connections/cucm"))
        .header("x-csrf-token", &csrf)
        .json(&json!({
            "url": format!("{}/axl/", upstream.base_url()),
            "username": "administrator",
            "password": "N3sted-secret",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = admin
        .post(format!("{base}/api/v1/connections/cucm/test"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("the server answers");
    assert!(
        r.status().is_server_error(),
        "a nested answer is an upstream error: {}",
        r.status()
    );
    let body: Value = r.json().await.expect("a JSON error body");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(!body.to_string().contains("N3sted-secret"), "{body}");
    let health = admin.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    server.shutdown().await;
}
