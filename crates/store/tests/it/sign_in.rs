//! Sign-in lookups on SQLite and PostgreSQL: each ID source finds exactly the synced users
//! it should (the userid's local part by an index range, case-insensitively), on the
//! default cluster and on a further one (with its cluster; one userid on two clusters is
//! two candidates; an LDAP source's entry none), the SSO lookup alike, and a sign-in audit
//! entry is written.

use ucbridge_store::*;

async fn backends() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let mut stores = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    stores.push((Store::open(&url).await.expect("sqlite opens"), Some(dir)));
    if let Some(url) = ucbridge_testkit::postgres_database() {
        stores.push((Store::open(&url).await.expect("postgres opens"), None));
    }
    stores
}

fn cucm(n: usize, userid: &str, mail: Option<&str>, ext: Option<&str>) -> SourceUser {
    SourceUser {
        uuid: format!("{{00000000-0000-0000-0000-{n:012}}}"),
        userid: userid.into(),
        mailid: mail.map(str::to_owned),
        primary_extension: ext.map(str::to_owned),
        status: Some(1),
        ..SourceUser::default()
    }
}

async fn fill(store: &Store) {
    let users = vec![
        cucm(
            1,
            "Jane.Doe@example.com",
            Some("jane@corp.example"),
            Some("1001"),
        ),
        cucm(2, "jdoe", Some("john@corp.example"), Some("1002")),
        cucm(3, "jane.doe2@example.com", None, Some("1003")),
        cucm(4, "twin@a.example", None, None),
        cucm(5, "twin@b.example", None, None),
        cucm(6, "gone", None, Some("1006")),
        // In CUCM but never synced into a local user: cannot sign in.
        cucm(7, "unsynced", None, Some("1007")),
    ];
    store
        .begin_full_refresh(SOURCE_CUCM, "n", 60_000)
        .await
        .unwrap();
    store.stage_users(SOURCE_CUCM, "n", &users).await.unwrap();
    store
        .finish_full_refresh(SOURCE_CUCM, "n", None)
        .await
        .unwrap();
    let changes: Vec<UserChange> = users[..6]
        .iter()
        .map(|u| UserChange::Create {
            after: UserRecord {
                username: format!("local-{}", u.userid.to_lowercase()),
                source: "cucm".into(),
                source_key: Some(u.uuid.clone()),
                ..UserRecord::default()
            },
        })
        .collect();
    store.apply_user_changes(None, &changes).await.unwrap();
    let gone = store.local_user("local-gone").await.unwrap().unwrap();
    store
        .apply_user_changes(
            None,
            &[UserChange::Disable {
                id: gone.id,
                before: gone.record,
            }],
        )
        .await
        .unwrap();
}

/// A further cluster `east` (a `cucm` source in `source_users`) and an LDAP source `corp`,
/// each with synced users linked to their entries as merged user sync links them.
async fn fill_further_sources(store: &Store) {
    store
        .register_source("east", SourceKind::Cucm, Some("east"))
        .await
        .unwrap();
    store
        .register_source("corp", SourceKind::Ldap, None)
        .await
        .unwrap();
    let east = vec![
        cucm(
            11,
            "East.Only@east.example",
            Some("eo@east.example"),
            Some("2001"),
        ),
        // Also a userid of the default cluster: which one is meant is unknown.
        cucm(12, "JDoe", None, Some("2002")),
        cucm(13, "east.unsynced", None, Some("2003")),
    ];
    // An LDAP entry is no CUCM end user, even with a userid-like value.
    let corp = vec![cucm(21, "ldap.person", None, Some("3001"))];
    for (source, users) in [("east", &east), ("corp", &corp)] {
        let entries: Vec<SourceEntry> = users
            .iter()
            .map(|u| SourceEntry {
                user: u.clone(),
                ..SourceEntry::default()
            })
            .collect();
        store.begin_full_refresh(source, "n", 60_000).await.unwrap();
        store
            .stage_source_entries(source, "n", &entries)
            .await
            .unwrap();
        store
            .finish_source_refresh(source, "n", &SourceRefreshEnd::default())
            .await
            .unwrap();
    }
    let linked = [(&east[0], "east"), (&east[1], "east"), (&corp[0], "corp")];
    let changes: Vec<UserChange> = linked
        .iter()
        .map(|(u, source)| UserChange::Create {
            after: UserRecord {
                username: format!("{source}-{}", u.userid.to_lowercase()),
                source: (*source).into(),
                source_key: Some(u.uuid.clone()),
                ..UserRecord::default()
            },
        })
        .collect();
    store.apply_user_changes(None, &changes).await.unwrap();
}

/// (userid, cluster) of the candidates.
async fn clusters(store: &Store, key: LoginKey, login: &str) -> Vec<(String, String)> {
    store
        .sign_in_candidates(key, login, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.cucm_userid, u.cluster))
        .collect()
}

