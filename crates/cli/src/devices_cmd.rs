//! `ucbridge devices …`: a secure third-party SIP device with a digest user, per user.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::json;
use ucbridge_axl::{AxlClient, UserSearch};
use ucbridge_provision::{
    BulkItem, EnsureOptions, EnsureReport, Outcome, Provisioner, ProvisioningConfig, SecretBox,
    ShowReport, UserDevice,
};
use ucbridge_store::{ProvisionedDevice, Store, SOURCE_CUCM};
use ucbridge_sync::SourceConfig;

use crate::config::FileConfig;
use crate::output::{self, outln};

#[derive(Subcommand)]
pub enum DevicesCommand {
    /// Create or repair the user's device, line, digest credentials and association
    /// (idempotent: a second run changes nothing and says so).
    Ensure {
        /// CUCM userid; with --matching, a listUser pattern (`%` wildcard) instead.
        user: String,
        /// The CUCM cluster: `cucm` (the default, `[axl]`) or a `[sources.NAME] kind = "cucm"`.
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// Treat USER as a userid pattern and ensure every matching end user.
        #[arg(long)]
        matching: bool,
        /// Print the digest password (to configure the SIP client). Never logged.
        #[arg(long)]
        show_password: bool,
        #[arg(long)]
        json: bool,
    },
    /// What ucbridge recorded and what CUCM holds for the user.
    Show {
        user: String,
        /// The CUCM cluster: `cucm` (the default, `[axl]`) or a `[sources.NAME] kind = "cucm"`.
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// Print the stored digest password too.
        #[arg(long)]
        show_password: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remove what ucbridge created for the user (never devices it did not create).
    Remove {
        user: String,
        /// The CUCM cluster: `cucm` (the default, `[axl]`) or a `[sources.NAME] kind = "cucm"`.
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// Settings from `[provisioning]` (defaults match the lab) and the digest-password key
/// from `UCBRIDGE_SECRET_KEY`, `UCBRIDGE_SECRET_KEY_FILE` or `secret_key_file`; checked
/// before CUCM is contacted.
pub fn settings(
    config: Option<&ProvisioningConfig>,
) -> Result<(ucbridge_provision::ProvisionSettings, SecretBox)> {
    let config = config.cloned().unwrap_or_default();
    let settings = config.compile()?;
    let secrets = SecretBox::from_env_or_file(config.secret_key_file.as_deref())?;
    Ok((settings, secrets))
}

pub fn provisioner(
    client: AxlClient,
    store: Store,
    (settings, secrets): (ucbridge_provision::ProvisionSettings, SecretBox),
) -> Provisioner {
    Provisioner::new(client, store, settings, secrets)
}

impl DevicesCommand {
    /// The `--source` cluster (default: `cucm`).
    fn source(&self) -> &str {
        let source = match self {
            DevicesCommand::Ensure { source, .. }
            | DevicesCommand::Show { source, .. }
            | DevicesCommand::Remove { source, .. } => source,
        };
        source.as_deref().unwrap_or(SOURCE_CUCM)
    }
}

/// The AXL client of the `--source` cluster: `default` (the `[axl]` connection) for
/// `cucm`, else the `[sources.NAME]` table's, built as the server builds it. A single
/// `ensure` of a user whom directory sync recorded on another cluster is refused: the
/// device belongs on the user's own cluster.
pub async fn connect(
    command: &DevicesCommand,
    file: &FileConfig,
    store: &Store,
    default: impl FnOnce() -> Result<ucbridge_axl::AxlConfig>,
) -> Result<AxlClient> {
    let source = command.source();
    if let DevicesCommand::Ensure {
        user,
        matching: false,
        ..
    } = command
    {
        let recorded = store.cluster_sources_of_userid(user).await?;
        if !recorded.is_empty() && !recorded.iter().any(|s| s == source) {
            bail!(
                "{user} is a user of cluster {}; pass --source {}",
                recorded.join(", "),
                recorded[0]
            );
        }
    }
    if source == SOURCE_CUCM {
        return AxlClient::connect(default()?)
            .await
            .context("cannot connect to CUCM AXL");
    }
    let settings = match file.sources.as_ref().and_then(|s| s.get(source)) {
        Some(SourceConfig::Cucm(settings)) => settings,
        Some(SourceConfig::Ldap(_)) => {
            bail!("source {source} is an LDAP directory, not a CUCM cluster")
        }
        None => bail!(
            "no cluster {source}: add a [sources.{source}] table with kind = \"cucm\" \
             (docs/directory-sources.md)"
        ),
    };
    ucbridge_server::jobs::cluster_axl_client(source, settings)
        .await
        .with_context(|| format!("cannot connect to the AXL service of cluster {source}"))
}

fn outcome_text(o: Outcome) -> &'static str {
    match o {
        Outcome::Created => "created",
        Outcome::Updated => "updated",
        Outcome::Unchanged => "unchanged (nothing to do)",
    }
}

fn ensure_json(r: &EnsureReport) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(r)?;
    if let (Some(pw), Some(obj)) = (&r.digest_password, v.as_object_mut()) {
        obj.insert("digest_password".into(), json!(pw.expose()));
    }
    Ok(v)
}

fn print_ensure(r: &EnsureReport) -> Result<()> {
    outln!("user:              {}", r.userid)?;
    outln!("device:            {}", r.device_name)?;
    outln!(
        "directory number:  {}{} ({})",
        r.directory_number.pattern,
        r.directory_number
            .route_partition
            .as_deref()
            .map(|p| format!(" in {p}"))
            .unwrap_or_default(),
        match r.dn_source {
            ucbridge_provision::DnSource::PrimaryExtension => "primary extension",
            ucbridge_provision::DnSource::Allocated => "allocated by ucbridge",
        }
    )?;
    outln!("outcome:           {}", outcome_text(r.outcome))?;
    for c in &r.changes {
        outln!("  - {c}")?;
    }
    if let Some(pw) = &r.digest_password {
        outln!("digest user:       {}", r.userid)?;
        outln!("digest password:   {}", pw.expose())?;
    }
    Ok(())
}

pub async fn run(p: &Provisioner, command: DevicesCommand) -> Result<()> {
    match command {
        DevicesCommand::Ensure {
            user,
            matching,
            show_password,
            json,
            ..
        } => ensure(p, &user, matching, show_password, json).await,
        DevicesCommand::Show {
            user,
            show_password,
            json,
            ..
        } => show(p, &user, show_password, json).await,
        DevicesCommand::Remove { user, json, .. } => remove(p, &user, json).await,
    }
}

/// `devices ensure`: one user, or every user matching the pattern (`--matching`).
async fn ensure(
    p: &Provisioner,
    user: &str,
    matching: bool,
    show_password: bool,
    json: bool,
) -> Result<()> {
    let options = EnsureOptions {
        reveal_password: show_password,
    };
    if matching {
        let search = UserSearch {
            userid: Some(user.to_owned()),
            ..UserSearch::default()
        };
        let items = p.ensure_matching(&search, &options).await?;
        return bulk(&items, json);
    }
    let report = p
        .ensure(user, &options)
        .await
        .with_context(|| format!("cannot provision a device for {user}"))?;
    if json {
        output::json(&ensure_json(&report)?)
    } else {
        print_ensure(&report)
    }
}

/// `devices show`: ucbridge's record, the device on CUCM, the user's third-party devices.
async fn show(p: &Provisioner, user: &str, show_password: bool, json: bool) -> Result<()> {
    let report = p.show(user).await?;
    let password = if show_password && report.record.is_some() {
        Some(p.digest_password(&report.userid).await?)
    } else {
        None
    };
    if json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(pw), Some(obj)) = (&password, v.as_object_mut()) {
            obj.insert("digest_password".into(), json!(pw.expose()));
        }
        return output::json(&v);
    }
    outln!("user: {}", report.userid)?;
    match &report.record {
        None => outln!("ucbridge has not provisioned a device for this user")?,
        Some(r) => print_record(&report, r)?,
    }
    print_third_party(&report.third_party_devices)?;
    for problem in &report.problems {
        outln!("problem: {problem}")?;
    }
    if let Some(pw) = password {
        outln!("digest password: {}", pw.expose())?;
    }
    Ok(())
}

