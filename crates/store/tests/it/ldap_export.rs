//! LDAP export state (migration 0005) on SQLite and on a real PostgreSQL.

use ucbridge_store::*;

async fn backends() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let mut stores = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ucbridge.db").display());
    stores.push((Store::open(&url).await.expect("sqlite opens"), Some(dir)));
    if let Some(url) = ucbridge_testkit::postgres_database() {
        stores.push((Store::open(&url).await.expect("postgres opens"), None));
    }
    stores
}

fn entry(user_id: i64, dn: &str, created: bool) -> LdapExportEntry {
    LdapExportEntry {
        user_id,
        username: format!("user{user_id}"),
        dn: dn.into(),
        fingerprint: "f1".into(),
        created,
        exported_at: 1,
    }
}

#[tokio::test]
async fn users_come_with_their_password_hash() {
    for (store, _dir) in backends().await {
        let backend = store.backend();
        for name in ["bob", "alice"] {
            store
                .create_local_user(&UserRecord {
                    username: name.into(),
                    source: "local".into(),
                    ..UserRecord::default()
                })
                .await
                .unwrap();
        }
        assert!(store
            .set_password_hash("alice", "$argon2id$x")
            .await
            .unwrap());
        let users = store.ldap_export_users().await.unwrap();
        let names: Vec<_> = users
            .iter()
            .map(|u| u.user.record.username.as_str())
            .collect();
        assert_eq!(names, ["alice", "bob"], "{backend:?}");
        assert_eq!(users[0].password_hash.as_deref(), Some("$argon2id$x"));
        assert_eq!(users[1].password_hash, None);
        assert!(
            !format!("{:?}", users[0]).contains("argon2id"),
            "Debug hides the hash"
        );
    }
}

#[tokio::test]
async fn entries_upsert_and_forget() {
    for (store, _dir) in backends().await {
        let backend = store.backend();
        store
            .apply_ldap_export_changes(
                &[entry(1, "uid=a,ou=p", true), entry(2, "uid=b,ou=p", false)],
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            store.ldap_export_counts().await.unwrap(),
            (2, 1),
            "{backend:?}"
        );
        let mut moved = entry(1, "uid=1001,ou=p", true);
        moved.fingerprint = "f2".into();
        store
            .apply_ldap_export_changes(&[moved.clone()], &[2])
            .await
            .unwrap();
        let all = store.ldap_export_entries().await.unwrap();
        assert_eq!(all, vec![moved], "{backend:?}");
        assert_eq!(
            store.ldap_export_counts().await.unwrap(),
            (1, 1),
            "{backend:?}"
        );
        store.apply_ldap_export_changes(&[], &[]).await.unwrap();
    }
}

#[tokio::test]
async fn runs_are_exclusive_and_recorded() {
    for (store, _dir) in backends().await {
        let backend = store.backend();
        let id = store
            .begin_ldap_export_run("incremental", 60_000)
            .await
            .unwrap();
        let second = store.begin_ldap_export_run("resynchronize", 60_000).await;
        assert!(
            matches!(second, Err(StoreError::Conflict(_))),
            "{backend:?}"
        );
        let counts = LdapExportCounts {
            added: 3,
            modified: 2,
            deleted: 1,
            unchanged: 7,
            failed: 1,
        };
        store
            .finish_ldap_export_run(id, LdapExportStatus::Partial, counts, Some("one failed"))
            .await
            .unwrap();
        let id2 = store
            .begin_ldap_export_run("resynchronize", 60_000)
            .await
            .unwrap();
        // A run that never finished is taken over once stale (here: at once).
        let id3 = store
            .begin_ldap_export_run("incremental", -1)
            .await
            .unwrap();
        let runs = store.ldap_export_runs(10).await.unwrap();
        assert_eq!(runs.len(), 3, "{backend:?}");
        assert_eq!(runs[0].id, id3);
        assert_eq!(runs[1].id, id2);
        assert_eq!(runs[1].status, LdapExportStatus::Failed);
        assert_eq!(runs[2].counts, counts);
        assert_eq!(runs[2].status, LdapExportStatus::Partial);
        assert_eq!(runs[2].message.as_deref(), Some("one failed"));
        assert!(runs[2].finished_at.is_some());
    }
}
