//! Stage 2: run a user sync — check the snapshot, plan, guard, record, apply.

use serde::Serialize;
use ucbridge_store::{RefreshState, RunOwner, RunStatus, SnapshotState, Store, SOURCE_CUCM};

use std::collections::HashMap;

use futures::TryStreamExt;
use ucbridge_store::{PageMark, UserChange, UserRecord};

use crate::plan::{Decision, Ident, MatchKey, Orphan, Plan, Planner};
use crate::rules::CompiledRules;
use crate::SyncError;

/// Run kind recorded in `sync_runs`.
pub const RUN_KIND: &str = "users";

#[derive(Debug, Clone, Copy)]
pub struct SyncOptions {
    /// Plan and record, change nothing.
    pub dry_run: bool,
    /// Allow more removals than `max_removal_share`, or removals against an empty snapshot.
    pub confirm_removals: bool,
    /// Changes per transaction.
    pub batch_size: usize,
    /// Compare everything even when nothing changed since the last in-sync run.
    pub full: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            dry_run: false,
            confirm_removals: false,
            batch_size: 1000,
            full: false,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SyncOutcome {
    pub run_id: i64,
    pub status: RunStatus,
    /// Why the run was refused, or what it did.
    pub message: Option<String>,
    pub snapshot: SnapshotState,
    pub plan: Plan,
}

/// Changes kept in the run record; the audit log holds every applied change.
const PLAN_CHANGES_RECORDED: usize = Plan::KEPT_CHANGES;

/// What a run's outcome was computed from: the snapshot and users versions and the rules.
/// The other sources' snapshots count only when the rules read them.
fn fingerprint(v: &ucbridge_store::DataVersions, users: i64, rules: &CompiledRules) -> String {
    let sources = if rules.sources.is_empty() {
        String::new()
    } else {
        format!("source_users={};", v.source_users)
    };
    format!(
        "cucm_users={};{sources}users={users};rules={}",
        v.cucm_users, rules.fingerprint
    )
}

/// Sync ucbridge's users from the CUCM snapshot. A refusal (snapshot not ready, mass
/// removal) is an `Ok` outcome with status `Refused` and the reason; only failures to
/// read or write are errors.
pub async fn run_user_sync(
    store: &Store,
    rules: &CompiledRules,
    options: SyncOptions,
    progress: impl FnMut(u64, u64),
) -> Result<SyncOutcome, SyncError> {
    run_user_sync_as(store, rules, options, &RunOwner::default(), progress).await
}

/// [`run_user_sync`] recording who runs it: the run names `owner`'s node (so it can be
/// marked abandoned if that process dies), and under a lease every batch is fenced by it.
pub async fn run_user_sync_as(
    store: &Store,
    rules: &CompiledRules,
    options: SyncOptions,
    owner: &RunOwner,
    mut progress: impl FnMut(u64, u64),
) -> Result<SyncOutcome, SyncError> {
    let run = Run {
        store,
        rules,
        options,
        run_id: store.start_run_as(RUN_KIND, options.dry_run, owner).await?,
        fence: owner.fence.as_ref(),
    };
    if !rules.sources.is_empty() {
        return crate::merged::run_merged(run, progress).await;
    }
    let snapshot = store.snapshot_state(SOURCE_CUCM).await?;
    // The seed's "cache under provisioning" warning: never act on a snapshot that is not
    // complete and current.
    if let Some(message) = not_ready(&snapshot) {
        let message = match abandoned_claim(store, &snapshot).await {
            Some(note) => format!("{message}; {note}"),
            None => message,
        };
        return run.refuse(message, Plan::default(), snapshot).await;
    }
    // Nothing changed since a run that left users in sync: no work to do.
    let snapshot = match run.skip_if_in_sync(snapshot).await? {
        Ok(outcome) => return Ok(outcome),
        Err(snapshot) => snapshot,
    };
    let phase = std::time::Instant::now();
    let mut read = store.read_snapshot().await?;
    let start = read.versions().await?;
    // Pass 1: every match from the keys alone, so removals are known before any write.
    let (mut planner, total_users) = run.match_keys(&mut read).await?;
    let orphans = planner.orphans();
    let mut plan = Plan::new(planner.synced_users());
    tracing::info!(
        elapsed_ms = phase.elapsed().as_millis(),
        users = total_users,
        removals = orphans.len(),
        "user sync: matches decided"
    );
    if let Some(message) = run.removal_refusal(total_users, orphans.len() as u64, &plan) {
        let noted = note_orphans(&mut read, &orphans, &mut plan).await;
        finish_read(read).await;
        noted?;
        return run.refuse(message, plan, snapshot).await;
    }
    // Pass 2: the full users come in pages; changes are applied in batches as they come.
    let mut applied = Applied::default();
    let pass2 = std::time::Instant::now();
    let apply_result = run
        .plan_and_apply(
            &mut read,
            &mut planner,
            &orphans,
            total_users,
            &mut plan,
            &mut applied,
            &mut progress,
        )
        .await;
    finish_read(read).await;
    tracing::info!(
        elapsed_ms = phase.elapsed().as_millis(),
        pass2_ms = pass2.elapsed().as_millis(),
        changes = plan.total_changes(),
        applied = applied.changes,
        "user sync: planned and applied"
    );
    run.record(apply_result, start, applied, snapshot, plan)
        .await
}

/// Snapshot users per page of pass 2 (and local records read per page).
pub(crate) const PAGE_USERS: usize = 1000;

/// Record refused (or dry-run) removals in the plan: in full while it keeps changes,
/// reading those users' records; only counted after that.
pub(crate) async fn note_orphans(
    read: &mut ucbridge_store::SnapshotRead,
    orphans: &[Orphan],
    plan: &mut Plan,
) -> Result<(), SyncError> {
    for chunk in orphans.chunks(PAGE_USERS) {
        if !plan.keeps_more() {
            chunk.iter().for_each(|o| plan.count_removal(o));
            continue;
        }
        for change in orphan_changes(read, chunk).await? {
            plan.record(&change);
        }
    }
    Ok(())
}

/// The changes of `orphans`, with their records as of the plan's read.
pub(crate) async fn orphan_changes(
    read: &mut ucbridge_store::SnapshotRead,
    orphans: &[Orphan],
) -> Result<Vec<UserChange>, SyncError> {
    let ids: Vec<i64> = orphans.iter().map(|o| o.id).collect();
    let mut records: HashMap<i64, UserRecord> = read
        .local_users_by_id(&ids)
        .await?
        .into_iter()
        .map(|l| (l.id, l.record))
        .collect();
    Ok(orphans
        .iter()
        .filter_map(|o| records.remove(&o.id).map(|r| o.change(r)))
        .collect())
}

/// The full local records of `ids` as of the read, by id.
pub(crate) async fn records_of(
    read: &mut ucbridge_store::SnapshotRead,
    ids: &[i64],
) -> Result<HashMap<i64, UserRecord>, SyncError> {
    Ok(read
        .local_users_by_id(ids)
        .await?
        .into_iter()
        .map(|l| (l.id, l.record))
        .collect())
}

/// Why the snapshot cannot be synced from, if it cannot.
pub(crate) fn not_ready(snapshot: &SnapshotState) -> Option<String> {
    match snapshot.state {
        RefreshState::Idle => None,
        RefreshState::Empty => Some("the CUCM snapshot has never been refreshed; refresh it first (ucbridge sync refresh)".to_owned()),
        RefreshState::Refreshing => Some(
            "the CUCM snapshot is being refreshed (cache under provisioning); run the sync again once \"source users updated at\" shows the new time".to_owned(),
        ),
        RefreshState::Failed => Some(format!(
            "the last CUCM snapshot refresh failed ({}); fix it and refresh before syncing",
            snapshot.reason.as_deref().unwrap_or("no reason recorded")
        )),
    }
}

/// Changes waiting to be applied, at most `batch` (one transaction).
pub(crate) struct Pending {
    changes: Vec<UserChange>,
    batch: usize,
}

impl Pending {
    pub(crate) fn new(batch: usize) -> Pending {
        Pending {
            changes: Vec::new(),
            batch: batch.max(1),
        }
    }
}

/// Changes applied so far, and in how many transactions (each bumps the users version).
#[derive(Default)]
pub(crate) struct Applied {
    pub(crate) changes: u64,
    pub(crate) calls: i64,
}

/// One user sync run: what it works with and the run record it writes.
pub(crate) struct Run<'a> {
    pub(crate) store: &'a Store,
    pub(crate) rules: &'a CompiledRules,
    pub(crate) options: SyncOptions,
    pub(crate) run_id: i64,
    pub(crate) fence: Option<&'a ucbridge_store::Fence>,
}

