//! User sync over several sources (`[directory_sync] sources = ["ad", "cucm"]`).
//!
//! Each source's snapshot is read in the same read transaction. Pass 1 groups the entries
//! of all sources by the sync key: a group is one person, whose primary entry is the one
//! of the first source (by precedence) that has the key; it is matched to local users by
//! the planner as a CUCM user alone would be, with `source/identity` as its link, and a
//! local user linked to any entry of the person is found through the key, so a user
//! missing from one source but present in another is not an orphan. Pass 2 streams each
//! source's users and plans each person once, at its primary entry, with every field taken
//! from the first source (by precedence) that has it and may supply it (`source_fields`).
//!
//! Safety: the run is refused unless every listed source is idle (a failed, refreshing or
//! never-refreshed source would otherwise blank the fields it supplies or remove its
//! users), and the mass-removal guard applies per source: no source may remove more than
//! `max_removal_share` of the users linked to it, or anyone while it is empty. Two `cucm`
//! sources (clusters) with the same key is a conflict: the person is reported and skipped,
//! since a user's device and voicemail live on exactly one cluster.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;
use ucbridge_store::{LocalUser, SnapshotState, SourceKind, SourceUser, UserChange};

use crate::directory::{finish_read, not_ready, Applied, Run, SyncOutcome};
use crate::plan::{Decision, Plan, Planner, Problem};
use crate::SyncError;

/// The snapshot fields a source can supply in a merge (`source_fields`).
pub const MERGED_FIELDS: &[&str] = &[
    "first_name",
    "middle_name",
    "last_name",
    "display_name",
    "mailid",
    "telephone_number",
    "primary_extension",
    "department",
    "manager",
    "title",
    "mobile_number",
    "home_number",
    "pager_number",
    "directory_uri",
    "associated_devices",
];

/// One person: its primary entry and the other sources' entries, in precedence order.
struct Person {
    source: usize,
    uuid: String,
    others: Vec<(usize, String)>,
}

/// Pass 1's result.
struct Grouping {
    persons: Vec<Person>,
    /// (source index, identity) of a primary entry → its person.
    primary_of: HashMap<(usize, String), usize>,
    /// Planner keys: (`source/identity`, sync key) per person.
    keys: Vec<(String, Option<String>)>,
    disabled: HashSet<String>,
    conflicts: Vec<(String, String)>,
    entries_per_source: Vec<u64>,
}

fn link(name: &str, uuid: &str) -> String {
    format!("{name}/{uuid}")
}

/// Run a user sync over `rules.sources` (see the module docs).
pub(crate) async fn run_merged(
    run: Run<'_>,
    mut progress: impl FnMut(u64, u64),
) -> Result<SyncOutcome, SyncError> {
    let store = run.store;
    let sources = run.rules.sources.clone();
    let mut kinds = Vec::with_capacity(sources.len());
    let mut first_state: Option<SnapshotState> = None;
    for name in &sources {
        let state = store.snapshot_state(name).await?;
        let registered = store.directory_source(name).await?;
        let why = match (&registered, not_ready(&state)) {
            (None, _) => Some(format!(
                "source {name} is not configured or was never refreshed"
            )),
            (Some(_), Some(why)) => Some(format!("source {name}: {why}")),
            (Some(_), None) => None,
        };
        if let Some(why) = why {
            return run.refuse(why, Plan::default(), state).await;
        }
        kinds.push(registered.map(|s| s.kind).unwrap_or(SourceKind::Ldap));
        first_state.get_or_insert(state);
    }
    let Some(snapshot) = first_state else {
        return Err(SyncError::NotReady("no sources are listed".into()));
    };
    let snapshot = match run.skip_if_in_sync(snapshot).await? {
        Ok(outcome) => return Ok(outcome),
        Err(snapshot) => snapshot,
    };
    let mut read = store.read_snapshot().await?;
    let start = read.versions().await?;
    let locals = read.local_users().await?;
    let grouping = group(&run, &mut read, &sources, &kinds).await?;
    let per_source_links = links_per_source(&locals, &sources);
    let mut planner = Planner::for_sources(run.rules, locals, &sources, grouping.disabled.clone());
    planner.match_keys(&grouping.keys);
    for (uuid, why) in &grouping.conflicts {
        planner.skip(uuid, why.clone());
    }
    let orphans = planner.orphans();
    let mut plan = Plan::new(planner.synced_users());
    if let Some(message) = removal_refusal(&run, &sources, &grouping, &per_source_links, &orphans) {
        finish_read(read).await;
        for c in &orphans {
            plan.record(c);
        }
        return run.refuse(message, plan, snapshot).await;
    }
    let mut applied = Applied::default();
    let total = grouping.persons.len() as u64;
    let result = plan_and_apply(
        &run,
        &mut read,
        &sources,
        &grouping,
        &mut planner,
        orphans,
        &mut plan,
        &mut applied,
        &mut progress,
    )
    .await;
    finish_read(read).await;
    progress(total, total);
    run.record(result, start, applied, snapshot, plan).await
}

