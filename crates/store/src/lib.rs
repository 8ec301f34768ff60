//! ucbridge's database.
//!
//! One URL picks the backend: `sqlite://path/to/ucbridge.db` (the embedded default) or
//! `postgres://…` (when several nodes share the work). Both run the same queries through
//! sqlx's `Any` driver; only the migrations differ (identity columns), and they run at
//! open. Times are stored as milliseconds since the Unix epoch and booleans as 0/1 so that
//! every query is portable.

mod admin;
pub mod backup;
mod clusters;
mod devices;
mod end_users;
mod jobs;
pub mod ldap_export;
pub mod local_index;
mod runs;
mod settings;
mod sign_in;
mod snapshot;
pub mod sources;
pub mod stats;
pub(crate) mod users;
pub mod voicemail;

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

pub use admin::{AdminAccount, ApiToken, Role, Session};
pub use backup::{BackupError, BackupInfo, Restored};
pub use clusters::ClusterLink;
pub use devices::{DeviceState, ProvisionedDevice};
pub use end_users::{EndUserSession, EndUserState, NewEndUserSession, SignInMethod};
pub use jobs::{Claim, Fence, JobRow, JobRun, JobRunStatus, Lease, NodeRecovery, Trigger};
pub use ldap_export::{
    ExportUser, LdapExportCounts, LdapExportEntry, LdapExportRun, LdapExportStatus,
};
pub use runs::{AuditEntry, RunOwner, RunStatus, RunSummary, SyncRun};
pub use settings::{SealedSecret, SecretUpdate, Setting};
pub use sign_in::{LoginKey, SignInUser};
pub use snapshot::{
    PageMark, RefreshClaimant, RefreshState, SnapshotRead, SnapshotState, SourceUser, SwapSummary,
    SOURCE_CUCM,
};
pub use sources::{
    DirectorySource, EntryProblem, SourceEntry, SourceKind, SourceRefreshEnd, UserSource,
    MAX_KEPT_PROBLEMS,
};
pub use users::{LocalMatch, LocalUser, UserChange, UserField, UserRecord};
pub use voicemail::{VoicemailAccount, VoicemailCucMark, VoicemailFolder, VoicemailMessage};

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use sqlite://… or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// No connection could be had in time: the database is down, unreachable or
    /// overloaded. Said plainly so that an outage is recognisable in answers and logs.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// The caller's job lease is gone (expired or taken by another node): its writes are
    /// refused so that a paused or cut-off node cannot overwrite its successor's work.
    #[error("{0}")]
    LeaseLost(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Conflict(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => StoreError::Unreachable(format!(
                "no connection within {} s (database down, unreachable or overloaded)",
                ACQUIRE_TIMEOUT.as_secs()
            )),
            sqlx::Error::Io(io) => StoreError::Unreachable(io.to_string()),
            sqlx::Error::Tls(tls) => StoreError::Unreachable(format!("TLS: {tls}")),
            other => StoreError::Database(other),
        }
    }
}

impl StoreError {
    /// Whether the database could not be reached at all (as opposed to refusing a query).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Unreachable(_))
    }
}

/// How long a query waits for a pooled connection (including connecting) before failing
/// with [`StoreError::Unreachable`]; sqlx's default of 30 s made every API call and
/// `/readyz` hang that long during a database outage, with nothing logged meanwhile.
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// PostgreSQL session limits, set on every connection. A node paused (SIGSTOP) or cut off
/// in the middle of a write transaction keeps its row locks; without limits the next lease
/// holder's writes waited for it (71 s seen). An idle transaction is ended after 10 s,
/// which frees its locks; a writer waits for a lock at most 20 s, so it outlasts such a
/// transaction instead of failing; a statement runs at most 5 minutes. The long read of a
/// user sync (`Store::read_snapshot`, read-only, no row locks) lifts the idle and statement
/// limits for its own transaction.
pub const PG_SESSION_LIMITS: [(&str, &str); 3] = [
    ("idle_in_transaction_session_timeout", "10s"),
    ("lock_timeout", "20s"),
    ("statement_timeout", "5min"),
];

