//! Trusting IMAP push instead of logging in (issue 17 item 4): a reconcile may skip the
//! IMAP check of an account whose CUC fingerprint is unchanged when push is configured
//! and healthy, no notification concerned the account since its IMAP folders were last
//! checked in this engine run, and that check is younger than `push_trust_window`.
//!
//! Everything here is in memory and describes one run: [`VoicemailEngine::run`] starts
//! with nothing trusted (notifications may have been lost while ucbridge was down), and a
//! refused notification (a wrong token, an unreadable body: Dovecot may be losing
//! events) forgets every check. Push is "healthy" once an authenticated notification has
//! been accepted since then. Dovecot's plugin makes one attempt per transaction, so a
//! notification lost on the way (ucbridge unreachable while running) is invisible here:
//! `push_trust_window` bounds how long the reconcile trusts, and the HIGHESTMODSEQ poll
//! keeps looking meanwhile.

use super::{lock, now_ms, VoicemailEngine};
use crate::imap::ImapConn;
use crate::VoicemailError;

/// Where an IMAP check of one account started: the account's push generation and the
/// time (ms since the epoch).
#[derive(Debug, Clone, Copy)]
pub(super) struct CheckMark {
    generation: u64,
    at: i64,
}

impl VoicemailEngine {
    /// An IMAP session as `user` (through the master user), counted in
    /// [`crate::VoicemailStatus::imap_logins`].
    pub(super) async fn imap_open(&self, user: &str) -> Result<ImapConn, VoicemailError> {
        lock(&self.inner.shared).imap_logins += 1;
        metrics::counter!("ucbridge_voicemail_imap_logins_total").increment(1);
        ImapConn::open(&self.inner.imap, user).await
    }

    /// Taken before IMAP is read: a notification arriving after it makes the check stale.
    pub(super) fn imap_check_mark(&self, oid: &str) -> CheckMark {
        let shared = lock(&self.inner.shared);
        CheckMark {
            generation: shared.push_trust.generation.get(oid).copied().unwrap_or(0),
            at: now_ms(),
        }
    }

    /// IMAP was found as recorded (or a sync recorded it) by the check started at `mark`.
    pub(super) fn imap_verified(&self, oid: &str, mark: CheckMark) {
        lock(&self.inner.shared)
            .push_trust
            .verified
            .insert(oid.to_owned(), (mark.generation, mark.at));
    }

    /// A notification concerned the account: its last check is no longer trusted.
    pub(super) fn push_noted(&self, oid: &str) {
        *lock(&self.inner.shared)
            .push_trust
            .generation
            .entry(oid.to_owned())
            .or_insert(0) += 1;
    }

    /// An authenticated notification was accepted (`true`) or one was refused (`false`,
    /// which forgets every check: Dovecot may be calling with a wrong token).
    pub(super) fn push_health(&self, accepted: bool) {
        let mut shared = lock(&self.inner.shared);
        if accepted {
            shared.push_trust.healthy = true;
        } else if shared.push_trust.healthy || !shared.push_trust.verified.is_empty() {
            tracing::info!(
                "an IMAP push notification was refused; checking IMAP again on the next reconcile"
            );
            shared.push_trust = super::PushTrust::default();
        }
    }

    /// A new run: nothing trusted until push is heard from and IMAP checked again.
    pub(super) fn reset_push_trust(&self) {
        lock(&self.inner.shared).push_trust = super::PushTrust::default();
    }

    /// Whether the account's IMAP folders may be taken as recorded without a login.
    pub(super) fn push_trusted(&self, oid: &str) -> bool {
        let options = &self.inner.options;
        if !options.trust_imap_push || options.imap_push_token.is_none() {
            return false;
        }
        let window = i64::try_from(options.push_trust_window.as_millis()).unwrap_or(i64::MAX);
        let mut shared = lock(&self.inner.shared);
        let trust = &shared.push_trust;
        let generation = trust.generation.get(oid).copied().unwrap_or(0);
        let trusted = trust.healthy
            && trust
                .verified
                .get(oid)
                .is_some_and(|&(g, at)| g == generation && now_ms().saturating_sub(at) < window);
        if trusted {
            shared.imap_checks_trusted += 1;
        }
        trusted
    }
}
