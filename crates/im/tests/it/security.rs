//! What an admin gets wrong, and TLS: a wrong XMPP domain, an untrusted certificate, a
//! wrong password, plain mode against a server requiring TLS, each a clear error; the
//! right CA and (where the server allows it) plain mode log in.

use ucbridge_im::{ImError, ImSession, ImTls, SessionState};
use ucbridge_testkit::prosody::{Prosody, USER_PASSWORD};

use crate::support::settings;

#[tokio::test]
async fn wrong_domain_untrusted_ca_bad_password_and_plain_mode_are_told_apart() {
    let Some(p) = Prosody::start(&["alice"]) else {
        return;
    };
    // The domain the admin typed is not the one IM&P serves.
    let mut s = settings(&p);
    s.domain = "wrong.test".into();
    match ImSession::open(&s, "alice", USER_PASSWORD, "r").await {
        Err(ImError::WrongDomain { expected, detail }) => {
            assert_eq!(expected, "wrong.test");
            assert!(
                detail.contains("host-unknown") || detail.contains("answers as"),
                "{detail}"
            );
            assert!(
                detail.contains(&format!("127.0.0.1:{}", p.port())),
                "{detail}"
            );
        }
        other => panic!("expected WrongDomain, got {other:?}"),
    }

    // A CA that did not sign IM&P's certificate: refused, saying why.
    let unrelated = Prosody::unrelated_ca_file().expect("CA file");
    let mut s = settings(&p);
    s.ca_file = Some(unrelated.path().to_owned());
    match ImSession::open(&s, "alice", USER_PASSWORD, "r").await {
        Err(ImError::Tls(why)) => assert!(why.contains("not trusted"), "{why}"),
        other => panic!("expected Tls, got {other:?}"),
    }

    // No extra CA at all (system roots only): refused too.
    let mut s = settings(&p);
    s.ca_file = None;
    assert!(matches!(
        ImSession::open(&s, "alice", USER_PASSWORD, "r").await,
        Err(ImError::Tls(_))
    ));

    // Plain mode against a server that requires STARTTLS.
    let mut s = settings(&p);
    s.tls = ImTls::Plain;
    match ImSession::open(&s, "alice", USER_PASSWORD, "r").await {
        Err(ImError::Tls(why)) => assert!(why.contains("requires STARTTLS"), "{why}"),
        other => panic!("expected Tls, got {other:?}"),
    }

    // Wrong password: AuthFailed, once (no retry loop behind open).
    assert!(matches!(
        ImSession::open(&settings(&p), "alice", "not-the-password", "r").await,
        Err(ImError::AuthFailed)
    ));

    // The right CA: in.
    let (alice, _rx) = ImSession::open(&settings(&p), "alice", USER_PASSWORD, "r")
        .await
        .unwrap_or_else(|e| panic!("TLS login: {e}\n{}", p.log()));
    assert_eq!(alice.state(), SessionState::Online);
    alice.close().await;

    // Settings that cannot work are refused before connecting.
    let mut s = settings(&p);
    s.port = 0;
    assert!(matches!(s.validate(), Err(ImError::InvalidSettings(_))));
}

#[tokio::test]
async fn plain_mode_logs_in_where_the_server_allows_it() {
    let Some(p) = Prosody::builder(&["alice"]).allow_plain().start() else {
        return;
    };
    let mut s = settings(&p);
    s.tls = ImTls::Plain;
    s.ca_file = None;
    let (alice, _rx) = ImSession::open(&s, "alice", USER_PASSWORD, "r")
        .await
        .unwrap_or_else(|e| panic!("plain login: {e}\n{}", p.log()));
    assert_eq!(alice.state(), SessionState::Online);
    alice.close().await;
}
