//! LDAP directory sources against a real slapd (syncprov overlay, the lab's AD-like
//! schema), on SQLite and PostgreSQL: paged full refresh, renames, polled changes,
//! deletions by full compare, AD's disabled bit and objectGUID, per-entry problems, and
//! failures that keep the previous snapshot.

use std::collections::HashSet;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod};
use ucbridge_auth::Secret;
use ucbridge_store::{RefreshState, Store};
use ucbridge_sync::{DirectoryFlavor, LdapSource, LdapSourceError, LdapSourceSettings};
use ucbridge_testkit::slapd::{Slapd, SlapdFeatures, SlapdOptions};

async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ucbridge.db").display());
    out.push((Store::open(&url).await.unwrap(), Some(dir)));
    if let Some(url) = ucbridge_testkit::postgres_database() {
        out.push((Store::open(&url).await.unwrap(), None));
    }
    out
}

async fn admin(slapd: &Slapd) -> Ldap {
    let (driver, mut ldap) = LdapConnAsync::with_settings(LdapConnSettings::new(), &slapd.url)
        .await
        .unwrap();
    ldap3::drive!(driver);
    ldap.simple_bind(slapd.admin_dn(), slapd.admin_password())
        .await
        .unwrap()
        .success()
        .unwrap();
    ldap
}

