//! Chat and presence for signed-in end users (issue #13), against a real Prosody from the
//! test kit as the IM and Presence stand-in and the lab over HTTPS for sign-in: the REST
//! API and the live event stream on one side, an independent XMPP client
//! (`ucbridge_im::ImSession`, playing the Cisco Jabber user) on the other.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::mpsc::Receiver;
use ucbridge_im::{Availability, ImEvent, ImSession, ImSettings, OwnPresence};
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_server::{RunningServer, Server, ServerConfig};
use ucbridge_store::{Role, Store};
use ucbridge_testkit::prosody::{Prosody, DOMAIN, USER_PASSWORD};

use crate::common::{self, ApiClient, ADMIN_PW};

/// The lab's end-user password (`LabConfig::user_password`): CUCM and IM&P agree on it.
const USER_PW: &str = "ucbridge-user";
const LAB_USERS: usize = 3;
/// Longest wait for one expected event.
const WAIT: Duration = Duration::from_secs(45);

struct Fixture {
    server: RunningServer,
    store: Store,
    secrets: ucbridge_auth::SecretBox,
    lab: RunningLab,
    admin: ApiClient,
    /// CUCM userids of the synced users.
    users: Vec<String>,
    _dir: tempfile::TempDir,
}

/// A server with the lab's CUCM and IdS connections and its users synced.
async fn start() -> Fixture {
    let (store, dir) = common::sqlite_store().await;
    let lab = RunningLab::start(LabConfig {
        users: LAB_USERS,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    common::account(&store, "root", ADMIN_PW, Role::Admin).await;
    let secrets = common::secret_box();
    let config = ServerConfig {
        lease_ttl: Duration::from_secs(2),
        tick: Duration::from_millis(100),
        ..common::local_config()
    };
    let server = Server::start(store.clone(), secrets.clone(), config)
        .await
        .unwrap();
    let admin = {
        let mut c = ApiClient::new(&server.url());
        c.login("root", ADMIN_PW).await;
        c
    };
    let ca = lab.ca_certificate_pem().unwrap().to_owned();
    for (kind, url) in [("cucm", lab.axl_url()), ("ids", lab.ids_token_url())] {
        admin
            .put_json(
                &format!("/api/v1/connections/{kind}"),
                &json!({"url": url, "username": "administrator", "password": "ucbridge-lab", "ca_pem": ca}),
            )
            .await
            .expect(StatusCode::OK);
    }
    admin.run_job("snapshot").await;
    for _ in 0..300 {
        let s = admin.get("/api/v1/status").await.json;
        if s["snapshot"]["state"] == "idle" && s["snapshot"]["users_count"] == LAB_USERS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin.run_job("user_sync").await;
    let run = admin.wait_for_run("user_sync").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let users: Vec<String> = store
        .source_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.userid)
        .collect();
    assert_eq!(users.len(), LAB_USERS);
    Fixture {
        server,
        store,
        secrets,
        lab,
        admin,
        users,
        _dir: dir,
    }
}

impl Fixture {
    /// Point the `xmpp` connection at `prosody`, serving `domain`.
    async fn connect_xmpp(&self, prosody: &Prosody, domain: &str) {
        self.connect_xmpp_with(prosody, json!({"domain": domain}))
            .await;
    }

    async fn connect_xmpp_with(&self, prosody: &Prosody, options: Value) {
        self.admin
            .put_json(
                "/api/v1/connections/xmpp",
                &json!({
                    "url": format!("xmpp://127.0.0.1:{}", prosody.port()),
                    "ca_pem": prosody.ca_pem(),
                    "options": options,
                }),
            )
            .await
            .expect(StatusCode::OK);
    }

    /// A signed-in end user (CUCM password).
    async fn sign_in(&self, userid: &str) -> ApiClient {
        let mut c = ApiClient::new(&self.server.url());
        let answer = c
            .post_json(
                "/api/v1/me/session",
                &json!({"username": userid, "password": USER_PW}),
            )
            .await
            .expect(StatusCode::OK);
        c.csrf = answer.json["csrf_token"].as_str().map(str::to_owned);
        c
    }

    /// An access token of the lab IdS (password grant).
    async fn token(&self, user: &str) -> String {
        let pem = self.lab.ca_certificate_pem().unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let r = http
            .post(self.lab.ids_token_url())
            .form(&[
                ("grant_type", "password"),
                ("username", user),
                ("password", USER_PW),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The XMPP client of the Jabber-side user `peer`.
async fn jabber_peer(prosody: &Prosody) -> (ImSession, Receiver<ImEvent>) {
    let mut settings = ImSettings::new("127.0.0.1", prosody.port(), DOMAIN);
    settings.ca_file = Some(prosody.ca_file().to_owned());
    ImSession::open(&settings, "peer", USER_PASSWORD, "jabber")
        .await
        .expect("the Jabber-side user logs in")
}

/// The next event of the peer's session matching `wanted` (bounded).
async fn peer_sees(events: &mut Receiver<ImEvent>, what: &str, wanted: impl Fn(&ImEvent) -> bool) {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if wanted(&e) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "the Jabber side did not see {what}"
    );
}

/// One live stream of `GET /api/v1/me/chat/events`, read event by event.
struct Stream {
    response: reqwest::Response,
    buffer: String,
    /// Every event read, for checks over the whole stream.
    seen: Vec<Value>,
}

impl Stream {
    async fn open(client: &ApiClient) -> Stream {
        let response = client
            .request(reqwest::Method::GET, "/api/v1/me/chat/events")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Stream {
            response,
            buffer: String::new(),
            seen: Vec::new(),
        }
    }

    /// The next event's data as JSON (keep-alive comments skipped).
    async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                let event: Value = serde_json::from_str(&data.join("\n")).unwrap();
                self.seen.push(event.clone());
                return event;
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("an event in time")
                .expect("the stream stays open")
                .expect("the stream does not end");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Read until an event matches `wanted`; that event.
    async fn until(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..500 {
            let event = self.next().await;
            if wanted(&event) {
                return event;
            }
        }
        panic!("no {what} in {:#?}", self.seen);
    }
}

fn contact<'a>(chat: &'a Value, jid: &str) -> Option<&'a Value> {
    chat["contacts"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["jid"] == jid))
}

/// The whole scenario of issue #13 on one user: log-in at sign-in, an offline message,
/// contacts with approval both ways, presence both ways, messages both ways over REST and
/// the live stream, bad input, IM&P restarting mid-session without duplicates, removal,
/// and sign-out ending the XMPP session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_user_chats_with_a_jabber_user_through_im_and_presence() {
    let f = start().await;
    let Some(mut prosody) = Prosody::start(&["peer", "peer2"]) else {
        return;
    };
    let alice = f.users[0].clone();
    prosody.add_user(&alice, USER_PW).unwrap();
    let alice_jid = format!("{alice}@{DOMAIN}");
    let peer_jid = format!("peer@{DOMAIN}");

    // Not configured: a clear 409, and the page hides chat.
    let early = f.sign_in(&alice).await;
    let answer = early
        .get("/api/v1/me/chat")
        .await
        .expect(StatusCode::CONFLICT);
    assert_eq!(answer.error_code(), "chat_not_configured");
    early.delete("/api/v1/session").await;

    f.connect_xmpp(&prosody, DOMAIN).await;
    let test = f.admin.post("/api/v1/connections/xmpp/test").await;
    assert_eq!(test.status, StatusCode::OK, "{}", test.text);
    assert!(
        test.json["summary"].as_str().unwrap().contains(DOMAIN),
        "{}",
        test.text
    );

    // The peer writes while Alice is offline: IM&P stores it (XEP-0160).
    let (peer, mut peer_events) = jabber_peer(&prosody).await;
    peer.send_message(&alice_jid, "sent while you were away")
        .await
        .unwrap();

    // Sign-in logs Alice in to IM&P; the page's snapshot and history have the offline message.
    let me = f.sign_in(&alice).await;
    let chat = me.get("/api/v1/me/chat").await.expect(StatusCode::OK).json;
    assert_eq!(chat["state"]["state"], "online", "{chat}");
    assert_eq!(chat["jid"], alice_jid.as_str());
    assert!(!me.get("/api/v1/me/chat").await.text.contains(USER_PW));
    let mut stream = Stream::open(&me).await;
    let first = stream.next().await;
    assert_eq!(first["type"], "snapshot", "{first}");
    let mut offline = Vec::new();
    for _ in 0..100 {
        offline = me
            .get(&format!("/api/v1/me/chat/messages?with={peer_jid}"))
            .await
            .expect(StatusCode::OK)
            .json["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !offline.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(offline.len(), 1, "{offline:?}");
    assert_eq!(offline[0]["body"], "sent while you were away");
    assert_eq!(offline[0]["direction"], "incoming");
    assert_eq!(offline[0]["delayed"], true);

    // Alice adds the peer; the peer approves (and asks back); Alice approves.
    me.post_json(
        "/api/v1/me/chat/contacts",
        &json!({"jid": peer_jid, "name": "Jabber Peer"}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    peer_sees(
        &mut peer_events,
        "Alice's request",
        |e| matches!(e, ImEvent::SubscriptionRequest { from } if *from == alice_jid),
    )
    .await;
    peer.answer_subscription(&alice_jid, true).await.unwrap();
    stream
        .until("the peer's request", |e| {
            e["type"] == "subscription_request" && e["from"] == peer_jid.as_str()
        })
        .await;
    me.post_json(
        &format!("/api/v1/me/chat/subscriptions/{peer_jid}"),
        &json!({"accept": true}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    stream
        .until("the contact shared both ways", |e| {
            e["type"] == "contact"
                && e["contact"]["jid"] == peer_jid.as_str()
                && e["contact"]["subscription"] == "both"
        })
        .await;

    // Presence both ways.
    peer.set_presence(OwnPresence {
        availability: Availability::Away,
        status: Some("in a meeting".into()),
    })
    .await
    .unwrap();
    stream
        .until("the peer away", |e| {
            e["type"] == "presence" && e["jid"] == peer_jid.as_str() && e["availability"] == "away"
        })
        .await;
    let chat = me.get("/api/v1/me/chat").await.expect(StatusCode::OK).json;
    let shown = contact(&chat, &peer_jid).expect("the peer is a contact");
    assert_eq!(shown["availability"], "away", "{chat}");
    assert_eq!(shown["status"], "in a meeting");
    assert_eq!(shown["name"], "Jabber Peer");
    let own = me
        .put_json(
            "/api/v1/me/chat/presence",
            &json!({"availability": "do_not_disturb", "status": "on a call"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(own.json["availability"], "do_not_disturb");
    peer_sees(&mut peer_events, "Alice in do-not-disturb", |e| {
        matches!(e, ImEvent::Presence { jid, availability: Availability::DoNotDisturb, status }
            if *jid == alice_jid && status.as_deref() == Some("on a call"))
    })
    .await;

    // Messages both ways.
    peer.send_message(&alice_jid, "hello from Jabber")
        .await
        .unwrap();
    let got = stream
        .until("the peer's message", |e| {
            e["type"] == "message" && e["message"]["body"] == "hello from Jabber"
        })
        .await;
    assert_eq!(got["message"]["direction"], "incoming", "{got}");
    assert_eq!(got["message"]["from"], peer_jid.as_str());
    let sent = me
        .post_json(
            "/api/v1/me/chat/messages",
            &json!({"to": peer_jid, "body": "hello from the web"}),
        )
        .await
        .expect(StatusCode::OK);
    assert!(!sent.json["id"].as_str().unwrap().is_empty());
    peer_sees(&mut peer_events, "Alice's message", |e| {
        matches!(e, ImEvent::Message { message } if message.body == "hello from the web" && message.from == alice_jid)
    })
    .await;

    // Bad input: 400 with a clear message, nothing sent.
    for (body, words) in [
        (json!({"to": "not a jid", "body": "x"}), "not a jid"),
        (json!({"to": "@nobody", "body": "x"}), "@nobody"),
        (
            json!({"to": peer_jid, "body": "x".repeat(ucbridge_im::MAX_MESSAGE_CHARS + 1)}),
            "at most",
        ),
        (json!({"to": peer_jid, "body": "  "}), "empty"),
    ] {
        let answer = me
            .post_json("/api/v1/me/chat/messages", &body)
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert!(answer.error_message().contains(words), "{}", answer.text);
    }
    me.post_json("/api/v1/me/chat/contacts", &json!({"jid": "a b@x"}))
        .await
        .expect(StatusCode::BAD_REQUEST);
    me.put_json(
        "/api/v1/me/chat/presence",
        &json!({"availability": "unavailable"}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);

    // IM&P restarts: the stream says reconnecting, then online; nothing is duplicated.
    tokio::task::block_in_place(|| prosody.restart()).unwrap();
    stream
        .until("reconnecting", |e| {
            e["type"] == "state" && e["state"]["state"] == "reconnecting"
        })
        .await;
    stream
        .until("online again", |e| {
            e["type"] == "state" && e["state"]["state"] == "online"
        })
        .await;
    peer_sees(&mut peer_events, "the peer online again", |e| {
        matches!(e, ImEvent::Online)
    })
    .await;
    peer.send_message(&alice_jid, "after the restart")
        .await
        .unwrap();
    peer.send_message(&alice_jid, "the last one").await.unwrap();
    stream
        .until("the last message", |e| {
            e["type"] == "message" && e["message"]["body"] == "the last one"
        })
        .await;
    let bodies: Vec<String> = stream
        .seen
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| e["message"]["body"].as_str().unwrap_or_default().to_owned())
        .collect();
    for once in [
        "hello from Jabber",
        "hello from the web",
        "after the restart",
    ] {
        assert_eq!(
            bodies.iter().filter(|b| *b == once).count(),
            1,
            "{bodies:?}"
        );
    }
    let history = me
        .get(&format!("/api/v1/me/chat/messages?with={peer_jid}"))
        .await
        .json["messages"]
        .as_array()
        .cloned()
        .unwrap();
    let mut ids: Vec<String> = history
        .iter()
        .map(|m| format!("{}|{}", m["from"], m["id"]))
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), total), (5, 5), "{history:#?}");

    // Adding and removing another contact (awaiting approval meanwhile).
    let other = format!("peer2@{DOMAIN}");
    me.post_json("/api/v1/me/chat/contacts", &json!({"jid": other}))
        .await
        .expect(StatusCode::NO_CONTENT);
    stream
        .until("the new contact", |e| {
            e["type"] == "contact" && e["contact"]["jid"] == other.as_str()
        })
        .await;
    me.delete(&format!("/api/v1/me/chat/contacts/{other}"))
        .await
        .expect(StatusCode::NO_CONTENT);
    stream
        .until("the contact removed", |e| {
            e["type"] == "contact_removed" && e["jid"] == other.as_str()
        })
        .await;
    let chat = me.get("/api/v1/me/chat").await.expect(StatusCode::OK).json;
    assert!(contact(&chat, &other).is_none(), "{chat}");
    assert!(contact(&chat, &peer_jid).is_some(), "{chat}");

    // Sign-out ends the XMPP session: the Jabber side sees Alice go offline.
    while peer_events.try_recv().is_ok() {}
    me.delete("/api/v1/session")
        .await
        .expect(StatusCode::NO_CONTENT);
    peer_sees(&mut peer_events, "Alice offline", |e| {
        matches!(e, ImEvent::Presence { jid, availability: Availability::Unavailable, .. } if *jid == alice_jid)
    })
    .await;
    me.get("/api/v1/me/chat")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let metrics = f.admin.get("/metrics").await.text;
    assert!(metrics.contains("ucbridge_chat_sessions"), "{metrics}");
    peer.close().await;
    f.server.shutdown().await;
}

/// Where chat cannot work, the answer says why: an SSO sign-in has no password for IM&P;
/// another node holds no session; a wrong XMPP domain is named by the log-in and by
/// "Test connection". And an idle session closes (contacts see the user go offline) and
/// opens again on use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_explains_sso_other_nodes_and_a_wrong_domain_and_closes_when_idle() {
    let f = start().await;
    let Some(prosody) = Prosody::start(&["peer"]) else {
        return;
    };
    let (bob, carol) = (f.users[1].clone(), f.users[2].clone());
    prosody.add_user(&bob, USER_PW).unwrap();
    f.connect_xmpp_with(&prosody, json!({"domain": DOMAIN, "idle_timeout": "2s"}))
        .await;

    // SSO: no password to give IM&P.
    let token = f.token(&carol).await;
    let mut sso = ApiClient::new(&f.server.url());
    let answer = sso
        .post_json("/api/v1/me/session", &json!({"access_token": token}))
        .await
        .expect(StatusCode::OK);
    sso.csrf = answer.json["csrf_token"].as_str().map(str::to_owned);
    let answer = sso
        .get("/api/v1/me/chat")
        .await
        .expect(StatusCode::CONFLICT);
    assert_eq!(answer.error_code(), "chat_needs_password");
    assert!(
        answer.error_message().contains("password"),
        "{}",
        answer.text
    );
    sso.get("/api/v1/me/chat/events")
        .await
        .expect(StatusCode::CONFLICT);

    // A second node on the same database: Bob's session is valid there, his chat is not.
    let me = f.sign_in(&bob).await;
    let node2 = Server::start(f.store.clone(), f.secrets.clone(), common::local_config())
        .await
        .unwrap();
    let elsewhere = ApiClient {
        base: node2.url(),
        ..me.clone()
    };
    let answer = elsewhere
        .get("/api/v1/me/chat")
        .await
        .expect(StatusCode::CONFLICT);
    assert_eq!(answer.error_code(), "chat_on_other_node");
    node2.shutdown().await;

    // Idle: with no request and no stream for idle_timeout the session closes; the next
    // request opens it again.
    let bob_jid = format!("{bob}@{DOMAIN}");
    let (peer, mut peer_events) = jabber_peer(&prosody).await;
    peer.add_contact(&bob_jid, None).await.unwrap();
    let mut asked = false;
    for _ in 0..100 {
        let chat = me.get("/api/v1/me/chat").await.expect(StatusCode::OK).json;
        if chat["requests"].as_array().is_some_and(|r| !r.is_empty()) {
            asked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(asked, "the peer's request reaches Bob");
    me.post_json(
        &format!("/api/v1/me/chat/subscriptions/peer@{DOMAIN}"),
        &json!({"accept": true}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let bob_is = |wanted: Availability| {
        let bob_jid = bob_jid.clone();
        move |e: &ImEvent| matches!(e, ImEvent::Presence { jid, availability, .. } if *jid == bob_jid && *availability == wanted)
    };
    peer_sees(
        &mut peer_events,
        "Bob available",
        bob_is(Availability::Available),
    )
    .await;
    peer_sees(
        &mut peer_events,
        "Bob offline when idle",
        bob_is(Availability::Unavailable),
    )
    .await;
    me.get("/api/v1/me/chat").await.expect(StatusCode::OK);
    peer_sees(
        &mut peer_events,
        "Bob back on use",
        bob_is(Availability::Available),
    )
    .await;
    peer.close().await;

    // A wrong domain: the log-in fails with the reason, on the page and in the test.
    me.delete("/api/v1/session")
        .await
        .expect(StatusCode::NO_CONTENT);
    f.connect_xmpp(&prosody, "wrong.test").await;
    let me = f.sign_in(&bob).await;
    let answer = me.get("/api/v1/me/chat").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text);
    assert_eq!(answer.error_code(), "chat_failed");
    assert!(
        answer.error_message().contains("wrong.test"),
        "{}",
        answer.text
    );
    let test = f.admin.post("/api/v1/connections/xmpp/test").await;
    assert_eq!(test.status, StatusCode::BAD_GATEWAY, "{}", test.text);
    assert!(test.error_message().contains("wrong.test"), "{}", test.text);
    f.server.shutdown().await;
}
