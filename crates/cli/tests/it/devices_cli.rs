//! `ucbridge devices …` end to end against an in-process lab: the `[provisioning]` table,
//! the key file, JSON output, idempotence, and that the password never reaches the logs.

use std::process::Output;

use tokio::process::Command;
use ucbridge_lab::{LabConfig, RunningLab};

async fn run(lab: &RunningLab, dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ucbridge"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("UCBRIDGE_AXL_URL", lab.axl_url())
        .env("UCBRIDGE_AXL_USERNAME", "administrator")
        .env("UCBRIDGE_AXL_PASSWORD", "ucbridge-lab")
        .env("UCBRIDGE_AXL_CA_FILE", dir.join("ca.pem"))
        .env("UCBRIDGE_DATA_DIR", dir.join("data"))
        .output()
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn devices_ensure_show_remove() {
    let lab = RunningLab::start(LabConfig {
        users: 10,
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("ca.pem"), lab.ca_certificate_pem().unwrap()).unwrap();
    // A user without a primary extension.
    let out = run(
        &lab,
        dir,
        &[
            "axl",
            "sql",
            "select first 1 userid from enduser u where not exists \
             (select 1 from endusernumplanmap m where m.fkenduser = u.pkid) order by userid",
            "--json",
        ],
    )
    .await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sql json");
    let user = rows[0]["userid"]
        .as_str()
        .expect("a user without extension")
        .to_owned();

    // No key: a clear error before CUCM is touched.
    let out = run(&lab, dir, &["devices", "ensure", &user]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("UCBRIDGE_SECRET_KEY"), "{}", text(&out));

    let key = ucbridge_provision::SecretBox::generate_key_base64();
    std::fs::write(dir.join("secret.key"), &key).unwrap();
    let config = dir.join("ucbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[provisioning]\ndn_range = \"81000-81009\"\nname_prefix = \"wp\"\ndevice_pool = \"HQ\"\n\
             secret_key_file = \"{}\"\n",
            dir.join("secret.key").display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let out = run(
        &lab,
        dir,
        &[
            "--config",
            cfg,
            "-vv",
            "devices",
            "ensure",
            &user,
            "--show-password",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "created");
    assert_eq!(report["directory_number"]["pattern"], "81000");
    let device = report["device_name"].as_str().unwrap().to_owned();
    assert!(device.starts_with("WP"), "{device}");
    let password = report["digest_password"].as_str().unwrap().to_owned();
    assert_eq!(password.len(), 24);
    // Debug logging of the whole run never shows the password (or the AXL bodies).
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(!logs.contains(&password), "password in the logs");

    let out = run(&lab, dir, &["--config", cfg, "devices", "ensure", &user]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("unchanged (nothing to do)"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(&password), "shown only on request");

    let out = run(
        &lab,
        dir,
        &["--config", cfg, "devices", "show", &user, "--json"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown["device"]["devicePool"]
            .as_str()
            .or(shown["device"]["device_pool"].as_str()),
        Some("HQ")
    );
    assert!(shown["problems"].as_array().unwrap().is_empty(), "{shown}");
    assert!(!text(&out).contains(&password));

    let out = run(&lab, dir, &["--config", cfg, "devices", "remove", &user]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("removed: device {device}")),
        "{}",
        text(&out)
    );
    let out = run(&lab, dir, &["--config", cfg, "devices", "remove", &user]).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("nothing to remove"), "{}", text(&out));
    lab.shutdown().await;
}