/// Pass 1: read every source's keys and group them into persons.
async fn group(
    run: &Run<'_>,
    read: &mut ucbridge_store::SnapshotRead,
    sources: &[String],
    kinds: &[SourceKind],
) -> Result<Grouping, SyncError> {
    let mut g = Grouping {
        persons: Vec::new(),
        primary_of: HashMap::new(),
        keys: Vec::new(),
        disabled: HashSet::new(),
        conflicts: Vec::new(),
        entries_per_source: vec![0; sources.len()],
    };
    // sync key → the person holding it and the source of its primary entry.
    let mut by_key: HashMap<String, (usize, usize)> = HashMap::new();
    for (s, name) in sources.iter().enumerate() {
        for (u, disabled) in read.source_keys(name).await? {
            g.entries_per_source[s] += 1;
            let key = run.rules.key.cucm_value(&u);
            let joined = key.as_ref().and_then(|k| by_key.get(k)).copied();
            match joined {
                // Another source's entry for a person already seen: it adds fields.
                Some((p, primary_source)) if primary_source != s => {
                    let person = &mut g.persons[p];
                    let clusters =
                        kinds[person.source] == SourceKind::Cucm && kinds[s] == SourceKind::Cucm;
                    if clusters
                        && !person
                            .others
                            .iter()
                            .any(|(o, _)| kinds[*o] == SourceKind::Cucm)
                    {
                        g.conflicts.push((
                            link(&sources[person.source], &person.uuid),
                            format!(
                                "sync key {:?} is in two CUCM clusters ({} and {}); a user belongs to one cluster; user skipped",
                                key.as_deref().unwrap_or_default(),
                                sources[person.source],
                                name
                            ),
                        ));
                    }
                    person.others.push((s, u.uuid));
                }
                // New person (or a duplicate key within one source: the planner reports it).
                _ => {
                    let p = g.persons.len();
                    if let Some(k) = &key {
                        by_key.entry(k.clone()).or_insert((p, s));
                    }
                    let id = link(name, &u.uuid);
                    if disabled {
                        g.disabled.insert(id.clone());
                    }
                    g.keys.push((id, key));
                    g.primary_of.insert((s, u.uuid.clone()), p);
                    g.persons.push(Person {
                        source: s,
                        uuid: u.uuid,
                        others: Vec::new(),
                    });
                }
            }
        }
    }
    Ok(g)
}

/// Local users linked to each source before this run.
fn links_per_source(locals: &[LocalUser], sources: &[String]) -> Vec<u64> {
    sources
        .iter()
        .map(|name| {
            locals
                .iter()
                .filter(|l| &l.record.source == name && l.record.source_key.is_some())
                .count() as u64
        })
        .collect()
}

/// The mass-removal guard, per source: why the removals are refused, unless confirmed.
fn removal_refusal(
    run: &Run<'_>,
    sources: &[String],
    g: &Grouping,
    linked: &[u64],
    orphans: &[UserChange],
) -> Option<String> {
    if orphans.is_empty() || run.options.confirm_removals {
        return None;
    }
    for (s, name) in sources.iter().enumerate() {
        let removals = orphans
            .iter()
            .filter(|c| matches!(c, UserChange::Disable { before, .. } | UserChange::Delete { before, .. } if &before.source == name))
            .count() as u64;
        if removals == 0 {
            continue;
        }
        if g.entries_per_source[s] == 0 {
            return Some(format!(
                "source {name} is empty but {} users are linked to it; refusing to remove them (a partial read?). Re-run with --confirm-removals if it really has no users",
                linked[s]
            ));
        }
        let share = removals as f64 / linked[s].max(1) as f64;
        if share > run.rules.max_removal_share {
            return Some(format!(
                "the plan would disable or delete {removals} of the {} users linked to source {name} ({:.1} %), more than the allowed {:.1} %; check the plan (--dry-run) and re-run with --confirm-removals",
                linked[s],
                share * 100.0,
                run.rules.max_removal_share * 100.0
            ));
        }
    }
    None
}

