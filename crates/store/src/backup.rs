//! Backup and restore of a SQLite database (`ucbridge admin backup` / `restore`).
//!
//! A backup is `VACUUM INTO` a new file: one consistent copy as of a single moment, taken
//! beside a running server (readers and the writer go on). A restore checks first that the
//! file is a ucbridge database (its `_sqlx_migrations` table, no migration newer than this
//! build, `PRAGMA integrity_check`), refuses while a node holds a job lease on the target,
//! and replaces an existing target only when asked, keeping the old file beside it.
//! PostgreSQL is backed up with its own tools: [`postgres_commands`] says how.
//!
//! Sealed secrets (connection and digest passwords) are copied as ciphertext: a restored
//! database opens them only with the same secret key.

use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};

use crate::{now_millis, Backend, Store, StoreError, SQLITE_MIGRATIONS};

/// What backup and restore fail with.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The database is PostgreSQL: [`postgres_commands`] has the way.
    #[error("ucbridge backs up SQLite only; back up PostgreSQL with pg_dump and restore it with pg_restore")]
    Postgres,
    #[error("{0} exists already: choose a new file")]
    TargetExists(PathBuf),
    #[error("{path} is not a ucbridge database: {why}")]
    NotUcbridge { path: PathBuf, why: String },
    #[error("{path} was written by a newer ucbridge (schema {found}, this one knows up to {known}): upgrade ucbridge first")]
    Newer {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{path} exists: pass --replace to replace it (the old file is kept beside it)")]
    WouldReplace { path: PathBuf },
    #[error("a ucbridge server is using {path}: node {holder} holds the job lease {job} for {seconds} s more; stop every server first")]
    InUse {
        path: PathBuf,
        holder: String,
        job: String,
        seconds: i64,
    },
    #[error("the database URL {0:?} is not a SQLite file")]
    NotSqliteFile(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for BackupError {
    fn from(e: sqlx::Error) -> Self {
        BackupError::Store(e.into())
    }
}

/// What a backup file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The newest migration applied to it.
    pub schema_version: i64,
    pub bytes: u64,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub info: BackupInfo,
    /// Where the replaced database went, if there was one.
    pub previous: Option<PathBuf>,
}

impl Store {
    /// Write a consistent copy of this SQLite database to the new file `path`.
    pub async fn backup_to(&self, path: &Path) -> Result<BackupInfo, BackupError> {
        if self.backend() == Backend::Postgres {
            return Err(BackupError::Postgres);
        }
        if path.exists() {
            return Err(BackupError::TargetExists(path.to_owned()));
        }
        let text = path.to_str().ok_or_else(|| BackupError::Io {
            what: "cannot name",
            path: path.to_owned(),
            source: std::io::Error::other("the path is not UTF-8"),
        })?;
        sqlx::query("VACUUM INTO $1")
            .bind(text)
            .execute(self.pool())
            .await?;
        inspect_backup(path).await
    }
}

/// The file of a `sqlite://PATH[?…]` URL.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.trim_start_matches("//").split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Check that `path` is an intact ucbridge database this build can open, read-only.
pub async fn inspect_backup(path: &Path) -> Result<BackupInfo, BackupError> {
    let not = |why: String| BackupError::NotUcbridge {
        path: path.to_owned(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|source| BackupError::Io {
        what: "cannot read",
        path: path.to_owned(),
        source,
    })?;
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .map_err(|e| not(e.to_string()))?;
    let check: Result<(String, Option<i64>), sqlx::Error> = async {
        let integrity: String = sqlx::query("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await?
            .try_get(0)?;
        let version: Option<i64> =
            sqlx::query("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut conn)
                .await?
                .try_get(0)?;
        Ok((integrity, version))
    }
    .await;
    let _ = conn.close().await;
    let (integrity, version) = check.map_err(|e| not(e.to_string()))?;
    if integrity != "ok" {
        return Err(not(format!("integrity check: {integrity}")));
    }
    let found = version.ok_or_else(|| not("no migration was applied to it".into()))?;
    let known = SQLITE_MIGRATIONS
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    if found > known {
        return Err(BackupError::Newer {
            path: path.to_owned(),
            found,
            known,
        });
    }
    Ok(BackupInfo {
        schema_version: found,
        bytes: meta.len(),
    })
}

/// Restore the backup `from` as the SQLite database `target`. An existing target is
/// replaced only with `replace`, never while a node holds a job lease on it, and is kept
/// as `TARGET.before-restore-MILLIS`. The restored file is then brought up to this build's
/// schema.
pub async fn restore_sqlite(
    from: &Path,
    target: &Path,
    replace: bool,
) -> Result<Restored, BackupError> {
    let info = inspect_backup(from).await?;
    let previous = if target.exists() {
        if !replace {
            return Err(BackupError::WouldReplace {
                path: target.to_owned(),
            });
        }
        refuse_if_in_use(target).await?;
        Some(set_aside(target)?)
    } else {
        None
    };
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| BackupError::Io { what, path, source }
    };
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    }
    let partial = with_suffix(target, ".restoring");
    std::fs::copy(from, &partial).map_err(io("cannot write", &partial))?;
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io("cannot write", &partial))?;
    std::fs::rename(&partial, target).map_err(io("cannot write", target))?;
    let store = Store::open(&format!("sqlite://{}", target.display())).await?;
    store.close().await;
    Ok(Restored { info, previous })
}

/// Refuse while an unexpired job lease says a server runs on this database.
async fn refuse_if_in_use(target: &Path) -> Result<(), BackupError> {
    let mut conn = SqliteConnectOptions::new()
        .filename(target)
        .read_only(true)
        .connect()
        .await?;
    let row = sqlx::query(
        "SELECT job, holder, expires_at FROM job_leases WHERE expires_at > $1 \
         ORDER BY expires_at DESC LIMIT 1",
    )
    .bind(now_millis())
    .fetch_optional(&mut conn)
    .await;
    let _ = conn.close().await;
    // A database from before the server's tables has no leases to hold.
    let Ok(Some(row)) = row else { return Ok(()) };
    let expires: i64 = row.try_get("expires_at")?;
    Err(BackupError::InUse {
        path: target.to_owned(),
        holder: row.try_get("holder")?,
        job: row.try_get("job")?,
        seconds: (expires - now_millis()).max(0) / 1000 + 1,
    })
}

/// Move the database and its WAL files out of the way; the WAL must not meet the
/// restored file, which SQLite would otherwise "recover" with the old pages.
fn set_aside(target: &Path) -> Result<PathBuf, BackupError> {
    let aside = with_suffix(target, &format!(".before-restore-{}", now_millis()));
    for suffix in ["", "-wal", "-shm"] {
        let from = with_suffix(target, suffix);
        if from.exists() {
            let to = with_suffix(&aside, suffix);
            std::fs::rename(&from, &to).map_err(|source| BackupError::Io {
                what: "cannot move",
                path: from.clone(),
                source,
            })?;
        }
    }
    Ok(aside)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The PostgreSQL way, for `url` with its password left out (give it as `PGPASSWORD`).
pub fn postgres_commands(url: &str, file: &Path) -> String {
    let shown = without_password(url);
    let file = file.display();
    format!(
        "pg_dump --format=custom --file='{file}' '{shown}'\n\
         pg_restore --clean --if-exists --no-owner --dbname='{shown}' '{file}'"
    )
}

/// `postgres://user:secret@host/db` → `postgres://user@host/db`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_the_commands() {
        let c = postgres_commands(
            "postgres://u:s3cret@db:5432/ucb?sslmode=require",
            "b.dump".as_ref(),
        );
        assert!(!c.contains("s3cret"), "{c}");
        assert!(c.contains("pg_dump --format=custom --file='b.dump' 'postgres://u@db:5432/ucb?sslmode=require'"), "{c}");
        assert_eq!(without_password("postgres://db/ucb"), "postgres://db/ucb");
    }

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/u.db?mode=rwc"),
            Some("/var/lib/u.db".into())
        );
        assert_eq!(sqlite_path("sqlite://:memory:"), None);
        assert_eq!(sqlite_path("postgres://x/y"), None);
    }
}
