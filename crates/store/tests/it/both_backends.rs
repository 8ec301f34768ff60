//! The store's behaviour, run once on SQLite and once on a real PostgreSQL.

use ucbridge_store::*;

/// A fresh database of each backend; PostgreSQL comes from the testkit (a throwaway
/// cluster, or `UCBRIDGE_TEST_PG_URL`), loudly skipped when unavailable outside CI.
async fn backends() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let mut stores = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("nested/dir/ucbridge.db").display()
    );
    stores.push((Store::open(&url).await.expect("sqlite opens"), Some(dir)));
    if let Some(url) = ucbridge_testkit::postgres_database() {
        stores.push((Store::open(&url).await.expect("postgres opens"), None));
    }
    stores
}

fn user(n: usize) -> SourceUser {
    SourceUser {
        uuid: format!("{{00000000-0000-0000-0000-{n:012}}}"),
        userid: format!("user{n:05}"),
        first_name: Some(format!("First{n}")),
        last_name: Some("Last".into()),
        mailid: (n % 3 != 0).then(|| format!("user{n}@example.com")),
        associated_devices: vec![format!("SEP{n:012}")],
        status: Some(1),
        ..SourceUser::default()
    }
}

#[tokio::test]
async fn full_refresh_swaps_atomically_and_counts_changes() {
    for (store, _dir) in backends().await {
        let backend = store.backend();
        assert_eq!(
            store.snapshot_state(SOURCE_CUCM).await.unwrap().state,
            RefreshState::Empty
        );

        store
            .begin_full_refresh(SOURCE_CUCM, "node-a", 60_000)
            .await
            .unwrap();
        let first: Vec<_> = (0..1000).map(user).collect();
        store
            .stage_users(SOURCE_CUCM, "node-a", &first[..600])
            .await
            .unwrap();
        store
            .stage_users(SOURCE_CUCM, "node-a", &first[600..])
            .await
            .unwrap();
        // While refreshing, a second claim is refused.
        let err = store
            .begin_full_refresh(SOURCE_CUCM, "node-b", 60_000)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{backend:?}: {err}");
        let s = store
            .finish_full_refresh(SOURCE_CUCM, "node-a", Some(("q1", 7)))
            .await
            .unwrap();
        assert_eq!(
            s,
            SwapSummary {
                added: 1000,
                updated: 0,
                removed: 0,
                total: 1000
            },
            "{backend:?}"
        );
        let state = store.snapshot_state(SOURCE_CUCM).await.unwrap();
        assert_eq!(state.state, RefreshState::Idle);
        assert_eq!(state.users_count, 1000);
        assert_eq!(state.change_queue_id.as_deref(), Some("q1"));
        assert_eq!(state.next_change_id, Some(7));
        assert!(state.source_updated_at.is_some());

        // Second refresh: one user changed, one gone, one new.
        store
            .begin_full_refresh(SOURCE_CUCM, "node-a", 60_000)
            .await
            .unwrap();
        let mut second: Vec<_> = (1..1001).map(user).collect();
        second[0].department = Some("Changed".into());
        store
            .stage_users(SOURCE_CUCM, "node-a", &second)
            .await
            .unwrap();
        let s = store
            .finish_full_refresh(SOURCE_CUCM, "node-a", None)
            .await
            .unwrap();
        assert_eq!(
            s,
            SwapSummary {
                added: 1,
                updated: 1,
                removed: 1,
                total: 1000
            },
            "{backend:?}"
        );
        let u1 = store.source_user("USER00001").await.unwrap().unwrap();
        assert_eq!(u1.department.as_deref(), Some("Changed"));
        assert_eq!(u1.associated_devices, vec!["SEP000000000001".to_owned()]);
        assert!(store.source_user("user00000").await.unwrap().is_none());
        store.close().await;
    }
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_previous_snapshot() {
    for (store, _dir) in backends().await {
        store
            .begin_full_refresh(SOURCE_CUCM, "n", 60_000)
            .await
            .unwrap();
        store
            .stage_users(SOURCE_CUCM, "n", &(0..10).map(user).collect::<Vec<_>>())
            .await
            .unwrap();
        store
            .finish_full_refresh(SOURCE_CUCM, "n", None)
            .await
            .unwrap();

        store
            .begin_full_refresh(SOURCE_CUCM, "n", 60_000)
            .await
            .unwrap();
        store
            .stage_users(SOURCE_CUCM, "n", &[user(99)])
            .await
            .unwrap();
        store
            .fail_full_refresh(SOURCE_CUCM, "n", "CUCM unreachable")
            .await
            .unwrap();
        let state = store.snapshot_state(SOURCE_CUCM).await.unwrap();
        assert_eq!(state.state, RefreshState::Failed);
        assert_eq!(state.reason.as_deref(), Some("CUCM unreachable"));
        let users = store.source_users().await.unwrap();
        assert_eq!(users.len(), 10);
        assert!(users.iter().all(|u| u.userid != "user00099"));
        // A refresh that lost ownership cannot swap in.
        store
            .begin_full_refresh(SOURCE_CUCM, "n", 60_000)
            .await
            .unwrap();
        let err = store
            .finish_full_refresh(SOURCE_CUCM, "other", None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)));
        // A stale claim (its node died) can be taken over.
        store
            .begin_full_refresh(SOURCE_CUCM, "late", -1)
            .await
            .unwrap();
        store.close().await;
    }
}

