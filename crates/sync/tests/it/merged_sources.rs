//! User sync over two sources: an LDAP directory (primary) and the lab's CUCM (adding the
//! primary extension and the device), by one sync key, on SQLite.

use std::collections::HashSet;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings};
use ucbridge_auth::Secret;
use ucbridge_axl::{AxlClient, AxlConfig, RetryPolicy};
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_store::{RunStatus, Store};
use ucbridge_sync::{
    run_user_sync, LdapSource, LdapSourceSettings, SnapshotKeeper, SnapshotOptions, SyncOptions,
    SyncRules,
};
use ucbridge_testkit::slapd::{Slapd, SlapdFeatures, SlapdOptions};

async fn lab_client(lab: &RunningLab) -> AxlClient {
    let defaults = LabConfig::default();
    let mut config = AxlConfig::new(lab.axl_url(), defaults.username, defaults.password);
    config.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    };
    AxlClient::connect(config).await.unwrap()
}

fn person(uid: &str) -> Vec<(Vec<u8>, HashSet<Vec<u8>>)> {
    let one = |v: &str| HashSet::from([v.as_bytes().to_vec()]);
    vec![
        (b"objectClass".to_vec(), one("inetOrgPerson")),
        (b"cn".to_vec(), one(uid)),
        (b"sn".to_vec(), one("Directory")),
        (b"uid".to_vec(), one(uid)),
        (b"title".to_vec(), one("From LDAP")),
        (b"mail".to_vec(), one(&format!("{uid}@ldap.example"))),
    ]
}

#[tokio::test]
async fn ldap_primary_cucm_adds_extension_and_device() {
    let Some(slapd) = Slapd::start_with_features(SlapdOptions::default(), SlapdFeatures::default())
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let lab = RunningLab::start(LabConfig {
        users: 20,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let keeper = SnapshotKeeper::new(
        lab_client(&lab).await,
        store.clone(),
        SnapshotOptions::default(),
    );
    keeper.full_refresh(|_| {}).await.unwrap();
    let cucm = store.source_users().await.unwrap();
    assert_eq!(cucm.len(), 20);

    // LDAP holds ten of the CUCM users and two of its own.
    let (driver, mut ldap) = LdapConnAsync::with_settings(LdapConnSettings::new(), &slapd.url)
        .await
        .unwrap();
    ldap3::drive!(driver);
    ldap.simple_bind(slapd.admin_dn(), slapd.admin_password())
        .await
        .unwrap()
        .success()
        .unwrap();
    let people = slapd.people_dn();
    let mut uids: Vec<String> = cucm.iter().take(10).map(|u| u.userid.clone()).collect();
    uids.extend(["ldap-only-1".to_owned(), "ldap-only-2".to_owned()]);
    for uid in &uids {
        ldap.add(&format!("uid={uid},{people}"), person(uid))
            .await
            .unwrap()
            .success()
            .unwrap();
    }
    let settings = LdapSourceSettings::new(
        &slapd.url,
        slapd.admin_dn(),
        Secret::new(slapd.admin_password()),
        people,
    );
    let source = LdapSource::new("corp", settings.clone(), store.clone())
        .await
        .unwrap();
    source.full_refresh().await.unwrap();

    let rules = SyncRules {
        sources: vec!["corp".into(), "cucm".into()],
        source_fields: [(
            "cucm".to_owned(),
            vec![
                "primary_extension".to_owned(),
                "associated_devices".to_owned(),
            ],
        )]
        .into(),
        ..SyncRules::default()
    }
    .compile()
    .unwrap();
    let first = run_user_sync(&store, &rules, SyncOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(first.status, RunStatus::Applied, "{:?}", first.message);
    assert_eq!(
        first.plan.summary().creates,
        22,
        "{:?}",
        first.plan.problems
    );

    // A person in both: LDAP's title and mail, CUCM's extension and device.
    let both = &cucm[0];
    let user = store.local_user(&both.userid).await.unwrap().unwrap();
    assert_eq!(user.record.title.as_deref(), Some("From LDAP"));
    assert_eq!(
        user.record.email,
        Some(format!("{}@ldap.example", both.userid))
    );
    assert_eq!(user.record.extension, both.primary_extension);
    assert_eq!(user.record.device_name.as_deref(), both.first_device());
    assert_eq!(user.record.source, "corp");
    // Linked to the directory entry, and its CUCM entry recorded with its cluster.
    let linked = store.user_sources(&both.userid).await.unwrap();
    let mut rows: Vec<(&str, Option<&str>)> = linked
        .iter()
        .map(|r| (r.source.as_str(), r.cluster.as_deref()))
        .collect();
    rows.sort();
    assert_eq!(rows, [("corp", None), ("cucm", Some("cucm"))]);
    assert_eq!(
        store
            .user_cluster_source(&both.userid)
            .await
            .unwrap()
            .as_deref(),
        Some("cucm")
    );
    // A CUCM-only person is linked to CUCM, with its cluster.
    let cucm_only = store.local_user(&cucm[15].userid).await.unwrap().unwrap();
    assert_eq!(cucm_only.record.source, "cucm");
    let linked = store.user_sources(&cucm[15].userid).await.unwrap();
    assert_eq!(linked[0].cluster.as_deref(), Some("cucm"));

    // Gone from LDAP but still on CUCM: not an orphan, the user follows its CUCM entry.
    ldap.delete(&format!("uid={},{people}", both.userid))
        .await
        .unwrap()
        .success()
        .unwrap();
    source.full_refresh().await.unwrap();
    let second = run_user_sync(&store, &rules, SyncOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(second.status, RunStatus::Applied, "{:?}", second.message);
    assert_eq!(second.plan.removals(), 0);
    let user = store.local_user(&both.userid).await.unwrap().unwrap();
    assert!(!user.record.disabled);
    assert_eq!(user.record.source, "cucm");
    assert_eq!(user.record.extension, both.primary_extension);

    // A failed source refuses the sync: nobody is removed or blanked.
    let mut wrong = settings.clone();
    wrong.bind_password = Some(Secret::new("wrong"));
    let failing = LdapSource::new("corp", wrong, store.clone()).await.unwrap();
    assert!(failing.full_refresh().await.is_err());
    let refused = run_user_sync(&store, &rules, SyncOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(refused.status, RunStatus::Refused);
    assert!(refused.message.unwrap().contains("source corp"));

    // An empty LDAP source removes no one (per-source removal guard).
    for uid in uids.iter().skip(1) {
        ldap.delete(&format!("uid={uid},{people}"))
            .await
            .unwrap()
            .success()
            .unwrap();
    }
    source.full_refresh().await.unwrap();
    let guarded = run_user_sync(&store, &rules, SyncOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(guarded.status, RunStatus::Refused, "{:?}", guarded.plan);
    assert!(
        guarded
            .message
            .as_deref()
            .unwrap()
            .contains("source corp is empty"),
        "{:?}",
        guarded.message
    );
    let only = store.local_user("ldap-only-1").await.unwrap().unwrap();
    assert!(!only.record.disabled);
}
