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
use ucbridge_store::{ClusterLink, PageMark, SnapshotState, SourceKind, SourceUser};

use crate::directory::{
    add_locals, finish_read, not_ready, note_orphans, records_of, Applied, Pending, Run,
    SyncOutcome, PAGE_USERS,
};
use crate::plan::{Decision, Ident, MatchKey, Orphan, Plan, Planner, Problem};
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

/// One person: the source of its primary entry and the other sources' entries, in
/// precedence order (the primary's identity is its key in [`Grouping::primary_of`]).
struct Person {
    source: u16,
    others: Vec<(u16, Box<str>)>,
}

/// Pass 1's result: compact, one small record per person.
struct Grouping {
    persons: Vec<Person>,
    /// Per source: identity of a primary entry → its person.
    primary_of: Vec<HashMap<Box<str>, u32>>,
    /// Planner keys: (`source/identity`, sync key) per person; taken by the planner.
    keys: Vec<MatchKey>,
    disabled: HashSet<String>,
    /// Persons skipped as conflicts (a key in two clusters), and why.
    conflicts: Vec<(u32, String)>,
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
    let phase = std::time::Instant::now();
    let mut read = store.read_snapshot().await?;
    let start = read.versions().await?;
    let mut planner = Planner::for_sources(run.rules, &sources, HashSet::new());
    add_locals(&mut read, &mut planner).await?;
    let mut grouping = group(&run, &mut read, &sources, &kinds).await?;
    planner.set_disabled(std::mem::take(&mut grouping.disabled));
    planner.match_keys(std::mem::take(&mut grouping.keys));
    for (uuid, why) in conflict_links(&mut grouping, &sources) {
        planner.skip(&uuid, why);
    }
    let orphans = planner.orphans();
    let mut plan = Plan::new(planner.synced_users());
    tracing::info!(
        elapsed_ms = phase.elapsed().as_millis(),
        persons = grouping.persons.len(),
        removals = orphans.len(),
        "merged user sync: matches decided"
    );
    if let Some(message) = removal_refusal(&run, &sources, &grouping, &planner, &orphans) {
        let noted = note_orphans(&mut read, &orphans, &mut plan).await;
        finish_read(read).await;
        noted?;
        return run.refuse(message, plan, snapshot).await;
    }
    let mut applied = Applied::default();
    let total = grouping.persons.len() as u64;
    let mut pass2 = Pass2 {
        run: &run,
        sources: &sources,
        g: &grouping,
        planner: &mut planner,
        plan: &mut plan,
        applied: &mut applied,
        pending: Pending::new(run.options.batch_size),
        seen: 0,
        total,
    };
    let result = pass2
        .plan_and_apply(&mut read, &orphans, &mut progress)
        .await;
    finish_read(read).await;
    let result = match result {
        Ok(()) if !run.options.dry_run => {
            record_cluster_links(&run, &sources, &kinds, &grouping).await
        }
        other => other,
    };
    tracing::info!(
        elapsed_ms = phase.elapsed().as_millis(),
        changes = plan.total_changes(),
        applied = applied.changes,
        "merged user sync: planned and applied"
    );
    progress(total, total);
    run.record(result, start, applied, snapshot, plan).await
}

/// Record in `user_sources` each person's cluster entry when the person's link is not a
/// cluster (AD primary, CUCM adding the extension and device), and forget the entries no
/// longer there, so sign-in and provisioning find the user's own cluster whichever source
/// is primary. A person in two clusters is a conflict and gets none. Not fenced like the
/// batches: a stale node's links are derived data the next run rewrites.
async fn record_cluster_links(
    run: &Run<'_>,
    sources: &[String],
    kinds: &[SourceKind],
    g: &Grouping,
) -> Result<(), SyncError> {
    const BATCH: usize = 5_000;
    let at = ucbridge_store::now_millis();
    let mut batch = Vec::with_capacity(BATCH);
    for (s, primaries) in g.primary_of.iter().enumerate() {
        if kinds[s] == SourceKind::Cucm {
            continue; // the link itself is the cluster entry
        }
        for (uuid, &p) in primaries {
            let mut clusters = g.persons[p as usize]
                .others
                .iter()
                .filter(|(o, _)| kinds[*o as usize] == SourceKind::Cucm);
            let (Some((o, key)), None) = (clusters.next(), clusters.next()) else {
                continue;
            };
            batch.push(ClusterLink {
                linked_source: sources[s].clone(),
                linked_key: uuid.to_string(),
                source: sources[*o as usize].clone(),
                source_key: key.to_string(),
            });
            if batch.len() >= BATCH {
                run.store.record_cluster_links(&batch, at).await?;
                batch.clear();
            }
        }
    }
    run.store.record_cluster_links(&batch, at).await?;
    run.store.prune_cluster_links(at).await?;
    Ok(())
}