#[tokio::test]
async fn incremental_changes_upsert_remove_and_move_the_cursor() {
    for (store, _dir) in backends().await {
        store
            .begin_full_refresh(SOURCE_CUCM, "n", 60_000)
            .await
            .unwrap();
        store
            .stage_users(SOURCE_CUCM, "n", &(0..5).map(user).collect::<Vec<_>>())
            .await
            .unwrap();
        store
            .finish_full_refresh(SOURCE_CUCM, "n", Some(("q", 1)))
            .await
            .unwrap();

        let mut changed = user(1);
        changed.mailid = Some("new@example.com".into());
        let n = store
            .apply_source_changes(
                SOURCE_CUCM,
                &[changed, user(2), user(7)],
                &[user(3).uuid],
                ("q", 42),
            )
            .await
            .unwrap();
        // user(2) is unchanged: only 1 update + 1 insert + 1 removal count.
        assert_eq!(n, 3, "{:?}", store.backend());
        let state = store.snapshot_state(SOURCE_CUCM).await.unwrap();
        assert_eq!(state.next_change_id, Some(42));
        assert_eq!(state.users_count, 5);
        let u = store.source_user("user00001").await.unwrap().unwrap();
        assert_eq!(u.mailid.as_deref(), Some("new@example.com"));
        store.close().await;
    }
}

fn record(name: &str) -> UserRecord {
    UserRecord {
        username: name.into(),
        email: Some(format!("{name}@example.com")),
        aliases: vec!["4001".into(), "o'brien".into()],
        source: "cucm".into(),
        source_key: Some(format!("{{KEY-{name}}}")),
        ..UserRecord::default()
    }
}

