//! The IMAP side of one account's sync: the three voicemail folders found by identity
//! (followed through renames, recreated when deleted), what they hold, appends of new
//! voicemail, the read-back after writing, and the rows and folders recorded at the end.

use std::collections::{BTreeMap, HashMap, HashSet};

use ucbridge_cuc::{MailboxRef, Message};
use ucbridge_store::{VoicemailFolder, VoicemailMessage};

use super::{count, error_chain, now_ms, AccountSummary, OnCuc, VoicemailEngine};
use crate::imap::{internal_date, FolderState, ImapConn, ImapMessage};
use crate::matching::MatchedAccount;
use crate::mime;
use crate::reconcile::{own_copy, Action, Decision, ImapView, Role};
use crate::VoicemailError;

/// Each role's folder: the record to save and its state on the server now.
pub(super) type Folders = BTreeMap<Role, (VoicemailFolder, FolderState)>;

/// What [`VoicemailEngine::read_imap`] found: ucbridge's copy of each message, further
/// copies of messages CUC lists, and the HIGHESTMODSEQ each folder was read at.
type ImapRead = (
    HashMap<String, ImapView>,
    HashMap<String, Vec<ImapView>>,
    HashMap<Role, Option<u64>>,
);

/// The appends of one sync that did not happen: the message that failed and the error
/// that stopped the rest (the sync records what did happen, then reports it).
#[derive(Default)]
pub(super) struct Appended {
    pub(super) failed: HashSet<String>,
    pub(super) error: Option<VoicemailError>,
}

/// What the writes of one sync left on IMAP, for recording it.
pub(super) struct Written<'a> {
    pub(super) touched: &'a HashSet<Role>,
    pub(super) final_view: &'a HashMap<String, Vec<ImapView>>,
    pub(super) appended: &'a Appended,
}

/// The current name of `role`'s folder.
pub(super) fn folder_name(folders: &Folders, role: Role) -> String {
    folders
        .get(&role)
        .map(|(_, s)| s.name.clone())
        .unwrap_or_default()
}

impl VoicemailEngine {
    /// Find each role's folder by identity (creating it when there is none).
    pub(super) async fn resolve_folders(
        &self,
        oid: &str,
        conn: &mut ImapConn,
        known: &mut HashMap<String, VoicemailMessage>,
    ) -> Result<Folders, VoicemailError> {
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
                        forget_copies_in(known, role);
                    }
                    adopt_or_create(conn, &mut current, &out, &configured).await?
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

    /// What IMAP shows in the account's voicemail folders, one view per message that is
    /// ucbridge's own ([`own_copy`]): from a fetch, or from the mapping when HIGHESTMODSEQ
    /// says the folder did not change since ucbridge last looked (RFC 7162 §3.1.2). Also
    /// the HIGHESTMODSEQ each folder was read at.
    pub(super) async fn read_imap(
        &self,
        conn: &mut ImapConn,
        folders: &Folders,
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

    /// New voicemail appended (audio from CUC, MIME, APPEND), in plan order; the first
    /// failure stops the rest, which the next sync appends.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn append_new(
        &self,
        account: &MatchedAccount,
        conn: &mut ImapConn,
        mailbox: &MailboxRef,
        folders: &Folders,
        plans: &[(String, Decision)],
        on_cuc: &OnCuc,
        previous_success: Option<i64>,
        summary: &mut AccountSummary,
        touched: &mut HashSet<Role>,
    ) -> Appended {
        let to = account.email.as_deref().map(|e| {
            (
                account
                    .cuc_display_name
                    .as_deref()
                    .unwrap_or(account.local_username.as_str()),
                e,
            )
        });
        let mail = MailFor {
            to,
            format: self
                .inner
                .options
                .attachment_format_for(&account.local_username),
        };
        let mut out = Appended::default();
        for (id, d) in plans {
            for a in &d.actions {
                let Action::Append { role, seen } = *a else {
                    continue;
                };
                let Some((_, m)) = on_cuc.get(id) else {
                    continue;
                };
                let folder = folder_name(folders, role);
                match self
                    .append_one(conn, mailbox, id, m, &mail, &folder, seen)
                    .await
                {
                    Ok(problem) => {
                        if let Some(problem) = problem {
                            summary.audio_problems += 1;
                            summary.last_audio_problem = Some(format!("{problem} (message {id})"));
                        }
                        touched.insert(role);
                        summary.appended += 1;
                        count("cuc_to_imap", "add");
                        record_lag(m, previous_success);
                    }
                    Err(e) => {
                        out.failed.insert(id.clone());
                        out.error = Some(e);
                        return out;
                    }
                }
            }
        }
        out
    }

    /// One voicemail onto IMAP; the audio problem (kept as WAV, logged by mime) if any.
    #[allow(clippy::too_many_arguments)]
    async fn append_one(
        &self,
        conn: &mut ImapConn,
        mailbox: &MailboxRef,
        id: &str,
        m: &Message,
        mail: &MailFor<'_>,
        folder: &str,
        seen: bool,
    ) -> Result<Option<String>, VoicemailError> {
        let inner = &self.inner;
        let mut audio = Vec::with_capacity(m.size_bytes.unwrap_or(0).min(16 << 20) as usize);
        let info = inner.cuc.download_audio(mailbox, id, &mut audio).await?;
        let (raw, problem) = mime::build_message(
            m,
            audio,
            info.content_type.as_deref(),
            mail.to,
            &inner.options.sender_domain,
            mail.format,
        )
        .await?;
        let date = m.arrival_time_ms.and_then(internal_date);
        conn.append(folder, seen, date.as_deref(), &raw).await?;
        Ok(problem)
    }

