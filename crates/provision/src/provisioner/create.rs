//! Creating a user's device, step by step, each step noting in an [`Undo`] what it made so
//! a failure rolls back exactly that: the digest password, the line, a `pending` record
//! (so a crash leaves something the next run recognises), the phone read back (CUCM has
//! been seen to drop `digestUser`), the user's digest credentials and association in one
//! updateUser, then the record `active`.

use std::collections::HashSet;

use tracing::warn;
use ucbridge_axl::{
    DirectoryNumber, Key, LineKey, NewLine, NewPhone, Phone, PhoneLine, Secret, SqlQuery, User,
    UserUpdate,
};
use ucbridge_store::{DeviceState, ProvisionedDevice};

use super::rollback::Undo;
use super::{
    clip, dn_text, partition_text, same_name, DnSource, EnsureReport, Outcome, Provisioner,
};
use crate::secret::generate_digest_password;
use crate::settings::{ProvisionSettings, PRODUCT};
use crate::{ProvisionError, Result};

/// The line a new device gets, and whether this run added it.
struct Line {
    dn: DirectoryNumber,
    created: bool,
    source: DnSource,
}

impl Provisioner {
    /// Create the device (and the DN when needed). `reuse` carries the password and DN of
    /// a record whose device vanished from CUCM.
    pub(super) async fn create(
        &self,
        user: &User,
        userid: &str,
        reuse: Option<ProvisionedDevice>,
        mut changes: Vec<String>,
    ) -> Result<EnsureReport> {
        let name = self.device_name_for(userid);
        if let Some(existing) = self.phone(&name).await? {
            let _ = existing;
            return Err(ProvisionError::DeviceNameTaken {
                name,
                userid: userid.to_owned(),
            });
        }
        let mut undo = Undo::default();
        let result = self
            .create_steps(user, userid, &name, reuse, &mut undo, &mut changes)
            .await;
        match result {
            Ok((dn, source)) => Ok(EnsureReport {
                userid: userid.to_owned(),
                device_name: name,
                directory_number: dn,
                dn_source: source,
                outcome: Outcome::Created,
                changes,
                digest_password: None,
            }),
            Err(cause) => {
                warn!(userid = %userid, device = %name, error = %cause, "rolling back");
                let leftovers = self.rollback(undo).await;
                if leftovers.is_empty() {
                    Err(cause)
                } else {
                    Err(ProvisionError::RollbackIncomplete {
                        cause: Box::new(cause),
                        leftovers,
                    })
                }
            }
        }
    }

    async fn create_steps(
        &self,
        user: &User,
        userid: &str,
        name: &str,
        reuse: Option<ProvisionedDevice>,
        undo: &mut Undo,
        changes: &mut Vec<String>,
    ) -> Result<(DirectoryNumber, DnSource)> {
        // 1. The password: the stored one when re-creating (the physical device keeps
        //    working), else a new one.
        let (password, sealed) = self.digest_password_for(userid, reuse.as_ref())?;
        // 2. The line.
        let line = self
            .line_for(user, userid, reuse.as_ref(), undo, changes)
            .await?;
        // 3. The record, pending until everything is verified: a crash from here on
        //    leaves something the next run recognises as ucbridge's and cleans up.
        if reuse.is_some() {
            self.store.delete_provisioned_device(userid).await?;
        }
        self.store
            .insert_provisioned_device(&ProvisionedDevice {
                userid: userid.to_owned(),
                device_name: name.to_owned(),
                state: DeviceState::Pending,
                dn_pattern: line.dn.pattern.clone(),
                dn_partition: line.dn.route_partition.clone(),
                dn_created: line.created,
                digest_password_enc: sealed,
                key_id: self.secrets.key_id().to_owned(),
                created_at: 0,
                updated_at: 0,
            })
            .await?;
        undo.record = Some(userid.to_owned());
        // 4. The phone, then read it back: the digest user must have stuck.
        self.add_phone_checked(name, userid, &line.dn, undo, changes)
            .await?;
        // 5. The user: digest credentials and the association, in one updateUser, last, so
        //    the user is either unchanged or complete.
        self.give_user_the_device(user, userid, name, password, undo, changes)
            .await?;
        // 6. Done.
        self.injected("activate", name)?;
        self.store
            .set_provisioned_device_state(userid, DeviceState::Active)
            .await?;
        Ok((line.dn, line.source))
    }

