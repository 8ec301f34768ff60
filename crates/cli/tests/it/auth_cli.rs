//! `ucbridge auth check` (exit codes against the lab) and `ucbridge auth checkpassword` as
//! the passdb of a real Dovecot: IMAP LOGIN with the user's CUCM password, asked of a
//! running ucbridge server backed by the lab.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use ucbridge_auth::SecretBox;
use ucbridge_axl::{AxlClient, AxlConfig, Secret};
use ucbridge_lab::{CredentialKind, LabConfig, RunningLab};
use ucbridge_server::connections::{self, ConnectionSettings, ConnectionUpdate};
use ucbridge_server::{RunningServer, Server, ServerConfig};
use ucbridge_store::{LocalUser, Store};
use ucbridge_testkit::dovecot::{Checkpassword, Dovecot};

const PASSWORD: &str = "ucbridge-user";
const TOKEN: &str = "passdb-token-0123456789abcdef";

struct Setup {
    lab: RunningLab,
    store: Store,
    db_url: String,
    users: Vec<LocalUser>,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let lab = RunningLab::start(LabConfig {
        users: 8,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("u.db").display());
    let store = Store::open(&db_url).await.unwrap();
    let mut axl = AxlConfig::new(lab.axl_url(), "administrator", Secret::new("ucbridge-lab"));
    axl.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    let client = AxlClient::connect(axl).await.unwrap();
    ucbridge_sync::SnapshotKeeper::new(client, store.clone(), Default::default())
        .full_refresh(|_| {})
        .await
        .unwrap();
    let rules = ucbridge_sync::SyncRules::default().compile().unwrap();
    ucbridge_sync::run_user_sync(&store, &rules, Default::default(), |_, _| {})
        .await
        .unwrap();
    let users = store.local_users().await.unwrap();
    std::fs::write(dir.path().join("ca.pem"), lab.ca_certificate_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("passdb.token"), format!("{TOKEN}\n")).unwrap();
    Setup {
        lab,
        store,
        db_url,
        users,
        dir,
    }
}

/// A config file with [axl] pointing at `url` and a fast [signin].
fn config_file(s: &Setup, url: &str) -> PathBuf {
    let path = s.dir.path().join(format!("ucbridge-{}.toml", url.len()));
    std::fs::write(
        &path,
        format!(
            "[axl]\nurl = \"{url}\"\nusername = \"administrator\"\npassword = \"ucbridge-lab\"\n\
             ca_file = \"{}\"\n\n[signin]\nrefusal_delay = \"10ms\"\n",
            s.dir.path().join("ca.pem").display()
        ),
    )
    .unwrap();
    path
}

/// `ucbridge auth check USER` with `stdin`; (exit code, stdout, stderr).
fn auth_check(s: &Setup, config: &Path, user: &str, stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ucbridge"))
        .args(["auth", "check", user])
        .env("UCBRIDGE_CONFIG", config)
        .env("UCBRIDGE_DATABASE_URL", &s.db_url)
        .env_remove("UCBRIDGE_AXL_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("https://127.0.0.1:{}/axl/", l.local_addr().unwrap().port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_check_says_the_result_in_its_exit_code() {
    let s = setup().await;
    let config = config_file(&s, &s.lab.axl_url());
    let user = &s.users[0].record;
    let (code, out, _) = auth_check(
        &s,
        &config,
        &user.username,
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&user.username), "{out}");
    // By extension.
    let ext = s
        .users
        .iter()
        .find_map(|u| u.record.extension.clone())
        .unwrap();
    assert_eq!(auth_check(&s, &config, &ext, PASSWORD.as_bytes()).0, 0);

    let locked = &s.users[1].record.username;
    s.lab
        .credentials()
        .set_locked_by_administrator(locked, CredentialKind::Password, true)
        .unwrap();
    let mut refusals = Vec::new();
    for (name, password) in [
        (user.username.as_str(), "wrong\n"),
        (locked.as_str(), "ucbridge-user\n"),
        ("nobody-here", "ucbridge-user\n"),
    ] {
        let (code, out, err) = auth_check(&s, &config, name, password.as_bytes());
        assert_eq!(code, 3, "{name}: {out} {err}");
        assert!(
            !err.contains("ucbridge-user") && !err.contains("wrong"),
            "{err}"
        );
        refusals.push(err);
    }
    assert!(refusals.iter().all(|e| e == &refusals[0]), "{refusals:?}");

    // Invalid input: too long, binary, not UTF-8, empty.
    for bad in [
        vec![b'x'; 300],
        b"a\x01b\n".to_vec(),
        vec![0xff, 0xfe],
        b"\n".to_vec(),
    ] {
        assert_eq!(auth_check(&s, &config, &user.username, &bad).0, 6);
    }
    // CUCM unreachable: refused as unavailable (the default: no grace).
    let down = config_file(&s, &closed_port_url());
    let (code, _, err) = auth_check(&s, &down, &user.username, PASSWORD.as_bytes());
    assert_eq!(code, 5, "{err}");

    // The audit log has the reasons, never a password.
    let audit = s.store.audit_log(None, 1000).await.unwrap();
    let refused: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "sign_in_refused")
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(audit.iter().all(|e| !format!("{e:?}").contains(PASSWORD)));
}