#[tokio::test]
async fn user_changes_apply_in_one_transaction_with_audit() {
    for (store, _dir) in backends().await {
        let run = store.start_run("users", false).await.unwrap();
        store
            .apply_user_changes(
                Some(run),
                &[
                    UserChange::Create {
                        after: record("alice"),
                    },
                    UserChange::Create {
                        after: record("bob"),
                    },
                ],
            )
            .await
            .unwrap();
        let users = store.local_users().await.unwrap();
        assert_eq!(users.len(), 2);
        let alice = users[0].clone();
        assert_eq!(
            alice.record.aliases,
            vec!["4001".to_owned(), "o'brien".to_owned()]
        );

        // Usernames are unique case-insensitively; a failing batch applies nothing.
        let mut dup = record("ALICE");
        dup.source_key = None;
        let err = store
            .apply_user_changes(
                Some(run),
                &[
                    UserChange::Create {
                        after: record("carol"),
                    },
                    UserChange::Create { after: dup },
                ],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err}");
        assert_eq!(store.local_users().await.unwrap().len(), 2);

        let mut after = alice.record.clone();
        after.department = Some("Sales".into());
        store
            .apply_user_changes(
                Some(run),
                &[
                    UserChange::Update {
                        id: alice.id,
                        before: alice.record.clone(),
                        after,
                    },
                    UserChange::Disable {
                        id: users[1].id,
                        before: users[1].record.clone(),
                    },
                ],
            )
            .await
            .unwrap();
        let alice = store.local_user("Alice").await.unwrap().unwrap();
        assert_eq!(alice.record.department.as_deref(), Some("Sales"));
        assert!(
            store
                .local_user("bob")
                .await
                .unwrap()
                .unwrap()
                .record
                .disabled
        );

        store
            .apply_user_changes(
                Some(run),
                &[UserChange::Delete {
                    id: alice.id,
                    before: alice.record.clone(),
                }],
            )
            .await
            .unwrap();
        // Deleting again: the row is gone, so the batch fails instead of pretending.
        let err = store
            .apply_user_changes(
                Some(run),
                &[UserChange::Delete {
                    id: alice.id,
                    before: alice.record.clone(),
                }],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)));

        store
            .finish_run(
                run,
                RunStatus::Applied,
                None,
                RunSummary {
                    creates: 2,
                    updates: 1,
                    disables: 1,
                    deletes: 1,
                    errors: 0,
                },
                Some("{}"),
            )
            .await
            .unwrap();
        let runs = store.recent_runs("users", 5).await.unwrap();
        assert_eq!(runs[0].status, RunStatus::Applied);
        assert_eq!(runs[0].summary.deletes, 1);
        // One user's history: case-insensitive, newest `limit` entries, oldest first.
        let alice_history = store.user_audit_log("ALICE", 100).await.unwrap();
        assert!(!alice_history.is_empty());
        assert!(alice_history
            .iter()
            .all(|a| a.username.eq_ignore_ascii_case("alice")));
        assert!(alice_history.windows(2).all(|w| w[0].id < w[1].id));
        let newest = store.user_audit_log("alice", 1).await.unwrap();
        assert_eq!(newest.len(), 1);
        assert_eq!(newest[0].id, alice_history.last().unwrap().id);
        assert!(store
            .user_audit_log("nobody", 100)
            .await
            .unwrap()
            .is_empty());
        let audit = store.audit_log(Some(run), 100).await.unwrap();
        let actions: Vec<_> = audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["create", "create", "update", "disable", "delete"]);
        assert!(audit[2]
            .before
            .as_deref()
            .unwrap()
            .contains("\"department\":null"));
        assert!(audit[2].after.as_deref().unwrap().contains("Sales"));
        assert!(audit[4].after.is_none());

        assert!(store.set_password_hash("bob", "$argon2id$x").await.unwrap());
        assert!(store.local_user("bob").await.unwrap().unwrap().has_password);
        store.close().await;
    }
}

#[tokio::test]
async fn rejects_unknown_urls() {
    let err = Store::open("mysql://x").await.unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)));
}