    /// The digest password and its sealed form.
    fn digest_password_for(
        &self,
        userid: &str,
        reuse: Option<&ProvisionedDevice>,
    ) -> Result<(Secret, String)> {
        Ok(match reuse {
            Some(r) => (
                self.secrets
                    .open(userid, &r.digest_password_enc, &r.key_id)?,
                r.digest_password_enc.clone(),
            ),
            None => {
                let pw = generate_digest_password();
                let sealed = self.secrets.seal(userid, &pw);
                (pw, sealed)
            }
        })
    }

    /// The recorded line when re-creating, else the user's primary extension, else one
    /// allocated from the range; added to CUCM when missing.
    async fn line_for(
        &self,
        user: &User,
        userid: &str,
        reuse: Option<&ProvisionedDevice>,
        undo: &mut Undo,
        changes: &mut Vec<String>,
    ) -> Result<Line> {
        let (dn, allocated_before) = match (reuse, &user.primary_extension) {
            (Some(r), _) => (
                DirectoryNumber::new(r.dn_pattern.clone(), r.dn_partition.as_deref()),
                Some(r.dn_created),
            ),
            // A primary extension normally exists; when it does not, ucbridge adds it and
            // then owns it.
            (None, Some(pe)) => (pe.clone(), None),
            (None, None) => {
                let dn = self.allocate_dn(userid).await?;
                undo.line = Some(dn.clone());
                changes.push(format!("allocated directory number {}", dn_text(&dn)));
                return Ok(Line {
                    dn,
                    created: true,
                    source: DnSource::Allocated,
                });
            }
        };
        let mut added = false;
        if !self.line_exists(&dn).await? {
            self.add_line(&dn, userid).await?;
            undo.line = Some(dn.clone());
            added = true;
            changes.push(format!("added directory number {}", dn_text(&dn)));
        }
        // A re-created device keeps its record's ownership of the line.
        let created = allocated_before.unwrap_or(added);
        let source = if allocated_before == Some(true) {
            DnSource::Allocated
        } else {
            DnSource::PrimaryExtension
        };
        Ok(Line {
            dn,
            created,
            source,
        })
    }

    /// addPhone, then getPhone: the digest user and every configured field must be there.
    async fn add_phone_checked(
        &self,
        name: &str,
        userid: &str,
        dn: &DirectoryNumber,
        undo: &mut Undo,
        changes: &mut Vec<String>,
    ) -> Result<()> {
        let phone = self.new_phone(name, userid, dn);
        self.injected("addPhone", name)?;
        match self.client.add_phone(&phone).await {
            Ok(_) => {}
            Err(e) if e.is_duplicate() => {
                return Err(ProvisionError::DeviceNameTaken {
                    name: name.to_owned(),
                    userid: userid.to_owned(),
                })
            }
            Err(e) => return Err(ProvisionError::axl(format!("adding device {name}"))(e)),
        }
        undo.phone = Some(name.to_owned());
        changes.push(format!(
            "added device {name} ({PRODUCT}, digest user {userid})"
        ));
        let back = self
            .phone(name)
            .await?
            .ok_or_else(|| ProvisionError::Verification {
                device: name.to_owned(),
                detail: "getPhone does not find the device just added".into(),
            })?;
        check_phone(&self.settings, &back, name, userid, dn)
    }