impl Run<'_> {
    /// Record a refusal: an `Ok` outcome with status `Refused` and the reason.
    pub(crate) async fn refuse(
        &self,
        message: String,
        plan: Plan,
        snapshot: SnapshotState,
    ) -> Result<SyncOutcome, SyncError> {
        let run_id = self.run_id;
        tracing::warn!(run_id, %message, "user sync refused");
        self.store
            .finish_run(
                run_id,
                RunStatus::Refused,
                Some(&message),
                plan.summary(),
                None,
            )
            .await?;
        Ok(SyncOutcome {
            run_id,
            status: RunStatus::Refused,
            message: Some(message),
            snapshot,
            plan,
        })
    }

    /// The finished outcome when the snapshot, the users and the rules are as after the
    /// last in-sync run (unless `full`); else the snapshot state back.
    pub(crate) async fn skip_if_in_sync(
        &self,
        snapshot: SnapshotState,
    ) -> Result<Result<SyncOutcome, SnapshotState>, SyncError> {
        let store = self.store;
        let now = store.data_versions().await?;
        let last = match self.options.full {
            true => None,
            false => store.last_fingerprint(RUN_KIND).await?,
        };
        let Some((last_run, last)) = last else {
            return Ok(Err(snapshot));
        };
        if last != fingerprint(&now, now.users, self.rules) {
            return Ok(Err(snapshot));
        }
        let message = format!(
            "nothing changed on CUCM, in the local users or in the rules since run {last_run}; users are in sync"
        );
        let status = if self.options.dry_run {
            RunStatus::Planned
        } else {
            RunStatus::Applied
        };
        store
            .finish_run(
                self.run_id,
                status,
                Some(&message),
                Default::default(),
                None,
            )
            .await?;
        store.set_run_fingerprint(self.run_id, &last).await?;
        let mut plan = Plan::new(0);
        plan.unchanged = usize::try_from(snapshot.users_count).unwrap_or(0);
        Ok(Ok(SyncOutcome {
            run_id: self.run_id,
            status,
            message: Some(message),
            snapshot,
            plan,
        }))
    }

    /// Pass 1: match every CUCM user by uuid and key only; the planner and the count.
    /// Only compact match data is held: no full local record, no full snapshot user.
    async fn match_keys(
        &self,
        read: &mut ucbridge_store::SnapshotRead,
    ) -> Result<(Planner<'_>, u64), SyncError> {
        let mut planner = Planner::new(self.rules);
        add_locals(read, &mut planner).await?;
        let mut keys: Vec<MatchKey> = Vec::new();
        {
            let mut rows = read.source_keys(SOURCE_CUCM);
            while let Some((u, _)) = rows.try_next().await? {
                let key = self.rules.key.cucm_value(&u).map(String::into_boxed_str);
                keys.push((Ident::new(&u.uuid), key));
            }
        }
        let total_users = keys.len() as u64;
        planner.match_keys(keys);
        Ok((planner, total_users))
    }

    /// The mass-removal guard: why `removals` are refused, unless confirmed. An empty
    /// snapshot with synced users is a partial read until proven otherwise.
    fn removal_refusal(&self, total_users: u64, removals: u64, plan: &Plan) -> Option<String> {
        if removals == 0 || self.options.confirm_removals {
            return None;
        }
        let synced = plan.synced_users.max(1) as f64;
        let share = removals as f64 / synced;
        if total_users == 0 {
            Some(format!(
                "the CUCM snapshot is empty but {} users are synced from CUCM; refusing to remove them all (a partial read?). Re-run with --confirm-removals if CUCM really has no users",
                plan.synced_users
            ))
        } else if share > self.rules.max_removal_share {
            Some(format!(
                "the plan would disable or delete {removals} of {} synced users ({:.1} %), more than the allowed {:.1} %; check the plan (--dry-run) and re-run with --confirm-removals",
                plan.synced_users,
                share * 100.0,
                self.rules.max_removal_share * 100.0
            ))
        } else {
            None
        }
    }

    /// Pass 2: plan each user page by page (keyset pages of the snapshot, with the full
    /// records of that page's matched local users only), applying changes in batches,
    /// then the removals. `applied` counts what was written even when this fails.
    #[allow(clippy::too_many_arguments)]
    async fn plan_and_apply(
        &self,
        read: &mut ucbridge_store::SnapshotRead,
        planner: &mut Planner<'_>,
        orphans: &[Orphan],
        total_users: u64,
        plan: &mut Plan,
        applied: &mut Applied,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<(), SyncError> {
        let mut pending = Pending::new(self.options.batch_size);
        let mut seen = 0u64;
        let mut after: Option<PageMark> = None;
        loop {
            let page = read
                .source_users_page(SOURCE_CUCM, after.as_ref(), PAGE_USERS)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(PageMark::after(last));
            let ids: Vec<i64> = page
                .iter()
                .filter_map(|u| planner.local_of(&u.uuid))
                .collect();
            let records = records_of(read, &ids).await?;
            for u in &page {
                seen += 1;
                let decision = planner.plan_user(u, &records);
                self.take(decision, plan, &mut pending, applied).await?;
            }
            progress(seen, total_users);
            if page.len() < PAGE_USERS {
                break;
            }
        }
        self.remove_orphans(read, orphans, plan, &mut pending, applied)
            .await?;
        self.flush(&mut pending, applied).await?;
        progress(total_users, total_users);
        Ok(())
    }

    /// Count one decision in the plan and queue its change, applying a full batch.
    pub(crate) async fn take(
        &self,
        decision: Decision,
        plan: &mut Plan,
        pending: &mut Pending,
        applied: &mut Applied,
    ) -> Result<(), SyncError> {
        match decision {
            Decision::Unchanged => plan.unchanged += 1,
            Decision::Problem(p) => plan.problems.push(p),
            Decision::Change(c) => self.queue(c, plan, pending, applied).await?,
        }
        Ok(())
    }

    async fn queue(
        &self,
        change: UserChange,
        plan: &mut Plan,
        pending: &mut Pending,
        applied: &mut Applied,
    ) -> Result<(), SyncError> {
        plan.record(&change);
        if !self.options.dry_run {
            pending.changes.push(change);
            if pending.changes.len() >= pending.batch {
                self.flush(pending, applied).await?;
            }
        }
        Ok(())
    }

    /// Apply what is queued.
    pub(crate) async fn flush(
        &self,
        pending: &mut Pending,
        applied: &mut Applied,
    ) -> Result<(), SyncError> {
        if !pending.changes.is_empty() {
            self.apply(&pending.changes, applied).await?;
            pending.changes.clear();
        }
        Ok(())
    }

    /// Plan (and queue) the removals, reading the orphans' records a chunk at a time; a
    /// dry run reads them only while the plan keeps changes in full.
    pub(crate) async fn remove_orphans(
        &self,
        read: &mut ucbridge_store::SnapshotRead,
        orphans: &[Orphan],
        plan: &mut Plan,
        pending: &mut Pending,
        applied: &mut Applied,
    ) -> Result<(), SyncError> {
        if self.options.dry_run {
            return note_orphans(read, orphans, plan).await;
        }
        for chunk in orphans.chunks(PAGE_USERS) {
            for change in orphan_changes(read, chunk).await? {
                self.queue(change, plan, pending, applied).await?;
            }
        }
        Ok(())
    }

    /// One batch in one transaction, fenced by the lease when there is one.
    pub(crate) async fn apply(
        &self,
        changes: &[UserChange],
        applied: &mut Applied,
    ) -> Result<(), SyncError> {
        self.store
            .apply_user_changes_fenced(Some(self.run_id), changes, self.fence)
            .await?;
        applied.calls += 1;
        applied.changes += changes.len() as u64;
        Ok(())
    }

    /// Finish the run record: failed with how far it got, or planned / applied, with the
    /// fingerprint that lets the next run skip when users are now in sync.
    pub(crate) async fn record(
        &self,
        apply_result: Result<(), SyncError>,
        start: ucbridge_store::DataVersions,
        applied: Applied,
        snapshot: SnapshotState,
        plan: Plan,
    ) -> Result<SyncOutcome, SyncError> {
        let store = self.store;
        let run_id = self.run_id;
        let recorded = serde_json::json!({
            "problems": plan.problems,
            "changes": plan.changes.iter().take(PLAN_CHANGES_RECORDED).collect::<Vec<_>>(),
            "changes_not_recorded": plan.total_changes().saturating_sub(PLAN_CHANGES_RECORDED as u64),
        })
        .to_string();
        let summary = plan.summary();
        if let Err(e) = apply_result {
            let message = format!(
                "applying changes failed after {} of {} planned so far: {e}",
                applied.changes,
                plan.total_changes()
            );
            store
                .finish_run(
                    run_id,
                    RunStatus::Failed,
                    Some(&message),
                    summary,
                    Some(&recorded),
                )
                .await?;
            return Err(e);
        }
        if plan.problems.is_empty() {
            self.note_in_sync(&start, &applied, &plan).await?;
        }
        let status = if self.options.dry_run {
            RunStatus::Planned
        } else {
            RunStatus::Applied
        };
        store
            .finish_run(run_id, status, None, summary, Some(&recorded))
            .await?;
        Ok(SyncOutcome {
            run_id,
            status,
            message: None,
            snapshot,
            plan,
        })
    }

    /// Users are now in sync with the snapshot as read, if no one else changed users
    /// meanwhile (each apply bumps the counter once): record the fingerprint.
    async fn note_in_sync(
        &self,
        start: &ucbridge_store::DataVersions,
        applied: &Applied,
        plan: &Plan,
    ) -> Result<(), SyncError> {
        let in_sync = if self.options.dry_run {
            (plan.total_changes() == 0).then_some(start.users)
        } else {
            let end = self.store.data_versions().await?;
            (end.users == start.users + applied.calls).then_some(end.users)
        };
        if let Some(users_version) = in_sync {
            self.store
                .set_run_fingerprint(self.run_id, &fingerprint(start, users_version, self.rules))
                .await?;
        }
        Ok(())
    }
}

