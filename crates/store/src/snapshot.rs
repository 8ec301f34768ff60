//! Stage 1 of directory sync: the local snapshot of CUCM's end users.
//!
//! A full refresh writes into `cucm_users_staging` and swaps it into `cucm_users` in one
//! transaction only when the whole listing succeeded, so a failed or partial read never
//! replaces the previous snapshot. Incremental changes (listChange) upsert or remove single
//! rows. `snapshot_state` records the refresh state, the change-queue cursor and "source
//! users updated at".

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_millis, opt_text, placeholders, Result, Store, StoreError};

/// The snapshot source name of CUCM end users.
pub const SOURCE_CUCM: &str = "cucm";

/// One CUCM end user as kept in the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceUser {
    /// CUCM's pkid, `{UPPER}` as AXL shows it.
    pub uuid: String,
    pub userid: String,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub mailid: Option<String>,
    pub telephone_number: Option<String>,
    pub primary_extension: Option<String>,
    pub primary_extension_partition: Option<String>,
    pub department: Option<String>,
    pub manager: Option<String>,
    pub title: Option<String>,
    pub mobile_number: Option<String>,
    pub home_number: Option<String>,
    pub pager_number: Option<String>,
    pub directory_uri: Option<String>,
    pub status: Option<i64>,
    /// Devices associated with the user, in CUCM's order; the first is the seed's
    /// "Device Name".
    pub associated_devices: Vec<String>,
}

impl SourceUser {
    /// A digest of the content, to skip writing rows that did not change.
    pub fn content_hash(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&json);
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn first_device(&self) -> Option<&str> {
        self.associated_devices.first().map(String::as_str)
    }
}

pub(crate) const COLUMNS: &[&str] = &[
    "uuid",
    "userid",
    "first_name",
    "middle_name",
    "last_name",
    "display_name",
    "mailid",
    "telephone_number",
    "primary_extension",
    "primary_extension_partition",
    "department",
    "manager",
    "title",
    "mobile_number",
    "home_number",
    "pager_number",
    "directory_uri",
    "status",
    "associated_devices",
    "content_hash",
    "changed_at",
];

/// Rows per multi-row INSERT: 21 columns × 400 rows stays under SQLite's 32,766
/// variables and PostgreSQL's 65,535 parameters.
pub(crate) const ROWS_PER_INSERT: usize = 400;

pub(crate) fn bind_user<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    u: &'q SourceUser,
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let devices = serde_json::to_string(&u.associated_devices).unwrap_or_else(|_| "[]".into());
    q.bind(u.uuid.as_str())
        .bind(u.userid.as_str())
        .bind(u.first_name.as_deref())
        .bind(u.middle_name.as_deref())
        .bind(u.last_name.as_deref())
        .bind(u.display_name.as_deref())
        .bind(u.mailid.as_deref())
        .bind(u.telephone_number.as_deref())
        .bind(u.primary_extension.as_deref())
        .bind(u.primary_extension_partition.as_deref())
        .bind(u.department.as_deref())
        .bind(u.manager.as_deref())
        .bind(u.title.as_deref())
        .bind(u.mobile_number.as_deref())
        .bind(u.home_number.as_deref())
        .bind(u.pager_number.as_deref())
        .bind(u.directory_uri.as_deref())
        .bind(u.status)
        .bind(devices)
        .bind(u.content_hash())
        .bind(now)
}

