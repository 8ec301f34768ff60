//! The decision for one message, from what CUC shows now, what IMAP shows now, and what
//! both showed after the last sync. Pure, so the rules are tested on their own.
//!
//! Rules (docs/voicemail.md, "conflict rule"):
//! 1. CUC is the source of messages: a message is added to IMAP only from CUC, and a
//!    message of ours ([`own_copy`]: the header `X-Ucbridge-Cuc-Id` alone proves nothing)
//!    that CUC no longer has is removed from IMAP. Mail added on IMAP is never pushed to
//!    CUC.
//! 2. A delete wins over any other change: deleted on CUC -> removed from IMAP; removed from
//!    IMAP (expunged, moved out of the voicemail folders, `\Deleted`, or moved into the
//!    folder mirroring CUC's `deleted`) -> deleted on CUC.
//! 3. Read status: a change on one side only is copied to the other; when both sides
//!    changed it differently since the last sync, CUC's value wins (CUC drives the phone's
//!    message-waiting lamp). CUC accepts read changes only in its inbox, so an IMAP change
//!    elsewhere is kept on IMAP only.
//! 4. Folder placement follows CUC (e.g. CUC's soft delete moves a message to `deleted`,
//!    and IMAP follows); a message the user moved between voicemail folders on IMAP goes
//!    back, except into the `deleted` mirror, which is rule 2.

use ucbridge_store::VoicemailMessage;

/// CUC's three folders, which are also the roles of the IMAP folders mirroring them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Inbox,
    Sent,
    Deleted,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Inbox, Role::Sent, Role::Deleted];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Inbox => "inbox",
            Role::Sent => "sent",
            Role::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn cuc_folder(self) -> ucbridge_cuc::Folder {
        match self {
            Role::Inbox => ucbridge_cuc::Folder::Inbox,
            Role::Sent => ucbridge_cuc::Folder::Sent,
            Role::Deleted => ucbridge_cuc::Folder::Deleted,
        }
    }
}

/// The message on CUC now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CucView {
    pub folder: Role,
    pub read: bool,
}

/// The message on IMAP now (one copy; extra copies are left alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImapView {
    pub role: Role,
    pub uid: u32,
    pub seen: bool,
    /// `\Deleted` set by the user but not expunged yet: counts as deleted.
    pub deleted: bool,
}

/// One thing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// CUC add -> APPEND into `role`'s folder.
    Append {
        role: Role,
        seen: bool,
    },
    /// CUC delete -> expunge from IMAP.
    RemoveFromImap {
        role: Role,
        uid: u32,
    },
    MoveOnImap {
        from: Role,
        uid: u32,
        to: Role,
    },
    SetImapSeen {
        role: Role,
        uid: u32,
        seen: bool,
    },
    /// IMAP read change -> CUC.
    SetCucRead {
        read: bool,
    },
    /// IMAP delete -> CUC.
    DeleteOnCuc,
}

/// What to do and the row to keep once it is done (`None` = forget the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub next: Option<VoicemailMessage>,
}

fn row(
    id: &str,
    cuc: CucView,
    imap_role: Option<Role>,
    uid: Option<u32>,
    seen: bool,
) -> VoicemailMessage {
    VoicemailMessage {
        cuc_message_id: id.to_owned(),
        cuc_folder: cuc.folder.as_str().to_owned(),
        cuc_read: cuc.read,
        imap_role: imap_role.map(|r| r.as_str().to_owned()),
        imap_uid_validity: None,
        imap_uid: uid,
        imap_seen: seen,
    }
}

/// Which IMAP copy carrying `X-Ucbridge-Cuc-Id: id` is ucbridge's own, if any; the
/// others are the user's mail and are left alone whatever the header says (anyone can
/// file a message with any header).
///
/// `copies` are in scan order (folder role, then UID); `known` is this account's row for
/// the id; `on_cuc` says whether this account's CUC mailbox lists the id now.
/// 1. The copy at the recorded folder and UID is the one ucbridge appended (or moved).
/// 2. Otherwise a copy is adopted only when the account's CUC mailbox holds the id: an
///    APPEND whose row a crash lost, or a message the user moved between the voicemail
///    folders. An id unknown to the account, or another user's, is never ucbridge's.
pub fn own_copy(
    copies: &[ImapView],
    known: Option<&VoicemailMessage>,
    on_cuc: bool,
) -> Option<ImapView> {
    let recorded = known.and_then(|k| Some((Role::parse(k.imap_role.as_deref()?)?, k.imap_uid?)));
    if let Some((role, uid)) = recorded {
        if let Some(c) = copies.iter().find(|c| c.role == role && c.uid == uid) {
            return Some(*c);
        }
    }
    if on_cuc {
        return copies.first().copied();
    }
    None
}

