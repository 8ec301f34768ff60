//! Device provisioning against the CUCM lab over HTTPS, with the store on SQLite (and on
//! PostgreSQL where the testkit provides one).

use std::time::Duration;

use sqlx::Row;
use ucbridge_axl::*;
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_provision::*;
use ucbridge_store::Store;

struct Env {
    lab: RunningLab,
    client: AxlClient,
    store: Store,
    secrets: SecretBox,
    _dir: Option<tempfile::TempDir>,
}

async fn env_with(schema: SchemaVersion, cucm_version: &str, store_url: Option<String>) -> Env {
    let lab = RunningLab::start(LabConfig {
        users: 20,
        cucm_version: cucm_version.to_owned(),
        ..LabConfig::default()
    })
    .await
    .expect("lab starts");
    let defaults = LabConfig::default();
    let mut config = AxlConfig::new(lab.axl_url(), defaults.username, defaults.password);
    config.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    config.version = Some(schema);
    config.retry = RetryPolicy {
        max_attempts: 6,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
    };
    let client = AxlClient::connect(config).await.expect("connects");
    assert!(lab.axl_url().starts_with("https://"));
    let (store, dir) = match store_url {
        Some(url) => (Store::open(&url).await.expect("store opens"), None),
        None => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("ucbridge.db").display());
            (Store::open(&url).await.expect("store opens"), Some(dir))
        }
    };
    let secrets = SecretBox::from_base64(&SecretBox::generate_key_base64(), "test").unwrap();
    Env {
        lab,
        client,
        store,
        secrets,
        _dir: dir,
    }
}

async fn env(schema: SchemaVersion) -> Env {
    env_with(schema, "14.0.1.14900(11)", None).await
}

impl Env {
    fn provisioner(&self, config: ProvisioningConfig) -> Provisioner {
        Provisioner::new(
            self.client.clone(),
            self.store.clone(),
            config.compile().unwrap(),
            self.secrets.clone(),
        )
    }

    async fn add_user(&self, userid: &str, extension: Option<&str>) {
        if let Some(pattern) = extension {
            self.client
                .add_line(&NewLine::device(pattern, Some("Internal_PT")))
                .await
                .expect("addLine");
        }
        self.client
            .add_user(&NewUser {
                userid: userid.into(),
                last_name: "Tester".into(),
                first_name: Some("Web".into()),
                primary_extension: extension.map(|p| DirectoryNumber::new(p, Some("Internal_PT"))),
                ..NewUser::default()
            })
            .await
            .expect("addUser");
    }

    async fn sql(&self, query: SqlQuery) -> Vec<SqlRow> {
        self.client.execute_sql_query(query).await.expect("sql")
    }

    async fn count(&self, query: SqlQuery) -> i64 {
        self.sql(query).await[0]
            .get("n")
            .and_then(|n| n.parse().ok())
            .expect("count")
    }

    /// The CUCM state of a user that provisioning must leave alone on failure.
    async fn user_state(&self, userid: &str) -> (Vec<String>, Option<String>, i64) {
        let user = self.client.get_user(Key::Name(userid)).await.unwrap();
        let digest = self
            .sql(
                SqlQuery::new("select digestcredentials as d from enduser where userid = ?")
                    .bind(userid),
            )
            .await[0]
            .get("d")
            .map(str::to_owned)
            .filter(|d| !d.is_empty());
        let maps = self
            .count(
                SqlQuery::new(
                    "select count(*) as n from enduserdevicemap m join enduser u on u.pkid = m.fkenduser \
                     where u.userid = ?",
                )
                .bind(userid),
            )
            .await;
        (user.associated_devices, digest, maps)
    }

    async fn range_lines(&self) -> i64 {
        self.count(SqlQuery::raw(
            "select count(*) as n from numplan where dnorpattern >= '80000' and dnorpattern <= '80999'",
        ))
        .await
    }

    async fn devices_named(&self, name: &str) -> i64 {
        self.count(SqlQuery::new("select count(*) as n from device where name = ?").bind(name))
            .await
    }
}