#[tokio::test]
async fn local_users_are_searched_and_paged_in_the_database() {
    for (store, _dir) in backends().await {
        let b = store.backend();
        for (name, first, alias) in [
            ("alice", "Alice", "ally"),
            ("bob", "Robert", "bobby"),
            ("carol_x", "Carol", "c100%"),
            ("dave", "Dave", "d"),
        ] {
            store
                .create_local_user(&UserRecord {
                    username: name.into(),
                    first_name: Some(first.into()),
                    aliases: vec![alias.into()],
                    source: "local".into(),
                    ..UserRecord::default()
                })
                .await
                .unwrap();
        }
        let names = |(total, users): (i64, Vec<LocalUser>)| {
            (
                total,
                users
                    .into_iter()
                    .map(|u| u.record.username)
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            names(store.search_local_users(None, 0, 2).await.unwrap()),
            (4, vec!["alice".into(), "bob".into()]),
            "{b:?}"
        );
        assert_eq!(
            names(store.search_local_users(None, 2, 10).await.unwrap()).1,
            ["carol_x", "dave"]
        );
        // Case-insensitive, over names and aliases.
        assert_eq!(
            names(
                store
                    .search_local_users(Some("ROBERT"), 0, 10)
                    .await
                    .unwrap()
            )
            .1,
            ["bob"]
        );
        assert_eq!(
            names(
                store
                    .search_local_users(Some("bobby"), 0, 10)
                    .await
                    .unwrap()
            )
            .1,
            ["bob"]
        );
        // LIKE wildcards in the needle are literal.
        assert_eq!(
            names(store.search_local_users(Some("_"), 0, 10).await.unwrap()).1,
            ["carol_x"],
            "{b:?}"
        );
        assert_eq!(
            names(store.search_local_users(Some("0%"), 0, 10).await.unwrap()).1,
            ["carol_x"],
            "{b:?}"
        );
        assert_eq!(
            store
                .search_local_users(Some("zzz"), 0, 10)
                .await
                .unwrap()
                .0,
            0
        );
    }
}

/// What a sync reads in one snapshot read: the snapshot in keyset pages (ties on userid
/// included), the local users' match data, and full records by id across several `IN`
/// lists; and a large create batch keeps `user_sources` complete.
#[tokio::test]
async fn snapshot_read_pages_by_keyset_and_batches_keep_user_sources() {
    for (store, _dir) in backends().await {
        let mut snapshot: Vec<_> = (0..1001).map(user).collect();
        // Two users with one userid: the page mark breaks the tie by uuid.
        snapshot[10].userid = "user00011".into();
        store
            .begin_full_refresh(SOURCE_CUCM, "node-a", 60_000)
            .await
            .unwrap();
        store
            .stage_users(SOURCE_CUCM, "node-a", &snapshot)
            .await
            .unwrap();
        store
            .finish_full_refresh(SOURCE_CUCM, "node-a", None)
            .await
            .unwrap();
        let creates: Vec<UserChange> = (0..1200)
            .map(|n| UserChange::Create {
                after: record(&format!("u{n:04}")),
            })
            .collect();
        let run = store.start_run("users", false).await.unwrap();
        store.apply_user_changes(Some(run), &creates).await.unwrap();
        for name in ["u0000", "u0299", "u0300", "u1199"] {
            let sources = store.user_sources(name).await.unwrap();
            assert_eq!(sources.len(), 1, "{name}: {sources:?}");
            assert_eq!(sources[0].source_key, format!("{{KEY-{name}}}"));
        }
        assert_eq!(store.audit_log(Some(run), 2000).await.unwrap().len(), 1200);

        let mut read = store.read_snapshot().await.unwrap();
        let mut seen = Vec::new();
        let mut after: Option<PageMark> = None;
        loop {
            let page = read
                .source_users_page(SOURCE_CUCM, after.as_ref(), 7)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some(PageMark::after(last));
            seen.extend(page.into_iter().map(|u| (u.userid, u.uuid)));
        }
        let mut expected: Vec<_> = snapshot
            .iter()
            .map(|u| (u.userid.clone(), u.uuid.clone()))
            .collect();
        expected.sort();
        assert_eq!(seen, expected, "every user once, in (userid, uuid) order");

        use futures::TryStreamExt;
        let matches: Vec<LocalMatch> = read.local_matches().try_collect().await.unwrap();
        assert_eq!(matches.len(), 1200);
        assert_eq!(matches[0].aliases, vec!["4001", "o'brien"]);
        let ids: Vec<i64> = matches.iter().map(|m| m.id).chain([-1]).collect();
        let full = read.local_users_by_id(&ids).await.unwrap();
        assert_eq!(
            full.len(),
            1200,
            "across two IN lists; a missing id is left out"
        );
        let uuids = [snapshot[3].uuid.as_str(), "{nobody}"];
        let some = read
            .source_users_by_uuid(SOURCE_CUCM, &uuids)
            .await
            .unwrap();
        assert_eq!(some, vec![snapshot[3].clone()]);
        read.finish().await.unwrap();
        store.close().await;
    }
}
