//! Devices ucbridge provisioned on CUCM (table `provisioned_devices`, migration 0002).
//!
//! One row per end user: the third-party SIP device ucbridge created for them, its
//! directory number (and whether ucbridge created that DN), and the digest password
//! encrypted by the caller. The store never sees the password in clear text.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_millis, Result, Store, StoreError};

/// Lifecycle of a provisioning record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// A run is creating the objects (or crashed while doing so).
    Pending,
    /// Everything was created and verified.
    Active,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Pending => "pending",
            DeviceState::Active => "active",
        }
    }

    fn parse(s: &str) -> Result<DeviceState> {
        match s {
            "pending" => Ok(DeviceState::Pending),
            "active" => Ok(DeviceState::Active),
            other => Err(StoreError::Corrupt(format!(
                "unknown provisioned device state {other:?}"
            ))),
        }
    }
}

/// What ucbridge created on CUCM for one end user.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ProvisionedDevice {
    pub userid: String,
    pub device_name: String,
    pub state: DeviceState,
    pub dn_pattern: String,
    /// `None` = the DN has no partition.
    pub dn_partition: Option<String>,
    /// ucbridge added the DN (from the allocation range); otherwise it is the user's own
    /// primary extension and is never removed by ucbridge.
    pub dn_created: bool,
    /// AEAD ciphertext (with nonce) of the digest password, as the caller encoded it.
    #[serde(skip)]
    pub digest_password_enc: String,
    /// Identifies the key that encrypted it (a fingerprint, not the key).
    pub key_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for ProvisionedDevice {
    // The ciphertext is not secret without the key, but there is no reason to print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisionedDevice")
            .field("userid", &self.userid)
            .field("device_name", &self.device_name)
            .field("state", &self.state)
            .field("dn_pattern", &self.dn_pattern)
            .field("dn_partition", &self.dn_partition)
            .field("dn_created", &self.dn_created)
            .field("digest_password_enc", &"<encrypted>")
            .field("key_id", &self.key_id)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

fn from_row(row: &AnyRow) -> Result<ProvisionedDevice> {
    let partition: String = row.try_get("dn_partition")?;
    Ok(ProvisionedDevice {
        userid: row.try_get("userid")?,
        device_name: row.try_get("device_name")?,
        state: DeviceState::parse(&row.try_get::<String, _>("state")?)?,
        dn_pattern: row.try_get("dn_pattern")?,
        dn_partition: (!partition.is_empty()).then_some(partition),
        dn_created: row.try_get::<i64, _>("dn_created")? != 0,
        digest_password_enc: row.try_get("digest_password_enc")?,
        key_id: row.try_get("key_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// The record for `userid`, if ucbridge provisioned (or is provisioning) a device.
    pub async fn provisioned_device(&self, userid: &str) -> Result<Option<ProvisionedDevice>> {
        let row = sqlx::query("SELECT * FROM provisioned_devices WHERE userid = $1")
            .bind(userid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The record of the device named `device_name` (device names compare
    /// case-insensitively on CUCM; ucbridge stores them upper-case).
    pub async fn provisioned_device_by_name(
        &self,
        device_name: &str,
    ) -> Result<Option<ProvisionedDevice>> {
        let row = sqlx::query("SELECT * FROM provisioned_devices WHERE device_name = $1")
            .bind(device_name.to_ascii_uppercase())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every record, by userid.
    pub async fn provisioned_devices(&self) -> Result<Vec<ProvisionedDevice>> {
        let rows = sqlx::query("SELECT * FROM provisioned_devices ORDER BY userid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Insert a new record (normally `Pending`). A record for the user or the device name
    /// already present is a [`StoreError::Conflict`].
    pub async fn insert_provisioned_device(&self, device: &ProvisionedDevice) -> Result<()> {
        let now = now_millis();
        let result = sqlx::query(
            "INSERT INTO provisioned_devices (userid, device_name, state, dn_pattern, \
             dn_partition, dn_created, digest_password_enc, key_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&device.userid)
        .bind(device.device_name.to_ascii_uppercase())
        .bind(device.state.as_str())
        .bind(&device.dn_pattern)
        .bind(device.dn_partition.clone().unwrap_or_default())
        .bind(i64::from(device.dn_created))
        .bind(&device.digest_password_enc)
        .bind(&device.key_id)
        .bind(if device.created_at > 0 {
            device.created_at
        } else {
            now
        })
        .bind(now)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict(format!(
                    "a provisioning record for user {:?} or device {:?} already exists",
                    device.userid, device.device_name
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Mark the record `state` (e.g. `Active` once the device was verified).
    pub async fn set_provisioned_device_state(
        &self,
        userid: &str,
        state: DeviceState,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE provisioned_devices SET state = $1, updated_at = $2 WHERE userid = $3",
        )
        .bind(state.as_str())
        .bind(now_millis())
        .bind(userid)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "no provisioning record for user {userid:?}"
            )));
        }
        Ok(())
    }

    /// Touch `updated_at` (a run found and corrected drift).
    pub async fn touch_provisioned_device(&self, userid: &str) -> Result<()> {
        sqlx::query("UPDATE provisioned_devices SET updated_at = $1 WHERE userid = $2")
            .bind(now_millis())
            .bind(userid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Delete the record; `true` when there was one.
    pub async fn delete_provisioned_device(&self, userid: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM provisioned_devices WHERE userid = $1")
            .bind(userid)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