/// The conflicts by their primary entry's `source/identity` link: one pass over the
/// primaries, and only when there are conflicts.
fn conflict_links(g: &mut Grouping, sources: &[String]) -> Vec<(String, String)> {
    let mut why: HashMap<u32, String> = std::mem::take(&mut g.conflicts).into_iter().collect();
    let mut out = Vec::with_capacity(why.len());
    for (s, primaries) in g.primary_of.iter().enumerate() {
        if why.is_empty() {
            break;
        }
        for (uuid, p) in primaries {
            if let Some(w) = why.remove(p) {
                out.push((link(&sources[s], uuid), w));
            }
        }
    }
    out
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
        primary_of: vec![HashMap::new(); sources.len()],
        keys: Vec::new(),
        disabled: HashSet::new(),
        conflicts: Vec::new(),
        entries_per_source: vec![0; sources.len()],
    };
    // sync key → the person holding it and the source of its primary entry.
    let mut by_key: HashMap<Box<str>, (u32, u16)> = HashMap::new();
    for (s, name) in sources.iter().enumerate() {
        let s16 = s as u16;
        let mut rows = read.source_keys(name);
        while let Some((u, disabled)) = rows.try_next().await? {
            g.entries_per_source[s] += 1;
            let key = run.rules.key.cucm_value(&u).map(String::into_boxed_str);
            let joined = key.as_ref().and_then(|k| by_key.get(k)).copied();
            match joined {
                // Another source's entry for a person already seen: it adds fields.
                Some((p, primary_source)) if primary_source != s16 => {
                    let person = &mut g.persons[p as usize];
                    // The person's clusters so far, primary or not: a second one is a
                    // conflict whichever source is primary (AD first, two clusters after);
                    // reported once, at the second.
                    let mut clusters = std::iter::once(person.source as usize)
                        .chain(person.others.iter().map(|(o, _)| *o as usize))
                        .filter(|&o| kinds[o] == SourceKind::Cucm);
                    let first_cluster = clusters.next();
                    if let (Some(cluster), None, SourceKind::Cucm) =
                        (first_cluster, clusters.next(), kinds[s])
                    {
                        g.conflicts.push((
                            p,
                            format!(
                                "sync key {:?} is in two CUCM clusters ({} and {}); a user belongs to one cluster; user skipped",
                                key.as_deref().unwrap_or_default(),
                                sources[cluster],
                                name
                            ),
                        ));
                    }
                    person.others.push((s16, u.uuid.into_boxed_str()));
                }
                // New person (or a duplicate key within one source: the planner reports it).
                _ => {
                    let p = g.persons.len() as u32;
                    if let Some(k) = &key {
                        by_key.entry(k.clone()).or_insert((p, s16));
                    }
                    let id = link(name, &u.uuid);
                    if disabled {
                        g.disabled.insert(id.clone());
                    }
                    g.keys.push((Ident::new(&id), key));
                    g.primary_of[s].insert(u.uuid.into_boxed_str(), p);
                    g.persons.push(Person {
                        source: s16,
                        others: Vec::new(),
                    });
                }
            }
        }
    }
    Ok(g)
}

/// The mass-removal guard, per source: why the removals are refused, unless confirmed.
fn removal_refusal(
    run: &Run<'_>,
    sources: &[String],
    g: &Grouping,
    planner: &Planner<'_>,
    orphans: &[Orphan],
) -> Option<String> {
    if orphans.is_empty() || run.options.confirm_removals {
        return None;
    }
    for (s, name) in sources.iter().enumerate() {
        let removals = orphans
            .iter()
            .filter(|o| planner.source_of(o) == name)
            .count() as u64;
        if removals == 0 {
            continue;
        }
        let linked = planner.linked_to(name);
        if g.entries_per_source[s] == 0 {
            return Some(format!(
                "source {name} is empty but {linked} users are linked to it; refusing to remove them (a partial read?). Re-run with --confirm-removals if it really has no users",
            ));
        }
        let share = removals as f64 / linked.max(1) as f64;
        if share > run.rules.max_removal_share {
            return Some(format!(
                "the plan would disable or delete {removals} of the {linked} users linked to source {name} ({:.1} %), more than the allowed {:.1} %; check the plan (--dry-run) and re-run with --confirm-removals",
                share * 100.0,
                run.rules.max_removal_share * 100.0
            ));
        }
    }
    None
}

