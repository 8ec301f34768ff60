//! [`Provisioner`]: ensure / show / remove for one end user. The operations live one per
//! file below this module: `ensure` (interrupted-run clean-up, preflight, foreign devices,
//! then create or converge), `create` (line, pending record, phone, user, activate),
//! `converge` (fix only what differs), `rollback` (undo in reverse), `show`, `remove`.

mod converge;
mod create;
mod ensure;
mod remove;
mod rollback;
mod show;

use serde::Serialize;
use ucbridge_auth::SecretBox;
use ucbridge_axl::{AxlClient, DirectoryNumber, Key, Phone, Secret, User};
use ucbridge_store::{ProvisionedDevice, Store};

use crate::settings::ProvisionSettings;
use crate::{device_name, ProvisionError, Result};

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// Where the device's line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DnSource {
    /// The user's primary extension (never removed by ucbridge).
    PrimaryExtension,
    /// Allocated by ucbridge from the configured range.
    Allocated,
}

#[derive(Debug, Clone, Default)]
pub struct EnsureOptions {
    /// Return the digest password (decrypted) in the report, for showing once.
    pub reveal_password: bool,
}

/// The result of [`Provisioner::ensure`]. The password is present only when asked for and
/// is never serialised (the CLI prints it explicitly).
#[derive(Debug, Clone, Serialize)]
pub struct EnsureReport {
    pub userid: String,
    pub device_name: String,
    pub directory_number: DirectoryNumber,
    pub dn_source: DnSource,
    pub outcome: Outcome,
    /// Human-readable list of what this run changed (empty when unchanged).
    pub changes: Vec<String>,
    #[serde(skip)]
    pub digest_password: Option<Secret>,
}

/// A third-party SIP device related to a user on CUCM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserDevice {
    pub name: String,
    /// "associated", "digest user", "owner".
    pub relations: Vec<String>,
    /// ucbridge's record names this device.
    pub created_by_ucbridge: bool,
}

/// The result of [`Provisioner::show`].
#[derive(Debug, Clone, Serialize)]
pub struct ShowReport {
    pub userid: String,
    /// ucbridge's record (without the ciphertext).
    pub record: Option<ProvisionedDevice>,
    /// The device as CUCM has it now.
    pub device: Option<Phone>,
    /// Third-party SIP devices of the user on CUCM (ucbridge's and others).
    pub third_party_devices: Vec<UserDevice>,
    /// The device is in the user's associated devices.
    pub associated: bool,
    /// Differences from the configuration or the record, if any.
    pub problems: Vec<String>,
}

/// The result of [`Provisioner::remove`].
#[derive(Debug, Clone, Serialize)]
pub struct RemoveReport {
    pub userid: String,
    pub device_name: String,
    pub removed: Vec<String>,
    pub kept: Vec<String>,
}

/// One user of a bulk run.
#[derive(Debug)]
pub struct BulkItem {
    pub userid: String,
    pub result: Result<EnsureReport>,
}

/// Provisions devices through one AXL client into one store.
#[derive(Debug, Clone)]
pub struct Provisioner {
    client: AxlClient,
    store: Store,
    settings: ProvisionSettings,
    secrets: SecretBox,
    /// Test seam: fail a creation just before this step (see `fail_before`).
    fail_before: Option<&'static str>,
}

fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn partition_text(p: &Option<String>) -> String {
    p.clone().unwrap_or_else(|| "<none>".into())
}

fn dn_text(dn: &DirectoryNumber) -> String {
    match &dn.route_partition {
        Some(p) => format!("{} in {p}", dn.pattern),
        None => dn.pattern.clone(),
    }
}

/// Cut to `max` characters (XSD maxLength counts characters).
fn clip(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        s
    } else {
        s.chars().take(max).collect()
    }
}

impl Provisioner {
    pub fn new(
        client: AxlClient,
        store: Store,
        settings: ProvisionSettings,
        secrets: SecretBox,
    ) -> Self {
        Provisioner {
            client,
            store,
            settings,
            secrets,
            fail_before: None,
        }
    }

    /// For tests of the rollback: make the next creations fail just before `step`
    /// (`"addPhone"`, `"updateUser"` or `"activate"`), as a CUCM fault there would.
    #[doc(hidden)]
    pub fn fail_before(&mut self, step: &'static str) {
        self.fail_before = Some(step);
    }

    fn injected(&self, step: &'static str, device: &str) -> Result<()> {
        if self.fail_before == Some(step) {
            return Err(ProvisionError::Verification {
                device: device.to_owned(),
                detail: format!("injected failure before {step}"),
            });
        }
        Ok(())
    }

    pub fn settings(&self) -> &ProvisionSettings {
        &self.settings
    }

    /// The device name ucbridge uses for `userid`.
    pub fn device_name_for(&self, userid: &str) -> String {
        device_name(&self.settings.name_prefix, userid)
    }

    async fn user(&self, userid: &str) -> Result<User> {
        match self.client.get_user(Key::Name(userid)).await {
            Ok(u) => Ok(u),
            Err(e) if e.is_not_found() => Err(ProvisionError::UserNotFound(userid.to_owned())),
            Err(e) => Err(ProvisionError::axl(format!("reading end user {userid}"))(e)),
        }
    }

    async fn phone(&self, name: &str) -> Result<Option<Phone>> {
        match self.client.get_phone(Key::Name(name)).await {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(ProvisionError::axl(format!("reading device {name}"))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("äöü".into(), 2), "äö");
        assert_eq!(clip("abc".into(), 5), "abc");
    }
}