/// The whole life of a user without a primary extension, on one schema version.
async fn fresh_user_flow(e: &Env, userid: &str) {
    e.add_user(userid, None).await;
    let p = e.provisioner(ProvisioningConfig::default());
    let report = p
        .ensure(
            userid,
            &EnsureOptions {
                reveal_password: true,
            },
        )
        .await
        .expect("ensure");
    assert_eq!(report.outcome, Outcome::Created);
    assert_eq!(report.dn_source, DnSource::Allocated);
    assert_eq!(
        report.directory_number,
        DirectoryNumber::new("80000", Some("Internal_PT"))
    );
    let name = device_name("UCB", userid);
    assert_eq!(report.device_name, name);
    let password = report.digest_password.clone().expect("revealed");
    assert_eq!(password.expose().len(), DIGEST_PASSWORD_LEN);
    // Never in Debug output or JSON.
    assert!(!format!("{report:?}").contains(password.expose()));
    assert!(!serde_json::to_string(&report)
        .unwrap()
        .contains(password.expose()));

    // CUCM holds the device as configured, with the digest user read back.
    let phone = e.client.get_phone(Key::Name(&name)).await.unwrap();
    assert_eq!(phone.product.as_deref(), Some(PRODUCT));
    assert_eq!(phone.protocol.as_deref(), Some("SIP"));
    assert_eq!(phone.class.as_deref(), Some("Phone"));
    assert_eq!(phone.digest_user.as_deref(), Some(userid));
    assert_eq!(
        phone.security_profile.as_deref(),
        Some("Third-party SIP Device Advanced - Standard SIP Secure Profile")
    );
    assert_eq!(phone.device_pool.as_deref(), Some("Default"));
    assert_eq!(phone.sip_profile.as_deref(), Some("Standard SIP Profile"));
    assert_eq!(phone.calling_search_space.as_deref(), Some("Internal_CSS"));
    assert_eq!(phone.lines.len(), 1);
    assert_eq!(phone.lines[0].dirn.pattern, "80000");
    let user = e.client.get_user(Key::Name(userid)).await.unwrap();
    assert_eq!(user.associated_devices, vec![name.clone()]);
    // The lab keeps digest credentials in enduser.digestcredentials (a lab simplification):
    // what CUCM got is what the store decrypts.
    let (_, digest, _) = e.user_state(userid).await;
    assert_eq!(digest.as_deref(), Some(password.expose()));

    // Seed 001: the digest user is an enduserdevicemap row with tkuserassociation = 3,
    // "Digest In" in typeuserassociation; the association is tkuserassociation = 1.
    let rows = e
        .sql(
            SqlQuery::new(
                "select eu.userid, d.name, m.tkuserassociation, t.name as association \
                 from enduserdevicemap m \
                 join enduser eu on eu.pkid = m.fkenduser \
                 join device d on d.pkid = m.fkdevice \
                 join typeuserassociation t on t.enum = m.tkuserassociation \
                 where d.name = ? order by m.tkuserassociation",
            )
            .bind(&name),
        )
        .await;
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.get("userid").unwrap().to_owned(),
                r.get("tkuserassociation").unwrap().to_owned(),
                r.get("association").unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (userid.to_owned(), "1".into(), "Controlled Device".into()),
            (userid.to_owned(), "3".into(), "Digest In".into()),
        ]
    );

    // The store row: encrypted, never the clear text.
    let raw = sqlx::query(
        "SELECT digest_password_enc, key_id, state, dn_created FROM provisioned_devices WHERE userid = $1",
    )
    .bind(userid)
    .fetch_one(e.store.pool())
    .await
    .unwrap();
    let enc: String = raw.try_get("digest_password_enc").unwrap();
    assert!(enc.starts_with("v1:"));
    assert!(!enc.contains(password.expose()));
    assert_eq!(raw.try_get::<String, _>("state").unwrap(), "active");
    assert_eq!(raw.try_get::<i64, _>("dn_created").unwrap(), 1);
    assert_eq!(
        raw.try_get::<String, _>("key_id").unwrap(),
        e.secrets.key_id()
    );
    let record = e.store.provisioned_device(userid).await.unwrap().unwrap();
    assert!(!format!("{record:?}").contains(&enc));

    // Second run: nothing to do, and it says so; same password.
    let again = p
        .ensure(
            userid,
            &EnsureOptions {
                reveal_password: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::Unchanged, "{:?}", again.changes);
    assert!(again.changes.is_empty());
    assert_eq!(
        again.digest_password.unwrap().expose(),
        password.expose(),
        "the password is not rotated by a no-op run"
    );
    assert_eq!(e.devices_named(&name).await, 1);
    assert_eq!(e.range_lines().await, 1);

    // show sees it all and no problems.
    let shown = p.show(userid).await.unwrap();
    assert!(shown.problems.is_empty(), "{:?}", shown.problems);
    assert!(shown.associated);
    assert_eq!(shown.third_party_devices.len(), 1);
    assert!(shown.third_party_devices[0].created_by_ucbridge);

    // remove: device, association, allocated DN and record go; the user stays.
    let removed = p.remove(userid).await.unwrap();
    assert_eq!(removed.device_name, name);
    assert_eq!(e.devices_named(&name).await, 0);
    assert_eq!(e.range_lines().await, 0);
    assert!(e.store.provisioned_device(userid).await.unwrap().is_none());
    assert!(e
        .client
        .get_user(Key::Name(userid))
        .await
        .unwrap()
        .associated_devices
        .is_empty());
    assert!(matches!(
        p.remove(userid).await,
        Err(ProvisionError::NotProvisioned(_))
    ));
}