/// Pass 2's state: each source's users in keyset pages, each person planned once at its
/// primary entry, with the other entries and the local records read per page.
struct Pass2<'a, 'r> {
    run: &'a Run<'a>,
    sources: &'a [String],
    g: &'a Grouping,
    planner: &'a mut Planner<'r>,
    plan: &'a mut Plan,
    applied: &'a mut Applied,
    pending: Pending,
    seen: u64,
    total: u64,
}

impl Pass2<'_, '_> {
    async fn plan_and_apply(
        &mut self,
        read: &mut ucbridge_store::SnapshotRead,
        orphans: &[Orphan],
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<(), SyncError> {
        for s in 0..self.sources.len() {
            let mut after: Option<PageMark> = None;
            loop {
                let name = &self.sources[s];
                let page = read
                    .source_users_page(name, after.as_ref(), PAGE_USERS)
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(PageMark::after(last));
                let full = page.len() == PAGE_USERS;
                self.page(read, s, page).await?;
                progress(self.seen, self.total);
                if !full {
                    break;
                }
            }
        }
        let run = self.run;
        run.remove_orphans(read, orphans, self.plan, &mut self.pending, self.applied)
            .await?;
        run.flush(&mut self.pending, self.applied).await
    }

    /// One page of source `s`: merge its primary entries into persons and plan them.
    async fn page(
        &mut self,
        read: &mut ucbridge_store::SnapshotRead,
        s: usize,
        page: Vec<SourceUser>,
    ) -> Result<(), SyncError> {
        let primaries: Vec<(u32, SourceUser)> = page
            .into_iter()
            .filter_map(|u| self.g.primary_of[s].get(&*u.uuid).map(|&p| (p, u)))
            .collect();
        let others = self.others_of(read, &primaries).await?;
        let persons: Vec<SourceUser> = primaries
            .into_iter()
            .map(|(p, primary)| {
                merge(
                    self.run,
                    self.sources,
                    &self.g.persons[p as usize],
                    primary,
                    &others,
                )
            })
            .collect();
        let ids: Vec<i64> = persons
            .iter()
            .filter_map(|u| self.planner.local_of(&u.uuid))
            .collect();
        let records = records_of(read, &ids).await?;
        let name = &self.sources[s];
        for person in &persons {
            self.seen += 1;
            let decision = match self.planner.plan_user(person, &records) {
                Decision::Problem(problem) => Decision::Problem(Problem {
                    message: format!("{} (from source {name})", problem.message),
                    ..problem
                }),
                other => other,
            };
            self.run
                .take(decision, self.plan, &mut self.pending, self.applied)
                .await?;
        }
        Ok(())
    }

    /// The other sources' entries of these persons, read in the same snapshot read.
    async fn others_of(
        &self,
        read: &mut ucbridge_store::SnapshotRead,
        primaries: &[(u32, SourceUser)],
    ) -> Result<HashMap<(u16, String), SourceUser>, SyncError> {
        let mut wanted: Vec<Vec<&str>> = vec![Vec::new(); self.sources.len()];
        for (p, _) in primaries {
            for (o, uuid) in &self.g.persons[*p as usize].others {
                wanted[*o as usize].push(uuid);
            }
        }
        let mut out = HashMap::new();
        for (o, uuids) in wanted.iter().enumerate() {
            if uuids.is_empty() {
                continue;
            }
            for u in read.source_users_by_uuid(&self.sources[o], uuids).await? {
                out.insert((o as u16, u.uuid.clone()), u);
            }
        }
        Ok(out)
    }
}

/// The person as one snapshot user: the primary entry's fields (those its source may
/// supply), then each empty field from the next source that has it and may supply it.
/// Its uuid is the primary's `source/identity` link.
fn merge(
    run: &Run<'_>,
    sources: &[String],
    person: &Person,
    primary: SourceUser,
    others: &HashMap<(u16, String), SourceUser>,
) -> SourceUser {
    let primary_source = &sources[person.source as usize];
    let mut merged = SourceUser {
        uuid: link(primary_source, &primary.uuid),
        userid: primary.userid.clone(),
        ..SourceUser::default()
    };
    fill(
        &mut merged,
        &primary,
        run.rules.source_fields.get(primary_source),
    );
    for (s, uuid) in &person.others {
        if let Some(other) = others.get(&(*s, uuid.to_string())) {
            fill(
                &mut merged,
                other,
                run.rules.source_fields.get(&sources[*s as usize]),
            );
        }
    }
    merged
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
