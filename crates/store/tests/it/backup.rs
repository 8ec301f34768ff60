//! `Store::backup_to` and `backup::restore_sqlite`: a consistent copy that opens as a
//! ucbridge database with its rows, a restore that checks what it is given and moves the
//! old database (and its WAL) aside, and PostgreSQL refused (pg_dump is the way).

use ucbridge_store::backup::{self, BackupError};
use ucbridge_store::*;

fn user(name: &str) -> UserRecord {
    UserRecord {
        username: name.into(),
        source: "local".into(),
        ..UserRecord::default()
    }
}

#[tokio::test]
async fn sqlite_backup_and_restore_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let store = Store::open(&format!("sqlite://{}", live.display()))
        .await
        .unwrap();
    store.create_local_user(&user("alice")).await.unwrap();
    let copy = dir.path().join("copy.db");
    let info = store.backup_to(&copy).await.unwrap();
    assert!(info.schema_version >= 12 && info.bytes > 0, "{info:?}");
    assert!(matches!(
        store.backup_to(&copy).await,
        Err(BackupError::TargetExists(_))
    ));
    // Changed after the backup: the restore brings the earlier state back.
    store.create_local_user(&user("bob")).await.unwrap();
    assert_eq!(backup::inspect_backup(&copy).await.unwrap(), info);

    let err = backup::restore_sqlite(&copy, &live, false)
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::WouldReplace { .. }), "{err}");
    store.close().await;
    let restored = backup::restore_sqlite(&copy, &live, true).await.unwrap();
    let previous = restored.previous.expect("the old database is kept");
    assert!(previous.exists());
    let store = Store::open(&format!("sqlite://{}", live.display()))
        .await
        .unwrap();
    assert!(store.local_user("alice").await.unwrap().is_some());
    assert!(
        store.local_user("bob").await.unwrap().is_none(),
        "the backup's state"
    );
    store.close().await;
    let kept = Store::open(&format!("sqlite://{}", previous.display()))
        .await
        .unwrap();
    assert!(
        kept.local_user("bob").await.unwrap().is_some(),
        "nothing lost"
    );
    kept.close().await;

    let empty = dir.path().join("empty.db");
    sqlx_free_sqlite_file(&empty);
    let err = backup::inspect_backup(&empty).await.unwrap_err();
    assert!(matches!(err, BackupError::NotUcbridge { .. }), "{err}");
}

/// A valid SQLite file without ucbridge's tables (an empty file is one).
fn sqlx_free_sqlite_file(path: &std::path::Path) {
    std::fs::write(path, b"").unwrap();
}

#[tokio::test]
async fn postgres_backup_is_refused() {
    let Some(url) = ucbridge_testkit::postgres_database() else {
        eprintln!("skipped: no PostgreSQL");
        return;
    };
    let store = Store::open(&url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = store.backup_to(&dir.path().join("b.db")).await.unwrap_err();
    assert!(matches!(err, BackupError::Postgres), "{err}");
    assert!(err.to_string().contains("pg_dump"), "{err}");
    assert!(!dir.path().join("b.db").exists());
}