    /// The message rows and folders as this sync leaves them.
    pub(super) async fn save_sync(
        &self,
        oid: &str,
        plans: Vec<(String, Decision)>,
        known: &HashMap<String, VoicemailMessage>,
        folders: Folders,
        written: Written<'_>,
        mut modseq_seen: HashMap<Role, Option<u64>>,
    ) -> Result<(), VoicemailError> {
        let (upserts, removals, changed_meanwhile) = rows_to_save(plans, known, &folders, &written);
        // No modseq for such a folder: the next poll sees a change and the next sync scans.
        for role in changed_meanwhile {
            modseq_seen.insert(role, None);
        }
        let store = &self.inner.store;
        store
            .apply_voicemail_messages(oid, &upserts, &removals)
            .await?;
        for (role, (mut folder, state)) in folders {
            folder.imap_name = state.name;
            folder.highest_modseq = modseq_seen.get(&role).copied().flatten();
            store.save_voicemail_folder(&folder).await?;
        }
        Ok(())
    }
}

/// The copies recorded in `role`'s folder are gone with it.
fn forget_copies_in(known: &mut HashMap<String, VoicemailMessage>, role: Role) {
    for m in known.values_mut() {
        if m.imap_role.as_deref() == Some(role.as_str()) {
            m.imap_role = None;
            m.imap_uid = None;
        }
    }
}

/// A role's folder without a known identity: the one named `configured` when no other
/// role uses it (made by an earlier run that stopped before recording it, or by the user),
/// else a new one.
async fn adopt_or_create(
    conn: &mut ImapConn,
    current: &mut Vec<FolderState>,
    taken: &Folders,
    configured: &str,
) -> Result<FolderState, VoicemailError> {
    let existing = current.iter().find(|c| c.name == configured).cloned();
    if let Some(state) = existing {
        if !taken
            .values()
            .any(|(_, s)| s.uid_validity == state.uid_validity)
        {
            return Ok(state);
        }
    }
    // A refused CREATE is fine when the folder exists now: another session (the user's
    // mail client, or Dovecot creating the user's mail root on first access) made it
    // between LIST and CREATE, and the server answered NO [ALREADYEXISTS] (RFC 5530).
    let created = conn.create(configured).await;
    let state = match (conn.status(configured).await, created) {
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
    Ok(state)
}

/// Only messages that arrived since the last good sync count as lag: a first sync's
/// backlog is not.
fn record_lag(m: &Message, previous_success: Option<i64>) {
    if let (Some(arrival), Some(since)) = (m.arrival_time_ms, previous_success) {
        if arrival >= since - 60_000 {
            let lag = (now_ms() - arrival).max(0) as f64 / 1000.0;
            metrics::histogram!("ucbridge_voicemail_lag_seconds").record(lag);
        }
    }
}

/// What IMAP holds now in the folders this sync wrote to (UIDs of appended and moved
/// copies, flags), noting HIGHESTMODSEQ before the read.
pub(super) async fn read_back(
    conn: &mut ImapConn,
    folders: &Folders,
    touched: &HashSet<Role>,
    modseq_seen: &mut HashMap<Role, Option<u64>>,
) -> Result<HashMap<String, Vec<ImapView>>, VoicemailError> {
    let mut final_view: HashMap<String, Vec<ImapView>> = HashMap::new();
    for role in touched {
        let name = folder_name(folders, *role);
        let highest = conn.status(&name).await?.and_then(|s| s.highest_modseq);
        conn.select(&name).await?;
        for m in conn.scan().await? {
            add_copy(&mut final_view, *role, &m);
        }
        modseq_seen.insert(*role, highest);
    }
    Ok(final_view)
}

/// The rows to upsert and remove, and the folders whose seen flags changed between the
/// write and the read-back (the user's change, left for the next pass).
fn rows_to_save(
    plans: Vec<(String, Decision)>,
    known: &HashMap<String, VoicemailMessage>,
    folders: &Folders,
    written: &Written<'_>,
) -> (Vec<VoicemailMessage>, Vec<String>, HashSet<Role>) {
    let mut changed_meanwhile: HashSet<Role> = HashSet::new();
    let mut upserts = Vec::new();
    let mut removals = Vec::new();
    for (id, d) in plans {
        if written.appended.failed.contains(&id) {
            continue;
        }
        let skipped_after_error = written.appended.error.is_some()
            && d.actions.iter().any(|a| matches!(a, Action::Append { .. }))
            && !written.final_view.contains_key(&id);
        if skipped_after_error {
            continue;
        }
        let Some(mut next) = d.next else {
            if known.contains_key(&id) {
                removals.push(id);
            }
            continue;
        };
        let role = next.imap_role.as_deref().and_then(Role::parse);
        if let Some(role) = role.filter(|r| written.touched.contains(r)) {
            match written
                .final_view
                .get(&id)
                .and_then(|copies| written_copy(copies, role, next.imap_uid))
            {
                Some(v) => {
                    next.imap_uid = Some(v.uid);
                    // The flag as written stays the last-seen state. A different one read
                    // back is the user's change since the write: it is left for the next
                    // pass, which must then scan the folder.
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
    (upserts, removals, changed_meanwhile)
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
pub(super) async fn subscribe_folders(conn: &mut ImapConn, folders: &Folders) {
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

/// Who a voicemail mail is addressed to (display name, address) and what it carries.
struct MailFor<'a> {
    to: Option<(&'a str, &'a str)>,
    format: crate::config::AttachmentFormat,
}
