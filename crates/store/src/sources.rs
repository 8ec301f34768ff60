//! Directory sources (migration 0013): named sources of people beside the default CUCM
//! snapshot, and the snapshot of each.
//!
//! A source has a name and a kind (`cucm`: one CUCM cluster; `ldap`: OpenLDAP or Active
//! Directory). The default source `cucm` keeps its snapshot in `cucm_users` (unchanged, so
//! databases from before 0013 keep working); every other source keeps its entries in
//! `source_users`, keyed by `(source, uuid)` where `uuid` is the entry's stable identity
//! (CUCM pkid, LDAP `entryUUID`, AD `objectGUID`). A full refresh stages into
//! `source_users_staging` and is swapped in per source in one transaction, exactly like the
//! CUCM snapshot: a failed or partial read never replaces the previous snapshot. Claims,
//! heartbeats and failure use the same `snapshot_state` row per source as CUCM
//! ([`Store::claim_full_refresh`], [`Store::fail_full_refresh`]).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::snapshot::{bind_user, user_from_row, COLUMNS, ROWS_PER_INSERT};
use crate::{now_millis, opt_text, Result, SourceUser, Store, StoreError, SwapSummary};

/// How many per-entry problems of a refresh are kept in `snapshot_state` (all are counted).
pub const MAX_KEPT_PROBLEMS: usize = 100;

/// What kind of directory a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// One CUCM cluster, read over AXL.
    Cucm,
    /// An LDAP directory: OpenLDAP or Active Directory.
    Ldap,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Cucm => "cucm",
            SourceKind::Ldap => "ldap",
        }
    }

    fn parse(s: &str) -> Result<SourceKind> {
        match s {
            "cucm" => Ok(SourceKind::Cucm),
            "ldap" => Ok(SourceKind::Ldap),
            other => Err(StoreError::Corrupt(format!("source kind {other:?}"))),
        }
    }
}

/// A registered source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectorySource {
    pub name: String,
    pub kind: SourceKind,
    /// For `cucm` sources: the cluster its users belong to (the source name by default).
    pub cluster: Option<String>,
}

/// One entry of a non-default source: the same fields as a CUCM end user (so the sync
/// rules read every source alike), where it lives, and whether the directory disables it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceEntry {
    /// `user.uuid` is the stable identity (entryUUID, objectGUID or pkid).
    pub user: SourceUser,
    /// The entry's DN (LDAP), for messages and people.
    pub dn: Option<String>,
    /// Disabled in the directory (AD: userAccountControl bit 0x2, ACCOUNTDISABLE).
    pub disabled: bool,
}

/// An entry a refresh could not take, and why (it is left out; the refresh goes on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryProblem {
    /// The DN, or the identity when the DN is unreadable.
    pub entry: String,
    pub message: String,
}

/// How a full refresh of a source ended: its swap, and where incremental reading goes on.
#[derive(Debug, Clone, Default)]
pub struct SourceRefreshEnd<'a> {
    pub poll_cursor: Option<&'a str>,
    pub problems: &'a [EntryProblem],
    pub problem_count: u64,
    /// The syncrepl cookie (RFC 4533) for the state the refresh read, if the directory
    /// gave one; `None` keeps the stored cookie (older, so resuming from it re-sends more,
    /// never less).
    pub sync_cookie: Option<&'a str>,
}

fn entry_from_row(row: &AnyRow) -> Result<SourceEntry> {
    Ok(SourceEntry {
        user: user_from_row(row)?,
        dn: opt_text(row, "dn")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
    })
}

fn entry_columns() -> String {
    format!("source, {}, dn, disabled", COLUMNS.join(", "))
}

fn entry_updates() -> String {
    COLUMNS
        .iter()
        .filter(|c| **c != "uuid")
        .chain(["dn", "disabled"].iter())
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds one row in [`entry_columns`] order. The content hash covers the user fields; the
/// swap and upserts compare `disabled` and `dn` on their own, so a (re-)enable or a move
/// is a change too.
fn bind_entry<'q>(q: AnyQuery<'q>, source: &'q str, e: &'q SourceEntry, now: i64) -> AnyQuery<'q> {
    bind_user(q.bind(source), &e.user, now)
        .bind(e.dn.as_deref())
        .bind(i64::from(e.disabled))
}

