//! `ucbridge admin backup FILE` and `ucbridge admin restore FILE`: a consistent copy of the
//! SQLite database (taken beside a running server) and its way back (only with no server
//! running; an existing database only with `--replace`, and kept beside the new one).
//! PostgreSQL is refused with the `pg_dump`/`pg_restore` commands to use instead. Both
//! remind that the secret key is not in the backup: without it the stored connection and
//! digest passwords cannot be opened.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use ucbridge_auth::{SecretBox, SecretKeyError, SECRET_KEY_ENV, SECRET_KEY_FILE_ENV};
use ucbridge_store::backup::{self, BackupError};
use ucbridge_store::Store;

use crate::config::{self, FileConfig};
use crate::output::outln;

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Copy the SQLite database, consistent as of one moment, into the new FILE (the
    /// server may keep running). PostgreSQL: prints the pg_dump command to use.
    Backup { file: PathBuf },
    /// Restore the database from FILE (a `backup`); stop every server first. An existing
    /// database is replaced only with --replace and kept as …before-restore-TIME.
    Restore {
        file: PathBuf,
        /// Replace the existing database.
        #[arg(long)]
        replace: bool,
    },
}

pub async fn run(command: DataCommand, flag: Option<String>, file: &FileConfig) -> Result<()> {
    let url = config::database_url(flag, file);
    let (target, verb) = match &command {
        DataCommand::Backup { file } => (file, "back up"),
        DataCommand::Restore { file, .. } => (file, "restore"),
    };
    if url.starts_with("postgres") {
        eprintln!(
            "To {verb} a PostgreSQL database use its own tools (password in PGPASSWORD):\n{}",
            backup::postgres_commands(&url, target)
        );
        return Err(BackupError::Postgres.into());
    }
    let Some(path) = backup::sqlite_path(&url) else {
        return Err(BackupError::NotSqliteFile(url).into());
    };
    match command {
        DataCommand::Backup { file: to } => run_backup(&path, &to, file).await,
        DataCommand::Restore {
            file: from,
            replace,
        } => run_restore(&from, &path, replace, file).await,
    }
}

async fn run_backup(db: &Path, to: &Path, file: &FileConfig) -> Result<()> {
    if !db.exists() {
        bail!("no database at {} (nothing to back up)", db.display());
    }
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .with_context(|| format!("cannot open the database {}", db.display()))?;
    let info = store.backup_to(to).await;
    store.close().await;
    let info = info.with_context(|| format!("cannot back up to {}", to.display()))?;
    outln!(
        "backed up {} to {} ({} bytes, schema {})",
        db.display(),
        to.display(),
        info.bytes,
        info.schema_version
    )?;
    eprintln!("{}", key_reminder(file));
    Ok(())
}

async fn run_restore(from: &Path, db: &Path, replace: bool, file: &FileConfig) -> Result<()> {
    let restored = backup::restore_sqlite(from, db, replace)
        .await
        .with_context(|| format!("cannot restore {}", from.display()))?;
    outln!(
        "restored {} into {} (schema {})",
        from.display(),
        db.display(),
        restored.info.schema_version
    )?;
    if let Some(previous) = &restored.previous {
        eprintln!("The replaced database is kept as {}.", previous.display());
    }
    let store = Store::open(&format!("sqlite://{}", db.display())).await?;
    let check = key_check(&store, file).await;
    store.close().await;
    eprintln!("{}", check?);
    Ok(())
}

/// Where this configuration's secret key lives (never the key itself).
fn key_source(file: &FileConfig) -> String {
    if std::env::var_os(SECRET_KEY_ENV).is_some() {
        return format!("the environment variable {SECRET_KEY_ENV}");
    }
    if let Some(p) = std::env::var_os(SECRET_KEY_FILE_ENV) {
        return format!(
            "the file {} ({SECRET_KEY_FILE_ENV})",
            Path::new(&p).display()
        );
    }
    match file
        .server
        .as_ref()
        .and_then(|s| s.secret_key_file.as_ref())
    {
        Some(p) => format!("the file {} ([server] secret_key_file)", p.display()),
        None => format!(
            "the file {}",
            config::data_dir().join("secret.key").display()
        ),
    }
}

/// This configuration's secret key, without creating one.
fn current_key(file: &FileConfig) -> Result<Option<SecretBox>> {
    let configured = file.server.as_ref().and_then(|s| s.secret_key_file.clone());
    match SecretBox::from_env_or_file(configured.as_deref()) {
        Ok(b) => Ok(Some(b)),
        Err(SecretKeyError::Missing) => {
            let path = config::data_dir().join("secret.key");
            if path.exists() {
                Ok(Some(SecretBox::from_file(&path)?))
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn key_reminder(file: &FileConfig) -> String {
    let id = match current_key(file) {
        Ok(Some(k)) => format!(", key id {}", k.key_id()),
        _ => String::new(),
    };
    format!(
        "The backup holds passwords sealed with the secret key, not the key: keep a copy of \
         the key ({}{id}) with it; without that key a restored database cannot open its \
         connection and digest passwords.",
        key_source(file)
    )
}

/// Whether the restored secrets were sealed with the key this configuration has.
async fn key_check(store: &Store, file: &FileConfig) -> Result<String> {
    let sealed_with: Vec<String> = store
        .settings("")
        .await?
        .into_iter()
        .filter_map(|s| s.secret.map(|s| s.key_id))
        .collect();
    if sealed_with.is_empty() {
        return Ok("The restored database holds no sealed connection password.".into());
    }
    let current = current_key(file)?;
    let source = key_source(file);
    Ok(match current {
        Some(k) if sealed_with.iter().all(|id| id == k.key_id()) => format!(
            "Its stored passwords are sealed with the current secret key ({source}, key id {}).",
            k.key_id()
        ),
        Some(k) => format!(
            "warning: stored passwords are sealed with key id {}, but {source} has key id {}: \
             put the key from the backup's installation back, or re-enter the passwords.",
            sealed_with[0],
            k.key_id()
        ),
        None => format!(
            "warning: no secret key yet ({source}): put the key from the backup's \
             installation there (key id {}) before `serve`, or the stored passwords cannot \
             be opened.",
            sealed_with[0]
        ),
    })
}
