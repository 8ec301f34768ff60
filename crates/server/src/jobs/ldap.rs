//! The `ldap_export` and `ldap_resync` jobs: ucbridge's users exported to the LDAP
//! directory, incrementally or all of them again.

use std::sync::Arc;

use ucbridge_store::JobRunStatus;

use super::{JobContext, JobError, JobFn, JobMode, JobResult, JobSpec, MAX_LISTED_FAILURES};
use crate::connections;

pub(super) fn ldap_job(
    name: &'static str,
    title: &'static str,
    mode: ucbridge_ldap::ExportMode,
    default_schedule: Option<String>,
) -> JobSpec {
    let run: JobFn = Arc::new(move |ctx: JobContext| Box::pin(export(ctx, mode)));
    JobSpec {
        name,
        title,
        mode: JobMode::Scheduled,
        needs: &["ldap"],
        restart_on: &[],
        default_schedule,
        run,
        run_once: None,
    }
}

async fn export(ctx: JobContext, mode: ucbridge_ldap::ExportMode) -> Result<JobResult, JobError> {
    let settings = connections::ldap_settings(&ctx.store, &ctx.secrets).await?;
    let exporter = ucbridge_ldap::LdapExporter::new(settings, ctx.store.clone())?;
    ctx.progress.report("exporting to LDAP", 0, None);
    let summary = exporter.export(mode).await?;
    let failures: Vec<_> = summary.failures().collect();
    let failed = failures.len();
    // The run record keeps the counts and the first failures; a first export of
    // 100,000 users must not put 100,000 outcomes into every status answer.
    Ok(JobResult {
        status: if failed == 0 {
            JobRunStatus::Succeeded
        } else {
            JobRunStatus::Failed
        },
        message: (failed > 0).then(|| format!("{failed} users could not be exported")),
        summary: serde_json::json!({
            "export_run_id": summary.run_id,
            "mode": summary.mode,
            "counts": summary.counts,
            "duration_ms": summary.duration_ms,
            "failures": failures.iter().take(MAX_LISTED_FAILURES).collect::<Vec<_>>(),
        }),
    })
}
