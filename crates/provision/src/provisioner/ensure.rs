//! `ensure`: clean up a run left `pending` by a crash, check every configured object
//! exists (preflight), refuse when the user has a third-party SIP device ucbridge did not
//! create, then create the device or converge the existing one; `ensure_matching` for
//! many users.

use tracing::{info, warn};
use ucbridge_axl::{SqlQuery, UserSearch, UserTag};
use ucbridge_store::{DeviceState, ProvisionedDevice};

use super::{same_name, BulkItem, EnsureOptions, EnsureReport, Provisioner, UserDevice};
use crate::settings::THIRD_PARTY_PRODUCTS;
use crate::{ProvisionError, Result};

impl Provisioner {
    /// Make CUCM hold the user's device (see the crate docs). Idempotent.
    pub async fn ensure(&self, userid: &str, options: &EnsureOptions) -> Result<EnsureReport> {
        let user = self.user(userid).await?;
        let userid = user.userid.clone().unwrap_or_else(|| userid.to_owned());
        let mut changes = Vec::new();
        let record = self.store.provisioned_device(&userid).await?;
        let record = self
            .clean_up_interrupted(&userid, record, &mut changes)
            .await?;
        self.preflight().await?;
        self.refuse_foreign_devices(&userid, record.as_ref())
            .await?;
        let mut report = match record {
            Some(r) => self.converge(&user, &userid, r, changes).await?,
            None => self.create(&user, &userid, None, changes).await?,
        };
        if options.reveal_password {
            let r = self
                .store
                .provisioned_device(&userid)
                .await?
                .ok_or_else(|| ProvisionError::Verification {
                    device: report.device_name.clone(),
                    detail: "the provisioning record vanished".into(),
                })?;
            report.digest_password = Some(self.secrets.open(
                &userid,
                &r.digest_password_enc,
                &r.key_id,
            )?);
        }
        info!(userid = %report.userid, device = %report.device_name,
              outcome = ?report.outcome, "device ensured");
        Ok(report)
    }

    /// A `pending` record is a run that stopped half-way: remove what it may have created
    /// before anything else, and go on as if there were no record.
    async fn clean_up_interrupted(
        &self,
        userid: &str,
        record: Option<ProvisionedDevice>,
        changes: &mut Vec<String>,
    ) -> Result<Option<ProvisionedDevice>> {
        let Some(r) = record.as_ref().filter(|r| r.state == DeviceState::Pending) else {
            return Ok(record);
        };
        warn!(userid = %userid, device = %r.device_name, "cleaning up an interrupted run");
        let leftovers = self.clean_pending(r).await;
        if !leftovers.is_empty() {
            return Err(ProvisionError::Verification {
                device: r.device_name.clone(),
                detail: format!(
                    "an interrupted earlier run could not be cleaned up: {}",
                    leftovers.join("; ")
                ),
            });
        }
        changes.push(format!(
            "cleaned up an interrupted earlier run (device {})",
            r.device_name
        ));
        Ok(None)
    }

    /// A third-party SIP device of the user that ucbridge did not create stops the run
    /// before anything is written: it may be someone's working phone.
    async fn refuse_foreign_devices(
        &self,
        userid: &str,
        record: Option<&ProvisionedDevice>,
    ) -> Result<()> {
        let ours = record.map(|r| r.device_name.as_str());
        let foreign: Vec<String> = self
            .third_party_devices(userid, ours)
            .await?
            .into_iter()
            .filter(|d| !d.created_by_ucbridge)
            .map(|d| d.name)
            .collect();
        if foreign.is_empty() {
            return Ok(());
        }
        Err(ProvisionError::ForeignDevice {
            userid: userid.to_owned(),
            devices: foreign,
        })
    }

    /// [`Provisioner::ensure`] for every user matching `search`, one after the other.
    pub async fn ensure_matching(
        &self,
        search: &UserSearch,
        options: &EnsureOptions,
    ) -> Result<Vec<BulkItem>> {
        let userids = self.matching_userids(search).await?;
        let mut out = Vec::with_capacity(userids.len());
        for userid in userids {
            let result = self.ensure(&userid, options).await;
            out.push(BulkItem { userid, result });
        }
        Ok(out)
    }

