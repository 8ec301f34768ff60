//! Stage 1: keep the local snapshot of CUCM end users fresh.
//!
//! - Full refresh: claim the refresh (one node at a time), note the change-queue position,
//!   read display names and device associations with paged SQL (LUser has neither),
//!   page through listUser, stage every page, then swap the staging table in atomically.
//!   Any failure leaves the previous snapshot as it was and marks the state `failed`.
//! - Incremental: poll listChange from the stored cursor and getUser each added or
//!   updated user, so a change on CUCM reaches the snapshot within one poll interval.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use ucbridge_axl::{
    AxlClient, AxlError, ChangeAction, ChangeCursor, Key, ListOptions, User, UserSearch, UserTag,
};
use ucbridge_store::{
    RefreshClaimant, RefreshState, SourceKind, SourceUser, Store, StoreError, SwapSummary,
};

use crate::cucm_source::SourceTarget;
use crate::SyncError;

/// Default of [`SnapshotOptions::stale_refresh_after`].
pub const DEFAULT_STALE_REFRESH_AFTER: Duration = Duration::from_secs(60);
/// The shortest accepted `stale_refresh_after`: beats come every quarter of it, and each
/// is one database round trip.
pub const MIN_STALE_REFRESH_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// listUser rows per request.
    pub page_size: u32,
    /// Rows per SQL page for display names and device associations.
    pub sql_page_size: u32,
    /// getUser calls in flight while applying changes. CUCM asks clients not to flood it
    /// with concurrent queries (AXL Developer Guide, "Data Throttling"), so keep it small.
    pub get_concurrency: usize,
    /// How often listChange is polled. Cisco suggests 1-15 minutes for production
    /// clusters (1-5 on busy ones, notes §6); an empty poll is cheap, and seconds give
    /// near-real-time sync. Raise it on loaded clusters.
    pub poll_interval: Duration,
    /// A full refresh is repeated this often even when polling works.
    pub full_refresh_every: Duration,
    /// A refresh whose refresher showed no sign of life for this long is taken to be dead
    /// and may be taken over (`[snapshot] stale_refresh_after`). The refresher beats four
    /// times per period, independently of how slow CUCM answers. A claim made under an
    /// older `snapshot` lease token is taken over at once, whatever this says.
    pub stale_refresh_after: Duration,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            page_size: 1000,
            sql_page_size: 20_000,
            get_concurrency: 4,
            poll_interval: Duration::from_secs(5),
            full_refresh_every: Duration::from_secs(24 * 3600),
            stale_refresh_after: DEFAULT_STALE_REFRESH_AFTER,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RefreshReport {
    pub swap: SwapSummary,
    pub pages: u64,
    pub duration_ms: u128,
    /// Changes made on CUCM during the refresh and applied right after it.
    pub caught_up: Option<PollReport>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PollReport {
    pub changes_seen: usize,
    pub users_fetched: usize,
    pub users_removed: usize,
    pub rows_changed: u64,
}

/// The tags read by a full refresh: everything the snapshot keeps that LUser has.
const TAGS: &[UserTag] = &[
    UserTag::FirstName,
    UserTag::MiddleName,
    UserTag::LastName,
    UserTag::Userid,
    UserTag::Mailid,
    UserTag::Department,
    UserTag::Manager,
    UserTag::PrimaryExtension,
    UserTag::Status,
    UserTag::DirectoryUri,
    UserTag::TelephoneNumber,
    UserTag::Title,
    UserTag::MobileNumber,
    UserTag::HomeNumber,
    UserTag::PagerNumber,
];

/// `{UPPER-CASE}`: AXL shows uuids that way, SQL lower-case without braces, and CUCM's
/// own listChange example without braces (notes §1, §6).
pub fn canonical_uuid(uuid: &str) -> String {
    format!(
        "{{{}}}",
        uuid.trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .to_ascii_uppercase()
    )
}

/// What SQL adds to a listUser row: display name and associated devices (sorted, so the
/// full and incremental paths agree on the order).
#[derive(Debug, Default, Clone)]
struct Extra {
    display_name: Option<String>,
    devices: Vec<String>,
}

fn source_user(u: User, extra: Option<Extra>) -> Option<SourceUser> {
    let uuid = canonical_uuid(u.uuid.as_deref()?);
    let userid = u.userid?;
    let (display_name, mut devices) = match extra {
        Some(e) => (e.display_name, e.devices),
        None => (u.display_name, u.associated_devices),
    };
    devices.sort();
    devices.dedup();
    Some(SourceUser {
        uuid,
        userid,
        first_name: u.first_name,
        middle_name: u.middle_name,
        last_name: u.last_name,
        display_name,
        mailid: u.mailid,
        telephone_number: u.telephone_number,
        primary_extension: u.primary_extension.as_ref().map(|d| d.pattern.clone()),
        primary_extension_partition: u.primary_extension.and_then(|d| d.route_partition),
        department: u.department,
        manager: u.manager,
        title: u.title,
        mobile_number: u.mobile_number,
        home_number: u.home_number,
        pager_number: u.pager_number,
        directory_uri: u.directory_uri,
        status: u.status,
        associated_devices: devices,
    })
}

/// Keeps the CUCM snapshot of one store current.
#[derive(Debug, Clone)]
pub struct SnapshotKeeper {
    client: AxlClient,
    store: Store,
    options: SnapshotOptions,
    claimant: RefreshClaimant,
    /// Which snapshot it writes: the default `cucm_users`, or a named cluster's.
    target: SourceTarget,
}

impl SnapshotKeeper {
    pub fn new(client: AxlClient, store: Store, options: SnapshotOptions) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into());
        let owner = format!("{host}:{}:{:08x}", std::process::id(), rand_u32());
        SnapshotKeeper {
            client,
            store,
            options,
            claimant: RefreshClaimant {
                owner,
                node: None,
                lease_token: None,
            },
            target: SourceTarget::Default,
        }
    }

    /// A keeper of the CUCM source `name` (`[sources.NAME] kind = "cucm"`), registered
    /// with its `cluster` (default: the source name). A cluster other than the default
    /// `cucm` keeps its snapshot and state under its own name in `source_users` (see
    /// [`SourceTarget`]). A name registered as another kind is refused (`Conflict`).
    pub async fn for_source(
        client: AxlClient,
        store: Store,
        options: SnapshotOptions,
        name: &str,
        cluster: Option<&str>,
    ) -> Result<Self, SyncError> {
        store
            .register_source(name, SourceKind::Cucm, Some(cluster.unwrap_or(name)))
            .await?;
        Ok(SnapshotKeeper {
            target: SourceTarget::for_name(name),
            ..SnapshotKeeper::new(client, store, options)
        })
    }

    /// The name of the source this keeper keeps.
    pub fn source(&self) -> &str {
        self.target.name()
    }

    /// A keeper run by server node `node` under fencing token `lease_token` of its
    /// `snapshot` lease: its refresh claims name both, so a successor with a newer token
    /// takes a dead claim over at once, and the node itself clears its claims on restart.
    pub fn with_lease(mut self, node: &str, lease_token: i64) -> Self {
        self.claimant = RefreshClaimant {
            owner: format!("{node}:{}:{:08x}", std::process::id(), rand_u32()),
            node: Some(node.to_owned()),
            lease_token: Some(lease_token),
        };
        self
    }

    /// Give up this keeper's refresh claim, if it holds one (e.g. the command line was
    /// interrupted): the state becomes `failed` with `why` and the old snapshot is kept.
    pub async fn abandon_refresh(&self, why: &str) -> Result<(), SyncError> {
        self.store
            .fail_full_refresh(self.target.name(), &self.claimant.owner, why)
            .await?;
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Replace the snapshot with a complete fresh read of CUCM. `progress` gets the number
    /// of users read so far.
    pub async fn full_refresh(&self, progress: impl Fn(u64)) -> Result<RefreshReport, SyncError> {
        let started = Instant::now();
        let stale = i64::try_from(self.options.stale_refresh_after.as_millis()).unwrap_or(i64::MAX);
        let taken_over = self
            .store
            .claim_full_refresh(self.target.name(), &self.claimant, stale)
            .await?;
        if let Some(dead) = taken_over {
            tracing::warn!(%dead, "took over a full refresh whose refresher is gone");
        }
        let read = tokio::select! {
            r = self.read_everything(&progress) => r,
            lost = self.heartbeat() => Err(lost),
        };
        match read {
            Ok((cursor, pages)) => {
                let phase = Instant::now();
                let swap = match self
                    .target
                    .finish(&self.store, &self.claimant.owner, cursor.as_ref())
                    .await
                {
                    Ok(swap) => swap,
                    Err(e) => {
                        // Leave no claim behind: a refresh stuck in "refreshing" would make
                        // every user sync refuse until the claim goes stale.
                        let reason = format!("swapping the refreshed snapshot in failed: {e}");
                        tracing::warn!(%reason, "CUCM snapshot refresh failed; the previous snapshot is kept");
                        self.store
                            .fail_full_refresh(self.target.name(), &self.claimant.owner, &reason)
                            .await?;
                        return Err(e.into());
                    }
                };
                tracing::info!(
                    elapsed_ms = phase.elapsed().as_millis(),
                    ?swap,
                    "refresh: swapped in"
                );
                // Changes made while we were reading are after the cursor: apply them now.
                // The swap already succeeded, so a failure here is only logged; the next
                // poll retries from the same cursor.
                let caught_up = match cursor {
                    Some(_) => match self.poll_changes().await {
                        Ok(report) => Some(report),
                        Err(e) => {
                            tracing::warn!(error = %e, "catching up after the refresh failed; the next poll retries");
                            None
                        }
                    },
                    None => None,
                };
                Ok(RefreshReport {
                    swap,
                    pages,
                    duration_ms: started.elapsed().as_millis(),
                    caught_up,
                })
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!(%reason, "CUCM snapshot refresh failed; the previous snapshot is kept");
                self.store
                    .fail_full_refresh(self.target.name(), &self.claimant.owner, &reason)
                    .await?;
                Err(e)
            }
        }
    }

    /// Beat every quarter of `stale_refresh_after` for as long as the refresh runs; ends
    /// only when the claim was taken over (then the refresh must stop writing). A failed
    /// beat (database briefly away) is retried at the next one.
    async fn heartbeat(&self) -> SyncError {
        let every = (self.options.stale_refresh_after / 4).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            match self
                .store
                .refresh_heartbeat(self.target.name(), &self.claimant.owner)
                .await
            {
                Ok(()) => {}
                Err(e @ StoreError::Conflict(_)) => return e.into(),
                Err(e) => tracing::warn!(error = %e, "refresh heartbeat failed; retrying"),
            }
        }
    }

    async fn read_everything(
        &self,
        progress: &impl Fn(u64),
    ) -> Result<(Option<ChangeCursor>, u64), SyncError> {
        let phase = Instant::now();
        // 1. The change-queue position before reading: everything after it is replayed.
        let cursor = match self.client.change_queue_end(&["User"]).await {
            Ok(cursor) => Some(cursor),
            // An AXL without listChange (or a role without access to it): full refreshes only.
            Err(AxlError::Fault { axlcode: None, .. }) => {
                tracing::warn!(
                    "listChange is not available; changes will only be seen by full refreshes"
                );
                None
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(
            elapsed_ms = phase.elapsed().as_millis(),
            "refresh: change cursor read"
        );
        let phase = Instant::now();
        // 2. Display names and device associations by SQL (not in LUser).
        let mut extra = self.read_extras().await?;
        tracing::info!(
            elapsed_ms = phase.elapsed().as_millis(),
            users = extra.len(),
            "refresh: display names and devices read"
        );
        let phase = Instant::now();
        // 3. listUser, page by page into the staging table.
        let mut pager = self.client.user_pager(
            &UserSearch::all(),
            TAGS,
            ListOptions {
                page_size: self.options.page_size,
                ..ListOptions::default()
            },
        );
        let mut read = 0u64;
        while let Some(page) = pager.next_page().await? {
            read += page.len() as u64;
            let users: Vec<SourceUser> = page
                .into_iter()
                .filter_map(|u| {
                    let key = canonical_uuid(u.uuid.as_deref().unwrap_or_default());
                    let e = extra.remove(&key).unwrap_or_default();
                    source_user(u, Some(e))
                })
                .collect();
            self.target
                .stage(&self.store, &self.claimant.owner, &users)
                .await?;
            progress(read);
        }
        let summary = pager.summary();
        tracing::info!(
            elapsed_ms = phase.elapsed().as_millis(),
            users = read,
            pages = summary.pages,
            "refresh: users listed and staged"
        );
        Ok((cursor, summary.pages))
    }

    /// Display names and device associations of every end user, keyed by canonical uuid.
    /// Both are read with keyset paging (`WHERE pkid > last ORDER BY pkid`) rather than
    /// `SKIP n`: a SKIP page costs the database every skipped row (and, on the former
    /// join ordered by device name, a sort of the whole join), so paging by offset grew
    /// quadratically with the number of users.
    async fn read_extras(&self) -> Result<HashMap<String, Extra>, SyncError> {
        let mut extra: HashMap<String, Extra> = HashMap::new();
        self.keyset_sql(
            "SELECT FIRST ? eu.pkid, eu.displayname FROM enduser eu WHERE eu.pkid > ? ORDER BY eu.pkid",
            "pkid",
            |row| {
                if let Some(pkid) = row.get("pkid").filter(|p| !p.is_empty()) {
                    let e = extra.entry(canonical_uuid(pkid)).or_default();
                    e.display_name = row
                        .get("displayname")
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned);
                }
            },
        )
        .await?;
        // Devices are sorted per user by `source_user`, so the map's order does not matter.
        self.keyset_sql(
            "SELECT FIRST ? m.pkid, m.fkenduser, d.name FROM enduserdevicemap m \
             JOIN device d ON d.pkid = m.fkdevice \
             WHERE m.tkuserassociation = 1 AND m.pkid > ? ORDER BY m.pkid",
            "pkid",
            |row| {
                let user = row.get("fkenduser").filter(|p| !p.is_empty());
                let device = row.get("name").filter(|d| !d.is_empty());
                if let (Some(user), Some(device)) = (user, device) {
                    let e = extra.entry(canonical_uuid(user)).or_default();
                    e.devices.push(device.to_owned());
                }
            },
        )
        .await?;
        Ok(extra)
    }

    /// Run `template` (`SELECT FIRST ? … WHERE key > ? ORDER BY key`) page after page, each
    /// from the last `key` seen, handing every row to `on_row`. A "Query request too
    /// large" answer shrinks the page as the list pagers do (to 90 % of CUCM's suggestion,
    /// else half) down to one row.
    async fn keyset_sql(
        &self,
        template: &str,
        key: &str,
        mut on_row: impl FnMut(&ucbridge_axl::SqlRow),
    ) -> Result<u64, SyncError> {
        let mut page_size = self.options.sql_page_size.max(1);
        let mut last = String::new();
        let mut total = 0u64;
        loop {
            let query = ucbridge_axl::SqlQuery::new(template)
                .bind_int(i64::from(page_size))
                .bind(last.clone());
            let rows = match self.client.execute_sql_query(query).await {
                Ok(rows) => rows,
                Err(e) => match e.query_too_large() {
                    Some(q) if page_size > 1 => {
                        let suggested = u32::try_from(q.suggested_rows.saturating_mul(9) / 10)
                            .unwrap_or(u32::MAX);
                        let next = if suggested > 0 && suggested < page_size {
                            suggested
                        } else {
                            page_size / 2
                        };
                        tracing::info!(
                            from = page_size,
                            to = next,
                            "response too large for CUCM; shrinking page"
                        );
                        page_size = next;
                        continue;
                    }
                    _ => return Err(e.into()),
                },
            };
            for row in &rows {
                on_row(row);
            }
            total += rows.len() as u64;
            if rows.len() < page_size as usize {
                return Ok(total);
            }
            let next = rows.last().and_then(|r| r.get(key)).unwrap_or_default();
            // The key must grow, or the next page would repeat this one forever.
            if next.is_empty() || next <= last.as_str() {
                return Err(AxlError::Protocol {
                    operation: "executeSQLQuery".into(),
                    detail: format!("rows not ordered by {key} (\"{next}\" after \"{last}\")"),
                }
                .into());
            }
            last = next.to_owned();
        }
    }

    /// Apply what changed on CUCM since the stored cursor.
    pub async fn poll_changes(&self) -> Result<PollReport, SyncError> {
        let state = self.store.snapshot_state(self.target.name()).await?;
        if state.state != RefreshState::Idle {
            return Err(SyncError::NotReady(format!(
                "the snapshot is {}; changes are applied only to a complete snapshot",
                state.state.as_str()
            )));
        }
        let Some(cursor) = self.target.cursor(&state) else {
            return Err(SyncError::NeedsFullRefresh(
                "no change cursor stored".into(),
            ));
        };
        let (changes, new_cursor) =
            match self.client.list_change_all(Some(&cursor), &["User"]).await {
                Ok(r) => r,
                // 5007: wrong queueId (AXL restarted) or a cursor older than the cache.
                Err(e) if e.is_not_found() => {
                    return Err(SyncError::NeedsFullRefresh(e.to_string()))
                }
                Err(e) => return Err(e.into()),
            };
        // The last action per user decides.
        let mut last: HashMap<String, ChangeAction> = HashMap::new();
        for c in changes
            .iter()
            .filter(|c| c.object_type.eq_ignore_ascii_case("User"))
        {
            last.insert(canonical_uuid(&c.uuid), c.action);
        }
        let mut removals: Vec<String> = Vec::new();
        let mut to_fetch: Vec<String> = Vec::new();
        for (uuid, action) in last {
            match action {
                ChangeAction::Removed => removals.push(uuid),
                ChangeAction::Added | ChangeAction::Updated => to_fetch.push(uuid),
            }
        }
        let client = &self.client;
        let fetched: Vec<(String, Result<User, AxlError>)> = futures::stream::iter(to_fetch)
            .map(|uuid| async move {
                let r = client.get_user(Key::Uuid(&uuid)).await;
                (uuid, r)
            })
            .buffer_unordered(self.options.get_concurrency.max(1))
            .collect()
            .await;
        let mut upserts = Vec::new();
        for (uuid, result) in fetched {
            match result {
                Ok(user) => {
                    if let Some(u) = source_user(user, None) {
                        upserts.push(u);
                    }
                }
                // Removed after the change was queued.
                Err(e) if e.is_not_found() => removals.push(uuid),
                // The cursor is not moved: the whole batch is retried on the next poll.
                Err(e) => return Err(e.into()),
            }
        }
        let rows_changed = self
            .target
            .apply(&self.store, &upserts, &removals, &new_cursor)
            .await?;
        Ok(PollReport {
            changes_seen: changes.len(),
            users_fetched: upserts.len(),
            users_removed: removals.len(),
            rows_changed,
        })
    }

    /// Keep the snapshot fresh until `shutdown` completes: a full refresh when the snapshot
    /// is empty, failed, without cursor or older than `full_refresh_every`; otherwise a
    /// change poll every `poll_interval`. Failures are logged and retried with back-off.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        let mut force_full = false;
        loop {
            let result = self.tick(force_full).await;
            force_full = false;
            let wait = match result {
                Ok(()) => {
                    failures = 0;
                    self.options.poll_interval
                }
                Err(SyncError::NeedsFullRefresh(why)) => {
                    tracing::warn!(%why, "change queue lost; doing a full refresh");
                    force_full = true;
                    Duration::ZERO
                }
                Err(SyncError::Store(StoreError::Conflict(why))) => {
                    tracing::info!(%why, "another node is refreshing");
                    self.options.poll_interval
                }
                Err(e) => {
                    failures += 1;
                    let backoff = self
                        .options
                        .poll_interval
                        .saturating_mul(1 << failures.min(6));
                    let wait = backoff.min(Duration::from_secs(300));
                    tracing::warn!(error = %e, ?wait, "snapshot upkeep failed; retrying");
                    wait
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn tick(&self, force_full: bool) -> Result<(), SyncError> {
        let state = self.store.snapshot_state(self.target.name()).await?;
        let now = ucbridge_store::now_millis();
        let full_age_ms =
            i64::try_from(self.options.full_refresh_every.as_millis()).unwrap_or(i64::MAX);
        let due = state
            .last_full_refresh_at
            .is_none_or(|t| now.saturating_sub(t) > full_age_ms);
        let needs_full = force_full
            || due
            || self.target.cursor(&state).is_none()
            || matches!(state.state, RefreshState::Empty | RefreshState::Failed);
        if needs_full || state.state == RefreshState::Refreshing {
            // A claim held by a live refresher is refused (quietly: it is doing our work);
            // a dead one — no heartbeat, or an older lease token — is taken over.
            match self.full_refresh(|_| {}).await {
                Err(SyncError::Store(StoreError::Conflict(why)))
                    if state.state == RefreshState::Refreshing =>
                {
                    tracing::debug!(%why, "another refresher is alive");
                    Ok(())
                }
                other => other.map(|_| ()),
            }
        } else {
            self.poll_changes().await.map(|_| ())
        }
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(ucbridge_store::now_millis() as u128);
    h.finish() as u32
}
