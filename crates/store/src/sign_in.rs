//! Sign-in lookups: a login name to the synced user it names, one indexed query per ID
//! source (migration 0011), and the audit entry of an attempt.
//!
//! Only users directory sync links to a CUCM end user (`users.source = 'cucm'`, joined on
//! the end user's uuid) can sign in with CUCM credentials. Names are compared
//! case-insensitively with SQL `lower()` (ASCII-only on SQLite, Unicode on PostgreSQL).

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Backend, Result, Store};

/// A value of a synced user a login name is compared with (seed 002's ID sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginKey {
    /// ucbridge's username of the user (what the mail server calls the mailbox).
    Username,
    /// The CUCM userid.
    Userid,
    /// The part before @ of a CUCM userid that is a whole address.
    UseridLocalPart,
    /// The CUCM mail address (`mailid`).
    Email,
    /// The CUCM primary extension.
    Extension,
}

impl LoginKey {
    pub const ALL: &'static [LoginKey] = &[
        LoginKey::Username,
        LoginKey::Userid,
        LoginKey::UseridLocalPart,
        LoginKey::Email,
        LoginKey::Extension,
    ];
}

/// A synced user a login name matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInUser {
    /// ucbridge's username.
    pub username: String,
    /// The CUCM userid (what doAuthenticateUser takes).
    pub cucm_userid: String,
    /// Disabled by directory sync (or by hand).
    pub disabled: bool,
}

const SELECT: &str = "SELECT u.username AS username, c.userid AS userid, u.disabled AS disabled \
    FROM cucm_users c JOIN users u ON u.source = 'cucm' AND u.source_key = c.uuid";

impl Store {
    /// The synced users whose `key` equals `login`, at most `limit` of them (callers ask
    /// for 2 to tell "one" from "ambiguous").
    pub async fn sign_in_candidates(
        &self,
        key: LoginKey,
        login: &str,
        limit: i64,
    ) -> Result<Vec<SignInUser>> {
        // Byte order for the prefix range on PostgreSQL, whose default collation would
        // not keep "name@..." between "name@" and "nameA" (the index is built the same way).
        let collate = match self.backend {
            Backend::Postgres => " COLLATE \"C\"",
            Backend::Sqlite => "",
        };
        let filter = match key {
            LoginKey::Username => "lower(u.username) = lower($1)".to_owned(),
            LoginKey::Userid => format!("lower(c.userid){collate} = lower($1)"),
            // "name@" <= userid < "nameA" ('A' follows '@'): exactly the userids that start
            // with "name@", found by a range on the lower(userid) index.
            LoginKey::UseridLocalPart => format!(
                "lower(c.userid){collate} >= (lower($1) || '@') \
                 AND lower(c.userid){collate} < (lower($1) || 'A')"
            ),
            LoginKey::Email => "lower(c.mailid) = lower($1)".to_owned(),
            LoginKey::Extension => "c.primary_extension = $1".to_owned(),
        };
        let rows = sqlx::query(&format!("{SELECT} WHERE {filter} ORDER BY u.id LIMIT $2"))
            .bind(login)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SignInUser {
                    username: row.try_get("username")?,
                    cucm_userid: row.try_get("userid")?,
                    disabled: row.try_get::<i64, _>("disabled")? != 0,
                })
            })
            .collect()
    }

    /// One audit entry for a sign-in (no run): `action` is `sign_in` or `sign_in_refused`,
    /// `detail` a small JSON object (reason, via, client). Never a password.
    pub async fn record_sign_in(
        &self,
        name: &str,
        action: &str,
        detail: &serde_json::Value,
    ) -> Result<()> {
        self.append_audit(action, name, &detail.to_string()).await
    }
}
