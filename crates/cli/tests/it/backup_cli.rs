//! `ucbridge admin backup` / `restore` end to end on SQLite: a round trip keeps users,
//! settings and provisioned devices, and the sealed passwords open with the same key; a
//! restore refuses to replace silently, to replace a database a server uses, and a file
//! that is not a ucbridge database; PostgreSQL is refused with the pg_dump commands.

use std::path::Path;
use std::process::Output;

use ucbridge_auth::{Secret, SecretBox};
use ucbridge_store::{
    DeviceState, ProvisionedDevice, SealedSecret, SecretUpdate, Store, UserRecord,
};

const SETTING: &str = "connection.cucm";

async fn ucbridge(data_dir: &Path, key: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ucbridge"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("UCBRIDGE_DATA_DIR", data_dir)
        .env("UCBRIDGE_SECRET_KEY", key)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn open(dir: &Path) -> Store {
    Store::open(&format!("sqlite://{}", dir.join("ucbridge.db").display()))
        .await
        .unwrap()
}

/// A user, a connection whose password is sealed, and a device with a sealed digest
/// password.
async fn populate(store: &Store, secrets: &SecretBox) {
    store
        .create_local_user(&UserRecord {
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            source: "local".into(),
            ..UserRecord::default()
        })
        .await
        .unwrap();
    let sealed = SealedSecret {
        sealed: secrets.seal(SETTING, &Secret::new("axl-password")),
        key_id: secrets.key_id().to_owned(),
    };
    store
        .put_setting(
            SETTING,
            "{}",
            SecretUpdate::Set(sealed),
            Some("test"),
            false,
        )
        .await
        .unwrap();
    store
        .insert_provisioned_device(&ProvisionedDevice {
            userid: "alice".into(),
            device_name: "UCBALICE".into(),
            state: DeviceState::Active,
            dn_pattern: "80000".into(),
            dn_partition: None,
            dn_created: true,
            digest_password_enc: secrets.seal("alice", &Secret::new("digest-password")),
            key_id: secrets.key_id().to_owned(),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_backup_restores_with_its_secrets_under_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let (live, restored, backup) = (
        dir.path().join("live"),
        dir.path().join("restored"),
        dir.path().join("backup.db"),
    );
    let key = SecretBox::generate_key_base64();
    let secrets = SecretBox::from_base64(&key, "test").unwrap();
    let store = open(&live).await;
    populate(&store, &secrets).await;
    store.close().await;

    let out = ucbridge(&live, &key, &["admin", "backup", backup.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("UCBRIDGE_SECRET_KEY") && err.contains(secrets.key_id()),
        "the key reminder names the key and its id: {err}"
    );
    assert!(!err.contains(&key), "the key itself is never printed");
    // A second backup onto the same file is refused.
    let again = ucbridge(&live, &key, &["admin", "backup", backup.to_str().unwrap()]).await;
    assert!(!again.status.success());

    let out = ucbridge(
        &restored,
        &key,
        &["admin", "restore", backup.to_str().unwrap()],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sealed with the current secret key"),
        "{}",
        stderr(&out)
    );

    let store = open(&restored).await;
    let alice = store.local_user("alice").await.unwrap().expect("alice");
    assert_eq!(alice.record.email.as_deref(), Some("alice@example.com"));
    let setting = store.setting(SETTING).await.unwrap().expect("setting");
    let sealed = setting.secret.expect("sealed password");
    let password = secrets
        .open(SETTING, &sealed.sealed, &sealed.key_id)
        .unwrap();
    assert_eq!(password.expose(), "axl-password");
    let device = store
        .provisioned_device("alice")
        .await
        .unwrap()
        .expect("device");
    assert_eq!(device.state, DeviceState::Active);
    let digest = secrets
        .open("alice", &device.digest_password_enc, &device.key_id)
        .unwrap();
    assert_eq!(digest.expose(), "digest-password");
    // Another key cannot open them: the key is part of the backup's worth.
    let other = SecretBox::from_base64(&SecretBox::generate_key_base64(), "other").unwrap();
    assert!(other.open(SETTING, &sealed.sealed, &sealed.key_id).is_err());
    store.close().await;
}

#[tokio::test]
async fn a_restore_never_replaces_silently_nor_under_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let (live, backup) = (dir.path().join("live"), dir.path().join("backup.db"));
    let key = SecretBox::generate_key_base64();
    let secrets = SecretBox::from_base64(&key, "test").unwrap();
    let store = open(&live).await;
    populate(&store, &secrets).await;
    store.backup_to(&backup).await.unwrap();
    store.delete_setting(SETTING).await.unwrap();
    let path = backup.to_str().unwrap();

    let out = ucbridge(&live, &key, &["admin", "restore", path]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--replace"), "{}", stderr(&out));

    // A node holding a job lease is a running server.
    store
        .acquire_lease("user_sync", "node-a", 60_000)
        .await
        .unwrap()
        .expect("lease");
    let out = ucbridge(&live, &key, &["admin", "restore", path, "--replace"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("node-a"), "{}", stderr(&out));
    assert!(store.setting(SETTING).await.unwrap().is_none(), "untouched");
    store.release_lease("user_sync", "node-a").await.unwrap();
    store.close().await;

    let out = ucbridge(&live, &key, &["admin", "restore", path, "--replace"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("before-restore"), "{}", stderr(&out));
    let store = open(&live).await;
    assert!(store.setting(SETTING).await.unwrap().is_some(), "restored");
    store.close().await;

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, "not a database").unwrap();
    let out = ucbridge(
        &live,
        &key,
        &["admin", "restore", junk.to_str().unwrap(), "--replace"],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a ucbridge database"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn postgres_is_refused_with_the_pg_dump_commands() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://ucb:hunter2@db.example.invalid:5432/ucbridge";
    let out = ucbridge(
        dir.path(),
        &SecretBox::generate_key_base64(),
        &["admin", "backup", "/tmp/u.dump", "--database-url", url],
    )
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("pg_dump --format=custom --file='/tmp/u.dump' 'postgres://ucb@db.example.invalid:5432/ucbridge'"),
        "{err}"
    );
    assert!(err.contains("pg_restore"), "{err}");
    assert!(!err.contains("hunter2"), "no password printed: {err}");
}
