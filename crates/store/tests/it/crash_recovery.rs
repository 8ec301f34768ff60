//! Crash recovery and several nodes on one database (issue 18, items 5 and 8), run once on
//! SQLite and once on a real PostgreSQL.

use std::time::Duration;

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

fn claimant(owner: &str, node: Option<&str>, token: Option<i64>) -> RefreshClaimant {
    RefreshClaimant {
        owner: owner.into(),
        node: node.map(Into::into),
        lease_token: token,
    }
}

fn user(n: usize) -> SourceUser {
    SourceUser {
        uuid: format!("{{00000000-0000-0000-0000-{n:012}}}"),
        userid: format!("user{n:05}"),
        ..SourceUser::default()
    }
}

fn fence(holder: &str, token: i64) -> Fence {
    Fence {
        job: "user_sync".into(),
        holder: holder.into(),
        token,
    }
}

/// A killed refresher's claim used to block refreshes (and so user sync) for a fixed 30
/// minutes from when it started. Now a newer lease token takes it over at once, and a
/// silent heartbeat after `stale_after`; a refresher that keeps beating is not displaced
/// however long it runs, and one that was displaced cannot write any more.
#[tokio::test]
async fn a_dead_refreshers_claim_is_taken_over_by_token_or_silence() {
    const STALE_MS: i64 = 1_000;
    for (store, _dir) in backends().await {
        let b = store.backend();
        let a = claimant("a-1", Some("node-a"), Some(1));
        assert_eq!(
            store
                .claim_full_refresh(SOURCE_CUCM, &a, 60_000)
                .await
                .unwrap(),
            None
        );
        store
            .stage_users(SOURCE_CUCM, "a-1", &[user(1)])
            .await
            .unwrap();
        let state = store.snapshot_state(SOURCE_CUCM).await.unwrap();
        assert_eq!(state.refresh_node.as_deref(), Some("node-a"), "{b:?}");
        assert_eq!(state.refresh_lease_token, Some(1));
        assert!(state.refresh_heartbeat_at.is_some());

        // The same lease token (another keeper of the same node): refused while alive.
        let err = store
            .claim_full_refresh(
                SOURCE_CUCM,
                &claimant("a-2", Some("node-a"), Some(1)),
                60_000,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{b:?}: {err}");
        assert!(err.to_string().contains("node-a"), "{err}");

        // Node B took the snapshot lease over (token 2): A's claim is dead at once.
        let taken = store
            .claim_full_refresh(
                SOURCE_CUCM,
                &claimant("b-1", Some("node-b"), Some(2)),
                60_000,
            )
            .await
            .unwrap();
        assert!(taken.is_some_and(|t| t.contains("a-1")), "{b:?}");
        // A, resumed, can neither beat, stage nor swap in.
        for err in [
            store
                .refresh_heartbeat(SOURCE_CUCM, "a-1")
                .await
                .unwrap_err(),
            store
                .stage_users(SOURCE_CUCM, "a-1", &[user(2)])
                .await
                .unwrap_err(),
            store
                .finish_full_refresh(SOURCE_CUCM, "a-1", None)
                .await
                .unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::Conflict(_)), "{b:?}: {err}");
        }

        // Without lease tokens (the command line): a beating refresher keeps its claim
        // past `stale_after` from its start...
        tokio::time::sleep(Duration::from_millis(700)).await;
        store.refresh_heartbeat(SOURCE_CUCM, "b-1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        store.refresh_heartbeat(SOURCE_CUCM, "b-1").await.unwrap();
        let err = store
            .claim_full_refresh(SOURCE_CUCM, &claimant("cli", None, None), STALE_MS)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{b:?}: {err}");
        // ...and a silent one loses it after `stale_after`.
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let taken = store
            .claim_full_refresh(SOURCE_CUCM, &claimant("cli", None, None), STALE_MS)
            .await
            .unwrap();
        assert!(taken.is_some_and(|t| t.contains("b-1")), "{b:?}");
        store
            .stage_users(SOURCE_CUCM, "cli", &[user(3)])
            .await
            .unwrap();
        let swap = store
            .finish_full_refresh(SOURCE_CUCM, "cli", None)
            .await
            .unwrap();
        // Only the current claimant's page is in: B's and A's pages went with their claims.
        assert_eq!(swap.total, 1, "{b:?}");
        assert_eq!(
            store.source_users().await.unwrap()[0].userid,
            "user00003",
            "{b:?}"
        );
        store.close().await;
    }
}

