//! The engine: account matching, one account's sync, all accounts' reconcile, the
//! continuous mode, CUNI subscription and its callback endpoint, status.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use futures::StreamExt;
use rand::Rng;
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};
use ucbridge_auth::Secret;
use ucbridge_cuc::{
    CallbackTarget, CucClient, EventType, MailboxRef, Message, MessageEvent, Subscription,
    UserQuery, MAX_USERS_PER_SUBSCRIPTION,
};
use ucbridge_store::{Store, VoicemailAccount, VoicemailFolder, VoicemailMessage};

use crate::config::{ImapSettings, VoicemailOptions};
use crate::imap::{internal_date, FolderState, ImapConn, ImapMessage};
use crate::matching::{match_accounts, MatchReport, MatchedAccount, UnmatchedAccount};
use crate::reconcile::{decide, own_copy, Action, CucView, Decision, ImapView, Role};
use crate::{mime, RemovalsRefused, VoicemailError};

/// What [`VoicemailEngine::read_imap`] found: ucbridge's copy of each message, further
/// copies of messages CUC lists, and the HIGHESTMODSEQ each folder was read at.
type ImapRead = (
    HashMap<String, ImapView>,
    HashMap<String, Vec<ImapView>>,
    HashMap<Role, Option<u64>>,
);

