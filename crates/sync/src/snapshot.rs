//! Stage 1: keep the local snapshot of CUCM end users fresh.
//!
//! - Full refresh: claim the refresh (one node at a time), note the change-queue position,
//!   read the users page by page with executeSQLQuery and stage every page, then swap the
//!   staging table in atomically. Any failure leaves the previous snapshot as it was and
//!   marks the state `failed`.
//! - Incremental: poll listChange from the stored cursor and getUser each added or
//!   updated user, so a change on CUCM reaches the snapshot within one poll interval.
//!
//! Why SQL pages by key rather than listUser: listUser pages with `skip`, and a SKIP page
//! costs the database every skipped row, so a refresh grew quadratically with the users
//! (and LUser lacks display name and devices, which needed a second read of all users
//! held in memory). Here each page is `FIRST n … WHERE pkid > last ORDER BY pkid`
//! (keyset), and the devices of exactly that page's pkid range are read with it, so the
//! cost per user is flat and memory holds one page. Pages stay far below CUCM's 8 MB
//! answer limit for executeSQLQuery (AXL Developer Guide, "Data Throttling"); an answer
//! that is too large anyway shrinks the page. The rows must equal what getUser gives (the
//! incremental path), or every poll would see phantom changes.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use ucbridge_axl::{AxlClient, AxlError, ChangeAction, ChangeCursor, Key, SqlQuery, SqlRow, User};
use ucbridge_store::{
    RefreshClaimant, RefreshState, SourceKind, SourceUser, Store, StoreError, SwapSummary,
};

use crate::cucm_source::SourceTarget;
use crate::SyncError;

/// One page of end users with everything the snapshot keeps, as getUser has it (the lab's
/// getUser SELECT, crates/lab/src/ops/user.rs). Unconfirmed on a real CUCM, hence kept to
/// the simplest forms: that `tkdnusage = 1` is the primary extension (typednusage
/// "Primary Extension", as the lab models it; not checked against the data dictionary),
/// that Informix orders and compares the `pkid` strings (lower-case GUID text) as Rust
/// compares them, and `> ''` before the first page.
const USERS_SQL: &str = "SELECT FIRST ? eu.pkid, eu.userid, eu.firstname, eu.middlename, \
    eu.lastname, eu.displayname, eu.mailid, eu.department, eu.manager, eu.status, \
    eu.directoryuri, eu.telephonenumber, eu.title, eu.mobile, eu.homephone, eu.pager, \
    np.dnorpattern, rp.name \
    FROM enduser eu \
    LEFT OUTER JOIN endusernumplanmap enm ON enm.fkenduser = eu.pkid AND enm.tkdnusage = 1 \
    LEFT OUTER JOIN numplan np ON np.pkid = enm.fknumplan \
    LEFT OUTER JOIN routepartition rp ON rp.pkid = np.fkroutepartition \
    WHERE eu.pkid > ? ORDER BY eu.pkid";

/// Controlled devices (`tkuserassociation = 1`, what getUser lists as associatedDevices)
/// of the users in one pkid range, after a (fkenduser, pkid) key.
const DEVICES_SQL: &str = "SELECT FIRST ? m.fkenduser, m.pkid, d.name \
    FROM enduserdevicemap m JOIN device d ON d.pkid = m.fkdevice \
    WHERE m.tkuserassociation = 1 AND m.fkenduser >= ? AND m.fkenduser <= ? \
    AND (m.fkenduser > ? OR m.pkid > ?) ORDER BY m.fkenduser, m.pkid";

/// Default of [`SnapshotOptions::stale_refresh_after`].
pub const DEFAULT_STALE_REFRESH_AFTER: Duration = Duration::from_secs(60);
/// The shortest accepted `stale_refresh_after`: beats come every quarter of it, and each
/// is one database round trip.
pub const MIN_STALE_REFRESH_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// End users per executeSQLQuery page of a full refresh (`[snapshot] page_size`).
    pub page_size: u32,
    /// Device-association rows per executeSQLQuery page, within one page of users (more
    /// than one page only when those users have more devices than this).
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