/// A node restarted under the same `--node-id` within `lease_ttl` renews its lease with
/// the same token, so token-based detection saw nothing and its runs stayed `running`.
#[tokio::test]
async fn a_restarted_node_marks_what_its_previous_life_left_running() {
    for (store, _dir) in backends().await {
        let b = store.backend();
        let token = store
            .acquire_lease("user_sync", "node-a", 60_000)
            .await
            .unwrap()
            .unwrap();
        let slot = Claim {
            slot: "schedule:1".into(),
            trigger: Trigger::Schedule,
            requested_by: None,
        };
        store.ensure_job("user_sync", None, None).await.unwrap();
        let job_run = store
            .claim_job_run("user_sync", &slot, "node-a", token, None)
            .await
            .unwrap()
            .unwrap();
        let sync_run = store
            .start_run_as("users", false, &RunOwner::lease(fence("node-a", token)))
            .await
            .unwrap();
        let cli_run = store
            .start_run_as("users", false, &RunOwner::cli())
            .await
            .unwrap();
        store
            .claim_full_refresh(
                SOURCE_CUCM,
                &claimant("node-a:1", Some("node-a"), Some(1)),
                60_000,
            )
            .await
            .unwrap();

        // Another node's recovery touches none of it.
        assert!(store.recover_node("node-b").await.unwrap().is_empty());
        let found = store.recover_node("node-a").await.unwrap();
        assert_eq!(
            found,
            NodeRecovery {
                job_runs: 1,
                sync_runs: 1,
                refresh_claims: 1
            },
            "{b:?}"
        );
        let run = store.job_run(job_run).await.unwrap().unwrap();
        assert_eq!(run.status, JobRunStatus::Abandoned, "{b:?}");
        assert!(run.error.unwrap().contains("restarted"));
        let sync = store.sync_run(sync_run).await.unwrap().unwrap();
        assert_eq!(sync.status, RunStatus::Abandoned, "{b:?}");
        assert_eq!(sync.node.as_deref(), Some("node-a"));
        assert!(sync.finished_at.is_some());
        // A run recorded as abandoned is not revived by a late finish.
        store
            .finish_run(
                sync_run,
                RunStatus::Applied,
                None,
                RunSummary::default(),
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            store.sync_run(sync_run).await.unwrap().unwrap().status,
            RunStatus::Abandoned
        );
        let state = store.snapshot_state(SOURCE_CUCM).await.unwrap();
        assert_eq!(state.state, RefreshState::Failed, "{b:?}");
        assert!(state.reason.unwrap().contains("abandoned"));
        // The command line's own run is its business (marked on Ctrl-C).
        assert_eq!(
            store.sync_run(cli_run).await.unwrap().unwrap().status,
            RunStatus::Running
        );
        let node = RunOwner::cli().node.unwrap();
        assert_eq!(
            store
                .abandon_sync_runs_of(&node, "interrupted")
                .await
                .unwrap(),
            1
        );
        store.close().await;
    }
}

/// Fencing tokens never go back (a released lease used to be deleted, restarting the
/// token at 1 so older runs were never seen as orphaned), and a holder whose lease lapsed
/// gets a new token too.
#[tokio::test]
async fn lease_tokens_grow_across_release_and_lapse() {
    for (store, _dir) in backends().await {
        let b = store.backend();
        assert_eq!(
            store
                .acquire_lease("devices", "node-a", 60_000)
                .await
                .unwrap(),
            Some(1)
        );
        store.release_lease("devices", "node-a").await.unwrap();
        assert_eq!(
            store
                .acquire_lease("devices", "node-b", 60_000)
                .await
                .unwrap(),
            Some(2),
            "{b:?}"
        );
        // Renewal keeps the token; re-taking a lapsed lease does not.
        assert_eq!(
            store.acquire_lease("devices", "node-b", 1).await.unwrap(),
            Some(2)
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            store
                .acquire_lease("devices", "node-b", 60_000)
                .await
                .unwrap(),
            Some(3),
            "{b:?}"
        );
        store.close().await;
    }
}

