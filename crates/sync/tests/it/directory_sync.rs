//! Directory sync end to end: the lab over HTTPS, the store on SQLite and PostgreSQL.

use std::time::Duration;

use ucbridge_axl::{AxlClient, AxlConfig, Key, NewUser, RetryPolicy, UserUpdate};
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_store::{
    RefreshClaimant, RefreshState, RunStatus, Store, StoreError, UserChange, SOURCE_CUCM,
};
use ucbridge_sync::rules::OrphanAction;
use ucbridge_sync::{
    run_user_sync, SnapshotKeeper, SnapshotOptions, SyncError, SyncOptions, SyncRules,
};

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

async fn lab(users: usize) -> (RunningLab, AxlClient) {
    let lab = RunningLab::start(LabConfig {
        users,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let defaults = LabConfig::default();
    let mut config = AxlConfig::new(lab.axl_url(), defaults.username, defaults.password);
    config.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    };
    let client = AxlClient::connect(config).await.unwrap();
    (lab, client)
}

fn options() -> SnapshotOptions {
    SnapshotOptions {
        page_size: 70,
        sql_page_size: 150,
        ..SnapshotOptions::default()
    }
}

fn rules() -> ucbridge_sync::rules::CompiledRules {
    SyncRules::default().compile().unwrap()
}

#[tokio::test]
async fn full_refresh_then_sync_then_noop_then_incremental() {
    for (store, _dir) in stores().await {
        let (lab, client) = lab(200).await;
        let keeper = SnapshotKeeper::new(client.clone(), store.clone(), options());
        let report = keeper.full_refresh(|_| {}).await.unwrap();
        assert_eq!(report.swap.added, 200);
        assert!(report.pages >= 3);
        let state = store.snapshot_state(SOURCE_CUCM).await.unwrap();
        assert_eq!(state.state, RefreshState::Idle);
        assert_eq!(state.users_count, 200);
        assert!(state.change_queue_id.is_some());

        // The snapshot agrees with CUCM, including what LUser cannot return.
        let axl_user = client
            .list_users_page(&Default::default(), &[ucbridge_axl::UserTag::Userid], 0, 1)
            .await
            .unwrap()
            .remove(0);
        let full = client
            .get_user(Key::Name(axl_user.userid.as_deref().unwrap()))
            .await
            .unwrap();
        let snap = store
            .source_user(full.userid.as_deref().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(snap.mailid, full.mailid);
        assert_eq!(snap.display_name, full.display_name);
        let mut devices = full.associated_devices.clone();
        devices.sort();
        assert_eq!(snap.associated_devices, devices);
        assert_eq!(
            snap.primary_extension,
            full.primary_extension.map(|d| d.pattern)
        );

        let first = run_user_sync(&store, &rules(), SyncOptions::default(), |_, _| {})
            .await
            .unwrap();
        assert_eq!(first.status, RunStatus::Applied);
        assert_eq!(
            first.plan.summary().creates,
            200,
            "{:?}",
            first.plan.problems
        );
        assert_eq!(store.local_users().await.unwrap().len(), 200);

        let again = run_user_sync(&store, &rules(), SyncOptions::default(), |_, _| {})
            .await
            .unwrap();
        assert!(again.plan.changes.is_empty(), "second run is a no-op");
        assert_eq!(again.plan.unchanged, 200);

        // Changes on CUCM reach the snapshot through listChange.
        let victim = store.local_users().await.unwrap()[5]
            .record
            .username
            .clone();
        let changed = store.local_users().await.unwrap()[7]
            .record
            .username
            .clone();
        client
            .update_user(
                Key::Name(&changed),
                &UserUpdate {
                    department: Some("Moved".into()),
                    ..UserUpdate::default()
                },
            )
            .await
            .unwrap();
        client.remove_user(Key::Name(&victim)).await.unwrap();
        client
            .add_user(&NewUser {
                userid: "new.hire".into(),
                last_name: "Hire".into(),
                mailid: Some("new.hire@example.com".into()),
                ..NewUser::default()
            })
            .await
            .unwrap();
        let poll = keeper.poll_changes().await.unwrap();
        assert_eq!((poll.users_fetched, poll.users_removed), (2, 1), "{poll:?}");
        assert_eq!(
            store
                .source_user(&changed)
                .await
                .unwrap()
                .unwrap()
                .department
                .as_deref(),
            Some("Moved")
        );

        let dry = run_user_sync(
            &store,
            &rules(),
            SyncOptions {
                dry_run: true,
                ..SyncOptions::default()
            },
            |_, _| {},
        )
        .await
        .unwrap();
        assert_eq!(dry.status, RunStatus::Planned);
        let s = dry.plan.summary();
        assert_eq!((s.creates, s.updates, s.disables), (1, 1, 1));
        assert!(
            store.local_user("new.hire").await.unwrap().is_none(),
            "a dry run changes nothing"
        );
        let applied = run_user_sync(&store, &rules(), SyncOptions::default(), |_, _| {})
            .await
            .unwrap();
        assert_eq!(applied.status, RunStatus::Applied);
        assert!(
            store
                .local_user(&victim)
                .await
                .unwrap()
                .unwrap()
                .record
                .disabled
        );
        assert_eq!(
            store
                .local_user(&changed)
                .await
                .unwrap()
                .unwrap()
                .record
                .department
                .as_deref(),
            Some("Moved")
        );
        let audit = store.audit_log(Some(applied.run_id), 10).await.unwrap();
        assert_eq!(audit.len(), 3);
        lab.shutdown().await;
        store.close().await;
    }
}

#[tokio::test]
async fn a_broken_refresh_keeps_the_snapshot_and_blocks_sync() {
    for (store, _dir) in stores().await {
        let (lab, client) = lab(150).await;
        let keeper = SnapshotKeeper::new(client, store.clone(), options());
        keeper.full_refresh(|_| {}).await.unwrap();
        run_user_sync(&store, &rules(), SyncOptions::default(), |_, _| {})
            .await
            .unwrap();

        // CUCM drops every response: retries run out mid-refresh.
        lab.faults().drop_next_responses(1000);
        let err = keeper.full_refresh(|_| {}).await.unwrap_err();
        assert!(matches!(err, SyncError::Axl(_)), "{err}");
        let state = store.snapshot_state(SOURCE_CUCM).await.unwrap();
        assert_eq!(state.state, RefreshState::Failed);
        assert!(state.reason.is_some());
        assert_eq!(
            store.source_users().await.unwrap().len(),
            150,
            "previous snapshot kept"
        );

        let outcome = run_user_sync(&store, &rules(), SyncOptions::default(), |_, _| {})
            .await
            .unwrap();
        assert_eq!(outcome.status, RunStatus::Refused);
        assert!(outcome.message.unwrap().contains("failed"));
        assert_eq!(
            store
                .local_users()
                .await
                .unwrap()
                .iter()
                .filter(|u| u.record.disabled)
                .count(),
            0
        );

        // CUCM recovers: refresh and sync work again.
        lab.faults().drop_next_responses(0);
        keeper.full_refresh(|_| {}).await.unwrap();
        let ok = run_user_sync(&store, &rules(), SyncOptions::default(), |_, _| {})
            .await
            .unwrap();
        assert_eq!(ok.status, RunStatus::Applied);
        assert!(ok.plan.changes.is_empty());
        lab.shutdown().await;
        store.close().await;
    }
}

#[tokio::test]
async fn mass_removal_is_refused_until_confirmed() {
    let (store, _dir) = stores().await.remove(0);
    let (lab, client) = lab(60).await;
    let keeper = SnapshotKeeper::new(client.clone(), store.clone(), options());
    keeper.full_refresh(|_| {}).await.unwrap();
    run_user_sync(&store, &rules(), SyncOptions::default(), |_, _| {})
        .await
        .unwrap();
    for u in store.local_users().await.unwrap().iter().take(20) {
        client
            .remove_user(Key::Name(&u.record.username))
            .await
            .unwrap();
    }
    keeper.poll_changes().await.unwrap();
    let rules = SyncRules {
        orphans: OrphanAction::Delete,
        ..SyncRules::default()
    }
    .compile()
    .unwrap();
    let refused = run_user_sync(&store, &rules, SyncOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(refused.status, RunStatus::Refused);
    assert!(
        refused.message.as_deref().unwrap().contains("20 of 60"),
        "{:?}",
        refused.message
    );
    assert_eq!(store.local_users().await.unwrap().len(), 60);
    let confirmed = run_user_sync(
        &store,
        &rules,
        SyncOptions {
            confirm_removals: true,
            ..SyncOptions::default()
        },
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(confirmed.status, RunStatus::Applied);
    assert_eq!(store.local_users().await.unwrap().len(), 40);
    lab.shutdown().await;
}

#[tokio::test]
async fn an_interrupted_apply_converges_without_duplicates() {
    let (store, _dir) = stores().await.remove(0);
    let (lab, client) = lab(80).await;
    let keeper = SnapshotKeeper::new(client, store.clone(), options());
    keeper.full_refresh(|_| {}).await.unwrap();
    // "Crash" after the first 30 creates of a plan.
    let dry = run_user_sync(
        &store,
        &rules(),
        SyncOptions {
            dry_run: true,
            ..SyncOptions::default()
        },
        |_, _| {},
    )
    .await
    .unwrap();
    let partial: Vec<UserChange> = dry.plan.changes.into_iter().take(30).collect();
    store.apply_user_changes(None, &partial).await.unwrap();
    let rerun = run_user_sync(
        &store,
        &rules(),
        SyncOptions {
            batch_size: 7,
            ..SyncOptions::default()
        },
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(rerun.plan.summary().creates, 50);
    assert_eq!(rerun.plan.unchanged, 30);
    assert_eq!(store.local_users().await.unwrap().len(), 80);
    lab.shutdown().await;
}

#[tokio::test]
async fn a_lost_change_queue_asks_for_a_full_refresh_and_sync_waits_for_it() {
    let (store, _dir) = stores().await.remove(0);
    let (lab, client) = lab(10).await;
    let keeper = SnapshotKeeper::new(client, store.clone(), options());
    let outcome = run_user_sync(&store, &rules(), SyncOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        outcome.status,
        RunStatus::Refused,
        "never-refreshed snapshot"
    );
    keeper.full_refresh(|_| {}).await.unwrap();
    // As if CUCM's AXL service restarted: the stored queueId no longer matches.
    store
        .apply_source_changes(SOURCE_CUCM, &[], &[], ("stale-queue", 1))
        .await
        .unwrap();
    let err = keeper.poll_changes().await.unwrap_err();
    assert!(matches!(err, SyncError::NeedsFullRefresh(_)), "{err}");

    // While a refresh is claimed, sync refuses with the seed's warning.
    store
        .begin_full_refresh(SOURCE_CUCM, "other-node", 60_000)
        .await
        .unwrap();
    let refused = run_user_sync(&store, &rules(), SyncOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(refused.status, RunStatus::Refused);
    assert!(refused
        .message
        .unwrap()
        .contains("cache under provisioning"));
    lab.shutdown().await;
}

#[tokio::test]
async fn the_keeper_loop_brings_changes_in_within_seconds() {
    let (store, _dir) = stores().await.remove(0);
    let (lab, client) = lab(30).await;
    let keeper = SnapshotKeeper::new(
        client.clone(),
        store.clone(),
        SnapshotOptions {
            poll_interval: Duration::from_millis(200),
            ..options()
        },
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn({
        let keeper = keeper.clone();
        async move {
            keeper
                .run(async {
                    let _ = stop_rx.await;
                })
                .await
        }
    });
    // The loop does the first full refresh itself.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.snapshot_state(SOURCE_CUCM).await.unwrap().state != RefreshState::Idle {
        assert!(tokio::time::Instant::now() < deadline, "no initial refresh");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .add_user(&NewUser {
            userid: "late.joiner".into(),
            last_name: "Joiner".into(),
            ..NewUser::default()
        })
        .await
        .unwrap();
    while store.source_user("late.joiner").await.unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "change never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(());
    task.await.unwrap();
    lab.shutdown().await;
}

#[tokio::test]
async fn a_noop_resync_does_no_work_until_something_changes() {
    for (store, _dir) in stores().await {
        let (lab, client) = lab(30).await;
        let keeper = SnapshotKeeper::new(client.clone(), store.clone(), options());
        keeper.full_refresh(|_| {}).await.unwrap();
        let sync = |rules: ucbridge_sync::rules::CompiledRules| {
            let store = store.clone();
            async move {
                run_user_sync(&store, &rules, SyncOptions::default(), |_, _| {})
                    .await
                    .unwrap()
            }
        };
        let first = sync(rules()).await;
        assert_eq!(first.plan.summary().creates, 30);
        let fast = sync(rules()).await;
        assert!(
            fast.message
                .as_deref()
                .unwrap_or("")
                .contains("nothing changed"),
            "{:?}",
            fast.message
        );
        assert_eq!(fast.plan.unchanged, 30);

        // A change on CUCM: the full comparison runs and finds it.
        let name = store.local_users().await.unwrap()[3]
            .record
            .username
            .clone();
        client
            .update_user(
                Key::Name(&name),
                &UserUpdate {
                    title: Some("Chief".into()),
                    ..UserUpdate::default()
                },
            )
            .await
            .unwrap();
        keeper.poll_changes().await.unwrap();
        let after_cucm = sync(rules()).await;
        assert_eq!(
            after_cucm.plan.summary().updates,
            1,
            "{:?}",
            after_cucm.message
        );
        assert!(sync(rules())
            .await
            .message
            .unwrap_or_default()
            .contains("nothing changed"));

        // A local edit (outside sync) is compared again and repaired.
        let u = store.local_user(&name).await.unwrap().unwrap();
        let mut edited = u.record.clone();
        edited.title = Some("Edited locally".into());
        store
            .apply_user_changes(
                None,
                &[UserChange::Update {
                    id: u.id,
                    before: u.record.clone(),
                    after: edited,
                }],
            )
            .await
            .unwrap();
        let repaired = sync(rules()).await;
        assert_eq!(repaired.plan.summary().updates, 1);
        assert_eq!(
            store
                .local_user(&name)
                .await
                .unwrap()
                .unwrap()
                .record
                .title
                .as_deref(),
            Some("Chief")
        );

        // Changed rules: compared again.
        let mut changed = SyncRules::default();
        changed.fields.remove("title");
        let with_new_rules = sync(changed.compile().unwrap()).await;
        assert!(
            with_new_rules.message.is_none(),
            "{:?}",
            with_new_rules.message
        );
        assert_eq!(with_new_rules.plan.unchanged, 30);
        lab.shutdown().await;
        store.close().await;
    }
}

/// Runs the keeper loop until the snapshot is idle (or 20 s pass), then stops it.
async fn run_keeper_until_idle(keeper: SnapshotKeeper, store: &Store) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        keeper
            .run(async {
                let _ = stop_rx.await;
            })
            .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while store.snapshot_state(SOURCE_CUCM).await.unwrap().state != RefreshState::Idle {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the keeper never got the snapshot idle: {:?}",
            store.snapshot_state(SOURCE_CUCM).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(());
    task.await.unwrap();
}

/// Issue 18: a node killed mid-refresh left the snapshot `refreshing`, and change polling,
/// "Run now" and user sync were refused for a hard-coded 30 minutes. The node that holds
/// the snapshot lease next (a newer token) takes the dead claim over at once.
#[tokio::test]
async fn a_killed_nodes_refresh_claim_is_taken_over_by_the_next_lease_holder() {
    for (store, _dir) in stores().await {
        let b = store.backend();
        let (lab, client) = lab(20).await;
        SnapshotKeeper::new(client.clone(), store.clone(), options())
            .with_lease("node-a", 1)
            .full_refresh(|_| {})
            .await
            .unwrap();
        // Node A was killed in the middle of its next refresh: its fresh claim stays.
        let killed = RefreshClaimant {
            owner: "node-a:killed".into(),
            node: Some("node-a".into()),
            lease_token: Some(1),
        };
        store
            .claim_full_refresh(SOURCE_CUCM, &killed, 60_000)
            .await
            .unwrap();
        let refused = run_user_sync(&store, &rules(), SyncOptions::default(), |_, _| {})
            .await
            .unwrap();
        assert_eq!(refused.status, RunStatus::Refused, "{b:?}");
        assert!(!refused.message.unwrap().contains("abandoned"));
        // Once the claim has been silent for long, the refusal says it looks abandoned.
        sqlx::query("UPDATE snapshot_state SET refresh_heartbeat_at = 0")
            .execute(store.pool())
            .await
            .unwrap();
        let refused = run_user_sync(&store, &rules(), SyncOptions::default(), |_, _| {})
            .await
            .unwrap();
        let message = refused.message.unwrap();
        assert!(
            message.contains("node-a:killed") && message.contains("looks abandoned"),
            "{message}"
        );

        let keeper_b = SnapshotKeeper::new(
            client.clone(),
            store.clone(),
            SnapshotOptions {
                poll_interval: Duration::from_millis(200),
                ..options()
            },
        )
        .with_lease("node-b", 2);
        run_keeper_until_idle(keeper_b, &store).await;
        let state = store.snapshot_state(SOURCE_CUCM).await.unwrap();
        assert_eq!(state.refresh_node.as_deref(), Some("node-b"), "{b:?}");
        assert_eq!(state.users_count, 20);
        let synced = run_user_sync(&store, &rules(), SyncOptions::default(), |_, _| {})
            .await
            .unwrap();
        assert_eq!(synced.status, RunStatus::Applied, "{b:?}");
        lab.shutdown().await;
    }
}

/// The claim's liveness is its heartbeat, not its age: a slow refresh that keeps beating is
/// not displaced after `stale_refresh_after`, and a silent claim is taken over after it.
#[tokio::test]
async fn a_live_refresh_keeps_its_claim_and_a_silent_one_loses_it() {
    let (store, _dir) = stores().await.remove(0);
    let (lab, client) = lab(20).await;
    let opts = SnapshotOptions {
        stale_refresh_after: Duration::from_secs(2),
        ..options()
    };
    // Every AXL answer takes 2 s: the refresh (at least three calls) outlives 2 s.
    lab.faults().delay_responses(Duration::from_secs(2));
    let slow = SnapshotKeeper::new(client.clone(), store.clone(), opts.clone());
    let refresh = tokio::spawn(async move { slow.full_refresh(|_| {}).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.snapshot_state(SOURCE_CUCM).await.unwrap().state != RefreshState::Refreshing {
        assert!(tokio::time::Instant::now() < deadline, "no refresh started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let other = SnapshotKeeper::new(client.clone(), store.clone(), opts.clone());
    let err = other.full_refresh(|_| {}).await.unwrap_err();
    assert!(
        matches!(err, SyncError::Store(StoreError::Conflict(_))),
        "a live refresh was displaced: {err}"
    );
    let report = refresh.await.unwrap().expect("the slow refresh completes");
    assert_eq!(report.swap.total, 20);
    lab.faults().delay_responses(Duration::ZERO);

    // A command-line refresher killed mid-way: no lease, no heartbeat any more.
    store
        .begin_full_refresh(SOURCE_CUCM, "killed-cli", 60_000)
        .await
        .unwrap();
    let err = other.full_refresh(|_| {}).await.unwrap_err();
    assert!(
        matches!(err, SyncError::Store(StoreError::Conflict(_))),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    other
        .full_refresh(|_| {})
        .await
        .expect("a silent claim is taken over after stale_refresh_after");
    lab.shutdown().await;
}

/// Display names and devices are read by keyset pages (`pkid > last`); with pages far
/// smaller than the user count, every user must still get exactly CUCM's values.
#[tokio::test]
async fn keyset_pages_read_every_display_name_and_device() {
    let (store, _dir) = stores().await.remove(0);
    let (_lab, client) = lab(40).await;
    let options = SnapshotOptions {
        sql_page_size: 7,
        ..options()
    };
    let keeper = SnapshotKeeper::new(client.clone(), store.clone(), options);
    keeper.full_refresh(|_| {}).await.unwrap();
    let users = store.source_users().await.unwrap();
    assert_eq!(users.len(), 40);
    let (mut named, mut with_devices) = (0, 0);
    for snap in users {
        let full = client.get_user(Key::Name(&snap.userid)).await.unwrap();
        let mut devices = full.associated_devices.clone();
        devices.sort();
        assert_eq!(snap.display_name, full.display_name, "{}", snap.userid);
        assert_eq!(snap.associated_devices, devices, "{}", snap.userid);
        named += usize::from(snap.display_name.is_some());
        with_devices += usize::from(!snap.associated_devices.is_empty());
    }
    assert!(
        named > 7 && with_devices > 0,
        "{named} named, {with_devices} with devices"
    );
}
