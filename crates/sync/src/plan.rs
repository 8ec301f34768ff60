//! Stage 2 planning: compare the CUCM snapshot with ucbridge's users under the rules and
//! list the changes. Pure: no I/O, so it is tested exhaustively and a dry run shows
//! exactly what an apply would do.
//!
//! Two passes so memory stays flat per user on large directories: [`Planner::add_local`]
//! keeps only what matching needs of each local user (id, username, link; no field sync
//! writes) and [`Planner::match_keys`] sees only each CUCM user's identity (a pkid packed
//! into 16 bytes, see [`Ident`]) and key, and decides every match (so the removals, and
//! the mass-removal guard, are known before anything is applied: [`Planner::orphans`]
//! gives ids, whose records are read only when the removal is made);
//! [`Planner::plan_user`] then takes the full users a page at a time, with the full
//! records of that page's matched local users ([`Planner::local_of`]).
//!
//! Matching, in order of precedence:
//! 1. a local user already linked to the CUCM user (`source = "cucm"`, `source_key` = the
//!    CUCM uuid) keeps its link, even when the key value changed on CUCM (a renamed userid);
//! 2. otherwise the sync key: the CUCM value (lower-cased) against the local value.
//!
//! Usernames are identities: sync sets them when it creates a user and never renames.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use ucbridge_store::local_index::LocalIndex;
use ucbridge_store::{LocalMatch, LocalUser, RunSummary, SourceUser, UserChange, UserRecord};

use crate::rules::{CompiledRules, LocalKey, OrphanAction};

/// A CUCM user (or local user) the plan could not handle; the rest of the plan goes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cucm_userid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_username: Option<String>,
    pub message: String,
}

/// The outcome of planning: counts of everything, the first changes in full.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// The first [`Plan::KEPT_CHANGES`] changes (all of them for small directories); the
    /// audit log has every applied one.
    pub changes: Vec<UserChange>,
    pub problems: Vec<Problem>,
    /// Local users linked to CUCM before this plan (the base of the removal guard).
    pub synced_users: usize,
    pub unchanged: usize,
    counts: RunSummary,
}

impl Plan {
    pub const KEPT_CHANGES: usize = 1000;

    /// An empty plan over `synced_users` linked local users.
    pub fn new(synced_users: usize) -> Plan {
        Plan {
            synced_users,
            ..Plan::default()
        }
    }

    /// Counts of all planned changes (not only the kept ones) and problems.
    pub fn summary(&self) -> RunSummary {
        RunSummary {
            errors: self.problems.len() as u64,
            ..self.counts
        }
    }

    pub fn removals(&self) -> u64 {
        self.counts.disables + self.counts.deletes
    }

    pub fn total_changes(&self) -> u64 {
        let s = self.counts;
        s.creates + s.updates + s.disables + s.deletes
    }

    /// Whether [`Plan::record`] still keeps changes in full (else it only counts them).
    pub fn keeps_more(&self) -> bool {
        self.changes.len() < Self::KEPT_CHANGES
    }

    /// Count a removal that is not kept (so its record need not be read).
    pub fn count_removal(&mut self, orphan: &Orphan) {
        match orphan.delete {
            true => self.counts.deletes += 1,
            false => self.counts.disables += 1,
        }
    }

    /// Count a change, keeping it in `changes` while there is room.
    pub fn record(&mut self, change: &UserChange) {
        match change {
            UserChange::Create { .. } => self.counts.creates += 1,
            UserChange::Update { .. } => self.counts.updates += 1,
            UserChange::Disable { .. } => self.counts.disables += 1,
            UserChange::Delete { .. } => self.counts.deletes += 1,
        }
        if self.changes.len() < Self::KEPT_CHANGES {
            self.changes.push(change.clone());
        }
    }
}

/// What became of one CUCM user. Returned by value once per user and consumed at once,
/// so the size difference between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Unchanged,
    Change(UserChange),
    Problem(Problem),
}

const SOURCE: &str = "cucm";

