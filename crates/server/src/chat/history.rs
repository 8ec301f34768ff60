//! The recent messages of one user's conversations, in memory and bounded, so a message
//! that arrives before the page subscribes (an offline message delivered at log-in, one
//! received while the tab reloads) still reaches the page; and the one place duplicates
//! are dropped (a message seen again after a reconnect is not shown twice).

use std::collections::{HashMap, VecDeque};

use super::view::MessageView;

/// Messages kept per conversation (the oldest go first).
pub const PER_CONVERSATION: usize = 100;
/// Conversations kept per user (the one quiet longest goes first).
pub const CONVERSATIONS: usize = 100;

#[derive(Debug, Default)]
pub struct History {
    conversations: HashMap<String, Conversation>,
    /// Orders conversations by their latest message.
    tick: u64,
}

#[derive(Debug, Default)]
struct Conversation {
    messages: VecDeque<MessageView>,
    last: u64,
}

/// What makes two copies of a message the same: its stanza id and sender, or for a
/// message without an id its sender, time and text.
fn same(a: &MessageView, b: &MessageView) -> bool {
    match (a.id.is_empty(), b.id.is_empty()) {
        (false, false) => a.id == b.id && a.from == b.from,
        _ => a.from == b.from && a.at_ms == b.at_ms && a.body == b.body,
    }
}

impl History {
    /// Keep `m`; false when it is a copy of a message already kept.
    pub fn push(&mut self, m: MessageView) -> bool {
        let peer = m.peer().to_owned();
        if !self.conversations.contains_key(&peer) && self.conversations.len() >= CONVERSATIONS {
            self.evict_quietest();
        }
        self.tick += 1;
        let c = self.conversations.entry(peer).or_default();
        if c.messages.iter().any(|kept| same(kept, &m)) {
            return false;
        }
        c.last = self.tick;
        if c.messages.len() >= PER_CONVERSATION {
            c.messages.pop_front();
        }
        // Offline messages may arrive after newer ones: keep each conversation in time order.
        let at = c.messages.partition_point(|kept| kept.at_ms <= m.at_ms);
        c.messages.insert(at, m);
        true
    }

    fn evict_quietest(&mut self) {
        let quietest = self
            .conversations
            .iter()
            .min_by_key(|(_, c)| c.last)
            .map(|(peer, _)| peer.clone());
        if let Some(peer) = quietest {
            self.conversations.remove(&peer);
        }
    }

    /// The kept messages with `peer`, oldest first.
    pub fn with(&self, peer: &str) -> Vec<MessageView> {
        self.conversations
            .get(peer)
            .map(|c| c.messages.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ucbridge_im::Direction;

    fn message(id: &str, from: &str, at_ms: i64) -> MessageView {
        MessageView {
            id: id.into(),
            from: from.into(),
            to: "me@x".into(),
            body: format!("body {id}"),
            at_ms,
            direction: Direction::Incoming,
            delayed: false,
        }
    }

    #[test]
    fn copies_are_dropped_and_everything_is_bounded() {
        let mut h = History::default();
        assert!(h.push(message("a", "bob@x", 2)));
        assert!(!h.push(message("a", "bob@x", 2)));
        // The same id from someone else is another message.
        assert!(h.push(message("a", "carol@x", 2)));
        // An older (offline) message goes before the newer one.
        assert!(h.push(message("b", "bob@x", 1)));
        let ids: Vec<String> = h.with("bob@x").into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["b", "a"]);
        for i in 0..(PER_CONVERSATION + 10) {
            h.push(message(&format!("m{i}"), "bob@x", 10 + i as i64));
        }
        assert_eq!(h.with("bob@x").len(), PER_CONVERSATION);
        for i in 0..(CONVERSATIONS + 10) {
            h.push(message("z", &format!("u{i}@x"), 5));
        }
        assert_eq!(h.conversations.len(), CONVERSATIONS);
        // The quietest conversations went first: the newest are kept.
        assert_eq!(h.with(&format!("u{}@x", CONVERSATIONS + 9)).len(), 1);
    }
}
