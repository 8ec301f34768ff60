//! The identity-service token client against a hostile server: answers are capped at
//! 64 KiB while streaming, deep JSON is refused, every request has a deadline, and a
//! refused connection says so.

use std::time::{Duration, Instant};

use ucbridge_auth::net::TransportKind;
use ucbridge_auth::{http_client, AuthError, Secret, TlsOptions, TokenEndpoint};
use ucbridge_testkit::hostile::{Behaviour, HostileServer};

fn endpoint(url: String) -> TokenEndpoint {
    // The read timeout is long on purpose: only the endpoint's own deadline may end a trickle.
    let http = http_client(
        &TlsOptions::default(),
        Duration::from_secs(5),
        Duration::from_secs(60),
    )
    .unwrap();
    TokenEndpoint::new(url, http)
}

async fn grant(
    server: &HostileServer,
    tune: impl FnOnce(TokenEndpoint) -> TokenEndpoint,
) -> AuthError {
    let endpoint = tune(endpoint(format!(
        "{}/ids/v1/oauth/token",
        server.base_url()
    )));
    endpoint
        .password_grant("admin", &Secret::new("pw"))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn deeply_nested_json_over_the_cap_is_refused_while_streaming() {
    let server = HostileServer::start(Behaviour::NestedJson {
        status: 200,
        depth: 200_000,
    });
    let err = grant(&server, |e| e).await;
    assert!(
        matches!(
            err,
            AuthError::IdsTooLarge {
                status: 200,
                limit: 65536,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("64 KiB"), "{err}");
}

#[tokio::test]
async fn deeply_nested_json_under_the_cap_is_an_error_not_an_abort() {
    for status in [200, 400] {
        let server = HostileServer::start(Behaviour::NestedJson {
            status,
            depth: 10_000,
        });
        let err = grant(&server, |e| e).await;
        assert!(matches!(err, AuthError::IdsProtocol { .. }), "{err}");
    }
}

#[tokio::test]
async fn oversized_answers_are_capped_for_every_status() {
    for status in [200, 500] {
        let server = HostileServer::start(Behaviour::oversized_xml(status, 4 << 20));
        let err = grant(&server, |e| e).await;
        assert!(
            matches!(err, AuthError::IdsTooLarge { status: s, .. } if s == status),
            "{err}"
        );
    }
    let server = HostileServer::start(Behaviour::endless_open_tags(200));
    let err = grant(&server, |e| e.with_max_body(1 << 20)).await;
    assert!(
        matches!(err, AuthError::IdsTooLarge { limit: 1048576, .. }),
        "{err}"
    );
    assert!(server.bytes_sent() < 64 << 20, "{}", server.bytes_sent());
}

#[tokio::test]
async fn a_trickling_identity_service_meets_the_deadline() {
    let server = HostileServer::start(Behaviour::Trickle {
        status: 200,
        body: br#"{"access_token":"abc","token_type":"Bearer"}"#.to_vec(),
        every: Duration::from_millis(500),
    });
    let started = Instant::now();
    let err = grant(&server, |e| e.with_timeout(Duration::from_secs(1))).await;
    assert!(matches!(err, AuthError::IdsTimeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(err.to_string().contains("within 1 s"), "{err}");
}

#[tokio::test]
async fn a_closed_port_names_the_cause_once() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = endpoint(format!("http://127.0.0.1:{port}/ids/v1/oauth/token"))
        .password_grant("admin", &Secret::new("pw"))
        .await
        .unwrap_err();
    let AuthError::IdsTransport { failure, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(failure.kind, TransportKind::ConnectionRefused);
    let text = err.to_string();
    assert!(text.contains("Connection refused"), "{text}");
    assert!(!text.contains("error sending request"), "{text}");
}
