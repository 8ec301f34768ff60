//! The CUNI callback route against hostile bodies, authenticated as CUC's Notifier is: an
//! oversized or deeply nested event is refused (413 / 400) and the route keeps serving.
//! (100,000 nested elements, 0.7 MB, used to abort the process with a stack overflow.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ucbridge_auth::{Credentials, TlsOptions};
use ucbridge_cuc::{CucClient, CucConfig, UserQuery};
use ucbridge_lab::{CucLabConfig, LabConfig, RunningLab};
use ucbridge_store::{Store, UserRecord};
use ucbridge_voicemail::{ImapSettings, VoicemailEngine, VoicemailOptions};

fn cuc_client(lab: &RunningLab) -> CucClient {
    let mut config = CucConfig::new(
        lab.cuc_url(),
        Credentials::basic("administrator", "ucbridge-lab"),
    );
    config.tls = TlsOptions {
        ca_pem: lab.ca_certificate_pem().map(str::to_owned),
        ..TlsOptions::default()
    };
    CucClient::new(config).expect("CUC client")
}

/// The engine's callback router on 127.0.0.1, wrapped to note the `Authorization` header
/// the lab's Notifier sends (the engine's callback password is never exposed otherwise).
async fn serve(engine: &VoicemailEngine, seen: Arc<Mutex<Option<String>>>) -> String {
    let record = axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let seen = seen.clone();
            async move {
                if let Some(v) = request.headers().get("authorization") {
                    *seen.lock().unwrap() = v.to_str().ok().map(str::to_owned);
                }
                next.run(request).await
            }
        },
    );
    let app = axum::Router::new()
        .nest("/callbacks/cuc", engine.callback_router())
        .layer(record);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/callbacks/cuc")
}

/// An engine subscribed through the lab, and the Basic header its Notifier uses.
async fn subscribed_engine() -> (RunningLab, tempfile::TempDir, String, String) {
    let lab = RunningLab::start(LabConfig {
        users: 1,
        seed: 3,
        cuc: CucLabConfig {
            cuni_keep_alive_every: Duration::from_millis(200),
            ..CucLabConfig::default()
        },
        ..LabConfig::default()
    })
    .await
    .expect("lab starts");
    let cuc = cuc_client(&lab);
    let users = cuc.all_users(&UserQuery::default()).await.expect("users");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("vm.db").display()))
        .await
        .expect("store");
    for u in &users {
        store
            .create_local_user(&UserRecord {
                username: u.alias.clone(),
                email: Some(format!("{}@example.com", u.alias)),
                source: "local".into(),
                ..UserRecord::default()
            })
            .await
            .expect("local user");
    }
    // IMAP is never reached here: only matching, subscribing and callbacks run.
    let imap = ImapSettings::plain_loopback(1, "master", "pw");
    let engine = VoicemailEngine::new(store, cuc, imap, VoicemailOptions::default());
    let seen = Arc::new(Mutex::new(None));
    let url = serve(&engine, seen.clone()).await;
    engine.subscribe(&url).await.expect("subscribe");
    let started = Instant::now();
    let auth = loop {
        if let Some(auth) = seen.lock().unwrap().clone() {
            break auth;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no keep-alive from the lab"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The served router holds its own clone of the engine.
    (lab, dir, url, auth)
}

fn nested_event(levels: usize) -> Vec<u8> {
    [
        b"<messageEvent eventType=\"NEW_MESSAGE\" mailboxId=\"x\">".as_slice(),
        &b"<a>".repeat(levels),
        &b"</a>".repeat(levels),
        b"</messageEvent>",
    ]
    .concat()
}

#[tokio::test]
async fn hostile_callbacks_are_refused_and_the_route_survives() {
    let (_lab, _dir, url, auth) = subscribed_engine().await;
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        http.post(&url)
            .header("authorization", &auth)
            .header("content-type", "text/xml")
            .body(body)
            .timeout(Duration::from_secs(60))
            .send()
    };
    // 100,000 nested elements, 0.7 MB: over the 256 KiB event limit.
    let r = post(nested_event(100_000)).await.expect("an answer");
    assert_eq!(r.status(), 413);
    // Under the size limit but 30,000 levels deep: the depth limit.
    let r = post(nested_event(30_000)).await.expect("an answer");
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("deeper than 32"), "{text}");
    // Still serving: a keep-alive is accepted.
    let r = post(br#"<messageEvent subscriptionId="s" eventType="KEEP_ALIVE"/>"#.to_vec())
        .await
        .expect("an answer");
    assert_eq!(r.status(), 200);
}