type Attrs = Vec<(&'static str, Vec<Vec<u8>>)>;

async fn add(ldap: &mut Ldap, dn: &str, attrs: Attrs) {
    let attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = attrs
        .into_iter()
        .map(|(a, v)| (a.as_bytes().to_vec(), v.into_iter().collect()))
        .collect();
    ldap.add(dn, attrs).await.unwrap().success().unwrap();
}

fn text(v: &str) -> Vec<Vec<u8>> {
    vec![v.as_bytes().to_vec()]
}

fn person(uid: Option<&str>, cn: &str) -> Attrs {
    let mut a: Attrs = vec![
        ("objectClass", text("inetOrgPerson")),
        ("cn", text(cn)),
        ("sn", text(&format!("Surname {cn}"))),
        ("givenName", text("Given")),
    ];
    if let Some(uid) = uid {
        a.push(("uid", text(uid)));
        a.push(("mail", text(&format!("{uid}@example.com"))));
    }
    a
}

fn settings(slapd: &Slapd, url: &str) -> LdapSourceSettings {
    let mut s = LdapSourceSettings::new(
        url,
        slapd.admin_dn(),
        Secret::new(slapd.admin_password()),
        slapd.people_dn(),
    );
    s.page_size = 5;
    // A binary attribute mapped to a text field: the invalid-UTF-8 case.
    s.attributes
        .insert("pager_number".into(), "jpegPhoto".into());
    s
}

#[tokio::test]
async fn openldap_source_pages_renames_polls_and_deletes() {
    let (ca_pem, tls) = ucbridge_testkit::tls::localhost_certificate();
    for (store, _dir) in stores().await {
        let features = SlapdFeatures {
            syncprov: true,
            ad_schema: false,
        };
        let Some(slapd) = Slapd::start_with_features(
            SlapdOptions {
                tls: Some(tls.clone()),
            },
            features,
        ) else {
            return;
        };
        let ca_dir = tempfile::tempdir().unwrap();
        let ca_file = ca_dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).unwrap();
        let people = slapd.people_dn();
        let mut ldap = admin(&slapd).await;
        for i in 0..12 {
            let uid = format!("p{i:02}");
            add(
                &mut ldap,
                &format!("uid={uid},{people}"),
                person(Some(&uid), &uid),
            )
            .await;
        }
        // Problems: no uid; a second "p03"; a pager that is not UTF-8.
        add(
            &mut ldap,
            &format!("cn=nouid,{people}"),
            person(None, "nouid"),
        )
        .await;
        add(
            &mut ldap,
            &format!("cn=twin,{people}"),
            person(Some("P03"), "twin"),
        )
        .await;
        let mut bad = person(Some("binary"), "binary");
        bad.push(("jpegPhoto", vec![vec![0xff, 0xfe, 0x00]]));
        add(&mut ldap, &format!("uid=binary,{people}"), bad).await;

        // TLS is verified: StartTLS without the lab CA is refused, with it accepted.
        let mut plain = settings(&slapd, &slapd.url);
        plain.starttls = true;
        let source = LdapSource::new("corp", plain.clone(), store.clone())
            .await
            .unwrap();
        let err = source.full_refresh().await.unwrap_err();
        assert!(matches!(err, LdapSourceError::Connect { .. }), "{err}");
        plain.ca_file = Some(ca_file.clone());
        let source = LdapSource::new("corp", plain, store.clone()).await.unwrap();

        let report = source.full_refresh().await.unwrap();
        // 15 entries over 3 pages of 5; the one without uid is left out.
        assert_eq!(report.entries_read, 15);
        assert_eq!(report.swap.total, 14);
        let messages: Vec<String> = report
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.entry, p.message))
            .collect();
        assert_eq!(report.problem_count, 3, "{messages:?}");
        assert!(messages
            .iter()
            .any(|m| m.starts_with("cn=nouid") && m.contains("no uid")));
        assert!(messages
            .iter()
            .any(|m| m.contains("userid p03") && m.contains("2 entries")));
        assert!(messages
            .iter()
            .any(|m| m.starts_with("uid=binary") && m.contains("not valid UTF-8")));
        let state = store.snapshot_state("corp").await.unwrap();
        assert_eq!(state.state, RefreshState::Idle);
        assert_eq!(state.entry_problem_count, 3);
        assert!(state.poll_cursor.is_some());
        let p01 = store
            .source_entries_by_userid("corp", "p01")
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(p01.user.mailid.as_deref(), Some("p01@example.com"));
        assert_eq!(p01.user.uuid.len(), 36, "an entryUUID: {}", p01.user.uuid);

        // A rename and a change arrive by polling; the renamed entry keeps its identity.
        ldap.modifydn(&format!("uid=p01,{people}"), "uid=p01-renamed", true, None)
            .await
            .unwrap()
            .success()
            .unwrap();
        let mail: HashSet<&str> = HashSet::from(["new-p02@example.com"]);
        ldap.modify(
            &format!("uid=p02,{people}"),
            vec![Mod::Replace("mail", mail)],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
        let poll = source.poll_changes().await.unwrap();
        assert!(poll.rows_changed >= 2, "{poll:?}");
        let renamed = store
            .source_entry("corp", &p01.user.uuid)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(renamed.user.userid, "p01-renamed");
        assert_eq!(
            renamed.dn.as_deref(),
            Some(format!("uid=p01-renamed,{people}").as_str())
        );
        let p02 = store.source_entries_by_userid("corp", "p02").await.unwrap();
        assert_eq!(p02[0].user.mailid.as_deref(), Some("new-p02@example.com"));

        // A deletion is found by the next full compare.
        ldap.delete(&format!("uid=p04,{people}"))
            .await
            .unwrap()
            .success()
            .unwrap();
        let report = source.full_refresh().await.unwrap();
        assert_eq!(report.swap.removed, 1);
        assert_eq!(report.swap.total, 13);

        // syncrepl refreshAndPersist (slapd's syncprov): changes arrive as slapd sends them.
        follow_changes(&store, &source, &mut ldap, people).await;

        // A wrong password or a directory that is gone fails the refresh with the reason
        // and keeps the snapshot.
        let mut wrong = settings(&slapd, &slapd.url);
        wrong.bind_password = Some(Secret::new("not-the-password"));
        let err = LdapSource::new("corp", wrong, store.clone())
            .await
            .unwrap()
            .full_refresh()
            .await
            .unwrap_err();
        assert!(matches!(err, LdapSourceError::Bind { rc: 49, .. }), "{err}");
        assert!(!err.to_string().contains("not-the-password"));
        let url = slapd.url.clone();
        drop(slapd);
        let err = LdapSource::new("corp", settings_for_url(&url), store.clone())
            .await
            .unwrap()
            .full_refresh()
            .await
            .unwrap_err();
        assert!(matches!(err, LdapSourceError::Connect { .. }), "{err}");
        let state = store.snapshot_state("corp").await.unwrap();
        assert_eq!(state.state, RefreshState::Failed);
        assert!(state.reason.unwrap().contains("cannot reach"));
        assert_eq!(store.source_entry_count("corp").await.unwrap(), 13);
    }
}

