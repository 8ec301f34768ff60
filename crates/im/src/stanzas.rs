//! Conversions between xmpp-parsers stanzas and the crate's model: presence to
//! availability (RFC 6121 §4.7.2.1), roster items to contacts (§2.1.2), chat messages with
//! XEP-0203 delays and XEP-0280 carbons, and the checks on text we send.

use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::parsers::carbons;
use tokio_xmpp::parsers::delay::Delay;
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::presence::{Presence, Show, Type as PresenceType};
use tokio_xmpp::parsers::roster::{self, Item};

use crate::{Availability, ChatMessage, Direction, ImError, OwnPresence, Subscription};

/// The availability a presence stanza announces (`None` for subscription or error types).
pub(crate) fn availability_of(p: &Presence) -> Option<Availability> {
    match p.type_ {
        PresenceType::Unavailable => Some(Availability::Unavailable),
        PresenceType::None => Some(match p.show {
            None => Availability::Available,
            Some(Show::Chat) => Availability::Chat,
            Some(Show::Away) => Availability::Away,
            Some(Show::Xa) => Availability::ExtendedAway,
            Some(Show::Dnd) => Availability::DoNotDisturb,
        }),
        _ => None,
    }
}

/// The status text of a presence (English or language-less first), capped in length.
pub(crate) fn status_of(p: &Presence) -> Option<String> {
    let text = p
        .statuses
        .get("")
        .or_else(|| p.statuses.get("en"))
        .or_else(|| p.statuses.values().next())?;
    Some(text.chars().take(crate::MAX_STATUS_CHARS).collect())
}

/// The stanza announcing the user's own presence.
pub(crate) fn own_presence_stanza(own: &OwnPresence) -> Presence {
    let mut p = match own.availability {
        Availability::Unavailable => Presence::unavailable(),
        Availability::Available => Presence::available(),
        Availability::Chat => Presence::available().with_show(Show::Chat),
        Availability::Away => Presence::available().with_show(Show::Away),
        Availability::ExtendedAway => Presence::available().with_show(Show::Xa),
        Availability::DoNotDisturb => Presence::available().with_show(Show::Dnd),
    };
    if let Some(status) = &own.status {
        p.set_status(Lang::new(), status.clone());
    }
    p
}

pub(crate) fn subscription_of(item: &Item) -> Subscription {
    match item.subscription {
        roster::Subscription::To => Subscription::To,
        roster::Subscription::From => Subscription::From,
        roster::Subscription::Both => Subscription::Both,
        roster::Subscription::None | roster::Subscription::Remove => Subscription::None,
    }
}

/// Refuse text we would not send: too long, or control characters other than newline and
/// tab (most are not even allowed in XML 1.0).
pub(crate) fn check_text(text: &str, max: usize) -> Result<(), ImError> {
    if text.chars().count() > max {
        return Err(ImError::MessageTooLong { max });
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(ImError::InvalidBody(format!(
            "control character U+{:04X} not allowed",
            c as u32
        )));
    }
    Ok(())
}

/// A chat message as it arrived, possibly wrapped in a carbon.
pub(crate) struct Incoming {
    pub message: ChatMessage,
    /// `(from, id)`, to drop a message delivered twice.
    pub key: Option<(String, String)>,
}

/// The chat message in `m`, if it is one: a 1:1 message with a body, or a carbon of one
/// (XEP-0280), which is accepted only from the user's own bare JID (XEP-0280 §11: anyone
/// else could forge "messages the user sent").
pub(crate) fn chat_message(m: Message, own: &BareJid, now_ms: i64) -> Option<Incoming> {
    let from_self = m.from.as_ref().map(Jid::to_bare).as_ref() == Some(own);
    if from_self {
        for payload in &m.payloads {
            if let Ok(sent) = carbons::Sent::try_from(payload.clone()) {
                return plain_message(sent.forwarded.message, Direction::Outgoing, own, now_ms);
            }
            if let Ok(received) = carbons::Received::try_from(payload.clone()) {
                return plain_message(received.forwarded.message, Direction::Incoming, own, now_ms);
            }
        }
    }
    plain_message(m, Direction::Incoming, own, now_ms)
}

fn plain_message(m: Message, direction: Direction, own: &BareJid, now_ms: i64) -> Option<Incoming> {
    if !matches!(m.type_, MessageType::Chat | MessageType::Normal) {
        return None;
    }
    let (_, body) = m.get_best_body_cloned(vec!["en"])?;
    let from = m.from.as_ref().map(Jid::to_bare)?;
    let to =
        m.to.as_ref()
            .map(Jid::to_bare)
            .unwrap_or_else(|| own.clone());
    let delay = m
        .payloads
        .iter()
        .find_map(|p| Delay::try_from(p.clone()).ok());
    let id = m.id.as_ref().map(|i| i.0.clone());
    let key = id.clone().map(|id| (from.to_string(), id));
    Some(Incoming {
        message: ChatMessage {
            id: id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            from: from.to_string(),
            to: to.to_string(),
            body,
            at_ms: delay
                .as_ref()
                .map(|d| d.stamp.0.timestamp_millis())
                .unwrap_or(now_ms),
            direction,
            delayed: delay.is_some(),
        },
        key,
    })
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
