//! Several `ucbridge serve` processes on one PostgreSQL: each job runs on one node at a
//! time, every scheduled slot runs once, and killing a node hands its jobs to the other.
//! `serve --lab` with Dovecot and slapd: every part of the mission, tested through the API.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use ucbridge_auth::SecretBox;
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_server::connections::{self, ConnectionSettings, ConnectionUpdate};
use ucbridge_store::{JobRunStatus, Role, Store};

struct Node {
    name: String,
    child: Child,
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(name: &str, db: &str, key: &str, data: &std::path::Path) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ucbridge"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--print-url",
            "--node-id",
            name,
        ])
        .args(["--lease-ttl", "4s", "--tick", "200ms"])
        .env("UCBRIDGE_DATABASE_URL", db)
        .env("UCBRIDGE_SECRET_KEY", key)
        .env("UCBRIDGE_DATA_DIR", data)
        .env_remove("UCBRIDGE_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ucbridge serve starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Node {
        name: name.to_owned(),
        child,
        url,
    }
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn holder(store: &Store, job: &str) -> Option<String> {
    store
        .leases()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.job == job && !l.expired)
        .map(|l| l.holder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_jobs_run_each_slot_once_and_take_over() {
    let Some(db) = ucbridge_testkit::postgres_database() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let lab = RunningLab::start(LabConfig {
        users: 30,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let key = SecretBox::generate_key_base64();
    let secrets = SecretBox::from_base64(&key, "test").unwrap();
    let store = Store::open(&db).await.unwrap();
    connections::save(
        &store,
        &secrets,
        "cucm",
        ConnectionUpdate {
            settings: ConnectionSettings {
                url: lab.axl_url(),
                username: "administrator".into(),
                ca_pem: lab.ca_certificate_pem().map(str::to_owned),
                ..ConnectionSettings::default()
            },
            password: Some("ucbridge-lab".into()),
        },
        None,
        false,
    )
    .await
    .unwrap();
    let token = ucbridge_server::auth::new_api_token();
    store
        .create_api_token(
            "test",
            &ucbridge_server::auth::token_hash(&token),
            Role::Admin,
        )
        .await
        .unwrap();

    let a = start_node("node-a", &db, &key, data.path());
    let b = start_node("node-b", &db, &key, data.path());
    // Both nodes registered the jobs; every 1 s user syncs from now on.
    wait_until("jobs registered", Duration::from_secs(20), || async {
        store.job("user_sync").await.unwrap().is_some()
    })
    .await;
    store
        .set_job_schedule(
            "user_sync",
            Some("every 1s"),
            true,
            Some(ucbridge_store::now_millis()),
        )
        .await
        .unwrap();
    // The snapshot keeper runs on exactly one node and fills the snapshot.
    wait_until("snapshot refreshed", Duration::from_secs(30), || async {
        store
            .snapshot_state(ucbridge_store::SOURCE_CUCM)
            .await
            .unwrap()
            .users_count
            == 30
    })
    .await;
    let snapshot_holder = holder(&store, "snapshot")
        .await
        .expect("someone runs the snapshot");
    wait_until(
        "several scheduled syncs",
        Duration::from_secs(30),
        || async { store.job_runs(Some("user_sync"), 100).await.unwrap().len() >= 4 },
    )
    .await;

    // "Run now" through the node that does NOT hold user_sync: the holder runs it, once.
    let sync_holder = holder(&store, "user_sync").await.unwrap();
    let other = if sync_holder == a.name { &b } else { &a };
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/v1/jobs/user_sync/run", other.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_until("the manual run", Duration::from_secs(20), || async {
        store
            .job_runs(Some("user_sync"), 100)
            .await
            .unwrap()
            .iter()
            .any(|r| r.trigger == "manual" && r.status != JobRunStatus::Running)
    })
    .await;

    // Every slot ran once, by the lease holder, and runs of one job never overlapped.
    let runs = store.job_runs(Some("user_sync"), 1000).await.unwrap();
    let mut slots: Vec<_> = runs.iter().map(|r| r.slot.clone()).collect();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), runs.len(), "a slot ran twice: {runs:#?}");
    let manual: Vec<_> = runs.iter().filter(|r| r.trigger == "manual").collect();
    assert_eq!(manual.len(), 1);
    assert_eq!(
        manual[0].node, sync_holder,
        "the lease holder ran the request"
    );
    let mut ordered = runs.clone();
    ordered.sort_by_key(|r| r.started_at);
    for pair in ordered.windows(2) {
        if let Some(end) = pair[0].finished_at {
            assert!(
                pair[1].started_at >= end,
                "overlapping runs: {:?} / {:?}",
                pair[0],
                pair[1]
            );
        }
    }
    assert!(
        runs.iter().all(|r| r.status != JobRunStatus::Failed),
        "{runs:#?}"
    );

    // The status endpoint of either node shows the same holders.
    let status: Value = http
        .get(format!("{}/api/v1/status", other.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let snap = status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "snapshot")
        .unwrap();
    assert_eq!(snap["holder"], snapshot_holder.as_str());

    // Kill the node holding user_sync (no clean shutdown, leases stay until they expire):
    // the survivor takes over both its jobs.
    let (victim, survivor) = if sync_holder == a.name {
        (a, b)
    } else {
        (b, a)
    };
    let killed_at = ucbridge_store::now_millis();
    drop(victim);
    wait_until(
        "the survivor to take over",
        Duration::from_secs(20),
        || async {
            holder(&store, "user_sync").await.as_deref() == Some(survivor.name.as_str())
                && holder(&store, "snapshot").await.as_deref() == Some(survivor.name.as_str())
        },
    )
    .await;
    wait_until("a run on the survivor", Duration::from_secs(20), || async {
        store
            .job_runs(Some("user_sync"), 5)
            .await
            .unwrap()
            .iter()
            .any(|r| {
                r.node == survivor.name
                    && r.started_at > killed_at
                    && r.status == JobRunStatus::Succeeded
            })
    })
    .await;
    let runs = store.job_runs(Some("user_sync"), 1000).await.unwrap();
    let mut slots: Vec<_> = runs.iter().map(|r| r.slot.clone()).collect();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), runs.len());
    drop(survivor);
}

