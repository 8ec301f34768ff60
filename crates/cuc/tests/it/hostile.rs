//! The CUC client against a hostile upstream (`ucbridge_testkit::hostile`): every answer is
//! bounded in depth, size and time, and transport failures say why and what to change.

use std::future::Future;
use std::time::{Duration, Instant};

use ucbridge_auth::net::TransportKind;
use ucbridge_auth::{Credentials, TlsOptions};
use ucbridge_cuc::{
    BodyKind, CallbackTarget, CucClient, CucConfig, CucError, Format, MailboxRef, SsoStatusClient,
    UserQuery, MAX_DEPTH,
};
use ucbridge_testkit::hostile::{Behaviour, HostileServer};

/// Generous bound for one test step: the fixed client ends each case in seconds; the
/// unfixed one hangs (trickle, endless body) and must fail here rather than stall CI.
const STEP: Duration = Duration::from_secs(60);

fn config(server: &HostileServer, format: Format) -> CucConfig {
    let mut config = CucConfig::new(server.base_url(), Credentials::basic("admin", "pw"));
    config.format = format;
    config
}

fn client(server: &HostileServer, format: Format) -> CucClient {
    CucClient::new(config(server, format)).expect("client")
}

async fn bounded<T>(what: &str, call: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {STEP:?}"))
}

async fn users(cuc: &CucClient) -> Result<ucbridge_cuc::UserPage, CucError> {
    bounded("users", cuc.users(&UserQuery::default())).await
}

#[tokio::test]
async fn nested_xml_of_200000_levels_is_refused_not_an_abort() {
    // 100,000 levels for the error status: 0.7 MB, under the 1 MiB error-body cap.
    for (status, depth) in [(200, 200_000), (500, 100_000)] {
        let server = HostileServer::start(Behaviour::NestedXml {
            status,
            depth,
            closed: true,
        });
        let err = users(&client(&server, Format::Xml)).await.unwrap_err();
        match status {
            200 => assert!(
                matches!(err, CucError::TooDeep { limit: MAX_DEPTH }),
                "{err:?}"
            ),
            // An unreadable error body still reports the status.
            _ => assert!(matches!(err, CucError::Http { status: 500, .. }), "{err:?}"),
        }
    }
}

#[tokio::test]
async fn deep_json_is_refused() {
    // 200,000: past serde_json's own limit (128); 100: past ours (32) but not serde's.
    for depth in [200_000, 100] {
        let server = HostileServer::start(Behaviour::NestedJson { status: 200, depth });
        let err = users(&client(&server, Format::Json)).await.unwrap_err();
        assert!(
            matches!(err, CucError::TooDeep { limit: MAX_DEPTH }),
            "{depth}: {err:?}"
        );
        assert!(err.to_string().contains("deeper than 32"), "{err}");
    }
    // At the limit it is read (and then refused by the model reader, not the tree).
    let server = HostileServer::start(Behaviour::NestedJson {
        status: 200,
        depth: MAX_DEPTH - 1,
    });
    let read = users(&client(&server, Format::Json)).await;
    assert!(!matches!(read, Err(CucError::TooDeep { .. })), "{read:?}");
}

#[tokio::test]
async fn oversized_bodies_are_refused_by_their_limit() {
    let cases = [
        (200, BodyKind::Document, 1 << 20),
        (500, BodyKind::ErrorBody, 64 << 10),
    ];
    for (status, kind, limit) in cases {
        let server = HostileServer::start(Behaviour::oversized_xml(status, 3 << 20));
        let mut config = config(&server, Format::Xml);
        config.max_document_bytes = 1 << 20;
        config.max_error_bytes = 64 << 10;
        let cuc = CucClient::new(config).unwrap();
        let err = users(&cuc).await.unwrap_err();
        match &err {
            CucError::BodyTooLarge {
                kind: k,
                status: s,
                limit: l,
            } => assert_eq!((*k, *s, *l), (kind, status, limit)),
            other => panic!("{status}: {other:?}"),
        }
        assert!(err.to_string().contains(kind.setting()), "{err}");
    }
}

