//! `ucbridge ldap export|status` against a real slapd (ucbridge_testkit::slapd).

use std::process::Command;

use ucbridge_store::{Store, UserRecord};
use ucbridge_testkit::slapd::Slapd;

fn ucbridge(config: &std::path::Path, db: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ucbridge"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("UCBRIDGE_DATABASE_URL", db)
        .env(
            "UCBRIDGE_LDAP_BIND_PASSWORD",
            ucbridge_testkit::slapd::ADMIN_PASSWORD,
        )
        .output()
        .expect("ucbridge runs")
}

#[tokio::test]
async fn export_resync_and_status() {
    let Some(slapd) = Slapd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ucbridge.db").display());
    let store = Store::open(&db).await.unwrap();
    for (name, ext) in [("alice", "1001"), ("bob", "*1002")] {
        store
            .create_local_user(&UserRecord {
                username: name.into(),
                last_name: Some(name.into()),
                extension: Some(ext.into()),
                source: "local".into(),
                ..UserRecord::default()
            })
            .await
            .unwrap();
    }
    store.close().await;
    // The password comes from the environment, not the file.
    let config = dir.path().join("ucbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[ldap_export]\nurl = \"{}\"\nbind_dn = \"{}\"\nbase_dn = \"{}\"\nphone_from = \"phone\"\n",
            slapd.url,
            slapd.admin_dn(),
            slapd.people_dn()
        ),
    )
    .unwrap();

    // bob's phone has a `*`, which telephoneNumber (PrintableString) refuses: exit 1, with
    // alice exported and bob's failure reported.
    let out = ucbridge(&config, &db, &["ldap", "export", "--json"]);
    assert!(!out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["counts"]["added"], 1, "{summary}");
    assert_eq!(summary["counts"]["failed"], 1, "{summary}");
    assert_eq!(summary["users"][1]["username"], "bob");
    assert_eq!(summary["users"][1]["action"], "failed");

    // With numeric phones everyone exports; --resync re-reads alice's entry (unchanged).
    std::fs::write(
        &config,
        format!(
            "[ldap_export]\nurl = \"{}\"\nbind_dn = \"{}\"\nbase_dn = \"{}\"\nphone_from = \"numeric_phone\"\n",
            slapd.url,
            slapd.admin_dn(),
            slapd.people_dn()
        ),
    )
    .unwrap();
    let out = ucbridge(&config, &db, &["ldap", "export", "--resync"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("1 added, 0 modified, 0 deleted, 1 unchanged, 0 failed"),
        "{text}"
    );

    let out = ucbridge(&config, &db, &["ldap", "status", "--json"]);
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["entries"], 2, "{status}");
    assert_eq!(status["created_by_ucbridge"], 2, "{status}");
    assert_eq!(status["runs"][0]["mode"], "resynchronize");
    assert_eq!(status["runs"][0]["status"], "ok");
    assert_eq!(status["runs"][1]["status"], "partial");

    // No [ldap_export] table: a clear error.
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let out = ucbridge(&empty, &db, &["ldap", "export"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("[ldap_export]"));
}
