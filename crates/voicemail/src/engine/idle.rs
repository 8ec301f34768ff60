//! IMAP IDLE (RFC 2177) for IMAP servers that cannot call ucbridge's push webhook: a
//! bounded pool of connections ([`IdlePool`]), one per account, each watching the
//! account's voicemail inbox folder; accounts beyond the pool keep the HIGHESTMODSEQ poll.
//!
//! Why the inbox folder: IDLE watches the one selected mailbox (RFC 2177 §3), and the
//! inbox mirror is where new voicemail lands and where every action that reaches CUC and
//! its message-waiting lamp starts: a read or unread (FETCH), a delete (FETCH `\Deleted`,
//! EXPUNGE), a move to the deleted mirror or the Trash (EXPUNGE), an undo back into it
//! (EXISTS). What one IDLE cannot see — a delete in the sent or deleted mirror — is found by
//! a LIST-STATUS of all three folders on the same connection whenever the IDLE is renewed
//! (`imap_idle_renew`, 10 minutes), and by the periodic reconcile.
//!
//! One watcher, in steps: log in (master user) → the server must offer IDLE, else every
//! account is polled → LIST-STATUS: a change in any of the three folders since the last
//! sync is reported → EXAMINE the inbox folder (read-only: nothing changes for the user,
//! `\Recent` included) and compare its HIGHESTMODSEQ with the recorded one → IDLE, each
//! change the server reports goes to [`super::continuous`]'s loop, which debounces it like
//! a push notification → after `imap_idle_renew`, DONE and CLOSE → again.
//!
//! IDLE also reports ucbridge's own writes (an APPEND after a CUC event), which Dovecot's
//! push plugin leaves out (`ucbridge_push_skip_master`). So a sync scheduled by IDLE alone
//! starts with a reconcile's skip-unchanged check: an echo of ucbridge's own write costs
//! three small CUC requests and one IMAP login with LIST-STATUS, not a full read.
//!
//! Bounds: `imap_idle_connections` watchers per engine; each IDLE at most
//! `imap_idle_renew` (≤ 29 minutes, RFC 2177); a lost or refused connection is retried
//! with the accounts' back-off (`retry_initial` doubling to `retry_max`) while the poll
//! covers the account; on stop every watcher sends DONE and LOGOUT within [`STOP_GRACE`],
//! then whatever is left is aborted.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::account::folders_changed;
use super::continuous::backoff;
use super::{error_chain, lock, VoicemailEngine};
use crate::imap::{IdleEvent, ImapConn};
use crate::matching::MatchedAccount;
use crate::reconcile::Role;
use crate::VoicemailError;

/// Changes reported and not yet taken by the run loop, at most.
pub(super) const CHANGES_QUEUE: usize = 10_000;

/// How long stopping waits for watchers to leave politely (DONE, LOGOUT) before aborting.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(2);

/// The IDLE watchers of one [`VoicemailEngine::run`]. Dropping it aborts them.
pub(super) struct IdlePool {
    engine: VoicemailEngine,
    size: usize,
    changes: mpsc::Sender<String>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    watchers: HashMap<String, AbortHandle>,
}

/// Why a watcher's session ended without an error.
enum Ended {
    Stopped,
    /// The server does not offer IDLE.
    Unsupported,
    /// The account has no recorded inbox folder (not synced yet) or it is gone (a sync
    /// recreates it): try again later.
    NoFolder,
}

impl IdlePool {
    /// The pool when the settings ask for IDLE ([`crate::VoicemailOptions::idle_wanted`]);
    /// watchers start with [`IdlePool::rebalance`]. Changes are sent to `changes`.
    pub(super) fn start(
        engine: &VoicemailEngine,
        changes: mpsc::Sender<String>,
    ) -> Option<IdlePool> {
        let options = &engine.inner.options;
        if !options.idle_wanted() {
            return None;
        }
        let size = options.imap_idle_connections;
        {
            let mut shared = lock(&engine.inner.shared);
            shared.imap_idle.enabled = true;
            shared.imap_idle.pool_size = u64::try_from(size).unwrap_or(u64::MAX);
        }
        Some(IdlePool {
            engine: engine.clone(),
            size,
            changes,
            stop: watch::channel(false).0,
            tasks: JoinSet::new(),
            watchers: HashMap::new(),
        })
    }