fn lower(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Where a CUCM user goes, decided in the first pass. Small on purpose (one per snapshot
/// user): a skip's reason lives in [`Planner::skips`].
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Position in [`Planner::locals`].
    Local(u32),
    New,
    /// Index of the reason in [`Planner::skips`].
    Skip(u32),
}

/// What the planner keeps of a local user between the passes: no field sync writes, so
/// a directory's worth fits in memory; pass 2 reads the full records a page at a time.
#[derive(Debug)]
struct Local {
    id: i64,
    username: Box<str>,
    /// The link as the planner compares it (see [`link_of`]).
    link: Option<Ident>,
    /// Index into [`Planner::source_names`].
    source: u16,
    has_source_key: bool,
    disabled: bool,
}

/// One (uuid, lower-cased sync key) of the snapshot, for [`Planner::match_keys`].
pub type MatchKey = (Ident, Option<Box<str>>);

/// A snapshot identity, held compactly: CUCM's pkid as AXL shows it
/// (`{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}`, upper-case hex) as its 16 bytes, anything
/// else as text. Only that exact spelling is packed, so two idents are equal exactly when
/// their strings are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ident {
    Guid([u8; 16]),
    Text(Box<str>),
}

impl Ident {
    pub fn new(s: &str) -> Ident {
        Self::guid(s).map_or_else(|| Ident::Text(s.into()), Ident::Guid)
    }

    fn guid(s: &str) -> Option<[u8; 16]> {
        let b = s.as_bytes();
        if b.len() != 38 || b[0] != b'{' || b[37] != b'}' {
            return None;
        }
        let hex = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 16];
        let mut n = 0;
        let mut i = 1;
        while i < 37 {
            if matches!(i, 9 | 14 | 19 | 24) {
                if b[i] != b'-' {
                    return None;
                }
                i += 1;
                continue;
            }
            out[n] = hex(b[i])? << 4 | hex(b[i + 1])?;
            n += 1;
            i += 2;
        }
        Some(out)
    }
}

/// A synced user no snapshot user matched any more: what the plan does to it. Its full
/// record (the change's before-image) is read when the change is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Orphan {
    pub id: i64,
    pub delete: bool,
    source: u16,
}

impl Orphan {
    /// The change, given the user's record as of the plan's read.
    pub fn change(&self, before: UserRecord) -> UserChange {
        match self.delete {
            true => UserChange::Delete {
                id: self.id,
                before,
            },
            false => UserChange::Disable {
                id: self.id,
                before,
            },
        }
    }
}

/// Plans a sync in two passes (see the module docs).
pub struct Planner<'r> {
    rules: &'r CompiledRules,
    locals: Vec<Local>,
    /// Local users' sources, interned (a handful of distinct names).
    source_names: Vec<Box<str>>,
    index: LocalIndex,
    targets: HashMap<Ident, Target>,
    skips: Vec<String>,
    claimed: Vec<bool>,
    new_usernames: HashSet<String>,
    synced_users: usize,
    /// Several sources ([`Planner::for_sources`]): local users linked to any of these are
    /// synced, and snapshot uuids read `source/identity`. `None`: the CUCM source alone.
    link_sources: Option<HashSet<String>>,
    /// Snapshot uuids whose users are disabled in their directory.
    disabled: HashSet<String>,
}

/// The link of a local user as the planner sees it: the CUCM uuid alone, or
/// `source/identity` when several sources are synced.
fn link_of(link_sources: &Option<HashSet<String>>, l: &LocalMatch) -> Option<Ident> {
    let key = l.source_key.as_deref()?;
    match link_sources {
        None => (l.source == SOURCE).then(|| Ident::new(key)),
        Some(set) => set
            .contains(&l.source)
            .then(|| Ident::new(&format!("{}/{key}", l.source))),
    }
}

impl<'r> Planner<'r> {
    /// A planner with no local users yet; add them with [`Planner::add_local`].
    pub fn new(rules: &'r CompiledRules) -> Self {
        Planner {
            rules,
            locals: Vec::new(),
            source_names: Vec::new(),
            index: LocalIndex::empty(rules.key.local),
            targets: HashMap::new(),
            skips: Vec::new(),
            claimed: Vec::new(),
            new_usernames: HashSet::new(),
            synced_users: 0,
            link_sources: None,
            disabled: HashSet::new(),
        }
    }

    /// A planner over several sources: snapshot users carry `source/identity` uuids, local
    /// users linked to any of `sources` are synced, and `disabled` uuids become disabled
    /// users.
    pub fn for_sources(
        rules: &'r CompiledRules,
        sources: &[String],
        disabled: HashSet<String>,
    ) -> Self {
        let mut planner = Planner::new(rules);
        planner.link_sources = Some(sources.iter().cloned().collect());
        planner.disabled = disabled;
        planner
    }

    /// The snapshot uuids whose users are disabled in their directory.
    pub fn set_disabled(&mut self, disabled: HashSet<String>) {
        self.disabled = disabled;
    }