/// User name the CUNI Notifier presents on callbacks.
const CALLBACK_USER: &str = "ucbridge-cuni";

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

    /// Sync one matched account; the outcome is recorded and counted.
    pub async fn sync_matched(
        &self,
        account: &MatchedAccount,
    ) -> Result<AccountSummary, VoicemailError> {
        self.sync_matched_as(account, Pass::Full).await
    }

    async fn sync_matched_as(
        &self,
        account: &MatchedAccount,
        pass: Pass,
    ) -> Result<AccountSummary, VoicemailError> {
        let account_lock = {
            let mut shared = lock(&self.inner.shared);
            shared
                .locks
                .entry(account.cuc_object_id.clone())
                .or_default()
                .clone()
        };
        // One sync per account at a time; a second request waits and then sees the
        // first one's result as its "last sync" state.
        let _guard = account_lock.lock().await;
        let timeout = self.inner.options.account_timeout;
        let result = match tokio::time::timeout(timeout, self.sync_inner(account, pass)).await {
            Ok(r) => r,
            Err(_) => Err(VoicemailError::Timeout(timeout)),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if e.is_cuc() => "cuc_error",
            Err(e) if e.is_removal_refused() => "removals_refused",
            Err(_) => "error",
        };
        metrics::counter!("ucbridge_voicemail_syncs_total", "outcome" => outcome).increment(1);
        let recorded = match &result {
            Ok(_) => {
                self.inner
                    .store
                    .record_voicemail_sync(&account.cuc_object_id, Ok(()))
                    .await
            }
            Err(e) => {
                let error = error_chain(e);
                tracing::warn!(account = %account.cuc_alias, %error, "voicemail sync failed");
                self.inner
                    .store
                    .record_voicemail_sync(&account.cuc_object_id, Err(&error))
                    .await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %error_chain(&e), "cannot record the voicemail sync outcome");
        }
        result
    }

    async fn sync_inner(
        &self,
        account: &MatchedAccount,
        pass: Pass,
    ) -> Result<AccountSummary, VoicemailError> {
        let inner = &self.inner;
        let oid = account.cuc_object_id.as_str();
        let mailbox = MailboxRef::User(oid.to_owned());
        let stored = inner.store.voicemail_account(oid).await?;
        // Taken before the listings: a change while they are read moves it again.
        let fingerprint = self.cuc_fingerprint(&mailbox).await?;
        if pass == Pass::SkipUnchanged && self.unchanged(account, fingerprint.as_deref()).await? {
            return Ok(AccountSummary {
                cuc_alias: account.cuc_alias.clone(),
                messages: stored.map_or(0, |a| u64::try_from(a.messages).unwrap_or(0)),
                skipped_unchanged: true,
                ..AccountSummary::default()
            });
        }
        let previous_success = stored.and_then(|a| a.last_success_at);
        let read_at = now_ms();
        inner.store.forget_voicemail_cuc_fingerprint(oid).await?;
        // CUC first: if it is down, nothing is touched on IMAP.
        let mut on_cuc: HashMap<String, (Role, Message)> = HashMap::new();
        for role in Role::ALL {
            for m in inner
                .cuc
                .all_messages(&mailbox, role.cuc_folder(), inner.options.page_size)
                .await?
            {
                // Voice messages only: e-mail/fax/receipts are not voicemail (notes §1.2).
                if m.msg_type
                    .as_deref()
                    .is_some_and(|t| !t.eq_ignore_ascii_case("voice"))
                {
                    continue;
                }
                on_cuc.insert(m.id.clone(), (role, m));
            }
        }
        let mut known: HashMap<String, VoicemailMessage> = inner
            .store
            .voicemail_messages(oid)
            .await?
            .into_iter()
            .map(|m| (m.cuc_message_id.clone(), m))
            .collect();
        let mut conn = ImapConn::open(&inner.imap, &account.imap_user).await?;
        let result = self
            .sync_with_imap(
                account,
                &mut conn,
                &mailbox,
                on_cuc,
                &mut known,
                previous_success,
            )
            .await;
        conn.logout().await;
        if result.is_ok() {
            inner
                .store
                .record_voicemail_full_read(oid, fingerprint.as_deref(), read_at)
                .await?;
        }
        result
    }

    /// CUC's fingerprint of a mailbox: per folder MessageCount, USN and UIDValidity
    /// (`GET /vmrest/mailbox/folders/<f>`, three small requests, no listing). A new or
    /// deleted message changes a count; a read or unread change keeps the counts but is an
    /// "operation performed on Inbox folder", which changes the USN (CUMI guide, notes §1.1;
    /// CUNI's SAVED/UNREAD events carry a USN too, §3). `None` without USNs (before 11.5):
    /// counts alone miss read changes, so such an account is never skipped.
    async fn cuc_fingerprint(
        &self,
        mailbox: &MailboxRef,
    ) -> Result<Option<String>, VoicemailError> {
        let cuc = &self.inner.cuc;
        let folders = futures::future::try_join_all(
            Role::ALL.map(|role| async move { cuc.folder(mailbox, role.cuc_folder()).await }),
        )
        .await?;
        let mut parts = Vec::with_capacity(folders.len());
        for (role, f) in Role::ALL.iter().zip(&folders) {
            let Some(usn) = f.usn else {
                return Ok(None);
            };
            let uidv = f.uid_validity.map_or_else(String::new, |v| v.to_string());
            parts.push(format!(
                "{}:{}/{usn}/{uidv}",
                role.as_str(),
                f.message_count
            ));
        }
        Ok(Some(parts.join(" ")))
    }

    /// Whether a reconcile may skip the account: CUC's `fingerprint` equals the one taken
    /// before its last successful full read, that read is younger than `full_read_every`,
    /// and each of its three IMAP folders still has the recorded identity and
    /// HIGHESTMODSEQ (one login and LIST-STATUS).
    async fn unchanged(
        &self,
        account: &MatchedAccount,
        fingerprint: Option<&str>,
    ) -> Result<bool, VoicemailError> {
        let inner = &self.inner;
        let oid = account.cuc_object_id.as_str();
        let Some(fingerprint) = fingerprint else {
            return Ok(false);
        };
        let Some(mark) = inner.store.voicemail_cuc_mark(oid).await? else {
            return Ok(false);
        };
        let max_age = i64::try_from(inner.options.full_read_every.as_millis()).unwrap_or(i64::MAX);
        let recent = mark
            .full_read_at
            .is_some_and(|at| now_ms().saturating_sub(at) < max_age);
        if !recent || mark.fingerprint.as_deref() != Some(fingerprint) {
            return Ok(false);
        }
        let stored = inner.store.voicemail_folders(oid).await?;
        if Role::ALL
            .iter()
            .any(|r| !stored.iter().any(|f| f.role == r.as_str()))
        {
            return Ok(false);
        }
        let mut conn = ImapConn::open(&inner.imap, &account.imap_user).await?;
        let current = conn.folders().await;
        conn.logout().await;
        Ok(!folders_changed(&stored, &current?))
    }

    /// Find each role's folder by identity (creating it when there is none).
    async fn resolve_folders(
        &self,
        oid: &str,
        conn: &mut ImapConn,
        known: &mut HashMap<String, VoicemailMessage>,
    ) -> Result<BTreeMap<Role, (VoicemailFolder, FolderState)>, VoicemailError> {
        let stored: HashMap<String, VoicemailFolder> = self
            .inner
            .store
            .voicemail_folders(oid)
            .await?
            .into_iter()
            .map(|f| (f.role.clone(), f))
            .collect();
        let mut current = conn.folders().await?;
        let delimiter = conn.delimiter().await?;
        let names = &self.inner.options.folders;
        let mut out = BTreeMap::new();
        for role in Role::ALL {
            let stored_folder = stored.get(role.as_str());
            // UIDVALIDITY identifies a mailbox: RENAME keeps it (RFC 3501 §6.3.5) and it is
            // never reused for another mailbox name (§2.3.1.1); Dovecot keeps it unique per
            // user (its dovecot-uidvalidity file).
            let by_identity = stored_folder.and_then(|f| {
                current
                    .iter()
                    .find(|c| c.uid_validity == f.uid_validity)
                    .cloned()
            });
            let configured = match role {
                Role::Inbox => &names.inbox,
                Role::Sent => &names.sent,
                Role::Deleted => &names.deleted,
            }
            .replace('/', &delimiter);
            let state = match by_identity {
                Some(state) => {
                    if stored_folder.is_some_and(|f| f.imap_name != state.name) {
                        tracing::info!(role = role.as_str(), to = %state.name, "voicemail folder was renamed or moved; following it");
                    }
                    state
                }
                None => {
                    if stored_folder.is_some() {
                        // The folder is gone (deleted by the user): its messages are no
                        // longer on IMAP. That is not a delete of every voicemail on CUC:
                        // they are put back into a new folder.
                        tracing::warn!(
                            role = role.as_str(),
                            "voicemail folder disappeared; recreating it"
                        );
                        for m in known.values_mut() {
                            if m.imap_role.as_deref() == Some(role.as_str()) {
                                m.imap_role = None;
                                m.imap_uid = None;
                            }
                        }
                    }
                    let existing = current.iter().find(|c| c.name == configured).cloned();
                    match existing {
                        // Same name, unknown identity: made by an earlier run that stopped
                        // before recording it (or by the user): adopt it.
                        Some(state)
                            if !out.values().any(|(_, s): &(VoicemailFolder, FolderState)| {
                                s.uid_validity == state.uid_validity
                            }) =>
                        {
                            state
                        }
                        _ => {
                            // A refused CREATE is fine when the folder exists now: another
                            // session (the user's mail client, or Dovecot creating the
                            // user's mail root on first access) made it between LIST and
                            // CREATE, and the server answered NO [ALREADYEXISTS] (RFC 5530).
                            let created = conn.create(&configured).await;
                            let state = match (conn.status(&configured).await, created) {
                                (Ok(Some(state)), created) => {
                                    if let Err(e) = created {
                                        tracing::info!(folder = %configured, error = %error_chain(&e), "CREATE refused but the folder exists now; using it");
                                    }
                                    state
                                }
                                (Ok(None), Ok(())) => {
                                    return Err(VoicemailError::Imap(format!(
                                        "folder {configured:?} missing right after CREATE"
                                    )))
                                }
                                (_, Err(e)) | (Err(e), Ok(())) => return Err(e),
                            };
                            current.push(state.clone());
                            state
                        }
                    }
                }
            };
            let folder = VoicemailFolder {
                cuc_object_id: oid.to_owned(),
                role: role.as_str().to_owned(),
                imap_name: state.name.clone(),
                mailbox_id: None,
                uid_validity: state.uid_validity,
                // Unchanged since the last sync only when identity and modseq both match.
                highest_modseq: stored_folder
                    .filter(|f| f.uid_validity == state.uid_validity)
                    .and_then(|f| f.highest_modseq),
            };
            out.insert(role, (folder, state));
        }
        Ok(out)
    }

    async fn sync_with_imap(
        &self,
        account: &MatchedAccount,
        conn: &mut ImapConn,
        mailbox: &MailboxRef,
        mut on_cuc: HashMap<String, (Role, Message)>,
        known: &mut HashMap<String, VoicemailMessage>,
        previous_success: Option<i64>,
    ) -> Result<AccountSummary, VoicemailError> {
        let inner = &self.inner;
        let oid = account.cuc_object_id.as_str();
        let mut summary = AccountSummary {
            cuc_alias: account.cuc_alias.clone(),
            ..AccountSummary::default()
        };
        let folders = self.resolve_folders(oid, conn, known).await?;
        subscribe_folders(conn, &folders).await;
        let (on_imap, duplicates, mut modseq_seen) = self
            .read_imap(conn, &folders, &on_cuc, known, &mut summary)
            .await?;
        // Decide per message.
        let ids: HashSet<String> = on_cuc
            .keys()
            .chain(on_imap.keys())
            .chain(known.keys())
            .cloned()
            .collect();
        let mut ids: Vec<String> = ids.into_iter().collect();
        ids.sort();
        let mut plans = Vec::with_capacity(ids.len());
        for id in &ids {
            let cuc = on_cuc.get(id).map(|(role, m)| CucView {
                folder: *role,
                read: m.read,
            });
            let mut d = decide(id, cuc, on_imap.get(id).copied(), known.get(id));
            // Further copies of a voicemail CUC lists (a delete undone in the mail client
            // next to the copy in the deleted mirror): one copy per voicemail, where CUC
            // has it, so that deleting "it" on IMAP always reaches CUC.
            for dup in duplicates.get(id).into_iter().flatten() {
                d.actions.push(Action::RemoveFromImap {
                    role: dup.role,
                    uid: dup.uid,
                });
                summary.duplicates_removed += 1;
            }
            plans.push((id.clone(), d));
        }
        // Before any write: refuse a mass removal (an empty CUC answer is the symptom of a
        // missing delegate role, not proof that every voicemail was deleted).
        self.check_removals(&plans, &on_cuc, on_imap.len())?;
        // 1. CUC writes (IMAP -> CUC). A failure stops the sync before IMAP is touched.
        let soft_deleted = self
            .write_cuc(mailbox, &plans, &on_cuc, &mut summary)
            .await?;
        self.follow_cuc_deletes(mailbox, &soft_deleted, &mut plans, &mut on_cuc)
            .await;
        // 2. IMAP flag changes, removals and moves, folder by folder.
        let name_of = |r: Role| {
            folders
                .get(&r)
                .map(|(_, s)| s.name.clone())
                .unwrap_or_default()
        };
        let mut touched: HashSet<Role> = HashSet::new();
        for role in Role::ALL {
            let mut seen_on = Vec::new();
            let mut seen_off = Vec::new();
            let mut remove = Vec::new();
            let mut moves: BTreeMap<Role, Vec<u32>> = BTreeMap::new();
            for (_, d) in &plans {
                for a in &d.actions {
                    match *a {
                        Action::SetImapSeen { uid, seen, .. } => {
                            // The flag goes on the copy where it is now (before any move).
                            let at = d.actions.iter().find_map(|x| match *x {
                                Action::MoveOnImap { from, .. } => Some(from),
                                _ => None,
                            });
                            let here = at.unwrap_or(
                                match d
                                    .next
                                    .as_ref()
                                    .and_then(|n| n.imap_role.as_deref())
                                    .and_then(Role::parse)
                                {
                                    Some(r) => r,
                                    None => continue,
                                },
                            );
                            if here == role {
                                if seen {
                                    seen_on.push(uid)
                                } else {
                                    seen_off.push(uid)
                                }
                            }
                        }
                        Action::RemoveFromImap { role: r, uid } if r == role => remove.push(uid),
                        Action::MoveOnImap { from, uid, to } if from == role => {
                            moves.entry(to).or_default().push(uid)
                        }
                        _ => {}
                    }
                }
            }
            if seen_on.is_empty() && seen_off.is_empty() && remove.is_empty() && moves.is_empty() {
                continue;
            }
            conn.select(&name_of(role)).await?;
            touched.insert(role);
            conn.set_seen(&seen_on, true).await?;
            conn.set_seen(&seen_off, false).await?;
            for (n, seen) in [(seen_on.len(), true), (seen_off.len(), false)] {
                summary.seen_changed_on_imap += n as u64;
                metrics::counter!("ucbridge_voicemail_actions_total", "direction" => "cuc_to_imap", "action" => if seen { "read" } else { "unread" }).increment(n as u64);
            }
            conn.remove(&remove).await?;
            summary.removed_from_imap += remove.len() as u64;
            metrics::counter!("ucbridge_voicemail_actions_total", "direction" => "cuc_to_imap", "action" => "delete").increment(remove.len() as u64);
            for (to, uids) in moves {
                conn.move_to(&uids, &name_of(to)).await?;
                touched.insert(to);
                summary.moved_on_imap += uids.len() as u64;
                metrics::counter!("ucbridge_voicemail_actions_total", "direction" => "cuc_to_imap", "action" => "move").increment(uids.len() as u64);
            }
        }
        // 3. Appends (CUC add -> IMAP): audio from CUC, MIME, APPEND.
        let to = account.email.as_deref().map(|e| {
            (
                account
                    .cuc_display_name
                    .as_deref()
                    .unwrap_or(account.local_username.as_str()),
                e,
            )
        });
        let mut failed_appends: HashSet<String> = HashSet::new();
        let mut append_error = None;
        for (id, d) in &plans {
            for a in &d.actions {
                let Action::Append { role, seen } = *a else {
                    continue;
                };
                let Some((_, m)) = on_cuc.get(id) else {
                    continue;
                };
                let result = async {
                    let mut audio =
                        Vec::with_capacity(m.size_bytes.unwrap_or(0).min(16 << 20) as usize);
                    let info = inner.cuc.download_audio(mailbox, id, &mut audio).await?;
                    // An audio problem (kept as WAV) is logged by mime; the message syncs.
                    let (raw, problem) = mime::build_message(
                        m,
                        audio,
                        info.content_type.as_deref(),
                        to,
                        &inner.options.sender_domain,
                        inner.options.attachment_format,
                    )
                    .await?;
                    let date = m.arrival_time_ms.and_then(internal_date);
                    conn.append(&name_of(role), seen, date.as_deref(), &raw)
                        .await
                        .map(|()| problem)
                }
                .await;
                match result {
                    Ok(problem) => {
                        if let Some(problem) = problem {
                            summary.audio_problems += 1;
                            summary.last_audio_problem = Some(format!("{problem} (message {id})"));
                        }
                        touched.insert(role);
                        summary.appended += 1;
                        count("cuc_to_imap", "add");
                        if let (Some(arrival), Some(since)) = (m.arrival_time_ms, previous_success)
                        {
                            // Only messages that arrived since the last good sync: a first
                            // sync's backlog is not lag.
                            if arrival >= since - 60_000 {
                                let lag = (now_ms() - arrival).max(0) as f64 / 1000.0;
                                metrics::histogram!("ucbridge_voicemail_lag_seconds").record(lag);
                            }
                        }
                    }
                    Err(e) => {
                        failed_appends.insert(id.clone());
                        append_error = Some(e);
                        break;
                    }
                }
            }
            if append_error.is_some() {
                break;
            }
        }
        // Recorded at once: the messages are on IMAP whatever happens to the rest.
        if let Some(latest) = &summary.last_audio_problem {
            inner
                .store
                .record_voicemail_audio_problems(oid, summary.audio_problems, latest)
                .await?;
        }
        // 4. Read back what IMAP holds now in touched folders (UIDs of appended and moved
        // copies, flags), noting HIGHESTMODSEQ before the read.
        let mut final_view: HashMap<String, Vec<ImapView>> = HashMap::new();
        for role in &touched {
            let name = name_of(*role);
            let highest = conn.status(&name).await?.and_then(|s| s.highest_modseq);
            conn.select(&name).await?;
            for m in conn.scan().await? {
                add_copy(&mut final_view, *role, &m);
            }
            modseq_seen.insert(*role, highest);
        }
        // 5. Save rows and folders.
        let mut changed_meanwhile: HashSet<Role> = HashSet::new();
        let mut upserts = Vec::new();
        let mut removals = Vec::new();
        for (id, d) in plans {
            if failed_appends.contains(&id) {
                continue;
            }
            let skipped_after_error = append_error.is_some()
                && d.actions.iter().any(|a| matches!(a, Action::Append { .. }))
                && !final_view.contains_key(&id);
            if skipped_after_error {
                continue;
            }
            match d.next {
                None => {
                    if known.contains_key(&id) {
                        removals.push(id);
                    }
                }
                Some(mut next) => {
                    let role = next.imap_role.as_deref().and_then(Role::parse);
                    if let Some(role) = role.filter(|r| touched.contains(r)) {
                        match final_view
                            .get(&id)
                            .and_then(|copies| written_copy(copies, role, next.imap_uid))
                        {
                            Some(v) => {
                                next.imap_uid = Some(v.uid);
                                // The flag as written stays the last-seen state. A different
                                // one read back is the user's change since the write: it is
                                // left for the next pass, which must then scan the folder.
                                if v.seen != next.imap_seen {
                                    changed_meanwhile.insert(role);
                                }
                            }
                            // Not there after all: the next sync appends it again.
                            None => {
                                next.imap_role = None;
                                next.imap_uid = None;
                            }
                        }
                    }
                    if let Some((_, state)) = role.and_then(|r| folders.get(&r)) {
                        next.imap_uid_validity = Some(state.uid_validity);
                    }
                    if known.get(&id) != Some(&next) {
                        upserts.push(next);
                    }
                }
            }
        }
        summary.messages = on_cuc.len() as u64;
        // No modseq for such a folder: the next poll sees a change and the next sync scans.
        for role in changed_meanwhile {
            modseq_seen.insert(role, None);
        }
        inner
            .store
            .apply_voicemail_messages(oid, &upserts, &removals)
            .await?;
        for (role, (mut folder, state)) in folders {
            folder.imap_name = state.name;
            folder.highest_modseq = modseq_seen.get(&role).copied().flatten();
            inner.store.save_voicemail_folder(&folder).await?;
        }
        match append_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// IMAP's read changes and deletes written to CUC; the ids deleted outside CUC's
    /// `deleted` folder (which CUC may have soft-deleted into it).
    async fn write_cuc(
        &self,
        mailbox: &MailboxRef,
        plans: &[(String, Decision)],
        on_cuc: &HashMap<String, (Role, Message)>,
        summary: &mut AccountSummary,
    ) -> Result<HashSet<String>, VoicemailError> {
        let inner = &self.inner;
        let mut soft_deleted = HashSet::new();
        for (id, d) in plans {
            for a in &d.actions {
                match a {
                    Action::SetCucRead { read } => {
                        inner.cuc.set_read(mailbox, id, *read).await?;
                        summary.read_changed_on_cuc += 1;
                        count("imap_to_cuc", if *read { "read" } else { "unread" });
                    }
                    Action::DeleteOnCuc => {
                        match inner
                            .cuc
                            .delete_message(mailbox, id, inner.options.hard_delete)
                            .await
                        {
                            Ok(()) => {}
                            // Already gone on CUC: the wanted state.
                            Err(e) if e.is_not_found() => {}
                            Err(e) => return Err(e.into()),
                        }
                        if on_cuc
                            .get(id)
                            .is_some_and(|(role, _)| *role != Role::Deleted)
                        {
                            soft_deleted.insert(id.clone());
                        }
                        summary.deleted_on_cuc += 1;
                        count("imap_to_cuc", "delete");
                    }
                    _ => {}
                }
            }
        }
        Ok(soft_deleted)
    }

    /// CUC moves a message deleted from IMAP into its `deleted` folder (a soft delete, the
    /// COS decides): mirror it in this pass, with one more CUMI listing, rather than on the
    /// next one. A failed listing only postpones that to the next pass.
    async fn follow_cuc_deletes(
        &self,
        mailbox: &MailboxRef,
        deleted: &HashSet<String>,
        plans: &mut [(String, Decision)],
        on_cuc: &mut HashMap<String, (Role, Message)>,
    ) {
        // harddelete=true: nothing lands in CUC's deleted folder.
        if deleted.is_empty() || self.inner.options.hard_delete == Some(true) {
            return;
        }
        let listed = match self
            .inner
            .cuc
            .all_messages(
                mailbox,
                Role::Deleted.cuc_folder(),
                self.inner.options.page_size,
            )
            .await
        {
            Ok(listed) => listed,
            Err(e) => {
                tracing::info!(error = %error_chain(&e), "cannot list CUC's deleted folder after deleting; the next pass mirrors it");
                return;
            }
        };
        let listed: HashMap<String, Message> = listed
            .into_iter()
            .filter(|m| deleted.contains(&m.id))
            .map(|m| (m.id.clone(), m))
            .collect();
        for (id, d) in plans.iter_mut() {
            let (Some(m), Some(next)) = (listed.get(id), d.next.as_mut()) else {
                continue;
            };
            next.cuc_folder = Role::Deleted.as_str().to_owned();
            next.cuc_read = m.read;
            // A copy the user moved into the deleted mirror already is the mirror.
            if next.imap_role.is_none() {
                d.actions.push(Action::Append {
                    role: Role::Deleted,
                    seen: m.read,
                });
                next.imap_role = Some(Role::Deleted.as_str().to_owned());
                next.imap_uid = None;
                next.imap_seen = m.read;
            }
            on_cuc.insert(id.clone(), (Role::Deleted, m.clone()));
        }
    }

    /// What IMAP shows in the account's voicemail folders, one view per message that is
    /// ucbridge's own ([`own_copy`]): from a fetch, or from the mapping when HIGHESTMODSEQ
    /// says the folder did not change since ucbridge last looked (RFC 7162 §3.1.2). Also
    /// the HIGHESTMODSEQ each folder was read at.
    async fn read_imap(
        &self,
        conn: &mut ImapConn,
        folders: &BTreeMap<Role, (VoicemailFolder, FolderState)>,
        on_cuc: &HashMap<String, (Role, Message)>,
        known: &HashMap<String, VoicemailMessage>,
        summary: &mut AccountSummary,
    ) -> Result<ImapRead, VoicemailError> {
        let mut copies: HashMap<String, Vec<ImapView>> = HashMap::new();
        let mut modseq_seen: HashMap<Role, Option<u64>> = HashMap::new();
        for (role, (folder, state)) in folders {
            let unchanged = conn.caps.condstore
                && state.highest_modseq.is_some()
                && folder.highest_modseq == state.highest_modseq
                && known
                    .values()
                    .all(|k| k.imap_role.as_deref() != Some(role.as_str()) || k.imap_uid.is_some());
            if unchanged {
                for k in known.values() {
                    if k.imap_role.as_deref() == Some(role.as_str()) {
                        if let Some(uid) = k.imap_uid {
                            copies
                                .entry(k.cuc_message_id.clone())
                                .or_default()
                                .push(ImapView {
                                    role: *role,
                                    uid,
                                    seen: k.imap_seen,
                                    deleted: false,
                                });
                        }
                    }
                }
                modseq_seen.insert(*role, state.highest_modseq);
                continue;
            }
            conn.select(&state.name).await?;
            summary.folders_scanned += 1;
            for m in conn.scan().await? {
                add_copy(&mut copies, *role, &m);
            }
            // Taken by LIST-STATUS before this read: a change after it raises the modseq.
            modseq_seen.insert(*role, state.highest_modseq);
        }
        let mut on_imap = HashMap::with_capacity(copies.len());
        let mut duplicates: HashMap<String, Vec<ImapView>> = HashMap::new();
        for (id, list) in copies {
            match own_copy(&list, known.get(&id), on_cuc.contains_key(&id)) {
                Some(view) => {
                    // Only copies of a voicemail this account's CUC mailbox lists are
                    // ours to remove (the rule own_copy adopts by).
                    if on_cuc.contains_key(&id) && list.len() > 1 {
                        let extra: Vec<ImapView> =
                            list.into_iter().filter(|c| *c != view).collect();
                        duplicates.insert(id.clone(), extra);
                    }
                    on_imap.insert(id, view);
                }
                None => {
                    summary.foreign_left_alone += list.len() as u64;
                    tracing::debug!(account = %summary.cuc_alias, cuc_id = %id, "message with our header that ucbridge did not append for this account; left alone");
                }
            }
        }
        Ok((on_imap, duplicates, modseq_seen))
    }

    /// The mass-removal guard: messages leaving IMAP because CUC no longer lists them,
    /// against ucbridge's messages on IMAP ([`crate::RemovalGuard`]).
    fn check_removals(
        &self,
        plans: &[(String, Decision)],
        on_cuc: &HashMap<String, (Role, Message)>,
        on_imap: usize,
    ) -> Result<(), VoicemailError> {
        let removals = plans
            .iter()
            .filter(|(id, d)| {
                !on_cuc.contains_key(id)
                    && d.actions
                        .iter()
                        .any(|a| matches!(a, Action::RemoveFromImap { .. }))
            })
            .count() as u64;
        let on_imap = on_imap as u64;
        let cuc_empty = on_cuc.is_empty();
        let options = &self.inner.options;
        if options.confirm_removals || !options.removal_guard.refuses(removals, on_imap, cuc_empty)
        {
            return Ok(());
        }
        Err(VoicemailError::RemovalsRefused(RemovalsRefused {
            removals,
            on_imap,
            cuc_empty,
        }))
    }

    /// Whether an account's IMAP folders changed since its last sync (one LIST-STATUS).
    pub async fn imap_changed(&self, account: &MatchedAccount) -> Result<bool, VoicemailError> {
        let stored = self
            .inner
            .store
            .voicemail_folders(&account.cuc_object_id)
            .await?;
        if stored.is_empty() {
            return Ok(true);
        }
        let mut conn = ImapConn::open(&self.inner.imap, &account.imap_user).await?;
        let current = conn.folders().await;
        conn.logout().await;
        Ok(folders_changed(&stored, &current?))
    }

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
        let oid = lock(&self.inner.shared)
            .by_imap_user
            .get(&imap_user.to_lowercase())
            .cloned();
        let relevant = match (&oid, uid_validity) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(oid), Some(v)) => self
                .inner
                .store
                .voicemail_folders(oid)
                .await?
                .iter()
                .any(|f| f.uid_validity == v),
        };
        let outcome = match oid {
            // A full queue means run() is not draining it (not running, or far behind):
            // the poll and the reconcile still find the change.
            Some(oid) if relevant => {
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
        })
    }

    /// The continuous mode until `shutdown` resolves: a full reconcile at start and every
    /// `reconcile_every`; CUC events (callbacks) synced at once; IMAP changes pushed by
    /// the IMAP server ([`VoicemailEngine::imap_push_router`]) or detected by polling
    /// HIGHESTMODSEQ every `imap_poll_every` (one round at a time, on permits of its own
    /// so syncs never wait for it) synced after `debounce`; failed
    /// accounts retried with exponential backoff; the CUNI subscription (when
    /// `callback_url` is given) renewed at half its lifetime or when CUC ends it.
    pub async fn run(
        &self,
        callback_url: Option<String>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let (Ok(mut events), Ok(mut pushed)) = (
            self.inner.events_rx.try_lock(),
            self.inner.pushed_rx.try_lock(),
        ) else {
            tracing::error!("VoicemailEngine::run is already running");
            return;
        };
        tokio::pin!(shutdown);
        let options = self.inner.options.clone();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, bool)>();
        let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<String>();
        let semaphore = Arc::new(Semaphore::new(options.concurrency.max(1)));
        // Polls get their own permits: waiting for sync permits they queued up behind
        // syncs, and syncs behind them (issue 17 item 8).
        let poll_semaphore = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let mut poll: Option<tokio::task::JoinHandle<()>> = None;
        let mut debounced: HashMap<String, Instant> = HashMap::new();
        let mut retries: HashMap<String, (Instant, u32)> = HashMap::new();
        let mut running: HashSet<String> = HashSet::new();
        let mut rerun: HashSet<String> = HashSet::new();
        let now = Instant::now();
        let mut next_reconcile = now;
        let mut next_poll = now + options.imap_poll_every;
        let mut next_subscribe = callback_url.as_ref().map(|_| now);
        // When the current subscription was made (the push watchdog's reference point).
        let mut subscribed_at: Option<i64> = None;
        // A re-subscription was asked for (SUB_END, silence): reconcile once it succeeds,
        // even if that takes several attempts.
        let mut reconcile_after_subscribe = false;
        let mut reconciling = false;
        // Consecutive failures of the reconcile and of the subscription (their back-off).
        let mut reconcile_failures = 0u32;
        let mut subscribe_failures = 0u32;
        let (reconciled_tx, mut reconciled_rx) = mpsc::unbounded_channel::<bool>();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let spawn_sync =
            |oid: String, running: &mut HashSet<String>, rerun: &mut HashSet<String>| {
                if !running.insert(oid.clone()) {
                    // A sync of it is in flight: run once more after it.
                    rerun.insert(oid);
                    return;
                }
                let engine = self.clone();
                let semaphore = semaphore.clone();
                let done = done_tx.clone();
                tokio::spawn(async move {
                    let _permit = semaphore.acquire_owned().await;
                    let ok = match engine.account_by_id(&oid).await {
                        Some(a) => engine.sync_matched(&a).await.is_ok(),
                        None => true,
                    };
                    let _ = done.send((oid, ok));
                });
            };
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(oid) = events.recv() => spawn_sync(oid, &mut running, &mut rerun),
                // Changes on IMAP, polled or pushed: synced once `debounce` after the first
                // one, so a burst of actions makes one sync (seed 002).
                Some(oid) = changed_rx.recv() => {
                    debounced.entry(oid).or_insert_with(|| Instant::now() + options.debounce);
                }
                Some(oid) = pushed.recv() => {
                    debounced.entry(oid).or_insert_with(|| Instant::now() + options.debounce);
                }
                Some((oid, ok)) = done_rx.recv() => {
                    running.remove(&oid);
                    if ok {
                        retries.remove(&oid);
                    } else {
                        let attempts = retries.get(&oid).map_or(0, |r| r.1) + 1;
                        retries.insert(oid.clone(), (Instant::now() + backoff(&options, attempts), attempts));
                    }
                    if rerun.remove(&oid) {
                        spawn_sync(oid, &mut running, &mut rerun);
                    }
                }
                Some(ok) = reconciled_rx.recv() => {
                    reconciling = false;
                    if ok {
                        reconcile_failures = 0;
                    } else {
                        // CUC down: back off like an account does, not every 5 s.
                        reconcile_failures += 1;
                        next_reconcile = Instant::now() + backoff(&options, reconcile_failures);
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let due: Vec<String> = debounced.iter().filter(|(_, t)| **t <= now).map(|(k, _)| k.clone()).collect();
                    for oid in due {
                        debounced.remove(&oid);
                        spawn_sync(oid, &mut running, &mut rerun);
                    }
                    let due: Vec<String> = retries.iter().filter(|(_, (t, _))| *t <= now).map(|(k, _)| k.clone()).collect();
                    for oid in due {
                        if let Some(r) = retries.get_mut(&oid) {
                            // Not due again until this attempt reports back.
                            r.0 = now + options.retry_max;
                        }
                        spawn_sync(oid, &mut running, &mut rerun);
                    }
                    if !reconciling && now >= next_reconcile {
                        reconciling = true;
                        next_reconcile = now + options.reconcile_every;
                        let engine = self.clone();
                        let tx = reconciled_tx.clone();
                        tokio::spawn(async move {
                            let ok = match engine.sync_all(&|_, _| {}).await {
                                Ok(s) => {
                                    tracing::info!(accounts = s.accounts, failed = s.failed.len(), appended = s.appended, "voicemail reconcile done");
                                    true
                                }
                                Err(e) => {
                                    tracing::warn!(error = %error_chain(&e), "voicemail reconcile failed");
                                    false
                                }
                            };
                            let _ = tx.send(ok);
                        });
                    }
                    if now >= next_poll {
                        next_poll = now + options.imap_poll_every;
                        if poll.as_ref().is_some_and(|p| !p.is_finished()) {
                            // Never two rounds at once: the next one starts after this one.
                            lock(&self.inner.shared).polls.skipped_busy += 1;
                        } else {
                            // Accounts about to be synced anyway need no check, and one
                            // backing off is retried on its schedule, not every poll.
                            let skip: HashSet<String> = running.iter().chain(debounced.keys()).chain(retries.keys()).cloned().collect();
                            poll = Some(self.spawn_poll(poll_semaphore.clone(), changed_tx.clone(), skip));
                        }
                    }
                    let mut resubscribe = std::mem::take(&mut lock(&self.inner.shared).resubscribe_now);
                    if let (Some(limit), Some(since)) = (options.push_silence_limit, subscribed_at) {
                        let heard = {
                            let shared = lock(&self.inner.shared);
                            shared.last_event_at.max(shared.last_keep_alive_at)
                        };
                        let silent_ms = now_ms() - heard.unwrap_or(since).max(since);
                        if silent_ms > i64::try_from(limit.as_millis()).unwrap_or(i64::MAX) {
                            tracing::warn!(silent_for_s = silent_ms / 1000, "nothing from CUC's Notifier, not even a keep-alive; re-subscribing");
                            metrics::counter!("ucbridge_voicemail_push_silences_total").increment(1);
                            resubscribe = true;
                            // Not again before the new subscription had its chance.
                            subscribed_at = None;
                        }
                    }
                    reconcile_after_subscribe |= resubscribe;
                    if let (Some(url), Some(at)) = (&callback_url, next_subscribe) {
                        if now >= at || resubscribe {
                            match self.subscribe(url).await {
                                Ok(_) => {
                                    subscribe_failures = 0;
                                    subscribed_at = Some(now_ms());
                                    next_subscribe = Some(now + options.subscription_lifetime / 2);
                                    // Events may have been lost meanwhile (notes §3): reconcile.
                                    if std::mem::take(&mut reconcile_after_subscribe) {
                                        next_reconcile = now;
                                    }
                                }
                                Err(e) => {
                                    subscribe_failures += 1;
                                    let delay = backoff(&options, subscribe_failures);
                                    tracing::warn!(error = %error_chain(&e), retry_in_s = delay.as_secs_f32(), "CUNI subscription failed; retrying");
                                    next_subscribe = Some(now + delay);
                                }
                            }
                        }
                    }
                }
            }
        }
        // A poll only reads: stop it now rather than wait for it.
        if let Some(p) = poll {
            p.abort();
        }
        // Let account syncs in flight finish (their outcome is recorded) before returning.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !running.is_empty() {
            match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                Ok(Some((oid, _))) => {
                    running.remove(&oid);
                }
                _ => break,
            }
        }
    }

    /// One poll round in the background: which accounts changed on IMAP (HIGHESTMODSEQ),
    /// at most `semaphore`'s permits at a time, accounts in `skip` left out.
    fn spawn_poll(
        &self,
        semaphore: Arc<Semaphore>,
        changed: mpsc::UnboundedSender<String>,
        skip: HashSet<String>,
    ) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        let round = PollRound::start(self.clone());
        tokio::spawn(async move {
            let _round = round;
            let accounts: Vec<MatchedAccount> = lock(&engine.inner.shared)
                .matched
                .values()
                .filter(|a| !skip.contains(&a.cuc_object_id))
                .cloned()
                .collect();
            let mut tasks = futures::stream::FuturesUnordered::new();
            for account in accounts {
                let engine = engine.clone();
                let semaphore = semaphore.clone();
                tasks.push(async move {
                    let _permit = semaphore.acquire_owned().await;
                    (
                        account.cuc_object_id.clone(),
                        engine.imap_changed(&account).await,
                    )
                });
            }
            while let Some((oid, changed_now)) = tasks.next().await {
                match changed_now {
                    Ok(true) => {
                        let _ = changed.send(oid);
                    }
                    Ok(false) => {}
                    Err(e) => tracing::debug!(error = %error_chain(&e), "IMAP change check failed"),
                }
            }
            lock(&engine.inner.shared).polls.completed += 1;
        })
    }
}

