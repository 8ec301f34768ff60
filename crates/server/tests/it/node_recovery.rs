//! A node's readiness and recovery (issue 18): `/readyz` checks the secret key and fails
//! fast with "database unreachable" during an outage; a node restarted under the same id
//! marks what its previous process left running abandoned.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use ucbridge_auth::{Secret, SecretBox};
use ucbridge_server::{RunningServer, Server, ServerConfig};
use ucbridge_store::{
    Claim, Fence, JobRunStatus, RunOwner, RunStatus, SealedSecret, SecretUpdate, Store, Trigger,
};

use crate::common::{self, TestNode};

fn key() -> SecretBox {
    common::secret_box()
}

fn config(node: &str) -> ServerConfig {
    ServerConfig {
        node_id: Some(node.into()),
        lease_ttl: Duration::from_secs(30),
        tick: Duration::from_millis(100),
        ..common::local_config()
    }
}

async fn sqlite() -> (Store, tempfile::TempDir) {
    common::sqlite_store().await
}

async fn readyz(server: &RunningServer) -> (u16, Value) {
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .get(format!("{}/readyz", server.url()))
        .send()
        .await
        .expect("/readyz answers");
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Wait (bounded) until the scheduler has started, so `jobs` does not say "starting".
async fn ready(server: &RunningServer) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = readyz(server).await;
        if body["jobs"] != "starting" || Instant::now() > deadline {
            return (code, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stored sealed secret of a connection no job needs (so no job starts using it).
async fn store_secret(store: &Store, sealer: &SecretBox) {
    let name = "connection.ids";
    let sealed = SealedSecret {
        sealed: sealer.seal(name, &Secret::new("s3cret".to_owned())),
        key_id: sealer.key_id().to_owned(),
    };
    store
        .put_setting(name, "{}", SecretUpdate::Set(sealed), None, false)
        .await
        .unwrap();
}

/// With a wrong secret key every job fails, yet `/readyz` said ready.
#[tokio::test]
async fn readyz_checks_that_the_secret_key_opens_the_stored_secrets() {
    let (store, _dir) = sqlite().await;
    let configured = key();
    let server = Server::start(store.clone(), configured.clone(), config("n1"))
        .await
        .unwrap();
    let (code, body) = ready(&server).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body["secrets"].as_str().unwrap().starts_with("ok"),
        "{body}"
    );

    store_secret(&store, &key()).await;
    let (code, body) = readyz(&server).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["ready"], false);
    let why = body["secrets"].as_str().unwrap();
    assert!(
        why.contains("secret key") && !why.contains("digest"),
        "{why}"
    );

    store_secret(&store, &configured).await;
    let (code, body) = readyz(&server).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["secrets"], "ok");
    server.shutdown().await;
}

