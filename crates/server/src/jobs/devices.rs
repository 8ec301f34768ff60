//! The `devices` job: ensure a third-party SIP device for every CUCM user the saved
//! provisioning settings select.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use ucbridge_store::JobRunStatus;

use super::{JobContext, JobError, JobFn, JobMode, JobResult, JobSpec, MAX_LISTED_FAILURES};
use crate::connections;

/// Settings name of the device provisioning job's settings.
pub const DEVICES_SETTING: &str = "provisioning";

/// The device job's settings: which CUCM users get a device, and how it is built.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicesJobSettings {
    /// AXL userid pattern of the users who get a device (`%` = everyone).
    pub users: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub provisioning: ucbridge_provision::ProvisioningConfig,
}

pub(super) fn devices_job(default_schedule: Option<String>) -> JobSpec {
    let run: JobFn = Arc::new(|ctx: JobContext| Box::pin(ensure_devices(ctx)));
    JobSpec {
        name: "devices",
        title: "Device provisioning (third-party SIP device per user)",
        mode: JobMode::Scheduled,
        needs: &["cucm"],
        restart_on: &[],
        default_schedule,
        run,
        run_once: None,
    }
}

async fn ensure_devices(ctx: JobContext) -> Result<JobResult, JobError> {
    let Some(setting) = ctx.store.setting(DEVICES_SETTING).await? else {
        return Ok(JobResult {
            status: JobRunStatus::Refused,
            summary: serde_json::Value::Null,
            message: Some(
                "device provisioning is not configured (PUT /api/v1/provisioning)".into(),
            ),
        });
    };
    let settings: DevicesJobSettings =
        serde_json::from_str(&setting.value).map_err(|source| JobError::StoredSettings {
            what: "provisioning settings",
            source,
        })?;
    let compiled = settings.provisioning.compile()?;
    let client = connections::axl_client(&ctx.store, &ctx.secrets).await?;
    let p = ucbridge_provision::Provisioner::new(
        client,
        ctx.store.clone(),
        compiled,
        ctx.secrets.clone(),
    );
    let search = ucbridge_axl::UserSearch {
        userid: Some(settings.users.clone()),
        ..Default::default()
    };
    ctx.progress.report("ensuring devices", 0, None);
    // The AXL pager's future is not `Send` for every lifetime (an async-closure
    // limitation), so the bulk run gets a blocking thread of its own.
    let handle = tokio::runtime::Handle::current();
    let items = tokio::task::spawn_blocking(move || {
        handle.block_on(async move {
            p.ensure_matching(&search, &ucbridge_provision::EnsureOptions::default())
                .await
        })
    })
    .await
    .map_err(|source| JobError::Panicked {
        what: "device",
        source,
    })??;
    Ok(summarise(&items))
}

/// Outcomes counted by kind, the first failures listed; failed when any user failed.
fn summarise(items: &[ucbridge_provision::BulkItem]) -> JobResult {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    for item in items {
        match &item.result {
            Ok(report) => {
                *counts
                    .entry(format!("{:?}", report.outcome).to_lowercase())
                    .or_default() += 1
            }
            Err(e) => {
                *counts.entry("failed".into()).or_default() += 1;
                if failures.len() < MAX_LISTED_FAILURES {
                    failures
                        .push(serde_json::json!({"userid": item.userid, "error": e.to_string()}));
                }
            }
        }
    }
    JobResult {
        status: if failures.is_empty() {
            JobRunStatus::Succeeded
        } else {
            JobRunStatus::Failed
        },
        summary: serde_json::json!({"users": items.len(), "outcomes": counts, "failures": failures}),
        message: counts.get("failed").map(|n| format!("{n} users failed")),
    }
}