pub(crate) fn user_from_row(row: &AnyRow) -> Result<SourceUser> {
    let devices: String = row.try_get("associated_devices")?;
    Ok(SourceUser {
        uuid: row.try_get("uuid")?,
        userid: row.try_get("userid")?,
        first_name: opt_text(row, "first_name")?,
        middle_name: opt_text(row, "middle_name")?,
        last_name: opt_text(row, "last_name")?,
        display_name: opt_text(row, "display_name")?,
        mailid: opt_text(row, "mailid")?,
        telephone_number: opt_text(row, "telephone_number")?,
        primary_extension: opt_text(row, "primary_extension")?,
        primary_extension_partition: opt_text(row, "primary_extension_partition")?,
        department: opt_text(row, "department")?,
        manager: opt_text(row, "manager")?,
        title: opt_text(row, "title")?,
        mobile_number: opt_text(row, "mobile_number")?,
        home_number: opt_text(row, "home_number")?,
        pager_number: opt_text(row, "pager_number")?,
        directory_uri: opt_text(row, "directory_uri")?,
        status: row.try_get::<Option<i64>, _>("status")?,
        associated_devices: serde_json::from_str(&devices)
            .map_err(|e| StoreError::Corrupt(format!("associated_devices: {e}")))?,
    })
}

/// Who claims a full refresh: `owner` is unique per refresher (one keeper); a server node
/// adds its id and the fencing token of its `snapshot` lease, which lets a successor take
/// a dead node's claim over at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshClaimant {
    pub owner: String,
    pub node: Option<String>,
    pub lease_token: Option<i64>,
}

fn describe_claim(s: &SnapshotState) -> String {
    format!(
        "claimed by {}{}{}",
        s.refresh_owner.as_deref().unwrap_or("?"),
        s.refresh_node
            .as_deref()
            .map(|n| format!(" on node {n}"))
            .unwrap_or_default(),
        s.refresh_lease_token
            .map(|t| format!(" with lease token {t}"))
            .unwrap_or_default()
    )
}

/// Where a refresh stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshState {
    /// Never refreshed.
    Empty,
    /// The snapshot is complete and current as of `source_updated_at`.
    Idle,
    /// A full refresh is under way (the seed's "cache under provisioning").
    Refreshing,
    /// The last full refresh failed; the previous snapshot is kept but not trusted.
    Failed,
}

impl RefreshState {
    fn parse(s: &str) -> Result<RefreshState> {
        Ok(match s {
            "empty" => RefreshState::Empty,
            "idle" => RefreshState::Idle,
            "refreshing" => RefreshState::Refreshing,
            "failed" => RefreshState::Failed,
            other => return Err(StoreError::Corrupt(format!("refresh state {other:?}"))),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RefreshState::Empty => "empty",
            RefreshState::Idle => "idle",
            RefreshState::Refreshing => "refreshing",
            RefreshState::Failed => "failed",
        }
    }
}

/// The snapshot's status row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotState {
    pub source: String,
    pub state: RefreshState,
    /// Why the last refresh failed.
    pub reason: Option<String>,
    /// When the snapshot was last known to match CUCM (full refresh or change poll):
    /// the seed's "Source Users Updated At".
    pub source_updated_at: Option<i64>,
    pub last_full_refresh_at: Option<i64>,
    pub refresh_started_at: Option<i64>,
    pub refresh_owner: Option<String>,
    /// The server node whose refresh it is (`None` for the command line).
    pub refresh_node: Option<String>,
    /// The fencing token of that node's `snapshot` lease when it claimed the refresh.
    pub refresh_lease_token: Option<i64>,
    /// Last sign of life of the refresher (database clock, ms).
    pub refresh_heartbeat_at: Option<i64>,
    pub users_count: i64,
    pub change_queue_id: Option<String>,
    pub next_change_id: Option<i64>,
    /// Where incremental reading of an LDAP source continues (migration 0013).
    pub poll_cursor: Option<String>,
    /// The RFC 4533 sync cookie of an LDAP source read by syncrepl (migration 0013).
    pub sync_cookie: Option<String>,
    /// Per-entry problems of the last full refresh (at most
    /// [`crate::sources::MAX_KEPT_PROBLEMS`] kept) and how many there were in all.
    pub entry_problems: Vec<crate::sources::EntryProblem>,
    pub entry_problem_count: i64,
}

