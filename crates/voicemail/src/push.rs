//! IMAP changes pushed by the IMAP server: `POST /callbacks/imap`, called by Dovecot's
//! push-notification plugin with `contrib/dovecot/ucbridge-push.lua` on flag changes,
//! expunges, appends and folder renames/deletes. A valid notification schedules a sync of
//! the account after the debounce (seed 002: "IMAP changes automatically schedule
//! synchronization of the corresponding account (after five seconds)"); the HIGHESTMODSEQ
//! poll stays as the fallback for servers without webhooks and for lost notifications.
//!
//! Body (JSON, at most [`MAX_PUSH_BYTES`]): `{"user", "event", "mailbox"?, "uidvalidity"?}`.
//! Answers: 401 without the configured bearer token (compared in constant time), 404 when
//! no token is configured, 400 for an unreadable body, else 204 — also for a user that is
//! not matched, so a caller learns nothing about who exists. Nothing from the body is
//! logged.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;

use crate::engine::{error_chain, PushOutcome};
use crate::VoicemailEngine;

/// Largest accepted body. A notification is about 100 bytes; user names and mailbox names
/// are short (Dovecot limits a mailbox name to 255 bytes per level).
pub const MAX_PUSH_BYTES: usize = 4096;

/// Longest user name considered (longer ones match no account and are ignored).
const MAX_USER_BYTES: usize = 256;

/// What ucbridge reads of a notification from `ucbridge-push.lua`. The script also sends
/// `event` (the RFC 5423 name: FlagsSet, FlagsClear, MessageExpunge, MessageAppend,
/// MailboxRename, MailboxDelete) and `mailbox` (the folder's name) for people reading
/// traffic; neither decides anything, since folders are recognised by UIDVALIDITY, which
/// survives renames.
#[derive(Debug, Deserialize)]
struct PushNotification {
    /// The IMAP login (Dovecot's `user:username`).
    user: String,
    /// UIDVALIDITY of the folder the messages are in; absent for folder events.
    #[serde(default)]
    uidvalidity: Option<u32>,
}

impl VoicemailEngine {
    /// The endpoint the IMAP server's push notifications go to (`POST /`); mount it at
    /// `/callbacks/imap`, e.g. `Router::new().nest("/callbacks/imap",
    /// engine.imap_push_router())`. Authenticated with `Authorization: Bearer <token>`
    /// ([`crate::VoicemailOptions::imap_push_token`]); bodies above [`MAX_PUSH_BYTES`] are
    /// refused with 413 before they are read in full.
    pub fn imap_push_router(&self) -> axum::Router {
        axum::Router::new()
            .route("/", post(imap_push))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_PUSH_BYTES))
            .with_state(self.clone())
    }
}

/// Whether `headers` carry the configured bearer token, compared in constant time.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|v| {
            use subtle::ConstantTimeEq;
            bool::from(v.trim().as_bytes().ct_eq(token.as_bytes()))
        })
}

async fn imap_push(
    State(engine): State<VoicemailEngine>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = engine.imap_push_token() else {
        return (StatusCode::NOT_FOUND, "IMAP push is not configured").into_response();
    };
    if !bearer_matches(&headers, token.expose()) {
        engine.imap_push_refused();
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"ucbridge\"")],
        )
            .into_response();
    }
    let notification: PushNotification = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(_) => {
            engine.imap_push_refused();
            return (StatusCode::BAD_REQUEST, "unreadable IMAP push notification").into_response();
        }
    };
    if notification.user.len() > MAX_USER_BYTES {
        return StatusCode::NO_CONTENT.into_response();
    }
    match engine
        .imap_pushed(&notification.user, notification.uidvalidity)
        .await
    {
        Ok(PushOutcome::Scheduled | PushOutcome::Ignored) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            // The store failed; the poll and the reconcile still catch the change.
            tracing::warn!(error = %error_chain(&e), "cannot handle an IMAP push notification");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        let token = "0123456789abcdef0123";
        assert!(bearer_matches(&with("Bearer 0123456789abcdef0123"), token));
        assert!(!bearer_matches(&with("Bearer 0123456789abcdef012"), token));
        assert!(!bearer_matches(
            &with("Bearer 0123456789abcdef01234"),
            token
        ));
        assert!(!bearer_matches(&with("Basic 0123456789abcdef0123"), token));
        assert!(!bearer_matches(&with("Bearer "), token));
        assert!(!bearer_matches(&HeaderMap::new(), token));
    }

    #[test]
    fn notifications_parse_with_and_without_a_folder_identity() {
        let n: PushNotification = serde_json::from_slice(
            br#"{"user":"jsmith","mailbox":"Voice\"mail","event":"FlagsSet","uidvalidity":1796026156}"#,
        )
        .unwrap();
        assert_eq!(
            (n.user.as_str(), n.uidvalidity),
            ("jsmith", Some(1796026156))
        );
        let n: PushNotification =
            serde_json::from_slice(br#"{"user":"jsmith","event":"MailboxRename","mailbox":"x"}"#)
                .unwrap();
        assert_eq!(n.uidvalidity, None);
        assert!(serde_json::from_slice::<PushNotification>(br#"{"event":"FlagsSet"}"#).is_err());
        assert!(serde_json::from_slice::<PushNotification>(br#"{"user":7}"#).is_err());
        assert!(serde_json::from_slice::<PushNotification>(
            br#"{"user":"u","event":"FlagsSet","uidvalidity":-1}"#
        )
        .is_err());
    }
}
