//! The `devices` job: ensure a third-party SIP device for every CUCM user the saved
//! provisioning settings select, on each user's own cluster: the default cluster (the
//! `cucm` connection) and every `[sources.NAME] kind = "cucm"` cluster, each with its own
//! AXL client. Every cluster is listed first; then a user listed on a cluster is
//! provisioned there unless directory sync recorded the local user on another cluster
//! (`user_sources`), or, recorded nowhere, another cluster lists the same userid (whose
//! device it is is unknown: reported, left alone). A cluster that cannot be reached is
//! reported and the others go on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use ucbridge_axl::UserSearch;
use ucbridge_provision::{BulkItem, EnsureOptions, ProvisionSettings, Provisioner};
use ucbridge_store::{JobRunStatus, SOURCE_CUCM};
use ucbridge_sync::SourceConfig;

use super::{JobContext, JobError, JobFn, JobMode, JobResult, JobSpec, MAX_LISTED_FAILURES};

/// Settings name of the device provisioning job's settings.
pub const DEVICES_SETTING: &str = "provisioning";

/// The device job's settings: which CUCM users get a device, and how it is built.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicesJobSettings {
    /// AXL userid pattern of the users who get a device (`%` = everyone), on every cluster.
    pub users: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub provisioning: ucbridge_provision::ProvisioningConfig,
}

/// The configured sources; the `kind = "cucm"` ones are the further clusters.
type Sources = Arc<Vec<(String, SourceConfig)>>;

pub(super) fn devices_job(
    default_schedule: Option<String>,
    sources: &[(String, SourceConfig)],
) -> JobSpec {
    let sources: Sources = Arc::new(sources.to_vec());
    let run: JobFn =
        Arc::new(move |ctx: JobContext| Box::pin(ensure_devices(ctx, sources.clone())));
    JobSpec {
        name: "devices",
        title: "Device provisioning (third-party SIP device per user, on the user's cluster)",
        mode: JobMode::Scheduled,
        needs: &["cucm"],
        restart_on: &[],
        default_schedule,
        run,
        run_once: None,
    }
}

async fn ensure_devices(ctx: JobContext, sources: Sources) -> Result<JobResult, JobError> {
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
    let search = UserSearch {
        userid: Some(settings.users.clone()),
        ..Default::default()
    };
    let names: Vec<String> = std::iter::once(SOURCE_CUCM.to_owned())
        .chain(sources.iter().filter_map(|(name, config)| match config {
            SourceConfig::Cucm(_) => Some(name.clone()),
            SourceConfig::Ldap(_) => None,
        }))
        .collect();
    // The AXL pager's future is not `Send` for every lifetime (an async-closure
    // limitation), so the bulk run gets a blocking thread of its own.
    let handle = tokio::runtime::Handle::current();
    let reports = tokio::task::spawn_blocking(move || {
        handle.block_on(async move {
            let listed = list_clusters(&ctx, &sources, &names, &compiled, &search).await;
            let mut on_clusters: HashMap<String, usize> = HashMap::new();
            for (_, run) in &listed {
                for userid in run.iter().flat_map(|(_, userids)| userids) {
                    *on_clusters.entry(userid.to_lowercase()).or_default() += 1;
                }
            }
            let mut reports = Vec::with_capacity(listed.len());
            for (i, (name, run)) in listed.into_iter().enumerate() {
                ctx.progress.report(
                    &format!("ensuring devices on cluster {name}"),
                    i as u64,
                    Some(names.len() as u64),
                );
                let report = match run {
                    Ok((p, userids)) => on_cluster(&ctx, &name, &p, userids, &on_clusters).await,
                    Err(e) => Err(e),
                };
                reports.push(ClusterReport::new(&name, report));
            }
            reports
        })
    })
    .await
    .map_err(|source| JobError::Panicked {
        what: "device",
        source,
    })?;
    Ok(summarise(&reports))
}

/// Each cluster's provisioner and the userids `search` lists on it (or why not), so that a
/// userid listed on several clusters is known before anything is provisioned.
async fn list_clusters(
    ctx: &JobContext,
    sources: &[(String, SourceConfig)],
    names: &[String],
    settings: &ProvisionSettings,
    search: &UserSearch,
) -> Vec<(String, Result<(Provisioner, Vec<String>), JobError>)> {
    let mut listed = Vec::with_capacity(names.len());
    for name in names {
        ctx.progress
            .report(&format!("listing the users of cluster {name}"), 0, None);
        let run = async {
            let client = super::cluster_client(&ctx.store, &ctx.secrets, sources, name).await?;
            let p = Provisioner::new(
                client,
                ctx.store.clone(),
                settings.clone(),
                ctx.secrets.clone(),
            );
            let userids = p.matching_userids(search).await?;
            Ok::<_, JobError>((p, userids))
        }
        .await;
        listed.push((name.clone(), run));
    }
    listed
}