/// Empty the staging area of `source` (a new claim, or a failed refresh).
pub(crate) async fn clear_staging(pool: &sqlx::AnyPool, source: &str) -> Result<()> {
    if source == crate::SOURCE_CUCM {
        sqlx::query("DELETE FROM cucm_users_staging")
            .execute(pool)
            .await?;
    } else {
        sqlx::query("DELETE FROM source_users_staging WHERE source = $1")
            .bind(source)
            .execute(pool)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Register a source, or confirm one that exists. A source keeps its kind for life:
    /// naming an existing source with another kind is a `Conflict`, never a silent change
    /// (its snapshot would be read as the wrong kind). `cucm` is the default CUCM source.
    pub async fn register_source(
        &self,
        name: &str,
        kind: SourceKind,
        cluster: Option<&str>,
    ) -> Result<DirectorySource> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(StoreError::Conflict(
                "a source name must have 1 to 64 characters".into(),
            ));
        }
        let now = now_millis();
        sqlx::query(
            "INSERT INTO directory_sources (name, kind, cluster, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(kind.as_str())
        .bind(cluster)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let found = self
            .directory_source(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("source {name} vanished")))?;
        if found.kind != kind {
            return Err(StoreError::Conflict(format!(
                "source {name} is a {} source, not {}",
                found.kind.as_str(),
                kind.as_str()
            )));
        }
        if cluster.is_some() && found.cluster.as_deref() != cluster {
            sqlx::query(
                "UPDATE directory_sources SET cluster = $2, updated_at = $3 WHERE name = $1",
            )
            .bind(name)
            .bind(cluster)
            .bind(now)
            .execute(&self.pool)
            .await?;
            return Ok(DirectorySource {
                cluster: cluster.map(str::to_owned),
                ..found
            });
        }
        Ok(found)
    }

    pub async fn directory_source(&self, name: &str) -> Result<Option<DirectorySource>> {
        let row = sqlx::query("SELECT name, kind, cluster FROM directory_sources WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| source_from_row(&r)).transpose()
    }

    /// Every registered source, by name (a handful: not paged).
    pub async fn directory_sources(&self) -> Result<Vec<DirectorySource>> {
        let rows = sqlx::query("SELECT name, kind, cluster FROM directory_sources ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(source_from_row).collect()
    }

    /// Add entries of a running full refresh of `source` to its staging area; only while
    /// `owner` holds the claim (which also counts as its heartbeat). An identity seen twice
    /// keeps the later copy.
    pub async fn stage_source_entries(
        &self,
        source: &str,
        owner: &str,
        entries: &[SourceEntry],
    ) -> Result<()> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        self.beat_on(&mut tx, source, owner).await?;
        let per_row = COLUMNS.len() + 3;
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO source_users_staging ({cols}) VALUES {rows} \
                 ON CONFLICT (source, uuid) DO UPDATE SET {updates}",
                cols = entry_columns(),
                rows = self.row_placeholders(chunk.len(), per_row),
                updates = entry_updates()
            );
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = bind_entry(q, source, e, now);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replace the snapshot of `source` with its staged refresh, atomically, and mark it
    /// current; records where incremental reading continues and the per-entry problems.
    pub async fn finish_source_refresh(
        &self,
        source: &str,
        owner: &str,
        end: &SourceRefreshEnd<'_>,
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
        let summary = swap_staging(&mut tx, source).await?;
        let kept: Vec<&EntryProblem> = end.problems.iter().take(MAX_KEPT_PROBLEMS).collect();
        let problems = serde_json::to_string(&kept)
            .map_err(|e| StoreError::Corrupt(format!("entry problems: {e}")))?;
        sqlx::query(
            "UPDATE snapshot_state SET state = 'idle', reason = NULL, source_updated_at = $2, \
             last_full_refresh_at = $2, users_count = $3, poll_cursor = $4, \
             entry_problems = $5, entry_problem_count = $6, refresh_owner = NULL, \
             sync_cookie = COALESCE($7, sync_cookie), updated_at = $2 WHERE source = $1",
        )
        .bind(source)
        .bind(now)
        .bind(i64::try_from(summary.total).unwrap_or(i64::MAX))
        .bind(end.poll_cursor)
        .bind(problems)
        .bind(i64::try_from(end.problem_count).unwrap_or(i64::MAX))
        .bind(end.sync_cookie)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// Apply incremental changes to `source` (upserts by identity, removals by identity)
    /// and move its cursor, in one transaction. Returns how many rows really changed.
    pub async fn apply_source_entry_changes(
        &self,
        source: &str,
        upserts: &[SourceEntry],
        removals: &[String],
        poll_cursor: Option<&str>,
    ) -> Result<u64> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        let mut changed = 0;
        // One identity twice in one statement is an error for PostgreSQL's ON CONFLICT;
        // the later copy wins, as it would one row at a time.
        let mut seen = std::collections::HashSet::new();
        let mut latest: Vec<&SourceEntry> = upserts
            .iter()
            .rev()
            .filter(|e| seen.insert(e.user.uuid.as_str()))
            .collect();
        latest.reverse();
        let per_row = COLUMNS.len() + 3;
        for chunk in latest.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO source_users ({cols}) VALUES {rows} \
                 ON CONFLICT (source, uuid) DO UPDATE SET {updates} \
                 WHERE source_users.content_hash <> excluded.content_hash \
                    OR source_users.disabled <> excluded.disabled \
                    OR COALESCE(source_users.dn, '') <> COALESCE(excluded.dn, '')",
                cols = entry_columns(),
                rows = self.row_placeholders(chunk.len(), per_row),
                updates = entry_updates()
            );
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = bind_entry(q, source, e, now);
            }
            changed += q.execute(&mut *tx).await?.rows_affected();
        }
        for uuid in removals {
            changed += sqlx::query("DELETE FROM source_users WHERE source = $1 AND uuid = $2")
                .bind(source)
                .bind(uuid)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        if changed > 0 {
            crate::bump_version(&mut tx, "source_users").await?;
        }
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM source_users WHERE source = $1")
            .bind(source)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE snapshot_state SET source_updated_at = $2, users_count = $3, \
             poll_cursor = COALESCE($4, poll_cursor), updated_at = $2 WHERE source = $1",
        )
        .bind(source)
        .bind(now)
        .bind(total)
        .bind(poll_cursor)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// Remember the syncrepl cookie of `source` (RFC 4533: where a new session resumes).
    pub async fn set_sync_cookie(&self, source: &str, cookie: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE snapshot_state SET sync_cookie = $2, updated_at = $3 WHERE source = $1",
        )
        .bind(source)
        .bind(cookie)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One page of the entries of `source`, by identity after `after` (keyset paging: each
    /// page costs the same however deep it is).
    pub async fn source_entries_page(
        &self,
        source: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SourceEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM source_users WHERE source = $1 AND uuid > $2 ORDER BY uuid LIMIT $3",
        )
        .bind(source)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The entry of `source` with this identity.
    pub async fn source_entry(&self, source: &str, uuid: &str) -> Result<Option<SourceEntry>> {
        let row = sqlx::query("SELECT * FROM source_users WHERE source = $1 AND uuid = $2")
            .bind(source)
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    /// The entries of `source` whose userid is `userid` (case-insensitive).
    pub async fn source_entries_by_userid(
        &self,
        source: &str,
        userid: &str,
    ) -> Result<Vec<SourceEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM source_users WHERE source = $1 AND lower(userid) = lower($2) \
             ORDER BY uuid LIMIT 100",
        )
        .bind(source)
        .bind(userid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Userids (lower-cased) staged more than once in the running refresh of `source`,
    /// with their counts; at most 100.
    pub async fn staged_duplicate_userids(&self, source: &str) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT lower(userid) AS userid, count(*) AS n FROM source_users_staging \
             WHERE source = $1 GROUP BY lower(userid) HAVING count(*) > 1 \
             ORDER BY lower(userid) LIMIT 100",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("userid")?, r.try_get("n")?)))
            .collect()
    }

    /// How many entries `source` has.
    pub async fn source_entry_count(&self, source: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM source_users WHERE source = $1")
                .bind(source)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// A source a local user came from (table `user_sources`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSource {
    pub source: String,
    /// The entry's identity in that source.
    pub source_key: String,
    /// The CUCM cluster, for `cucm` sources.
    pub cluster: Option<String>,
}

impl Store {
    /// The sources the local user `username` came from, by source name.
    pub async fn user_sources(&self, username: &str) -> Result<Vec<UserSource>> {
        let rows = sqlx::query(
            "SELECT s.source, s.source_key, s.cluster FROM user_sources s \
             JOIN users u ON u.id = s.user_id WHERE lower(u.username) = lower($1) \
             ORDER BY s.source LIMIT 100",
        )
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UserSource {
                    source: r.try_get("source")?,
                    source_key: r.try_get("source_key")?,
                    cluster: opt_text(r, "cluster")?,
                })
            })
            .collect()
    }
}

