//! The `snapshot` job: the snapshot keeper of CUCM's end users, continuous (full refresh,
//! then change polling); "run now" is one full refresh.

use std::sync::Arc;

use ucbridge_store::JobRunStatus;

use super::{JobContext, JobError, JobFn, JobMode, JobResult, JobSpec};
use crate::connections;

pub(super) fn snapshot_job(options: ucbridge_sync::SnapshotOptions) -> JobSpec {
    let opts = options.clone();
    let run: JobFn = Arc::new(move |ctx: JobContext| Box::pin(keep(ctx, opts.clone())));
    let once: JobFn = Arc::new(move |ctx: JobContext| Box::pin(refresh(ctx, options.clone())));
    JobSpec {
        name: "snapshot",
        title: "CUCM snapshot (full refresh, then change polling)",
        mode: JobMode::Continuous,
        needs: &["cucm"],
        restart_on: &[],
        default_schedule: None,
        run,
        run_once: Some(once),
    }
}

async fn keeper(
    ctx: &JobContext,
    options: ucbridge_sync::SnapshotOptions,
) -> Result<ucbridge_sync::SnapshotKeeper, JobError> {
    let client = connections::axl_client(&ctx.store, &ctx.secrets).await?;
    Ok(
        ucbridge_sync::SnapshotKeeper::new(client, ctx.store.clone(), options)
            .with_lease(&ctx.node, ctx.lease_token),
    )
}

/// The continuous job: the keeper's loop until the lease is lost or the node stops.
async fn keep(
    ctx: JobContext,
    options: ucbridge_sync::SnapshotOptions,
) -> Result<JobResult, JobError> {
    keeper(&ctx, options)
        .await?
        .run(ctx.cancel.cancelled_owned())
        .await;
    Ok(JobResult::succeeded(serde_json::Value::Null))
}

/// "Run now": one full refresh; refused (not failed) while another refresh holds the claim.
async fn refresh(
    ctx: JobContext,
    options: ucbridge_sync::SnapshotOptions,
) -> Result<JobResult, JobError> {
    let keeper = keeper(&ctx, options).await?;
    let progress = ctx.progress.clone();
    match keeper
        .full_refresh(move |n| progress.report("reading CUCM end users", n, None))
        .await
    {
        Ok(report) => Ok(JobResult::succeeded(
            serde_json::to_value(&report).unwrap_or_default(),
        )),
        Err(ucbridge_sync::SyncError::Store(ucbridge_store::StoreError::Conflict(why))) => {
            Ok(JobResult {
                status: JobRunStatus::Refused,
                summary: serde_json::Value::Null,
                message: Some(why),
            })
        }
        Err(e) => Err(e.into()),
    }
}