/// `ucbridge admin` and `ucbridge serve` with a configuration file: the file seeds the
/// connections (password sealed, never shown), accounts and tokens come from the CLI,
/// the admin page and OpenAPI are served, and SIGTERM stops the node cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_seeds_connections_from_the_config_file() {
    let lab = RunningLab::start(LabConfig {
        users: 5,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("lab-ca.pem");
    std::fs::write(&ca, lab.ca_certificate_pem().unwrap()).unwrap();
    let config = dir.path().join("ucbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[axl]\nurl = \"{}\"\nusername = \"administrator\"\npassword = \"ucbridge-lab\"\nca_file = \"{}\"\n\n\
             [server]\nlease_ttl = \"3s\"\ntick = \"200ms\"\n\n[directory_sync]\nschedule = \"every 1h\"\n",
            lab.axl_url(),
            ca.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ucbridge"));
        cmd.args(args)
            .env("UCBRIDGE_CONFIG", &config)
            .env("UCBRIDGE_DATA_DIR", dir.path())
            .env_remove("UCBRIDGE_DATABASE_URL")
            .env_remove("UCBRIDGE_SECRET_KEY")
            .env_remove("UCBRIDGE_ADMIN_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        child.wait_with_output().unwrap()
    };
    // A weak password is refused with the policy's reason.
    let out = run(&["admin", "set-account", "root"], Some("short\n"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Missing"),
        "{out:?}"
    );
    let out = run(
        &["admin", "set-account", "root", "--role", "admin"],
        Some("Root-pass-12\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let out = run(
        &["admin", "create-token", "ci", "--role", "read-only"],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("ucb_"));

    let mut child = Command::new(env!("CARGO_BIN_EXE_ucbridge"))
        .args(["serve", "--bind", "127.0.0.1:0", "--print-url"])
        .env("UCBRIDGE_CONFIG", &config)
        .env("UCBRIDGE_DATA_DIR", dir.path())
        .env_remove("UCBRIDGE_DATABASE_URL")
        .env_remove("UCBRIDGE_SECRET_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    // The key for secrets at rest was created in the data dir, readable by the owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("secret.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let http = reqwest::Client::new();
    let conns = http
        .get(format!("{url}/api/v1/connections"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(conns.contains(&lab.axl_url()), "{conns}");
    assert!(conns.contains("\"password_set\":true"), "{conns}");
    assert!(!conns.contains("ucbridge-lab"), "{conns}");
    let jobs: Value = http
        .get(format!("{url}/api/v1/jobs"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_sync = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "user_sync")
        .unwrap();
    assert_eq!(user_sync["schedule"], "every 1h", "{user_sync}");
    let page = http
        .get(format!("{url}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("ucbridge"), "the admin page is served");
    // The snapshot job runs from the seeded connection.
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("ucbridge.db").display()
    ))
    .await
    .unwrap();
    wait_until(
        "the seeded CUCM to be read",
        Duration::from_secs(30),
        || async {
            store
                .snapshot_state(ucbridge_store::SOURCE_CUCM)
                .await
                .unwrap()
                .users_count
                == 5
        },
    )
    .await;
    // SIGTERM: a clean stop that releases the leases.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Released leases are expired, not deleted, so fencing tokens never restart.
    let leases = store.leases().await.unwrap();
    assert!(
        leases.iter().all(|l| l.expired),
        "leases released on shutdown: {leases:?}"
    );
}

/// A `serve` child stopped with SIGTERM when dropped (a failed assertion included), so it
/// stops the lab's Dovecot and slapd and removes their directory; SIGKILL after 10 s.
struct StoppedOnDrop(Child);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return; // already stopped (and reaped): its pid is no longer ours
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An admin session on a running server: the cookie and the CSRF token.
struct AdminSession {
    http: reqwest::Client,
    url: String,
    cookie: String,
    csrf: String,
}

impl AdminSession {
    async fn login(url: &str, user: &str, password: &str) -> AdminSession {
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{url}/api/v1/session"))
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "admin login");
        let cookie = response
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_owned();
        let body: Value = response.json().await.unwrap();
        let csrf = body["csrf_token"]
            .as_str()
            .expect("a CSRF token")
            .to_owned();
        AdminSession {
            http,
            url: url.to_owned(),
            cookie,
            csrf,
        }
    }

    /// POST with the session; the status and the body (JSON, or the text as a string).
    async fn post(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .header(reqwest::header::COOKIE, &self.cookie)
            .header("X-CSRF-Token", &self.csrf)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.url))
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// IMAP LOGIN on 127.0.0.1:`port`; `Ok(())` or the server's refusal.
async fn imap_login(port: u16, user: &str, password: &str) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let mut client = async_imap::Client::new(tcp);
    client
        .read_response()
        .await
        .ok_or("no greeting")?
        .map_err(|e| e.to_string())?;
    match client.login(user, password).await {
        Ok(mut session) => {
            let _ = session.logout().await;
            Ok(())
        }
        Err((e, _)) => Err(e.to_string()),
    }
}

/// `serve --lab` with Dovecot and slapd installed: it starts both, says so part by part,
/// points the `imap` and `ldap` connections at them, "Test connection" succeeds on both
/// through the API, and a lab user signs in to Dovecot with the CUCM password (Dovecot's
/// checkpassword asks this server's `/api/v1/passdb`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_lab_starts_dovecot_and_slapd_and_tests_them() {
    use ucbridge_lab::services::{dovecot, slapd};
    if dovecot::binary().is_none() || slapd::binaries().is_none() {
        let why = "serve --lab with Dovecot and slapd needs dovecot-imapd and slapd";
        if ucbridge_testkit::in_ci() {
            panic!("{why} (CI=true: missing tools fail the run)");
        }
        eprintln!("\n*** SKIPPED: {why}. ***\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let password = "Lab-admin-pass-12";
    let mut child = Command::new(env!("CARGO_BIN_EXE_ucbridge"))
        .args([
            "serve",
            "--lab",
            "--lab-users",
            "5",
            "--bind",
            "127.0.0.1:0",
        ])
        .args(["--print-url", "--tick", "200ms", "--lease-ttl", "3s"])
        .env("UCBRIDGE_DATA_DIR", dir.path())
        .env("UCBRIDGE_ADMIN_PASSWORD", password)
        .env_remove("UCBRIDGE_CONFIG")
        .env_remove("UCBRIDGE_DATABASE_URL")
        .env_remove("UCBRIDGE_SECRET_KEY")
        .env_remove("UCBRIDGE_PASSDB_TOKEN")
        .env_remove("UCBRIDGE_IMAP_PUSH_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ucbridge serve --lab starts");
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let stderr = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = stderr.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
    }
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let Some(url) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "unexpected first line {line:?}; stderr: {}",
            stderr.lock().unwrap()
        );
    };
    let mut child = StoppedOnDrop(child);
    let output = || stderr.lock().unwrap().clone();
    // The parts are announced before the server says it serves (stderr is read by a
    // thread, so wait for that line).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !output().contains("ucbridge is serving the admin page") {
        assert!(Instant::now() < deadline, "stderr: {}", output());
        std::thread::sleep(Duration::from_millis(50));
    }
    let said = output();
    let imap_line = said
        .lines()
        .find(|l| l.starts_with("IMAP (Dovecot "))
        .unwrap_or_else(|| panic!("no IMAP line in: {said}"))
        .to_owned();
    assert!(
        imap_line.contains("on 127.0.0.1:")
            && imap_line.contains("voicemail sync, IMAP push, mail sign-in"),
        "{imap_line}"
    );
    assert!(
        said.lines()
            .any(|l| l.starts_with("LDAP (OpenLDAP slapd ") && l.ends_with("LDAP export")),
        "{said}"
    );
    assert!(
        said.contains("The cucm connection points at the built-in lab."),
        "{said}"
    );
    let imap_port: u16 = imap_line
        .split("on 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {imap_line}"));

    let admin = AdminSession::login(&url, "admin", password).await;
    let conns = admin.get("/api/v1/connections").await;
    assert!(
        conns.contains(&format!("imap://127.0.0.1:{imap_port}")),
        "{conns}"
    );
    assert!(conns.contains("ldap://127.0.0.1:"), "{conns}");
    assert!(conns.contains(slapd::PEOPLE_DN), "{conns}");

    // LDAP: bound as the lab's admin DN and searched the export base.
    let (status, report) = admin.post("/api/v1/connections/ldap/test").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ok"], true, "{report}");

    // IMAP is tested as voicemail sync uses it: CUC users matched to local users (the
    // user sync makes them from the lab's CUCM), then a master-user login to a mailbox.
    let deadline = Instant::now() + Duration::from_secs(120);
    let report = loop {
        let (status, report) = admin.post("/api/v1/connections/imap/test").await;
        if status == 200 && report["ok"] == true {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "the IMAP test never succeeded: {status} {report}; stderr: {}",
            output()
        );
        // Read CUCM (the snapshot) and make local users; 409 while one runs is fine.
        let _ = admin.post("/api/v1/jobs/user_sync/run").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let first = report["accounts"][0]
        .as_str()
        .and_then(|a| a.split(" -> ").nth(1))
        .unwrap_or_else(|| panic!("no matched account in {report}"))
        .to_owned();

    // Mail sign-in: Dovecot asks ucbridge (checkpassword -> /api/v1/passdb -> CUCM).
    let lab_password = LabConfig::default().user_password;
    imap_login(imap_port, &first, &lab_password)
        .await
        .unwrap_or_else(|e| panic!("{first} cannot sign in to Dovecot: {e}; {}", output()));
    assert!(
        imap_login(imap_port, &first, "not-the-password")
            .await
            .is_err(),
        "a wrong password is refused"
    );
    // No secret the lab generated is printed.
    let said = output();
    let push_token = std::fs::read_to_string(dir.path().join("lab-imap-push-token")).unwrap();
    assert!(push_token.trim().len() >= 16, "a generated push token");
    assert!(
        !said.contains(push_token.trim()),
        "the push token is printed"
    );
    // SIGTERM: a clean stop that stops Dovecot and slapd too.
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}; {}", output());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", imap_port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "Dovecot still answers after serve stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