    /// The userids of the end users matching `search` on this provisioner's CUCM.
    pub async fn matching_userids(&self, search: &UserSearch) -> Result<Vec<String>> {
        let users = self
            .client
            .list_users(search, &[UserTag::Userid])
            .await
            .map_err(ProvisionError::axl("listing end users"))?;
        Ok(users.into_iter().filter_map(|u| u.userid).collect())
    }

    /// Check that every configured object exists (and that the security profile enables
    /// digest authentication) before writing anything, so a typo is a clear error with
    /// nothing to roll back. Table and column names are CUCM's data dictionary ones
    /// (`securityprofile.enabledigestauthentication` as modelled by the lab; not
    /// re-checked against a 12.5+ dictionary).
    async fn preflight(&self) -> Result<()> {
        let s = &self.settings;
        let mut checks: Vec<(&'static str, &'static str, &str)> = vec![
            ("device pool", "devicepool", &s.device_pool),
            ("SIP profile", "sipprofile", &s.sip_profile),
        ];
        if let Some(css) = &s.css {
            checks.push(("calling search space", "callingsearchspace", css));
        }
        if let Some(p) = &s.partition {
            checks.push(("route partition", "routepartition", p));
        }
        for (kind, table, name) in checks {
            // `table` is a constant from the list above; the name is bound (quoted).
            let rows = self
                .client
                .execute_sql_query(
                    SqlQuery::new(format!("select count(*) as n from {table} where name = ?"))
                        .bind(name),
                )
                .await
                .map_err(ProvisionError::axl(format!("looking up {kind} {name}")))?;
            if rows.first().and_then(|r| r.get("n")) == Some("0") {
                return Err(ProvisionError::MissingReference {
                    kind,
                    name: name.to_owned(),
                });
            }
        }
        let rows = self
            .client
            .execute_sql_query(
                SqlQuery::new(
                    "select enabledigestauthentication as digest from securityprofile where name = ?",
                )
                .bind(&s.security_profile),
            )
            .await
            .map_err(ProvisionError::axl(format!(
                "looking up security profile {}",
                s.security_profile
            )))?;
        match rows.first().and_then(|r| r.get("digest")) {
            None => Err(ProvisionError::MissingReference {
                kind: "security profile",
                name: s.security_profile.clone(),
            }),
            Some("t" | "true" | "1") => Ok(()),
            Some(_) => Err(ProvisionError::SecurityProfileWithoutDigest {
                name: s.security_profile.clone(),
            }),
        }
    }

    /// Third-party SIP devices the user is associated with, is the digest user of
    /// (`enduserdevicemap`, tkuserassociation 1 / 3, notes §5) or owns (`device.fkenduser`).
    pub(super) async fn third_party_devices(
        &self,
        userid: &str,
        ours: Option<&str>,
    ) -> Result<Vec<UserDevice>> {
        let products = THIRD_PARTY_PRODUCTS;
        let query = SqlQuery::new(
            "select d.name as name, m.tkuserassociation as rel from device d \
             join typeproduct tp on tp.enum = d.tkproduct \
             join enduserdevicemap m on m.fkdevice = d.pkid \
             join enduser u on u.pkid = m.fkenduser \
             where u.userid = ? and tp.name in (?, ?) \
             union \
             select d.name as name, 0 as rel from device d \
             join typeproduct tp on tp.enum = d.tkproduct \
             join enduser u on u.pkid = d.fkenduser \
             where u.userid = ? and tp.name in (?, ?)",
        )
        .bind(userid)
        .bind(products[0])
        .bind(products[1])
        .bind(userid)
        .bind(products[0])
        .bind(products[1]);
        let rows = self
            .client
            .execute_sql_query(query)
            .await
            .map_err(ProvisionError::axl(format!(
                "listing third-party SIP devices of {userid}"
            )))?;
        let mut devices: Vec<UserDevice> = Vec::new();
        for row in rows {
            let Some(name) = row.get("name").map(str::to_owned) else {
                continue;
            };
            let relation = match row.get("rel") {
                Some("1") => "associated",
                Some("3") => "digest user",
                Some("0") => "owner",
                _ => "other association",
            }
            .to_owned();
            match devices.iter_mut().find(|d| same_name(&d.name, &name)) {
                Some(d) => {
                    if !d.relations.contains(&relation) {
                        d.relations.push(relation);
                    }
                }
                None => devices.push(UserDevice {
                    created_by_ucbridge: ours.is_some_and(|o| same_name(o, &name)),
                    name,
                    relations: vec![relation],
                }),
            }
        }
        devices.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(devices)
    }
}