/// The snapshot user of a getUser answer (the incremental path): devices sorted and
/// deduplicated, as [`sql_source_user`] and the full refresh make them.
fn source_user(u: User) -> Option<SourceUser> {
    let uuid = canonical_uuid(u.uuid.as_deref()?);
    let userid = u.userid?;
    let mut devices = u.associated_devices;
    devices.sort();
    devices.dedup();
    Some(SourceUser {
        uuid,
        userid,
        first_name: u.first_name,
        middle_name: u.middle_name,
        last_name: u.last_name,
        display_name: u.display_name,
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

/// A column as AXL's getUser would give the field: trimmed, empty or NULL as `None`
/// (CUCM sends `<col/>` for both, and AXL's parser drops blank elements).
fn text(row: &SqlRow, column: &str) -> Option<String> {
    row.get(column)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The snapshot user of one [`USERS_SQL`] row, field for field what [`source_user`] makes
/// of getUser (devices are added by the caller). A primary extension without pattern is
/// none, and its partition goes with it, as `DirectoryNumber::from_node` reads `XDirn`.
fn sql_source_user(row: &SqlRow) -> Option<SourceUser> {
    let uuid = canonical_uuid(row.get("pkid").filter(|p| !p.trim().is_empty())?);
    let userid = text(row, "userid")?;
    let primary_extension = text(row, "dnorpattern");
    let primary_extension_partition = primary_extension.as_ref().and(text(row, "name"));
    Some(SourceUser {
        uuid,
        userid,
        first_name: text(row, "firstname"),
        middle_name: text(row, "middlename"),
        last_name: text(row, "lastname"),
        display_name: text(row, "displayname"),
        mailid: text(row, "mailid"),
        telephone_number: text(row, "telephonenumber"),
        primary_extension,
        primary_extension_partition,
        department: text(row, "department"),
        manager: text(row, "manager"),
        title: text(row, "title"),
        mobile_number: text(row, "mobile"),
        home_number: text(row, "homephone"),
        pager_number: text(row, "pager"),
        directory_uri: text(row, "directoryuri"),
        // getUser's <status> is this integer (1 active, 2 inactive), parsed the same way.
        status: text(row, "status").and_then(|s| s.parse().ok()),
        associated_devices: Vec::new(),
    })
}

/// Keyset paging over executeSQLQuery: each page is `FIRST n` rows after the last key
/// seen (`key` columns, compared as a tuple of strings). A "Query request too large"
/// answer shrinks the page as the list pagers do (to 90 % of CUCM's suggestion, else
/// half) down to one row. Keys must not go down within a page and must grow from page
/// to page, or the next page could repeat this one forever.
struct KeysetPager {
    key: &'static [&'static str],
    page_size: u32,
    last: Option<Vec<String>>,
    done: bool,
}

impl KeysetPager {
    fn new(key: &'static [&'static str], page_size: u32) -> Self {
        KeysetPager {
            key,
            page_size: page_size.max(1),
            last: None,
            done: false,
        }
    }

    /// The next page, `None` after the last. `query` makes the statement for a page
    /// size and the last key of the previous page (`None` for the first).
    async fn next_page(
        &mut self,
        client: &AxlClient,
        query: impl Fn(u32, Option<&[String]>) -> SqlQuery,
    ) -> Result<Option<Vec<SqlRow>>, SyncError> {
        if self.done {
            return Ok(None);
        }
        // Bounded: every retry shrinks the page, and one row that is too large fails.
        let rows = loop {
            match client
                .execute_sql_query(query(self.page_size, self.last.as_deref()))
                .await
            {
                Ok(rows) => break rows,
                Err(e) => match e.query_too_large() {
                    Some(q) if self.page_size > 1 => {
                        let suggested = u32::try_from(q.suggested_rows.saturating_mul(9) / 10)
                            .unwrap_or(u32::MAX);
                        let next = if suggested > 0 && suggested < self.page_size {
                            suggested
                        } else {
                            self.page_size / 2
                        };
                        tracing::info!(
                            from = self.page_size,
                            to = next,
                            "response too large for CUCM; shrinking page"
                        );
                        self.page_size = next;
                    }
                    _ => return Err(e.into()),
                },
            }
        };
        self.check_order(&rows)?;
        if rows.len() < self.page_size as usize {
            self.done = true;
        } else {
            self.last = rows.last().map(|r| self.key_of(r));
        }
        Ok(Some(rows).filter(|r| !r.is_empty()))
    }

    fn key_of(&self, row: &SqlRow) -> Vec<String> {
        self.key
            .iter()
            .map(|c| row.get(c).unwrap_or_default().to_owned())
            .collect()
    }

    fn check_order(&self, rows: &[SqlRow]) -> Result<(), SyncError> {
        let mut previous = self.last.clone();
        for (i, row) in rows.iter().enumerate() {
            let key = self.key_of(row);
            let bad = key.iter().any(String::is_empty)
                || previous.as_ref().is_some_and(|p| {
                    // Strictly after the previous page; equal keys only within a page.
                    if i == 0 {
                        key <= *p
                    } else {
                        key < *p
                    }
                });
            if bad {
                return Err(AxlError::Protocol {
                    operation: "executeSQLQuery".into(),
                    detail: format!(
                        "rows not ordered by {} ({key:?} after {previous:?})",
                        self.key.join(", ")
                    ),
                }
                .into());
            }
            previous = Some(key);
        }
        Ok(())
    }
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
        // 2. The users by keyset SQL pages, each with its devices, into the staging table.
        let phase = Instant::now();
        let mut pager = KeysetPager::new(&["pkid"], self.options.page_size);
        let (mut read, mut pages) = (0u64, 0u64);
        let users_query = |rows: u32, last: Option<&[String]>| {
            let from = last.and_then(|k| k.first()).map_or("", String::as_str);
            SqlQuery::new(USERS_SQL)
                .bind_int(i64::from(rows))
                .bind(from)
        };
        // Time spent writing the staging table, to tell CUCM's share from the store's.
        let mut staging = Duration::ZERO;
        while let Some(rows) = pager.next_page(&self.client, users_query).await? {
            pages += 1;
            let users = self.page_users(&rows).await?;
            read += users.len() as u64;
            let staged = Instant::now();
            self.target
                .stage(&self.store, &self.claimant.owner, &users)
                .await?;
            staging += staged.elapsed();
            progress(read);
        }
        tracing::info!(
            elapsed_ms = phase.elapsed().as_millis(),
            staging_ms = staging.as_millis(),
            users = read,
            pages,
            "refresh: users read and staged"
        );
        Ok((cursor, pages))
    }

    /// The snapshot users of one page of [`USERS_SQL`] rows, with the devices of exactly
    /// that page's pkid range.
    async fn page_users(&self, rows: &[SqlRow]) -> Result<Vec<SourceUser>, SyncError> {
        let (Some(first), Some(last)) = (
            rows.first().and_then(|r| r.get("pkid")),
            rows.last().and_then(|r| r.get("pkid")),
        ) else {
            return Ok(Vec::new());
        };
        let mut devices = self.page_devices(first, last).await?;
        let mut users: Vec<SourceUser> = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(mut user) = sql_source_user(row) else {
                continue;
            };
            // One row per user; a second primary-extension row would repeat the pkid.
            if users.last().is_some_and(|u| u.uuid == user.uuid) {
                continue;
            }
            let mut own = devices.remove(&user.uuid).unwrap_or_default();
            own.sort();
            own.dedup();
            user.associated_devices = own;
            users.push(user);
        }
        Ok(users)
    }

    /// Controlled devices of the users whose pkid is in `first..=last`, by canonical user
    /// uuid; paged by the map's own pkid when the range has more rows than a page.
    async fn page_devices(
        &self,
        first: &str,
        last: &str,
    ) -> Result<HashMap<String, Vec<String>>, SyncError> {
        let mut devices: HashMap<String, Vec<String>> = HashMap::new();
        let mut pager = KeysetPager::new(&["fkenduser", "pkid"], self.options.sql_page_size);
        let query = |rows: u32, after: Option<&[String]>| {
            // (fkenduser, pkid) > (user, pkid), written so the range on fkenduser alone
            // bounds the index scan: `fkenduser >= user AND (fkenduser > user OR pkid > …)`.
            let (user, pkid) = match after {
                Some([user, pkid]) => (user.as_str(), pkid.as_str()),
                _ => (first, ""),
            };
            SqlQuery::new(DEVICES_SQL)
                .bind_int(i64::from(rows))
                .bind(user)
                .bind(last)
                .bind(user)
                .bind(pkid)
        };
        while let Some(rows) = pager.next_page(&self.client, query).await? {
            for row in &rows {
                if let (Some(user), Some(device)) = (text(row, "fkenduser"), text(row, "name")) {
                    devices
                        .entry(canonical_uuid(&user))
                        .or_default()
                        .push(device);
                }
            }
        }
        Ok(devices)
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
                    if let Some(u) = source_user(user) {
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
