//! `ucbridge sync …` and `ucbridge users …`: directory sync from CUCM (and the LDAP
//! sources of `[sources.NAME]`) into ucbridge's users, and the users themselves.

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use indicatif::{ProgressBar, ProgressStyle};
use ucbridge_store::{RunOwner, RunStatus, Store, UserChange, SOURCE_CUCM};
use ucbridge_sync::rules::CompiledRules;
use ucbridge_sync::{run_user_sync_as, SnapshotKeeper, SyncOptions, SyncOutcome};

use crate::output::{self, outln, ListWriter};

#[derive(Subcommand)]
pub enum SyncCommand {
    /// Refresh a source's snapshot (stage 1), in full: CUCM's end users by default.
    Refresh {
        /// The source to refresh: `cucm` (the default) or a `[sources.NAME]` table.
        #[arg(long)]
        source: Option<String>,
    },
    /// Copy the snapshot into ucbridge's users by the [directory_sync] rules (stage 2).
    Users {
        /// Show the plan, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow more removals than max_removal_share (or against an empty snapshot).
        #[arg(long)]
        confirm_removals: bool,
        /// Refresh the snapshot first.
        #[arg(long)]
        refresh: bool,
        /// Compare every user even if nothing changed since the last in-sync run.
        #[arg(long)]
        full: bool,
        /// Print the plan or outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Snapshot state, "source users updated at", and the last runs.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Keep the snapshot fresh until Ctrl-C: full refresh, then listChange polling.
    Watch,
    /// Voicemail: mirror Unity Connection mailboxes into users' IMAP folders, both ways.
    Voicemail(crate::voicemail_cmd::VoicemailArgs),
}

#[derive(Subcommand)]
pub enum LocalUsersCommand {
    /// List ucbridge's users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one user and its audit trail.
    Show {
        username: String,
        #[arg(long)]
        json: bool,
    },
    /// Set a user's local password (read from standard input), checked against the policy.
    SetPassword { username: String },
}

fn time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "never".into())
}

fn bar(len: Option<u64>, what: &'static str) -> ProgressBar {
    let bar = match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {pos} {msg} ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_message(what);
    bar
}

pub async fn refresh(keeper: &SnapshotKeeper) -> Result<()> {
    let progress = bar(None, "CUCM users read");
    let result = tokio::select! {
        r = keeper.full_refresh(|n| progress.set_position(n)) => r,
        _ = tokio::signal::ctrl_c() => {
            progress.finish_and_clear();
            // Give the claim up at once rather than leave the snapshot `refreshing` until
            // its heartbeat goes stale.
            keeper
                .abandon_refresh("abandoned: the refresh was interrupted (Ctrl-C)")
                .await
                .context("cannot release the interrupted refresh")?;
            bail!("interrupted; the previous snapshot is kept");
        }
    };
    progress.finish_and_clear();
    let report =
        result.context("the CUCM snapshot refresh failed (the previous snapshot is kept)")?;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header([
        "snapshot", "added", "updated", "removed", "total", "pages", "time",
    ]);
    t.add_row([
        "CUCM end users".to_owned(),
        report.swap.added.to_string(),
        report.swap.updated.to_string(),
        report.swap.removed.to_string(),
        report.swap.total.to_string(),
        report.pages.to_string(),
        format!("{:.1} s", report.duration_ms as f64 / 1000.0),
    ]);
    output::print_table(&t)
}