/// What swapping a completed full refresh in changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SwapSummary {
    pub added: u64,
    pub updated: u64,
    pub removed: u64,
    pub total: u64,
}

impl Store {
    async fn ensure_state_row(&self, source: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO snapshot_state (source, state, users_count, updated_at) \
             VALUES ($1, 'empty', 0, $2) ON CONFLICT (source) DO NOTHING",
        )
        .bind(source)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn snapshot_state(&self, source: &str) -> Result<SnapshotState> {
        // A read: the row is inserted only the first time, so status reads do not queue
        // behind writers for SQLite's single write lock.
        let select = || {
            sqlx::query("SELECT * FROM snapshot_state WHERE source = $1")
                .bind(source)
                .fetch_optional(&self.pool)
        };
        let row = match select().await? {
            Some(row) => row,
            None => {
                self.ensure_state_row(source).await?;
                select()
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("no state row for {source}")))?
            }
        };
        let state: String = row.try_get("state")?;
        Ok(SnapshotState {
            source: row.try_get("source")?,
            state: RefreshState::parse(&state)?,
            reason: opt_text(&row, "reason")?,
            source_updated_at: row.try_get("source_updated_at")?,
            last_full_refresh_at: row.try_get("last_full_refresh_at")?,
            refresh_started_at: row.try_get("refresh_started_at")?,
            refresh_owner: opt_text(&row, "refresh_owner")?,
            refresh_node: opt_text(&row, "refresh_node")?,
            refresh_lease_token: row.try_get("refresh_lease_token")?,
            refresh_heartbeat_at: row.try_get("refresh_heartbeat_at")?,
            users_count: row.try_get("users_count")?,
            change_queue_id: opt_text(&row, "change_queue_id")?,
            next_change_id: row.try_get("next_change_id")?,
            poll_cursor: opt_text(&row, "poll_cursor")?,
            sync_cookie: opt_text(&row, "sync_cookie")?,
            entry_problems: match opt_text(&row, "entry_problems")? {
                Some(json) => serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("entry_problems: {e}")))?,
                None => Vec::new(),
            },
            entry_problem_count: row.try_get("entry_problem_count")?,
        })
    }

    /// Claim the full refresh of `source` for `owner` (no node, no lease: the command
    /// line). See [`Store::claim_full_refresh`].
    pub async fn begin_full_refresh(
        &self,
        source: &str,
        owner: &str,
        stale_after_ms: i64,
    ) -> Result<()> {
        let claimant = RefreshClaimant {
            owner: owner.to_owned(),
            node: None,
            lease_token: None,
        };
        self.claim_full_refresh(source, &claimant, stale_after_ms)
            .await
            .map(|_| ())
    }

    /// Claim the full refresh of `source`. Fails with `Conflict` while another refresh is
    /// alive. A claim is dead, and taken over, when its refresher has not shown a sign of
    /// life ([`Store::refresh_heartbeat`], database clock) for `stale_after_ms`, or when it
    /// was made under an older fencing token of the `snapshot` lease than the claimant's
    /// (its node lost the lease: crashed, paused or cut off). The conditional UPDATE makes
    /// the claim atomic across nodes sharing a database. Returns the owner of a claim that
    /// was taken over.
    pub async fn claim_full_refresh(
        &self,
        source: &str,
        claimant: &RefreshClaimant,
        stale_after_ms: i64,
    ) -> Result<Option<String>> {
        let before = self.snapshot_state(source).await?;
        let now = now_millis();
        let db_now = self.db_now_sql();
        let claimed = sqlx::query(&format!(
            "UPDATE snapshot_state SET state = 'refreshing', refresh_owner = $2, \
             refresh_node = $3, refresh_lease_token = $4, refresh_started_at = $5, \
             refresh_heartbeat_at = {db_now}, reason = NULL, updated_at = $5 \
             WHERE source = $1 AND (state <> 'refreshing' \
               OR COALESCE(refresh_heartbeat_at, refresh_started_at, 0) < {db_now} - $6 \
               OR refresh_lease_token < $7)"
        ))
        .bind(source)
        .bind(&claimant.owner)
        .bind(claimant.node.as_deref())
        .bind(claimant.lease_token)
        .bind(now)
        .bind(stale_after_ms)
        // Tokens start at 1: without a lease, no claim is older than ours.
        .bind(claimant.lease_token.unwrap_or(0))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if claimed == 0 {
            let holder = self.snapshot_state(source).await?;
            return Err(StoreError::Conflict(format!(
                "a full refresh of {source} is already running ({})",
                describe_claim(&holder)
            )));
        }
        crate::sources::clear_staging(&self.pool, source).await?;
        let taken_over =
            (before.state == RefreshState::Refreshing).then(|| describe_claim(&before));
        Ok(taken_over)
    }

    /// The refresher's sign of life; `Conflict` when `owner` no longer holds the claim (it
    /// was taken over as dead), so the refresher stops.
    pub async fn refresh_heartbeat(&self, source: &str, owner: &str) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        self.beat_on(&mut conn, source, owner).await
    }

    pub(crate) async fn beat_on(
        &self,
        conn: &mut sqlx::AnyConnection,
        source: &str,
        owner: &str,
    ) -> Result<()> {
        let done = sqlx::query(&format!(
            "UPDATE snapshot_state SET refresh_heartbeat_at = {} \
             WHERE source = $1 AND state = 'refreshing' AND refresh_owner = $2",
            self.db_now_sql()
        ))
        .bind(source)
        .bind(owner)
        .execute(conn)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "the refresh of {source} is no longer owned by {owner} (taken over as dead)"
            )));
        }
        Ok(())
    }

    /// Full-refresh claims of `node` that are still open become `failed` with `why`; the
    /// previous snapshot is kept. For a node starting again under the same name.
    pub async fn abandon_refresh_claims_of(&self, node: &str, why: &str) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        abandon_refresh_claims_on(&mut conn, node, why).await
    }

    /// Add a page of a running full refresh to the staging table; only while `owner` holds
    /// the claim (a refresher taken over as dead must not write into its successor's
    /// staging), which also counts as its heartbeat. The check takes the state row's lock
    /// on PostgreSQL, so a takeover waits for this page or this page sees the takeover.
    pub async fn stage_users(&self, source: &str, owner: &str, users: &[SourceUser]) -> Result<()> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        self.beat_on(&mut tx, source, owner).await?;
        for chunk in users.chunks(ROWS_PER_INSERT) {
            // A user seen twice (pages shifted under concurrent changes) keeps the later copy.
            let sql = format!(
                "INSERT INTO cucm_users_staging ({cols}) VALUES {rows} \
                 ON CONFLICT (uuid) DO UPDATE SET {updates}",
                cols = COLUMNS.join(", "),
                rows = self.row_placeholders(chunk.len(), COLUMNS.len()),
                updates = update_list()
            );
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = bind_user(q, u, now);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replace the snapshot with the staged refresh, atomically, and mark it current.
    pub async fn finish_full_refresh(
        &self,
        source: &str,
        owner: &str,
        cursor: Option<(&str, i64)>,
    ) -> Result<SwapSummary> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        let owned = sqlx::query(
            "SELECT 1 FROM snapshot_state WHERE source = $1 AND state = 'refreshing' AND refresh_owner = $2",
        )
        .bind(source)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        if owned.is_none() {
            return Err(StoreError::Conflict(format!(
                "the refresh of {source} is no longer owned by {owner}"
            )));
        }
        let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
        let added = count(
            "SELECT count(*) FROM cucm_users_staging s WHERE NOT EXISTS \
             (SELECT 1 FROM cucm_users u WHERE u.uuid = s.uuid)",
        )
        .fetch_one(&mut *tx)
        .await?;
        let updated = count(
            "SELECT count(*) FROM cucm_users_staging s JOIN cucm_users u ON u.uuid = s.uuid \
             WHERE u.content_hash <> s.content_hash",
        )
        .fetch_one(&mut *tx)
        .await?;
        let removed = sqlx::query(
            "DELETE FROM cucm_users WHERE NOT EXISTS \
             (SELECT 1 FROM cucm_users_staging s WHERE s.uuid = cucm_users.uuid)",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let cols = COLUMNS.join(", ");
        // `WHERE true` resolves SQLite's parsing ambiguity of INSERT … SELECT … ON CONFLICT.
        sqlx::query(&format!(
            "INSERT INTO cucm_users ({cols}) SELECT {cols} FROM cucm_users_staging WHERE true \
             ON CONFLICT (uuid) DO UPDATE SET {updates} \
             WHERE cucm_users.content_hash <> excluded.content_hash",
            updates = update_list()
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM cucm_users_staging")
            .execute(&mut *tx)
            .await?;
        if added > 0 || updated > 0 || removed > 0 {
            crate::bump_version(&mut tx, "cucm_users").await?;
        }
        let total = count("SELECT count(*) FROM cucm_users")
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE snapshot_state SET state = 'idle', reason = NULL, source_updated_at = $2, \
             last_full_refresh_at = $2, users_count = $3, change_queue_id = $4, \
             next_change_id = $5, refresh_owner = NULL, updated_at = $2 WHERE source = $1",
        )
        .bind(source)
        .bind(now)
        .bind(total)
        .bind(cursor.map(|c| c.0))
        .bind(cursor.map(|c| c.1))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SwapSummary {
            added: u64::try_from(added).unwrap_or(0),
            updated: u64::try_from(updated).unwrap_or(0),
            removed,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    /// Record a failed full refresh; the previous snapshot stays as it was.
    pub async fn fail_full_refresh(&self, source: &str, owner: &str, reason: &str) -> Result<()> {
        let now = now_millis();
        sqlx::query(
            "UPDATE snapshot_state SET state = 'failed', reason = $3, refresh_owner = NULL, \
             updated_at = $4 WHERE source = $1 AND refresh_owner = $2",
        )
        .bind(source)
        .bind(owner)
        .bind(reason)
        .bind(now)
        .execute(&self.pool)
        .await?;
        crate::sources::clear_staging(&self.pool, source).await?;
        Ok(())
    }

    /// Apply incremental changes (from listChange) and move the cursor, in one transaction.
    /// Returns how many rows really changed.
    pub async fn apply_source_changes(
        &self,
        source: &str,
        upserts: &[SourceUser],
        removals: &[String],
        cursor: (&str, i64),
    ) -> Result<u64> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        let mut changed = 0;
        let sql = format!(
            "INSERT INTO cucm_users ({cols}) VALUES ({ph}) ON CONFLICT (uuid) DO UPDATE SET {updates} \
             WHERE cucm_users.content_hash <> excluded.content_hash",
            cols = COLUMNS.join(", "),
            ph = placeholders(1, COLUMNS.len()),
            updates = update_list()
        );
        for u in upserts {
            changed += bind_user(sqlx::query(&sql), u, now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        for uuid in removals {
            changed += sqlx::query("DELETE FROM cucm_users WHERE uuid = $1")
                .bind(uuid)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        if changed > 0 {
            crate::bump_version(&mut tx, "cucm_users").await?;
        }
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM cucm_users")
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE snapshot_state SET source_updated_at = $2, users_count = $3, \
             change_queue_id = $4, next_change_id = $5, updated_at = $2 WHERE source = $1",
        )
        .bind(source)
        .bind(now)
        .bind(total)
        .bind(cursor.0)
        .bind(cursor.1)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// Every user of the snapshot, ordered by userid. Rows are converted as they stream
    /// in, so only the converted users are held, not the driver's row buffers too.
    pub async fn source_users(&self) -> Result<Vec<SourceUser>> {
        use futures::TryStreamExt;
        let mut rows = sqlx::query("SELECT * FROM cucm_users ORDER BY userid").fetch(&self.pool);
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await? {
            out.push(user_from_row(&row)?);
        }
        Ok(out)
    }

    pub async fn source_user(&self, userid: &str) -> Result<Option<SourceUser>> {
        let row = sqlx::query("SELECT * FROM cucm_users WHERE lower(userid) = lower($1)")
            .bind(userid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }
}

/// One consistent read of the snapshot, for planning a sync in two passes: compact match
/// data first (keys, local links), then the full users in keyset pages with the local
/// records of each page's matches. All of it comes from the same database snapshot (a
/// read transaction; REPEATABLE READ on PostgreSQL), even while the keeper writes changes.
pub struct SnapshotRead {
    pub(crate) tx: sqlx::Transaction<'static, sqlx::Any>,
    pub(crate) backend: crate::Backend,
}

/// Where a page of snapshot users ends: the next page starts after this `(userid, uuid)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageMark {
    pub userid: String,
    pub uuid: String,
}

impl PageMark {
    pub fn after(u: &SourceUser) -> PageMark {
        PageMark {
            userid: u.userid.clone(),
            uuid: u.uuid.clone(),
        }
    }
}

/// `n` placeholders for one statement's list, numbered from `first` on PostgreSQL and
/// positional `?` on SQLite (see [`Store::row_placeholders`] for why).
pub(crate) fn list_placeholders(backend: crate::Backend, first: usize, n: usize) -> String {
    match backend {
        crate::Backend::Sqlite => vec!["?"; n].join(", "),
        crate::Backend::Postgres => placeholders(first, n),
    }
}

type UserStream<'a, T> = futures::stream::BoxStream<'a, Result<T>>;

impl Store {
    pub async fn read_snapshot(&self) -> Result<SnapshotRead> {
        let mut tx = self.pool.begin().await?;
        if self.backend == crate::Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            // Read-only, no row locks: the session limits meant for writers do not apply.
            // The read stays open while batches apply.
            for name in ["idle_in_transaction_session_timeout", "statement_timeout"] {
                sqlx::query(&format!("SET LOCAL {name} = '1h'"))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Ok(SnapshotRead {
            tx,
            backend: self.backend,
        })
    }
}

impl SnapshotRead {
    /// The change counters as of this read.
    pub async fn versions(&mut self) -> Result<crate::DataVersions> {
        crate::read_versions(&mut self.tx).await
    }

    /// ucbridge's users as of this read, every field (small directories and tests; a sync
    /// reads [`SnapshotRead::local_matches`] and [`SnapshotRead::local_users_by_id`]).
    pub async fn local_users(&mut self) -> Result<Vec<crate::LocalUser>> {
        crate::users::local_users_on(&mut self.tx).await
    }

    /// What matching needs of every local user, one at a time.
    pub fn local_matches(&mut self) -> UserStream<'_, crate::LocalMatch> {
        use futures::StreamExt;
        sqlx::query(crate::users::MATCH_SELECT)
            .fetch(&mut *self.tx)
            .map(|row| {
                row.map_err(StoreError::from)
                    .and_then(|r| crate::users::match_from_row(&r))
            })
            .boxed()
    }

    /// The full local users with these ids (any order; ids gone are left out).
    pub async fn local_users_by_id(&mut self, ids: &[i64]) -> Result<Vec<crate::LocalUser>> {
        crate::users::local_users_by_id_on(&mut self.tx, self.backend, ids).await
    }

    /// Every entry of `source` with only the fields a sync key can use (uuid, userid,
    /// mailid, primary extension) and whether its directory disables it, one at a time.
    /// The default CUCM source reads `cucm_users` (never disabled).
    pub fn source_keys(&mut self, source: &str) -> UserStream<'_, (SourceUser, bool)> {
        use futures::StreamExt;
        let query = if source == SOURCE_CUCM {
            sqlx::query(
                "SELECT uuid, userid, mailid, primary_extension, 0 AS disabled FROM cucm_users",
            )
        } else {
            sqlx::query(
                "SELECT uuid, userid, mailid, primary_extension, disabled FROM source_users \
                 WHERE source = $1",
            )
            .bind(source.to_owned())
        };
        query
            .fetch(&mut *self.tx)
            .map(|row| {
                let row = row?;
                let disabled = row.try_get::<i64, _>("disabled")? != 0;
                let user = SourceUser {
                    uuid: row.try_get("uuid")?,
                    userid: row.try_get("userid")?,
                    mailid: opt_text(&row, "mailid")?,
                    primary_extension: opt_text(&row, "primary_extension")?,
                    ..SourceUser::default()
                };
                Ok((user, disabled))
            })
            .boxed()
    }

    /// One page of `source`'s full users in `(userid, uuid)` order, after `after`. Keyset
    /// paging: each page is an indexed range read, whatever the page number.
    pub async fn source_users_page(
        &mut self,
        source: &str,
        after: Option<&PageMark>,
        limit: usize,
    ) -> Result<Vec<SourceUser>> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let (table, filter) = if source == SOURCE_CUCM {
            ("cucm_users", "$1 = $1")
        } else {
            ("source_users", "source = $1")
        };
        let range = if after.is_some() {
            // The first conjunct alone is an index range on userid in both backends.
            "AND userid >= $2 AND (userid > $2 OR uuid > $3)"
        } else {
            "AND $2 = $2 AND $3 = $3"
        };
        let sql =
            format!("SELECT * FROM {table} WHERE {filter} {range} ORDER BY userid, uuid LIMIT $4");
        let mark = after.cloned().unwrap_or_default();
        let rows = sqlx::query(&sql)
            .bind(source)
            .bind(mark.userid)
            .bind(mark.uuid)
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// The users of `source` with these identities (any order; those gone are left out).
    pub async fn source_users_by_uuid(
        &mut self,
        source: &str,
        uuids: &[&str],
    ) -> Result<Vec<SourceUser>> {
        let mut out = Vec::with_capacity(uuids.len());
        for chunk in uuids.chunks(crate::users::IDS_PER_SELECT) {
            let sql = if source == SOURCE_CUCM {
                format!(
                    "SELECT * FROM cucm_users WHERE uuid IN ({})",
                    list_placeholders(self.backend, 1, chunk.len())
                )
            } else {
                format!(
                    "SELECT * FROM source_users WHERE source = {} AND uuid IN ({})",
                    list_placeholders(self.backend, 1, 1),
                    list_placeholders(self.backend, 2, chunk.len())
                )
            };
            let mut q = sqlx::query(&sql);
            if source != SOURCE_CUCM {
                q = q.bind(source);
            }
            for uuid in chunk {
                q = q.bind(*uuid);
            }
            for row in q.fetch_all(&mut *self.tx).await? {
                out.push(user_from_row(&row)?);
            }
        }
        Ok(out)
    }

    /// End the read.
    pub async fn finish(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

fn update_list() -> String {
    COLUMNS
        .iter()
        .filter(|c| **c != "uuid")
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// [`Store::abandon_refresh_claims_of`] on a given connection (node recovery's transaction).
pub(crate) async fn abandon_refresh_claims_on(
    conn: &mut sqlx::AnyConnection,
    node: &str,
    why: &str,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE snapshot_state SET state = 'failed', reason = $2, refresh_owner = NULL, \
         updated_at = $3 WHERE state = 'refreshing' AND refresh_node = $1",
    )
    .bind(node)
    .bind(why)
    .bind(now_millis())
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
