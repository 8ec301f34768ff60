//! The `source:NAME` jobs: one continuous job per `[sources.NAME]` LDAP directory
//! (docs/directory-sources.md). Like the CUCM `snapshot` job, each runs under its own
//! lease, so one node at a time keeps a source fresh (full refresh, then syncrepl or change
//! polling, and a full compare every `full_compare_every_secs`); its refresh claims carry
//! the node and the lease's fencing token. "Run now" is one full refresh. A further CUCM
//! cluster (`kind = "cucm"`) runs the snapshot keeper into its own snapshot the same way.

use std::sync::Arc;
use std::time::Duration;

use ucbridge_axl::AxlClient;
use ucbridge_store::SourceKind;
use ucbridge_store::{JobRunStatus, Store, StoreError};
use ucbridge_sync::{
    CucmSourceSettings, LdapSource, LdapSourceError, LdapSourceSettings, SnapshotKeeper,
    SourceConfig, SyncError,
};

use super::{JobContext, JobError, JobFn, JobMode, JobResult, JobSpec};

/// The job (and lease) name of a source.
pub fn source_job_name(source: &str) -> String {
    format!("source:{source}")
}

/// How long a source whose settings cannot be used waits before the scheduler tries again.
const RETRY_BROKEN_SETTINGS: Duration = Duration::from_secs(30);
/// Per-entry problems kept in a run's summary (the source's state keeps the first 100).
const MAX_SUMMARY_PROBLEMS: usize = 20;

/// One job per configured source. A job's name lives as long as the process (the
/// scheduler's names are `&'static str`); there is one per `[sources.NAME]` table.
pub(super) fn source_jobs(sources: &[(String, SourceConfig)]) -> Vec<JobSpec> {
    sources
        .iter()
        .map(|(name, config)| match config {
            SourceConfig::Ldap(settings) => ldap_source_job(name, settings),
            SourceConfig::Cucm(settings) => cucm_source_job(name, settings),
        })
        .collect()
}

fn ldap_source_job(name: &str, settings: &LdapSourceSettings) -> JobSpec {
    let job: &'static str = Box::leak(source_job_name(name).into_boxed_str());
    let title: &'static str = Box::leak(
        format!("LDAP source {name} (full refresh, then syncrepl or change polling)")
            .into_boxed_str(),
    );
    let source = Arc::new((name.to_owned(), settings.clone()));
    let keep_source = source.clone();
    let run: JobFn = Arc::new(move |ctx: JobContext| Box::pin(keep(ctx, keep_source.clone())));
    let once: JobFn = Arc::new(move |ctx: JobContext| Box::pin(refresh(ctx, source.clone())));
    JobSpec {
        name: job,
        title,
        mode: JobMode::Continuous,
        needs: &[],
        // The settings come from the configuration file: a change takes a restart.
        restart_on: &[],
        default_schedule: None,
        run,
        run_once: Some(once),
    }
}

/// Check every source's settings and register it (kind `ldap` or `cucm`), so a node refuses to start
/// on a source that cannot work and the API lists each source before its first refresh.
/// No connection is made. The error names the source, never a password.
pub async fn register_sources(
    store: &Store,
    sources: &[(String, SourceConfig)],
) -> Result<(), String> {
    for (name, config) in sources {
        register_source(store, name, config).await?;
    }
    Ok(())
}

/// The start-time check of [`register_sources`] for every source, against a throwaway
/// database (`ucbridge config check`): each failing source's problem, as
/// `("sources.NAME", reason)`. The real database is not touched; nothing is connected.
pub async fn check_sources(
    sources: &[(String, SourceConfig)],
) -> Result<Vec<(String, String)>, StoreError> {
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let dir = tempfile::tempdir().map_err(|source| StoreError::CreateDir {
        path: std::env::temp_dir().display().to_string(),
        source,
    })?;
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("check.db").display()
    ))
    .await?;
    let mut problems = Vec::new();
    for (name, config) in sources {
        if let Err(e) = register_source(&store, name, config).await {
            let prefix = format!("[sources.{name}]: ");
            let why = e.strip_prefix(&prefix).unwrap_or(&e).to_owned();
            problems.push((format!("sources.{name}"), why));
        }
    }
    store.close().await;
    Ok(problems)
}

