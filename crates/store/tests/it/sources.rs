//! Directory sources (migration 0013) on SQLite and PostgreSQL: a database from before
//! 0013 keeps its synced users, now recorded as coming from the default `cucm` source;
//! a named source's snapshot is staged, swapped and changed per source.

use ucbridge_store::*;

/// A database migrated up to 0012 only, as a release before sources left it, with one
/// user synced from CUCM; then opened by this release (which runs 0013).
async fn migrated_from_0012(url: &str, backend: &str) -> Store {
    sqlx::any::install_default_drivers();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let old = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0013" {
            std::fs::copy(&path, old.path().join(&name)).unwrap();
        }
    }
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO users (username, aliases, source, source_key, disabled, created_at, updated_at) \
         VALUES ('jdoe', '[]', 'cucm', '{U1}', 0, 1, 1), ('local', '[]', 'local', NULL, 0, 1, 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    Store::open(url).await.unwrap()
}

fn entry(n: usize, userid: &str) -> SourceEntry {
    SourceEntry {
        user: SourceUser {
            uuid: format!("uuid-{n}"),
            userid: userid.into(),
            mailid: Some(format!("{userid}@example.com")),
            ..SourceUser::default()
        },
        dn: Some(format!("uid={userid},ou=people")),
        disabled: false,
    }
}

#[tokio::test]
async fn sources_migrate_and_keep_separate_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![(
        format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display()),
        "sqlite",
    )];
    if let Some(url) = ucbridge_testkit::postgres_database() {
        urls.push((url, "postgres"));
    }
    for (url, backend) in urls {
        let store = migrated_from_0012(&url, backend).await;
        // The existing synced user came from the default CUCM source and its cluster.
        let linked = store.user_sources("jdoe").await.unwrap();
        assert_eq!(linked.len(), 1, "{backend}");
        assert_eq!(linked[0].source, SOURCE_CUCM);
        assert_eq!(linked[0].source_key, "{U1}");
        assert_eq!(linked[0].cluster.as_deref(), Some("cucm"));
        assert!(store.user_sources("local").await.unwrap().is_empty());
        let sources = store.directory_sources().await.unwrap();
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].kind, SourceKind::Cucm);

        // A source keeps its kind for life.
        store
            .register_source("corp", SourceKind::Ldap, None)
            .await
            .unwrap();
        assert!(store
            .register_source("corp", SourceKind::Cucm, None)
            .await
            .is_err());

        // Two sources refresh without touching each other's staging or snapshot.
        for name in ["corp", "other"] {
            store
                .register_source(name, SourceKind::Ldap, None)
                .await
                .unwrap();
            store.begin_full_refresh(name, "t", 60_000).await.unwrap();
        }
        let corp: Vec<SourceEntry> = (0..450).map(|n| entry(n, &format!("u{n}"))).collect();
        store
            .stage_source_entries("corp", "t", &corp)
            .await
            .unwrap();
        store
            .stage_source_entries("other", "t", &corp[..3])
            .await
            .unwrap();
        store
            .fail_full_refresh("other", "t", "bind refused")
            .await
            .unwrap();
        let end = SourceRefreshEnd {
            sync_cookie: Some("rid=000,csn=1"),
            ..SourceRefreshEnd::default()
        };
        let swap = store
            .finish_source_refresh("corp", "t", &end)
            .await
            .unwrap();
        assert_eq!((swap.added, swap.total), (450, 450), "{backend}");
        let state = store.snapshot_state("corp").await.unwrap();
        assert_eq!(state.sync_cookie.as_deref(), Some("rid=000,csn=1"));
        assert_eq!(store.source_entry_count("other").await.unwrap(), 0);

        // Changes: one disabled (a change though its fields are equal), one removed.
        let mut off = corp[7].clone();
        off.disabled = true;
        let changed = store
            .apply_source_entry_changes("corp", &[off], &["uuid-8".into()], Some("42"))
            .await
            .unwrap();
        assert_eq!(changed, 2);
        assert!(
            store
                .source_entry("corp", "uuid-7")
                .await
                .unwrap()
                .unwrap()
                .disabled
        );
        let state = store.snapshot_state("corp").await.unwrap();
        assert_eq!(state.poll_cursor.as_deref(), Some("42"));
        assert_eq!(state.users_count, 449);
        let page = store
            .source_entries_page("corp", Some("uuid-98"), 5)
            .await
            .unwrap();
        assert_eq!(page[0].user.uuid, "uuid-99");

        // A batch larger than one statement, one identity twice (the later copy wins):
        // only the rows that really differ count.
        let mut batch: Vec<SourceEntry> = corp[..449].to_vec();
        batch[300].user.title = Some("Moved".into());
        let mut again = corp[10].clone();
        again.user.title = Some("Later".into());
        batch.push(again);
        let changed = store
            .apply_source_entry_changes("corp", &batch, &[], None)
            .await
            .unwrap();
        // uuid-300 and uuid-10 changed; uuid-7 is enabled again; uuid-8 comes back.
        assert_eq!(changed, 4, "{backend}");
        let ten = store
            .source_entry("corp", "uuid-10")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ten.user.title.as_deref(), Some("Later"));

        // A refresh without a cookie (e.g. the directory gave none) keeps the stored one.
        store
            .begin_full_refresh("corp", "t2", 60_000)
            .await
            .unwrap();
        store
            .stage_source_entries("corp", "t2", &corp)
            .await
            .unwrap();
        store
            .finish_source_refresh("corp", "t2", &SourceRefreshEnd::default())
            .await
            .unwrap();
        let state = store.snapshot_state("corp").await.unwrap();
        assert_eq!(state.sync_cookie.as_deref(), Some("rid=000,csn=1"));
    }
}
