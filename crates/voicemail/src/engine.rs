//! The engine: account matching, all accounts' reconcile and status here; one account's
//! sync in [`account`] (its IMAP side in [`imap_side`]), the continuous mode in
//! [`continuous`], the CUNI subscription, its callback endpoint and IMAP push intake in
//! [`callback`], trusting IMAP push instead of logging in in [`trust`], IMAP IDLE
//! connections for servers without push in [`idle`].

mod account;
mod callback;
mod continuous;
mod idle;
mod imap_side;
mod trust;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use rand::Rng;
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};
use ucbridge_auth::Secret;
use ucbridge_cuc::{CucClient, Subscription, UserQuery};
use ucbridge_store::{Store, VoicemailAccount};

use crate::config::{ImapSettings, VoicemailOptions};
use crate::matching::{match_accounts, MatchReport, MatchedAccount, UnmatchedAccount};
use crate::VoicemailError;

/// Counts of one account sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountSummary {
    pub cuc_alias: String,
    pub appended: u64,
    pub removed_from_imap: u64,
    pub moved_on_imap: u64,
    pub seen_changed_on_imap: u64,
    pub read_changed_on_cuc: u64,
    pub deleted_on_cuc: u64,
    /// IMAP folders fetched (not skipped thanks to an unchanged HIGHESTMODSEQ).
    pub folders_scanned: u64,
    pub messages: u64,
    /// Messages in the voicemail folders carrying `X-Ucbridge-Cuc-Id` that ucbridge did
    /// not append for this account (an unknown or another user's id): left alone.
    pub foreign_left_alone: u64,
    /// Extra copies of one voicemail in the voicemail folders (a delete undone in the
    /// mail client beside the copy in the deleted mirror) removed: one copy each stays.
    /// Included in `removed_from_imap`.
    pub duplicates_removed: u64,
    /// Messages appended without the MP3 asked for (unsupported codec, corrupt or no
    /// audio): with CUC's WAV, or no audio, and the reason in their text part.
    pub audio_problems: u64,
    /// The last reason, naming the message.
    pub last_audio_problem: Option<String>,
    /// A reconcile skipped the account: CUC's fingerprint and IMAP's HIGHESTMODSEQs were
    /// as after its last sync, and its last full read is recent enough.
    pub skipped_unchanged: bool,
    /// Skipped without logging in to IMAP: no push notification since IMAP was last
    /// checked, and push healthy ([`VoicemailOptions::trust_imap_push`]).
    pub skipped_trusting_push: bool,
}

/// Whether a sync may skip an account that shows no change on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Read CUC's listings and the IMAP folders (events, retries, `sync voicemail --user`).
    Full,
    /// A reconcile: skip the account when nothing moved (see [`VoicemailEngine::unchanged`]).
    SkipUnchanged,
}

/// The outcome of [`VoicemailEngine::sync_all`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncSummary {
    pub accounts: usize,
    pub succeeded: usize,
    pub failed: Vec<(String, String)>,
    /// Accounts (among `failed`) whose sync the mass-removal guard refused.
    pub removals_refused: Vec<String>,
    pub unmatched: Vec<UnmatchedAccount>,
    pub appended: u64,
    pub imap_changes: u64,
    pub cuc_changes: u64,
    /// Accounts skipped because neither side changed since their last sync.
    pub skipped_unchanged: usize,
    /// Of those, skipped without an IMAP login: push was trusted
    /// ([`VoicemailOptions::trust_imap_push`]).
    pub skipped_trusting_push: usize,
    /// Messages appended without their MP3 ([`AccountSummary::audio_problems`]).
    pub audio_problems: u64,
    /// Per account with such messages: its alias and the last reason.
    pub audio_problem_accounts: Vec<(String, String)>,
    pub duration_ms: u64,
}

/// Progress of a `sync_all`: accounts done / total.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Send + Sync);

/// Per-account line of the admin page.
#[derive(Debug, Clone, Serialize)]
pub struct AccountStatus {
    #[serde(flatten)]
    pub account: VoicemailAccount,
    /// Current names of the IMAP folders by CUC folder.
    pub folders: BTreeMap<String, String>,
}

/// Everything the admin page shows.
#[derive(Debug, Clone, Serialize)]
pub struct VoicemailStatus {
    pub accounts: Vec<AccountStatus>,
    /// From the last matching (empty before the first sync).
    pub unmatched: Vec<UnmatchedAccount>,
    pub subscriptions: Vec<Subscription>,
    /// Milliseconds since the epoch.
    pub last_event_at: Option<i64>,
    pub last_keep_alive_at: Option<i64>,
    pub events_received: u64,
    pub imap_polls: PollStats,
    /// Notifications from the IMAP server (`POST /callbacks/imap`).
    pub imap_push: ImapPushStats,
    /// IMAP logins made by this engine (syncs, reconcile checks, polls).
    pub imap_logins: u64,
    /// Reconcile checks of unchanged accounts answered by trusting IMAP push, without a
    /// login ([`VoicemailOptions::trust_imap_push`]).
    pub imap_checks_trusted: u64,
    /// IMAP IDLE connections ([`VoicemailOptions::imap_idle`]).
    pub imap_idle: IdleStats,
}

