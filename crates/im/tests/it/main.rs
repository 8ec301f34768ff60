//! ucbridge-im against a real Prosody (the Cisco IM&P stand-in, started by the test kit)
//! with tokio-xmpp's own client as the Jabber-side peer, plus a tiny fake server for
//! hostile input.

mod hostile;
mod scenarios;
mod security;
mod support;
