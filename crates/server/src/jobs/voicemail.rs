//! The `voicemail` job: the voicemail engine, continuous (CUC subscription, debounced
//! account syncs, periodic reconcile); "run now" syncs every mailbox once.

use std::sync::Arc;

use super::{JobContext, JobError, JobFn, JobMode, JobResult, JobSpec};
use crate::connections;

/// The voicemail engine of the running `voicemail` job on this node, for the CUC
/// notification callback route (`None` while the job runs elsewhere or not at all).
pub type EngineSlot = Arc<std::sync::RwLock<Option<ucbridge_voicemail::VoicemailEngine>>>;

pub(super) fn voicemail_job(slot: EngineSlot, public_url: Option<String>) -> JobSpec {
    let run: JobFn =
        Arc::new(move |ctx: JobContext| Box::pin(keep(ctx, slot.clone(), public_url.clone())));
    let once: JobFn = Arc::new(|ctx: JobContext| Box::pin(sync_all(ctx)));
    JobSpec {
        name: "voicemail",
        title: "Voicemail sync (Unity Connection <-> IMAP; push, debounce, reconcile)",
        mode: JobMode::Continuous,
        needs: &["cuc", "imap"],
        restart_on: &[connections::VOICEMAIL_SETTING],
        default_schedule: None,
        run,
        run_once: Some(once),
    }
}

/// The continuous job: the engine runs, published in `slot` for the callback route.
async fn keep(
    ctx: JobContext,
    slot: EngineSlot,
    public_url: Option<String>,
) -> Result<JobResult, JobError> {
    let (engine, configured_url) = connections::voicemail_engine(&ctx.store, &ctx.secrets).await?;
    // CUC posts its events to this node (the lease holder), so subscribe with our own
    // address; without one, changes arrive by the periodic reconcile only.
    let callback_url = configured_url
        .or_else(|| public_url.map(|u| format!("{}/callbacks/cuc", u.trim_end_matches('/'))));
    if callback_url.is_none() {
        tracing::warn!("no public URL: CUC cannot push voicemail events; set [server] public_url");
    }
    *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(engine.clone());
    engine.run(callback_url, ctx.cancel.cancelled_owned()).await;
    *slot.write().unwrap_or_else(|p| p.into_inner()) = None;
    Ok(JobResult::succeeded(serde_json::Value::Null))
}

/// "Run now": every mailbox once, with progress.
async fn sync_all(ctx: JobContext) -> Result<JobResult, JobError> {
    let (engine, _) = connections::voicemail_engine(&ctx.store, &ctx.secrets).await?;
    let progress = ctx.progress.clone();
    let report = move |done: usize, total: usize| {
        progress.report("syncing mailboxes", done as u64, Some(total as u64))
    };
    let summary = engine.sync_all(&report).await?;
    Ok(JobResult::succeeded(
        serde_json::to_value(&summary).unwrap_or_default(),
    ))
}