/// Wait (bounded) until `done` holds for the snapshot of "corp".
async fn wait_for(
    store: &Store,
    what: &str,
    done: impl Fn(&[ucbridge_store::SourceEntry]) -> bool,
) {
    for _ in 0..400 {
        let entries = store.source_entries_page("corp", None, 100).await.unwrap();
        if done(&entries) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("syncrepl: {what} did not reach the snapshot within 20 s");
}

async fn follow_changes(store: &Store, source: &LdapSource, ldap: &mut Ldap, people: &str) {
    // The full refresh stored a cookie, so the session resumes from it: its refresh
    // phase carries only what changed since (here nothing), not the whole directory.
    let cookie = store.snapshot_state("corp").await.unwrap().sync_cookie;
    assert!(cookie.is_some(), "a full refresh stores a sync cookie");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tell, persisting) = tokio::sync::oneshot::channel::<()>();
    let follower = {
        let source = source.clone();
        tokio::spawn(async move {
            source
                .follow_and_tell(
                    async {
                        let _ = stopped.await;
                    },
                    Some(tell),
                )
                .await
        })
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), persisting)
        .await
        .expect("the refresh phase ends within 20 s")
        .expect("the session persists");
    let title: HashSet<&str> = HashSet::from(["Followed"]);
    ldap.modify(
        &format!("uid=p05,{people}"),
        vec![Mod::Replace("title", title)],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    ldap.delete(&format!("uid=p06,{people}"))
        .await
        .unwrap()
        .success()
        .unwrap();
    add(
        ldap,
        &format!("uid=p99,{people}"),
        person(Some("p99"), "p99"),
    )
    .await;
    wait_for(store, "a change, a deletion and an addition", |entries| {
        let by = |uid: &str| entries.iter().find(|e| e.user.userid == uid);
        by("p05").is_some_and(|e| e.user.title.as_deref() == Some("Followed"))
            && by("p06").is_none()
            && by("p99").is_some()
    })
    .await;
    let _ = stop.send(());
    let report = follower.await.unwrap().unwrap();
    assert!(report.rows_changed >= 3, "{report:?}");
    // A change, a deletion and an addition; the 12 unchanged entries were not re-sent.
    assert!(report.entries_seen <= 4, "{report:?}");
    // Without a cookie a session does not start (the server would re-send everything):
    // it asks for a full refresh, which stores one.
    store.set_sync_cookie("corp", None).await.unwrap();
    let err = source.follow(std::future::pending()).await.unwrap_err();
    assert!(
        matches!(err, LdapSourceError::SyncRefreshRequired(_)),
        "{err}"
    );
    source.full_refresh().await.unwrap();
    assert!(store
        .snapshot_state("corp")
        .await
        .unwrap()
        .sync_cookie
        .is_some());
}

fn settings_for_url(url: &str) -> LdapSourceSettings {
    let mut s = LdapSourceSettings::new(
        url,
        ucbridge_testkit::slapd::ADMIN_DN,
        Secret::new(ucbridge_testkit::slapd::ADMIN_PASSWORD),
        ucbridge_testkit::slapd::PEOPLE_DN,
    );
    s.timeout_secs = 5;
    s
}

