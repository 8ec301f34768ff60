//! `ucbridge sync voicemail` end to end: the binary, a config file with [imap] and
//! [voicemail], CUC from `UCBRIDGE_CUC_*`, the lab and a throwaway Dovecot.

use tokio::process::Command;
use ucbridge_cuc::MailboxRef;
use ucbridge_lab::{CucFolder, CucLabConfig, LabConfig, NewVoicemail, RunningLab, VoiceFormat};
use ucbridge_store::{Store, UserRecord};
use ucbridge_testkit::dovecot::{Dovecot, MASTER_PASSWORD, MASTER_USER};

#[tokio::test]
async fn sync_voicemail_mirrors_mailboxes_and_reports_unmatched_users() {
    let lab = RunningLab::start(LabConfig {
        users: 3,
        seed: 21,
        cuc: CucLabConfig {
            messages_per_user: 2,
            ..CucLabConfig::default()
        },
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), lab.ca_certificate_pem().unwrap()).unwrap();
    // Aliases from the lab's end users (CUC alias = CUCM userid).
    let cuc = {
        let mut config = ucbridge_cuc::CucConfig::new(
            lab.cuc_url(),
            ucbridge_auth::Credentials::basic("administrator", "ucbridge-lab"),
        );
        config.tls.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
        ucbridge_cuc::CucClient::new(config).unwrap()
    };
    let conn_aliases = cuc
        .all_users(&ucbridge_cuc::UserQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.alias)
        .collect::<Vec<_>>();
    let refs: Vec<&str> = conn_aliases.iter().map(String::as_str).collect();
    let Some(dovecot) = Dovecot::start(&refs) else {
        return;
    };
    // Two of the three CUC users have a local user; the third is reported unmatched.
    let db = dir.path().join("data").join("ucbridge.db");
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for alias in &conn_aliases[..2] {
        store
            .create_local_user(&UserRecord {
                username: alias.clone(),
                source: "local".into(),
                ..UserRecord::default()
            })
            .await
            .unwrap();
    }
    store.close().await;
    let config = dir.path().join("ucbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[imap]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nmaster_user = \"{MASTER_USER}\"\n\n[voicemail]\ncuc_id = \"alias\"\nlocal_id = \"username\"\n",
            dovecot.port()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ucbridge"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("UCBRIDGE_CONFIG", &config)
            .env("UCBRIDGE_DATA_DIR", dir.path().join("data"))
            .env("UCBRIDGE_CUC_URL", lab.cuc_url())
            .env("UCBRIDGE_CUC_USERNAME", "administrator")
            .env("UCBRIDGE_CUC_PASSWORD", "ucbridge-lab")
            .env("UCBRIDGE_CUC_CA_FILE", dir.path().join("ca.pem"))
            .env("UCBRIDGE_IMAP_MASTER_PASSWORD", MASTER_PASSWORD);
        cmd.output()
    };
    let out = run(&["sync", "voicemail", "--json"]).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accounts"], 2);
    assert_eq!(summary["succeeded"], 2);
    // 2 inbox + 1 sent + 1 deleted each.
    assert_eq!(summary["appended"], 8);
    assert_eq!(
        summary["unmatched"][0]["cuc_alias"],
        conn_aliases[2].as_str()
    );
    // One account again: nothing to do.
    let out = run(&["sync", "voicemail", "--user", &conn_aliases[0]])
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 added"), "{stdout}");
    // An unknown account is an error naming it.
    let out = run(&["sync", "voicemail", "--user", &conn_aliases[2]])
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(conn_aliases[2].as_str()));
    // Under --json the error is JSON on stdout too.
    let out = run(&["sync", "voicemail", "--user", &conn_aliases[2], "--json"])
        .await
        .unwrap();
    assert!(!out.status.success());
    let error: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains(conn_aliases[2].as_str()), "{error}");
    assert!(
        error["error"]["causes"].as_array().unwrap().len() >= 2,
        "{error}"
    );
    // A recording that cannot become an MP3 (GSM 6.10) still syncs, and the run says so.
    lab.cuc()
        .deliver_voicemail(
            &conn_aliases[1],
            NewVoicemail {
                caller_number: "+14085550100".into(),
                caller_name: "GSM Caller".into(),
                duration_ms: 1500,
                format: VoiceFormat::Gsm610,
                ..NewVoicemail::default()
            },
        )
        .unwrap();
    let out = run(&["sync", "voicemail"]).await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("without MP3"), "{stdout}");
    assert!(
        stderr.contains(&format!("without MP3: {}:", conn_aliases[1]))
            && stderr.contains("GSM 6.10"),
        "{stderr}"
    );
    // The first account's mailbox emptied on CUC (as a missing delegate role shows it):
    // refused, non-zero exit, nothing removed; --confirm-removals lets it through.
    let emptied = conn_aliases[0].as_str();
    let oid = lab.cuc().object_id(emptied).unwrap();
    for folder in [CucFolder::Inbox, CucFolder::Sent, CucFolder::Deleted] {
        for m in lab.cuc().messages(emptied, folder).unwrap() {
            cuc.delete_message(&MailboxRef::User(oid.clone()), &m.id, Some(true))
                .await
                .unwrap();
        }
    }
    let out = run(&["sync", "voicemail", "--json"]).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the guard fails the command");
    assert!(
        stderr.contains("--confirm-removals") && stderr.contains(emptied),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["removals_refused"][0], emptied);
    assert_eq!(
        (
            summary["succeeded"].as_u64(),
            summary["imap_changes"].as_u64()
        ),
        (Some(1), Some(0))
    );
    let out = run(&["sync", "voicemail", "--user", emptied])
        .await
        .unwrap();
    assert!(!out.status.success(), "refused for one account too");
    let out = run(&["sync", "voicemail", "--user", emptied, "--confirm-removals"])
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("4 removed"), "{stdout}");
    // Without the master password the command says what is missing.
    let out = Command::new(env!("CARGO_BIN_EXE_ucbridge"))
        .args(["sync", "voicemail"])
        .env_clear()
        .env("UCBRIDGE_CONFIG", &config)
        .env("UCBRIDGE_DATA_DIR", dir.path().join("data"))
        .env("UCBRIDGE_CUC_URL", lab.cuc_url())
        .env("UCBRIDGE_CUC_USERNAME", "administrator")
        .env("UCBRIDGE_CUC_PASSWORD", "ucbridge-lab")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UCBRIDGE_IMAP_MASTER_PASSWORD"));
    let out = Command::new(env!("CARGO_BIN_EXE_ucbridge"))
        .args(["sync", "voicemail", "--json"])
        .env_clear()
        .env("UCBRIDGE_CONFIG", &config)
        .env("UCBRIDGE_DATA_DIR", dir.path().join("data"))
        .env("UCBRIDGE_CUC_URL", lab.cuc_url())
        .env("UCBRIDGE_CUC_USERNAME", "administrator")
        .env("UCBRIDGE_CUC_PASSWORD", "ucbridge-lab")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("UCBRIDGE_IMAP_MASTER_PASSWORD"),
        "{error}"
    );
}