/// `devices remove`: what was removed and what was kept (never what ucbridge did not make).
async fn remove(p: &Provisioner, user: &str, json: bool) -> Result<()> {
    let report = p
        .remove(user)
        .await
        .with_context(|| format!("cannot remove the device of {user}"))?;
    if json {
        return output::json(&report);
    }
    outln!("user: {} · device {}", report.userid, report.device_name)?;
    for r in &report.removed {
        outln!("  removed: {r}")?;
    }
    for k in &report.kept {
        outln!("  kept:    {k}")?;
    }
    Ok(())
}

fn print_record(report: &ShowReport, r: &ProvisionedDevice) -> Result<()> {
    let created = chrono::DateTime::from_timestamp_millis(r.created_at)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    outln!(
        "device: {} ({:?}, created {created})",
        r.device_name,
        r.state
    )?;
    outln!(
        "directory number: {}{}{}",
        r.dn_pattern,
        r.dn_partition
            .as_deref()
            .map(|p| format!(" in {p}"))
            .unwrap_or_default(),
        if r.dn_created {
            " (allocated by ucbridge)"
        } else {
            " (primary extension)"
        }
    )?;
    if let Some(d) = &report.device {
        outln!(
            "on CUCM: {} · pool {} · security profile {} · digest user {}",
            d.product.as_deref().unwrap_or("?"),
            d.device_pool.as_deref().unwrap_or("-"),
            d.security_profile.as_deref().unwrap_or("-"),
            d.digest_user.as_deref().unwrap_or("<none>")
        )?;
    }
    outln!("associated with the user: {}", report.associated)?;
    Ok(())
}

