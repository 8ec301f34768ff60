//! LDAP export against a real OpenLDAP slapd started by the test (ucbridge_testkit::slapd),
//! with the store on SQLite in a temp dir.

use std::collections::{BTreeMap, HashSet};

use ldap3::{LdapConnAsync, Mod, Scope, SearchEntry};
use ucbridge_auth::Secret;
use ucbridge_ldap::{
    ExportAction, ExportMode, LdapExportError, LdapExportSettings, LdapExporter, NamingAttribute,
    PhoneSource, RemovalPolicy, UidSource,
};
use ucbridge_store::{LocalUser, Store, UserChange, UserRecord};
use ucbridge_testkit::slapd::{Slapd, SlapdOptions};

const PASSWORD: &str = "Secr3t!pw";

struct Env {
    slapd: Slapd,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn env() -> Option<Env> {
    let slapd = Slapd::start()?;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ucbridge.db").display());
    let store = Store::open(&url).await.unwrap();
    Some(Env {
        slapd,
        store,
        _dir: dir,
    })
}

impl Env {
    fn settings(&self, base_dn: &str) -> LdapExportSettings {
        LdapExportSettings::new(
            self.slapd.url.clone(),
            self.slapd.admin_dn(),
            Secret::new(self.slapd.admin_password()),
            base_dn,
        )
    }

    fn exporter(&self, settings: LdapExportSettings) -> LdapExporter {
        LdapExporter::new(settings, self.store.clone()).unwrap()
    }

    async fn admin(&self) -> ldap3::Ldap {
        let (conn, mut ldap) = LdapConnAsync::new(&self.slapd.url).await.unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(self.slapd.admin_dn(), self.slapd.admin_password())
            .await
            .unwrap()
            .success()
            .unwrap();
        ldap
    }