#[tokio::test]
async fn endless_open_tags_stop_at_the_cap() {
    for (status, kind) in [(200, BodyKind::Document), (503, BodyKind::ErrorBody)] {
        let server = HostileServer::start(Behaviour::endless_open_tags(status));
        let mut config = config(&server, Format::Xml);
        config.max_document_bytes = 4 << 20;
        let cuc = CucClient::new(config).unwrap();
        let started = Instant::now();
        let err = users(&cuc).await.unwrap_err();
        assert!(
            matches!(err, CucError::BodyTooLarge { kind: k, .. } if k == kind),
            "{status}: {err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}

#[tokio::test]
async fn a_trickling_server_hits_the_deadline() {
    let server = HostileServer::start(Behaviour::Trickle {
        status: 200,
        body: b"<?xml version=\"1.0\"?><Users total=\"0\"></Users>".to_vec(),
        every: Duration::from_millis(300),
    });
    let mut config = config(&server, Format::Xml);
    config.timeout = Duration::from_secs(2);
    let cuc = CucClient::new(config).unwrap();
    let started = Instant::now();
    let err = users(&cuc).await.unwrap_err();
    assert!(
        matches!(
            err,
            CucError::Timeout {
                setting: "timeout",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.to_string().contains("GET /vmrest/users"), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn with_timeout_gives_a_quick_check_a_short_deadline() {
    let server = HostileServer::start(Behaviour::Silent);
    let cuc = client(&server, Format::Xml);
    let started = Instant::now();
    let err = bounded(
        "version",
        cuc.with_timeout(Duration::from_secs(1)).version(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CucError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn audio_downloads_are_capped_and_have_their_own_deadline() {
    let server = HostileServer::start(Behaviour::Endless {
        status: 200,
        content_type: "audio/wav",
        prefix: b"RIFF".to_vec(),
        chunk: vec![0x7f; 64 << 10],
        limit: 4 << 30,
    });
    let mut capped = config(&server, Format::Xml);
    capped.max_audio_bytes = 2 << 20;
    let cuc = CucClient::new(capped).unwrap();
    let mut out = Vec::new();
    let err = bounded(
        "audio",
        cuc.download_audio(&MailboxRef::Own, "0:x", &mut out),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, CucError::BodyTooLarge { kind: BodyKind::Audio, status: 200, limit } if limit == 2 << 20),
        "{err:?}"
    );
    assert!(out.len() <= 2 << 20, "{} bytes kept", out.len());

    let server = HostileServer::start(Behaviour::Trickle {
        status: 200,
        body: vec![0; 1000],
        every: Duration::from_millis(300),
    });
    let mut config = config(&server, Format::Xml);
    config.audio_timeout = Duration::from_secs(1);
    let cuc = CucClient::new(config).unwrap();
    let err = bounded(
        "audio",
        cuc.download_audio(&MailboxRef::Own, "0:x", &mut out),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            CucError::Timeout {
                setting: "audio_timeout",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn cuni_and_sso_status_answers_are_bounded_too() {
    let server = HostileServer::start(Behaviour::NestedXml {
        status: 200,
        depth: 200_000,
        closed: true,
    });
    let cuc = client(&server, Format::Xml);
    let target = CallbackTarget {
        url: "http://127.0.0.1:1/cb".into(),
        username: None,
        password: None,
    };
    let err = bounded(
        "subscribe",
        cuc.cuni_subscribe(&["a".into()], &target, Duration::from_secs(60), true),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, CucError::TooDeep { .. }), "{err:?}");
    let http = ucbridge_auth::http_client(
        &TlsOptions::default(),
        Duration::from_secs(5),
        Duration::from_secs(60),
    )
    .unwrap();
    let sso = SsoStatusClient::new(
        &server.base_url(),
        Credentials::basic("a", "b"),
        http.clone(),
    )
    .unwrap();
    let err = bounded("sso", sso.status()).await.unwrap_err();
    assert!(matches!(err, CucError::TooDeep { .. }), "{err:?}");

    let endless = HostileServer::start(Behaviour::endless_open_tags(200));
    let sso = SsoStatusClient::new(
        &endless.base_url(),
        Credentials::basic("a", "b"),
        http.clone(),
    )
    .unwrap()
    .with_max_body_bytes(1 << 20, 1 << 20);
    let err = bounded("sso", sso.status()).await.unwrap_err();
    assert!(matches!(err, CucError::BodyTooLarge { .. }), "{err:?}");

    let silent = HostileServer::start(Behaviour::Silent);
    let sso = SsoStatusClient::new(&silent.base_url(), Credentials::basic("a", "b"), http)
        .unwrap()
        .with_timeout(Duration::from_secs(1));
    let err = bounded("sso", sso.status()).await.unwrap_err();
    assert!(matches!(err, CucError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn garbage_is_a_transport_error_that_keeps_its_cause() {
    let server = HostileServer::start(Behaviour::Garbage);
    let err = users(&client(&server, Format::Xml)).await.unwrap_err();
    assert!(matches!(err, CucError::Transport(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&server.base_url()), "{text}");
    // More than reqwest's bare "error sending request for url (...)".
    assert!(!text.contains("error sending request"), "{text}");
}

#[tokio::test]
async fn permanent_transport_failures_fail_at_once_with_the_fix() {
    // A closed port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cuc = CucClient::new(CucConfig::new(
        format!("http://127.0.0.1:{port}"),
        Credentials::basic("a", "b"),
    ))
    .unwrap();
    let started = Instant::now();
    let err = users(&cuc).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = err.to_string();
    assert!(!err.is_retryable(), "{text}");
    assert!(text.to_lowercase().contains("connection refused"), "{text}");
    assert!(text.contains("check the host and port"), "{text}");
    assert_eq!(err.transport_kind(), Some(TransportKind::ConnectionRefused));

    // A name that cannot resolve (RFC 2606).
    let cuc = CucClient::new(CucConfig::new(
        "https://cuc.invalid",
        Credentials::basic("a", "b"),
    ))
    .unwrap();
    let err = users(&cuc).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("host name not found"), "{err}");
    assert_eq!(err.transport_kind(), Some(TransportKind::Dns));
}

#[tokio::test]
async fn an_untrusted_certificate_names_the_ca_option() {
    let lab = ucbridge_lab::RunningLab::start(ucbridge_lab::LabConfig {
        users: 1,
        ..ucbridge_lab::LabConfig::default()
    })
    .await
    .expect("lab");
    // No CA given: the lab's certificate is signed by a CA nobody trusts.
    let cuc = CucClient::new(CucConfig::new(
        lab.cuc_url(),
        Credentials::basic("administrator", "ucbridge-lab"),
    ))
    .unwrap();
    let started = Instant::now();
    let err = users(&cuc).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = err.to_string();
    assert!(!err.is_retryable(), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(text.contains("--ca-file"), "{text}");
    assert_eq!(
        err.transport_kind(),
        Some(TransportKind::UntrustedCertificate)
    );
}

#[tokio::test]
async fn a_listing_with_an_endless_total_stops() {
    // Every page is full and claims a billion users.
    let mut body = b"<?xml version=\"1.0\"?><Users total=\"1000000000\">".to_vec();
    for _ in 0..2000 {
        body.extend_from_slice(b"<User><ObjectId>1</ObjectId><Alias>a</Alias></User>");
    }
    body.extend_from_slice(b"</Users>");
    let server = HostileServer::start(Behaviour::Fixed {
        status: 200,
        content_type: "application/xml",
        body,
    });
    let cuc = client(&server, Format::Xml);
    let query = UserQuery {
        rows_per_page: 2000,
        ..UserQuery::default()
    };
    let err = bounded("all users", cuc.all_users(&query))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&ucbridge_cuc::MAX_LIST_RECORDS.to_string()),
        "{err}"
    );
    assert!(server.requests() <= ucbridge_cuc::MAX_LIST_RECORDS / 2000 + 1);
}
