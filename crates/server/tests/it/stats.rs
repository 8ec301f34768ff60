//! The admin page's chart data (`GET /api/v1/stats`) after real runs against the lab, and
//! the Grafana dashboard in contrib/grafana checked against the server's real `/metrics`:
//! a panel that queries a metric the server does not export fails here.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_server::ServerConfig;
use ucbridge_store::Role;

use crate::common::{self, TestNode};

const LAB_USERS: usize = 25;
const VIEWER_PW: &str = "Viewer-pass-1";
const DASHBOARD: &str = include_str!("../../../../contrib/grafana/ucbridge-dashboard.json");

/// Dashboard metrics recorded only on events this test does not cause (voicemail, end-user
/// sign-in, WebPhone, LDAP export): each must still be a name the code records. Keep it
/// short: every other dashboard metric must show up live below.
const EVENT_ONLY: &[&str] = &[
    "ucbridge_voicemail_lag_seconds_bucket",
    "ucbridge_voicemail_syncs_total",
    "ucbridge_voicemail_actions_total",
    "ucbridge_voicemail_imap_push_total",
    "ucbridge_voicemail_push_silences_total",
    "ucbridge_voicemail_imap_logins_total",
    "ucbridge_end_user_signins_total",
    "ucbridge_end_user_signins_refused_total",
    "ucbridge_webphone_ensures_total",
    "ucbridge_ldap_export_entries_total",
    "ucbridge_ldap_export_duration_seconds_bucket",
];

#[tokio::test]
async fn stats_chart_runs_and_minutes_and_the_dashboard_matches_metrics() {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let lab = RunningLab::start(LabConfig {
        users: LAB_USERS,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let node = TestNode::start(ServerConfig {
        lease_ttl: Duration::from_secs(2),
        tick: Duration::from_millis(100),
        ..common::local_config()
    })
    .await;
    common::account(&node.store, "viewer", VIEWER_PW, Role::ReadOnly).await;
    let admin = node.admin().await;

    // Authenticated and bounded: no session 401, read-only accounts read, bad bounds 400.
    node.client()
        .get("/api/v1/stats")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let viewer = node.login("viewer", VIEWER_PW).await;
    let empty = viewer
        .get("/api/v1/stats")
        .await
        .expect(StatusCode::OK)
        .json;
    assert_eq!(empty["sync_runs"], json!([]), "{empty}");
    assert_eq!(empty["runs_limit"], 50);
    for bad in ["runs=0", "runs=201", "hours=0", "hours=721", "runs=x"] {
        admin
            .get(&format!("/api/v1/stats?{bad}"))
            .await
            .expect(StatusCode::BAD_REQUEST);
    }

    // CUCM throttles the first AXL call (HTTP 503, retried), then the runs go through.
    lab.faults().fail_next_with_status(1, 503);
    let cucm = json!({
        "url": lab.axl_url(),
        "username": "administrator",
        "password": "ucbridge-lab",
        "ca_pem": lab.ca_certificate_pem().unwrap(),
    });
    admin
        .put_json("/api/v1/connections/cucm", &cucm)
        .await
        .expect(StatusCode::OK);
    admin.run_job("snapshot").await;
    admin.wait_for_run("snapshot").await;
    wait_for_snapshot(&admin).await;
    admin.run_job("user_sync").await;
    let run = admin.wait_for_run("user_sync").await;
    assert_eq!(run["status"], "succeeded", "{run}");

    let stats = admin
        .get("/api/v1/stats?runs=10")
        .await
        .expect(StatusCode::OK)
        .json;
    let sync = stats["sync_runs"].as_array().unwrap();
    assert_eq!(sync.len(), 1, "{stats}");
    assert_eq!(sync[0]["creates"], LAB_USERS);
    assert_eq!(sync[0]["status"], "applied", "{stats}");
    assert!(sync[0]["duration_ms"].as_i64().unwrap() >= 0);
    assert!(
        !stats["snapshot_runs"].as_array().unwrap().is_empty(),
        "{stats}"
    );
    // This node's minutes since the test began hold the calls and the throttle (another
    // test's server in this process may have sampled in between: sum, don't pick one).
    let minutes = stats["minutes"]["points"].as_array().unwrap();
    assert_eq!(minutes.last().unwrap()["partial"], true, "{stats}");
    let since_start = |key: &str| -> u64 {
        minutes
            .iter()
            .filter(|m| m["at"].as_i64().unwrap() >= started)
            .map(|m| m[key].as_u64().unwrap())
            .sum()
    };
    assert!(since_start("axl_calls") > 0, "{stats}");
    assert!(since_start("axl_throttled") >= 1, "{stats}");

    let metrics = admin.get("/metrics").await.expect(StatusCode::OK).text;
    check_dashboard(&metrics);
    node.shutdown().await;
}

async fn wait_for_snapshot(admin: &common::ApiClient) {
    for _ in 0..200 {
        let s = admin.get("/api/v1/status").await.json;
        if s["snapshot"]["state"] == "idle" && s["snapshot"]["users_count"] == LAB_USERS {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the snapshot did not become idle with the lab's users");
}

/// Every metric a dashboard query names is in `/metrics` now, or is one of the few
/// [`EVENT_ONLY`] ones, which the server's code must still record by that name.
fn check_dashboard(metrics: &str) {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 15,
        "only {} queries in the dashboard",
        exprs.len()
    );
    let names: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let exported: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut missing = Vec::new();
    for name in &names {
        if exported.contains(name.as_str()) {
            continue;
        }
        if !EVENT_ONLY.contains(&name.as_str()) || !recorded_in_source(name) {
            missing.push(name.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "dashboard metrics the server does not export: {missing:?}\n{metrics}"
    );
    for name in EVENT_ONLY {
        assert!(
            names.contains(*name),
            "{name} is not on the dashboard: drop it from EVENT_ONLY"
        );
    }
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

/// The `ucbridge_…` identifiers of a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("ucbridge_"))
        .map(str::to_owned)
        .collect()
}

/// Whether a `metrics::counter!`/`histogram!`/`gauge!` in some crate's source names the
/// metric (a histogram's `_bucket` series by its base name).
fn recorded_in_source(series: &str) -> bool {
    let base = series.strip_suffix("_bucket").unwrap_or(series);
    let needle = format!("\"{base}\"");
    let crates = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut stack = vec![std::path::PathBuf::from(crates)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("tests") && !path.ends_with("target") {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if text.contains(&needle) && text.contains("metrics::") {
                    return true;
                }
            }
        }
    }
    false
}
