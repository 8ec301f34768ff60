//! Voicemail sync: Unity Connection mailboxes mirrored into users' IMAP mailboxes, both ways
//! (seed 002, "VoiceMail Integration").
//!
//! For every CUC user matched to a local ucbridge user ([`matching`], the seed's "CISCO ID
//! Source" x "Local ID Source"), CUC's `inbox`, `sent` and `deleted` folders are mirrored
//! into three IMAP folders of the user's mailbox as MIME messages (From = caller, Date =
//! arrival, Subject, a text part with caller id / duration / urgency, the audio attached as MP3, WAV or both).
//! CUC adds, deletes and read changes go to IMAP; IMAP deletes and read changes go to CUC;
//! mail added on IMAP is not pushed to CUC. The rules, conflicts included, are in
//! [`reconcile`].
//!
//! API used by the server and the CLI:
//! - [`VoicemailEngine::new`]`(store, cuc_client, imap_settings, options)` — cheap to clone.
//! - [`VoicemailEngine::sync_all`]`(progress)` — one full reconcile, bounded concurrency,
//!   returns a [`SyncSummary`] (unmatched/ambiguous accounts included).
//! - [`VoicemailEngine::sync_account`]`(alias_or_username)`.
//! - [`VoicemailEngine::run`]`(callback_url, shutdown)` — continuous mode: CUNI events, IMAP
//!   push, IMAP IDLE for up to `imap_idle_connections` accounts ([`ImapIdle`]), the
//!   HIGHESTMODSEQ poll for the others.
//! - [`VoicemailEngine::subscribe`]`(callback_url)` — CUNI subscription (groups of 500).
//! - [`VoicemailEngine::callback_router`]`()` — axum router for CUC's callback POSTs.
//! - [`VoicemailEngine::imap_push_router`]`()` — axum router for the IMAP server's push
//!   notifications (Dovecot: `contrib/dovecot/ucbridge-push.lua`), mounted at
//!   `/callbacks/imap`.
//! - [`VoicemailEngine::status`]`()` — per-account state for the admin page.
//!
//! Metrics (`metrics` facade): `ucbridge_voicemail_lag_seconds` (histogram, CUC arrival ->
//! visible in IMAP, for messages that arrived since the account's previous good sync),
//! `ucbridge_voicemail_syncs_total{outcome=ok|cuc_error|error}`,
//! `ucbridge_voicemail_actions_total{direction=cuc_to_imap|imap_to_cuc, action}`,
//! `ucbridge_voicemail_imap_push_total{outcome=scheduled|ignored|refused}`,
//! `ucbridge_voicemail_imap_idle_notifications_total`, `ucbridge_voicemail_imap_idle_watching`
//! (gauge: accounts an IDLE watches).
//!
//! Invariants:
//! - CUC is read completely before IMAP is touched: with CUC down, IMAP stays as it is and
//!   the account is retried with backoff.
//! - Every message ucbridge appends carries `X-Ucbridge-Cuc-Id`; each sync reads the folders
//!   (or trusts them when HIGHESTMODSEQ did not move), so a restart mid-sync adopts what it
//!   already appended instead of appending it again.
//! - The header alone proves nothing: a message is ucbridge's own only at the folder and UID
//!   recorded for this account, or (adoption) when this account's CUC mailbox lists the id
//!   ([`reconcile::own_copy`]). Anything else with the header is the user's mail, left alone.
//! - No mass removal: a sync that would remove more than `max_removal_share` of an
//!   account's messages from IMAP, or any of them while CUC lists the mailbox as empty (the
//!   symptom of a missing delegate role), is refused before any write
//!   ([`RemovalGuard`], [`VoicemailError::RemovalsRefused`]) unless confirmed.
//! - The voicemail folders in use are subscribed (clients that list subscribed folders
//!   only would not show them otherwise).
//! - IMAP folders are tracked by identity (UIDVALIDITY; RFC 8474 MAILBOXID is detected but
//!   not readable with async-imap's parser), so renamed or moved folders keep being used
//!   and never get a duplicate.
//! - One copy per voicemail in the voicemail folders: further copies of a message this
//!   account's CUC mailbox lists (a delete undone in the mail client, beside the copy in the
//!   deleted mirror) are removed, so deleting the one left always reaches CUC. A delete from
//!   IMAP that CUC turns into a soft delete is mirrored into the deleted folder in the same
//!   pass.
//! - Failed account syncs, reconciles and CUNI subscriptions are retried with exponential
//!   back-off (`retry_initial` doubling up to `retry_max`, up to a quarter less at random).
//! - One sync per account at a time; one IMAP poll round at a time, on its own permits.
//! - IDLE is bounded: at most `imap_idle_connections` connections, one read-only (EXAMINE)
//!   inbox folder each, every IDLE re-issued within `imap_idle_renew` (≤ 29 minutes, RFC
//!   2177), failed connections retried with back-off while the poll covers the account, and
//!   all of them closed within 2 s of a stop.

mod config;
mod engine;
mod error;
mod imap;
pub mod matching;
mod mime;
mod push;
pub mod reconcile;

pub use config::{
    AccountMatching, AttachmentFormat, CucIdSource, FolderNames, ImapFileConfig, ImapIdle,
    ImapLogin, ImapSecurity, ImapSettings, ImapUserSource, RemovalGuard, VoicemailFileConfig,
    VoicemailOptions, IDLE_CONNECTIONS, IDLE_RENEW, IDLE_RENEW_MAX, IMAP_PUSH_TOKEN_ENV,
    MIN_PUSH_TOKEN_LEN, POLL_EVERY_WITH_PUSH,
};
pub use engine::{
    AccountStatus, AccountSummary, EngineActivity, IdleStats, ImapPushStats, PollStats, Progress,
    SyncSummary, VoicemailEngine, VoicemailStatus,
};
pub use error::{RemovalsRefused, VoicemailError};
pub use imap::CUC_ID_HEADER;
pub use matching::{MatchReport, MatchedAccount, UnmatchedAccount};
pub use push::MAX_PUSH_BYTES;