/// What one cluster's run did: its users' outcomes, or why it could not run.
struct ClusterReport {
    source: String,
    run: Result<ClusterRun, String>,
}

/// The users of one cluster: ensured, recorded on another cluster, or ambiguous.
#[derive(Default)]
struct ClusterRun {
    items: Vec<BulkItem>,
    /// Listed here, but directory sync recorded the local user on another cluster.
    elsewhere: u64,
    /// Listed on several clusters and recorded on none: whose device it is is unknown.
    ambiguous: Vec<String>,
}

impl ClusterReport {
    fn new(source: &str, run: Result<ClusterRun, JobError>) -> ClusterReport {
        ClusterReport {
            source: source.to_owned(),
            run: run.map_err(|e| e.to_string()),
        }
    }
}

/// Ensure the device of every user listed on cluster `name`, on that cluster: a user
/// directory sync recorded on a cluster gets its device there only; a user recorded
/// nowhere (not synced) gets it here unless another cluster lists the userid too.
async fn on_cluster(
    ctx: &JobContext,
    name: &str,
    p: &Provisioner,
    userids: Vec<String>,
    on_clusters: &HashMap<String, usize>,
) -> Result<ClusterRun, JobError> {
    let mut run = ClusterRun {
        items: Vec::with_capacity(userids.len()),
        ..ClusterRun::default()
    };
    for userid in userids {
        let recorded = ctx.store.cluster_sources_of_userid(&userid).await?;
        if !recorded.is_empty() && !recorded.iter().any(|s| s == name) {
            run.elsewhere += 1;
            continue;
        }
        if recorded.is_empty()
            && on_clusters
                .get(&userid.to_lowercase())
                .is_some_and(|n| *n > 1)
        {
            run.ambiguous.push(userid);
            continue;
        }
        let result = p.ensure(&userid, &EnsureOptions::default()).await;
        run.items.push(BulkItem { userid, result });
    }
    Ok(run)
}

/// Outcomes counted by kind over all clusters and per cluster, the first failures listed;
/// failed when any user or cluster failed.
fn summarise(reports: &[ClusterReport]) -> JobResult {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut per_cluster = Vec::with_capacity(reports.len());
    let (mut users, mut ambiguous) = (0, 0);
    let mut broken = Vec::new();
    for report in reports {
        let run = match &report.run {
            Ok(run) => run,
            Err(e) => {
                broken.push(report.source.as_str());
                per_cluster.push(serde_json::json!({"cluster": report.source, "error": e}));
                continue;
            }
        };
        let mut here: BTreeMap<String, u64> = BTreeMap::new();
        for item in &run.items {
            let kind = match &item.result {
                Ok(r) => format!("{:?}", r.outcome).to_lowercase(),
                Err(e) => {
                    if failures.len() < MAX_LISTED_FAILURES {
                        failures.push(serde_json::json!({
                            "cluster": report.source, "userid": item.userid,
                            "error": e.to_string(),
                        }));
                    }
                    "failed".to_owned()
                }
            };
            *here.entry(kind.clone()).or_default() += 1;
            *counts.entry(kind).or_default() += 1;
        }
        users += run.items.len();
        ambiguous += run.ambiguous.len();
        per_cluster.push(serde_json::json!({
            "cluster": report.source, "users": run.items.len(), "outcomes": here,
            "on_another_cluster": run.elsewhere,
            "on_several_clusters": run.ambiguous.iter().take(MAX_LISTED_FAILURES).collect::<Vec<_>>(),
        }));
    }
    let mut message = Vec::new();
    if let Some(n) = counts.get("failed") {
        message.push(format!("{n} users failed"));
    }
    if !broken.is_empty() {
        message.push(format!("cluster {} failed", broken.join(", ")));
    }
    if ambiguous > 0 {
        message.push(format!(
            "{ambiguous} users are on several clusters and were left alone"
        ));
    }
    JobResult {
        status: if failures.is_empty() && broken.is_empty() {
            JobRunStatus::Succeeded
        } else {
            JobRunStatus::Failed
        },
        summary: serde_json::json!({
            "users": users, "outcomes": counts, "failures": failures, "clusters": per_cluster,
        }),
        message: (!message.is_empty()).then(|| message.join("; ")),
    }
}