/// Counts of IMAP push notifications ([`VoicemailEngine::imap_push_router`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImapPushStats {
    /// Authenticated notifications that scheduled a (debounced) account sync.
    pub scheduled: u64,
    /// Authenticated ones about no matched account, or not about its voicemail folders.
    pub ignored: u64,
    /// Refused: wrong or missing token (401), unreadable body (400).
    pub refused: u64,
    /// Milliseconds since the epoch of the last scheduled one.
    pub last_scheduled_at: Option<i64>,
}

/// The continuous mode's IMAP IDLE connections ([`VoicemailOptions::imap_idle`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IdleStats {
    /// The settings ask for IDLE and a run started its pool.
    pub enabled: bool,
    /// The IMAP server does not offer IDLE: every account is polled.
    pub unsupported: bool,
    /// At most this many IDLE connections (`imap_idle_connections`).
    pub pool_size: u64,
    /// Accounts whose inbox folder an IDLE watches now; the poll leaves them out.
    pub watching: u64,
    /// Changes the server reported (each schedules the account's debounced sync).
    pub notifications: u64,
    /// IDLE commands ended after `imap_idle_renew` and issued again on the same connection.
    pub renewed: u64,
    /// IDLE connections lost or refused, each retried with back-off (polled meanwhile).
    pub failures: u64,
}

/// What an authenticated IMAP push notification led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushOutcome {
    Scheduled,
    Ignored,
}

/// The continuous mode's HIGHESTMODSEQ polls of IMAP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PollStats {
    /// Poll rounds started (one round checks every matched account).
    pub started: u64,
    pub completed: u64,
    /// Rounds due while the previous one still ran, hence not started.
    pub skipped_busy: u64,
    /// Most rounds ever in flight at once (a round never overlaps the previous one: 1).
    pub max_in_flight: u64,
}

/// What trusting IMAP push needs (issue 17 item 4), in memory: it describes this engine
/// run only, so a restart starts with nothing trusted (notifications may have been lost
/// while ucbridge was down).
#[derive(Default)]
struct PushTrust {
    /// An authenticated notification was accepted since the run started, and none was
    /// refused since: Dovecot's plugin reaches ucbridge with the right token.
    healthy: bool,
    /// Per account object id: notifications that concerned it (bumped on each).
    generation: HashMap<String, u64>,
    /// Per account: the generation and the time (ms) when an IMAP check that found it
    /// as recorded (or a successful sync) started.
    verified: HashMap<String, (u64, i64)>,
}

#[derive(Default)]
struct Shared {
    matched: HashMap<String, MatchedAccount>,
    by_alias: HashMap<String, String>,
    /// Lower-cased IMAP login -> CUC object id (IMAP push notifications name the user).
    by_imap_user: HashMap<String, String>,
    imap_push: ImapPushStats,
    unmatched: Vec<UnmatchedAccount>,
    subscriptions: Vec<Subscription>,
    last_event_at: Option<i64>,
    last_keep_alive_at: Option<i64>,
    events_received: u64,
    resubscribe_now: bool,
    polls: PollStats,
    polls_in_flight: u64,
    push_trust: PushTrust,
    imap_logins: u64,
    imap_checks_trusted: u64,
    imap_idle: IdleStats,
    /// Accounts an IDLE watches now (left out of the poll).
    idle_watching: HashSet<String>,
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

struct Inner {
    store: Store,
    cuc: CucClient,
    imap: ImapSettings,
    options: VoicemailOptions,
    shared: Mutex<Shared>,
    callback_password: Secret,
    /// Account object ids to sync now (CUNI callbacks), read by [`VoicemailEngine::run`].
    events_tx: mpsc::Sender<String>,
    events_rx: tokio::sync::Mutex<mpsc::Receiver<String>>,
    /// Account object ids changed on IMAP (push notifications), synced after `debounce`.
    pushed_tx: mpsc::Sender<String>,
    pushed_rx: tokio::sync::Mutex<mpsc::Receiver<String>>,
}

/// The voicemail sync engine. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct VoicemailEngine {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    ucbridge_store::now_millis()
}

