//! One account's sync: the per-account lock and outcome record, CUC read first, the skip
//! of an unchanged account, then [`VoicemailEngine::sync_with_imap`]'s steps — decide per
//! message, guard removals, write CUC, write IMAP ([`super::imap_side`]), record.

use std::collections::{HashMap, HashSet};

use ucbridge_cuc::{MailboxRef, Message};
use ucbridge_store::VoicemailMessage;

use super::imap_side::{folder_name, subscribe_folders, Folders};
use super::{count, error_chain, lock, now_ms, AccountSummary, OnCuc, Pass, VoicemailEngine};
use crate::imap::{FolderState, ImapConn};
use crate::matching::MatchedAccount;
use crate::reconcile::{decide, Action, CucView, Decision, ImapView, Role};
use crate::{RemovalsRefused, VoicemailError};

/// What a reconcile does with an account ([`VoicemailEngine::unchanged`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Sync it: something moved, or cannot be shown not to have.
    No,
    /// Skip it: CUC's fingerprint and the IMAP folders (one login) are as recorded.
    AfterImapCheck,
    /// Skip it: CUC's fingerprint is as recorded and IMAP push vouches for IMAP.
    TrustingPush,
}

impl VoicemailEngine {
    /// Sync one matched account; the outcome is recorded and counted.
    pub async fn sync_matched(
        &self,
        account: &MatchedAccount,
    ) -> Result<AccountSummary, VoicemailError> {
        self.sync_matched_as(account, Pass::Full).await
    }

