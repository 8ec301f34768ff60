//! `ucbridge ldap …`: export ucbridge's users to an LDAP directory (`[ldap_export]`).

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::json;
use ucbridge_auth::Secret;
use ucbridge_ldap::{ExportMode, ExportSummary, LdapExportSettings, LdapExporter};
use ucbridge_store::Store;

use crate::output::{self, outln};

/// The bind password from the environment wins over `[ldap_export] bind_password` and
/// `bind_password_file` (as `UCBRIDGE_AXL_PASSWORD` does for `[axl]`).
pub const PASSWORD_ENV: &str = "UCBRIDGE_LDAP_BIND_PASSWORD";

#[derive(Subcommand)]
pub enum LdapCommand {
    /// Export users changed since the last export (or everyone with --resync).
    Export {
        /// Re-synchronize: read every entry back, repair differences, re-create what is
        /// missing and remove entries ucbridge created for users that are gone. Needed
        /// after changing uid_from, phone_from, naming_attribute or base_dn.
        #[arg(long)]
        resync: bool,
        #[arg(long)]
        json: bool,
    },
    /// The last export runs and how many entries ucbridge manages.
    Status {
        #[arg(long)]
        json: bool,
    },
}

/// `[ldap_export]` with the password resolved (environment, then file).
pub fn settings(file: Option<&LdapExportSettings>) -> Result<LdapExportSettings> {
    let Some(settings) = file else {
        bail!("no [ldap_export] table in the configuration file (see docs/ldap-export.md)");
    };
    let mut settings = settings.clone();
    if let Ok(password) = std::env::var(PASSWORD_ENV) {
        if !password.is_empty() {
            settings.bind_password = Some(Secret::new(password));
        }
    }
    Ok(settings)
}

pub async fn run(
    store: Store,
    file: Option<&LdapExportSettings>,
    command: LdapCommand,
) -> Result<()> {
    match command {
        LdapCommand::Export { resync, json } => {
            let exporter = LdapExporter::new(settings(file)?, store)?;
            let mode = if resync {
                ExportMode::Resynchronize
            } else {
                ExportMode::Incremental
            };
            let summary = exporter.export(mode).await.context("LDAP export failed")?;
            print_summary(&summary, json)?;
            if summary.counts.failed > 0 {
                bail!(
                    "{} user(s) could not be exported (see above)",
                    summary.counts.failed
                );
            }
            Ok(())
        }
        LdapCommand::Status { json } => status(&store, json).await,
    }
}

fn print_summary(summary: &ExportSummary, as_json: bool) -> Result<()> {
    if as_json {
        return output::json(summary);
    }
    if !summary.users.is_empty() {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(["user", "action", "DN", "reason"]);
        for u in &summary.users {
            let action = serde_json::to_value(u.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            table.add_row([
                u.username.clone(),
                action,
                u.dn.clone().unwrap_or_default(),
                u.reason.clone().unwrap_or_default(),
            ]);
        }
        output::print_table(&table)?;
    }
    let c = summary.counts;
    outln!(
        "{} export (run {}): {} added, {} modified, {} deleted, {} unchanged, {} failed in {} ms",
        summary.mode.as_str(),
        summary.run_id,
        c.added,
        c.modified,
        c.deleted,
        c.unchanged,
        c.failed,
        summary.duration_ms
    )?;
    Ok(())
}

async fn status(store: &Store, as_json: bool) -> Result<()> {
    let runs = store.ldap_export_runs(10).await?;
    let (entries, created) = store.ldap_export_counts().await?;
    if as_json {
        return output::json(&json!({
            "entries": entries,
            "created_by_ucbridge": created,
            "runs": runs,
        }));
    }
    outln!(
        "{entries} entries exported ({created} created by ucbridge, {} updated existing entries)",
        entries.saturating_sub(created)
    )?;
    if runs.is_empty() {
        outln!("no export has run yet")?;
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "run",
        "mode",
        "started",
        "status",
        "added",
        "modified",
        "deleted",
        "unchanged",
        "failed",
        "message",
    ]);
    for r in runs {
        let started = chrono::DateTime::from_timestamp_millis(r.started_at)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        table.add_row([
            r.id.to_string(),
            r.mode,
            started,
            r.status.as_str().to_owned(),
            r.counts.added.to_string(),
            r.counts.modified.to_string(),
            r.counts.deleted.to_string(),
            r.counts.unchanged.to_string(),
            r.counts.failed.to_string(),
            r.message.unwrap_or_default(),
        ]);
    }
    output::print_table(&table)?;
    Ok(())
}
