//! Helpers: settings for a test Prosody, the Jabber-side peer (tokio-xmpp `Client` over
//! plain TCP, independent of the crate under test), and bounded waits.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::parsers::message::{Lang, Message};
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event, Stanza};
use ucbridge_im::{ImEvent, ImSettings};
use ucbridge_testkit::prosody::Prosody;

/// Upper bound of every wait; a failure, never a measured timing.
pub const WAIT: Duration = Duration::from_secs(15);

pub fn settings(p: &Prosody) -> ImSettings {
    let mut s = ImSettings::new("127.0.0.1", p.port(), p.domain());
    s.ca_file = Some(p.ca_file().to_owned());
    s.reconnect.initial = Duration::from_millis(200);
    s.reconnect.max = Duration::from_secs(2);
    s
}

pub fn jid(p: &Prosody, user: &str) -> String {
    format!("{user}@{}", p.domain())
}

/// The next event matching `pred` (others skipped); panics after [`WAIT`], naming the
/// last events skipped.
pub async fn event<T>(
    rx: &mut mpsc::Receiver<ImEvent>,
    what: &str,
    mut pred: impl FnMut(&ImEvent) -> Option<T>,
) -> T {
    let mut skipped = std::collections::VecDeque::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(ev) = rx.recv().await {
            if let Some(t) = pred(&ev) {
                return Some(t);
            }
            if skipped.len() == 10 {
                skipped.pop_front();
            }
            skipped.push_back(format!("{ev:?}"));
        }
        None
    })
    .await;
    match found {
        Ok(Some(t)) => t,
        Ok(None) => panic!("event stream ended before {what}; last events: {skipped:#?}"),
        Err(_) => panic!("no {what} within {WAIT:?}; last events: {skipped:#?}"),
    }
}

/// A Jabber user played by tokio-xmpp's client (plain TCP to the test Prosody).
pub struct Peer {
    pub client: Client,
}

impl Peer {
    pub async fn connect(p: &Prosody, user: &str, resource: &str) -> Peer {
        let jid = Jid::new(&format!("{user}@{}/{resource}", p.domain())).expect("jid");
        let client = Client::new_plaintext(
            jid,
            ucbridge_testkit::prosody::USER_PASSWORD,
            DnsConfig::addr(&format!("127.0.0.1:{}", p.port())),
            Timeouts::tight(),
        );
        let mut peer = Peer { client };
        peer.online().await;
        peer
    }

    /// Wait for the (re)connection.
    pub async fn online(&mut self) {
        self.until("online", |e| e.is_online().then_some(())).await;
    }

    pub async fn send(&mut self, stanza: impl Into<Stanza>) {
        self.client
            .send_stanza(stanza.into())
            .await
            .expect("peer sends");
    }

    pub async fn say(&mut self, to: &str, body: &str) {
        let m = Message::chat(Some(Jid::new(to).expect("jid"))).with_body(Lang::new(), body.into());
        self.send(m).await;
    }

    pub async fn presence(&mut self, p: Presence) {
        self.send(p).await;
    }

    /// The next client event matching `pred`; panics after [`WAIT`].
    pub async fn until<T>(&mut self, what: &str, mut pred: impl FnMut(Event) -> Option<T>) -> T {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(ev) = self.client.next().await {
                if let Some(t) = pred(ev) {
                    return Some(t);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(t)) => t,
            Ok(None) => panic!("peer stream ended before {what}"),
            Err(_) => panic!("peer saw no {what} within {WAIT:?}"),
        }
    }

    /// The next stanza matching `pred`.
    pub async fn stanza<T>(&mut self, what: &str, mut pred: impl FnMut(Stanza) -> Option<T>) -> T {
        self.until(what, |e| e.into_stanza().and_then(&mut pred))
            .await
    }
}
