//! ensure / show / remove for one end user.

use std::collections::HashSet;

use serde::Serialize;
use tracing::{info, warn};
use ucbridge_axl::{
    AxlClient, DirectoryNumber, Key, LineKey, NewLine, NewPhone, Phone, PhoneLine, PhoneUpdate,
    Secret, SqlQuery, User, UserSearch, UserTag, UserUpdate,
};
use ucbridge_store::{DeviceState, ProvisionedDevice, Store};

use crate::secret::generate_digest_password;
use crate::settings::{ProvisionSettings, PRODUCT, THIRD_PARTY_PRODUCTS};
use crate::{device_name, ProvisionError, Result};
use ucbridge_auth::SecretBox;

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

/// What this run created, undone in reverse on failure.
#[derive(Default)]
struct Undo {
    line: Option<DirectoryNumber>,
    record: Option<String>,
    phone: Option<String>,
    /// The user's associated devices before this run changed them.
    user_devices: Option<(String, Vec<String>)>,
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

/// Compare a read-back phone with what it should be; the digest user first, loudly.
fn check_phone(
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
fn phone_differences(s: &ProvisionSettings, phone: &Phone, dn: &DirectoryNumber) -> Vec<String> {
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

    // -----------------------------------------------------------------------------------
    // ensure

    /// Make CUCM hold the user's device (see the crate docs). Idempotent.
    pub async fn ensure(&self, userid: &str, options: &EnsureOptions) -> Result<EnsureReport> {
        let user = self.user(userid).await?;
        let userid = user.userid.clone().unwrap_or_else(|| userid.to_owned());
        let mut changes = Vec::new();
        let mut record = self.store.provisioned_device(&userid).await?;
        if let Some(r) = record.as_ref().filter(|r| r.state == DeviceState::Pending) {
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
            record = None;
        }
        self.preflight().await?;
        let ours = record.as_ref().map(|r| r.device_name.as_str());
        let foreign: Vec<String> = self
            .third_party_devices(&userid, ours)
            .await?
            .into_iter()
            .filter(|d| !d.created_by_ucbridge)
            .map(|d| d.name)
            .collect();
        if !foreign.is_empty() {
            return Err(ProvisionError::ForeignDevice {
                userid,
                devices: foreign,
            });
        }
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

    /// [`Provisioner::ensure`] for every user matching `search`, one after the other.
    pub async fn ensure_matching(
        &self,
        search: &UserSearch,
        options: &EnsureOptions,
    ) -> Result<Vec<BulkItem>> {
        let users = self
            .client
            .list_users(search, &[UserTag::Userid])
            .await
            .map_err(ProvisionError::axl("listing end users"))?;
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            let Some(userid) = u.userid else { continue };
            let result = self.ensure(&userid, options).await;
            out.push(BulkItem { userid, result });
        }
        Ok(out)
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
    async fn third_party_devices(
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

    /// Create the device (and the DN when needed). `reuse` carries the password and DN of
    /// a record whose device vanished from CUCM.
    async fn create(
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
        let (password, sealed) = match &reuse {
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
        };
        // 2. The line.
        let (dn, dn_created, source) = match (&reuse, &user.primary_extension) {
            (Some(r), _) => {
                let dn = DirectoryNumber::new(r.dn_pattern.clone(), r.dn_partition.as_deref());
                let source = if r.dn_created {
                    DnSource::Allocated
                } else {
                    DnSource::PrimaryExtension
                };
                if !self.line_exists(&dn).await? {
                    self.add_line(&dn, userid).await?;
                    undo.line = Some(dn.clone());
                    changes.push(format!("added directory number {}", dn_text(&dn)));
                }
                (dn, r.dn_created, source)
            }
            (None, Some(pe)) => {
                // A primary extension normally exists; when it does not, ucbridge adds it
                // and then owns it.
                let mut created = false;
                if !self.line_exists(pe).await? {
                    self.add_line(pe, userid).await?;
                    undo.line = Some(pe.clone());
                    created = true;
                    changes.push(format!("added directory number {}", dn_text(pe)));
                }
                (pe.clone(), created, DnSource::PrimaryExtension)
            }
            (None, None) => {
                let dn = self.allocate_dn(userid).await?;
                undo.line = Some(dn.clone());
                changes.push(format!("allocated directory number {}", dn_text(&dn)));
                (dn, true, DnSource::Allocated)
            }
        };
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
                dn_pattern: dn.pattern.clone(),
                dn_partition: dn.route_partition.clone(),
                dn_created,
                digest_password_enc: sealed,
                key_id: self.secrets.key_id().to_owned(),
                created_at: 0,
                updated_at: 0,
            })
            .await?;
        undo.record = Some(userid.to_owned());
        // 4. The phone, then read it back: the digest user must have stuck.
        let phone = self.new_phone(name, userid, &dn);
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
        check_phone(&self.settings, &back, name, userid, &dn)?;
        // 5. The user: digest credentials and the association, in one updateUser, last, so
        //    the user is either unchanged or complete.
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
        // 6. Done.
        self.injected("activate", name)?;
        self.store
            .set_provisioned_device_state(userid, DeviceState::Active)
            .await?;
        Ok((dn, source))
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

    /// Undo in reverse order; what could not be undone is returned (and logged).
    async fn rollback(&self, undo: Undo) -> Vec<String> {
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
    async fn clean_pending(&self, r: &ProvisionedDevice) -> Vec<String> {
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

    /// The record exists and is active: compare CUCM with it and fix only what differs.
    async fn converge(
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
        let s = &self.settings;
        let mut update = PhoneUpdate::default();
        let mut phone_changes = Vec::new();
        if phone.device_pool.as_deref() != Some(s.device_pool.as_str()) {
            update.device_pool = Some(s.device_pool.clone());
            phone_changes.push(format!("device pool → {}", s.device_pool));
        }
        if phone.sip_profile.as_deref() != Some(s.sip_profile.as_str()) {
            update.sip_profile = Some(s.sip_profile.clone());
            phone_changes.push(format!("SIP profile → {}", s.sip_profile));
        }
        if phone.security_profile.as_deref() != Some(s.security_profile.as_str()) {
            update.security_profile = Some(s.security_profile.clone());
            phone_changes.push(format!("security profile → {}", s.security_profile));
        }
        if phone.calling_search_space != s.css {
            // An empty element clears the CSS (XFkType, nillable).
            update.calling_search_space = Some(s.css.clone().unwrap_or_default());
            phone_changes.push(format!("calling search space → {}", partition_text(&s.css)));
        }
        let digest_ok = phone
            .digest_user
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case(userid));
        if !digest_ok {
            update.digest_user = Some(userid.to_owned());
            phone_changes.push(format!("digest user → {userid}"));
        }
        if !phone.lines.iter().any(|l| l.dirn == dn) {
            let mut lines = phone.lines.clone();
            let index = lines.iter().map(|l| l.index).max().unwrap_or(0) + 1;
            lines.push(PhoneLine {
                index,
                label: None,
                display: None,
                dirn: dn.clone(),
            });
            update.lines = Some(lines);
            phone_changes.push(format!("line {} → added", dn_text(&dn)));
        }
        if !phone_changes.is_empty() {
            self.client
                .update_phone(Key::Name(&name), &update)
                .await
                .map_err(ProvisionError::axl(format!("updating device {name}")))?;
            let back = self
                .phone(&name)
                .await?
                .ok_or_else(|| ProvisionError::Verification {
                    device: name.clone(),
                    detail: "getPhone does not find the device just updated".into(),
                })?;
            check_phone(&self.settings, &back, &name, userid, &dn)?;
            changes.push(format!(
                "updated device {name}: {}",
                phone_changes.join(", ")
            ));
        }
        if !user.associated_devices.iter().any(|d| same_name(d, &name)) {
            let mut devices = user.associated_devices.clone();
            devices.push(name.clone());
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

    // -----------------------------------------------------------------------------------
    // show

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

    // -----------------------------------------------------------------------------------
    // remove

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

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("äöü".into(), 2), "äö");
        assert_eq!(clip("abc".into(), 5), "abc");
    }
}
