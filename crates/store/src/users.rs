//! ucbridge's own users: what directory sync writes, with an audit entry per change.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_millis, opt_text, Result, Store, StoreError};

/// A field of a local user that sync rules can manage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserField {
    FirstName,
    LastName,
    DisplayName,
    Email,
    Extension,
    Department,
    Office,
    Title,
    Mobile,
    Pager,
    Manager,
    DirectoryUri,
    DeviceName,
}

impl UserField {
    pub const ALL: &'static [UserField] = &[
        UserField::FirstName,
        UserField::LastName,
        UserField::DisplayName,
        UserField::Email,
        UserField::Extension,
        UserField::Department,
        UserField::Office,
        UserField::Title,
        UserField::Mobile,
        UserField::Pager,
        UserField::Manager,
        UserField::DirectoryUri,
        UserField::DeviceName,
    ];

    /// Column name, also the name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            UserField::FirstName => "first_name",
            UserField::LastName => "last_name",
            UserField::DisplayName => "display_name",
            UserField::Email => "email",
            UserField::Extension => "extension",
            UserField::Department => "department",
            UserField::Office => "office",
            UserField::Title => "title",
            UserField::Mobile => "mobile",
            UserField::Pager => "pager",
            UserField::Manager => "manager",
            UserField::DirectoryUri => "directory_uri",
            UserField::DeviceName => "device_name",
        }
    }

    pub fn from_name(name: &str) -> Option<UserField> {
        UserField::ALL.iter().copied().find(|f| f.name() == name)
    }
}

/// The content of a local user (everything but its id and timestamps).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub username: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    /// Other names the user is known by (extension aliases, userids, extra addresses).
    pub aliases: Vec<String>,
    pub extension: Option<String>,
    pub department: Option<String>,
    pub office: Option<String>,
    pub title: Option<String>,
    pub mobile: Option<String>,
    pub pager: Option<String>,
    pub manager: Option<String>,
    pub directory_uri: Option<String>,
    pub device_name: Option<String>,
    /// "local" (made here) or "cucm" (created or claimed by directory sync).
    pub source: String,
    /// The CUCM end user's uuid this user is linked to.
    pub source_key: Option<String>,
    pub disabled: bool,
}

impl UserRecord {
    pub fn get(&self, field: UserField) -> Option<&str> {
        match field {
            UserField::FirstName => self.first_name.as_deref(),
            UserField::LastName => self.last_name.as_deref(),
            UserField::DisplayName => self.display_name.as_deref(),
            UserField::Email => self.email.as_deref(),
            UserField::Extension => self.extension.as_deref(),
            UserField::Department => self.department.as_deref(),
            UserField::Office => self.office.as_deref(),
            UserField::Title => self.title.as_deref(),
            UserField::Mobile => self.mobile.as_deref(),
            UserField::Pager => self.pager.as_deref(),
            UserField::Manager => self.manager.as_deref(),
            UserField::DirectoryUri => self.directory_uri.as_deref(),
            UserField::DeviceName => self.device_name.as_deref(),
        }
    }

    pub fn set(&mut self, field: UserField, value: Option<String>) {
        let slot = match field {
            UserField::FirstName => &mut self.first_name,
            UserField::LastName => &mut self.last_name,
            UserField::DisplayName => &mut self.display_name,
            UserField::Email => &mut self.email,
            UserField::Extension => &mut self.extension,
            UserField::Department => &mut self.department,
            UserField::Office => &mut self.office,
            UserField::Title => &mut self.title,
            UserField::Mobile => &mut self.mobile,
            UserField::Pager => &mut self.pager,
            UserField::Manager => &mut self.manager,
            UserField::DirectoryUri => &mut self.directory_uri,
            UserField::DeviceName => &mut self.device_name,
        };
        *slot = value;
    }
}

/// A stored local user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalUser {
    pub id: i64,
    #[serde(flatten)]
    pub record: UserRecord,
    pub has_password: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One change directory sync applies.
// An update carries its before- and after-image by design (the audit log needs both);
// boxing them would add two allocations per change for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum UserChange {
    Create {
        after: UserRecord,
    },
    Update {
        id: i64,
        before: UserRecord,
        after: UserRecord,
    },
    Disable {
        id: i64,
        before: UserRecord,
    },
    Delete {
        id: i64,
        before: UserRecord,
    },
}