    pub(super) async fn sync_matched_as(
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
        let skip = match pass {
            Pass::SkipUnchanged => self.unchanged(account, fingerprint.as_deref()).await?,
            Pass::Full => Skip::No,
        };
        if skip != Skip::No {
            return Ok(AccountSummary {
                cuc_alias: account.cuc_alias.clone(),
                messages: stored.map_or(0, |a| u64::try_from(a.messages).unwrap_or(0)),
                skipped_unchanged: true,
                skipped_trusting_push: skip == Skip::TrustingPush,
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
        let mark = self.imap_check_mark(oid);
        let mut conn = self.imap_open(&account.imap_user).await?;
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
            self.imap_verified(oid, mark);
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
    /// HIGHESTMODSEQ — trusted without a login when IMAP push vouches for it
    /// ([`VoicemailEngine::push_trusted`]), else checked (one login and LIST-STATUS).
    async fn unchanged(
        &self,
        account: &MatchedAccount,
        fingerprint: Option<&str>,
    ) -> Result<Skip, VoicemailError> {
        let inner = &self.inner;
        let oid = account.cuc_object_id.as_str();
        let Some(fingerprint) = fingerprint else {
            return Ok(Skip::No);
        };
        let Some(mark) = inner.store.voicemail_cuc_mark(oid).await? else {
            return Ok(Skip::No);
        };
        let max_age = i64::try_from(inner.options.full_read_every.as_millis()).unwrap_or(i64::MAX);
        let recent = mark
            .full_read_at
            .is_some_and(|at| now_ms().saturating_sub(at) < max_age);
        if !recent || mark.fingerprint.as_deref() != Some(fingerprint) {
            return Ok(Skip::No);
        }
        let stored = inner.store.voicemail_folders(oid).await?;
        if Role::ALL
            .iter()
            .any(|r| !stored.iter().any(|f| f.role == r.as_str()))
        {
            return Ok(Skip::No);
        }
        if self.push_trusted(oid) {
            return Ok(Skip::TrustingPush);
        }
        let check = self.imap_check_mark(oid);
        let mut conn = self.imap_open(&account.imap_user).await?;
        let current = conn.folders().await;
        conn.logout().await;
        if folders_changed(&stored, &current?) {
            return Ok(Skip::No);
        }
        self.imap_verified(oid, check);
        Ok(Skip::AfterImapCheck)
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
        let check = self.imap_check_mark(&account.cuc_object_id);
        let mut conn = self.imap_open(&account.imap_user).await?;
        let current = conn.folders().await;
        conn.logout().await;
        let changed = folders_changed(&stored, &current?);
        if !changed {
            self.imap_verified(&account.cuc_object_id, check);
        }
        Ok(changed)
    }

    /// Both sides read, a decision per message, then the writes in an order that loses
    /// nothing: CUC first (a failure stops the sync before IMAP is touched), then IMAP's
    /// changes and appends, then what IMAP holds now is read back and recorded.
    async fn sync_with_imap(
        &self,
        account: &MatchedAccount,
        conn: &mut ImapConn,
        mailbox: &MailboxRef,
        mut on_cuc: OnCuc,
        known: &mut HashMap<String, VoicemailMessage>,
        previous_success: Option<i64>,
    ) -> Result<AccountSummary, VoicemailError> {
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
        let mut plans = plan_messages(&on_cuc, &on_imap, &duplicates, known, &mut summary);
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
        let mut touched = apply_imap_changes(conn, &folders, &plans, &mut summary).await?;
        // 3. Appends (CUC add -> IMAP): audio from CUC, MIME, APPEND.
        let appended = self
            .append_new(
                account,
                conn,
                mailbox,
                &folders,
                &plans,
                &on_cuc,
                previous_success,
                &mut summary,
                &mut touched,
            )
            .await;
        // Recorded at once: the messages are on IMAP whatever happens to the rest.
        if let Some(latest) = &summary.last_audio_problem {
            self.inner
                .store
                .record_voicemail_audio_problems(oid, summary.audio_problems, latest)
                .await?;
        }
        // 4. Read back what IMAP holds now in touched folders.
        let final_view =
            super::imap_side::read_back(conn, &folders, &touched, &mut modseq_seen).await?;
        // 5. Save rows and folders.
        summary.messages = on_cuc.len() as u64;
        let written = super::imap_side::Written {
            touched: &touched,
            final_view: &final_view,
            appended: &appended,
        };
        self.save_sync(oid, plans, known, folders, written, modseq_seen)
            .await?;
        match appended.error {
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
}

/// One decision per message any side knows (CUC, IMAP, the last sync), in id order.
/// Further copies of a voicemail CUC lists (a delete undone in the mail client next to the
/// copy in the deleted mirror) are removed: one copy per voicemail, where CUC has it, so
/// that deleting "it" on IMAP always reaches CUC.
fn plan_messages(
    on_cuc: &OnCuc,
    on_imap: &HashMap<String, ImapView>,
    duplicates: &HashMap<String, Vec<ImapView>>,
    known: &HashMap<String, VoicemailMessage>,
    summary: &mut AccountSummary,
) -> Vec<(String, Decision)> {
    let ids: HashSet<&String> = on_cuc
        .keys()
        .chain(on_imap.keys())
        .chain(known.keys())
        .collect();
    let mut ids: Vec<&String> = ids.into_iter().collect();
    ids.sort();
    let mut plans = Vec::with_capacity(ids.len());
    for id in ids {
        let cuc = on_cuc.get(id).map(|(role, m)| CucView {
            folder: *role,
            read: m.read,
        });
        let mut d = decide(id, cuc, on_imap.get(id).copied(), known.get(id));
        for dup in duplicates.get(id).into_iter().flatten() {
            d.actions.push(Action::RemoveFromImap {
                role: dup.role,
                uid: dup.uid,
            });
            summary.duplicates_removed += 1;
        }
        plans.push((id.clone(), d));
    }
    plans
}

/// Flag changes, removals and moves on IMAP, one SELECT per folder that has any; the
/// folders touched (their UIDs and modseq are read back afterwards).
async fn apply_imap_changes(
    conn: &mut ImapConn,
    folders: &Folders,
    plans: &[(String, Decision)],
    summary: &mut AccountSummary,
) -> Result<HashSet<Role>, VoicemailError> {
    let mut touched: HashSet<Role> = HashSet::new();
    for role in Role::ALL {
        let changes = RoleChanges::of(plans, role);
        if changes.is_empty() {
            continue;
        }
        conn.select(&folder_name(folders, role)).await?;
        touched.insert(role);
        conn.set_seen(&changes.seen_on, true).await?;
        conn.set_seen(&changes.seen_off, false).await?;
        for (n, seen) in [
            (changes.seen_on.len(), true),
            (changes.seen_off.len(), false),
        ] {
            summary.seen_changed_on_imap += n as u64;
            metrics::counter!("ucbridge_voicemail_actions_total", "direction" => "cuc_to_imap", "action" => if seen { "read" } else { "unread" }).increment(n as u64);
        }
        conn.remove(&changes.remove).await?;
        summary.removed_from_imap += changes.remove.len() as u64;
        metrics::counter!("ucbridge_voicemail_actions_total", "direction" => "cuc_to_imap", "action" => "delete").increment(changes.remove.len() as u64);
        for (to, uids) in changes.moves {
            conn.move_to(&uids, &folder_name(folders, to)).await?;
            touched.insert(to);
            summary.moved_on_imap += uids.len() as u64;
            metrics::counter!("ucbridge_voicemail_actions_total", "direction" => "cuc_to_imap", "action" => "move").increment(uids.len() as u64);
        }
    }
    Ok(touched)
}

/// What the plans do to the messages in one folder.
#[derive(Default)]
struct RoleChanges {
    seen_on: Vec<u32>,
    seen_off: Vec<u32>,
    remove: Vec<u32>,
    moves: std::collections::BTreeMap<Role, Vec<u32>>,
}

impl RoleChanges {
    fn of(plans: &[(String, Decision)], role: Role) -> RoleChanges {
        let mut out = RoleChanges::default();
        for (_, d) in plans {
            for a in &d.actions {
                match *a {
                    Action::SetImapSeen { uid, seen, .. } if seen_flag_folder(d) == Some(role) => {
                        if seen {
                            out.seen_on.push(uid)
                        } else {
                            out.seen_off.push(uid)
                        }
                    }
                    Action::RemoveFromImap { role: r, uid } if r == role => out.remove.push(uid),
                    Action::MoveOnImap { from, uid, to } if from == role => {
                        out.moves.entry(to).or_default().push(uid)
                    }
                    _ => {}
                }
            }
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.seen_on.is_empty()
            && self.seen_off.is_empty()
            && self.remove.is_empty()
            && self.moves.is_empty()
    }
}

/// Where a seen flag is set: on the copy where it is now, before any move; nowhere when
/// the message has no folder after the sync.
fn seen_flag_folder(d: &Decision) -> Option<Role> {
    let next_role = d
        .next
        .as_ref()
        .and_then(|n| n.imap_role.as_deref())
        .and_then(Role::parse)?;
    let moved_from = d.actions.iter().find_map(|x| match *x {
        Action::MoveOnImap { from, .. } => Some(from),
        _ => None,
    });
    Some(moved_from.unwrap_or(next_role))
}

/// Whether any stored folder is gone (by UIDVALIDITY) or has another HIGHESTMODSEQ than
/// recorded after the last sync; a folder without a recorded modseq counts as changed.
pub(super) fn folders_changed(
    stored: &[ucbridge_store::VoicemailFolder],
    current: &[FolderState],
) -> bool {
    stored.iter().any(
        |f| match current.iter().find(|c| c.uid_validity == f.uid_validity) {
            None => true,
            Some(c) => c.highest_modseq.is_none() || c.highest_modseq != f.highest_modseq,
        },
    )
}