    /// Watch up to the pool's size of the matched accounts, by CUC alias (accounts watched
    /// already keep their connection); stop watching accounts no longer matched. Nothing
    /// once the server turned out not to offer IDLE.
    pub(super) fn rebalance(&mut self) {
        while self.tasks.try_join_next().is_some() {}
        self.watchers.retain(|_, h| !h.is_finished());
        let (matched, unsupported) = {
            let shared = lock(&self.engine.inner.shared);
            (shared.matched.clone(), shared.imap_idle.unsupported)
        };
        self.watchers.retain(|oid, h| {
            let keep = !unsupported && matched.contains_key(oid);
            if !keep {
                h.abort();
            }
            keep
        });
        if unsupported {
            return;
        }
        let mut unwatched: Vec<MatchedAccount> = matched
            .into_values()
            .filter(|a| !self.watchers.contains_key(&a.cuc_object_id))
            .collect();
        unwatched.sort_by(|a, b| a.cuc_alias.cmp(&b.cuc_alias));
        let free = self.size.saturating_sub(self.watchers.len());
        for account in unwatched.into_iter().take(free) {
            let oid = account.cuc_object_id.clone();
            let engine = self.engine.clone();
            let changes = self.changes.clone();
            let stop = self.stop.subscribe();
            let handle = self
                .tasks
                .spawn(async move { engine.watch(account, changes, stop).await });
            self.watchers.insert(oid, handle);
        }
    }

