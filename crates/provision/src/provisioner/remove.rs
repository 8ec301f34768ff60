//! `remove`: undo what ucbridge created for a user — the association, the device, the DN
//! when ucbridge allocated it and nothing else uses it, and the record — never anything
//! ucbridge has no record of.

use tracing::info;
use ucbridge_axl::{DirectoryNumber, Key, LineKey, UserUpdate};

use super::{dn_text, same_name, Provisioner, RemoveReport};
use crate::{ProvisionError, Result};

impl Provisioner {
    /// Remove what ucbridge created for the user: the association, the device, the DN
    /// when ucbridge allocated it and nothing else uses it, and the record. A device
    /// ucbridge has no record of is never touched.
    pub async fn remove(&self, userid: &str) -> Result<RemoveReport> {
        let user = match self.user(userid).await {
            Ok(u) => Some(u),
            Err(ProvisionError::UserNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let userid = user
            .as_ref()
            .and_then(|u| u.userid.clone())
            .unwrap_or_else(|| userid.to_owned());
        let r = self
            .store
            .provisioned_device(&userid)
            .await?
            .ok_or_else(|| ProvisionError::NotProvisioned(userid.clone()))?;
        let name = r.device_name.clone();
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        if let Some(u) = &user {
            if u.associated_devices.iter().any(|d| same_name(d, &name)) {
                let devices: Vec<String> = u
                    .associated_devices
                    .iter()
                    .filter(|d| !same_name(d, &name))
                    .cloned()
                    .collect();
                self.client
                    .update_user(
                        Key::Name(&userid),
                        &UserUpdate {
                            associated_devices: Some(devices),
                            ..UserUpdate::default()
                        },
                    )
                    .await
                    .map_err(ProvisionError::axl(format!("updating end user {userid}")))?;
                removed.push(format!("association of {name} with {userid}"));
            }
        }
        match self.client.remove_phone(Key::Name(&name)).await {
            Ok(_) => removed.push(format!("device {name}")),
            Err(e) if e.is_not_found() => kept.push(format!("device {name} was already gone")),
            Err(e) => return Err(ProvisionError::axl(format!("removing device {name}"))(e)),
        }
        let dn = DirectoryNumber::new(r.dn_pattern.clone(), r.dn_partition.as_deref());
        if r.dn_created {
            let key = LineKey::Pattern {
                pattern: &dn.pattern,
                route_partition: dn.route_partition.as_deref(),
            };
            match self.client.get_line(key).await {
                Ok(line) if line.associated_devices.is_empty() => {
                    self.client
                        .remove_line(key)
                        .await
                        .map_err(ProvisionError::axl(format!(
                            "removing directory number {}",
                            dn_text(&dn)
                        )))?;
                    removed.push(format!("directory number {}", dn_text(&dn)));
                }
                Ok(line) => kept.push(format!(
                    "directory number {} (still on {})",
                    dn_text(&dn),
                    line.associated_devices.join(", ")
                )),
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    return Err(ProvisionError::axl(format!(
                        "reading directory number {}",
                        dn_text(&dn)
                    ))(e))
                }
            }
        } else {
            kept.push(format!(
                "directory number {} (the user's primary extension)",
                dn_text(&dn)
            ));
        }
        // CUCM keeps the user's digest credentials: AXL cannot read them back and other
        // devices may use them; they authenticate nothing once the device is gone.
        self.store.delete_provisioned_device(&userid).await?;
        info!(userid = %userid, device = %name, "device removed");
        Ok(RemoveReport {
            userid,
            device_name: name,
            removed,
            kept,
        })
    }
}
