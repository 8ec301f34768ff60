//! Stage 2 planning: compare the CUCM snapshot with ucbridge's users under the rules and
//! list the changes. Pure: no I/O, so it is tested exhaustively and a dry run shows
//! exactly what an apply would do.
//!
//! Two passes so memory stays bounded on large directories: [`Planner::match_keys`] sees
//! only each CUCM user's uuid and key and decides every match (so the removals, and the
//! mass-removal guard, are known before anything is applied); [`Planner::plan_user`] then
//! takes the full users one at a time, as they stream from the database.
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
use ucbridge_store::{LocalUser, RunSummary, SourceUser, UserChange, UserRecord};

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
    pub const KEPT_CHANGES: usize = 10_000;

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

/// Where a CUCM user goes, decided in the first pass.
#[derive(Debug, Clone)]
enum Target {
    Local(usize),
    New,
    Skip(String),
}

/// Plans a sync in two passes (see the module docs).
pub struct Planner<'r> {
    rules: &'r CompiledRules,
    locals: Vec<LocalUser>,
    index: LocalIndex,
    targets: HashMap<String, Target>,
    claimed: HashSet<usize>,
    new_usernames: HashSet<String>,
    synced_users: usize,
    /// Several sources ([`Planner::for_sources`]): local users linked to any of these are
    /// synced, and snapshot uuids read `source/identity`. `None`: the CUCM source alone.
    link_sources: Option<HashSet<String>>,
    /// Snapshot uuids whose users are disabled in their directory.
    disabled: HashSet<String>,
}

/// The link of a local record as the planner sees it: the CUCM uuid alone, or
/// `source/identity` when several sources are synced.
fn link_of<'a>(
    link_sources: &Option<HashSet<String>>,
    r: &'a UserRecord,
) -> Option<std::borrow::Cow<'a, str>> {
    let key = r.source_key.as_deref()?;
    match link_sources {
        None => (r.source == SOURCE).then_some(std::borrow::Cow::Borrowed(key)),
        Some(set) => set
            .contains(&r.source)
            .then(|| std::borrow::Cow::Owned(format!("{}/{key}", r.source))),
    }
}

impl<'r> Planner<'r> {
    pub fn new(rules: &'r CompiledRules, locals: Vec<LocalUser>) -> Self {
        let index = LocalIndex::new(&locals, rules.key.local);
        Planner {
            rules,
            synced_users: locals.iter().filter(|u| u.record.source == SOURCE).count(),
            locals,
            index,
            targets: HashMap::new(),
            claimed: HashSet::new(),
            new_usernames: HashSet::new(),
            link_sources: None,
            disabled: HashSet::new(),
        }
    }

    /// A planner over several sources: snapshot users carry `source/identity` uuids, local
    /// users linked to any of `sources` are synced, and `disabled` uuids become disabled
    /// users.
    pub fn for_sources(
        rules: &'r CompiledRules,
        locals: Vec<LocalUser>,
        sources: &[String],
        disabled: HashSet<String>,
    ) -> Self {
        let mut planner = Planner::new(rules, locals);
        let set: HashSet<String> = sources.iter().cloned().collect();
        planner.synced_users = planner
            .locals
            .iter()
            .filter(|u| set.contains(&u.record.source) && u.record.source_key.is_some())
            .count();
        planner.link_sources = Some(set);
        planner.disabled = disabled;
        planner
    }

    /// Skip a snapshot user after matching (a conflict found outside the planner); a local
    /// user it matched stays claimed, so it is not taken for an orphan.
    pub fn skip(&mut self, uuid: &str, why: String) {
        if let Some(t) = self.targets.get_mut(uuid) {
            *t = Target::Skip(why);
        }
    }

