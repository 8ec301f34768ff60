//! `converge`: the record is active, so compare CUCM with it and the settings and fix only
//! what differs — the phone's fields in one updatePhone (then read back), the user's
//! association — or re-create a device deleted behind ucbridge's back.

use ucbridge_axl::{DirectoryNumber, Key, Phone, PhoneLine, PhoneUpdate, User, UserUpdate};
use ucbridge_store::ProvisionedDevice;

use super::create::check_phone;
use super::{dn_text, partition_text, same_name, DnSource, EnsureReport, Outcome, Provisioner};
use crate::settings::{ProvisionSettings, PRODUCT};
use crate::{ProvisionError, Result};

impl Provisioner {
    /// The record exists and is active: compare CUCM with it and fix only what differs.
    pub(super) async fn converge(
        &self,
        user: &User,
        userid: &str,
        r: ProvisionedDevice,
        mut changes: Vec<String>,
    ) -> Result<EnsureReport> {
        let name = r.device_name.clone();
        let dn = DirectoryNumber::new(r.dn_pattern.clone(), r.dn_partition.as_deref());
        let source = if r.dn_created {
            DnSource::Allocated
        } else {
            DnSource::PrimaryExtension
        };
        let Some(phone) = self.phone(&name).await? else {
            // Deleted on CUCM behind ucbridge's back: re-create it with the same password
            // and number.
            changes.push(format!("device {name} was missing on CUCM; re-created it"));
            return self.create(user, userid, Some(r), changes).await;
        };
        if phone.product.as_deref() != Some(PRODUCT) {
            return Err(ProvisionError::Verification {
                device: name,
                detail: format!(
                    "it is a {:?}, not a {PRODUCT:?}; remove it first",
                    phone.product.as_deref().unwrap_or("")
                ),
            });
        }
        let (update, phone_changes) = phone_update(&self.settings, &phone, userid, &dn);
        if !phone_changes.is_empty() {
            self.update_phone_checked(&name, userid, &dn, &update)
                .await?;
            changes.push(format!(
                "updated device {name}: {}",
                phone_changes.join(", ")
            ));
        }
        if self.reassociate(user, userid, &name).await? {
            changes.push(format!("associated {name} with {userid} again"));
        }
        let outcome = if changes.is_empty() {
            Outcome::Unchanged
        } else {
            self.store.touch_provisioned_device(userid).await?;
            Outcome::Updated
        };
        Ok(EnsureReport {
            userid: userid.to_owned(),
            device_name: name,
            directory_number: dn,
            dn_source: source,
            outcome,
            changes,
            digest_password: None,
        })
    }

    /// updatePhone, then getPhone: the fix must have stuck.
    async fn update_phone_checked(
        &self,
        name: &str,
        userid: &str,
        dn: &DirectoryNumber,
        update: &PhoneUpdate,
    ) -> Result<()> {
        self.client
            .update_phone(Key::Name(name), update)
            .await
            .map_err(ProvisionError::axl(format!("updating device {name}")))?;
        let back = self
            .phone(name)
            .await?
            .ok_or_else(|| ProvisionError::Verification {
                device: name.to_owned(),
                detail: "getPhone does not find the device just updated".into(),
            })?;
        check_phone(&self.settings, &back, name, userid, dn)
    }

    /// Put the device back among the user's associated devices; whether it was missing.
    async fn reassociate(&self, user: &User, userid: &str, name: &str) -> Result<bool> {
        if user.associated_devices.iter().any(|d| same_name(d, name)) {
            return Ok(false);
        }
        let mut devices = user.associated_devices.clone();
        devices.push(name.to_owned());
        self.client
            .update_user(
                Key::Name(userid),
                &UserUpdate {
                    associated_devices: Some(devices),
                    ..UserUpdate::default()
                },
            )
            .await
            .map_err(ProvisionError::axl(format!("updating end user {userid}")))?;
        Ok(true)
    }
}

/// What to change on `phone` so it matches the settings, the digest user and the line,
/// and the same as readable text (empty: nothing differs).
fn phone_update(
    s: &ProvisionSettings,
    phone: &Phone,
    userid: &str,
    dn: &DirectoryNumber,
) -> (PhoneUpdate, Vec<String>) {
    let mut update = PhoneUpdate::default();
    let mut changes = Vec::new();
    if phone.device_pool.as_deref() != Some(s.device_pool.as_str()) {
        update.device_pool = Some(s.device_pool.clone());
        changes.push(format!("device pool → {}", s.device_pool));
    }
    if phone.sip_profile.as_deref() != Some(s.sip_profile.as_str()) {
        update.sip_profile = Some(s.sip_profile.clone());
        changes.push(format!("SIP profile → {}", s.sip_profile));
    }
    if phone.security_profile.as_deref() != Some(s.security_profile.as_str()) {
        update.security_profile = Some(s.security_profile.clone());
        changes.push(format!("security profile → {}", s.security_profile));
    }
    if phone.calling_search_space != s.css {
        // An empty element clears the CSS (XFkType, nillable).
        update.calling_search_space = Some(s.css.clone().unwrap_or_default());
        changes.push(format!("calling search space → {}", partition_text(&s.css)));
    }
    let digest_ok = phone
        .digest_user
        .as_deref()
        .is_some_and(|d| d.eq_ignore_ascii_case(userid));
    if !digest_ok {
        update.digest_user = Some(userid.to_owned());
        changes.push(format!("digest user → {userid}"));
    }
    if !phone.lines.iter().any(|l| l.dirn == *dn) {
        let mut lines = phone.lines.clone();
        let index = lines.iter().map(|l| l.index).max().unwrap_or(0) + 1;
        lines.push(PhoneLine {
            index,
            label: None,
            display: None,
            dirn: dn.clone(),
        });
        update.lines = Some(lines);
        changes.push(format!("line {} → added", dn_text(dn)));
    }
    (update, changes)
}