async fn register_source(store: &Store, name: &str, config: &SourceConfig) -> Result<(), String> {
    match config {
        SourceConfig::Ldap(settings) => LdapSource::new(name, settings.clone(), store.clone())
            .await
            .map(|_| ())
            .map_err(|e| format!("[sources.{name}]: {e}")),
        SourceConfig::Cucm(settings) => register_cucm(store, name, settings)
            .await
            .map_err(|e| format!("[sources.{name}]: {e}")),
    }
}

/// The AXL client of cluster `source`: the stored `cucm` connection for the default
/// cluster, the `[sources.NAME] kind = "cucm"` table's settings for another. Used by the
/// device job and sign-in's WebPhone, so a user's device goes to the user's cluster.
pub async fn cluster_client(
    store: &Store,
    secrets: &ucbridge_auth::SecretBox,
    sources: &[(String, SourceConfig)],
    source: &str,
) -> Result<AxlClient, JobError> {
    if source == ucbridge_store::SOURCE_CUCM {
        return Ok(crate::connections::axl_client(store, secrets).await?);
    }
    let settings = sources.iter().find_map(|(name, config)| match config {
        SourceConfig::Cucm(settings) if name == source => Some(settings),
        _ => None,
    });
    let Some(settings) = settings else {
        return Err(crate::connections::ConnectionError::Remote(format!(
            "cluster {source} is not configured (no [sources.{source}] table of kind \"cucm\")"
        ))
        .into());
    };
    Ok(cluster_axl_client(source, settings).await?)
}

/// The AXL client of the CUCM cluster `[sources.NAME]` (its version discovered when not
/// set): the one way a cluster's client is built, for its keeper, the device job and the
/// CLI alike.
pub async fn cluster_axl_client(
    name: &str,
    settings: &CucmSourceSettings,
) -> Result<AxlClient, SyncError> {
    let config = settings.axl_config(name)?;
    Ok(AxlClient::connect(config).await?)
}

async fn source(
    ctx: &JobContext,
    config: &(String, LdapSourceSettings),
) -> Result<LdapSource, JobError> {
    let (name, settings) = config;
    let source = LdapSource::new(name, settings.clone(), ctx.store.clone())
        .await
        .map_err(SyncError::from)?;
    Ok(source.with_lease(&ctx.node, ctx.lease_token))
}

/// The continuous job: the source's keeper loop until the lease is lost or the node stops.
/// Failed passes are retried by the loop and shown in the source's state.
async fn keep(
    ctx: JobContext,
    config: Arc<(String, LdapSourceSettings)>,
) -> Result<JobResult, JobError> {
    let source = match source(&ctx, &config).await {
        Ok(s) => s,
        Err(e) => {
            // E.g. a bind_password_file that went away: not every scheduler tick.
            tokio::select! {
                _ = ctx.cancel.cancelled() => {}
                _ = tokio::time::sleep(RETRY_BROKEN_SETTINGS) => {}
            }
            return Err(e);
        }
    };
    source.run(ctx.cancel.cancelled_owned()).await;
    Ok(JobResult::succeeded(serde_json::Value::Null))
}

/// "Run now": one full refresh; refused (not failed) while another refresh holds the claim.
async fn refresh(
    ctx: JobContext,
    config: Arc<(String, LdapSourceSettings)>,
) -> Result<JobResult, JobError> {
    let source = source(&ctx, &config).await?;
    ctx.progress.report("reading the directory", 0, None);
    match source.full_refresh().await {
        Ok(report) => Ok(JobResult::succeeded(serde_json::json!({
            "source": config.0,
            "swap": report.swap,
            "entries_read": report.entries_read,
            "problem_count": report.problem_count,
            "problems": report.problems.iter().take(MAX_SUMMARY_PROBLEMS).collect::<Vec<_>>(),
            "duration_ms": report.duration_ms,
        }))),
        Err(LdapSourceError::Store(StoreError::Conflict(why))) => Ok(JobResult {
            status: JobRunStatus::Refused,
            summary: serde_json::Value::Null,
            message: Some(why),
        }),
        Err(e) => Err(SyncError::from(e).into()),
    }
}

/// Check a cluster's settings (no connection) and register it with its cluster name.
async fn register_cucm(
    store: &Store,
    name: &str,
    settings: &CucmSourceSettings,
) -> Result<(), SyncError> {
    settings.axl_config(name)?;
    let cluster = settings.cluster.as_deref().unwrap_or(name);
    store
        .register_source(name, SourceKind::Cucm, Some(cluster))
        .await?;
    Ok(())
}

