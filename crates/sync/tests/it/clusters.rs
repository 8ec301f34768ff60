//! Two CUCM clusters as two sources (`cucm` and `east`, two in-process labs) on SQLite:
//! each keeps its own snapshot (full refresh and listChange polling), user sync over both
//! records each user's cluster, a userid on both clusters is a conflict, and a failed
//! cluster refuses the run.

use std::time::Duration;

use ucbridge_axl::{AxlClient, AxlConfig, NewUser, RetryPolicy};
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_store::{LoginKey, RefreshState, RunStatus, Store, SOURCE_CUCM};
use ucbridge_sync::{
    run_user_sync, SnapshotKeeper, SnapshotOptions, SyncError, SyncOptions, SyncRules,
};

async fn lab(users: usize, seed: u64) -> (RunningLab, AxlClient) {
    let lab = RunningLab::start(LabConfig {
        users,
        seed,
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

async fn add(client: &AxlClient, userid: &str) {
    client
        .add_user(&NewUser {
            userid: userid.into(),
            last_name: "East".into(),
            mailid: Some(format!("{userid}@east.example")),
            ..NewUser::default()
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn two_clusters_sync_with_their_cluster_and_conflicts_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let (west_lab, west) = lab(10, 0).await;
    let (east_lab, east) = lab(0, 7).await;
    let cucm = SnapshotKeeper::new(west, store.clone(), SnapshotOptions::default());
    cucm.full_refresh(|_| {}).await.unwrap();
    let west_users = store.source_users().await.unwrap();
    assert_eq!(west_users.len(), 10);
    let shared = west_users[0].userid.clone();
    add(&east, &shared).await;
    add(&east, "east.only").await;

    let keeper = SnapshotKeeper::for_source(
        east.clone(),
        store.clone(),
        SnapshotOptions::default(),
        "east",
        None,
    )
    .await
    .unwrap();
    assert_eq!(keeper.source(), "east");
    let report = keeper.full_refresh(|_| {}).await.unwrap();
    assert_eq!(report.swap.added, 2);
    // The default snapshot is untouched; east has its own state and entries.
    assert_eq!(store.source_users().await.unwrap().len(), 10);
    assert_eq!(store.source_entry_count("east").await.unwrap(), 2);
    let state = store.snapshot_state("east").await.unwrap();
    assert_eq!(state.state, RefreshState::Idle);
    assert!(state.poll_cursor.is_some(), "{state:?}");
    assert_eq!(state.users_count, 2);
    assert_eq!(
        store.snapshot_state(SOURCE_CUCM).await.unwrap().users_count,
        10
    );

    // listChange polling reaches east's snapshot.
    add(&east, "east.late").await;
    let poll = keeper.poll_changes().await.unwrap();
    assert_eq!(poll.users_fetched, 1, "{poll:?}");
    let late = store
        .source_entries_by_userid("east", "east.late")
        .await
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(store.source_users().await.unwrap().len(), 10);

    let rules = SyncRules {
        sources: vec!["cucm".into(), "east".into()],
        ..SyncRules::default()
    }
    .compile()
    .unwrap();
    let run = run_user_sync(&store, &rules, SyncOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Applied, "{:?}", run.message);
    // 9 west-only + 2 east-only; the userid on both clusters is reported and skipped.
    assert_eq!(run.plan.summary().creates, 11, "{:?}", run.plan.problems);
    assert!(
        run.plan
            .problems
            .iter()
            .any(|p| format!("{p:?}").contains("two CUCM clusters")),
        "{:?}",
        run.plan.problems
    );
    assert!(store.local_user(&shared).await.unwrap().is_none());
    let linked = store.user_sources("east.only").await.unwrap();
    assert_eq!(linked.len(), 1);
    assert_eq!(linked[0].source, "east");
    assert_eq!(linked[0].cluster.as_deref(), Some("east"));
    let linked = store.user_sources(&west_users[1].userid).await.unwrap();
    assert_eq!(linked[0].source, "cucm");
    assert_eq!(linked[0].cluster.as_deref(), Some("cucm"));

    // A directory first (AD primary), both clusters after it: the userid on both clusters
    // is still a conflict, though neither cluster is the person's primary source.
    directory_source(&store, "corp", &[&shared, "east.only"]).await;
    let rules = SyncRules {
        sources: vec!["corp".into(), "cucm".into(), "east".into()],
        ..SyncRules::default()
    }
    .compile()
    .unwrap();
    let dry = SyncOptions {
        dry_run: true,
        full: true,
        ..SyncOptions::default()
    };
    let run = run_user_sync(&store, &rules, dry, |_, _| {}).await.unwrap();
    let conflicts: Vec<String> = run
        .plan
        .problems
        .iter()
        .map(|p| format!("{p:?}"))
        .filter(|p| p.contains("two CUCM clusters"))
        .collect();
    assert_eq!(conflicts.len(), 1, "{:?}", run.plan.problems);
    assert!(conflicts[0].contains("cucm and east"), "{conflicts:?}");

    // Applied: east.only is now linked to the directory entry, and still belongs to east —
    // its cluster entry is recorded beside the link, so sign-in finds it there.
    let confirmed = SyncOptions {
        confirm_removals: true,
        ..SyncOptions::default()
    };
    let run = run_user_sync(&store, &rules, confirmed, |_, _| {})
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Applied, "{:?}", run.message);
    let rows = store.user_sources("east.only").await.unwrap();
    let clusters: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.source.as_str(), r.cluster.as_deref()))
        .collect();
    assert!(clusters.contains(&("corp", None)), "{clusters:?}");
    assert!(clusters.contains(&("east", Some("east"))), "{clusters:?}");
    assert_eq!(
        store
            .user_cluster_source("east.only")
            .await
            .unwrap()
            .as_deref(),
        Some("east")
    );
    let found = store
        .sign_in_candidates(LoginKey::Userid, "EAST.ONLY", 2)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].username.as_str(), found[0].cluster.as_str()),
        ("east.only", "east")
    );

    // East fails: its snapshot stays, and the run is refused without removing anyone.
    east_lab.faults().drop_next_responses(1000);
    let err = keeper.full_refresh(|_| {}).await.unwrap_err();
    assert!(matches!(err, SyncError::Axl(_)), "{err}");
    let state = store.snapshot_state("east").await.unwrap();
    assert_eq!(state.state, RefreshState::Failed);
    assert_eq!(store.source_entry_count("east").await.unwrap(), 3);
    let refused = run_user_sync(&store, &rules, SyncOptions::default(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(refused.status, RunStatus::Refused);
    assert!(
        refused
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("east"),
        "{:?}",
        refused.message
    );
    let users = store.local_users().await.unwrap();
    assert_eq!(users.len(), 11);
    assert!(users.iter().all(|u| !u.record.disabled));

    // East (failed, so out of the rules) leaves: its entry is no longer the user's, and
    // sign-in no longer finds the user on any cluster.
    let without_east = SyncRules {
        sources: vec!["corp".into(), "cucm".into()],
        ..SyncRules::default()
    }
    .compile()
    .unwrap();
    let run = run_user_sync(&store, &without_east, confirmed, |_, _| {})
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Applied, "{:?}", run.message);
    let rows = store.user_sources("east.only").await.unwrap();
    assert!(rows.iter().all(|r| r.source != "east"), "{rows:?}");
    assert!(store
        .sign_in_candidates(LoginKey::Userid, "east.only", 2)
        .await
        .unwrap()
        .is_empty());

    east_lab.shutdown().await;
    west_lab.shutdown().await;
    store.close().await;
}