/// A node paused past its lease and resumed must not write over its successor: job
/// results, slot claims and user changes are checked against the lease when written.
#[tokio::test]
async fn writes_are_fenced_by_the_lease() {
    for (store, _dir) in backends().await {
        let b = store.backend();
        store.ensure_job("user_sync", None, None).await.unwrap();
        let a = store
            .acquire_lease("user_sync", "node-a", 60_000)
            .await
            .unwrap()
            .unwrap();
        let slot = |n: u32| Claim {
            slot: format!("manual:{n}"),
            trigger: Trigger::Manual,
            requested_by: None,
        };
        let run = store
            .claim_job_run("user_sync", &slot(1), "node-a", a, None)
            .await
            .unwrap()
            .unwrap();
        let sync_run = store
            .start_run_as("users", false, &RunOwner::lease(fence("node-a", a)))
            .await
            .unwrap();
        // A's last renewal is a short one, and then A is paused.
        assert_eq!(
            store.acquire_lease("user_sync", "node-a", 1).await.unwrap(),
            Some(a)
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Lapsed: A can no longer apply changes, even before anyone else took over.
        let create = UserChange::Create {
            after: UserRecord {
                username: "late".into(),
                source: "cucm".into(),
                ..UserRecord::default()
            },
        };
        let err = store
            .apply_user_changes_fenced(
                Some(sync_run),
                std::slice::from_ref(&create),
                Some(&fence("node-a", a)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::LeaseLost(_)), "{b:?}: {err}");
        assert!(store.local_user("late").await.unwrap().is_none(), "{b:?}");

        let t2 = store
            .acquire_lease("user_sync", "node-b", 60_000)
            .await
            .unwrap()
            .unwrap();
        assert!(t2 > a);
        // A's result is refused; A cannot claim a slot any more.
        assert!(!store
            .finish_job_run(run, JobRunStatus::Succeeded, None, None)
            .await
            .unwrap());
        let err = store
            .claim_job_run("user_sync", &slot(2), "node-a", a, None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::LeaseLost(_)), "{b:?}: {err}");
        // B marks A's runs (job run and the sync run it started) abandoned.
        assert_eq!(
            store.abandon_orphaned_runs("user_sync", t2).await.unwrap(),
            1
        );
        assert_eq!(
            store.job_run(run).await.unwrap().unwrap().status,
            JobRunStatus::Abandoned,
            "{b:?}"
        );
        assert_eq!(
            store.sync_run(sync_run).await.unwrap().unwrap().status,
            RunStatus::Abandoned,
            "{b:?}"
        );
        // B, holding the lease, writes normally.
        store
            .apply_user_changes_fenced(None, &[create], Some(&fence("node-b", t2)))
            .await
            .unwrap();
        assert!(store.holds_lease(&fence("node-b", t2)).await.unwrap());
        assert!(!store.holds_lease(&fence("node-a", a)).await.unwrap());
        let run_b = store
            .claim_job_run("user_sync", &slot(3), "node-b", t2, None)
            .await
            .unwrap()
            .unwrap();
        assert!(store
            .finish_job_run(run_b, JobRunStatus::Succeeded, None, None)
            .await
            .unwrap());
        store.close().await;
    }
}

/// During an outage the pool waited 30 s for a connection and said only "pool timed out".
/// An address that accepts connections but never answers stands in for a dead database.
#[tokio::test]
async fn an_unreachable_database_fails_fast_and_says_so() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(25),
        Store::open(&format!("postgres://postgres@127.0.0.1:{port}/x")),
    )
    .await
    .expect("fails well before sqlx's 30 s default")
    .unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    assert!(err.to_string().starts_with("database unreachable"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    hold.abort();

    // Nothing listening: refused at once, same wording.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = Store::open(&format!("postgres://postgres@127.0.0.1:{port}/x"))
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err}");
}

/// A paused (SIGSTOP) holder's open transaction kept its row locks and blocked the next
/// writer for 71 s. PostgreSQL sessions now end an idle transaction after 10 s, and a
/// writer waits for a lock no longer than 20 s.
#[tokio::test]
async fn postgres_sessions_bound_idle_transactions_and_lock_waits() {
    let Some(url) = ucbridge_testkit::postgres_database() else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    let id = store
        .create_local_user(&UserRecord {
            username: "held".into(),
            source: "local".into(),
            ..UserRecord::default()
        })
        .await
        .unwrap();
    for (name, value) in PG_SESSION_LIMITS {
        let sql = format!("SELECT current_setting('{name}')");
        let shown: String = sqlx::query_scalar(&sql)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(shown, value, "{name}");
    }
    // The "paused node": a transaction holding the user's row lock, then silence.
    let mut paused = store.pool().begin().await.unwrap();
    sqlx::query("UPDATE users SET title = 'paused' WHERE id = $1")
        .bind(id)
        .execute(&mut *paused)
        .await
        .unwrap();
    let before = store.local_user("held").await.unwrap().unwrap();
    let mut after = before.record.clone();
    after.title = Some("successor".into());
    let started = std::time::Instant::now();
    let changes = [UserChange::Update {
        id,
        before: before.record.clone(),
        after,
    }];
    let write = store.apply_user_changes(None, &changes);
    tokio::time::timeout(Duration::from_secs(60), write)
        .await
        .expect("the successor's write does not wait for ever")
        .expect("the paused transaction is ended before the lock wait gives up");
    assert!(started.elapsed() < Duration::from_secs(30));
    let now = store.local_user("held").await.unwrap().unwrap();
    assert_eq!(now.record.title.as_deref(), Some("successor"));
    // The paused node's transaction is gone.
    assert!(paused.commit().await.is_err());
    store.close().await;
}