impl VoicemailEngine {
    /// `cuc` must authenticate as an administrator with the "Mailbox Access Delegate
    /// Account" role (without it CUC shows empty mailboxes, notes §1.3).
    pub fn new(
        store: Store,
        cuc: CucClient,
        imap: ImapSettings,
        options: VoicemailOptions,
    ) -> VoicemailEngine {
        let (events_tx, events_rx) = mpsc::channel(10_000);
        let (pushed_tx, pushed_rx) = mpsc::channel(10_000);
        let password: String = rand::thread_rng()
            .sample_iter(rand::distributions::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        VoicemailEngine {
            inner: Arc::new(Inner {
                store,
                cuc,
                imap,
                options,
                shared: Mutex::new(Shared::default()),
                callback_password: Secret::new(password),
                events_tx,
                events_rx: tokio::sync::Mutex::new(events_rx),
                pushed_tx,
                pushed_rx: tokio::sync::Mutex::new(pushed_rx),
            }),
        }
    }

    pub fn options(&self) -> &VoicemailOptions {
        &self.inner.options
    }

    /// Match CUC users to local users (seed 002 rules), remember the result and record the
    /// matched accounts in the store.
    pub async fn match_accounts(&self) -> Result<MatchReport, VoicemailError> {
        let inner = &self.inner;
        let mut cuc_users = inner
            .cuc
            .all_users(&UserQuery {
                rows_per_page: 1000,
                ..UserQuery::default()
            })
            .await?;
        if matches!(
            inner.options.matching.cuc,
            crate::CucIdSource::SmtpAddress | crate::CucIdSource::SmtpLocalPart
        ) {
            // The SMTP address is only on the full user object (notes §2).
            for u in cuc_users.iter_mut() {
                u.smtp_address = inner.cuc.user(&u.object_id).await?.smtp_address;
            }
        }
        let locals = inner.store.local_users().await?;
        let report = match_accounts(
            &cuc_users,
            &locals,
            inner.options.matching,
            inner.options.imap_user,
        );
        for m in &report.matched {
            inner
                .store
                .upsert_voicemail_account(
                    &m.cuc_object_id,
                    &m.cuc_alias,
                    &m.local_username,
                    &m.imap_user,
                )
                .await?;
        }
        let mut shared = lock(&inner.shared);
        shared.matched = report
            .matched
            .iter()
            .map(|m| (m.cuc_object_id.clone(), m.clone()))
            .collect();
        shared.by_alias = report
            .matched
            .iter()
            .map(|m| (m.cuc_alias.to_lowercase(), m.cuc_object_id.clone()))
            .collect();
        shared.by_imap_user = report
            .matched
            .iter()
            .map(|m| (m.imap_user.to_lowercase(), m.cuc_object_id.clone()))
            .collect();
        shared.unmatched = report.unmatched.clone();
        Ok(report)
    }

    /// Matched accounts (matching first when it has not run yet).
    pub async fn accounts(&self) -> Result<Vec<MatchedAccount>, VoicemailError> {
        let empty = lock(&self.inner.shared).matched.is_empty();
        if empty {
            self.match_accounts().await?;
        }
        let mut v: Vec<_> = lock(&self.inner.shared).matched.values().cloned().collect();
        v.sort_by(|a, b| a.cuc_alias.cmp(&b.cuc_alias));
        Ok(v)
    }

    /// The matched account with this CUC alias or local username.
    pub async fn find_account(&self, user: &str) -> Result<MatchedAccount, VoicemailError> {
        let accounts = self.accounts().await?;
        accounts
            .into_iter()
            .find(|a| {
                a.cuc_alias.eq_ignore_ascii_case(user)
                    || a.local_username.eq_ignore_ascii_case(user)
            })
            .ok_or_else(|| VoicemailError::UnknownAccount(user.to_owned()))
    }

    /// One full reconcile: match accounts, then sync each (at most `concurrency` at once).
    pub async fn sync_all(&self, progress: Progress<'_>) -> Result<SyncSummary, VoicemailError> {
        let started = Instant::now();
        let report = self.match_accounts().await?;
        let total = report.matched.len();
        let semaphore = Arc::new(Semaphore::new(self.inner.options.concurrency.max(1)));
        let mut tasks = futures::stream::FuturesUnordered::new();
        for account in report.matched.clone() {
            let engine = self.clone();
            let semaphore = semaphore.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                let result = engine.sync_matched_as(&account, Pass::SkipUnchanged).await;
                (account.cuc_alias, result)
            }));
        }
        let mut summary = SyncSummary {
            accounts: total,
            unmatched: report.unmatched,
            ..SyncSummary::default()
        };
        let mut done = 0;
        while let Some(joined) = tasks.next().await {
            done += 1;
            progress(done, total);
            match joined {
                Ok((_, Ok(s))) => {
                    summary.succeeded += 1;
                    summary.skipped_unchanged += usize::from(s.skipped_unchanged);
                    summary.skipped_trusting_push += usize::from(s.skipped_trusting_push);
                    summary.appended += s.appended;
                    summary.imap_changes +=
                        s.appended + s.removed_from_imap + s.moved_on_imap + s.seen_changed_on_imap;
                    summary.cuc_changes += s.read_changed_on_cuc + s.deleted_on_cuc;
                    summary.audio_problems += s.audio_problems;
                    if let Some(problem) = s.last_audio_problem {
                        summary.audio_problem_accounts.push((s.cuc_alias, problem));
                    }
                }
                Ok((alias, Err(e))) => {
                    if e.is_removal_refused() {
                        summary.removals_refused.push(alias.clone());
                    }
                    summary.failed.push((alias, error_chain(&e)));
                }
                Err(e) => summary.failed.push(("?".into(), e.to_string())),
            }
        }
        summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(summary)
    }

    /// Sync one account, by CUC alias or local username.
    pub async fn sync_account(&self, user: &str) -> Result<AccountSummary, VoicemailError> {
        let account = self.find_account(user).await?;
        self.sync_matched(&account).await
    }

    async fn account_by_id(&self, object_id: &str) -> Option<MatchedAccount> {
        lock(&self.inner.shared).matched.get(object_id).cloned()
    }

    /// Status for the admin page.
    pub async fn status(&self) -> Result<VoicemailStatus, VoicemailError> {
        let accounts = self.inner.store.voicemail_accounts().await?;
        let mut out = Vec::with_capacity(accounts.len());
        for account in accounts {
            let folders = self
                .inner
                .store
                .voicemail_folders(&account.cuc_object_id)
                .await?
                .into_iter()
                .map(|f| (f.role, f.imap_name))
                .collect();
            out.push(AccountStatus { account, folders });
        }
        let shared = lock(&self.inner.shared);
        Ok(VoicemailStatus {
            accounts: out,
            unmatched: shared.unmatched.clone(),
            subscriptions: shared.subscriptions.clone(),
            last_event_at: shared.last_event_at,
            last_keep_alive_at: shared.last_keep_alive_at,
            events_received: shared.events_received,
            imap_polls: shared.polls,
            imap_push: shared.imap_push,
            imap_logins: shared.imap_logins,
            imap_checks_trusted: shared.imap_checks_trusted,
            imap_idle: shared.imap_idle,
        })
    }
}

