//! How changes reach the engine from outside: the CUNI subscription and the endpoint CUC's
//! Notifier posts events to, and IMAP push notifications (the route is in `push.rs`); each
//! queues a sync of the account for [`VoicemailEngine::run`].

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use ucbridge_auth::Secret;
use ucbridge_cuc::{
    CallbackTarget, EventType, MessageEvent, Subscription, MAX_USERS_PER_SUBSCRIPTION,
};

use super::{error_chain, lock, now_ms, PushOutcome, VoicemailEngine};
use crate::VoicemailError;

/// User name the CUNI Notifier presents on callbacks.
const CALLBACK_USER: &str = "ucbridge-cuni";

impl VoicemailEngine {
    /// (Re)register the CUNI subscription of every matched account with `callback_url`,
    /// in groups of at most 500 users (Cisco's advice), group `n` at `<callback_url>/<n>`
    /// when there are several, since one callback URL holds one subscription (notes §3).
    pub async fn subscribe(&self, callback_url: &str) -> Result<Vec<Subscription>, VoicemailError> {
        let accounts = self.accounts().await?;
        let aliases: Vec<String> = accounts.iter().map(|a| a.cuc_alias.clone()).collect();
        let groups: Vec<&[String]> = aliases.chunks(MAX_USERS_PER_SUBSCRIPTION).collect();
        let base = callback_url.trim_end_matches('/');
        let mut subscriptions = Vec::new();
        for (n, group) in groups.iter().enumerate() {
            let url = if groups.len() == 1 {
                base.to_owned()
            } else {
                format!("{base}/{n}")
            };
            let target = CallbackTarget {
                url,
                username: Some(CALLBACK_USER.into()),
                password: Some(self.inner.callback_password.clone()),
            };
            let s = self
                .inner
                .cuc
                .cuni_subscribe(
                    group,
                    &target,
                    self.inner.options.subscription_lifetime,
                    true,
                )
                .await?;
            subscriptions.push(s);
        }
        lock(&self.inner.shared).subscriptions = subscriptions.clone();
        Ok(subscriptions)
    }

    /// The endpoint CUC's Notifier POSTs to (`POST /` and `POST /{group}`); mount it where
    /// the callback URL points, e.g. `Router::new().nest("/callbacks/cuc", engine.callback_router())`.
    /// Bodies above [`ucbridge_cuc::MAX_EVENT_BYTES`] (256 KiB) are refused with 413
    /// before they are read in full; deeper than [`ucbridge_cuc::MAX_DEPTH`] with 400.
    pub fn callback_router(&self) -> axum::Router {
        axum::Router::new()
            .route("/", post(callback))
            .route("/{group}", post(callback))
            // CUNI events are a few hundred bytes; axum's default (2 MB) is far too generous.
            .layer(axum::extract::DefaultBodyLimit::max(
                ucbridge_cuc::MAX_EVENT_BYTES,
            ))
            .with_state(self.clone())
    }

    /// Queue a sync of the account with this CUC alias (what a callback does).
    pub fn notify_cuc_change(&self, alias: &str) -> bool {
        let oid = lock(&self.inner.shared)
            .by_alias
            .get(&alias.to_lowercase())
            .cloned();
        match oid {
            Some(oid) => self.inner.events_tx.try_send(oid).is_ok(),
            None => false,
        }
    }

    /// The token IMAP push notifications must present (`None`: push not configured).
    pub(crate) fn imap_push_token(&self) -> Option<&Secret> {
        self.inner.options.imap_push_token.as_ref()
    }

    /// Count a refused push notification (wrong token, unreadable body).
    pub(crate) fn imap_push_refused(&self) {
        self.push_health(false);
        lock(&self.inner.shared).imap_push.refused += 1;
        metrics::counter!("ucbridge_voicemail_imap_push_total", "outcome" => "refused")
            .increment(1);
    }

    /// An authenticated IMAP push notification: a change of `imap_user`'s mail in the
    /// folder with `uid_validity` (`None`: a folder itself was renamed or deleted).
    /// Schedules a sync of the matched account after `debounce` when the folder is one
    /// of its voicemail folders (found by UIDVALIDITY, which a rename keeps), or always
    /// for folder events; anything else is ignored, so reading ordinary mail costs no
    /// sync. The caller answers the same either way: who exists is not revealed.
    pub(crate) async fn imap_pushed(
        &self,
        imap_user: &str,
        uid_validity: Option<u32>,
    ) -> Result<PushOutcome, VoicemailError> {
        self.push_health(true);
        let oid = lock(&self.inner.shared)
            .by_imap_user
            .get(&imap_user.to_lowercase())
            .cloned();
        let relevant = match (&oid, uid_validity) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(oid), Some(v)) => match self.inner.store.voicemail_folders(oid).await {
                Ok(folders) => folders.iter().any(|f| f.uid_validity == v),
                Err(e) => {
                    // Not scheduled: at least the next reconcile must look at IMAP.
                    self.push_noted(oid);
                    return Err(e.into());
                }
            },
        };
        let outcome = match oid {
            // A full queue means run() is not draining it (not running, or far behind):
            // the poll and the reconcile still find the change (the account's IMAP check
            // is no longer trusted).
            Some(oid) if relevant => {
                self.push_noted(&oid);
                let _ = self.inner.pushed_tx.try_send(oid);
                PushOutcome::Scheduled
            }
            _ => PushOutcome::Ignored,
        };
        let mut shared = lock(&self.inner.shared);
        let label = match outcome {
            PushOutcome::Scheduled => {
                shared.imap_push.scheduled += 1;
                shared.imap_push.last_scheduled_at = Some(now_ms());
                "scheduled"
            }
            PushOutcome::Ignored => {
                shared.imap_push.ignored += 1;
                "ignored"
            }
        };
        metrics::counter!("ucbridge_voicemail_imap_push_total", "outcome" => label).increment(1);
        Ok(outcome)
    }
}

fn authorized(engine: &VoicemailEngine, headers: &HeaderMap) -> bool {
    let expected = base64::engine::general_purpose::STANDARD.encode(format!(
        "{CALLBACK_USER}:{}",
        engine.inner.callback_password.expose()
    ));
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|v| {
            use subtle::ConstantTimeEq;
            bool::from(v.trim().as_bytes().ct_eq(expected.as_bytes()))
        })
}

async fn callback(
    State(engine): State<VoicemailEngine>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&engine, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"ucbridge\"")],
        )
            .into_response();
    }
    let event = match MessageEvent::parse(&body) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "unreadable CUNI callback");
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    {
        let mut shared = lock(&engine.inner.shared);
        match event.event_type {
            EventType::KeepAlive => {
                shared.last_keep_alive_at = Some(now_ms());
                return StatusCode::OK.into_response();
            }
            EventType::SubscriptionEnded => {
                shared.resubscribe_now = true;
                return StatusCode::OK.into_response();
            }
            _ => {
                shared.last_event_at = Some(now_ms());
                shared.events_received += 1;
            }
        }
    }
    if let Some(alias) = &event.mailbox_id {
        if !engine.notify_cuc_change(alias) {
            tracing::debug!(%alias, "CUNI event for an account that is not matched");
        }
    }
    // The Notifier only needs a 2xx (vmo3-uc answers 200 to everything, notes §3).
    StatusCode::OK.into_response()
}
