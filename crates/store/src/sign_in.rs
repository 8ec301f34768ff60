//! Sign-in lookups: a login name to the synced user it names, one indexed query per ID
//! source (migration 0011), and the audit entry of an attempt.
//!
//! Only users directory sync links to a CUCM end user can sign in with CUCM credentials:
//! to the default cluster's (`users.source = 'cucm'`, joined on `cucm_users.uuid`) or to a
//! further cluster's (`users.source` = a `kind = 'cucm'` source, joined on that source's
//! `source_users.uuid`, as merged user sync links a person to its primary entry). Each
//! candidate carries its cluster: the one cluster its password is checked on. Names are
//! compared case-insensitively with SQL `lower()` (ASCII-only on SQLite, Unicode on
//! PostgreSQL).

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{Backend, Result, Store, SOURCE_CUCM};

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
    /// The `cucm` source (cluster) the user is linked to: `cucm` (the default cluster) or
    /// a `[sources.NAME] kind = "cucm"` name. doAuthenticateUser goes there, only there.
    pub cluster: String,
}

/// The default cluster's users: `$3` is the default source's name.
const DEFAULT_CLUSTER: &str = "SELECT u.id AS id, u.username AS username, c.userid AS userid, \
    u.disabled AS disabled, u.source AS cluster \
    FROM cucm_users c JOIN users u ON u.source = $3 AND u.source_key = c.uuid";

/// Further clusters' users: linked to a `kind = 'cucm'` source's entry, found through
/// `source_users`' own `lower()` and extension indexes (migration 0014; without them this
/// half read every cluster row, about 12 ms per ID source at 50,000 cluster users).
const FURTHER_CLUSTERS: &str = "SELECT u.id AS id, u.username AS username, \
    c.userid AS userid, u.disabled AS disabled, u.source AS cluster \
    FROM source_users c \
    JOIN directory_sources d ON d.name = c.source AND d.kind = 'cucm' AND d.name <> $3 \
    JOIN users u ON u.source = c.source AND u.source_key = c.uuid";

/// Users whose link is not a cluster (AD primary) found through a cluster's entry that
/// merged user sync recorded in `user_sources` (`Store::record_cluster_links`): the default
/// cluster's, then the further clusters'. Disjoint from the two above (`u.source <> s.source`).
const LINKED_ELSEWHERE_DEFAULT: &str = "SELECT u.id AS id, u.username AS username, \
    c.userid AS userid, u.disabled AS disabled, s.source AS cluster \
    FROM cucm_users c JOIN user_sources s ON s.source = $3 AND s.source_key = c.uuid \
    JOIN users u ON u.id = s.user_id AND u.source <> s.source";
const LINKED_ELSEWHERE_FURTHER: &str = "SELECT u.id AS id, u.username AS username, \
    c.userid AS userid, u.disabled AS disabled, s.source AS cluster \
    FROM source_users c \
    JOIN directory_sources d ON d.name = c.source AND d.kind = 'cucm' AND d.name <> $3 \
    JOIN user_sources s ON s.source = c.source AND s.source_key = c.uuid \
    JOIN users u ON u.id = s.user_id AND u.source <> s.source";

impl Store {
    /// The synced users whose `key` equals `login` on any cluster, at most `limit` of them
    /// (callers ask for 2 to tell "one" from "ambiguous": a name matching users of two
    /// clusters is ambiguous, never tried on both).
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
        // `c` is `cucm_users` in one branch and `source_users` in the other: same columns.
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
        let sql = format!(
            "SELECT username, userid, disabled, cluster FROM ( \
             {DEFAULT_CLUSTER} WHERE {filter} UNION ALL {FURTHER_CLUSTERS} WHERE {filter} \
             UNION ALL {LINKED_ELSEWHERE_DEFAULT} WHERE {filter} \
             UNION ALL {LINKED_ELSEWHERE_FURTHER} WHERE {filter} \
             ) m ORDER BY id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(login)
            .bind(limit)
            .bind(SOURCE_CUCM)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SignInUser {
                    username: row.try_get("username")?,
                    cucm_userid: row.try_get("userid")?,
                    disabled: row.try_get::<i64, _>("disabled")? != 0,
                    cluster: row.try_get("cluster")?,
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
