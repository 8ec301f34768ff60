//! `ucbridge sync voicemail [--user U] [--watch] [--listen ADDR] [--confirm-removals]`:
//! voicemail sync between Unity Connection and users' IMAP mailboxes ([cuc], [imap],
//! [voicemail] tables).

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use indicatif::{ProgressBar, ProgressStyle};
use ucbridge_store::Store;
use ucbridge_voicemail::{VoicemailEngine, VoicemailOptions};

use crate::config::FileConfig;
use crate::output::{self, outln};

#[derive(Args, Debug)]
pub struct VoicemailArgs {
    /// Sync only this account (CUC alias or local username).
    #[arg(long = "user")]
    user: Option<String>,
    /// Keep syncing until Ctrl-C: CUC events, IMAP changes (debounced), periodic reconcile.
    #[arg(long)]
    watch: bool,
    /// With --watch: serve CUC's callbacks (at /callbacks/cuc) on this address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// URL CUC calls back (default: [voicemail] callback_url, else http://<listen>/callbacks/cuc).
    #[arg(long)]
    callback_url: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    /// Let removals from IMAP happen that the mass-removal guard refuses ([voicemail]
    /// max_removal_share, or CUC listing a mailbox as empty).
    #[arg(long)]
    confirm_removals: bool,
}

/// Said after a refused sync: how to let it through once CUC has been checked.
const CONFIRM_HINT: &str = "check that the CUC administrator holds the \"Mailbox Access Delegate Account\" role and that the messages are really gone, then re-run with --confirm-removals";

/// The CUC connection from `UCBRIDGE_CUC_*` and `[cuc]` (its flags would clash with the
/// AXL flags of `ucbridge sync`).
#[derive(Parser)]
struct CucFromEnv {
    #[command(flatten)]
    connection: crate::cuc_cmd::CucConnection,
}

/// A failure told on stdout already (in the `--json` summary): not told again as JSON.
#[derive(Debug)]
struct InSummary(String);

impl std::fmt::Display for InSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InSummary {}

/// Under `--json` stdout always holds one JSON document: the outcome, or
/// `{"error": {"message", "causes", "hint"?}}` when there is none. The exit status is
/// non-zero either way and stderr keeps the one-line error for people.
pub async fn run(args: VoicemailArgs, file: &FileConfig, store: Store) -> Result<()> {
    let json = args.json;
    let result = sync(args, file, store).await;
    if let (true, Err(e)) = (json, &result) {
        if e.downcast_ref::<InSummary>().is_none() {
            output::json(&json_error(e))?;
        }
    }
    result
}

/// The error as JSON: the whole message, each link of its chain, and the fix when there
/// is one.
fn json_error(e: &anyhow::Error) -> serde_json::Value {
    let causes: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let refused = causes.iter().any(|c| c.contains("--confirm-removals"));
    let mut error = serde_json::json!({
        "message": format!("{e:#}"),
        "causes": causes,
    });
    if refused {
        error["hint"] = CONFIRM_HINT.into();
    }
    serde_json::json!({ "error": error })
}

async fn sync(args: VoicemailArgs, file: &FileConfig, store: Store) -> Result<()> {
    let cuc = CucFromEnv::try_parse_from(["ucbridge"])
        .context("bad UCBRIDGE_CUC_* environment")?
        .connection
        .resolve(file.cuc.as_ref())?;
    let Some(imap) = &file.imap else {
        bail!("voicemail sync needs an [imap] table in the config file (see docs/voicemail.md)");
    };
    let imap = imap.to_settings(std::env::var("UCBRIDGE_IMAP_MASTER_PASSWORD").ok())?;
    let mut options = match &file.voicemail {
        Some(v) => v.to_options()?,
        None => VoicemailOptions::default(),
    };
    options.confirm_removals |= args.confirm_removals;
    let engine = VoicemailEngine::new(store, cuc, imap, options);
    if let Some(user) = &args.user {
        sync_one(&engine, user, args.json).await?;
    } else if !args.watch {
        sync_everyone(&engine, args.json).await?;
    }
    if args.watch {
        watch(&engine, &args, file).await?;
    }
    Ok(())
}

