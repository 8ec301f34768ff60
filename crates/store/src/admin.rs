//! Who may use the server: admin accounts (argon2id hashes), login sessions and API
//! tokens. Sessions and tokens are stored as SHA-256 hashes of the random values the
//! clients hold, so a copy of the database does not let anyone log in.

use serde::Serialize;
use sqlx::Row;

use crate::{now_millis, Result, Store, StoreError};

/// What a caller may do.
///
/// `ReadOnly` and `Admin` are the roles of admin accounts and API tokens. `User` is the role
/// of an end-user session (a synced local user signed in on the user page, table
/// `end_user_sessions`): it reaches only its own data under `/api/v1/me`. No admin account
/// or API token can hold it: [`Role::parse`] does not accept it and a `user` in the admin
/// tables reads as corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Role {
    /// An end user: only its own profile, voicemail state and WebPhone device.
    User,
    /// Read everything but secrets; change nothing.
    ReadOnly,
    /// Also change settings, run jobs, manage tokens.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::ReadOnly => "read_only",
            Role::Admin => "admin",
        }
    }

    /// The role of an admin account or API token (`user` is not one).
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read_only" | "read-only" | "readonly" => Some(Role::ReadOnly),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    fn from_column(s: &str) -> Result<Role> {
        Role::parse(s).ok_or_else(|| StoreError::Corrupt(format!("role {s:?}")))
    }

    /// Refuse `User` where an admin account or API token role is written.
    fn admin_only(self) -> Result<Role> {
        match self {
            Role::User => Err(StoreError::Conflict(
                "the user role belongs to end-user sessions; an admin account or API token is \
                 admin or read_only"
                    .into(),
            )),
            role => Ok(role),
        }
    }
}

/// Deserialised as [`Role::parse`] reads it: `admin` or `read_only`, never `user`, so no
/// request body can give an admin account or API token the end-user role.
impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Role, String> {
        Role::parse(&s).ok_or_else(|| format!("unknown role {s:?}: use admin or read_only"))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AdminAccount {
    pub id: i64,
    pub username: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: Role,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A live session, joined with its account.
#[derive(Debug, Clone)]
pub struct Session {
    pub account_id: i64,
    pub username: String,
    pub role: Role,
    pub csrf_token: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

fn account(row: &sqlx::any::AnyRow) -> Result<AdminAccount> {
    Ok(AdminAccount {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: Role::from_column(&row.try_get::<String, _>("role")?)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn token(row: &sqlx::any::AnyRow) -> Result<ApiToken> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: Role::from_column(&row.try_get::<String, _>("role")?)?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

impl Store {
    /// Create the account, or replace its password hash and role.
    pub async fn upsert_admin_account(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<AdminAccount> {
        let role = role.admin_only()?;
        let now = now_millis();
        let row = sqlx::query(
            "INSERT INTO admin_accounts (username, password_hash, role, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, \
             role = excluded.role, updated_at = excluded.updated_at \
             RETURNING id, username, password_hash, role, created_at, updated_at",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        account(&row)
    }

    pub async fn admin_account(&self, username: &str) -> Result<Option<AdminAccount>> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, role, created_at, updated_at \
             FROM admin_accounts WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account).transpose()
    }

    pub async fn admin_accounts(&self) -> Result<Vec<AdminAccount>> {
        let rows = sqlx::query(
            "SELECT id, username, password_hash, role, created_at, updated_at \
             FROM admin_accounts ORDER BY username",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account).collect()
    }

    /// Remove the account and its sessions; false when there was none.
    pub async fn delete_admin_account(&self, username: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM admin_sessions WHERE account_id IN \
             (SELECT id FROM admin_accounts WHERE username = $1)",
        )
        .bind(username)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM admin_accounts WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn create_session(
        &self,
        token_hash: &str,
        account_id: i64,
        csrf_token: &str,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO admin_sessions (token_hash, account_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(account_id)
        .bind(csrf_token)
        .bind(now_millis())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The unexpired session with this token hash.
    pub async fn session(&self, token_hash: &str) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT s.account_id, a.username, a.role, s.csrf_token, s.expires_at \
             FROM admin_sessions s JOIN admin_accounts a ON a.id = s.account_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now_millis())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Session {
                account_id: row.try_get("account_id")?,
                username: row.try_get("username")?,
                role: Role::from_column(&row.try_get::<String, _>("role")?)?,
                csrf_token: row.try_get("csrf_token")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM admin_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// End every session of the account except the one whose token hash is `keep`
    /// (after a password change); returns how many ended.
    pub async fn delete_account_sessions(
        &self,
        account_id: i64,
        keep: Option<&str>,
    ) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM admin_sessions WHERE account_id = $1 AND token_hash <> $2")
                .bind(account_id)
                .bind(keep.unwrap_or(""))
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    /// Drop expired sessions; returns how many.
    pub async fn purge_expired_sessions(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= $1")
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Store a new token; a name already in use is a `Conflict`.
    pub async fn create_api_token(
        &self,
        name: &str,
        token_hash: &str,
        role: Role,
    ) -> Result<ApiToken> {
        let role = role.admin_only()?;
        let row = sqlx::query(
            "INSERT INTO api_tokens (name, token_hash, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING \
             RETURNING id, name, role, created_at, last_used_at",
        )
        .bind(name)
        .bind(token_hash)
        .bind(role.as_str())
        .bind(now_millis())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => token(&row),
            None => Err(StoreError::Conflict(format!(
                "an API token named {name:?} exists already"
            ))),
        }
    }

    /// The token with this hash, marking it used. `last_used_at` is written at most once a
    /// minute, so a busy script does not turn every API read into a database write.
    pub async fn use_api_token(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query(
            "SELECT id, name, role, created_at, last_used_at FROM api_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(mut found) = row.as_ref().map(token).transpose()? else {
            return Ok(None);
        };
        let now = now_millis();
        if found.last_used_at.is_none_or(|t| now - t > 60_000) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                .bind(found.id)
                .bind(now)
                .execute(&self.pool)
                .await?;
            found.last_used_at = Some(now);
        }
        Ok(Some(found))
    }

    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(
            "SELECT id, name, role, created_at, last_used_at FROM api_tokens ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token).collect()
    }

    pub async fn delete_api_token(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM api_tokens WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