/// `sync refresh --source NAME`: a full refresh of the `[sources.NAME]` directory. The
/// bind password comes from the table, its `bind_password_file`, or the environment
/// (`UCBRIDGE_SOURCE_<NAME>_BIND_PASSWORD`, the name upper-cased with `-` as `_`).
pub async fn refresh_source(
    store: &Store,
    file: &crate::config::FileConfig,
    name: &str,
) -> Result<()> {
    let Some(config) = file.sources.as_ref().and_then(|s| s.get(name)) else {
        bail!("no source {name:?}: add a [sources.{name}] table to the configuration file (docs/directory-sources.md)");
    };
    let mut settings = match config.clone() {
        ucbridge_sync::SourceConfig::Ldap(settings) => settings,
        ucbridge_sync::SourceConfig::Cucm(settings) => {
            return refresh_cucm_source(store, name, &settings).await
        }
    };
    if settings.bind_password.is_none() && settings.bind_password_file.is_none() {
        let var = format!(
            "UCBRIDGE_SOURCE_{}_BIND_PASSWORD",
            name.to_ascii_uppercase().replace('-', "_")
        );
        if let Ok(p) = std::env::var(&var) {
            settings.bind_password = Some(ucbridge_auth::Secret::new(p));
        }
    }
    let source = ucbridge_sync::LdapSource::new(name, settings, store.clone())
        .await
        .with_context(|| format!("source {name}"))?;
    let report = source.full_refresh().await.with_context(|| {
        format!("the refresh of source {name} failed (the previous snapshot is kept)")
    })?;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header([
        "source", "read", "added", "updated", "removed", "total", "problems", "time",
    ]);
    t.add_row([
        name.to_owned(),
        report.entries_read.to_string(),
        report.swap.added.to_string(),
        report.swap.updated.to_string(),
        report.swap.removed.to_string(),
        report.swap.total.to_string(),
        report.problem_count.to_string(),
        format!("{:.1} s", report.duration_ms as f64 / 1000.0),
    ]);
    output::print_table(&t)?;
    for p in report.problems.iter().take(20) {
        outln!("problem: {}: {}", p.entry, p.message)?;
    }
    Ok(())
}

/// `sync refresh --source NAME` of a `kind = "cucm"` table: a full refresh of that
/// cluster into its own snapshot (the password from the table, its `password_file`, or
/// `UCBRIDGE_SOURCE_<NAME>_PASSWORD`).
async fn refresh_cucm_source(
    store: &Store,
    name: &str,
    settings: &ucbridge_sync::CucmSourceSettings,
) -> Result<()> {
    let keeper = ucbridge_sync::SnapshotKeeper::connect_source(name, settings, store.clone())
        .await
        .with_context(|| format!("source {name}"))?;
    let report = keeper.full_refresh(|_| {}).await.with_context(|| {
        format!("the refresh of source {name} failed (the previous snapshot is kept)")
    })?;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(["source", "added", "updated", "removed", "total", "time"]);
    t.add_row([
        name.to_owned(),
        report.swap.added.to_string(),
        report.swap.updated.to_string(),
        report.swap.removed.to_string(),
        report.swap.total.to_string(),
        format!("{:.1} s", report.duration_ms as f64 / 1000.0),
    ]);
    output::print_table(&t)
}

