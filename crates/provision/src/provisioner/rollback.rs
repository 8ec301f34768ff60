//! Rollback: what a failed creation made is undone in reverse order, and what a crashed
//! run left `pending` is cleaned up the same way; the record goes last, only when CUCM is
//! clean, so it keeps marking leftovers as ucbridge's.

use tracing::warn;
use ucbridge_axl::{DirectoryNumber, Key, LineKey, UserUpdate};
use ucbridge_store::ProvisionedDevice;

use super::{dn_text, Provisioner};

/// What this run created, undone in reverse on failure.
#[derive(Default)]
pub(super) struct Undo {
    pub(super) line: Option<DirectoryNumber>,
    pub(super) record: Option<String>,
    pub(super) phone: Option<String>,
    /// The user's associated devices before this run changed them.
    pub(super) user_devices: Option<(String, Vec<String>)>,
}

impl Provisioner {
    /// Undo in reverse order; what could not be undone is returned (and logged).
    pub(super) async fn rollback(&self, undo: Undo) -> Vec<String> {
        let mut leftovers = Vec::new();
        if let Some((userid, devices)) = undo.user_devices {
            if let Err(e) = self
                .client
                .update_user(
                    Key::Name(&userid),
                    &UserUpdate {
                        associated_devices: Some(devices),
                        ..UserUpdate::default()
                    },
                )
                .await
            {
                leftovers.push(format!("associated devices of {userid} not restored ({e})"));
            }
        }
        if let Some(name) = undo.phone {
            match self.client.remove_phone(Key::Name(&name)).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => leftovers.push(format!("device {name} not removed ({e})")),
            }
        }
        if let Some(dn) = undo.line {
            match self
                .client
                .remove_line(LineKey::Pattern {
                    pattern: &dn.pattern,
                    route_partition: dn.route_partition.as_deref(),
                })
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => leftovers.push(format!(
                    "directory number {} not removed ({e})",
                    dn_text(&dn)
                )),
            }
        }
        // The record goes last and only when CUCM is clean: while something is left it
        // keeps marking those objects as ucbridge's.
        if let Some(userid) = undo.record {
            if leftovers.is_empty() {
                if let Err(e) = self.store.delete_provisioned_device(&userid).await {
                    leftovers.push(format!("provisioning record of {userid} not deleted ({e})"));
                }
            }
        }
        for l in &leftovers {
            warn!("rollback incomplete: {l}");
        }
        leftovers
    }

    /// A pending record: a run stopped half-way. Remove what it may have created.
    pub(super) async fn clean_pending(&self, r: &ProvisionedDevice) -> Vec<String> {
        let dn = DirectoryNumber::new(r.dn_pattern.clone(), r.dn_partition.as_deref());
        let mut undo = Undo {
            record: Some(r.userid.clone()),
            phone: Some(r.device_name.clone()),
            ..Undo::default()
        };
        if r.dn_created {
            // Only when no other device uses it (the pending phone goes first).
            undo.line = Some(dn);
            let mut leftovers = Vec::new();
            if let Err(e) = self.client.remove_phone(Key::Name(&r.device_name)).await {
                if !e.is_not_found() {
                    leftovers.push(format!("device {} not removed ({e})", r.device_name));
                    return leftovers;
                }
            }
            undo.phone = None;
            if let Ok(line) = self
                .client
                .get_line(LineKey::Pattern {
                    pattern: &r.dn_pattern,
                    route_partition: r.dn_partition.as_deref(),
                })
                .await
            {
                if !line.associated_devices.is_empty() {
                    undo.line = None;
                }
            }
        }
        self.rollback(undo).await
    }
}