impl UserChange {
    pub fn action(&self) -> &'static str {
        match self {
            UserChange::Create { .. } => "create",
            UserChange::Update { .. } => "update",
            UserChange::Disable { .. } => "disable",
            UserChange::Delete { .. } => "delete",
        }
    }

    pub fn username(&self) -> &str {
        match self {
            UserChange::Create { after } => &after.username,
            UserChange::Update { after, .. } => &after.username,
            UserChange::Disable { before, .. } | UserChange::Delete { before, .. } => {
                &before.username
            }
        }
    }
}

const RECORD_COLUMNS: &str = "username, first_name, last_name, display_name, email, aliases, \
    extension, department, office, title, mobile, pager, manager, directory_uri, device_name, \
    source, source_key, disabled";

fn bind_record<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    r: &'q UserRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let aliases = serde_json::to_string(&r.aliases).unwrap_or_else(|_| "[]".into());
    q.bind(r.username.as_str())
        .bind(r.first_name.as_deref())
        .bind(r.last_name.as_deref())
        .bind(r.display_name.as_deref())
        .bind(r.email.as_deref())
        .bind(aliases)
        .bind(r.extension.as_deref())
        .bind(r.department.as_deref())
        .bind(r.office.as_deref())
        .bind(r.title.as_deref())
        .bind(r.mobile.as_deref())
        .bind(r.pager.as_deref())
        .bind(r.manager.as_deref())
        .bind(r.directory_uri.as_deref())
        .bind(r.device_name.as_deref())
        .bind(r.source.as_str())
        .bind(r.source_key.as_deref())
        .bind(i64::from(r.disabled))
}