/// One line per registered source: kind, state, entries, updated at, problems.
async fn sources_table(store: &Store) -> Result<Option<Table>> {
    let sources = store.directory_sources().await?;
    if sources.len() <= 1 {
        return Ok(None);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header([
        "source",
        "kind",
        "state",
        "users",
        "updated at",
        "problems",
        "reason",
    ]);
    for s in sources {
        let state = store.snapshot_state(&s.name).await?;
        t.add_row([
            s.name.clone(),
            s.kind.as_str().to_owned(),
            state.state.as_str().to_owned(),
            state.users_count.to_string(),
            time(state.source_updated_at),
            state.entry_problem_count.to_string(),
            state.reason.clone().unwrap_or_default(),
        ]);
    }
    Ok(Some(t))
}

pub async fn users(
    store: &Store,
    rules: &CompiledRules,
    options: SyncOptions,
    json: bool,
) -> Result<SyncOutcome> {
    let progress = bar(Some(0), "changes applied");
    let owner = RunOwner::cli();
    let run = run_user_sync_as(store, rules, options, &owner, |done, total| {
        progress.set_length(total);
        progress.set_position(done);
    });
    let outcome = tokio::select! {
        outcome = run => outcome,
        _ = tokio::signal::ctrl_c() => {
            progress.finish_and_clear();
            // Batches already applied stay (each with its audit entries); the run itself
            // must not stay `running` for ever.
            if let Some(node) = &owner.node {
                store
                    .abandon_sync_runs_of(node, "abandoned: the sync was interrupted (Ctrl-C)")
                    .await
                    .context("cannot mark the interrupted run abandoned")?;
            }
            bail!("interrupted; the changes applied so far are kept and in the audit log");
        }
    };
    progress.finish_and_clear();
    let outcome = outcome.context("user sync failed")?;
    if json {
        output::json(&outcome)?;
    } else {
        print_outcome(&outcome)?;
    }
    Ok(outcome)
}

fn print_outcome(outcome: &SyncOutcome) -> Result<()> {
    let plan = &outcome.plan;
    if outcome.status == RunStatus::Planned && !plan.changes.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_header(["action", "user", "details"]);
        for c in plan.changes.iter().take(200) {
            let details = match c {
                UserChange::Update { before, after, .. } => diff(before, after),
                UserChange::Create { after } => format!(
                    "{} {} <{}>",
                    after.first_name.as_deref().unwrap_or(""),
                    after.last_name.as_deref().unwrap_or(""),
                    after.email.as_deref().unwrap_or("")
                ),
                _ => String::new(),
            };
            t.add_row([c.action().to_owned(), c.username().to_owned(), details]);
        }
        output::print_table(&t)?;
        // `plan.changes` keeps the first changes only; the total is counted apart.
        let shown = plan.changes.len().min(200) as u64;
        if plan.total_changes() > shown {
            outln!(
                "… and {} more changes (a plan keeps the first {}; the audit log has every applied change)",
                plan.total_changes() - shown,
                plan.changes.len()
            )?;
        }
    }
    for p in plan.problems.iter().take(50) {
        eprintln!(
            "problem: {}{}",
            p.cucm_userid
                .as_deref()
                .map(|u| format!("CUCM user {u}: "))
                .unwrap_or_default(),
            p.message
        );
    }
    let s = plan.summary();
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header([
        "run",
        "status",
        "create",
        "update",
        "disable",
        "delete",
        "unchanged",
        "problems",
    ]);
    t.add_row([
        outcome.run_id.to_string(),
        format!("{:?}", outcome.status).to_lowercase(),
        s.creates.to_string(),
        s.updates.to_string(),
        s.disables.to_string(),
        s.deletes.to_string(),
        plan.unchanged.to_string(),
        s.errors.to_string(),
    ]);
    output::print_table(&t)?;
    outln!(
        "Source users updated at: {}",
        time(outcome.snapshot.source_updated_at)
    )?;
    if let Some(m) = &outcome.message {
        eprintln!(
            "{}: {m}",
            if outcome.status == RunStatus::Refused {
                "refused"
            } else {
                "note"
            }
        );
    }
    Ok(())
}

fn diff(before: &ucbridge_store::UserRecord, after: &ucbridge_store::UserRecord) -> String {
    let mut parts = Vec::new();
    for f in ucbridge_store::UserField::ALL {
        if before.get(*f) != after.get(*f) {
            parts.push(format!(
                "{}: {:?} → {:?}",
                f.name(),
                before.get(*f).unwrap_or(""),
                after.get(*f).unwrap_or("")
            ));
        }
    }
    if before.aliases != after.aliases {
        parts.push(format!(
            "aliases: {:?} → {:?}",
            before.aliases, after.aliases
        ));
    }
    if before.disabled != after.disabled {
        parts.push(if after.disabled {
            "disabled".into()
        } else {
            "re-enabled".into()
        });
    }
    if before.source_key != after.source_key {
        parts.push("linked to CUCM".into());
    }
    parts.join("; ")
}

/// How many of a user's newest audit entries `users show` prints.
const USER_HISTORY_LIMIT: i64 = 200;