fn ad_person(sam: &str, guid: Option<[u8; 16]>, uac: i64, usn: u64) -> Attrs {
    let mut a: Attrs = vec![
        (
            "objectClass",
            vec![b"inetOrgPerson".to_vec(), b"user".to_vec()],
        ),
        ("cn", text(sam)),
        ("sn", text("Doe")),
        ("sAMAccountName", text(sam)),
        ("userPrincipalName", text(&format!("{sam}@corp.example"))),
        ("userAccountControl", text(&uac.to_string())),
        ("uSNChanged", text(&usn.to_string())),
    ];
    if let Some(g) = guid {
        a.push(("objectGUID", vec![g.to_vec()]));
    }
    a
}

#[tokio::test]
async fn active_directory_like_source_maps_guid_disabled_and_usn() {
    let features = SlapdFeatures {
        syncprov: false,
        ad_schema: true,
    };
    let Some(slapd) = Slapd::start_with_features(SlapdOptions::default(), features) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let people = slapd.people_dn();
    let mut ldap = admin(&slapd).await;
    let guid = |n: u8| {
        let mut g = [0x80u8; 16];
        g[0] = n;
        g
    };
    // 512 = NORMAL_ACCOUNT; 514 = NORMAL_ACCOUNT | ACCOUNTDISABLE.
    add(
        &mut ldap,
        &format!("cn=alice,{people}"),
        ad_person("alice", Some(guid(1)), 512, 100),
    )
    .await;
    add(
        &mut ldap,
        &format!("cn=bob,{people}"),
        ad_person("bob", Some(guid(2)), 514, 101),
    )
    .await;
    add(
        &mut ldap,
        &format!("cn=noguid,{people}"),
        ad_person("noguid", None, 512, 102),
    )
    .await;
    let mut s = settings_for_url(&slapd.url);
    s.flavor = DirectoryFlavor::ActiveDirectory;
    s.filter = "(objectClass=user)".into();
    let source = LdapSource::new("ad", s, store.clone()).await.unwrap();
    let report = source.full_refresh().await.unwrap();
    assert_eq!(report.swap.total, 2);
    assert_eq!(report.problem_count, 1, "{:?}", report.problems);
    assert!(report.problems[0].message.contains("no objectGUID"));
    let bob = store.source_entries_by_userid("ad", "bob").await.unwrap();
    assert!(bob[0].disabled, "userAccountControl 514 is disabled");
    assert_eq!(bob[0].user.uuid, "80808002-8080-8080-8080-808080808080");
    let alice = store.source_entries_by_userid("ad", "alice").await.unwrap();
    assert!(!alice[0].disabled);
    assert_eq!(
        store
            .snapshot_state("ad")
            .await
            .unwrap()
            .poll_cursor
            .as_deref(),
        Some("102")
    );

    // Bob is enabled again (a higher uSNChanged, as AD would give): the poll sees it.
    let uac: HashSet<&str> = HashSet::from(["512"]);
    let usn: HashSet<&str> = HashSet::from(["103"]);
    ldap.modify(
        &format!("cn=bob,{people}"),
        vec![
            Mod::Replace("userAccountControl", uac),
            Mod::Replace("uSNChanged", usn),
        ],
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let poll = source.poll_changes().await.unwrap();
    assert_eq!(poll.rows_changed, 1, "{poll:?}");
    // This slapd has no syncprov: syncrepl is refused, so the keeper polls instead.
    let plain = LdapSource::new("plain", settings_for_url(&slapd.url), store.clone())
        .await
        .unwrap();
    plain.full_refresh().await.unwrap();
    let err = plain.follow(std::future::pending()).await.unwrap_err();
    assert!(
        matches!(err, LdapSourceError::SyncreplUnavailable(_)),
        "{err}"
    );
    let bob = store.source_entries_by_userid("ad", "bob").await.unwrap();
    assert!(!bob[0].disabled);
    assert_eq!(
        store
            .snapshot_state("ad")
            .await
            .unwrap()
            .poll_cursor
            .as_deref(),
        Some("103")
    );
}
