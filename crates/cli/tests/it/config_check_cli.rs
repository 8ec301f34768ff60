//! `ucbridge config check` end to end: every problem of a bad file at once with exit 1,
//! a syntax error with its line, `--json` for machines, exit 0 for a clean file, and
//! `--connect` reporting a server that does not answer.

use std::path::Path;
use std::process::Output;

async fn check(dir: &Path, toml_text: &str, extra: &[&str]) -> Output {
    let config = dir.join("ucbridge.toml");
    std::fs::write(&config, toml_text).unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ucbridge"))
        .args(["--config", config.to_str().unwrap(), "config", "check"])
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("UCBRIDGE_DATA_DIR", dir.join("data"))
        .output()
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn every_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(
        dir.path(),
        "[axl]\nurl = \"https://cucm.example.invalid:8443/axl/\"\nusername = \"u\"\n\
         password = \"p\"\nurll = \"typo\"\nca_file = \"/nonexistent/ca.pem\"\n\
         [server]\nlease_ttl = \"soon\"\ntick = \"often\"\ntls_key_file = \"/nonexistent/k.pem\"\n\
         [snapshot]\npoll_interval = \"5 parsecs\"\n[mystery]\nx = 1\n",
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for key in [
        "axl.urll:",
        "axl.ca_file:",
        "server.lease_ttl:",
        "server.tick:",
        "server.tls_key_file:",
        "snapshot:",
        "mystery:",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(key)),
            "{key} missing:\n{text}"
        );
    }
}

#[tokio::test]
async fn json_output_and_syntax_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(dir.path(), "[axl]\nurl = \"x\"\nusername =\n", &["--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(doc["ok"], false);
    let message = doc["problems"][0]["message"].as_str().unwrap();
    assert!(message.contains("line 3"), "{message}");

    let clean = check(
        dir.path(),
        "[store]\nurl = \"sqlite:///tmp/u.db\"\n",
        &["--json"],
    )
    .await;
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(stdout(&clean).trim()).unwrap();
    assert_eq!(doc["ok"], true);
}

#[tokio::test]
async fn connect_reports_an_unreachable_server() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was just free: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml_text = format!(
        "[axl]\nurl = \"https://127.0.0.1:{port}/axl/\"\nusername = \"u\"\npassword = \"p\"\n"
    );
    let offline = check(dir.path(), &toml_text, &[]).await;
    assert_eq!(offline.status.code(), Some(0), "{}", stdout(&offline));
    let out = check(dir.path(), &toml_text, &["--connect"]).await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("cannot reach https://127.0.0.1") && text.contains("refused"),
        "{text}"
    );
}
