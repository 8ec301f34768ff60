//! `ucbridge-bench`: ucbridge's benchmarks, outside the shipped binary (it starts
//! throwaway Dovecot and slapd through the test kit and reaches into the server).
//!
//! Scenarios (`--scenario`, see [`args::Scenario`]): `list` (the default: listUser of every
//! user of a lab in a child process, throughput and the client's peak memory),
//! `directory-sync`, `api-load`, `voicemail`, `ldap-export`, `ldap-source`, `merged-sync`
//! and `mp3`. The figures and how
//! they were taken are in docs/benchmark.md.
//!
//! Modules: `args` (flags), `common` (the child lab, CPU and memory figures), `lab_child`
//! (the lab process itself, `ucbridge-bench lab-child`), one module per scenario.

mod api_load;
mod args;
mod chat_api;
mod common;
mod directory_sync;
mod lab_child;
mod ldap_export;
mod ldap_source;
mod list;
mod merged_sync;
mod mp3;
mod signin;
mod voicemail;
mod xmpp;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::args::{BenchArgs, Scenario};

#[derive(Parser)]
#[command(
    name = "ucbridge-bench",
    version,
    about = "ucbridge benchmarks: AXL listing, directory sync, API under load, voicemail, LDAP export, MP3",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(flatten)]
    args: BenchArgs,
    #[command(subcommand)]
    internal: Option<Internal>,
}

#[derive(Subcommand)]
enum Internal {
    /// The lab the AXL scenarios start as a child process.
    #[command(hide = true)]
    LabChild(lab_child::LabChildArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Some(Internal::LabChild(args)) = cli.internal {
        return lab_child::run(args).await;
    }
    let args = cli.args;
    match args.scenario {
        Scenario::List => list::run(args).await,
        Scenario::DirectorySync => directory_sync::run(args).await,
        Scenario::ApiLoad => api_load::run(args).await,
        Scenario::Voicemail => voicemail::run(args).await,
        Scenario::LdapExport => ldap_export::run(args).await,
        Scenario::LdapSource => ldap_source::run(args).await,
        Scenario::MergedSync => merged_sync::run(args).await,
        Scenario::Mp3 => mp3::run(args).await,
        Scenario::Signin => signin::run(args).await,
        Scenario::Xmpp => xmpp::run(args).await,
    }
}