    /// One updateUser: digest credentials and the device among the associated ones
    /// (existing ones kept), then read back.
    async fn give_user_the_device(
        &self,
        user: &User,
        userid: &str,
        name: &str,
        password: Secret,
        undo: &mut Undo,
        changes: &mut Vec<String>,
    ) -> Result<()> {
        let before = user.associated_devices.clone();
        let mut devices = before.clone();
        if !devices.iter().any(|d| same_name(d, name)) {
            devices.push(name.to_owned());
        }
        self.injected("updateUser", name)?;
        self.client
            .update_user(
                Key::Name(userid),
                &UserUpdate {
                    digest_credentials: Some(password),
                    associated_devices: Some(devices),
                    ..UserUpdate::default()
                },
            )
            .await
            .map_err(ProvisionError::axl(format!("updating end user {userid}")))?;
        undo.user_devices = Some((userid.to_owned(), before));
        changes.push(format!(
            "set digest credentials of {userid} and associated {name}"
        ));
        let after = self.user(userid).await?;
        if !after.associated_devices.iter().any(|d| same_name(d, name)) {
            return Err(ProvisionError::Verification {
                device: name.to_owned(),
                detail: format!("{userid} does not list it among its associated devices"),
            });
        }
        Ok(())
    }

    /// The phone we expect, for addPhone.
    fn new_phone(&self, name: &str, userid: &str, dn: &DirectoryNumber) -> NewPhone {
        let s = &self.settings;
        let mut phone = NewPhone::sip(name, PRODUCT, s.device_pool.clone());
        phone.description = Some(clip(format!("ucbridge SIP device of {userid}"), 128));
        phone.calling_search_space = s.css.clone();
        phone.security_profile = Some(s.security_profile.clone());
        phone.sip_profile = Some(s.sip_profile.clone());
        phone.lines = vec![PhoneLine {
            index: 1,
            label: None,
            display: None,
            dirn: dn.clone(),
        }];
        phone.owner_user_name = Some(userid.to_owned());
        // The userid of the end user holding the digest credentials (seed 001).
        phone.digest_user = Some(userid.to_owned());
        phone
    }

    /// A free DN from the range, claimed with addLine. Numbers CUCM already has in the
    /// partition are skipped; a 4052 ("A DN exists with the same pattern and partition",
    /// notes §3) means a concurrent run claimed it first, so the next number is tried.
    async fn allocate_dn(&self, userid: &str) -> Result<DirectoryNumber> {
        let s = &self.settings;
        let range = &s.dn_range;
        let partition_clause = if s.partition.is_some() {
            "rp.name = ?"
        } else {
            "np.fkroutepartition is null"
        };
        let mut query = SqlQuery::new(format!(
            "select np.dnorpattern as pattern from numplan np \
             left join routepartition rp on rp.pkid = np.fkroutepartition \
             where {partition_clause} and length(np.dnorpattern) = ? \
             and np.dnorpattern >= ? and np.dnorpattern <= ?"
        ));
        if let Some(p) = &s.partition {
            query = query.bind(p);
        }
        let query = query
            .bind_int(i64::try_from(range.width).unwrap_or(i64::MAX))
            .bind(range.first())
            .bind(range.last());
        let used: HashSet<String> = self
            .client
            .execute_sql_query(query)
            .await
            .map_err(ProvisionError::axl(format!(
                "listing directory numbers in {range}"
            )))?
            .into_iter()
            .filter_map(|r| r.get("pattern").map(str::to_owned))
            .collect();
        for n in range.start..=range.end {
            let pattern = range.format(n);
            if used.contains(&pattern) {
                continue;
            }
            let mut line = NewLine::device(pattern.clone(), s.partition.as_deref());
            line.description = Some(clip(format!("ucbridge {userid}"), 50));
            match self.client.add_line(&line).await {
                Ok(_) => return Ok(DirectoryNumber::new(pattern, s.partition.as_deref())),
                Err(e) if e.axlcode() == Some(4052) || e.is_duplicate() => continue,
                Err(e) => {
                    return Err(ProvisionError::axl(format!(
                        "adding directory number {pattern}"
                    ))(e))
                }
            }
        }
        Err(ProvisionError::RangeExhausted {
            range: range.to_string(),
            partition: partition_text(&s.partition),
        })
    }