#[tokio::test]
async fn fresh_user_schema_14_0() {
    let e = env(SchemaVersion::V14_0).await;
    fresh_user_flow(&e, "webphone.fresh").await;
    e.lab.shutdown().await;
}

#[tokio::test]
async fn fresh_user_schema_12_5_on_a_12_5_cucm() {
    let e = env_with(SchemaVersion::V12_5, "12.5.1.10000(22)", None).await;
    fresh_user_flow(&e, "webphone.fresh").await;
    e.lab.shutdown().await;
}

#[tokio::test]
async fn fresh_user_with_the_store_on_postgres() {
    let Some(url) = ucbridge_testkit::postgres_database() else {
        return;
    };
    let e = env_with(SchemaVersion::V14_0, "14.0.1.14900(11)", Some(url)).await;
    fresh_user_flow(&e, "webphone.pg").await;
    e.lab.shutdown().await;
}

async fn primary_extension_flow(schema: SchemaVersion) {
    let e = env(schema).await;
    e.add_user("webphone.ext", Some("70001")).await;
    let p = e.provisioner(ProvisioningConfig::default());
    let report = p
        .ensure("webphone.ext", &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Created);
    assert_eq!(report.dn_source, DnSource::PrimaryExtension);
    assert_eq!(report.directory_number.pattern, "70001");
    assert!(report.digest_password.is_none(), "not asked for");
    assert_eq!(e.range_lines().await, 0, "nothing allocated");
    let phone = e
        .client
        .get_phone(Key::Name(&report.device_name))
        .await
        .unwrap();
    assert_eq!(phone.lines[0].dirn.pattern, "70001");
    let again = p
        .ensure("webphone.ext", &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::Unchanged);
    // remove keeps the user's own extension.
    let removed = p.remove("webphone.ext").await.unwrap();
    assert!(
        removed.kept.iter().any(|k| k.contains("70001")),
        "{removed:?}"
    );
    let line = e
        .client
        .get_line(LineKey::Pattern {
            pattern: "70001",
            route_partition: Some("Internal_PT"),
        })
        .await
        .expect("the primary extension stays");
    assert!(line.associated_devices.is_empty());
    e.lab.shutdown().await;
}

#[tokio::test]
async fn primary_extension_is_used_schema_14_0() {
    primary_extension_flow(SchemaVersion::V14_0).await;
}

#[tokio::test]
async fn primary_extension_is_used_schema_12_5() {
    primary_extension_flow(SchemaVersion::V12_5).await;
}

