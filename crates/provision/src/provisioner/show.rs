//! `show` (what ucbridge recorded beside what CUCM holds, writing nothing) and the
//! decrypted digest password.

use ucbridge_axl::{DirectoryNumber, Secret};
use ucbridge_store::DeviceState;

use super::create::phone_differences;
use super::{same_name, Provisioner, ShowReport};
use crate::{ProvisionError, Result};

impl Provisioner {
    /// What ucbridge recorded and what CUCM holds for the user. Writes nothing.
    pub async fn show(&self, userid: &str) -> Result<ShowReport> {
        let user = self.user(userid).await?;
        let userid = user.userid.clone().unwrap_or_else(|| userid.to_owned());
        let record = self.store.provisioned_device(&userid).await?;
        let ours = record.as_ref().map(|r| r.device_name.as_str());
        let third_party_devices = self.third_party_devices(&userid, ours).await?;
        let mut problems = Vec::new();
        let mut device = None;
        let mut associated = false;
        if let Some(r) = &record {
            if r.state == DeviceState::Pending {
                problems
                    .push("an earlier run was interrupted; the next ensure cleans it up".into());
            }
            associated = user
                .associated_devices
                .iter()
                .any(|d| same_name(d, &r.device_name));
            device = self.phone(&r.device_name).await?;
            match &device {
                None => problems.push(format!("device {} is missing on CUCM", r.device_name)),
                Some(p) => {
                    let dn = DirectoryNumber::new(r.dn_pattern.clone(), r.dn_partition.as_deref());
                    if !p
                        .digest_user
                        .as_deref()
                        .is_some_and(|d| d.eq_ignore_ascii_case(&userid))
                    {
                        problems.push(format!(
                            "digest user is {:?}, should be {userid:?}",
                            p.digest_user.as_deref().unwrap_or("")
                        ));
                    }
                    problems.extend(phone_differences(&self.settings, p, &dn));
                    if !associated {
                        problems.push(format!("{} is not associated with {userid}", r.device_name));
                    }
                }
            }
        }
        for d in third_party_devices
            .iter()
            .filter(|d| !d.created_by_ucbridge)
        {
            problems.push(format!(
                "third-party SIP device {} ({}) was not created by ucbridge",
                d.name,
                d.relations.join(", ")
            ));
        }
        Ok(ShowReport {
            userid,
            record,
            device,
            third_party_devices,
            associated,
            problems,
        })
    }

    /// The decrypted digest password of a provisioned user (for `show --show-password`).
    pub async fn digest_password(&self, userid: &str) -> Result<Secret> {
        let r = self
            .store
            .provisioned_device(userid)
            .await?
            .ok_or_else(|| ProvisionError::NotProvisioned(userid.to_owned()))?;
        Ok(self
            .secrets
            .open(userid, &r.digest_password_enc, &r.key_id)?)
    }
}