async fn userids(store: &Store, key: LoginKey, login: &str) -> Vec<String> {
    store
        .sign_in_candidates(key, login, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.cucm_userid)
        .collect()
}

#[tokio::test]
async fn each_id_source_finds_its_users() {
    for (store, _dir) in backends().await {
        let b = store.backend();
        fill(&store).await;
        use LoginKey::*;
        assert_eq!(
            userids(&store, Userid, "jane.doe@EXAMPLE.com").await,
            ["Jane.Doe@example.com"],
            "{b:?}"
        );
        assert_eq!(userids(&store, Userid, "JDOE").await, ["jdoe"], "{b:?}");
        assert_eq!(
            userids(&store, UseridLocalPart, "jane.doe").await,
            ["Jane.Doe@example.com"],
            "{b:?}"
        );
        assert_eq!(
            userids(&store, UseridLocalPart, "JANE.DOE").await,
            ["Jane.Doe@example.com"],
            "{b:?}"
        );
        assert!(
            userids(&store, UseridLocalPart, "jane.do").await.is_empty(),
            "{b:?}"
        );
        assert!(
            userids(&store, UseridLocalPart, "jane").await.is_empty(),
            "{b:?}"
        );
        assert!(
            userids(&store, UseridLocalPart, "jdoe").await.is_empty(),
            "no @: {b:?}"
        );
        assert_eq!(
            userids(&store, UseridLocalPart, "twin").await.len(),
            2,
            "{b:?}"
        );
        assert_eq!(
            userids(&store, Email, "John@Corp.Example").await,
            ["jdoe"],
            "{b:?}"
        );
        assert_eq!(
            userids(&store, Extension, "1003").await,
            ["jane.doe2@example.com"],
            "{b:?}"
        );
        assert_eq!(
            userids(&store, Username, "LOCAL-JDOE").await,
            ["jdoe"],
            "{b:?}"
        );
        assert!(
            userids(&store, Extension, "1007").await.is_empty(),
            "unsynced: {b:?}"
        );
        // Wildcards are data, not patterns.
        assert!(userids(&store, Userid, "%").await.is_empty(), "{b:?}");
        assert!(
            userids(&store, UseridLocalPart, "_").await.is_empty(),
            "{b:?}"
        );
        let gone = store
            .sign_in_candidates(Extension, "1006", 2)
            .await
            .unwrap();
        assert_eq!(gone.len(), 1);
        assert!(gone[0].disabled, "{b:?}");
        assert_eq!(gone[0].username, "local-gone");
        assert_eq!(gone[0].cluster, SOURCE_CUCM, "{b:?}");

        // Users of a further cluster are candidates too, with their cluster.
        fill_further_sources(&store).await;
        let east_only = vec![("East.Only@east.example".to_owned(), "east".to_owned())];
        for (key, login) in [
            (Userid, "east.only@EAST.example"),
            (UseridLocalPart, "EAST.ONLY"),
            (Email, "EO@east.example"),
            (Extension, "2001"),
            (Username, "east-east.only@east.example"),
        ] {
            assert_eq!(
                clusters(&store, key, login).await,
                east_only,
                "{key:?} {b:?}"
            );
        }
        let twins = clusters(&store, Userid, "jdoe").await;
        assert_eq!(
            twins,
            [
                ("jdoe".to_owned(), SOURCE_CUCM.to_owned()),
                ("JDoe".to_owned(), "east".to_owned())
            ],
            "one userid on two clusters is ambiguous: {b:?}"
        );
        for (key, login) in [
            (Extension, "2003"),
            (Extension, "3001"),
            (Userid, "ldap.person"),
        ] {
            assert!(
                clusters(&store, key, login).await.is_empty(),
                "{login} {b:?}"
            );
        }
        // The SSO lookup is the same: found on east; ambiguous is nobody.
        let (user, userid) = store
            .local_user_for_cucm_userid("EAST.ONLY@east.example")
            .await
            .unwrap()
            .expect("the east user");
        assert_eq!(
            (user.record.username.as_str(), userid.as_str()),
            ("east-east.only@east.example", "East.Only@east.example")
        );
        assert!(store
            .local_user_for_cucm_userid("jdoe")
            .await
            .unwrap()
            .is_none());

        store
            .record_sign_in(
                "local-jdoe",
                "sign_in_refused",
                &serde_json::json!({"reason": "x"}),
            )
            .await
            .unwrap();
        let audit = store.audit_log(None, 100).await.unwrap();
        let last = audit.last().unwrap();
        assert_eq!(
            (last.action.as_str(), last.run_id),
            ("sign_in_refused", None),
            "{b:?}"
        );
        assert_eq!(last.after.as_deref(), Some(r#"{"reason":"x"}"#));
    }
}