/// Which database is behind the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connect and bring the schema up to date.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or_default();
            if !path.is_empty() && path != ":memory:" {
                if let Some(dir) = std::path::Path::new(path).parent() {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                            path: dir.display().to_string(),
                            source,
                        })?;
                    }
                }
            }
            // Create the file when missing; WAL lets readers run beside the writer.
            let url = if url.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let max = match backend {
            // SQLite has one writer at a time anyway; WAL lets the others read beside
            // it, so the pool is sized for readers (the server's API during a sync).
            Backend::Sqlite => 8,
            Backend::Postgres => 10,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(match backend {
                Backend::Postgres => ACQUIRE_TIMEOUT,
                // Local file: waiting means "busy", never "down"; keep sqlx's patience.
                Backend::Sqlite => std::time::Duration::from_secs(30),
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    } else {
                        for (name, value) in PG_SESSION_LIMITS {
                            sqlx::query(&format!("SET {name} = '{value}'"))
                                .execute(&mut *conn)
                                .await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(connect_options(&url)?)
            .await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begin a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later
    /// fails with SQLITE_BUSY_SNAPSHOT (517) when another connection committed in
    /// between, and `busy_timeout` cannot wait that out.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Full-table reads of 100,000 rows legitimately take a second or two; sqlx's default
/// (a WARN after 1 s) would report every sync as a problem. Slow means 10 s here.
fn connect_options(url: &str) -> Result<sqlx::any::AnyConnectOptions> {
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    Ok(sqlx::any::AnyConnectOptions::from_str(url)?
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(log::LevelFilter::Warn, std::time::Duration::from_secs(10)))
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The change counters of the tables directory sync reads (see migration 0003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DataVersions {
    pub cucm_users: i64,
    pub users: i64,
    /// The snapshots of the other directory sources (migration 0013).
    pub source_users: i64,
}

/// Bump a table's change counter inside the transaction that changed it.
pub(crate) async fn bump_version(conn: &mut sqlx::AnyConnection, name: &str) -> Result<()> {
    sqlx::query("UPDATE data_versions SET version = version + 1 WHERE name = $1")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn read_versions(conn: &mut sqlx::AnyConnection) -> Result<DataVersions> {
    let rows = sqlx::query("SELECT name, version FROM data_versions")
        .fetch_all(conn)
        .await?;
    let mut v = DataVersions {
        cucm_users: 0,
        users: 0,
        source_users: 0,
    };
    for row in rows {
        let name: String = row.try_get("name")?;
        let version: i64 = row.try_get("version")?;
        match name.as_str() {
            "cucm_users" => v.cucm_users = version,
            "users" => v.users = version,
            "source_users" => v.source_users = version,
            _ => {}
        }
    }
    Ok(v)
}

impl Store {
    /// The current change counters.
    pub async fn data_versions(&self) -> Result<DataVersions> {
        let mut conn = self.pool.acquire().await?;
        read_versions(&mut conn).await
    }
}

/// `$1, $2, …` placeholders for `n` values starting at `first` (valid in both backends).
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Placeholders for the rows of a multi-row statement, bound strictly in order. SQLite
    /// gets positional `?`: sqlx resolves each numbered `$n` there by name, which made an
    /// 8,000-parameter INSERT cost more per parameter the longer it got (measured: 28 s to
    /// stage 100,000 users); PostgreSQL needs `$n`.
    pub(crate) fn row_placeholders(&self, rows: usize, per_row: usize) -> String {
        let row = |i: usize| match self.backend {
            Backend::Sqlite => format!("({})", vec!["?"; per_row].join(", ")),
            Backend::Postgres => format!("({})", placeholders(i * per_row + 1, per_row)),
        };
        (0..rows).map(row).collect::<Vec<_>>().join(", ")
    }
}

pub(crate) fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(column)?)
}