/// A restart under the same `--node-id` within `lease_ttl` renews the lease with the same
/// token, so the old process's runs were never seen as orphaned and stayed `running`.
#[tokio::test]
async fn a_node_restarted_under_its_id_marks_its_previous_runs_abandoned() {
    let (store, _dir) = sqlite().await;
    // The previous process of node n1: it held the lease, claimed a run, started a user
    // sync, and was killed.
    let token = store
        .acquire_lease("user_sync", "n1", 60_000)
        .await
        .unwrap()
        .unwrap();
    store.ensure_job("user_sync", None, None).await.unwrap();
    let claim = Claim {
        slot: "manual:1".into(),
        trigger: Trigger::Manual,
        requested_by: None,
    };
    let job_run = store
        .claim_job_run("user_sync", &claim, "n1", token, None)
        .await
        .unwrap()
        .unwrap();
    let fence = Fence {
        job: "user_sync".into(),
        holder: "n1".into(),
        token,
    };
    let sync_run = store
        .start_run_as("users", false, &RunOwner::lease(fence))
        .await
        .unwrap();
    // Another node's run is none of n1's business.
    let other = store
        .start_run_as("users", false, &RunOwner::cli())
        .await
        .unwrap();

    let server = Server::start(store.clone(), key(), config("n1"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    // Recovery marks job runs, sync runs and refresh claims in one transaction; waiting on
    // both keeps the test honest even if that ever changes.
    while store.job_run(job_run).await.unwrap().unwrap().status == JobRunStatus::Running
        || store.sync_run(sync_run).await.unwrap().unwrap().status == RunStatus::Running
    {
        assert!(Instant::now() < deadline, "the old runs stayed running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = store.job_run(job_run).await.unwrap().unwrap();
    assert_eq!(run.status, JobRunStatus::Abandoned);
    assert_eq!(
        store.sync_run(sync_run).await.unwrap().unwrap().status,
        RunStatus::Abandoned
    );
    assert_eq!(
        store.sync_run(other).await.unwrap().unwrap().status,
        RunStatus::Running
    );
    server.shutdown().await;
}

/// A TCP relay to PostgreSQL that can be cut, like a stopped database: open connections
/// end and the port refuses new ones.
struct Relay {
    port: u16,
    cut: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(tokio::sync::Notify::new());
        let cut2 = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let cut = cut2.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        Relay { port, cut, task }
    }

    /// Aborting the accept loop closes the listener.
    fn cut(&self) {
        self.task.abort();
        self.cut.notify_waiters();
    }
}

/// During a database outage `/readyz` and the API hung for 30 s before answering, and
/// nothing was logged until then.
#[tokio::test]
async fn readyz_and_the_api_fail_fast_during_a_database_outage() {
    let Some(url) = ucbridge_testkit::postgres_database() else {
        return;
    };
    // postgres://postgres@127.0.0.1:PORT/DB -> the same through the relay.
    let rest = url.strip_prefix("postgres://postgres@").unwrap();
    let (hostport, db) = rest.split_once('/').unwrap();
    let relay = Relay::start(hostport.to_owned()).await;
    let store = Store::open(&format!(
        "postgres://postgres@127.0.0.1:{}/{db}",
        relay.port
    ))
    .await
    .unwrap();
    let server = Server::start(store.clone(), key(), config("n1"))
        .await
        .unwrap();
    let (code, body) = ready(&server).await;
    assert_eq!(code, 200, "{body}");

    relay.cut();
    let started = Instant::now();
    let (code, body) = readyz(&server).await;
    assert_eq!(code, 503, "{body}");
    let why = body["database"].as_str().unwrap();
    assert!(why.contains("database unreachable"), "{why}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );

    // An API call that needs the database answers too, with the same words.
    let started = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/session", server.url()))
        .json(&serde_json::json!({"username": "nobody", "password": "x"}))
        .timeout(Duration::from_secs(25))
        .send()
        .await
        .expect("the API answers during an outage");
    assert!(r.status().is_server_error(), "{}", r.status());
    let text = r.text().await.unwrap();
    assert!(text.contains("database unreachable"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
    relay.task.abort();
}

/// `every 99999999999d` panicked in the handler (the connection closed with no answer).
#[tokio::test]
async fn an_absurd_schedule_is_a_400_not_a_dropped_connection() {
    let node = TestNode::start(config("n1")).await;
    let admin = node.admin().await;
    let put = |schedule: &'static str| {
        let admin = admin.clone();
        async move {
            admin
                .put_json(
                    "/api/v1/jobs/user_sync",
                    &serde_json::json!({"schedule": schedule, "enabled": true}),
                )
                .await
        }
    };
    let r = put("every 99999999999d")
        .await
        .expect(StatusCode::BAD_REQUEST);
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("366 days"), "{message}");
    put("every 15m").await.expect(StatusCode::OK);
    node.shutdown().await;
}

/// A node whose lease lapsed (a pause or a database outage longer than `lease_ttl`) and
/// that takes it again gets a newer token: what it still ran under the old one is fenced
/// out — stopped, its result refused, the run marked abandoned — instead of carrying on as
/// if nothing happened while another node may have run the job meanwhile.
#[tokio::test]
async fn a_lapsed_lease_stops_the_runs_made_under_it() {
    use ucbridge_server::jobs::{JobMode, JobResult, JobSpec, Scheduler};
    let (store, _dir) = sqlite().await;
    let started = Arc::new(tokio::sync::Notify::new());
    let stopped = Arc::new(AtomicBool::new(false));
    let (started2, stopped2) = (started.clone(), stopped.clone());
    let spec = JobSpec {
        name: "probe",
        title: "waits until cancelled",
        mode: JobMode::Scheduled,
        needs: &[],
        restart_on: &[],
        default_schedule: None,
        run: Arc::new(move |ctx| {
            let (started, stopped) = (started2.clone(), stopped2.clone());
            Box::pin(async move {
                // Set when the run ends, whether it sees the cancel or is dropped.
                struct Ended(Arc<AtomicBool>);
                impl Drop for Ended {
                    fn drop(&mut self) {
                        self.0.store(true, Ordering::SeqCst);
                    }
                }
                let _ended = Ended(stopped);
                started.notify_one();
                ctx.cancel.cancelled().await;
                Ok(JobResult::succeeded(Value::Null))
            })
        }),
        run_once: None,
    };
    let scheduler = Scheduler::new(
        store.clone(),
        key(),
        "n1".into(),
        Duration::from_secs(30),
        Duration::from_millis(50),
        vec![spec],
    );
    scheduler.register().await.unwrap();
    store.request_job_run("probe", "test").await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(scheduler.run(shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the run starts");
    let run = store.job_runs(Some("probe"), 1).await.unwrap().remove(0);
    assert_eq!(run.status, JobRunStatus::Running);

    // The lapse: as if the lease expired while the node could not renew it.
    store.release_lease("probe", "n1").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.job_run(run.id).await.unwrap().unwrap().status == JobRunStatus::Running {
        assert!(Instant::now() < deadline, "the fenced-out run kept running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stopped.load(Ordering::SeqCst), "the run was stopped");
    let run = store.job_run(run.id).await.unwrap().unwrap();
    assert_eq!(run.status, JobRunStatus::Abandoned, "{run:?}");
    shutdown.cancel();
    task.await.unwrap();
}