/// Counts a poll round in flight for [`PollStats`]; dropped when the round ends or is
/// aborted.
struct PollRound(VoicemailEngine);

impl PollRound {
    fn start(engine: VoicemailEngine) -> PollRound {
        {
            let mut shared = lock(&engine.inner.shared);
            shared.polls.started += 1;
            shared.polls_in_flight += 1;
            shared.polls.max_in_flight = shared.polls.max_in_flight.max(shared.polls_in_flight);
        }
        PollRound(engine)
    }
}

impl Drop for PollRound {
    fn drop(&mut self) {
        let mut shared = lock(&self.0.inner.shared);
        shared.polls_in_flight = shared.polls_in_flight.saturating_sub(1);
    }
}

/// Delay before retry number `attempt` (1 = the first): `retry_initial` doubled per
/// attempt up to `retry_max`, less a random share of up to a quarter so that accounts
/// that failed together (CUC down) do not all come back at the same instant.
/// Whether any stored folder is gone (by UIDVALIDITY) or has another HIGHESTMODSEQ than
/// recorded after the last sync; a folder without a recorded modseq counts as changed.
fn folders_changed(stored: &[VoicemailFolder], current: &[FolderState]) -> bool {
    stored.iter().any(
        |f| match current.iter().find(|c| c.uid_validity == f.uid_validity) {
            None => true,
            Some(c) => c.highest_modseq.is_none() || c.highest_modseq != f.highest_modseq,
        },
    )
}