async fn foreign_device_flow(schema: SchemaVersion) {
    let e = env(schema).await;
    e.add_user("webphone.foreign", None).await;
    let mut foreign = NewPhone::sip("OTHERVENDOR1", PRODUCT, "Default");
    foreign.security_profile =
        Some("Third-party SIP Device Advanced - Standard SIP Secure Profile".into());
    foreign.digest_user = Some("webphone.foreign".into());
    e.client.add_phone(&foreign).await.unwrap();
    let before = e.user_state("webphone.foreign").await;
    let p = e.provisioner(ProvisioningConfig::default());
    let err = p
        .ensure("webphone.foreign", &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProvisionError::ForeignDevice { devices, .. } if devices == &["OTHERVENDOR1"]),
        "{err}"
    );
    assert!(err.to_string().contains("OTHERVENDOR1"), "{err}");
    assert_eq!(
        e.devices_named(&device_name("UCB", "webphone.foreign"))
            .await,
        0
    );
    assert_eq!(e.range_lines().await, 0);
    assert_eq!(e.user_state("webphone.foreign").await, before);
    assert!(e
        .store
        .provisioned_device("webphone.foreign")
        .await
        .unwrap()
        .is_none());
    // show reports it; remove refuses to touch it.
    let shown = p.show("webphone.foreign").await.unwrap();
    assert!(shown.problems.iter().any(|p| p.contains("OTHERVENDOR1")));
    assert!(matches!(
        p.remove("webphone.foreign").await,
        Err(ProvisionError::NotProvisioned(_))
    ));
    assert_eq!(e.devices_named("OTHERVENDOR1").await, 1);
    e.lab.shutdown().await;
}

#[tokio::test]
async fn foreign_device_schema_14_0() {
    foreign_device_flow(SchemaVersion::V14_0).await;
}

#[tokio::test]
async fn foreign_device_schema_12_5() {
    foreign_device_flow(SchemaVersion::V12_5).await;
}

