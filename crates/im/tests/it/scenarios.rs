//! A user's whole chat life against Prosody with a Jabber-side peer: contacts with
//! approval both ways, presence both ways, messages both ways, a carbon from the user's
//! other client, an offline message at login, removing a contact; then a Prosody restart
//! mid-session.

use tokio_xmpp::jid::Jid;
use tokio_xmpp::parsers::message::{Lang, Message};
use tokio_xmpp::parsers::presence::{Presence, Show, Type as PresenceType};
use tokio_xmpp::Stanza;
use ucbridge_im::{
    Availability, Direction, ImError, ImEvent, ImSession, OwnPresence, SessionState, Subscription,
};
use ucbridge_testkit::prosody::{Prosody, USER_PASSWORD};

use crate::support::{event, jid, settings, Peer};

fn chat_body(s: &Stanza) -> Option<(String, String)> {
    match s {
        Stanza::Message(m) => {
            let (_, body) = m.get_best_body_cloned(vec![])?;
            Some((m.from.as_ref()?.to_bare().to_string(), body))
        }
        _ => None,
    }
}

/// alice (ImSession) and bob (peer) become contacts: alice asks, bob approves and asks
/// back, alice approves through answer_subscription.
async fn befriend(
    p: &Prosody,
    alice: &ImSession,
    rx: &mut tokio::sync::mpsc::Receiver<ImEvent>,
    bob: &mut Peer,
) {
    let (a, b) = (jid(p, "alice"), jid(p, "bob"));
    alice
        .add_contact(&b, Some("Bob"))
        .await
        .expect("add contact");
    bob.stanza("alice's subscription request", |s| match s {
        Stanza::Presence(p) if p.type_ == PresenceType::Subscribe => Some(()),
        _ => None,
    })
    .await;
    let a_jid = Jid::new(&a).unwrap();
    bob.presence(Presence::subscribed().with_to(a_jid.clone()))
        .await;
    bob.presence(Presence::subscribe().with_to(a_jid)).await;
    let from = event(rx, "bob's subscription request", |e| match e {
        ImEvent::SubscriptionRequest { from } => Some(from.clone()),
        _ => None,
    })
    .await;
    assert_eq!(from, b);
    alice.answer_subscription(&b, true).await.expect("approve");
    event(rx, "bob with subscription both", |e| match e {
        ImEvent::ContactChanged { contact }
            if contact.jid == b && contact.subscription == Subscription::Both =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn chat_contacts_presence_and_messages_both_ways() {
    let Some(p) = Prosody::builder(&["alice", "bob", "dave"])
        .allow_plain()
        .start()
    else {
        return;
    };
    let (a, b) = (jid(&p, "alice"), jid(&p, "bob"));
    let mut bob = Peer::connect(&p, "bob", "jabber").await;
    bob.presence(Presence::available()).await;
    // STARTTLS with the test CA (the default mode).
    let (alice, mut rx) = ImSession::open(&settings(&p), "alice", USER_PASSWORD, "ucbridge")
        .await
        .unwrap_or_else(|e| panic!("open: {e}\n{}", p.log()));
    assert_eq!(alice.bare_jid(), a);
    assert_eq!(alice.state(), SessionState::Online);
    let initial = event(&mut rx, "initial roster", |e| match e {
        ImEvent::Roster { contacts } => Some(contacts.len()),
        _ => None,
    })
    .await;
    assert_eq!(initial, 0);

    befriend(&p, &alice, &mut rx, &mut bob).await;

    // Contact's presence -> user: bob goes away with a status text.
    let mut away = Presence::available().with_show(Show::Away);
    away.set_status(Lang::new(), "In a meeting");
    bob.presence(away).await;
    let (availability, status) = event(&mut rx, "bob away", |e| match e {
        ImEvent::Presence {
            jid,
            availability,
            status,
        } if *jid == b && *availability == Availability::Away => {
            Some((*availability, status.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!(
        (availability, status.as_deref()),
        (Availability::Away, Some("In a meeting"))
    );
    let roster = alice.roster().await.unwrap();
    assert_eq!(roster.len(), 1);
    assert_eq!(roster[0].availability, Availability::Away);
    assert_eq!(roster[0].name.as_deref(), Some("Bob"));

    // User's presence -> contact.
    let busy = OwnPresence {
        availability: Availability::DoNotDisturb,
        status: Some("Busy".into()),
    };
    alice.set_presence(busy.clone()).await.unwrap();
    assert_eq!(alice.own_presence(), busy);
    let status = bob
        .stanza("alice dnd", |s| match s {
            Stanza::Presence(p) if p.show == Some(Show::Dnd) => {
                Some(p.statuses.values().next().cloned())
            }
            _ => None,
        })
        .await;
    assert_eq!(status.as_deref(), Some("Busy"));

    // Messages both ways; the sent one also appears as an outgoing event.
    let id = alice.send_message(&b, "hello bob <&>").await.unwrap();
    let got = bob.stanza("alice's message", |s| chat_body(&s)).await;
    assert_eq!(got, (a.clone(), "hello bob <&>".to_owned()));
    let direction = event(&mut rx, "own message as event", |e| match e {
        ImEvent::Message { message } if message.id == id => Some(message.direction),
        _ => None,
    })
    .await;
    assert_eq!(direction, Direction::Outgoing);
    bob.say(&a, "hi alice").await;
    let m = event(&mut rx, "bob's message", |e| match e {
        ImEvent::Message { message } if message.direction == Direction::Incoming => {
            Some(message.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(
        (m.from.as_str(), m.to.as_str(), m.body.as_str()),
        (b.as_str(), a.as_str(), "hi alice")
    );
    assert!(!m.delayed);

    // A carbon (XEP-0280): alice writes to bob from her Jabber client.
    let mut alice_jabber = Peer::connect(&p, "alice", "jabber").await;
    let to_bob = Message::chat(Some(Jid::new(&b).unwrap()))
        .with_body(Lang::new(), "sent from Jabber".into());
    alice_jabber.send(to_bob).await;
    let carbon = event(&mut rx, "carbon of alice's Jabber message", |e| match e {
        ImEvent::Message { message } if message.body == "sent from Jabber" => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(carbon.direction, Direction::Outgoing);
    assert_eq!(
        (carbon.from.as_str(), carbon.to.as_str()),
        (a.as_str(), b.as_str())
    );

    // An offline message (XEP-0160) reaches dave at login, with its XEP-0203 stamp.
    bob.say(&jid(&p, "dave"), "while you were out").await;
    // bob's own stream confirms nothing; a round trip through alice orders it.
    bob.say(&a, "marker").await;
    event(&mut rx, "marker", |e| match e {
        ImEvent::Message { message } if message.body == "marker" => Some(()),
        _ => None,
    })
    .await;
    let (dave, mut dave_rx) = ImSession::open(&settings(&p), "dave", USER_PASSWORD, "ucbridge")
        .await
        .expect("dave opens");
    let offline = event(&mut dave_rx, "offline message", |e| match e {
        ImEvent::Message { message } => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(offline.body, "while you were out");
    assert!(offline.delayed);
    assert!(offline.at_ms > 0 && offline.at_ms <= chrono_now_ms());
    dave.close().await;

    // Bad input from the API side.
    assert!(matches!(
        alice.send_message("no jid", "x").await,
        Err(ImError::InvalidJid(_))
    ));
    let long = "x".repeat(ucbridge_im::MAX_MESSAGE_CHARS + 1);
    assert!(matches!(
        alice.send_message(&b, &long).await,
        Err(ImError::MessageTooLong { .. })
    ));
    assert!(matches!(
        alice.send_message(&b, "bell\u{7}").await,
        Err(ImError::InvalidBody(_))
    ));

    // Removing the contact.
    alice.remove_contact(&b).await.unwrap();
    event(&mut rx, "bob removed", |e| match e {
        ImEvent::ContactRemoved { jid } if *jid == b => Some(()),
        _ => None,
    })
    .await;
    assert!(alice.roster().await.unwrap().is_empty());

    alice.close().await;
    alice.close().await; // idempotent
    event(&mut rx, "closed", |e| {
        matches!(e, ImEvent::Closed { .. }).then_some(())
    })
    .await;
    assert!(matches!(alice.state(), SessionState::Closed { .. }));
    assert!(matches!(
        alice.send_message(&b, "late").await,
        Err(ImError::Closed)
    ));
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(i64::MAX)
}

#[tokio::test]
async fn reconnects_after_a_prosody_restart_without_duplicates() {
    let Some(mut p) = Prosody::builder(&["alice", "bob"]).allow_plain().start() else {
        return;
    };
    let (a, b) = (jid(&p, "alice"), jid(&p, "bob"));
    let mut bob = Peer::connect(&p, "bob", "jabber").await;
    bob.presence(Presence::available()).await;
    let (alice, mut rx) = ImSession::open(&settings(&p), "alice", USER_PASSWORD, "ucbridge")
        .await
        .expect("open");
    befriend(&p, &alice, &mut rx, &mut bob).await;
    let away = OwnPresence {
        availability: Availability::Away,
        status: Some("lunch".into()),
    };
    alice.set_presence(away).await.unwrap();
    bob.say(&a, "before restart").await;
    event(&mut rx, "message before restart", |e| match e {
        ImEvent::Message { message } if message.body == "before restart" => Some(()),
        _ => None,
    })
    .await;

    p.restart().expect("restart prosody");

    event(&mut rx, "reconnecting", |e| {
        matches!(e, ImEvent::Reconnecting { .. }).then_some(())
    })
    .await;
    let contacts = event(&mut rx, "roster after reconnect", |e| match e {
        ImEvent::Roster { contacts } => Some(contacts.clone()),
        _ => None,
    })
    .await;
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        (contacts[0].jid.as_str(), contacts[0].subscription),
        (b.as_str(), Subscription::Both)
    );
    event(&mut rx, "online again", |e| {
        matches!(e, ImEvent::Online).then_some(())
    })
    .await;
    assert_eq!(alice.state(), SessionState::Online);

    // The peer reconnects by itself; its presence and alice's re-sent one cross again.
    bob.online().await;
    bob.presence(Presence::available()).await;
    bob.stanza("alice's presence re-sent", |s| match s {
        Stanza::Presence(p)
            if p.show == Some(Show::Away)
                && p.from.as_ref().map(|f| f.to_bare().to_string()) == Some(a.clone()) =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    event(&mut rx, "bob available again", |e| match e {
        ImEvent::Presence {
            jid,
            availability: Availability::Available,
            ..
        } if *jid == b => Some(()),
        _ => None,
    })
    .await;

    // Messages flow again, and nothing from before the restart comes twice.
    alice
        .send_message(&b, "after restart")
        .await
        .expect("send after reconnect");
    bob.stanza("message after restart", |s| {
        chat_body(&s).filter(|(_, body)| body == "after restart")
    })
    .await;
    bob.say(&a, "second").await;
    let mut seen = Vec::new();
    event(&mut rx, "second message", |e| match e {
        ImEvent::Message { message } if message.direction == Direction::Incoming => {
            seen.push(message.body.clone());
            (message.body == "second").then_some(())
        }
        _ => None,
    })
    .await;
    assert_eq!(
        seen,
        vec!["second".to_owned()],
        "no message repeated after the reconnect"
    );
    alice.close().await;
}