fn cucm_source_job(name: &str, settings: &CucmSourceSettings) -> JobSpec {
    let job: &'static str = Box::leak(source_job_name(name).into_boxed_str());
    let title: &'static str = Box::leak(
        format!("CUCM cluster {name} (full refresh, then listChange polling)").into_boxed_str(),
    );
    let source = Arc::new((name.to_owned(), settings.clone()));
    let keep_source = source.clone();
    let run: JobFn =
        Arc::new(move |ctx: JobContext| Box::pin(keep_cluster(ctx, keep_source.clone())));
    let once: JobFn =
        Arc::new(move |ctx: JobContext| Box::pin(refresh_cluster(ctx, source.clone())));
    JobSpec {
        name: job,
        title,
        mode: JobMode::Continuous,
        needs: &[],
        restart_on: &[],
        default_schedule: None,
        run,
        run_once: Some(once),
    }
}

async fn cluster_keeper(
    ctx: &JobContext,
    config: &(String, CucmSourceSettings),
) -> Result<SnapshotKeeper, JobError> {
    let (name, settings) = config;
    let keeper = SnapshotKeeper::for_source(
        cluster_axl_client(name, settings).await?,
        ctx.store.clone(),
        settings.snapshot_options(),
        name,
        settings.cluster.as_deref(),
    )
    .await?;
    Ok(keeper.with_lease(&ctx.node, ctx.lease_token))
}

/// The continuous job of a cluster: the snapshot keeper's loop until the lease is lost or
/// the node stops.
async fn keep_cluster(
    ctx: JobContext,
    config: Arc<(String, CucmSourceSettings)>,
) -> Result<JobResult, JobError> {
    let keeper = match cluster_keeper(&ctx, &config).await {
        Ok(k) => k,
        Err(e) => {
            // E.g. CUCM unreachable while discovering its version: not every tick.
            tokio::select! {
                _ = ctx.cancel.cancelled() => {}
                _ = tokio::time::sleep(RETRY_BROKEN_SETTINGS) => {}
            }
            return Err(e);
        }
    };
    keeper.run(ctx.cancel.cancelled_owned()).await;
    Ok(JobResult::succeeded(serde_json::Value::Null))
}

/// "Run now" of a cluster: one full refresh; refused while another refresh holds the claim.
async fn refresh_cluster(
    ctx: JobContext,
    config: Arc<(String, CucmSourceSettings)>,
) -> Result<JobResult, JobError> {
    let keeper = cluster_keeper(&ctx, &config).await?;
    ctx.progress.report("reading the cluster", 0, None);
    match keeper.full_refresh(|_| {}).await {
        Ok(report) => Ok(JobResult::succeeded(serde_json::json!({
            "source": config.0,
            "swap": report.swap,
            "pages": report.pages,
            "duration_ms": report.duration_ms,
        }))),
        Err(SyncError::Store(StoreError::Conflict(why))) => Ok(JobResult {
            status: JobRunStatus::Refused,
            summary: serde_json::Value::Null,
            message: Some(why),
        }),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(table: &str) -> (String, SourceConfig) {
        let settings: CucmSourceSettings = toml::from_str(table).expect("a cucm table");
        ("east-2".to_owned(), SourceConfig::Cucm(settings))
    }

    #[tokio::test]
    async fn a_cluster_is_checked_registered_and_gets_its_job() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&db).await.expect("store");
        let no_password = cluster("url = \"https://east:8443/axl/\"\nusername = \"axl\"\n");
        let err = register_sources(&store, &[no_password])
            .await
            .expect_err("no password");
        assert!(err.contains("[sources.east-2]"), "{err}");
        assert!(err.contains("UCBRIDGE_SOURCE_EAST_2_PASSWORD"), "{err}");
        assert!(store
            .directory_source("east-2")
            .await
            .expect("read")
            .is_none());

        let good = cluster(
            "url = \"https://east:8443/axl/\"\nusername = \"axl\"\npassword = \"pw\"\n\
             cluster = \"dc-east\"\n",
        );
        register_sources(&store, std::slice::from_ref(&good))
            .await
            .expect("registered");
        let registered = store
            .directory_source("east-2")
            .await
            .expect("read")
            .expect("registered");
        assert_eq!(registered.kind, SourceKind::Cucm);
        assert_eq!(registered.cluster.as_deref(), Some("dc-east"));
        let jobs = source_jobs(&[good]);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].name, "source:east-2");
        assert!(jobs[0].run_once.is_some());
    }
}
