//! The `ucbridge` binary end to end against an in-process lab: configuration through
//! environment variables, AXL commands, directory sync, local users.

use std::process::Output;

use tokio::process::Command;
use ucbridge_lab::{LabConfig, RunningLab};

struct Env {
    lab: RunningLab,
    dir: tempfile::TempDir,
}

impl Env {
    async fn new(users: usize) -> Env {
        let lab = RunningLab::start(LabConfig {
            users,
            ..LabConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), lab.ca_certificate_pem().unwrap()).unwrap();
        Env { lab, dir }
    }

    /// `ucbridge ARGS` against the lab, every stream piped.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ucbridge"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("UCBRIDGE_AXL_URL", self.lab.axl_url())
            .env("UCBRIDGE_AXL_USERNAME", "administrator")
            .env("UCBRIDGE_AXL_PASSWORD", "ucbridge-lab")
            .env("UCBRIDGE_AXL_CA_FILE", self.dir.path().join("ca.pem"))
            .env("UCBRIDGE_DATA_DIR", self.dir.path().join("data"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    }

    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self.command(args).spawn().unwrap();
        if let Some(input) = stdin {
            use tokio::io::AsyncWriteExt;
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().await.unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn axl_commands_print_tables_and_json() {
    let env = Env::new(15).await;
    let out = env.run(&["axl", "version"], None).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("14.0.1.14900(11)"));

    let out = env.run(&["axl", "users", "list", "--json"], None).await;
    assert!(out.status.success(), "{}", text(&out));
    let users: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 15);

    let out = env
        .run(
            &["axl", "sql", "select count(*) as n from enduser", "--json"],
            None,
        )
        .await;
    assert!(text(&out).contains("\"n\": \"15\""), "{}", text(&out));

    // A wrong password is a clear error, not a panic.
    let mut bad = env
        .run(&["axl", "--password", "nope", "version"], None)
        .await;
    assert!(!bad.status.success());
    bad.stdout.clear();
    assert!(
        text(&bad).contains("refused the credentials"),
        "{}",
        text(&bad)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_sync_from_the_command_line() {
    let env = Env::new(40).await;
    let out = env.run(&["sync", "users"], None).await;
    assert!(!out.status.success(), "refused before any refresh");
    assert!(
        text(&out).contains("never been refreshed"),
        "{}",
        text(&out)
    );

    let out = env
        .run(&["sync", "users", "--refresh", "--dry-run"], None)
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("planned"), "{}", text(&out));

    let out = env.run(&["sync", "users"], None).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("applied"));

    let out = env.run(&["sync", "status", "--json"], None).await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["snapshot"]["state"], "idle");
    assert_eq!(status["snapshot"]["users_count"], 40);
    assert_eq!(status["runs"][0]["summary"]["creates"], 40);

    let out = env.run(&["users", "list", "--json"], None).await;
    let users: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 40);
    let name = users[0]["username"].as_str().unwrap().to_owned();

    let out = env
        .run(&["users", "set-password", &name], Some("weak\n"))
        .await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("at least a capital letter"),
        "{}",
        text(&out)
    );
    let out = env
        .run(&["users", "set-password", &name], Some("Str0ng!pass\n"))
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["users", "show", &name, "--json"], None).await;
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["user"]["has_password"], true);
    assert_eq!(shown["audit"][0]["action"], "create");
}

/// `ucbridge … | head -1`: the reader goes away while the command still has output to
/// write. It ends quietly with status 0, as ripgrep does: no panic, no backtrace, no error.
/// 3,000 users make ~300 kB of table or ~900 kB of JSON, far more than a pipe holds (64 KiB),
/// so the command is certain to write after the reader has gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_pipe_ends_the_command_quietly() {
    use tokio::io::AsyncBufReadExt;
    let env = Env::new(3000).await;
    for args in [
        &["axl", "users", "list", "--page-size", "500"][..],
        &["axl", "users", "list", "--page-size", "500", "--json"][..],
    ] {
        let mut cmd = env.command(args);
        cmd.env("RUST_BACKTRACE", "1");
        let mut child = cmd.spawn().unwrap();
        drop(child.stdin.take());
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).await.unwrap();
        assert!(!first.is_empty(), "{args:?}: no output");
        drop(stdout);
        let out = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        for sign in ["panicked", "Broken pipe", "backtrace", "error:"] {
            assert!(
                !stderr.contains(sign),
                "{args:?}: {sign:?} in stderr:\n{stderr}"
            );
        }
    }
}

/// `--json` lists are streamed: the first user reaches the reader while most pages are
/// still to be fetched. Until the reader takes more, the command can run ahead by what the
/// pipe (64 KiB) and its write buffer hold, a few pages of 100 users (~30 kB each); holding
/// the list before printing it, as it did, fetches all 50 pages before the first byte. No
/// clock involved: the pipe is the gate. The whole output is then one valid JSON array.
#[tokio::test(flavor = "multi_thread")]
async fn json_lists_are_streamed_and_valid() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let env = Env::new(5000).await;
    let mut child = env
        .command(&["axl", "users", "list", "--json", "--page-size", "100"])
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).await.unwrap();
        assert!(n > 0, "the output ended before the first user: {text}");
        text.push_str(&line);
        if line == "  },\n" || line == "  }\n" {
            break;
        }
    }
    let fetched = env.lab.stats().by_operation.get("listUser").copied();
    assert!(
        fetched.is_some_and(|n| n < 25),
        "{fetched:?} of 50 listUser pages fetched before the first user was read"
    );
    stdout.read_to_string(&mut text).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let users: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids: std::collections::BTreeSet<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userid"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5000);
}

/// `ucbridge axl version` with only these variables set; its output and how long it took.
async fn axl_version(env: &[(&str, &str)]) -> (Output, std::time::Duration) {
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ucbridge"))
        .args(["axl", "version"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("UCBRIDGE_AXL_USERNAME", "administrator")
        .env("UCBRIDGE_AXL_PASSWORD", "ucbridge-lab")
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    (out, started.elapsed())
}

/// Permanent failures end at once, in one line with the root cause, plus the fix
/// (issue 18: seven retry warnings over ~40 s, and "error sending request" twice).
#[tokio::test(flavor = "multi_thread")]
async fn axl_version_fails_fast_with_the_cause_and_the_fix() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("https://127.0.0.1:{port}/axl/");
    let (out, took) = axl_version(&[("UCBRIDGE_AXL_URL", &url)]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        took < std::time::Duration::from_secs(20),
        "{took:?}: {stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(!stderr.contains("retrying"), "retried: {stderr}");
    assert!(!stderr.contains("error sending request"), "{stderr}");
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    assert!(stderr.contains("hint: check --url"), "{stderr}");

    // The lab over HTTPS, its CA not given.
    let lab = RunningLab::start(LabConfig::default()).await.unwrap();
    let (out, took) = axl_version(&[("UCBRIDGE_AXL_URL", lab.axl_url().as_str())]).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        took < std::time::Duration::from_secs(20),
        "{took:?}: {stderr}"
    );
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert!(
        stderr.contains("--ca-file") && stderr.contains("--insecure"),
        "{stderr}"
    );
    assert!(!stderr.contains("retrying"), "retried: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        2,
        "one error line and one hint: {stderr}"
    );
}