    /// Every entry one level under `base`: DN → attributes (with entryCSN, which slapd
    /// changes on every write).
    async fn entries(&self, base: &str) -> BTreeMap<String, SearchEntry> {
        let mut ldap = self.admin().await;
        let (rows, _) = ldap
            .search(
                base,
                Scope::OneLevel,
                "(objectClass=*)",
                vec!["*", "entryCSN"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        rows.into_iter()
            .map(SearchEntry::construct)
            .map(|e| (e.dn.clone(), e))
            .collect()
    }

    async fn add_ou(&self, ou: &str) -> String {
        let dn = format!("ou={ou},{}", self.slapd.people_dn());
        let mut ldap = self.admin().await;
        ldap.add(
            &dn,
            vec![
                ("objectClass", HashSet::from(["organizationalUnit"])),
                ("ou", HashSet::from([ou])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        dn
    }

    /// Bind as `dn`; the LDAP result code (0 = success, 49 = invalidCredentials).
    async fn bind_rc(&self, dn: &str, password: &str) -> u32 {
        let (conn, mut ldap) = LdapConnAsync::new(&self.slapd.url).await.unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(dn, password).await.unwrap().rc
    }

    async fn user(&self, record: UserRecord, password: bool) -> LocalUser {
        let username = record.username.clone();
        self.store.create_local_user(&record).await.unwrap();
        if password {
            let hash = ucbridge_sync::password::hash_password(PASSWORD).unwrap();
            assert!(self
                .store
                .set_password_hash(&username, &hash)
                .await
                .unwrap());
        }
        self.store.local_user(&username).await.unwrap().unwrap()
    }

    async fn change(&self, change: UserChange) {
        self.store
            .apply_user_changes(None, &[change])
            .await
            .unwrap();
    }
}

fn record(username: &str, extension: Option<&str>) -> UserRecord {
    UserRecord {
        username: username.into(),
        first_name: Some("Jane".into()),
        last_name: Some(format!("Smith-{username}")),
        email: Some(format!("{username}@example.com")),
        aliases: vec![format!("{username}.alias")],
        extension: extension.map(str::to_owned),
        source: "local".into(),
        ..UserRecord::default()
    }
}

fn first(entry: &SearchEntry, attr: &str) -> Option<String> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first().cloned())
}

fn csn(entry: &SearchEntry) -> String {
    first(entry, "entryCSN").expect("slapd keeps entryCSN")
}

#[tokio::test]
async fn first_export_maps_uid_and_phone_for_every_choice() {
    let Some(env) = env().await else { return };
    env.user(record("jsmith", Some("+1 555 1002")), true).await;
    let id = env.user(record("akhan", Some("2001")), false).await.id;
    let cases = [
        (
            UidSource::PrimaryAlias,
            PhoneSource::Phone,
            ["jsmith.alias", "akhan.alias"],
        ),
        (
            UidSource::PrimaryEmail,
            PhoneSource::NumericPhone,
            ["jsmith@example.com", "akhan@example.com"],
        ),
        (UidSource::Username, PhoneSource::Empty, ["jsmith", "akhan"]),
        (
            UidSource::Phone,
            PhoneSource::Phone,
            ["+1 555 1002", "2001"],
        ),
        (
            UidSource::NumericPhone,
            PhoneSource::NumericPhone,
            ["15551002", "2001"],
        ),
    ];
    for (i, (uid_from, phone_from, want_uids)) in cases.into_iter().enumerate() {
        let base = env.add_ou(&format!("case{i}")).await;
        let mut settings = env.settings(&base);
        settings.uid_from = uid_from;
        settings.phone_from = phone_from;
        // A second store state per case: each case is a first export into its own OU.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let store = Store::open(&url).await.unwrap();
        for u in env.store.ldap_export_users().await.unwrap() {
            store.create_local_user(&u.user.record).await.unwrap();
            if let Some(h) = &u.password_hash {
                store
                    .set_password_hash(&u.user.record.username, h)
                    .await
                    .unwrap();
            }
        }
        let summary = LdapExporter::new(settings, store.clone())
            .unwrap()
            .export(ExportMode::Incremental)
            .await
            .unwrap();
        assert_eq!(summary.counts.added, 2, "{uid_from:?}: {summary:?}");
        assert_eq!(summary.counts.failed, 0, "{uid_from:?}: {summary:?}");
        let entries = env.entries(&base).await;
        let uids: HashSet<String> = entries.values().filter_map(|e| first(e, "uid")).collect();
        assert_eq!(
            uids,
            want_uids.iter().map(|s| s.to_string()).collect(),
            "{uid_from:?}"
        );
        let phone_of = |uid: &str| {
            entries
                .values()
                .find(|e| first(e, "uid").as_deref() == Some(uid))
                .and_then(|e| first(e, "telephoneNumber"))
        };
        let (jsmith_phone, akhan_phone) = match phone_from {
            PhoneSource::Empty => (None, None),
            PhoneSource::Phone => (Some("+1 555 1002"), Some("2001")),
            PhoneSource::NumericPhone => (Some("15551002"), Some("2001")),
        };
        assert_eq!(
            phone_of(want_uids[0]).as_deref(),
            jsmith_phone,
            "{uid_from:?}"
        );
        assert_eq!(
            phone_of(want_uids[1]).as_deref(),
            akhan_phone,
            "{uid_from:?}"
        );
        for e in entries.values() {
            let classes = e.attrs.get("objectClass").cloned().unwrap_or_default();
            assert!(classes.iter().any(|c| c == "inetOrgPerson"), "{classes:?}");
            assert!(e.dn.starts_with("uid="), "{}", e.dn);
        }
        store.close().await;
    }
    // uid_from = internal_id, and a user with nothing to export as uid.
    let base = env.add_ou("internal").await;
    let mut settings = env.settings(&base);
    settings.uid_from = UidSource::InternalId;
    let summary = env
        .exporter(settings)
        .export(ExportMode::Incremental)
        .await
        .unwrap();
    assert_eq!(summary.counts.added, 2, "{summary:?}");
    assert!(env
        .entries(&base)
        .await
        .contains_key(&format!("uid={id},{base}")));
}

#[tokio::test]
async fn phone_that_breaks_the_schema_fails_that_user_only() {
    let Some(env) = env().await else { return };
    env.user(record("alice", Some("1001")), true).await;
    env.user(record("bob", Some("*86#1002")), true).await;
    env.user(record("carol", Some("1003")), true).await;
    let mut settings = env.settings(env.slapd.people_dn());
    settings.phone_from = PhoneSource::Phone;
    let summary = env
        .exporter(settings)
        .export(ExportMode::Incremental)
        .await
        .unwrap();
    assert_eq!(summary.counts.added, 2, "{summary:?}");
    assert_eq!(summary.counts.failed, 1, "{summary:?}");
    let failed: Vec<_> = summary.failures().collect();
    assert_eq!(failed[0].username, "bob");
    let reason = failed[0].reason.as_deref().unwrap();
    assert!(
        reason.contains("add") && reason.contains("LDAP result 21"),
        "{reason}"
    );
    let entries = env.entries(env.slapd.people_dn()).await;
    assert_eq!(entries.len(), 2, "{:?}", entries.keys());
    let runs = env.store.ldap_export_runs(5).await.unwrap();
    assert_eq!(runs[0].status, ucbridge_store::LdapExportStatus::Partial);
    assert_eq!(runs[0].counts.failed, 1);
}

#[tokio::test]
async fn users_bind_with_their_argon2_password() {
    let Some(env) = env().await else { return };
    env.user(record("alice", Some("1001")), true).await;
    env.user(record("nopass", Some("1002")), false).await;
    let people = env.slapd.people_dn();
    env.exporter(env.settings(people))
        .export(ExportMode::Incremental)
        .await
        .unwrap();
    let entries = env.entries(people).await;
    let alice = format!("uid=alice,{people}");
    let nopass = format!("uid=nopass,{people}");
    assert!(entries.contains_key(&alice) && entries.contains_key(&nopass));
    // The admin reads the stored value: the argon2id PHC string under {ARGON2}.
    let mut admin = env.admin().await;
    let (rows, _) = admin
        .search(&alice, Scope::Base, "(objectClass=*)", vec!["userPassword"])
        .await
        .unwrap()
        .success()
        .unwrap();
    let e = SearchEntry::construct(rows.into_iter().next().unwrap());
    let stored = first(&e, "userPassword")
        .or_else(|| {
            e.bin_attrs
                .get("userPassword")
                .and_then(|v| v.first())
                .map(|b| String::from_utf8_lossy(b).into_owned())
        })
        .unwrap();
    assert!(stored.starts_with("{ARGON2}$argon2id$v=19$"), "{stored}");
    assert_eq!(
        env.bind_rc(&alice, PASSWORD).await,
        0,
        "slapd verifies the argon2id hash"
    );
    assert_eq!(env.bind_rc(&alice, "Wr0ng!pass").await, 49);
    assert!(!entries[&nopass].attrs.contains_key("userPassword"));
    assert_ne!(env.bind_rc(&nopass, PASSWORD).await, 0);
}

#[tokio::test]
async fn changed_phone_is_the_only_modification() {
    let Some(env) = env().await else { return };
    env.user(record("alice", Some("1001")), true).await;
    let bob = env.user(record("bob", Some("1002")), true).await;
    env.user(record("carol", Some("1003")), true).await;
    let people = env.slapd.people_dn();
    let exporter = env.exporter(env.settings(people));
    exporter.export(ExportMode::Incremental).await.unwrap();
    // Someone else's attribute on alice's entry must survive ucbridge's updates.
    let alice_dn = format!("uid=alice,{people}");
    env.admin()
        .await
        .modify(
            &alice_dn,
            vec![Mod::Add("description", HashSet::from(["kept"]))],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let before = env.entries(people).await;

    let again = exporter.export(ExportMode::Incremental).await.unwrap();
    assert_eq!(
        (again.counts.unchanged, again.users.len()),
        (3, 0),
        "{again:?}"
    );

    let mut after_record = bob.record.clone();
    after_record.extension = Some("2002".into());
    env.change(UserChange::Update {
        id: bob.id,
        before: bob.record.clone(),
        after: after_record,
    })
    .await;
    let summary = exporter.export(ExportMode::Incremental).await.unwrap();
    assert_eq!(summary.counts.modified, 1, "{summary:?}");
    assert_eq!(summary.counts.unchanged, 2, "{summary:?}");
    assert_eq!(summary.users[0].username, "bob");
    assert_eq!(summary.users[0].action, ExportAction::Modified);
    let after = env.entries(people).await;
    let bob_dn = format!("uid=bob,{people}");
    assert_eq!(
        first(&after[&bob_dn], "telephoneNumber").as_deref(),
        Some("2002")
    );
    assert_ne!(csn(&after[&bob_dn]), csn(&before[&bob_dn]));
    for dn in [&alice_dn, &format!("uid=carol,{people}")] {
        assert_eq!(csn(&after[dn]), csn(&before[dn]), "{dn} was written");
    }
    assert_eq!(
        first(&after[&alice_dn], "description").as_deref(),
        Some("kept")
    );
}

#[tokio::test]
async fn removed_users_lose_only_the_entries_ucbridge_created() {
    let Some(env) = env().await else { return };
    let people = env.slapd.people_dn();
    // An entry that existed before ucbridge: adopted (updated), never deleted by default.
    let pre_dn = format!("uid=legacy,{people}");
    env.admin()
        .await
        .add(
            &pre_dn,
            vec![
                ("objectClass", HashSet::from(["inetOrgPerson"])),
                ("uid", HashSet::from(["legacy"])),
                ("cn", HashSet::from(["Legacy"])),
                ("sn", HashSet::from(["Legacy"])),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let legacy = env.user(record("legacy", Some("1000")), true).await;
    let gone = env.user(record("gone", Some("1001")), true).await;
    let off = env.user(record("off", Some("1002")), true).await;
    env.user(record("stays", Some("1003")), true).await;
    let exporter = env.exporter(env.settings(people));
    let first_run = exporter.export(ExportMode::Incremental).await.unwrap();
    assert_eq!(
        (first_run.counts.added, first_run.counts.modified),
        (3, 1),
        "{first_run:?}"
    );

    for u in [&legacy, &gone] {
        env.change(UserChange::Delete {
            id: u.id,
            before: u.record.clone(),
        })
        .await;
    }
    env.change(UserChange::Disable {
        id: off.id,
        before: off.record.clone(),
    })
    .await;
    let summary = exporter.export(ExportMode::Incremental).await.unwrap();
    assert_eq!(summary.counts.deleted, 2, "{summary:?}");
    let entries = env.entries(people).await;
    let mut dns: Vec<_> = entries.keys().cloned().collect();
    dns.sort();
    assert_eq!(dns, vec![pre_dn.clone(), format!("uid=stays,{people}")]);
    let left: Vec<_> = summary
        .users
        .iter()
        .filter(|u| u.action == ExportAction::Left)
        .map(|u| u.username.as_str())
        .collect();
    assert_eq!(left, vec!["legacy"]);
    // Nothing more to do on the next run.
    let next = exporter.export(ExportMode::Incremental).await.unwrap();
    assert!(next.users.is_empty(), "{next:?}");
    assert_eq!(env.store.ldap_export_entries().await.unwrap().len(), 1);
}

#[tokio::test]
async fn removal_leave_keeps_entries() {
    let Some(env) = env().await else { return };
    let people = env.slapd.people_dn();
    let u = env.user(record("temp", Some("1001")), true).await;
    let mut settings = env.settings(people);
    settings.removal = RemovalPolicy::Leave;
    let exporter = env.exporter(settings);
    exporter.export(ExportMode::Incremental).await.unwrap();
    env.change(UserChange::Disable {
        id: u.id,
        before: u.record.clone(),
    })
    .await;
    let s = exporter.export(ExportMode::Incremental).await.unwrap();
    assert_eq!(s.users[0].action, ExportAction::Left, "{s:?}");
    assert_eq!(env.entries(people).await.len(), 1);
    let s = exporter.export(ExportMode::Incremental).await.unwrap();
    assert!(s.users.is_empty(), "reported once: {s:?}");
}

#[tokio::test]
async fn resynchronize_after_uid_change_renames_and_cleans_up() {
    let Some(env) = env().await else { return };
    let people = env.slapd.people_dn();
    env.user(record("alice", Some("+1001")), true).await;
    env.user(record("bob", Some("1002")), true).await;
    let gone = env.user(record("gone", Some("1003")), true).await;
    env.exporter(env.settings(people))
        .export(ExportMode::Incremental)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Drift made in LDAP by someone else: only a resynchronize reads entries back.
    let bob_old = format!("uid=bob,{people}");
    env.admin()
        .await
        .modify(
            &bob_old,
            vec![Mod::Replace("telephoneNumber", HashSet::from(["9999"]))],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    // The user went away while exports were not running (the state row remains).
    env.change(UserChange::Delete {
        id: gone.id,
        before: gone.record.clone(),
    })
    .await;

    let mut settings = env.settings(people);
    settings.uid_from = UidSource::NumericPhone;
    settings.phone_from = PhoneSource::NumericPhone;
    let exporter = env.exporter(settings);
    let summary = exporter.export(ExportMode::Resynchronize).await.unwrap();
    assert_eq!(summary.counts.deleted, 1, "{summary:?}");
    assert_eq!(summary.counts.modified, 2, "{summary:?}");
    assert!(summary
        .users
        .iter()
        .filter(|u| u.username != "gone")
        .all(|u| u.action == ExportAction::Renamed));
    let entries = env.entries(people).await;
    let mut dns: Vec<_> = entries.keys().cloned().collect();
    dns.sort();
    assert_eq!(
        dns,
        vec![format!("uid=1001,{people}"), format!("uid=1002,{people}")]
    );
    let bob = &entries[&format!("uid=1002,{people}")];
    let uids = bob.attrs.get("uid").cloned().unwrap_or_default();
    assert_eq!(uids, vec!["1002".to_owned()], "the old RDN value is gone");
    assert_eq!(first(bob, "telephoneNumber").as_deref(), Some("1002"));
    assert_eq!(first(bob, "mail").as_deref(), Some("bob@example.com"));

    // Drift again: resynchronize repairs it, incremental trusts the store.
    let bob_dn = format!("uid=1002,{people}");
    env.admin()
        .await
        .modify(
            &bob_dn,
            vec![Mod::Replace("telephoneNumber", HashSet::from(["9999"]))],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let inc = exporter.export(ExportMode::Incremental).await.unwrap();
    assert_eq!(inc.counts.unchanged, 2, "{inc:?}");
    let resync = exporter.export(ExportMode::Resynchronize).await.unwrap();
    assert_eq!(
        (resync.counts.modified, resync.counts.unchanged),
        (1, 1),
        "{resync:?}"
    );
    assert_eq!(
        first(&env.entries(people).await[&bob_dn], "telephoneNumber").as_deref(),
        Some("1002")
    );
}

#[tokio::test]
async fn hostile_and_non_ascii_values_round_trip() {
    let Some(env) = env().await else { return };
    let people = env.slapd.people_dn();
    let hostile = r#"a,b+c"d<e>f;g=h\"#;
    let mut r = record(hostile, Some("1001"));
    r.first_name = Some("Zoë".into());
    r.last_name = Some("Ærøskøbing-東京".into());
    r.display_name = Some(" #Zoë (a)=b* ".into());
    env.user(r, true).await;
    env.user(record("Jürgen Groß", Some("1002")), true).await;
    for naming in [NamingAttribute::Uid, NamingAttribute::Cn] {
        let mut settings = env.settings(people);
        settings.naming_attribute = naming;
        let exporter = env.exporter(settings);
        let summary = exporter.export(ExportMode::Resynchronize).await.unwrap();
        assert_eq!(summary.counts.failed, 0, "{summary:?}");
        let entries = env.entries(people).await;
        assert_eq!(entries.len(), 2, "{:?}", entries.keys());
        let e = entries
            .values()
            .find(|e| first(e, "uid").as_deref() == Some(hostile))
            .expect("uid round-trips byte for byte");
        assert_eq!(first(e, "sn").as_deref(), Some("Ærøskøbing-東京"));
        assert_eq!(first(e, "displayName").as_deref(), Some("#Zoë (a)=b*"));
        assert!(e.dn.starts_with(&format!("{}=", naming.name())), "{}", e.dn);
        // The DN slapd returns is usable as is: bind with it.
        assert_eq!(env.bind_rc(&e.dn, PASSWORD).await, 0, "{}", e.dn);
        let jurgen = entries
            .values()
            .find(|e| first(e, "uid").as_deref() == Some("Jürgen Groß"))
            .expect("non-ASCII uid");
        // mail is IA5String (ASCII): an internationalised address is left out.
        assert_eq!(first(jurgen, "mail"), None);
        // Nothing to do afterwards, read back or not.
        let again = exporter.export(ExportMode::Resynchronize).await.unwrap();
        assert_eq!(again.counts.unchanged, 2, "{again:?}");
        let inc = exporter.export(ExportMode::Incremental).await.unwrap();
        assert_eq!(inc.counts.unchanged, 2, "{inc:?}");
    }
}

#[tokio::test]
async fn bad_bind_and_concurrent_runs_are_errors() {
    let Some(env) = env().await else { return };
    env.user(record("alice", Some("1001")), true).await;
    let mut settings = env.settings(env.slapd.people_dn());
    settings.bind_password = Some(Secret::new("wrong"));
    let err = env
        .exporter(settings)
        .export(ExportMode::Incremental)
        .await
        .unwrap_err();
    assert!(matches!(err, LdapExportError::Bind { rc: 49, .. }), "{err}");
    assert!(!err.to_string().contains("wrong"));
    let runs = env.store.ldap_export_runs(1).await.unwrap();
    assert_eq!(runs[0].status, ucbridge_store::LdapExportStatus::Failed);

    let exporter = env.exporter(env.settings(env.slapd.people_dn()));
    let (a, b) = tokio::join!(
        exporter.export(ExportMode::Incremental),
        exporter.export(ExportMode::Incremental)
    );
    // One exporter serialises its runs: both succeed, the second finds nothing to do.
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.counts.added + b.counts.added, 1);
}

#[tokio::test]
async fn tls_is_verified_against_the_configured_ca() {
    let (ca_pem, tls) = ucbridge_testkit::tls::localhost_certificate();
    let Some(slapd) = Slapd::start_with(SlapdOptions { tls: Some(tls) }) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let settings = |url: &str| {
        LdapExportSettings::new(
            url,
            slapd.admin_dn(),
            Secret::new(slapd.admin_password()),
            slapd.people_dn(),
        )
    };
    let ldaps = slapd.ldaps_url.clone().unwrap();
    // Without the CA the certificate is refused.
    let err = LdapExporter::new(settings(&ldaps), store.clone())
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, LdapExportError::Connect { .. }), "{err}");
    let mut starttls = settings(&slapd.url);
    starttls.starttls = true;
    assert!(LdapExporter::new(starttls.clone(), store.clone())
        .unwrap()
        .connect()
        .await
        .is_err());
    // With it, ldaps:// and StartTLS both work.
    for mut s in [settings(&ldaps), starttls] {
        s.ca_file = Some(ca_file.clone());
        let exporter = LdapExporter::new(s, store.clone()).unwrap();
        exporter
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", slapd.log()));
    }
}

#[test]
fn settings_deserialize_with_defaults_and_hide_the_password() {
    let s: LdapExportSettings = toml::from_str(
        r#"
url = "ldaps://ldap.example.com"
bind_dn = "cn=ucbridge,dc=example,dc=com"
bind_password = "s3cret"
base_dn = "ou=people,dc=example,dc=com"
uid_from = "numeric_phone"
"#,
    )
    .unwrap();
    assert_eq!(s.uid_from, UidSource::NumericPhone);
    assert_eq!(s.phone_from, PhoneSource::Phone);
    assert_eq!(s.removal, RemovalPolicy::DeleteCreated);
    assert_eq!(s.object_classes, vec!["inetOrgPerson".to_owned()]);
    assert!(!format!("{s:?}").contains("s3cret"));
    assert!(!serde_json::to_string(&s).unwrap().contains("s3cret"));
    s.validate().unwrap();
    let mut bad = s.clone();
    bad.url = "http://x".into();
    assert!(bad.validate().is_err());
    let mut bad = s;
    bad.starttls = true;
    assert!(bad.validate().is_err(), "starttls on ldaps://");
}