/// An LDAP-kind source holding `userids`, written through the store as a refresh would.
async fn directory_source(store: &Store, name: &str, userids: &[&str]) {
    use ucbridge_store::{RefreshClaimant, SourceEntry, SourceKind, SourceRefreshEnd, SourceUser};
    store
        .register_source(name, SourceKind::Ldap, None)
        .await
        .unwrap();
    let claimant = RefreshClaimant {
        owner: "test".into(),
        node: None,
        lease_token: None,
    };
    store
        .claim_full_refresh(name, &claimant, 60_000)
        .await
        .unwrap();
    let entries: Vec<SourceEntry> = userids
        .iter()
        .enumerate()
        .map(|(i, userid)| SourceEntry {
            user: SourceUser {
                uuid: format!("corp-{i}"),
                userid: (*userid).to_owned(),
                ..SourceUser::default()
            },
            dn: Some(format!("uid={userid},ou=people,dc=example,dc=com")),
            disabled: false,
        })
        .collect();
    store
        .stage_source_entries(name, "test", &entries)
        .await
        .unwrap();
    let end = SourceRefreshEnd {
        poll_cursor: None,
        problems: &[],
        problem_count: 0,
        sync_cookie: None,
    };
    store
        .finish_source_refresh(name, "test", &end)
        .await
        .unwrap();
}