    /// Stop every watcher: DONE and LOGOUT within [`STOP_GRACE`], then abort the rest.
    pub(super) async fn stop(mut self) {
        let _ = self.stop.send(true);
        let tasks = &mut self.tasks;
        let _ = tokio::time::timeout(STOP_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        lock(&self.engine.inner.shared).imap_idle.enabled = false;
    }
}

/// Marks an account as watched while alive (the poll leaves it out); also when the
/// watcher is aborted.
struct Watching {
    engine: VoicemailEngine,
    oid: String,
}

impl Watching {
    fn set(&self, on: bool) {
        let mut shared = lock(&self.engine.inner.shared);
        if on {
            shared.idle_watching.insert(self.oid.clone());
        } else {
            shared.idle_watching.remove(&self.oid);
        }
        let watching = shared.idle_watching.len();
        shared.imap_idle.watching = u64::try_from(watching).unwrap_or(u64::MAX);
        metrics::gauge!("ucbridge_voicemail_imap_idle_watching").set(watching as f64);
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.set(false);
    }
}

impl VoicemailEngine {
    /// One watcher: sessions one after the other, with back-off between failed ones,
    /// until `stop` (or the server turns out not to offer IDLE).
    async fn watch(
        self,
        account: MatchedAccount,
        changes: mpsc::Sender<String>,
        mut stop: watch::Receiver<bool>,
    ) {
        let watching = Watching {
            engine: self.clone(),
            oid: account.cuc_object_id.clone(),
        };
        let mut attempts = 0u32;
        loop {
            let ended = self
                .idle_session(&account, &changes, &mut stop, &watching, &mut attempts)
                .await;
            watching.set(false);
            attempts += 1;
            match ended {
                Ok(Ended::Stopped) => return,
                Ok(Ended::Unsupported) => {
                    let mut shared = lock(&self.inner.shared);
                    if !shared.imap_idle.unsupported {
                        tracing::info!(
                            "the IMAP server does not offer IDLE; polling every account"
                        );
                        shared.imap_idle.unsupported = true;
                    }
                    return;
                }
                Ok(Ended::NoFolder) => {}
                Err(e) => {
                    lock(&self.inner.shared).imap_idle.failures += 1;
                    if attempts == 1 {
                        tracing::warn!(account = %account.cuc_alias, error = %error_chain(&e), "IMAP IDLE failed; polling the account until it is back");
                    } else {
                        tracing::debug!(account = %account.cuc_alias, error = %error_chain(&e), "IMAP IDLE failed again");
                    }
                }
            }
            let delay = backoff(&self.inner.options, attempts);
            tokio::select! {
                _ = stopped(&mut stop) => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection: log in, then IDLE cycles of `imap_idle_renew` each until `stop`.
    async fn idle_session(
        &self,
        account: &MatchedAccount,
        changes: &mpsc::Sender<String>,
        stop: &mut watch::Receiver<bool>,
        watching: &Watching,
        attempts: &mut u32,
    ) -> Result<Ended, VoicemailError> {
        let oid = account.cuc_object_id.as_str();
        // A zero renewal would spin; over 29 minutes breaks RFC 2177.
        let renew = self
            .inner
            .options
            .imap_idle_renew
            .clamp(Duration::from_secs(1), crate::IDLE_RENEW_MAX);
        let mut conn = self.imap_open(&account.imap_user).await?;
        if !conn.caps.idle {
            conn.logout().await;
            return Ok(Ended::Unsupported);
        }
        loop {
            if !self.idle_prepare(&mut conn, account, changes).await? {
                conn.logout().await;
                return Ok(Ended::NoFolder);
            }
            let mut idling = conn.idle().await?;
            watching.set(true);
            *attempts = 0;
            let deadline = Instant::now() + renew;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                tokio::select! {
                    _ = stopped(stop) => {
                        let _ = tokio::time::timeout(STOP_GRACE, async {
                            if let Ok(conn) = idling.done().await {
                                conn.logout().await;
                            }
                        })
                        .await;
                        return Ok(Ended::Stopped);
                    }
                    event = idling.wait(left) => {
                        if event? == IdleEvent::Changed {
                            self.idle_changed(oid, changes);
                        }
                    }
                }
            }
            conn = idling.done().await?;
            // Changes reported with DONE's or CLOSE's answer.
            let mut changed = conn.take_unsolicited();
            conn.close().await?;
            changed |= conn.take_unsolicited();
            if changed {
                self.idle_changed(oid, changes);
            }
            lock(&self.inner.shared).imap_idle.renewed += 1;
        }
    }

    /// Before each IDLE: the recorded folders against the server's (one LIST-STATUS: a
    /// change in any of the three since the last sync is reported), then EXAMINE of the
    /// inbox folder, whose HIGHESTMODSEQ closes the gap until IDLE starts. `false` when
    /// there is no recorded inbox folder or it is gone.
    async fn idle_prepare(
        &self,
        conn: &mut ImapConn,
        account: &MatchedAccount,
        changes: &mpsc::Sender<String>,
    ) -> Result<bool, VoicemailError> {
        let oid = account.cuc_object_id.as_str();
        let stored = self.inner.store.voicemail_folders(oid).await?;
        let Some(inbox) = stored.iter().find(|f| f.role == Role::Inbox.as_str()) else {
            return Ok(false);
        };
        let check = self.imap_check_mark(oid);
        let current = conn.folders().await?;
        let mut changed = folders_changed(&stored, &current);
        let Some(name) = current
            .iter()
            .find(|c| c.uid_validity == inbox.uid_validity)
            .map(|c| c.name.clone())
        else {
            // Deleted by the user: the sync recreates and refills it.
            self.idle_changed(oid, changes);
            return Ok(false);
        };
        let (uid_validity, modseq) = conn.examine(&name).await?;
        conn.take_unsolicited();
        changed |= uid_validity != inbox.uid_validity
            || modseq.is_none()
            || modseq != inbox.highest_modseq;
        if changed {
            self.idle_changed(oid, changes);
        } else {
            self.imap_verified(oid, check);
        }
        Ok(true)
    }

    /// The server reported a change of the account's mail: its debounced sync (checked
    /// first, see the module doc); the account's last IMAP check is no longer trusted.
    fn idle_changed(&self, oid: &str, changes: &mpsc::Sender<String>) {
        lock(&self.inner.shared).imap_idle.notifications += 1;
        metrics::counter!("ucbridge_voicemail_imap_idle_notifications_total").increment(1);
        self.push_noted(oid);
        // Full only when the loop is far behind: the next renewal's LIST-STATUS, or the
        // reconcile, still finds the change.
        let _ = changes.try_send(oid.to_owned());
    }
}

/// Until the pool says stop (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard wait_for returns must not live across an await (it is not Send).
    let _ = stop.wait_for(|s| *s).await.is_ok();
}
