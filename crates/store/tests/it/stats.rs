//! Chart data (`stats.rs`): finished runs only, oldest first, bounded by time and count,
//! job runs filtered by trigger — once on SQLite and once on a real PostgreSQL.

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
async fn chart_points_are_finished_runs_bounded_by_window_and_count() {
    for (store, _dir) in backends().await {
        let b = store.backend();
        let mut ids = Vec::new();
        for creates in [3, 5] {
            let id = store.start_run("users", false).await.unwrap();
            let summary = RunSummary {
                creates,
                ..RunSummary::default()
            };
            store
                .finish_run(id, RunStatus::Applied, None, summary, None)
                .await
                .unwrap();
            ids.push(id);
        }
        store.start_run("users", false).await.unwrap(); // still running: not a point
        let points = store.sync_run_points("users", 0, 50).await.unwrap();
        assert_eq!(
            points.iter().map(|p| p.id).collect::<Vec<_>>(),
            ids,
            "{b:?}"
        );
        assert_eq!((points[0].creates, points[1].creates), (3, 5), "{b:?}");
        assert_eq!(points[0].status, "applied");
        let newest = store.sync_run_points("users", 0, 1).await.unwrap();
        assert_eq!(newest.iter().map(|p| p.id).collect::<Vec<_>>(), [ids[1]]);
        let future = store.db_now().await.unwrap() + 60_000;
        assert!(store
            .sync_run_points("users", future, 50)
            .await
            .unwrap()
            .is_empty());

        let token = store
            .acquire_lease("snapshot", "node-a", 60_000)
            .await
            .unwrap()
            .unwrap();
        let claim = Claim {
            slot: "manual:1".into(),
            trigger: Trigger::Manual,
            requested_by: Some("root".into()),
        };
        let run = store
            .claim_job_run("snapshot", &claim, "node-a", token, None)
            .await
            .unwrap()
            .unwrap();
        store
            .finish_job_run(run, JobRunStatus::Succeeded, None, None)
            .await
            .unwrap();
        let all = store.job_run_points("snapshot", None, 0, 50).await.unwrap();
        assert_eq!(all.len(), 1, "{b:?}");
        assert_eq!(
            (all[0].status.as_str(), all[0].trigger.as_str()),
            ("succeeded", "manual")
        );
        assert!(all[0].duration_ms >= 0);
        let manual = store
            .job_run_points("snapshot", Some("manual"), 0, 50)
            .await
            .unwrap();
        assert_eq!(manual.len(), 1, "{b:?}");
        let scheduled = store
            .job_run_points("snapshot", Some("schedule"), 0, 50)
            .await;
        assert!(scheduled.unwrap().is_empty(), "{b:?}");
    }
}