fn user_from_row(row: &AnyRow) -> Result<LocalUser> {
    let aliases: String = row.try_get("aliases")?;
    Ok(LocalUser {
        id: row.try_get("id")?,
        record: UserRecord {
            username: row.try_get("username")?,
            first_name: opt_text(row, "first_name")?,
            last_name: opt_text(row, "last_name")?,
            display_name: opt_text(row, "display_name")?,
            email: opt_text(row, "email")?,
            aliases: serde_json::from_str(&aliases)
                .map_err(|e| StoreError::Corrupt(format!("aliases: {e}")))?,
            extension: opt_text(row, "extension")?,
            department: opt_text(row, "department")?,
            office: opt_text(row, "office")?,
            title: opt_text(row, "title")?,
            mobile: opt_text(row, "mobile")?,
            pager: opt_text(row, "pager")?,
            manager: opt_text(row, "manager")?,
            directory_uri: opt_text(row, "directory_uri")?,
            device_name: opt_text(row, "device_name")?,
            source: row.try_get("source")?,
            source_key: opt_text(row, "source_key")?,
            disabled: row.try_get::<i64, _>("disabled")? != 0,
        },
        has_password: opt_text(row, "password_hash")?.is_some(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// What matching needs of a local user: who it is, how it can be found (username,
/// e-mail, aliases) and what it is linked to; none of the fields sync writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalMatch {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub aliases: Vec<String>,
    pub source: String,
    pub source_key: Option<String>,
    pub disabled: bool,
}

impl From<&LocalUser> for LocalMatch {
    fn from(u: &LocalUser) -> Self {
        let r = &u.record;
        LocalMatch {
            id: u.id,
            username: r.username.clone(),
            email: r.email.clone(),
            aliases: r.aliases.clone(),
            source: r.source.clone(),
            source_key: r.source_key.clone(),
            disabled: r.disabled,
        }
    }
}

pub(crate) const MATCH_SELECT: &str =
    "SELECT id, username, email, aliases, source, source_key, disabled FROM users ORDER BY id";

pub(crate) fn match_from_row(row: &AnyRow) -> Result<LocalMatch> {
    let aliases: String = row.try_get("aliases")?;
    Ok(LocalMatch {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        email: opt_text(row, "email")?,
        aliases: serde_json::from_str(&aliases)
            .map_err(|e| StoreError::Corrupt(format!("aliases: {e}")))?,
        source: row.try_get("source")?,
        source_key: opt_text(row, "source_key")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
    })
}

/// The users with these ids (any order; missing ids are left out), in statements of at
/// most [`IDS_PER_SELECT`] ids.
pub(crate) async fn local_users_by_id_on(
    conn: &mut sqlx::AnyConnection,
    backend: crate::Backend,
    ids: &[i64],
) -> Result<Vec<LocalUser>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_SELECT) {
        let sql = format!(
            "SELECT * FROM users WHERE id IN ({})",
            crate::snapshot::list_placeholders(backend, 1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            out.push(user_from_row(&row)?);
        }
    }
    Ok(out)
}

/// Ids per `IN (…)` list: far below SQLite's 32,766 and PostgreSQL's 65,535 parameters.
pub(crate) const IDS_PER_SELECT: usize = 1000;

pub(crate) async fn local_users_on(conn: &mut sqlx::AnyConnection) -> Result<Vec<LocalUser>> {
    use futures::TryStreamExt;
    let mut rows = sqlx::query("SELECT * FROM users ORDER BY lower(username)").fetch(conn);
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await? {
        out.push(user_from_row(&row)?);
    }
    Ok(out)
}

impl Store {
    /// Every local user, ordered by username (streamed and converted row by row).
    pub async fn local_users(&self) -> Result<Vec<LocalUser>> {
        let mut conn = self.pool.acquire().await?;
        local_users_on(&mut conn).await
    }

    /// One page of local users ordered by username, and how many match in all. `needle`
    /// (case-insensitive substring) is looked for in the username, names, e-mail,
    /// extension and aliases; the filtering and paging happen in the database.
    pub async fn search_local_users(
        &self,
        needle: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<LocalUser>)> {
        let pattern = needle.filter(|n| !n.is_empty()).map(|n| {
            let escaped = n
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        let filter = if pattern.is_some() {
            [
                "username",
                "first_name",
                "last_name",
                "display_name",
                "email",
                "extension",
                "aliases",
            ]
            .iter()
            .map(|c| format!("lower(COALESCE({c}, '')) LIKE $1 ESCAPE '\\'"))
            .collect::<Vec<_>>()
            .join(" OR ")
        } else {
            "$1 = ''".to_owned()
        };
        let bound = pattern.clone().unwrap_or_default();
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM users WHERE {filter}"))
            .bind(&bound)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let rows = sqlx::query(&format!(
            "SELECT * FROM users WHERE {filter} ORDER BY lower(username) LIMIT $2 OFFSET $3"
        ))
        .bind(&bound)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let users = rows.iter().map(user_from_row).collect::<Result<Vec<_>>>()?;
        Ok((total, users))
    }

    pub async fn local_user(&self, username: &str) -> Result<Option<LocalUser>> {
        let row = sqlx::query("SELECT * FROM users WHERE lower(username) = lower($1)")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Create a user by hand (not through sync).
    pub async fn create_local_user(&self, record: &UserRecord) -> Result<i64> {
        let now = now_millis();
        let sql = format!(
            "INSERT INTO users ({RECORD_COLUMNS}, created_at, updated_at) VALUES ({}) RETURNING id",
            crate::placeholders(1, 20)
        );
        let mut tx = self.begin_write().await?;
        let row = bind_record(sqlx::query(&sql), record)
            .bind(now)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        crate::bump_version(&mut tx, "users").await?;
        tx.commit().await?;
        Ok(row.try_get("id")?)
    }

    /// Store a password hash (the caller checked the policy and hashed it).
    pub async fn set_password_hash(&self, username: &str, hash: &str) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE users SET password_hash = $2, updated_at = $3 WHERE lower(username) = lower($1)",
        )
        .bind(username)
        .bind(hash)
        .bind(now_millis())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Apply changes and their audit entries in one transaction: either all of them land or
    /// none. An update or removal whose row is gone fails the batch rather than pretending.
    /// Creates and audit entries are written as multi-row INSERTs: a first sync of 100,000
    /// users is 200,000 rows, and one statement per row would dominate its time.
    pub async fn apply_user_changes(
        &self,
        run_id: Option<i64>,
        changes: &[UserChange],
    ) -> Result<()> {
        self.apply_user_changes_fenced(run_id, changes, None).await
    }

    /// [`Store::apply_user_changes`] by a job under its lease: the batch commits only if
    /// `fence` still holds the lease, checked first (no locks taken for a fenced-out
    /// node) and again right before the commit, so a node paused past its lease and
    /// resumed cannot commit over its successor ([`crate::StoreError::LeaseLost`]).
    pub async fn apply_user_changes_fenced(
        &self,
        run_id: Option<i64>,
        changes: &[UserChange],
        fence: Option<&crate::Fence>,
    ) -> Result<()> {
        const AUDIT_PER_INSERT: usize = 500;
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        if let Some(fence) = fence {
            self.check_fence(&mut tx, fence).await?;
        }
        let update_sql = format!(
            "UPDATE users SET ({RECORD_COLUMNS}, updated_at) = ({}) WHERE id = $20",
            crate::placeholders(1, 19)
        );
        // The ids this batch wrote, for `user_sources`.
        let mut written = self.insert_creates(&mut tx, changes, now).await?;
        for change in changes {
            if let UserChange::Update { id, .. } | UserChange::Disable { id, .. } = change {
                written.push(*id);
            }
            let affected = match change {
                UserChange::Create { .. } => continue,
                UserChange::Update { id, after, .. } => {
                    bind_record(sqlx::query(&update_sql), after)
                        .bind(now)
                        .bind(*id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                }
                UserChange::Disable { id, .. } => {
                    sqlx::query("UPDATE users SET disabled = 1, updated_at = $2 WHERE id = $1")
                        .bind(*id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                }
                UserChange::Delete { id, .. } => sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(*id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
            };
            if affected != 1 {
                return Err(StoreError::Conflict(format!(
                    "{} of user {} affected {affected} rows; the user changed since the plan was made",
                    change.action(),
                    change.username()
                )));
            }
        }
        let to_json = |r: &UserRecord| serde_json::to_string(r).unwrap_or_default();
        let audit: Vec<(&'static str, &str, Option<String>, Option<String>)> = changes
            .iter()
            .map(|change| {
                let (before, after) = match change {
                    UserChange::Create { after } => (None, Some(to_json(after))),
                    UserChange::Update { before, after, .. } => {
                        (Some(to_json(before)), Some(to_json(after)))
                    }
                    UserChange::Disable { before, .. } => {
                        let mut after = before.clone();
                        after.disabled = true;
                        (Some(to_json(before)), Some(to_json(&after)))
                    }
                    UserChange::Delete { before, .. } => (Some(to_json(before)), None),
                };
                (change.action(), change.username(), before, after)
            })
            .collect();
        for chunk in audit.chunks(AUDIT_PER_INSERT) {
            let sql = format!(
                "INSERT INTO audit_log (run_id, at, action, username, before, after) VALUES {}",
                self.row_placeholders(chunk.len(), 6)
            );
            let mut q = sqlx::query(&sql);
            for (action, username, before, after) in chunk {
                q = q
                    .bind(run_id)
                    .bind(now)
                    .bind(*action)
                    .bind(*username)
                    .bind(before.as_deref())
                    .bind(after.as_deref());
            }
            q.execute(&mut *tx).await?;
        }
        if !changes.is_empty() {
            record_user_sources(&mut tx, self.backend, &written, now).await?;
            crate::bump_version(&mut tx, "users").await?;
        }
        if let Some(fence) = fence {
            self.check_fence(&mut tx, fence).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// The creates of `changes` as multi-row INSERTs (20 values a row, 300 rows: far below
    /// both backends' parameter limits); the new ids.
    async fn insert_creates(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        changes: &[UserChange],
        now: i64,
    ) -> Result<Vec<i64>> {
        const RECORD_FIELDS: usize = 18;
        const CREATES_PER_INSERT: usize = 300;
        let creates: Vec<&UserRecord> = changes
            .iter()
            .filter_map(|c| match c {
                UserChange::Create { after } => Some(after),
                _ => None,
            })
            .collect();
        let mut ids = Vec::with_capacity(changes.len());
        for chunk in creates.chunks(CREATES_PER_INSERT) {
            let sql = format!(
                "INSERT INTO users ({RECORD_COLUMNS}, created_at, updated_at) VALUES {} RETURNING id",
                self.row_placeholders(chunk.len(), RECORD_FIELDS + 2)
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = bind_record(q, r).bind(now).bind(now);
            }
            for row in q.fetch_all(&mut **tx).await? {
                ids.push(row.try_get("id")?);
            }
        }
        Ok(ids)
    }
}

/// Keep `user_sources` (migration 0013) in step with each synced user's link: every user
/// created, updated or disabled in this batch (`ids`) records the source it is linked to
/// and that source's cluster. Selected by id: a scan for `updated_at = now` read the whole
/// users table once per batch, which made a 100,000-user first sync quadratic.
async fn record_user_sources(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: crate::Backend,
    ids: &[i64],
    now: i64,
) -> Result<()> {
    for chunk in ids.chunks(IDS_PER_SELECT) {
        let sql = format!(
            "INSERT INTO user_sources (user_id, source, source_key, cluster, updated_at) \
             SELECT u.id, u.source, u.source_key, d.cluster, {at} FROM users u \
             LEFT JOIN directory_sources d ON d.name = u.source \
             WHERE u.id IN ({}) AND u.source <> 'local' AND u.source_key IS NOT NULL \
             ON CONFLICT (user_id, source) DO UPDATE SET source_key = excluded.source_key, \
             cluster = excluded.cluster, updated_at = excluded.updated_at",
            crate::snapshot::list_placeholders(backend, 2, chunk.len()),
            at = crate::snapshot::list_placeholders(backend, 1, 1),
        );
        let mut q = sqlx::query(&sql).bind(now);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
