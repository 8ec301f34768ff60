//! End users of the user page (tables `end_user_sessions` and `end_user_state`, migration
//! 0010): sign-in sessions of synced local users, kept in their own table so that a user
//! session can never be taken for an admin session, the first/last sign-in of each user and
//! the outcome of the last WebPhone ensure. Also the lookups the user page needs: the local
//! user a CUCM userid is linked to, and the user's voicemail account.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_millis, opt_text, LocalUser, Result, Store};

/// How an end user proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInMethod {
    /// CUCM's password check (AXL `doAuthenticateUser`).
    CucmPassword,
    /// An SSO access token from the identity service, validated by introspection.
    Sso,
}

impl SignInMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInMethod::CucmPassword => "cucm_password",
            SignInMethod::Sso => "sso",
        }
    }

    fn from_column(s: &str) -> Result<SignInMethod> {
        match s {
            "cucm_password" => Ok(SignInMethod::CucmPassword),
            "sso" => Ok(SignInMethod::Sso),
            other => Err(crate::StoreError::Corrupt(format!(
                "end-user sign-in method {other:?}"
            ))),
        }
    }
}

/// A live end-user session, joined with its (enabled) local user.
#[derive(Debug, Clone)]
pub struct EndUserSession {
    pub user_id: i64,
    /// The local username.
    pub username: String,
    pub cucm_userid: String,
    pub method: SignInMethod,
    pub csrf_token: String,
    pub expires_at: i64,
}

/// A new end-user session (the token is hashed by the caller).
#[derive(Debug, Clone)]
pub struct NewEndUserSession<'a> {
    pub token_hash: &'a str,
    pub user_id: i64,
    pub cucm_userid: &'a str,
    pub method: SignInMethod,
    pub csrf_token: &'a str,
    pub expires_at: i64,
}

/// First and last sign-in of an end user and the last WebPhone ensure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndUserState {
    pub first_signin_at: i64,
    pub last_signin_at: i64,
    pub webphone_checked_at: Option<i64>,
    pub webphone_problem: Option<String>,
}

fn state_from_row(row: &AnyRow) -> Result<EndUserState> {
    Ok(EndUserState {
        first_signin_at: row.try_get("first_signin_at")?,
        last_signin_at: row.try_get("last_signin_at")?,
        webphone_checked_at: row.try_get("webphone_checked_at")?,
        webphone_problem: opt_text(row, "webphone_problem")?,
    })
}

impl Store {
    /// The local user linked by directory sync to the CUCM end user `userid` (matched
    /// case-insensitively, as CUCM does) on any cluster, with that CUCM userid; `None`
    /// when no local user is linked to such an end user, or users of two clusters are
    /// (whose it is is unknown). The password sign-in's lookup
    /// ([`Store::sign_in_candidates`]). Disabled users are returned too: the caller decides.
    pub async fn local_user_for_cucm_userid(
        &self,
        userid: &str,
    ) -> Result<Option<(LocalUser, String)>> {
        let found = self
            .sign_in_candidates(crate::LoginKey::Userid, userid, 2)
            .await?;
        let [one] = found.as_slice() else {
            return Ok(None);
        };
        Ok(self
            .local_user(&one.username)
            .await?
            .map(|u| (u, one.cucm_userid.clone())))
    }

    pub async fn create_end_user_session(&self, s: &NewEndUserSession<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO end_user_sessions (token_hash, user_id, cucm_userid, method, \
             csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.token_hash)
        .bind(s.user_id)
        .bind(s.cucm_userid)
        .bind(s.method.as_str())
        .bind(s.csrf_token)
        .bind(now_millis())
        .bind(s.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The unexpired end-user session with this token hash, if its user still exists and
    /// is not disabled (a user disabled by sync loses the page at the next request).
    pub async fn end_user_session(&self, token_hash: &str) -> Result<Option<EndUserSession>> {
        let row = sqlx::query(
            "SELECT s.user_id, u.username, s.cucm_userid, s.method, s.csrf_token, s.expires_at \
             FROM end_user_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(now_millis())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(EndUserSession {
                user_id: row.try_get("user_id")?,
                username: row.try_get("username")?,
                cucm_userid: row.try_get("cucm_userid")?,
                method: SignInMethod::from_column(&row.try_get::<String, _>("method")?)?,
                csrf_token: row.try_get("csrf_token")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    pub async fn delete_end_user_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM end_user_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Drop expired end-user sessions; returns how many.
    pub async fn purge_expired_end_user_sessions(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM end_user_sessions WHERE expires_at <= $1")
            .bind(now_millis())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Note a sign-in of the user; true when it is their first.
    pub async fn note_end_user_signin(&self, user_id: i64) -> Result<bool> {
        let now = now_millis();
        let inserted = sqlx::query(
            "INSERT INTO end_user_state (user_id, first_signin_at, last_signin_at) \
             VALUES ($1, $2, $2) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() > 0 {
            return Ok(true);
        }
        sqlx::query("UPDATE end_user_state SET last_signin_at = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(false)
    }

    pub async fn end_user_state(&self, user_id: i64) -> Result<Option<EndUserState>> {
        let row = sqlx::query(
            "SELECT first_signin_at, last_signin_at, webphone_checked_at, webphone_problem \
             FROM end_user_state WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(state_from_row).transpose()
    }

    /// Record the outcome of a WebPhone ensure: `None` = it worked, else why not.
    pub async fn record_webphone_check(&self, user_id: i64, problem: Option<&str>) -> Result<()> {
        let now = now_millis();
        sqlx::query(
            "INSERT INTO end_user_state (user_id, first_signin_at, last_signin_at, \
             webphone_checked_at, webphone_problem) VALUES ($1, $2, $2, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET webphone_checked_at = excluded.webphone_checked_at, \
             webphone_problem = excluded.webphone_problem",
        )
        .bind(user_id)
        .bind(now)
        .bind(problem)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Append an entry to the audit log outside any sync run (sign-ins, WebPhone ensures).
    /// `detail` is JSON and must hold no secret.
    pub async fn append_audit(&self, action: &str, username: &str, detail: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (run_id, at, action, username, before, after) \
             VALUES (NULL, $1, $2, $3, NULL, $4)",
        )
        .bind(now_millis())
        .bind(action)
        .bind(username)
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
