//! LDAP export state (tables `ldap_export_entries` and `ldap_export_runs`, migration 0005).
//!
//! Per local user: the DN ucbridge last wrote, a fingerprint of what it wrote, and whether
//! ucbridge added the entry (only such entries are ever deleted by default). Plus one row
//! per export run with its counts. The LDAP logic itself lives in `ucbridge-ldap`.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::users::LocalUser;
use crate::{now_millis, opt_text, Result, Store, StoreError};

/// A local user as the LDAP export needs it: the user plus the password hash, which
/// `LocalUser` deliberately leaves out.
#[derive(Clone)]
pub struct ExportUser {
    pub user: LocalUser,
    /// The argon2id PHC string, if the user has a password.
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for ExportUser {
    // A password hash can be attacked offline; it has no place in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportUser")
            .field("user", &self.user)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<hash>"),
            )
            .finish()
    }
}

/// What ucbridge last wrote to the directory for one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LdapExportEntry {
    pub user_id: i64,
    pub username: String,
    pub dn: String,
    pub fingerprint: String,
    /// ucbridge added the entry (as opposed to updating one that already existed).
    pub created: bool,
    pub exported_at: i64,
}

/// How one export run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LdapExportStatus {
    Running,
    /// Every user exported.
    Ok,
    /// The run finished but some users failed (see the run's summary).
    Partial,
    /// The run stopped (connection, bind, store error).
    Failed,
}

impl LdapExportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LdapExportStatus::Running => "running",
            LdapExportStatus::Ok => "ok",
            LdapExportStatus::Partial => "partial",
            LdapExportStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "running" => LdapExportStatus::Running,
            "ok" => LdapExportStatus::Ok,
            "partial" => LdapExportStatus::Partial,
            "failed" => LdapExportStatus::Failed,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown LDAP export status {other:?}"
                )))
            }
        })
    }
}

/// Counts of one export run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LdapExportCounts {
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub failed: u64,
}

/// One recorded export run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LdapExportRun {
    pub id: i64,
    /// `incremental` or `resynchronize`.
    pub mode: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub status: LdapExportStatus,
    pub counts: LdapExportCounts,
    pub message: Option<String>,
}

fn entry_from_row(row: &AnyRow) -> Result<LdapExportEntry> {
    Ok(LdapExportEntry {
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        dn: row.try_get("dn")?,
        fingerprint: row.try_get("fingerprint")?,
        created: row.try_get::<i64, _>("created")? != 0,
        exported_at: row.try_get("exported_at")?,
    })
}

fn count(row: &AnyRow, column: &str) -> Result<u64> {
    let n: i64 = row.try_get(column)?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative {column} count {n}")))
}