fn print_third_party(devices: &[UserDevice]) -> Result<()> {
    if devices.is_empty() {
        return Ok(());
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header([
        "third-party SIP device",
        "relation",
        "created by ucbridge",
    ]);
    for d in devices {
        t.add_row([
            d.name.clone(),
            d.relations.join(", "),
            if d.created_by_ucbridge { "yes" } else { "no" }.to_owned(),
        ]);
    }
    output::print_table(&t)
}

fn bulk(items: &[BulkItem], json: bool) -> Result<()> {
    let failed = items.iter().filter(|i| i.result.is_err()).count();
    if json {
        let values: Vec<serde_json::Value> = items
            .iter()
            .map(|i| match &i.result {
                Ok(r) => ensure_json(r)
                    .unwrap_or_else(|e| json!({"userid": i.userid, "error": e.to_string()})),
                Err(e) => json!({"userid": i.userid, "error": e.to_string()}),
            })
            .collect();
        output::json(&values)?;
    } else {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_header(["user", "device", "number", "outcome"]);
        for i in items {
            match &i.result {
                Ok(r) => t.add_row([
                    i.userid.clone(),
                    r.device_name.clone(),
                    r.directory_number.pattern.clone(),
                    outcome_text(r.outcome).to_owned(),
                ]),
                Err(e) => t.add_row([
                    i.userid.clone(),
                    String::new(),
                    String::new(),
                    format!("error: {e}"),
                ]),
            };
        }
        output::print_table(&t)?;
        if items
            .iter()
            .any(|i| i.result.as_ref().is_ok_and(|r| r.digest_password.is_some()))
        {
            for i in items {
                if let Ok(EnsureReport {
                    digest_password: Some(pw),
                    ..
                }) = &i.result
                {
                    outln!("{}: digest password {}", i.userid, pw.expose())?;
                }
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} users could not be provisioned", items.len());
    }
    Ok(())
}