async fn save_cucm(s: &Setup, secrets: &SecretBox, url: String) {
    connections::save(
        &s.store,
        secrets,
        "cucm",
        ConnectionUpdate {
            settings: ConnectionSettings {
                url,
                username: "administrator".into(),
                ca_pem: s.lab.ca_certificate_pem().map(str::to_owned),
                ..ConnectionSettings::default()
            },
            password: Some("ucbridge-lab".into()),
        },
        None,
        false,
    )
    .await
    .unwrap();
}

async fn server(s: &Setup, secrets: &SecretBox, signin: Value) -> RunningServer {
    let mut signin: ucbridge_signin::SignInFileConfig = serde_json::from_value(signin).unwrap();
    signin.passdb_token_file = Some(s.dir.path().join("passdb.token"));
    let config = ServerConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        run_jobs: false,
        signin,
        ..ServerConfig::default()
    };
    Server::start(s.store.clone(), secrets.clone(), config)
        .await
        .unwrap()
}

fn dovecot_for(s: &Setup, server: &RunningServer) -> Option<Dovecot> {
    Dovecot::builder(&[])
        .checkpassword(Some(Checkpassword {
            program: PathBuf::from(env!("CARGO_BIN_EXE_ucbridge")),
            args: vec!["auth".into(), "checkpassword".into()],
            env: vec![
                ("UCBRIDGE_PASSDB_SERVER".into(), server.url()),
                (
                    "UCBRIDGE_PASSDB_TOKEN_FILE".into(),
                    s.dir.path().join("passdb.token").display().to_string(),
                ),
            ],
        }))
        .start()
}

/// IMAP LOGIN (and SELECT INBOX on success); `Ok(())` or the server's refusal text.
async fn imap_login(port: u16, user: &str, password: &str) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap().unwrap();
    match client.login(user, password).await {
        Ok(mut session) => {
            session.select("INBOX").await.unwrap();
            let _ = session.logout().await;
            Ok(())
        }
        Err((e, _)) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_imap_login_asks_ucbridge() {
    let s = setup().await;
    let secrets = SecretBox::from_base64(&SecretBox::generate_key_base64(), "test").unwrap();
    save_cucm(&s, &secrets, s.lab.axl_url()).await;
    let srv = server(&s, &secrets, json!({"refusal_delay": "10ms"})).await;
    let Some(dovecot) = dovecot_for(&s, &srv) else {
        return;
    };
    let user = s
        .users
        .iter()
        .find(|u| u.record.extension.is_some())
        .unwrap()
        .record
        .clone();
    imap_login(dovecot.port(), &user.username, PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", dovecot.log()));
    // By extension: Dovecot's user becomes the ucbridge username (the mailbox).
    let other = s
        .users
        .iter()
        .find(|u| u.record.extension.is_some() && u.record.username != user.username)
        .unwrap()
        .record
        .clone();
    imap_login(
        dovecot.port(),
        other.extension.as_deref().unwrap(),
        PASSWORD,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", dovecot.log()));
    assert!(dovecot.mail_dir().join(&other.username).exists());

    let mut rest = s
        .users
        .iter()
        .filter(|u| u.record.username != user.username && u.record.username != other.username);
    let locked = rest.next().unwrap();
    let never_signed_in = rest.next().unwrap().record.username.clone();
    s.lab
        .credentials()
        .set_locked_by_administrator(&locked.record.username, CredentialKind::Password, true)
        .unwrap();
    for (name, password) in [
        (user.username.as_str(), "wrong-password"),
        ("nobody-here", PASSWORD),
        (locked.record.username.as_str(), PASSWORD),
    ] {
        let e = imap_login(dovecot.port(), name, password)
            .await
            .unwrap_err();
        assert!(
            e.contains("AUTHENTICATIONFAILED") && !e.contains("UNAVAILABLE"),
            "{name}: {e}"
        );
    }
    // CUCM down, no grace (the default): a user in the cache (5 minutes) still logs in;
    // anyone else gets a temporary failure.
    let down = closed_port_url();
    save_cucm(&s, &secrets, down.clone()).await;
    imap_login(dovecot.port(), &other.username, PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("cached: {e}"));
    let e = imap_login(dovecot.port(), &never_signed_in, PASSWORD)
        .await
        .unwrap_err();
    assert!(e.contains("UNAVAILABLE") || e.contains("Temporary"), "{e}");
    srv.shutdown().await;
    drop(dovecot);

    // With a grace: a password CUCM accepted earlier still opens the mailbox.
    save_cucm(&s, &secrets, s.lab.axl_url()).await;
    let srv = server(
        &s,
        &secrets,
        json!({"refusal_delay": "10ms", "cache_ttl": "0s", "unavailable_grace": "1h"}),
    )
    .await;
    let Some(dovecot) = dovecot_for(&s, &srv) else {
        return;
    };
    imap_login(dovecot.port(), &other.username, PASSWORD)
        .await
        .unwrap();
    save_cucm(&s, &secrets, down).await;
    imap_login(dovecot.port(), &other.username, PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("within grace: {e}"));
    let e = imap_login(dovecot.port(), &other.username, "wrong")
        .await
        .unwrap_err();
    assert!(e.contains("UNAVAILABLE") || e.contains("Temporary"), "{e}");
    srv.shutdown().await;
}
