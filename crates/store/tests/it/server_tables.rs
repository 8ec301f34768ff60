//! The server's tables (accounts, sessions, tokens, settings, leases, job runs), run once
//! on SQLite and once on a real PostgreSQL.

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

#[tokio::test]
async fn leases_exclude_other_holders_until_they_expire() {
    for (store, _dir) in backends().await {
        let b = store.backend();
        let t1 = store
            .acquire_lease("user_sync", "node-a", 60_000)
            .await
            .unwrap();
        assert_eq!(t1, Some(1), "{b:?}");
        // Another node is refused while the lease runs; the holder renews with its token.
        assert_eq!(
            store
                .acquire_lease("user_sync", "node-b", 60_000)
                .await
                .unwrap(),
            None,
            "{b:?}"
        );
        assert_eq!(
            store
                .acquire_lease("user_sync", "node-a", 60_000)
                .await
                .unwrap(),
            Some(1),
            "{b:?}"
        );
        // Leases are per job.
        assert_eq!(
            store
                .acquire_lease("snapshot", "node-b", 60_000)
                .await
                .unwrap(),
            Some(1),
            "{b:?}"
        );

        // An expired lease goes to the next node, with a higher fencing token; the old
        // holder cannot renew it.
        assert_eq!(
            store.acquire_lease("voicemail", "node-a", 1).await.unwrap(),
            Some(1)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            store
                .acquire_lease("voicemail", "node-b", 60_000)
                .await
                .unwrap(),
            Some(2),
            "{b:?}"
        );
        assert_eq!(
            store
                .acquire_lease("voicemail", "node-a", 60_000)
                .await
                .unwrap(),
            None,
            "{b:?}"
        );

        // Releasing lets another node in at once.
        store.release_lease("user_sync", "node-a").await.unwrap();
        assert!(store
            .acquire_lease("user_sync", "node-b", 60_000)
            .await
            .unwrap()
            .is_some());
        let leases = store.leases().await.unwrap();
        assert_eq!(leases.len(), 3);
        assert!(
            leases.iter().all(|l| l.holder == "node-b" && !l.expired),
            "{leases:?}"
        );
        let now = store.db_now().await.unwrap();
        assert!((now - now_millis()).abs() < 5_000, "database clock {now}");
    }
}

#[tokio::test]
async fn a_slot_runs_once_and_requests_coalesce() {
    for (store, _dir) in backends().await {
        let b = store.backend();
        store
            .ensure_job("user_sync", Some("every 15m"), Some(1_000))
            .await
            .unwrap();
        // A second ensure keeps the stored (possibly edited) schedule.
        store
            .ensure_job("user_sync", Some("every 1h"), Some(5))
            .await
            .unwrap();
        let job = store.job("user_sync").await.unwrap().unwrap();
        assert_eq!(job.schedule.as_deref(), Some("every 15m"));
        assert_eq!(job.next_run_at, Some(1_000));

        let slot = Claim {
            slot: "schedule:1000".into(),
            trigger: Trigger::Schedule,
            requested_by: None,
        };
        // Claims are made under the job's lease.
        assert_eq!(
            store
                .acquire_lease("user_sync", "node-a", 60_000)
                .await
                .unwrap(),
            Some(1)
        );
        let run = store
            .claim_job_run("user_sync", &slot, "node-a", 1, Some(901_000))
            .await
            .unwrap();
        assert!(run.is_some(), "{b:?}");
        // Node A's last renewal, then it pauses.
        store.acquire_lease("user_sync", "node-a", 1).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert_eq!(
            store
                .acquire_lease("user_sync", "node-b", 60_000)
                .await
                .unwrap(),
            Some(2)
        );
        // The same slot again (the next holder, after a pause of the first): refused.
        assert_eq!(
            store
                .claim_job_run("user_sync", &slot, "node-b", 2, Some(2))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store.job("user_sync").await.unwrap().unwrap().next_run_at,
            Some(901_000)
        );

        // "Run now" twice: one pending request, cleared by the claim.
        assert!(store.request_job_run("user_sync", "alice").await.unwrap());
        assert!(store.request_job_run("user_sync", "bob").await.unwrap());
        assert!(!store.request_job_run("nope", "alice").await.unwrap());
        let job = store.job("user_sync").await.unwrap().unwrap();
        assert_eq!(job.run_requested_by.as_deref(), Some("alice"));
        let requested = job.run_requested_at.unwrap();
        let manual = Claim {
            slot: format!("manual:{requested}"),
            trigger: Trigger::Manual,
            requested_by: Some("alice".into()),
        };
        let id = store
            .claim_job_run("user_sync", &manual, "node-b", 2, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            store
                .job("user_sync")
                .await
                .unwrap()
                .unwrap()
                .run_requested_at,
            None
        );

        store
            .set_job_progress(
                id,
                &serde_json::json!({"phase": "apply", "done": 5, "total": 10}),
            )
            .await
            .unwrap();
        let r = store.job_run(id).await.unwrap().unwrap();
        assert_eq!(r.progress.unwrap()["done"], 5);
        store
            .finish_job_run(
                id,
                JobRunStatus::Succeeded,
                Some(&serde_json::json!({"creates": 3})),
                None,
            )
            .await
            .unwrap();
        let runs = store.job_runs(Some("user_sync"), 10).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].id, id);
        assert_eq!(runs[0].status, JobRunStatus::Succeeded);
        assert_eq!(runs[0].trigger, "manual");
        assert_eq!(runs[1].status, JobRunStatus::Running);
        // The first run's node lost the lease (token 1 < 2): it is marked abandoned.
        assert_eq!(
            store.abandon_orphaned_runs("user_sync", 2).await.unwrap(),
            1
        );
        assert_eq!(
            store.job_runs(Some("user_sync"), 10).await.unwrap()[1].status,
            JobRunStatus::Abandoned
        );
    }
}

