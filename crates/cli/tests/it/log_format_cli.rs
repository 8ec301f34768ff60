//! `--log-format json` (and `UCBRIDGE_LOG_FORMAT=json`): log events on stderr are JSON
//! lines carrying timestamp, level, target and the event's fields; text stays the default.

use std::path::Path;
use std::process::Output;

/// `ucbridge -v sync users --dry-run` on an empty database: directory sync refuses with a
/// WARN event carrying `run_id` (and says so on stderr besides the log).
async fn refused_sync(dir: &Path, flags: &[&str], env: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ucbridge"));
    cmd.args(flags)
        .args(["-v", "sync", "users", "--dry-run"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("UCBRIDGE_DATA_DIR", dir);
    if let Some(format) = env {
        cmd.env("UCBRIDGE_LOG_FORMAT", format);
    }
    cmd.output().await.unwrap()
}

/// The JSON log events of stderr; the lines that are not events are the command's own
/// messages, which never start with `{`.
fn events(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn assert_refusal_event(o: &Output) {
    let events = events(o);
    let refusal = events
        .iter()
        .find(|e| e["target"] == "ucbridge_sync::directory")
        .unwrap_or_else(|| panic!("no sync event in {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(refusal["level"], "WARN", "{refusal}");
    assert_eq!(refusal["fields"]["run_id"], 1, "{refusal}");
    assert!(refusal["fields"]["message"].is_string(), "{refusal}");
    assert!(refusal["timestamp"].is_string(), "{refusal}");
}

#[tokio::test]
async fn json_logs_carry_level_target_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    let flag = refused_sync(&dir.path().join("a"), &["--log-format", "json"], None).await;
    assert_refusal_event(&flag);
    let env = refused_sync(&dir.path().join("b"), &[], Some("json")).await;
    assert_refusal_event(&env);
    let text = refused_sync(&dir.path().join("c"), &[], None).await;
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(events(&text).is_empty(), "text is the default: {stderr}");
    assert!(
        stderr.contains("WARN") && stderr.contains("run_id=1"),
        "{stderr}"
    );
}