/// Stream the local users' match data into the planner.
pub(crate) async fn add_locals(
    read: &mut ucbridge_store::SnapshotRead,
    planner: &mut Planner<'_>,
) -> Result<(), SyncError> {
    let mut rows = read.local_matches();
    while let Some(l) = rows.try_next().await? {
        planner.add_local(&l);
    }
    Ok(())
}

/// End the read-only snapshot transaction. Its commit can fail only if the connection is
/// gone, and nothing was written through it: the run's outcome stands either way (an
/// error here used to leave the run `running` for good).
pub(crate) async fn finish_read(read: ucbridge_store::SnapshotRead) {
    if let Err(e) = read.finish().await {
        tracing::warn!(error = %e, "ending the snapshot read failed (nothing was written through it)");
    }
}

/// When the snapshot is `refreshing`: a note saying so if its refresher looks dead (no
/// heartbeat for a minute, by the database's clock), so a refusal is not a mystery. The
/// snapshot job takes such a claim over (see `SnapshotKeeper`).
async fn abandoned_claim(store: &Store, snapshot: &SnapshotState) -> Option<String> {
    if snapshot.state != RefreshState::Refreshing {
        return None;
    }
    let beat = snapshot
        .refresh_heartbeat_at
        .or(snapshot.refresh_started_at)?;
    let now = store.db_now().await.ok()?;
    let silent = now.saturating_sub(beat);
    let limit = crate::snapshot::DEFAULT_STALE_REFRESH_AFTER.as_millis() as i64;
    (silent > limit).then(|| {
        format!(
            "its refresher ({}) has shown no sign of life for {} s and looks abandoned; the snapshot job takes it over",
            snapshot.refresh_owner.as_deref().unwrap_or("?"),
            silent / 1000
        )
    })
}