    /// Pass 1: decide every match from `(uuid, sync key)` of all CUCM users.
    pub fn match_keys(&mut self, keys: &[(String, Option<String>)]) {
        let linked: HashMap<std::borrow::Cow<'_, str>, usize> = self
            .locals
            .iter()
            .enumerate()
            .filter_map(|(i, u)| link_of(&self.link_sources, &u.record).map(|k| (k, i)))
            .collect();
        let in_snapshot: HashSet<&str> = keys.iter().map(|(u, _)| u.as_str()).collect();
        // Keys seen more than once in the source cannot identify anyone.
        let mut key_count: HashMap<&str, usize> = HashMap::new();
        for (_, k) in keys {
            if let Some(k) = k {
                *key_count.entry(k.as_str()).or_default() += 1;
            }
        }
        let mut targets = HashMap::with_capacity(keys.len());
        for (uuid, key) in keys {
            let target = if let Some(&i) = linked.get(uuid.as_str()) {
                Target::Local(i)
            } else {
                match key {
                    None => Target::Skip("empty sync key; user skipped".into()),
                    Some(key) if key_count.get(key.as_str()).copied().unwrap_or(0) > 1 => {
                        Target::Skip(format!(
                            "sync key {key:?} is used by more than one CUCM user; user skipped"
                        ))
                    }
                    Some(key) => {
                        // Users linked to another CUCM user that still exists are not candidates.
                        let candidates: Vec<usize> = self
                            .index
                            .lookup(self.rules.key.local, key)
                            .iter()
                            .copied()
                            .filter(|&i| {
                                let r = &self.locals[i].record;
                                !link_of(&self.link_sources, r).is_some_and(|k| {
                                    k.as_ref() != uuid.as_str() && in_snapshot.contains(k.as_ref())
                                })
                            })
                            .collect();
                        match candidates.as_slice() {
                            [] => Target::New,
                            [one] => Target::Local(*one),
                            many => {
                                let names: Vec<&str> = many
                                    .iter()
                                    .map(|&i| self.locals[i].record.username.as_str())
                                    .collect();
                                Target::Skip(format!(
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
                Target::Local(i) if !self.claimed.insert(i) => Target::Skip(format!(
                    "local user {} is already matched by another CUCM user; user skipped",
                    self.locals[i].record.username
                )),
                other => other,
            };
            targets.insert(uuid.clone(), target);
        }
        self.targets = targets;
    }

    /// The removals the plan will make: synced users no CUCM user matched. Known after
    /// pass 1, before anything is applied.
    pub fn orphans(&self) -> Vec<UserChange> {
        let mut out = Vec::new();
        for (i, local) in self.locals.iter().enumerate() {
            let r = &local.record;
            let orphaned = !self.claimed.contains(&i)
                && match link_of(&self.link_sources, r) {
                    Some(k) => !self.targets.contains_key(k.as_ref()),
                    None => self.link_sources.is_none() && r.source == SOURCE,
                };
            if !orphaned {
                continue;
            }
            match self.rules.orphans {
                OrphanAction::Keep => {}
                OrphanAction::Disable if r.disabled => {}
                OrphanAction::Disable => out.push(UserChange::Disable {
                    id: local.id,
                    before: r.clone(),
                }),
                OrphanAction::Delete => out.push(UserChange::Delete {
                    id: local.id,
                    before: r.clone(),
                }),
            }
        }
        out
    }

    pub fn synced_users(&self) -> usize {
        self.synced_users
    }

    /// Pass 2: the change (if any) for one CUCM user.
    pub fn plan_user(&mut self, u: &SourceUser) -> Decision {
        let problem = |message: String| {
            Decision::Problem(Problem {
                cucm_userid: Some(u.userid.clone()),
                local_username: None,
                message,
            })
        };
        match self.targets.get(&u.uuid) {
            None => problem(
                "the user appeared while the sync was being planned; it is synced next time".into(),
            ),
            Some(Target::Skip(why)) => problem(why.clone()),
            Some(Target::Local(i)) => {
                let local = &self.locals[*i];
                let after = self.desired(u, local.record.clone());
                if after == local.record {
                    Decision::Unchanged
                } else {
                    Decision::Change(UserChange::Update {
                        id: local.id,
                        before: local.record.clone(),
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
    let mut planner = Planner::new(rules, locals.to_vec());
    let keys: Vec<(String, Option<String>)> = snapshot
        .iter()
        .map(|u| (u.uuid.clone(), rules.key.cucm_value(u)))
        .collect();
    planner.match_keys(&keys);
    let mut plan = Plan::new(planner.synced_users());
    for u in snapshot {
        match planner.plan_user(u) {
            Decision::Unchanged => plan.unchanged += 1,
            Decision::Change(c) => plan.record(&c),
            Decision::Problem(p) => plan.problems.push(p),
        }
    }
    for c in planner.orphans() {
        plan.record(&c);
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