fn backoff(options: &VoicemailOptions, attempt: u32) -> Duration {
    let jitter = rand::thread_rng().gen::<f64>();
    retry_delay(attempt, options.retry_initial, options.retry_max, jitter)
}

/// The back-off schedule, pure: `jitter` in [0, 1) takes up to 25 % off the step.
pub(crate) fn retry_delay(attempt: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    // 2^20 x any sane initial delay is far beyond any cap; this bounds the shift.
    let doublings = attempt.saturating_sub(1).min(20);
    let step = initial.saturating_mul(1u32 << doublings).min(max);
    step.saturating_sub(step.mul_f64(jitter.clamp(0.0, 1.0) * 0.25))
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

fn count(direction: &'static str, action: &'static str) {
    metrics::counter!("ucbridge_voicemail_actions_total", "direction" => direction, "action" => action)
        .increment(1);
}

/// Note a message carrying our header under its CUC id (every copy, in scan order).
fn add_copy(copies: &mut HashMap<String, Vec<ImapView>>, role: Role, m: &ImapMessage) {
    let Some(id) = &m.cuc_id else { return };
    copies.entry(id.clone()).or_default().push(ImapView {
        role,
        uid: m.uid,
        seen: m.seen,
        deleted: m.deleted,
    });
}

/// The copy this sync left in `role`'s folder: the one at the UID it already had, else
/// the newest (APPEND and MOVE assign UIDs above every existing one, RFC 3501 §2.3.1.1),
/// so an older copy the user filed with the same header is not mistaken for it.
fn written_copy(copies: &[ImapView], role: Role, uid: Option<u32>) -> Option<&ImapView> {
    let in_role = || copies.iter().filter(move |v| v.role == role);
    in_role()
        .find(|v| Some(v.uid) == uid)
        .or_else(|| in_role().max_by_key(|v| v.uid))
}

/// Subscribe the folders in use that are not subscribed (just created, created by a
/// version that did not subscribe, or adopted): Thunderbird, Roundcube and other clients
/// show subscribed folders only. A refusal costs visibility, not mail: logged, not fatal.
async fn subscribe_folders(
    conn: &mut ImapConn,
    folders: &BTreeMap<Role, (VoicemailFolder, FolderState)>,
) {
    for (_, state) in folders.values() {
        if state.subscribed {
            continue;
        }
        match conn.subscribe(&state.name).await {
            Ok(()) => tracing::debug!(folder = %state.name, "subscribed the voicemail folder"),
            Err(e) => {
                tracing::warn!(folder = %state.name, error = %error_chain(&e), "cannot subscribe the voicemail folder")
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_the_cap() {
        let (initial, max) = (Duration::from_secs(5), Duration::from_secs(600));
        let plain: Vec<u64> = (1..=10)
            .map(|n| retry_delay(n, initial, max, 0.0).as_secs())
            .collect();
        assert_eq!(plain, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
        // Jitter takes at most a quarter off, never adds: the cap holds.
        for n in 1..=40 {
            let step = retry_delay(n, initial, max, 0.0);
            for jitter in [0.0, 0.3, 0.999_999] {
                let d = retry_delay(n, initial, max, jitter);
                assert!(d <= step && d >= step.mul_f64(0.75), "attempt {n}: {d:?}");
            }
        }
        assert_eq!(
            retry_delay(3, initial, max, 0.5),
            Duration::from_millis(17_500)
        );
        // Huge attempt counts neither overflow nor pass the cap.
        assert_eq!(retry_delay(u32::MAX, initial, max, 0.0), max);
        assert_eq!(retry_delay(0, initial, max, 0.0), initial);
    }

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