/// Decide for one message id.
pub fn decide(
    id: &str,
    cuc: Option<CucView>,
    imap: Option<ImapView>,
    known: Option<&VoicemailMessage>,
) -> Decision {
    let Some(c) = cuc else {
        // Rule 1/2: gone from CUC.
        return Decision {
            actions: imap
                .map(|i| {
                    vec![Action::RemoveFromImap {
                        role: i.role,
                        uid: i.uid,
                    }]
                })
                .unwrap_or_default(),
            next: None,
        };
    };
    if deleted_on_imap(c, imap, known) {
        return delete_on_cuc(id, c, imap);
    }
    let Some(i) = imap else {
        // Rule 1: new on CUC (or never made it to IMAP) -> add.
        return Decision {
            actions: vec![Action::Append {
                role: c.folder,
                seen: c.read,
            }],
            next: Some(row(id, c, Some(c.folder), None, c.read)),
        };
    };
    let mut actions = Vec::new();
    // Rule 4: placement follows CUC.
    if i.role != c.folder {
        actions.push(Action::MoveOnImap {
            from: i.role,
            uid: i.uid,
            to: c.folder,
        });
    }
    // Rule 3: read status.
    let (cuc_read, imap_seen) = read_status(c, i, known);
    if cuc_read != c.read {
        actions.push(Action::SetCucRead { read: cuc_read });
    }
    if imap_seen != i.seen {
        // After a move the flag is set on the moved copy (the engine re-reads UIDs).
        actions.push(Action::SetImapSeen {
            role: c.folder,
            uid: i.uid,
            seen: imap_seen,
        });
    }
    let moved = i.role != c.folder;
    Decision {
        actions,
        next: Some(row(
            id,
            CucView {
                folder: c.folder,
                read: cuc_read,
            },
            Some(c.folder),
            (!moved).then_some(i.uid),
            imap_seen,
        )),
    }
}

/// Whether the user removed the message on IMAP: flagged `\Deleted`, moved into the
/// deleted mirror while CUC still has it elsewhere, or gone after it was there.
fn deleted_on_imap(c: CucView, imap: Option<ImapView>, known: Option<&VoicemailMessage>) -> bool {
    let was_on_imap = known.is_some_and(|k| k.imap_role.is_some());
    match imap {
        None => was_on_imap,
        Some(i) => {
            i.deleted
                || (i.role == Role::Deleted
                    && c.folder != Role::Deleted
                    && known.is_some_and(|k| {
                        k.imap_role.as_deref() != Some("deleted")
                            && k.cuc_folder == c.folder.as_str()
                    }))
        }
    }
}

/// Rule 2: removed on IMAP -> delete on CUC. A `\Deleted` copy is expunged; a copy the
/// user moved into the deleted mirror stays there. What CUC does next (soft delete into
/// `deleted`, or gone) comes back in the next pass.
fn delete_on_cuc(id: &str, c: CucView, imap: Option<ImapView>) -> Decision {
    let mut actions = vec![Action::DeleteOnCuc];
    let mut imap_role = None;
    let mut uid = None;
    let mut seen = c.read;
    if let Some(i) = imap {
        if i.deleted {
            actions.push(Action::RemoveFromImap {
                role: i.role,
                uid: i.uid,
            });
        } else {
            imap_role = Some(i.role);
            uid = Some(i.uid);
            seen = i.seen;
        }
    }
    Decision {
        actions,
        next: Some(row(id, c, imap_role, uid, seen)),
    }
}