#[tokio::test]
async fn accounts_sessions_tokens_and_settings() {
    for (store, _dir) in backends().await {
        let b = store.backend();
        let a = store
            .upsert_admin_account("root", "$argon2id$x", Role::Admin)
            .await
            .unwrap();
        let again = store
            .upsert_admin_account("root", "$argon2id$y", Role::ReadOnly)
            .await
            .unwrap();
        assert_eq!(a.id, again.id, "{b:?}");
        assert_eq!(
            store
                .admin_account("root")
                .await
                .unwrap()
                .unwrap()
                .password_hash,
            "$argon2id$y"
        );
        // The hash never serializes.
        assert!(!serde_json::to_string(&again).unwrap().contains("argon2"));

        store
            .create_session("h1", a.id, "csrf1", now_millis() + 60_000)
            .await
            .unwrap();
        store
            .create_session("h2", a.id, "csrf2", now_millis() - 1)
            .await
            .unwrap();
        let s = store.session("h1").await.unwrap().unwrap();
        assert_eq!(
            (s.username.as_str(), s.role, s.csrf_token.as_str()),
            ("root", Role::ReadOnly, "csrf1")
        );
        assert!(
            store.session("h2").await.unwrap().is_none(),
            "expired sessions are not live"
        );
        assert_eq!(store.purge_expired_sessions().await.unwrap(), 1);

        let t = store
            .create_api_token("ci", "th1", Role::ReadOnly)
            .await
            .unwrap();
        assert!(t.last_used_at.is_none());
        assert!(matches!(
            store.create_api_token("ci", "th2", Role::Admin).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(store
            .use_api_token("th1")
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .is_some());
        assert!(store.use_api_token("nope").await.unwrap().is_none());
        assert!(store.delete_api_token("ci").await.unwrap());
        assert!(store.use_api_token("th1").await.unwrap().is_none());

        // Deleting the account ends its sessions.
        assert!(store.delete_admin_account("root").await.unwrap());
        assert!(store.session("h1").await.unwrap().is_none());

        let sealed = SealedSecret {
            sealed: "v1:abc".into(),
            key_id: "k1".into(),
        };
        assert!(store
            .put_setting(
                "connection.cucm",
                r#"{"url":"x"}"#,
                SecretUpdate::Set(sealed.clone()),
                Some("root"),
                false
            )
            .await
            .unwrap());
        // Seeding from the file does not overwrite what the admin page saved.
        assert!(!store
            .put_setting(
                "connection.cucm",
                r#"{"url":"file"}"#,
                SecretUpdate::Clear,
                None,
                true
            )
            .await
            .unwrap());
        // Keep leaves the secret as it was.
        store
            .put_setting(
                "connection.cucm",
                r#"{"url":"y"}"#,
                SecretUpdate::Keep,
                Some("root"),
                false,
            )
            .await
            .unwrap();
        let s = store.setting("connection.cucm").await.unwrap().unwrap();
        assert_eq!(s.value, r#"{"url":"y"}"#);
        assert_eq!(s.secret.as_ref(), Some(&sealed));
        assert!(
            !format!("{s:?}").contains("v1:abc"),
            "Debug hides the sealed text"
        );
        store
            .put_setting("connection.cuc", "{}", SecretUpdate::Keep, None, false)
            .await
            .unwrap();
        store
            .put_setting(
                "rules.directory_sync",
                "{}",
                SecretUpdate::Keep,
                None,
                false,
            )
            .await
            .unwrap();
        let names: Vec<_> = store
            .settings("connection.")
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["connection.cuc", "connection.cucm"]);
        store
            .put_setting("connection.cucm", "{}", SecretUpdate::Clear, None, false)
            .await
            .unwrap();
        assert!(store
            .setting("connection.cucm")
            .await
            .unwrap()
            .unwrap()
            .secret
            .is_none());
    }
}
