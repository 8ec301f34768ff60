//! A hostile "IM&P": a tiny fake server on 127.0.0.1 that completes a plain c2s login
//! (SASL PLAIN, bind, empty roster) and then sends what a real server never should. Each
//! case ends only the session that received it, with a logged reason; a harmless stanza
//! with an unknown namespace does not.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ucbridge_im::{ImError, ImEvent, ImSession, ImSettings, ImTls, SessionState};

use crate::support::{event, WAIT};

const DOMAIN: &str = "fake.test";
const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' from='fake.test' id='s1' version='1.0'>";

/// Read until `needle` has arrived (bounded by [`WAIT`] and 64 KiB).
async fn expect(sock: &mut TcpStream, buf: &mut Vec<u8>, needle: &str) {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(pos) = find(buf, needle.as_bytes()) {
                buf.drain(..pos + needle.len());
                return true;
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if buf.len() + n <= 65536 => buf.extend_from_slice(&chunk[..n]),
                Ok(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "fake server: no {needle:?} from the client"
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Log one client in, then send `payload`; keep the socket open until the client leaves.
async fn serve(mut sock: TcpStream, payload: Vec<u8>) {
    let mut buf = Vec::new();
    let say = |s: String| s.into_bytes();
    expect(&mut sock, &mut buf, "<stream:stream").await;
    let features = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
                    <mechanism>PLAIN</mechanism></mechanisms></stream:features>";
    sock.write_all(&say(format!("{HEADER}{features}")))
        .await
        .unwrap();
    expect(&mut sock, &mut buf, "</auth>").await;
    sock.write_all(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        .await
        .unwrap();
    expect(&mut sock, &mut buf, "<stream:stream").await;
    let features =
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>";
    sock.write_all(&say(format!("{HEADER}{features}")))
        .await
        .unwrap();
    expect(&mut sock, &mut buf, "bind-1").await;
    sock.write_all(
        b"<iq type='result' id='bind-1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
          <jid>user@fake.test/r</jid></bind></iq>",
    )
    .await
    .unwrap();
    expect(&mut sock, &mut buf, "roster-").await;
    sock.write_all(b"<iq type='result' id='roster-1'><query xmlns='jabber:iq:roster'/></iq>")
        .await
        .unwrap();
    expect(&mut sock, &mut buf, "<presence").await;
    // Harmless first: an unknown namespace inside a message, and an unknown top-level
    // element; then the case under test.
    sock.write_all(
        b"<message from='x@fake.test/a' type='chat'><body>hi</body>\
          <thing xmlns='urn:example:unknown'><deep a='1'/></thing></message>",
    )
    .await
    .unwrap();
    sock.write_all(&payload).await.unwrap();
    let mut rest = [0u8; 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(WAIT, sock.read(&mut rest)).await {
        if n == 0 {
            break;
        }
    }
}

async fn fake_server(payloads: Vec<Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        for payload in payloads {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve(sock, payload));
        }
    });
    port
}

fn settings(port: u16) -> ImSettings {
    let mut s = ImSettings::new("127.0.0.1", port, DOMAIN);
    s.tls = ImTls::Plain;
    s.max_stanza_bytes = 64 * 1024;
    s.connect_timeout = Duration::from_secs(10);
    s
}

#[tokio::test]
async fn hostile_stanzas_end_only_the_session_that_got_them() {
    let huge = format!(
        "<message from='x@fake.test/a' type='chat'><body>{}</body></message>",
        "A".repeat(100 * 1024)
    );
    let deep = format!("<message>{}", "<a>".repeat(10_000));
    let mut invalid_utf8 = b"<message from='x@fake.test/a' type='chat'><body>".to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    invalid_utf8.extend_from_slice(b"</body></message>");
    // (case, what the reason must say, payload)
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("oversized stanza", "exceeds 65536 bytes", huge.into_bytes()),
        ("invalid UTF-8", "utf-8", invalid_utf8),
        (
            "malformed XML",
            "do not match",
            b"<message><body>x</wrong></message>".to_vec(),
        ),
        ("deep nesting", "nests deeper", deep.into_bytes()),
        (
            "DTD",
            "invalid syntax",
            b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]><message/>".to_vec(),
        ),
    ];
    // One more connection for the bystander session, which gets nothing hostile.
    let mut payloads: Vec<Vec<u8>> = vec![b" ".to_vec()];
    payloads.extend(cases.iter().map(|(_, _, p)| p.clone()));
    let port = fake_server(payloads).await;

    let (bystander, mut bystander_rx) = ImSession::open(&settings(port), "user", "pw", "r")
        .await
        .expect("bystander logs in");
    // The unknown namespace was harmless: the message arrives, the session stays up.
    let body = event(&mut bystander_rx, "harmless message", |e| match e {
        ImEvent::Message { message } => Some(message.body.clone()),
        _ => None,
    })
    .await;
    assert_eq!(body, "hi");

    for (what, says, _) in &cases {
        let (session, mut rx) = ImSession::open(&settings(port), "user", "pw", "r")
            .await
            .unwrap_or_else(|e| panic!("{what}: login failed: {e}"));
        let reason = event(&mut rx, "closed", |e| match e {
            ImEvent::Closed { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert!(reason.contains("hostile or malformed"), "{what}: {reason}");
        assert!(reason.contains(says), "{what}: {reason}");
        assert!(
            matches!(session.state(), SessionState::Closed { .. }),
            "{what}"
        );
        assert!(
            matches!(session.roster().await, Err(ImError::Closed)),
            "{what}"
        );
    }
    assert_eq!(bystander.state(), SessionState::Online);
    bystander.close().await;
}