async fn missing_configuration_flow(schema: SchemaVersion) {
    let e = env(schema).await;
    e.add_user("webphone.cfg", None).await;
    let before = e.user_state("webphone.cfg").await;
    let cases = [
        (
            ProvisioningConfig {
                security_profile: "No Such Secure Profile".into(),
                ..ProvisioningConfig::default()
            },
            "No Such Secure Profile",
        ),
        (
            ProvisioningConfig {
                device_pool: "Atlantis".into(),
                ..ProvisioningConfig::default()
            },
            "Atlantis",
        ),
        (
            ProvisioningConfig {
                partition: "Nowhere_PT".into(),
                ..ProvisioningConfig::default()
            },
            "Nowhere_PT",
        ),
        (
            ProvisioningConfig {
                security_profile:
                    "Third-party SIP Device Advanced - Standard SIP Non-Secure Profile".into(),
                ..ProvisioningConfig::default()
            },
            "does not enable digest authentication",
        ),
    ];
    for (config, needle) in cases {
        let p = e.provisioner(config);
        let err = p
            .ensure("webphone.cfg", &EnsureOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
        assert_eq!(
            e.devices_named(&device_name("UCB", "webphone.cfg")).await,
            0
        );
        assert_eq!(e.range_lines().await, 0);
        assert_eq!(e.user_state("webphone.cfg").await, before);
        assert!(e.store.provisioned_devices().await.unwrap().is_empty());
    }
    e.lab.shutdown().await;
}

#[tokio::test]
async fn missing_profile_or_pool_schema_14_0() {
    missing_configuration_flow(SchemaVersion::V14_0).await;
}

#[tokio::test]
async fn missing_profile_or_pool_schema_12_5() {
    missing_configuration_flow(SchemaVersion::V12_5).await;
}

#[tokio::test]
async fn a_failure_half_way_rolls_back_everything_the_run_created() {
    let e = env(SchemaVersion::V14_0).await;
    e.add_user("webphone.rollback", None).await;
    let before = e.user_state("webphone.rollback").await;
    for step in ["addPhone", "updateUser", "activate"] {
        let mut p = e.provisioner(ProvisioningConfig::default());
        p.fail_before(step);
        let err = p
            .ensure("webphone.rollback", &EnsureOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(step), "{err}");
        assert_eq!(
            e.devices_named(&device_name("UCB", "webphone.rollback"))
                .await,
            0,
            "{step}"
        );
        assert_eq!(
            e.range_lines().await,
            0,
            "{step}: the allocated DN is removed"
        );
        assert_eq!(
            e.user_state("webphone.rollback").await.0,
            before.0,
            "{step}"
        );
        assert_eq!(
            e.user_state("webphone.rollback").await.2,
            before.2,
            "{step}"
        );
        assert!(e
            .store
            .provisioned_device("webphone.rollback")
            .await
            .unwrap()
            .is_none());
    }
    // And then it works.
    let p = e.provisioner(ProvisioningConfig::default());
    let report = p
        .ensure("webphone.rollback", &EnsureOptions::default())
        .await
        .unwrap();
    assert_eq!(report.directory_number.pattern, "80000");
    e.lab.shutdown().await;
}

async fn concurrent_flow(schema: SchemaVersion) {
    let e = env(schema).await;
    let users: Vec<String> = (0..4).map(|i| format!("webphone.race{i}")).collect();
    for u in &users {
        e.add_user(u, None).await;
    }
    // Numbers already on CUCM in the range are skipped.
    e.client
        .add_line(&NewLine::device("80000", Some("Internal_PT")))
        .await
        .unwrap();
    // Two provisioners (as two processes would be) racing for the same range.
    let a = e.provisioner(ProvisioningConfig::default());
    let b = e.provisioner(ProvisioningConfig::default());
    let opts = EnsureOptions::default();
    let (r0, r1, r2, r3) = tokio::join!(
        a.ensure(&users[0], &opts),
        b.ensure(&users[1], &opts),
        a.ensure(&users[2], &opts),
        b.ensure(&users[3], &opts),
    );
    let mut dns: Vec<String> = [r0, r1, r2, r3]
        .into_iter()
        .map(|r| r.expect("ensure").directory_number.pattern)
        .collect();
    dns.sort();
    assert_eq!(dns, ["80001", "80002", "80003", "80004"]);
    e.lab.shutdown().await;
}

#[tokio::test]
async fn concurrent_ensures_get_distinct_numbers_schema_14_0() {
    concurrent_flow(SchemaVersion::V14_0).await;
}

#[tokio::test]
async fn concurrent_ensures_get_distinct_numbers_schema_12_5() {
    concurrent_flow(SchemaVersion::V12_5).await;
}

#[tokio::test]
async fn drift_is_repaired_and_a_deleted_device_is_recreated_with_the_same_password() {
    let e = env(SchemaVersion::V14_0).await;
    e.add_user("webphone.drift", None).await;
    let p = e.provisioner(ProvisioningConfig::default());
    let reveal = EnsureOptions {
        reveal_password: true,
    };
    let first = p.ensure("webphone.drift", &reveal).await.unwrap();
    let name = first.device_name.clone();

    // Someone moves the device to another pool and clears the digest user.
    e.client
        .update_phone(
            Key::Name(&name),
            &PhoneUpdate {
                device_pool: Some("HQ".into()),
                digest_user: Some(String::new()),
                ..PhoneUpdate::default()
            },
        )
        .await
        .unwrap();
    let fixed = p.ensure("webphone.drift", &reveal).await.unwrap();
    assert_eq!(fixed.outcome, Outcome::Updated);
    let text = fixed.changes.join("\n");
    assert!(
        text.contains("device pool") && text.contains("digest user"),
        "{text}"
    );
    let phone = e.client.get_phone(Key::Name(&name)).await.unwrap();
    assert_eq!(phone.device_pool.as_deref(), Some("Default"));
    assert_eq!(phone.digest_user.as_deref(), Some("webphone.drift"));
    assert_eq!(
        p.ensure("webphone.drift", &reveal).await.unwrap().outcome,
        Outcome::Unchanged
    );

    // Someone deletes it: re-created, same number, same password.
    e.client.remove_phone(Key::Name(&name)).await.unwrap();
    let again = p.ensure("webphone.drift", &reveal).await.unwrap();
    assert_eq!(again.outcome, Outcome::Created);
    assert_eq!(again.directory_number, first.directory_number);
    assert_eq!(
        again.digest_password.unwrap().expose(),
        first.digest_password.unwrap().expose()
    );
    assert_eq!(e.range_lines().await, 1);
    e.lab.shutdown().await;
}

#[tokio::test]
async fn bulk_ensure_and_unknown_user() {
    let e = env(SchemaVersion::V14_0).await;
    e.add_user("bulk.one", None).await;
    e.add_user("bulk.two", Some("70002")).await;
    let p = e.provisioner(ProvisioningConfig::default());
    let items = p
        .ensure_matching(
            &UserSearch {
                userid: Some("bulk.%".into()),
                ..UserSearch::default()
            },
            &EnsureOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i.result.is_ok()), "{items:?}");
    assert!(matches!(
        p.ensure("nobody.here", &EnsureOptions::default()).await,
        Err(ProvisionError::UserNotFound(_))
    ));
    e.lab.shutdown().await;
}

