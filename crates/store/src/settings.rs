//! Settings edited through the server's API (connections, rules): a JSON value that never
//! holds a secret, and an optional secret sealed by the caller (SecretBox) before it
//! reaches the store.

use serde::Serialize;
use sqlx::Row;

use crate::{now_millis, Result, Store};

#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub name: String,
    /// JSON text.
    pub value: String,
    /// Sealed secret (never serialized).
    #[serde(skip)]
    pub secret: Option<SealedSecret>,
    pub updated_at: i64,
    pub updated_by: Option<String>,
}

/// A secret as SecretBox sealed it, with the id of the key that did.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub sealed: String,
    pub key_id: String,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// What to do with the stored secret when a setting is written.
#[derive(Debug, Clone)]
pub enum SecretUpdate {
    Keep,
    Clear,
    Set(SealedSecret),
}

fn setting(row: &sqlx::any::AnyRow) -> Result<Setting> {
    let sealed: Option<String> = row.try_get("secret")?;
    let key_id: Option<String> = row.try_get("secret_key_id")?;
    Ok(Setting {
        name: row.try_get("name")?,
        value: row.try_get("value")?,
        secret: sealed.map(|sealed| SealedSecret {
            sealed,
            key_id: key_id.unwrap_or_default(),
        }),
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

impl Store {
    pub async fn setting(&self, name: &str) -> Result<Option<Setting>> {
        let row = sqlx::query(
            "SELECT name, value, secret, secret_key_id, updated_at, updated_by \
             FROM settings WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(setting).transpose()
    }

    /// Settings whose name starts with `prefix`.
    pub async fn settings(&self, prefix: &str) -> Result<Vec<Setting>> {
        let rows = sqlx::query(
            "SELECT name, value, secret, secret_key_id, updated_at, updated_by \
             FROM settings WHERE substr(name, 1, CAST($2 AS INTEGER)) = $1 ORDER BY name",
        )
        .bind(prefix)
        .bind(i64::try_from(prefix.len()).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(setting).collect()
    }

    /// Write a setting; `insert_only` leaves an existing row untouched (seeding from the
    /// configuration file) and returns whether it wrote.
    pub async fn put_setting(
        &self,
        name: &str,
        value: &str,
        secret: SecretUpdate,
        updated_by: Option<&str>,
        insert_only: bool,
    ) -> Result<bool> {
        let now = now_millis();
        let (sealed, key_id) = match &secret {
            SecretUpdate::Set(s) => (Some(s.sealed.as_str()), Some(s.key_id.as_str())),
            _ => (None, None),
        };
        let on_conflict = match (insert_only, &secret) {
            (true, _) => "DO NOTHING",
            (false, SecretUpdate::Keep) => {
                "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, \
                 updated_by = excluded.updated_by"
            }
            (false, _) => {
                "DO UPDATE SET value = excluded.value, secret = excluded.secret, \
                 secret_key_id = excluded.secret_key_id, updated_at = excluded.updated_at, \
                 updated_by = excluded.updated_by"
            }
        };
        let done = sqlx::query(&format!(
            "INSERT INTO settings (name, value, secret, secret_key_id, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) {on_conflict}"
        ))
        .bind(name)
        .bind(value)
        .bind(sealed)
        .bind(key_id)
        .bind(now)
        .bind(updated_by)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn delete_setting(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM settings WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