fn source_from_row(row: &AnyRow) -> Result<DirectorySource> {
    let kind: String = row.try_get("kind")?;
    Ok(DirectorySource {
        name: row.try_get("name")?,
        kind: SourceKind::parse(&kind)?,
        cluster: opt_text(row, "cluster")?,
    })
}

/// The swap of one source's staging area into its snapshot (inside the caller's
/// transaction): count what changes, delete what is gone, upsert what differs.
async fn swap_staging(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    source: &str,
) -> Result<SwapSummary> {
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).bind(source);
    let added = count(
        "SELECT count(*) FROM source_users_staging s WHERE s.source = $1 AND NOT EXISTS \
         (SELECT 1 FROM source_users u WHERE u.source = s.source AND u.uuid = s.uuid)",
    )
    .fetch_one(&mut **tx)
    .await?;
    let updated = count(
        "SELECT count(*) FROM source_users_staging s JOIN source_users u \
         ON u.source = s.source AND u.uuid = s.uuid WHERE s.source = $1 \
         AND (u.content_hash <> s.content_hash OR u.disabled <> s.disabled \
              OR COALESCE(u.dn, '') <> COALESCE(s.dn, ''))",
    )
    .fetch_one(&mut **tx)
    .await?;
    let removed = sqlx::query(
        "DELETE FROM source_users WHERE source = $1 AND NOT EXISTS \
         (SELECT 1 FROM source_users_staging s \
          WHERE s.source = source_users.source AND s.uuid = source_users.uuid)",
    )
    .bind(source)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let cols = entry_columns();
    // `WHERE … = $1` also resolves SQLite's parsing ambiguity of INSERT … SELECT … ON CONFLICT.
    sqlx::query(&format!(
        "INSERT INTO source_users ({cols}) SELECT {cols} FROM source_users_staging \
         WHERE source = $1 ON CONFLICT (source, uuid) DO UPDATE SET {updates} \
         WHERE source_users.content_hash <> excluded.content_hash \
            OR source_users.disabled <> excluded.disabled \
            OR COALESCE(source_users.dn, '') <> COALESCE(excluded.dn, '')",
        updates = entry_updates()
    ))
    .bind(source)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM source_users_staging WHERE source = $1")
        .bind(source)
        .execute(&mut **tx)
        .await?;
    if added > 0 || updated > 0 || removed > 0 {
        crate::bump_version(tx, "source_users").await?;
    }
    let total = count("SELECT count(*) FROM source_users WHERE source = $1")
        .fetch_one(&mut **tx)
        .await?;
    Ok(SwapSummary {
        added: u64::try_from(added).unwrap_or(0),
        updated: u64::try_from(updated).unwrap_or(0),
        removed,
        total: u64::try_from(total).unwrap_or(0),
    })
}

impl Store {
    /// The user with identity `uuid` in the snapshot of `source` (the default CUCM source
    /// or another), by index.
    pub async fn snapshot_user(&self, source: &str, uuid: &str) -> Result<Option<SourceUser>> {
        if source == crate::SOURCE_CUCM {
            let row = sqlx::query("SELECT * FROM cucm_users WHERE uuid = $1")
                .bind(uuid)
                .fetch_optional(&self.pool)
                .await?;
            return row.as_ref().map(user_from_row).transpose();
        }
        Ok(self.source_entry(source, uuid).await?.map(|e| e.user))
    }
}