#[tokio::test]
async fn a_wrong_key_is_a_clear_error() {
    let e = env(SchemaVersion::V14_0).await;
    e.add_user("webphone.key", None).await;
    e.provisioner(ProvisioningConfig::default())
        .ensure("webphone.key", &EnsureOptions::default())
        .await
        .unwrap();
    let other = Provisioner::new(
        e.client.clone(),
        e.store.clone(),
        ProvisioningConfig::default().compile().unwrap(),
        SecretBox::from_base64(&SecretBox::generate_key_base64(), "test").unwrap(),
    );
    let err = other.digest_password("webphone.key").await.unwrap_err();
    assert!(err.to_string().contains("sealed with secret key"), "{err}");
    e.lab.shutdown().await;
}

/// Seed 001 end to end: CUCM serves addPhone but drops `digestUser` without a fault (the lab
/// does that to every request once `force_silent_drops` is on, as it does to a URL-form
/// SOAPAction). The read-back must catch it: `DigestUserDropped`, the run rolled back,
/// nothing recorded; and a converge that meets the drop reports it the same way.
#[tokio::test]
async fn a_silently_dropped_digest_user_is_caught_and_rolled_back() {
    let e = env(SchemaVersion::V14_0).await;
    let userid = "webphone.seed001";
    let name = device_name("UCB", userid);
    e.add_user(userid, None).await;
    let before = e.user_state(userid).await;
    let p = e.provisioner(ProvisioningConfig::default());

    e.lab.faults().force_silent_drops(true);
    let err = p
        .ensure(userid, &EnsureOptions::default())
        .await
        .unwrap_err();
    match &err {
        ProvisionError::DigestUserDropped {
            device,
            expected,
            found,
        } => {
            assert_eq!(device, &name);
            assert_eq!(expected, userid);
            assert_eq!(found.as_deref().unwrap_or(""), "", "read back as unset");
        }
        other => panic!("expected DigestUserDropped, got {other}"),
    }
    // CUCM (the lab) did create the phone: the rollback removed it, and the DN it took.
    let stats = e.lab.stats();
    assert_eq!(stats.by_operation.get("addPhone"), Some(&1));
    assert_eq!(stats.by_operation.get("removePhone"), Some(&1));
    assert_eq!(e.devices_named(&name).await, 0);
    assert_eq!(e.range_lines().await, 0);
    assert_eq!(e.user_state(userid).await, before);
    assert!(e.store.provisioned_device(userid).await.unwrap().is_none());

    // Served correctly, the same run succeeds.
    e.lab.faults().force_silent_drops(false);
    let created = p.ensure(userid, &EnsureOptions::default()).await.unwrap();
    assert_eq!(created.outcome, Outcome::Created);
    let phone = e.client.get_phone(Key::Name(&name)).await.unwrap();
    assert_eq!(phone.digest_user.as_deref(), Some(userid));

    // Converge: the digest user was cleared on CUCM, and the repair is dropped again.
    e.client
        .update_phone(
            Key::Name(&name),
            &PhoneUpdate {
                digest_user: Some(String::new()),
                ..PhoneUpdate::default()
            },
        )
        .await
        .unwrap();
    e.lab.faults().force_silent_drops(true);
    let err = p
        .ensure(userid, &EnsureOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProvisionError::DigestUserDropped { .. }),
        "{err}"
    );
    // The device is the record's: reported, not removed.
    assert_eq!(e.devices_named(&name).await, 1);
    assert!(e.store.provisioned_device(userid).await.unwrap().is_some());
    e.lab.faults().force_silent_drops(false);
    let fixed = p.ensure(userid, &EnsureOptions::default()).await.unwrap();
    assert_eq!(fixed.outcome, Outcome::Updated);
    e.lab.shutdown().await;
}