pub async fn status(store: &Store, json: bool) -> Result<()> {
    let state = store.snapshot_state(SOURCE_CUCM).await?;
    let runs = store
        .recent_runs(ucbridge_sync::directory::RUN_KIND, 5)
        .await?;
    if json {
        let mut sources = Vec::new();
        for s in store.directory_sources().await? {
            let state = store.snapshot_state(&s.name).await?;
            sources.push(serde_json::json!({ "source": s, "state": state }));
        }
        return output::json(
            &serde_json::json!({ "snapshot": state, "sources": sources, "runs": runs }),
        );
    }
    if let Some(t) = sources_table(store).await? {
        output::print_table(&t)?;
    }
    outln!("Data source type:         CUCM (AXL)")?;
    outln!("Snapshot state:           {}", state.state.as_str())?;
    if let Some(r) = &state.reason {
        outln!("Last failure:             {r}")?;
    }
    outln!(
        "Source users updated at:  {}",
        time(state.source_updated_at)
    )?;
    outln!(
        "Last full refresh:        {}",
        time(state.last_full_refresh_at)
    )?;
    outln!("Users in snapshot:        {}", state.users_count)?;
    if state.state == ucbridge_store::RefreshState::Refreshing {
        outln!(
            "Refresh claimed by:       {}{}, last sign of life {}",
            state.refresh_owner.as_deref().unwrap_or("?"),
            state
                .refresh_node
                .as_deref()
                .map(|n| format!(" (node {n})"))
                .unwrap_or_default(),
            time(state.refresh_heartbeat_at.or(state.refresh_started_at))
        )?;
        outln!("Warning: the snapshot is being refreshed (cache under provisioning); a user sync now would be refused.")?;
    }
    if !runs.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED).set_header([
            "run", "started", "status", "create", "update", "disable", "delete", "problems",
            "message",
        ]);
        for r in runs {
            t.add_row([
                r.id.to_string(),
                time(Some(r.started_at)),
                format!(
                    "{:?}{}",
                    r.status,
                    if r.dry_run { " (dry run)" } else { "" }
                )
                .to_lowercase(),
                r.summary.creates.to_string(),
                r.summary.updates.to_string(),
                r.summary.disables.to_string(),
                r.summary.deletes.to_string(),
                r.summary.errors.to_string(),
                r.message.unwrap_or_default(),
            ]);
        }
        output::print_table(&t)?;
    }
    Ok(())
}

pub async fn local_users(store: &Store, command: LocalUsersCommand) -> Result<()> {
    match command {
        LocalUsersCommand::List { json } => {
            // Page by page (by offset: a user added or removed meanwhile can shift a row
            // between pages), so memory holds one page, not every user.
            const PAGE: i64 = 1000;
            let mut list = ListWriter::stdout(
                json,
                &[
                    "username",
                    "name",
                    "email",
                    "extension",
                    "department",
                    "device",
                    "source",
                    "state",
                ],
            );
            let mut offset = 0;
            loop {
                let (_, page) = store.search_local_users(None, offset, PAGE).await?;
                for u in &page {
                    list.push(u, local_user_row)?;
                }
                list.flush()?;
                if (page.len() as i64) < PAGE {
                    break;
                }
                offset += PAGE;
            }
            let n = list.finish()?;
            if !json {
                eprintln!("{n} users");
            }
            Ok(())
        }
        LocalUsersCommand::Show { username, json } => {
            let Some(user) = store.local_user(&username).await? else {
                bail!("no user {username:?}");
            };
            let history = store.user_audit_log(&username, USER_HISTORY_LIMIT).await?;
            if json {
                return output::json(&serde_json::json!({ "user": user, "audit": history }));
            }
            output::json(&user)?;
            for a in history {
                outln!(
                    "{}  {} (run {})",
                    time(Some(a.at)),
                    a.action,
                    a.run_id.map(|r| r.to_string()).unwrap_or("-".into())
                )?;
            }
            Ok(())
        }
        LocalUsersCommand::SetPassword { username } => {
            if store.local_user(&username).await?.is_none() {
                bail!("no user {username:?}");
            }
            if std::io::stdin().is_terminal() {
                eprintln!(
                    "New password for {username} (input is visible; pipe it in to avoid that):"
                );
            }
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the password")?;
            let password = line.trim_end_matches(['\r', '\n']);
            let hash = ucbridge_sync::password::hash_password(password)?;
            store.set_password_hash(&username, &hash).await?;
            outln!("Password set for {username}.")
        }
    }
}

fn local_user_row(u: &ucbridge_store::LocalUser) -> Vec<String> {
    let r = &u.record;
    vec![
        r.username.clone(),
        r.display_name.clone().unwrap_or_default(),
        r.email.clone().unwrap_or_default(),
        r.extension.clone().unwrap_or_default(),
        r.department.clone().unwrap_or_default(),
        r.device_name.clone().unwrap_or_default(),
        r.source.clone(),
        if r.disabled {
            "disabled".into()
        } else {
            "active".into()
        },
    ]
}