/// Pass 2: stream each source's users; plan each person at its primary entry.
#[allow(clippy::too_many_arguments)]
async fn plan_and_apply(
    run: &Run<'_>,
    read: &mut ucbridge_store::SnapshotRead,
    sources: &[String],
    g: &Grouping,
    planner: &mut Planner<'_>,
    orphans: Vec<UserChange>,
    plan: &mut Plan,
    applied: &mut Applied,
    progress: &mut impl FnMut(u64, u64),
) -> Result<(), SyncError> {
    let batch = run.options.batch_size.max(1);
    let total = g.persons.len() as u64;
    let mut pending: Vec<UserChange> = Vec::new();
    let mut seen = 0u64;
    for (s, name) in sources.iter().enumerate() {
        let mut users = read.source_users(name);
        while let Some(primary) = users.try_next().await? {
            let Some(&p) = g.primary_of.get(&(s, primary.uuid.clone())) else {
                continue;
            };
            seen += 1;
            let person = merge(run, sources, &g.persons[p], primary).await?;
            match planner.plan_user(&person) {
                Decision::Unchanged => plan.unchanged += 1,
                Decision::Problem(problem) => plan.problems.push(Problem {
                    message: format!("{} (from source {name})", problem.message),
                    ..problem
                }),
                Decision::Change(c) => {
                    plan.record(&c);
                    if !run.options.dry_run {
                        pending.push(c);
                        if pending.len() >= batch {
                            run.apply(&pending, applied).await?;
                            pending.clear();
                            progress(seen, total);
                        }
                    }
                }
            }
        }
    }
    for c in orphans {
        plan.record(&c);
        if !run.options.dry_run {
            pending.push(c);
        }
    }
    for chunk in pending.chunks(batch) {
        run.apply(chunk, applied).await?;
    }
    Ok(())
}

/// The person as one snapshot user: the primary entry's fields (those its source may
/// supply), then each empty field from the next source that has it and may supply it.
/// Its uuid is the primary's `source/identity` link.
async fn merge(
    run: &Run<'_>,
    sources: &[String],
    person: &Person,
    primary: SourceUser,
) -> Result<SourceUser, SyncError> {
    let mut merged = SourceUser {
        uuid: link(&sources[person.source], &primary.uuid),
        userid: primary.userid.clone(),
        ..SourceUser::default()
    };
    fill(
        &mut merged,
        &primary,
        run.rules.source_fields.get(&sources[person.source]),
    );
    for (s, uuid) in &person.others {
        // Read by index outside the planning read: another entry of the same person.
        if let Some(other) = run.store.snapshot_user(&sources[*s], uuid).await? {
            fill(
                &mut merged,
                &other,
                run.rules.source_fields.get(&sources[*s]),
            );
        }
    }
    Ok(merged)
}

/// Copy into the empty fields of `into` the fields of `from` that `allowed` lets through.
fn fill(into: &mut SourceUser, from: &SourceUser, allowed: Option<&Vec<String>>) {
    let may = |f: &str| allowed.is_none_or(|a| a.iter().any(|x| x == f));
    let extension_was_empty = into.primary_extension.is_none();
    let pairs: [(&str, &mut Option<String>, &Option<String>); 14] = [
        ("first_name", &mut into.first_name, &from.first_name),
        ("middle_name", &mut into.middle_name, &from.middle_name),
        ("last_name", &mut into.last_name, &from.last_name),
        ("display_name", &mut into.display_name, &from.display_name),
        ("mailid", &mut into.mailid, &from.mailid),
        (
            "telephone_number",
            &mut into.telephone_number,
            &from.telephone_number,
        ),
        (
            "primary_extension",
            &mut into.primary_extension,
            &from.primary_extension,
        ),
        ("department", &mut into.department, &from.department),
        ("manager", &mut into.manager, &from.manager),
        ("title", &mut into.title, &from.title),
        (
            "mobile_number",
            &mut into.mobile_number,
            &from.mobile_number,
        ),
        ("home_number", &mut into.home_number, &from.home_number),
        ("pager_number", &mut into.pager_number, &from.pager_number),
        (
            "directory_uri",
            &mut into.directory_uri,
            &from.directory_uri,
        ),
    ];
    for (name, slot, value) in pairs {
        if slot.is_none() && value.is_some() && may(name) {
            slot.clone_from(value);
        }
    }
    if extension_was_empty && into.primary_extension.is_some() {
        into.primary_extension_partition
            .clone_from(&from.primary_extension_partition);
    }
    if into.associated_devices.is_empty() && may("associated_devices") {
        into.associated_devices.clone_from(&from.associated_devices);
    }
}