    /// Take in one local user (pass 1, before [`Planner::match_keys`]).
    pub fn add_local(&mut self, l: &LocalMatch) {
        let synced = match &self.link_sources {
            None => l.source == SOURCE,
            Some(set) => set.contains(&l.source) && l.source_key.is_some(),
        };
        self.synced_users += usize::from(synced);
        let pos = self.locals.len();
        self.index
            .insert(pos, &l.username, l.email.as_deref(), &l.aliases);
        let source = match self.source_names.iter().position(|s| **s == *l.source) {
            Some(i) => i,
            None => {
                self.source_names.push(l.source.as_str().into());
                self.source_names.len() - 1
            }
        };
        self.locals.push(Local {
            id: l.id,
            username: l.username.as_str().into(),
            link: link_of(&self.link_sources, l),
            source: u16::try_from(source).unwrap_or(u16::MAX),
            has_source_key: l.source_key.is_some(),
            disabled: l.disabled,
        });
        self.claimed.push(false);
    }

    /// Skip a snapshot user after matching (a conflict found outside the planner); a local
    /// user it matched stays claimed, so it is not taken for an orphan.
    pub fn skip(&mut self, uuid: &str, why: String) {
        if let Some(t) = self.targets.get_mut(&Ident::new(uuid)) {
            self.skips.push(why);
            *t = Target::Skip(self.skips.len() as u32 - 1);
        }
    }

    /// Pass 1: decide every match from `(uuid, sync key)` of all CUCM users. The uuids
    /// move into the planner (no second copy of them is made).
    pub fn match_keys(&mut self, keys: Vec<MatchKey>) {
        let decided = self.decide(&keys);
        let mut targets = HashMap::with_capacity(keys.len());
        for ((uuid, _), target) in keys.into_iter().zip(decided) {
            targets.insert(uuid, target);
        }
        self.targets = targets;
    }

