//! The `user_sync` job: directory sync from the snapshot into ucbridge's users, by the
//! rules edited on the admin page, fenced by the job's lease.

use std::sync::Arc;

use ucbridge_store::{JobRunStatus, Store};

use super::{JobContext, JobError, JobFn, JobMode, JobResult, JobSpec};

/// Settings name of the directory sync rules edited on the admin page.
pub const RULES_SETTING: &str = "rules.directory_sync";

/// The rules in force: the admin page's, else the configuration file's seed, else the
/// defaults.
pub async fn sync_rules(store: &Store) -> Result<ucbridge_sync::rules::SyncRules, JobError> {
    match store.setting(RULES_SETTING).await? {
        Some(s) => serde_json::from_str(&s.value).map_err(|source| JobError::StoredSettings {
            what: "rules",
            source,
        }),
        None => Ok(ucbridge_sync::rules::SyncRules::default()),
    }
}

pub(super) fn user_sync_job(default_schedule: Option<String>) -> JobSpec {
    let run: JobFn = Arc::new(|ctx: JobContext| Box::pin(sync_users(ctx)));
    JobSpec {
        name: "user_sync",
        title: "User sync (snapshot -> ucbridge users, by the rules)",
        mode: JobMode::Scheduled,
        needs: &["cucm"],
        restart_on: &[],
        default_schedule,
        run,
        run_once: None,
    }
}

async fn sync_users(ctx: JobContext) -> Result<JobResult, JobError> {
    let compiled = sync_rules(&ctx.store).await?.compile()?;
    let progress = ctx.progress.clone();
    let owner = ucbridge_store::RunOwner::lease(ctx.fence());
    let outcome = ucbridge_sync::directory::run_user_sync_as(
        &ctx.store,
        &compiled,
        ucbridge_sync::SyncOptions::default(),
        &owner,
        move |done, total| progress.report("syncing users", done, Some(total)),
    )
    .await?;
    let summary = outcome.plan.summary();
    for (action, n) in [
        ("create", summary.creates),
        ("update", summary.updates),
        ("disable", summary.disables),
        ("delete", summary.deletes),
    ] {
        metrics::counter!("ucbridge_sync_changes_total", "action" => action).increment(n);
    }
    let status = match outcome.status {
        ucbridge_store::RunStatus::Refused => JobRunStatus::Refused,
        ucbridge_store::RunStatus::Failed => JobRunStatus::Failed,
        _ => JobRunStatus::Succeeded,
    };
    Ok(JobResult {
        status,
        summary: serde_json::json!({
            "sync_run_id": outcome.run_id,
            "status": outcome.status,
            "summary": summary,
            "source_updated_at": outcome.snapshot.source_updated_at,
        }),
        message: outcome.message,
    })
}