/// What this engine saw and did since it started: counters only, no per-account reads
/// (the admin page and the API show it; [`VoicemailEngine::status`] adds every account).
#[derive(Debug, Clone, Serialize)]
pub struct EngineActivity {
    pub subscriptions: Vec<Subscription>,
    /// Milliseconds since the epoch.
    pub last_event_at: Option<i64>,
    pub last_keep_alive_at: Option<i64>,
    pub events_received: u64,
    pub imap_polls: PollStats,
    pub imap_push: ImapPushStats,
    pub imap_logins: u64,
    pub imap_checks_trusted: u64,
    pub imap_idle: IdleStats,
}

impl VoicemailEngine {
    /// The engine's counters, without reading the store.
    pub fn activity(&self) -> EngineActivity {
        let shared = lock(&self.inner.shared);
        EngineActivity {
            subscriptions: shared.subscriptions.clone(),
            last_event_at: shared.last_event_at,
            last_keep_alive_at: shared.last_keep_alive_at,
            events_received: shared.events_received,
            imap_polls: shared.polls,
            imap_push: shared.imap_push,
            imap_logins: shared.imap_logins,
            imap_checks_trusted: shared.imap_checks_trusted,
            imap_idle: shared.imap_idle,
        }
    }
}

/// CUC's voice messages of one mailbox by id, with the folder each is in.
type OnCuc = HashMap<String, (crate::reconcile::Role, ucbridge_cuc::Message)>;

/// Count one action of a sync, by direction.
fn count(direction: &'static str, action: &'static str) {
    metrics::counter!("ucbridge_voicemail_actions_total", "direction" => direction, "action" => action)
        .increment(1);
}

/// An error with every cause below it ("IMAP: LIST: io: connection reset"): `Display`
/// of a wrapper does not always repeat its source, and a warning without the cause says
/// nothing useful. Causes already contained in the text are not repeated.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !more.trim().is_empty() && !text.contains(more.trim()) {
            text.push_str(": ");
            text.push_str(more.trim());
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_keeps_causes_the_text_leaves_out() {
        #[derive(Debug, thiserror::Error)]
        #[error("LIST failed")]
        struct Wrapper(#[source] std::io::Error);
        let e = Wrapper(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        ));
        assert_eq!(error_chain(&e), "LIST failed: connection reset by peer");
        // A cause the text already carries is not repeated.
        let e = VoicemailError::Store(ucbridge_store::StoreError::Unreachable("no pool".into()));
        assert_eq!(error_chain(&e), "store: database unreachable: no pool");
    }
}