    /// Each snapshot user's target, in the order of `keys` (which decides who claims a
    /// local user first).
    fn decide(&mut self, keys: &[MatchKey]) -> Vec<Target> {
        let linked: HashMap<&Ident, usize> = self
            .locals
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.link.as_ref().map(|k| (k, i)))
            .collect();
        let in_snapshot: HashSet<&Ident> = keys.iter().map(|(u, _)| u).collect();
        // Keys seen more than once in the source cannot identify anyone.
        let mut key_count: HashMap<&str, u32> = HashMap::new();
        for k in keys.iter().filter_map(|(_, k)| k.as_deref()) {
            *key_count.entry(k).or_default() += 1;
        }
        let mut targets = Vec::with_capacity(keys.len());
        let skips = &mut self.skips;
        let mut skip = |why: String| {
            skips.push(why);
            Target::Skip(skips.len() as u32 - 1)
        };
        for (uuid, key) in keys {
            let target = if let Some(&i) = linked.get(uuid) {
                Target::Local(i as u32)
            } else {
                match key.as_deref() {
                    None => skip("empty sync key; user skipped".into()),
                    Some(key) if key_count.get(key).copied().unwrap_or(0) > 1 => skip(format!(
                        "sync key {key:?} is used by more than one CUCM user; user skipped"
                    )),
                    Some(key) => {
                        // Users linked to another CUCM user that still exists are not candidates.
                        let candidates: Vec<usize> = self
                            .index
                            .lookup(self.rules.key.local, key)
                            .iter()
                            .copied()
                            .filter(|&i| {
                                !self.locals[i]
                                    .link
                                    .as_ref()
                                    .is_some_and(|k| k != uuid && in_snapshot.contains(k))
                            })
                            .collect();
                        match candidates.as_slice() {
                            [] => Target::New,
                            [one] => Target::Local(*one as u32),
                            many => {
                                let names: Vec<&str> =
                                    many.iter().map(|&i| &*self.locals[i].username).collect();
                                skip(format!(
                                    "sync key {key:?} matches {} local users ({}); user skipped",
                                    many.len(),
                                    names.join(", ")
                                ))
                            }
                        }
                    }
                }
            };
            let target = match target {
                Target::Local(i) if self.claimed[i as usize] => skip(format!(
                    "local user {} is already matched by another CUCM user; user skipped",
                    self.locals[i as usize].username
                )),
                Target::Local(i) => {
                    self.claimed[i as usize] = true;
                    Target::Local(i)
                }
                other => other,
            };
            targets.push(target);
        }
        targets
    }

    /// The removals the plan will make: synced users no CUCM user matched. Known after
    /// pass 1, before anything is applied.
    pub fn orphans(&self) -> Vec<Orphan> {
        let cucm = self.source_names.iter().position(|s| &**s == SOURCE);
        let mut out = Vec::new();
        for (i, l) in self.locals.iter().enumerate() {
            let orphaned = !self.claimed[i]
                && match &l.link {
                    Some(k) => !self.targets.contains_key(k),
                    None => self.link_sources.is_none() && cucm == Some(l.source as usize),
                };
            if !orphaned {
                continue;
            }
            let delete = match self.rules.orphans {
                OrphanAction::Keep => continue,
                OrphanAction::Disable if l.disabled => continue,
                OrphanAction::Disable => false,
                OrphanAction::Delete => true,
            };
            out.push(Orphan {
                id: l.id,
                delete,
                source: l.source,
            });
        }
        out
    }

    /// The source (`users.source`) of an orphan.
    pub fn source_of(&self, orphan: &Orphan) -> &str {
        self.source_names
            .get(orphan.source as usize)
            .map_or("", |s| &**s)
    }

    /// Local users linked to `source` (with a source key) before this plan.
    pub fn linked_to(&self, source: &str) -> u64 {
        let Some(s) = self.source_names.iter().position(|n| &**n == source) else {
            return 0;
        };
        self.locals
            .iter()
            .filter(|l| l.source as usize == s && l.has_source_key)
            .count() as u64
    }

    pub fn synced_users(&self) -> usize {
        self.synced_users
    }

    /// The id of the local user a snapshot user was matched to, if any: pass 2 reads the
    /// full records of a page's matches with it.
    pub fn local_of(&self, uuid: &str) -> Option<i64> {
        match self.targets.get(&Ident::new(uuid))? {
            Target::Local(i) => Some(self.locals[*i as usize].id),
            _ => None,
        }
    }

    /// Pass 2: the change (if any) for one CUCM user; `records` holds (at least) the full
    /// record of its match, by id ([`Planner::local_of`]).
    pub fn plan_user(&mut self, u: &SourceUser, records: &HashMap<i64, UserRecord>) -> Decision {
        let problem = |message: String| {
            Decision::Problem(Problem {
                cucm_userid: Some(u.userid.clone()),
                local_username: None,
                message,
            })
        };
        match self.targets.get(&Ident::new(&u.uuid)).copied() {
            None => problem(
                "the user appeared while the sync was being planned; it is synced next time".into(),
            ),
            Some(Target::Skip(why)) => problem(self.skips[why as usize].clone()),
            Some(Target::Local(i)) => {
                let local = &self.locals[i as usize];
                let Some(record) = records.get(&local.id) else {
                    return problem(format!(
                        "local user {} disappeared while the sync was being planned; it is synced next time",
                        local.username
                    ));
                };
                let after = self.desired(u, record.clone());
                if after == *record {
                    Decision::Unchanged
                } else {
                    Decision::Change(UserChange::Update {
                        id: local.id,
                        before: record.clone(),
                        after,
                    })
                }
            }
            Some(Target::New) => {
                let Some(username) = self.rules.username(u) else {
                    return problem("the username rule gives no value; user skipped".into());
                };
                let taken = !self
                    .index
                    .lookup(LocalKey::Username, &lower(&username))
                    .is_empty();
                if taken || !self.new_usernames.insert(lower(&username)) {
                    return problem(format!(
                        "username {username:?} is already taken by a user the sync key does not match; user skipped"
                    ));
                }
                let base = UserRecord {
                    username,
                    ..UserRecord::default()
                };
                Decision::Change(UserChange::Create {
                    after: self.desired(u, base),
                })
            }
        }
    }
}

impl Planner<'_> {
    /// [`desired`], with the link split into source and identity when several sources
    /// are synced, and the directory's disabled flag.
    fn desired(&self, u: &SourceUser, record: UserRecord) -> UserRecord {
        let mut after = desired(self.rules, u, record);
        if self.link_sources.is_some() {
            if let Some((source, key)) = u.uuid.split_once('/') {
                after.source = source.to_owned();
                after.source_key = Some(key.to_owned());
            }
            after.disabled = self.disabled.contains(&u.uuid);
        }
        after
    }
}