/// One account (`--user`), with its summary.
async fn sync_one(engine: &VoicemailEngine, user: &str, json: bool) -> Result<()> {
    let summary = match engine.sync_account(user).await {
        Ok(s) => s,
        Err(e) if e.is_removal_refused() => {
            bail!("voicemail sync of {user} refused: {e}\n{CONFIRM_HINT}")
        }
        Err(e) => return Err(e).with_context(|| format!("voicemail sync of {user} failed")),
    };
    if json {
        return output::json(&summary);
    }
    outln!(
        "{}: {} messages; IMAP: {} added, {} removed, {} moved, {} flags; CUC: {} read changes, {} deletes",
        summary.cuc_alias,
        summary.messages,
        summary.appended,
        summary.removed_from_imap,
        summary.moved_on_imap,
        summary.seen_changed_on_imap,
        summary.read_changed_on_cuc,
        summary.deleted_on_cuc
    )?;
    if let Some(problem) = &summary.last_audio_problem {
        outln!(
            "{} voicemail(s) without MP3; last: {problem}",
            summary.audio_problems
        )?;
    }
    Ok(())
}

/// Every account once, with a progress bar and a summary table; failed or refused
/// accounts make the exit status non-zero.
async fn sync_everyone(engine: &VoicemailEngine, json: bool) -> Result<()> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} accounts ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress = bar.clone();
    let summary = engine
        .sync_all(&move |done, total| {
            progress.set_length(total as u64);
            progress.set_position(done as u64);
        })
        .await;
    bar.finish_and_clear();
    let summary = summary.context("voicemail sync failed")?;
    if json {
        output::json(&summary)?;
    } else {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED).set_header([
            "accounts",
            "synced",
            "failed",
            "unmatched",
            "added to IMAP",
            "IMAP changes",
            "CUC changes",
            "without MP3",
            "time",
        ]);
        t.add_row([
            summary.accounts.to_string(),
            summary.succeeded.to_string(),
            summary.failed.len().to_string(),
            summary.unmatched.len().to_string(),
            summary.appended.to_string(),
            summary.imap_changes.to_string(),
            summary.cuc_changes.to_string(),
            summary.audio_problems.to_string(),
            format!("{:.1} s", summary.duration_ms as f64 / 1000.0),
        ]);
        outln!("{t}")?;
        for u in &summary.unmatched {
            eprintln!("unmatched: {} ({})", u.cuc_alias, u.reason);
        }
        for (alias, problem) in &summary.audio_problem_accounts {
            eprintln!("without MP3: {alias}: {problem}");
        }
        for (alias, e) in &summary.failed {
            eprintln!("failed: {alias}: {e}");
        }
    }
    if !summary.removals_refused.is_empty() {
        return Err(InSummary(format!(
            "the mass-removal guard refused {} account(s), nothing was removed from them: {}\n{CONFIRM_HINT}",
            summary.removals_refused.len(),
            summary.removals_refused.join(", ")
        ))
        .into());
    }
    if !summary.failed.is_empty() {
        return Err(InSummary(format!("{} account(s) failed", summary.failed.len())).into());
    }
    Ok(())
}

/// Keep syncing (`--watch`): serve the callbacks when `--listen` is given, then run until
/// Ctrl-C.
async fn watch(engine: &VoicemailEngine, args: &VoicemailArgs, file: &FileConfig) -> Result<()> {
    let callback_url = args
        .callback_url
        .clone()
        .or_else(|| file.voicemail.as_ref().and_then(|v| v.callback_url.clone()))
        .or_else(|| args.listen.map(|a| format!("http://{a}/callbacks/cuc")));
    if let Some(addr) = args.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let app = axum::Router::new()
            .nest("/callbacks/cuc", engine.callback_router())
            .nest("/callbacks/imap", engine.imap_push_router());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "callback listener stopped");
            }
        });
        eprintln!("Serving CUC callbacks on http://{addr}/callbacks/cuc");
        if engine.options().imap_push_token.is_some() {
            eprintln!("Serving IMAP push notifications on http://{addr}/callbacks/imap");
        }
    }
    match &callback_url {
        Some(url) => eprintln!("CUC notifications go to {url}"),
        None => {
            eprintln!("No callback URL: CUC changes are picked up by the periodic reconcile only")
        }
    }
    eprintln!("Voicemail sync running; Ctrl-C stops.");
    engine
        .run(callback_url, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