/// Rule 3: the read status each side should have: the side that changed since the last
/// sync wins (CUC when both did).
fn read_status(c: CucView, i: ImapView, known: Option<&VoicemailMessage>) -> (bool, bool) {
    let Some(k) = known else {
        return (c.read, c.read);
    };
    let cuc_changed = k.cuc_read != c.read;
    let imap_changed = k.imap_seen != i.seen;
    match (cuc_changed, imap_changed) {
        // Outside the inbox the two may differ for good (see below): leave them.
        (false, false) => (c.read, i.seen),
        (true, false) => (c.read, c.read),
        (false, true) if c.folder == Role::Inbox => (i.seen, i.seen),
        // CUC refuses read changes outside the inbox: keep IMAP's as it is.
        (false, true) => (c.read, i.seen),
        (true, true) => (c.read, c.read),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0:m";

    fn cuc(folder: Role, read: bool) -> Option<CucView> {
        Some(CucView { folder, read })
    }

    fn imap(role: Role, seen: bool) -> Option<ImapView> {
        Some(ImapView {
            role,
            uid: 7,
            seen,
            deleted: false,
        })
    }

    fn known(folder: Role, read: bool, role: Option<Role>, seen: bool) -> VoicemailMessage {
        row(ID, CucView { folder, read }, role, Some(7), seen)
    }

    #[test]
    fn cuc_add_delete_and_read_go_to_imap() {
        let d = decide(ID, cuc(Role::Inbox, false), None, None);
        assert_eq!(
            d.actions,
            [Action::Append {
                role: Role::Inbox,
                seen: false
            }]
        );
        let k = known(Role::Inbox, false, Some(Role::Inbox), false);
        let d = decide(ID, None, imap(Role::Inbox, false), Some(&k));
        assert_eq!(
            d.actions,
            [Action::RemoveFromImap {
                role: Role::Inbox,
                uid: 7
            }]
        );
        assert_eq!(d.next, None);
        let d = decide(
            ID,
            cuc(Role::Inbox, true),
            imap(Role::Inbox, false),
            Some(&k),
        );
        assert_eq!(
            d.actions,
            [Action::SetImapSeen {
                role: Role::Inbox,
                uid: 7,
                seen: true
            }]
        );
        // CUC's soft delete moved it: IMAP follows.
        let d = decide(
            ID,
            cuc(Role::Deleted, false),
            imap(Role::Inbox, false),
            Some(&k),
        );
        assert_eq!(
            d.actions,
            [Action::MoveOnImap {
                from: Role::Inbox,
                uid: 7,
                to: Role::Deleted
            }]
        );
    }

    #[test]
    fn imap_delete_and_read_go_to_cuc() {
        let k = known(Role::Inbox, false, Some(Role::Inbox), false);
        let d = decide(
            ID,
            cuc(Role::Inbox, false),
            imap(Role::Inbox, true),
            Some(&k),
        );
        assert_eq!(d.actions, [Action::SetCucRead { read: true }]);
        let d = decide(ID, cuc(Role::Inbox, false), None, Some(&k));
        assert_eq!(d.actions, [Action::DeleteOnCuc]);
        let mut flagged = imap(Role::Inbox, false).unwrap();
        flagged.deleted = true;
        let d = decide(ID, cuc(Role::Inbox, false), Some(flagged), Some(&k));
        assert_eq!(
            d.actions,
            [
                Action::DeleteOnCuc,
                Action::RemoveFromImap {
                    role: Role::Inbox,
                    uid: 7
                }
            ]
        );
        // Moved into the deleted mirror on IMAP = delete on CUC; the copy stays.
        let d = decide(
            ID,
            cuc(Role::Inbox, false),
            imap(Role::Deleted, false),
            Some(&k),
        );
        assert_eq!(d.actions, [Action::DeleteOnCuc]);
        assert_eq!(d.next.unwrap().imap_role.as_deref(), Some("deleted"));
    }

    #[test]
    fn conflicts_resolve_deterministically() {
        // Both changed read differently: CUC wins.
        let k = known(Role::Inbox, false, Some(Role::Inbox), true);
        let d = decide(
            ID,
            cuc(Role::Inbox, true),
            imap(Role::Inbox, false),
            Some(&k),
        );
        assert_eq!(
            d.actions,
            [Action::SetImapSeen {
                role: Role::Inbox,
                uid: 7,
                seen: true
            }]
        );
        // Delete wins over a read change on the other side.
        let k = known(Role::Inbox, false, Some(Role::Inbox), false);
        let d = decide(ID, cuc(Role::Inbox, true), None, Some(&k));
        assert_eq!(d.actions, [Action::DeleteOnCuc]);
        let d = decide(ID, None, imap(Role::Inbox, true), Some(&k));
        assert_eq!(
            d.actions,
            [Action::RemoveFromImap {
                role: Role::Inbox,
                uid: 7
            }]
        );
        // A read change on IMAP outside the inbox stays on IMAP.
        let k = known(Role::Sent, false, Some(Role::Sent), false);
        let d = decide(ID, cuc(Role::Sent, false), imap(Role::Sent, true), Some(&k));
        assert!(d.actions.is_empty());
        assert!(d.next.unwrap().imap_seen);
        // Moved by the user to another voicemail folder (not deleted): it goes back.
        let k = known(Role::Sent, false, Some(Role::Sent), false);
        let d = decide(
            ID,
            cuc(Role::Sent, false),
            imap(Role::Inbox, false),
            Some(&k),
        );
        assert_eq!(
            d.actions,
            [Action::MoveOnImap {
                from: Role::Inbox,
                uid: 7,
                to: Role::Sent
            }]
        );
    }

    #[test]
    fn a_found_copy_is_adopted_not_duplicated() {
        // After a crash between APPEND and saving the row: no append, flags from CUC.
        let d = decide(ID, cuc(Role::Inbox, true), imap(Role::Inbox, false), None);
        assert_eq!(
            d.actions,
            [Action::SetImapSeen {
                role: Role::Inbox,
                uid: 7,
                seen: true
            }]
        );
        // Nothing changed anywhere: nothing to do.
        let k = known(Role::Inbox, true, Some(Role::Inbox), true);
        let d = decide(
            ID,
            cuc(Role::Inbox, true),
            imap(Role::Inbox, true),
            Some(&k),
        );
        assert!(d.actions.is_empty());
        assert_eq!(d.next.as_ref(), Some(&k));
    }

    #[test]
    fn only_recorded_or_cuc_listed_copies_are_ours() {
        let at = |role, uid| ImapView {
            role,
            uid,
            seen: false,
            deleted: false,
        };
        let k = known(Role::Inbox, false, Some(Role::Inbox), false);
        // Unknown id, or another user's (not in this account's rows nor its CUC mailbox).
        assert_eq!(own_copy(&[at(Role::Inbox, 3)], None, false), None);
        // Known but gone from CUC: only the copy at the recorded UID is ours to remove.
        assert_eq!(own_copy(&[at(Role::Inbox, 9)], Some(&k), false), None);
        assert_eq!(
            own_copy(&[at(Role::Inbox, 3), at(Role::Inbox, 7)], Some(&k), false),
            Some(at(Role::Inbox, 7))
        );
        // Listed by CUC: the recorded copy first, else the first one (adoption).
        assert_eq!(
            own_copy(&[at(Role::Inbox, 3), at(Role::Inbox, 7)], Some(&k), true),
            Some(at(Role::Inbox, 7))
        );
        assert_eq!(
            own_copy(&[at(Role::Sent, 12), at(Role::Deleted, 2)], Some(&k), true),
            Some(at(Role::Sent, 12))
        );
        assert_eq!(
            own_copy(&[at(Role::Inbox, 3)], None, true),
            Some(at(Role::Inbox, 3))
        );
    }

    proptest::proptest! {
        /// Applying a decision's actions to both sides gives what `next` records, and a
        /// second decision on that state does nothing (sync converges in one pass).
        #[test]
        fn decisions_converge(
            c in proptest::option::of((0usize..3, proptest::bool::ANY)),
            i in proptest::option::of((0usize..3, proptest::bool::ANY)),
            k in proptest::option::of((0usize..3, proptest::bool::ANY, proptest::option::of(0usize..3), proptest::bool::ANY)),
        ) {
            let c = c.map(|(f, r)| CucView { folder: Role::ALL[f], read: r });
            let i = i.map(|(f, s)| ImapView { role: Role::ALL[f], uid: 7, seen: s, deleted: false });
            let k = k.map(|(f, r, role, s)| row(ID, CucView { folder: Role::ALL[f], read: r }, role.map(|x| Role::ALL[x]), Some(7), s));
            let d = decide(ID, c, i, k.as_ref());
            let deletes_on_cuc = d.actions.contains(&Action::DeleteOnCuc);
            if deletes_on_cuc || c.is_none() {
                return Ok(());
            }
            // Simulate the actions.
            let mut c2 = c.unwrap();
            let mut i2 = i;
            for a in &d.actions {
                match *a {
                    Action::Append { role, seen } => i2 = Some(ImapView { role, uid: 8, seen, deleted: false }),
                    Action::RemoveFromImap { .. } => i2 = None,
                    Action::MoveOnImap { to, .. } => if let Some(x) = i2.as_mut() { x.role = to },
                    Action::SetImapSeen { seen, .. } => if let Some(x) = i2.as_mut() { x.seen = seen },
                    Action::SetCucRead { read } => c2.read = read,
                    Action::DeleteOnCuc => {}
                }
            }
            let mut next = d.next.clone().unwrap();
            if let Some(x) = i2 { next.imap_uid = Some(x.uid); }
            let again = decide(ID, Some(c2), i2, Some(&next));
            proptest::prop_assert!(again.actions.is_empty(), "{:?} then {:?}", d.actions, again.actions);
        }
    }
}