/// Plan in memory in one go (both passes): for tests and small directories.
pub fn plan(rules: &CompiledRules, snapshot: &[SourceUser], locals: &[LocalUser]) -> Plan {
    let mut planner = Planner::new(rules);
    for l in locals {
        planner.add_local(&LocalMatch::from(l));
    }
    let keys: Vec<MatchKey> = snapshot
        .iter()
        .map(|u| {
            let key = rules.key.cucm_value(u).map(String::into_boxed_str);
            (Ident::new(&u.uuid), key)
        })
        .collect();
    planner.match_keys(keys);
    let records: HashMap<i64, UserRecord> =
        locals.iter().map(|l| (l.id, l.record.clone())).collect();
    let mut plan = Plan::new(planner.synced_users());
    for u in snapshot {
        match planner.plan_user(u, &records) {
            Decision::Unchanged => plan.unchanged += 1,
            Decision::Change(c) => plan.record(&c),
            Decision::Problem(p) => plan.problems.push(p),
        }
    }
    for o in planner.orphans() {
        if let Some(before) = records.get(&o.id) {
            plan.record(&o.change(before.clone()));
        }
    }
    plan
}

/// `record` with the managed fields set from `u`, linked to it and enabled.
fn desired(rules: &CompiledRules, u: &SourceUser, mut record: UserRecord) -> UserRecord {
    for (field, value) in rules.fields(u) {
        record.set(field, value);
    }
    if let Some(aliases) = rules.aliases(u) {
        record.aliases = aliases;
    }
    record.source = SOURCE.into();
    record.source_key = Some(u.uuid.clone());
    record.disabled = false;
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{CucmKey, SyncKey, SyncRules};
    use ucbridge_store::UserField;

    fn src(n: u32, userid: &str) -> SourceUser {
        SourceUser {
            uuid: format!("{{U{n}}}"),
            userid: userid.into(),
            first_name: Some("F".into()),
            last_name: Some(format!("L{n}")),
            mailid: Some(format!("{userid}@example.com")),
            primary_extension: Some(format!("{}", 1000 + n)),
            ..SourceUser::default()
        }
    }

    fn local(id: i64, username: &str) -> LocalUser {
        LocalUser {
            id,
            record: UserRecord {
                username: username.into(),
                source: "local".into(),
                ..UserRecord::default()
            },
            has_password: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn apply(locals: &mut Vec<LocalUser>, plan: &Plan) {
        let mut next = locals.iter().map(|l| l.id).max().unwrap_or(0) + 1;
        for c in &plan.changes {
            match c {
                UserChange::Create { after } => {
                    let mut l = local(next, &after.username);
                    l.record = after.clone();
                    locals.push(l);
                    next += 1;
                }
                UserChange::Update { id, after, .. } => {
                    locals.iter_mut().find(|l| l.id == *id).unwrap().record = after.clone();
                }
                UserChange::Disable { id, .. } => {
                    locals
                        .iter_mut()
                        .find(|l| l.id == *id)
                        .unwrap()
                        .record
                        .disabled = true;
                }
                UserChange::Delete { id, .. } => locals.retain(|l| l.id != *id),
            }
        }
    }

    #[test]
    fn creates_links_updates_and_converges() {
        let rules = SyncRules::default().compile().unwrap();
        let snapshot = vec![src(1, "alice"), src(2, "bob")];
        let mut locals = vec![local(1, "Bob")];
        let p = plan(&rules, &snapshot, &locals);
        assert_eq!(p.summary().creates, 1);
        assert_eq!(p.summary().updates, 1, "local Bob is claimed by the key");
        apply(&mut locals, &p);
        let bob = locals.iter().find(|l| l.record.username == "Bob").unwrap();
        assert_eq!(bob.record.source_key.as_deref(), Some("{U2}"));
        assert_eq!(bob.record.get(UserField::Extension), Some("1002"));
        // Second run: nothing to do.
        let p = plan(&rules, &snapshot, &locals);
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        assert_eq!(p.unchanged, 2);
    }

    #[test]
    fn a_renamed_userid_keeps_its_link_and_orphans_are_disabled() {
        let rules = SyncRules::default().compile().unwrap();
        let mut locals = Vec::new();
        let p = plan(&rules, &[src(1, "alice"), src(2, "bob")], &locals);
        apply(&mut locals, &p);
        let renamed = vec![src(1, "alice.new")];
        let p = plan(&rules, &renamed, &locals);
        let s = p.summary();
        assert_eq!(
            (s.creates, s.updates, s.disables),
            (0, 1, 1),
            "{:?}",
            p.changes
        );
        apply(&mut locals, &p);
        let alice = locals
            .iter()
            .find(|l| l.record.source_key.as_deref() == Some("{U1}"))
            .unwrap();
        assert_eq!(
            alice.record.username, "alice",
            "usernames are never renamed"
        );
        assert_eq!(alice.record.email.as_deref(), Some("alice.new@example.com"));
        // Bob comes back: re-enabled.
        let p = plan(&rules, &[src(1, "alice.new"), src(2, "bob")], &locals);
        assert!(matches!(&p.changes[..], [UserChange::Update { after, .. }] if !after.disabled));
    }

    #[test]
    fn duplicate_and_empty_keys_are_reported_and_the_rest_continues() {
        let rules = SyncRules {
            key: SyncKey {
                cucm: CucmKey::Mailid,
                local: LocalKey::AnyEmail,
            },
            ..SyncRules::default()
        }
        .compile()
        .unwrap();
        let mut a = src(1, "a");
        let mut b = src(2, "b");
        a.mailid = Some("shared@example.com".into());
        b.mailid = Some("Shared@example.com".into());
        let mut c = src(3, "c");
        c.mailid = None;
        let d = src(4, "d");
        let p = plan(&rules, &[a, b, c, d], &[]);
        assert_eq!(p.problems.len(), 3, "{:?}", p.problems);
        assert!(p.problems[0].message.contains("more than one CUCM user"));
        assert!(p.problems[2].message.contains("empty sync key"));
        assert_eq!(p.summary().creates, 1);
    }

    #[test]
    fn ambiguous_local_matches_are_reported() {
        let rules = SyncRules {
            key: SyncKey {
                cucm: CucmKey::Extension,
                local: LocalKey::AnyAlias,
            },
            ..SyncRules::default()
        }
        .compile()
        .unwrap();
        let mut l1 = local(1, "x");
        l1.record.aliases = vec!["1001".into()];
        let mut l2 = local(2, "y");
        l2.record.aliases = vec!["1001".into()];
        let p = plan(&rules, &[src(1, "alice")], &[l1, l2]);
        assert_eq!(p.problems.len(), 1);
        assert!(p.problems[0]
            .message
            .contains("matches 2 local users (x, y)"));
        assert!(p.changes.is_empty());
    }

    #[test]
    fn username_collisions_are_not_overwritten() {
        let rules = SyncRules {
            key: SyncKey {
                cucm: CucmKey::Mailid,
                local: LocalKey::AnyEmail,
            },
            ..SyncRules::default()
        }
        .compile()
        .unwrap();
        let p = plan(&rules, &[src(1, "alice")], &[local(1, "ALICE")]);
        assert!(p.changes.is_empty());
        assert!(p.problems[0].message.contains("already taken"));
    }

    #[test]
    fn only_canonical_pkids_are_packed() {
        let pkid = "{0A1B2C3D-4E5F-6789-ABCD-EF0123456789}";
        assert!(matches!(Ident::new(pkid), Ident::Guid(_)));
        assert_ne!(
            Ident::new(pkid),
            Ident::new("{0A1B2C3D-4E5F-6789-ABCD-EF012345678A}")
        );
        // Another spelling of the same GUID is another string, so another identity.
        let lower = "{0a1b2c3d-4e5f-6789-abcd-ef0123456789}";
        assert!(matches!(Ident::new(lower), Ident::Text(_)));
        assert_ne!(Ident::new(pkid), Ident::new(lower));
        for other in [
            "ad/{0A1B2C3D-4E5F-6789-ABCD-EF0123456789}",
            "{U1}",
            "",
            "{0A1B2C3D+4E5F-6789-ABCD-EF0123456789}",
        ] {
            assert_eq!(Ident::new(other), Ident::Text(other.into()));
        }
    }

    #[test]
    fn orphan_policies() {
        let mut locals = Vec::new();
        let base = SyncRules::default().compile().unwrap();
        let p = plan(&base, &[src(1, "a"), src(2, "b")], &locals);
        apply(&mut locals, &p);
        for (orphans, expect) in [
            (OrphanAction::Keep, 0),
            (OrphanAction::Delete, 1),
            (OrphanAction::Disable, 1),
        ] {
            let rules = SyncRules {
                orphans,
                ..SyncRules::default()
            }
            .compile()
            .unwrap();
            let p = plan(&rules, &[src(1, "a")], &locals);
            assert_eq!(p.removals(), expect, "{orphans:?}");
        }
        // A manually created local user is never an orphan.
        locals.push(local(99, "manual"));
        let p = plan(&base, &[], &locals);
        assert_eq!(p.removals(), 2);
        assert_eq!(p.synced_users, 2);
    }
}