fn run_from_row(row: &AnyRow) -> Result<LdapExportRun> {
    Ok(LdapExportRun {
        id: row.try_get("id")?,
        mode: row.try_get("mode")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        status: LdapExportStatus::parse(&row.try_get::<String, _>("status")?)?,
        counts: LdapExportCounts {
            added: count(row, "added")?,
            modified: count(row, "modified")?,
            deleted: count(row, "deleted")?,
            unchanged: count(row, "unchanged")?,
            failed: count(row, "failed")?,
        },
        message: opt_text(row, "message")?,
    })
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Every local user with its password hash, ordered by username, read in one
    /// transaction so users and hashes are consistent with each other.
    pub async fn ldap_export_users(&self) -> Result<Vec<ExportUser>> {
        use futures::TryStreamExt;
        let mut tx = self.pool.begin().await?;
        let users = crate::users::local_users_on(&mut tx).await?;
        let mut hashes = std::collections::HashMap::new();
        {
            let mut rows =
                sqlx::query("SELECT id, password_hash FROM users WHERE password_hash IS NOT NULL")
                    .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let id: i64 = row.try_get("id")?;
                let hash: String = row.try_get("password_hash")?;
                hashes.insert(id, hash);
            }
        }
        tx.commit().await?;
        Ok(users
            .into_iter()
            .map(|user| {
                let password_hash = hashes.remove(&user.id);
                ExportUser {
                    user,
                    password_hash,
                }
            })
            .collect())
    }

    /// Every export-state row, by user id.
    /// How many entries are exported, and how many of them ucbridge created (one
    /// aggregate read, whatever the directory's size).
    pub async fn ldap_export_counts(&self) -> Result<(u64, u64)> {
        let row = sqlx::query(
            // COUNT, not SUM: PostgreSQL sums a BIGINT into NUMERIC.
            "SELECT COUNT(*) AS total, COUNT(CASE WHEN created <> 0 THEN 1 END) AS created \
             FROM ldap_export_entries",
        )
        .fetch_one(&self.pool)
        .await?;
        let total: i64 = row.try_get("total")?;
        let created: i64 = row.try_get("created")?;
        Ok((
            u64::try_from(total).unwrap_or(0),
            u64::try_from(created).unwrap_or(0),
        ))
    }

    pub async fn ldap_export_entries(&self) -> Result<Vec<LdapExportEntry>> {
        let rows = sqlx::query("SELECT * FROM ldap_export_entries ORDER BY user_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Record exported entries (insert or replace by user id) and forget removed ones, in
    /// one transaction. The exporter calls this in batches as it goes, so a crash loses at
    /// most one batch of bookkeeping (the next resynchronize repairs it from LDAP).
    pub async fn apply_ldap_export_changes(
        &self,
        upserts: &[LdapExportEntry],
        removed_user_ids: &[i64],
    ) -> Result<()> {
        if upserts.is_empty() && removed_user_ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for e in upserts {
            // ON CONFLICT … DO UPDATE: SQLite ≥ 3.24 and PostgreSQL ≥ 9.5 share this syntax.
            sqlx::query(
                "INSERT INTO ldap_export_entries \
                 (user_id, username, dn, fingerprint, created, exported_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (user_id) DO UPDATE SET username = excluded.username, \
                 dn = excluded.dn, fingerprint = excluded.fingerprint, \
                 created = excluded.created, exported_at = excluded.exported_at",
            )
            .bind(e.user_id)
            .bind(e.username.as_str())
            .bind(e.dn.as_str())
            .bind(e.fingerprint.as_str())
            .bind(i64::from(e.created))
            .bind(e.exported_at)
            .execute(&mut *tx)
            .await?;
        }
        for id in removed_user_ids {
            sqlx::query("DELETE FROM ldap_export_entries WHERE user_id = $1")
                .bind(*id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Start an export run. Refused with `Conflict` while another run started less than
    /// `stale_after_millis` ago is still `running` (a crashed run's row goes stale and is
    /// then marked failed).
    pub async fn begin_ldap_export_run(&self, mode: &str, stale_after_millis: i64) -> Result<i64> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE ldap_export_runs SET status = 'failed', finished_at = $1, \
             message = 'abandoned (no progress recorded before the stale limit)' \
             WHERE status = 'running' AND started_at < $2",
        )
        .bind(now)
        .bind(now - stale_after_millis)
        .execute(&mut *tx)
        .await?;
        let running = sqlx::query("SELECT id FROM ldap_export_runs WHERE status = 'running'")
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = running {
            let id: i64 = row.try_get("id")?;
            return Err(StoreError::Conflict(format!(
                "LDAP export run {id} is still running"
            )));
        }
        let row = sqlx::query(
            "INSERT INTO ldap_export_runs (mode, started_at, status) VALUES ($1, $2, 'running') \
             RETURNING id",
        )
        .bind(mode)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match e {
            // The partial unique index: another node inserted its running row first.
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("another LDAP export run started just now".into())
            }
            e => e.into(),
        })?;
        tx.commit().await?;
        Ok(row.try_get("id")?)
    }

    /// Close a run with its outcome.
    pub async fn finish_ldap_export_run(
        &self,
        id: i64,
        status: LdapExportStatus,
        counts: LdapExportCounts,
        message: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE ldap_export_runs SET status = $2, finished_at = $3, added = $4, \
             modified = $5, deleted = $6, unchanged = $7, failed = $8, message = $9 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(now_millis())
        .bind(as_i64(counts.added))
        .bind(as_i64(counts.modified))
        .bind(as_i64(counts.deleted))
        .bind(as_i64(counts.unchanged))
        .bind(as_i64(counts.failed))
        .bind(message)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest export runs, newest first.
    pub async fn ldap_export_runs(&self, limit: i64) -> Result<Vec<LdapExportRun>> {
        let rows = sqlx::query("SELECT * FROM ldap_export_runs ORDER BY id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(run_from_row).collect()
    }
}
