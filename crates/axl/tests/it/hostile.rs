//! The AXL client against a hostile "CUCM" (ucbridge_testkit::hostile): every answer is
//! bounded in depth, size and time, and failures that cannot heal are not retried.
//!
//! Timings are asserted loosely: each bound is many times what the fixed client needs and
//! far below what the unbounded one took (minutes, or an abort).

use std::time::{Duration, Instant};

use ucbridge_axl::*;
use ucbridge_testkit::hostile::{Behaviour, HostileServer};

fn config(url: String) -> AxlConfig {
    let mut config = AxlConfig::new(url, "axladmin", "secret");
    // Fast back-off, so a wrongly retried failure shows up as extra requests, not a slow test.
    config.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    };
    config
}

fn axl_url(server: &HostileServer) -> String {
    format!("{}/axl/", server.base_url())
}

/// A client that already knows its schema, so calls go straight to the operation.
async fn client(server: &HostileServer, tune: impl FnOnce(&mut AxlConfig)) -> AxlClient {
    let mut config = config(axl_url(server));
    config.version = Some(SchemaVersion::V14_0);
    tune(&mut config);
    AxlClient::connect(config).await.expect("no network needed")
}

#[tokio::test]
async fn deeply_nested_answer_is_a_typed_error_not_an_abort() {
    let server = HostileServer::start(Behaviour::nested_soap(200, 200_000));
    // Version discovery (getCCMVersion) is the first thing `axl users list` does.
    let err = AxlClient::connect(config(axl_url(&server)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AxlError::TooDeep {
                limit: MAX_XML_DEPTH,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("deeper than 64"), "{err}");
    assert_eq!(server.requests(), 1, "a refused shape is not retried");
}

#[tokio::test]
async fn deeply_nested_fault_is_a_typed_error() {
    let server = HostileServer::start(Behaviour::nested_soap(500, 100_000));
    let client = client(&server, |c| c.max_error_body_bytes = 4 << 20).await;
    let err = client.get_ccm_version().await.unwrap_err();
    assert!(matches!(err, AxlError::TooDeep { .. }), "{err}");
}

#[tokio::test]
async fn bare_nesting_before_the_body_is_bounded_too() {
    // No envelope: a reader skipping to <Body> must still count depth.
    let server = HostileServer::start(Behaviour::NestedXml {
        status: 200,
        depth: 200_000,
        closed: false,
    });
    let client = client(&server, |_| {}).await;
    let err = client.get_ccm_version().await.unwrap_err();
    assert!(matches!(err, AxlError::TooDeep { .. }), "{err}");
}

#[tokio::test]
async fn oversized_answer_stops_at_the_cap() {
    // 20 MB: over the 16 MiB default, under nothing else.
    let server = HostileServer::start(Behaviour::oversized_xml(200, 20 << 20));
    let client = client(&server, |_| {}).await;
    let err = client.get_ccm_version().await.unwrap_err();
    match &err {
        AxlError::ResponseTooLarge {
            status: 200,
            limit,
            setting: "max_response_bytes",
            ..
        } => assert_eq!(*limit, DEFAULT_MAX_RESPONSE_BYTES),
        other => panic!("{other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("16 MiB") && text.contains("max_response_bytes"),
        "{text}"
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn oversized_error_answer_stops_at_its_cap() {
    let server = HostileServer::start(Behaviour::oversized_xml(500, 4 << 20));
    let client = client(&server, |_| {}).await;
    let err = client.get_ccm_version().await.unwrap_err();
    assert!(
        matches!(
            err,
            AxlError::ResponseTooLarge {
                status: 500,
                limit: DEFAULT_MAX_ERROR_BODY_BYTES,
                setting: "max_error_body_bytes",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn endless_body_is_cut_at_the_cap_while_streaming() {
    // Endless siblings (no nesting): only the byte count can stop this one.
    let server = HostileServer::start(Behaviour::Endless {
        status: 200,
        content_type: "text/xml",
        prefix: b"<?xml version=\"1.0\"?><e:Envelope xmlns:e=\"http://schemas.xmlsoap.org/soap/envelope/\"><e:Body><r><return>".to_vec(),
        chunk: b"<row><n>0123456789</n></row>".repeat(1000),
        limit: 256 << 20,
    });
    let client = client(&server, |c| c.max_response_bytes = 1 << 20).await;
    let started = Instant::now();
    let err = client.get_ccm_version().await.unwrap_err();
    assert!(
        matches!(err, AxlError::ResponseTooLarge { limit: 1048576, .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // The server could push at most the cap plus what socket buffers hold.
    assert!(server.bytes_sent() < 64 << 20, "{}", server.bytes_sent());
}

#[tokio::test]
async fn endless_open_tags_fail_at_the_depth_limit() {
    let server = HostileServer::start(Behaviour::Endless {
        status: 200,
        content_type: "text/xml",
        prefix: b"<?xml version=\"1.0\"?>".to_vec(),
        chunk: b"<a>".repeat(4096),
        limit: 256 << 20,
    });
    let client = client(&server, |_| {}).await;
    let err = client.get_ccm_version().await.unwrap_err();
    assert!(matches!(err, AxlError::TooDeep { .. }), "{err}");
    assert!(server.bytes_sent() < 64 << 20, "{}", server.bytes_sent());
}

#[tokio::test]
async fn a_trickling_server_is_cut_off_at_the_deadline() {
    let server = HostileServer::start(Behaviour::Trickle {
        status: 200,
        body: vec![b' '; 10_000],
        every: Duration::from_millis(100),
    });
    let client = client(&server, |c| {
        c.request_timeout = Duration::from_secs(1);
        c.total_timeout = Duration::from_secs(3);
    })
    .await;
    let started = Instant::now();
    let err = client.get_ccm_version().await.unwrap_err();
    assert!(matches!(err, AxlError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("within"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn a_silent_server_is_bounded_by_the_total_deadline() {
    let server = HostileServer::start(Behaviour::Silent);
    let client = client(&server, |c| {
        c.request_timeout = Duration::from_secs(1);
        c.total_timeout = Duration::from_secs(2);
    })
    .await;
    let started = Instant::now();
    let err = client.get_ccm_version().await.unwrap_err();
    assert!(matches!(err, AxlError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // A read may go again within the total, but never past it.
    assert!(server.requests() <= 3, "{}", server.requests());
}

#[tokio::test]
async fn a_closed_port_fails_at_once_with_the_cause() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut config = AxlConfig::new(format!("http://127.0.0.1:{port}/axl/"), "a", "b");
    // The default policy: 8 attempts with seconds of back-off made this take ~40 s.
    config.retry = RetryPolicy::default();
    let started = Instant::now();
    let err = AxlClient::connect(config).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "retried");
    assert_eq!(err.transport_kind(), Some(TransportKind::ConnectionRefused));
    let text = err.to_string();
    assert!(text.contains("refused"), "{text}");
    assert_eq!(
        text.matches("error sending request").count(),
        0,
        "the cause, not reqwest's wrapper: {text}"
    );
}

#[tokio::test]
async fn an_unknown_host_fails_at_once() {
    // RFC 6761: .invalid never resolves.
    let mut config = AxlConfig::new("https://cucm.invalid:8443/axl/", "a", "b");
    config.retry = RetryPolicy::default();
    let started = Instant::now();
    let err = AxlClient::connect(config).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(20), "retried");
    assert_eq!(err.transport_kind(), Some(TransportKind::Dns), "{err}");
}

#[tokio::test]
async fn garbage_instead_of_http_ends_within_the_deadline() {
    let server = HostileServer::start(Behaviour::Garbage);
    let client = client(&server, |c| c.total_timeout = Duration::from_secs(5)).await;
    let started = Instant::now();
    let err = client.get_ccm_version().await.unwrap_err();
    assert!(matches!(err, AxlError::Transport { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn more_records_than_asked_for_are_refused() {
    let mut body = b"<?xml version=\"1.0\"?><e:Envelope xmlns:e=\"http://schemas.xmlsoap.org/soap/envelope/\"><e:Body><ns:listUserResponse xmlns:ns=\"http://www.cisco.com/AXL/API/14.0\"><return>".to_vec();
    body.extend(b"<user/>".repeat(50));
    body.extend_from_slice(b"</return></ns:listUserResponse></e:Body></e:Envelope>");
    let server = HostileServer::start(Behaviour::Fixed {
        status: 200,
        content_type: "text/xml",
        body,
    });
    let client = client(&server, |_| {}).await;
    let err = client
        .list_users_page(&UserSearch::all(), &[UserTag::Userid], 0, 10)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("more than the 10"), "{err}");
}

#[tokio::test]
async fn a_write_that_timed_out_is_not_sent_again() {
    // CUCM may have acted on a write it did not answer: sending it again could act twice.
    let server = HostileServer::start(Behaviour::Silent);
    let client = client(&server, |c| {
        c.request_timeout = Duration::from_secs(1);
        c.total_timeout = Duration::from_secs(10);
    })
    .await;
    let err = client.remove_phone(Key::Name("SEP1")).await.unwrap_err();
    assert!(
        matches!(
            err,
            AxlError::Timeout {
                setting: "request_timeout",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(server.requests(), 1);
    assert_eq!(client.stats().retries, 0);
}