    async fn line_exists(&self, dn: &DirectoryNumber) -> Result<bool> {
        match self
            .client
            .get_line(LineKey::Pattern {
                pattern: &dn.pattern,
                route_partition: dn.route_partition.as_deref(),
            })
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(ProvisionError::axl(format!(
                "reading directory number {}",
                dn_text(dn)
            ))(e)),
        }
    }

    async fn add_line(&self, dn: &DirectoryNumber, userid: &str) -> Result<()> {
        let mut line = NewLine::device(dn.pattern.clone(), dn.route_partition.as_deref());
        line.description = Some(clip(format!("ucbridge {userid}"), 50));
        self.client
            .add_line(&line)
            .await
            .map_err(ProvisionError::axl(format!(
                "adding directory number {}",
                dn_text(dn)
            )))?;
        Ok(())
    }
}

/// Compare a read-back phone with what it should be; the digest user first, loudly.
pub(super) fn check_phone(
    s: &ProvisionSettings,
    phone: &Phone,
    name: &str,
    userid: &str,
    dn: &DirectoryNumber,
) -> Result<()> {
    let digest_ok = phone
        .digest_user
        .as_deref()
        .is_some_and(|d| d.eq_ignore_ascii_case(userid));
    if !digest_ok {
        return Err(ProvisionError::DigestUserDropped {
            device: name.to_owned(),
            expected: userid.to_owned(),
            found: phone.digest_user.clone(),
        });
    }
    let diffs = phone_differences(s, phone, dn);
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(ProvisionError::Verification {
            device: name.to_owned(),
            detail: diffs.join("; "),
        })
    }
}

/// Fields of `phone` that differ from the configuration (digest user excluded).
pub(super) fn phone_differences(
    s: &ProvisionSettings,
    phone: &Phone,
    dn: &DirectoryNumber,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut cmp = |what: &str, have: &Option<String>, want: Option<&str>| {
        if have.as_deref() != want {
            diffs.push(format!(
                "{what} is {:?}, should be {:?}",
                have.as_deref().unwrap_or(""),
                want.unwrap_or("")
            ));
        }
    };
    cmp("product", &phone.product, Some(PRODUCT));
    cmp("device pool", &phone.device_pool, Some(&s.device_pool));
    cmp("SIP profile", &phone.sip_profile, Some(&s.sip_profile));
    cmp(
        "security profile",
        &phone.security_profile,
        Some(&s.security_profile),
    );
    cmp(
        "calling search space",
        &phone.calling_search_space,
        s.css.as_deref(),
    );
    if !phone.lines.iter().any(|l| l.dirn == *dn) {
        diffs.push(format!("line {} is missing", dn_text(dn)));
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ProvisionSettings {
        crate::ProvisioningConfig::default().compile().unwrap()
    }

    fn good_phone(s: &ProvisionSettings, dn: &DirectoryNumber) -> Phone {
        Phone {
            name: Some("UCBJSMITH".into()),
            product: Some(PRODUCT.into()),
            device_pool: Some(s.device_pool.clone()),
            sip_profile: Some(s.sip_profile.clone()),
            security_profile: Some(s.security_profile.clone()),
            calling_search_space: s.css.clone(),
            digest_user: Some("jsmith".into()),
            lines: vec![PhoneLine {
                index: 1,
                label: None,
                display: None,
                dirn: dn.clone(),
            }],
            ..Phone::default()
        }
    }

    #[test]
    fn a_dropped_digest_user_fails_loudly() {
        let s = settings();
        let dn = DirectoryNumber::new("80000", Some("Internal_PT"));
        let phone = good_phone(&s, &dn);
        check_phone(&s, &phone, "UCBJSMITH", "jsmith", &dn).unwrap();
        // CUCM answering <digestUser/> (seed 001's silent drop).
        let dropped = Phone {
            digest_user: None,
            ..phone.clone()
        };
        let err = check_phone(&s, &dropped, "UCBJSMITH", "jsmith", &dn).unwrap_err();
        assert!(
            matches!(err, ProvisionError::DigestUserDropped { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("seed 001"), "{err}");
        let other_pool = Phone {
            device_pool: Some("HQ".into()),
            ..phone
        };
        let err = check_phone(&s, &other_pool, "UCBJSMITH", "jsmith", &dn).unwrap_err();
        assert!(err.to_string().contains("device pool"), "{err}");
    }
}
