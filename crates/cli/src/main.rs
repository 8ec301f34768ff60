//! `ucbridge`: the command line of ucbridge.
//!
//! - `demo`: start the built-in CUCM lab and list its users through the AXL client (the
//!   "does it work" command; needs nothing else).
//! - `lab`: run the CUCM AXL emulator for other tools to use.
//! - `axl ...`: talk to any CUCM (or the lab) over AXL.
//! - `serve`: the server; `sync`, `users`, `devices`, `ldap`, `cuc`, `sso`, `admin`: each
//!   engine and client once, from the shell.
//!
//! The lab (`demo`, `lab`, `serve --lab`) is the default cargo feature `lab`; benchmarks are
//! the separate `ucbridge-bench` binary (crate `crates/bench`), so no test support ships here.
//! Standard output is written through `output` only: a closed pipe ends any command quietly
//! with status 0, as ripgrep does (see [`output::StdoutClosed`]).
#![deny(clippy::print_stdout)]

mod auth_cmd;
mod axl_cmd;
mod backup_cmd;
mod config;
mod config_check;
mod cuc_cmd;
mod devices_cmd;
#[cfg(feature = "lab")]
mod lab_cmd;
mod ldap_cmd;
mod output;
mod serve_cmd;
mod sso_cmd;
mod sync_cmd;
mod voicemail_cmd;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ucbridge_axl::{AxlClient, AxlError};
use ucbridge_store::{RunStatus, Store};
use ucbridge_sync::{SnapshotKeeper, SnapshotOptions, SyncOptions};

use crate::config::AxlConnection;

#[derive(Parser)]
#[command(
    name = "ucbridge",
    version,
    about = "Integration server for Cisco Unified Communications"
)]
struct Cli {
    /// TOML configuration file (see docs/cli.md).
    #[arg(long, global = true, env = "UCBRIDGE_CONFIG")]
    config: Option<PathBuf>,
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log lines on stderr as text, or as JSON objects (one a line) for log shippers.
    #[arg(long, global = true, env = "UCBRIDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event: timestamp, level, target, fields (message included), spans.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// The quick start: the built-in CUCM lab, its users over AXL, directory sync, a
    /// sign-in with a user's CUCM password and their WebPhone.
    #[cfg(feature = "lab")]
    Demo {
        /// Users to seed in the lab.
        #[arg(long, default_value_t = 25)]
        users: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the CUCM AXL emulator until Ctrl-C.
    #[cfg(feature = "lab")]
    Lab(lab_cmd::LabArgs),
    /// Talk to a CUCM over AXL.
    Axl {
        #[command(flatten)]
        connection: AxlConnection,
        /// Print JSON instead of tables.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: axl_cmd::AxlCommand,
    },
    /// Directory sync: CUCM end users into ucbridge's users.
    Sync {
        #[command(flatten)]
        connection: AxlConnection,
        /// Database URL (sqlite://… or postgres://…); default: SQLite in the data directory.
        #[arg(long, global = true, env = "UCBRIDGE_DATABASE_URL")]
        database_url: Option<String>,
        #[command(subcommand)]
        command: sync_cmd::SyncCommand,
    },
    /// Per-user secure third-party SIP devices with a digest user (see [provisioning]).
    Devices {
        #[command(flatten)]
        connection: AxlConnection,
        #[arg(long, global = true, env = "UCBRIDGE_DATABASE_URL")]
        database_url: Option<String>,
        #[command(subcommand)]
        command: devices_cmd::DevicesCommand,
    },
    /// ucbridge's users (as directory sync made them).
    Users {
        #[arg(long, global = true, env = "UCBRIDGE_DATABASE_URL")]
        database_url: Option<String>,
        #[command(subcommand)]
        command: sync_cmd::LocalUsersCommand,
    },
    /// End users' sign-in with CUCM credentials: check a password; Dovecot's passdb.
    Auth {
        #[command(flatten)]
        connection: AxlConnection,
        #[arg(long, global = true, env = "UCBRIDGE_DATABASE_URL")]
        database_url: Option<String>,
        #[command(subcommand)]
        command: auth_cmd::AuthCommand,
    },
    /// Talk to Unity Connection (CUMI messages, CUPI users).
    Cuc {
        #[command(flatten)]
        connection: cuc_cmd::CucConnection,
        /// Print JSON instead of tables.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: cuc_cmd::CucCommand,
    },
    /// Run the server: REST API, admin page and the scheduled jobs.
    Serve {
        #[arg(long, env = "UCBRIDGE_DATABASE_URL")]
        database_url: Option<String>,
        #[command(flatten)]
        args: serve_cmd::ServeArgs,
    },
    /// Accounts of the admin page and API tokens.
    Admin {
        #[arg(long, global = true, env = "UCBRIDGE_DATABASE_URL")]
        database_url: Option<String>,
        #[command(subcommand)]
        command: serve_cmd::AdminCommand,
    },
    /// LDAP export of ucbridge's users: uid, password, telephoneNumber (see [ldap_export]).
    Ldap {
        #[arg(long, global = true, env = "UCBRIDGE_DATABASE_URL")]
        database_url: Option<String>,
        #[command(subcommand)]
        command: ldap_cmd::LdapCommand,
    },
    /// The configuration: `config check` reports every problem at once.
    Config {
        #[command(subcommand)]
        command: config_check::ConfigCommand,
    },
    /// SSO: tokens from an identity service, the SSO Status API.
    Sso {
        #[command(flatten)]
        connection: sso_cmd::SsoConnection,
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: sso_cmd::SsoCommand,
    },
}

/// The error as one line — contexts and the first message that already names the root
/// cause; the lower-level links below it only repeat it (reqwest → hyper → io) — plus a
/// hint when the command line has a fix for it.
fn report(error: &anyhow::Error) -> String {
    let chain: Vec<String> = error.chain().map(|e| e.to_string()).collect();
    let root = chain
        .last()
        .map(|r| r.trim().to_owned())
        .unwrap_or_default();
    let mut pieces: Vec<&str> = Vec::new();
    for message in &chain {
        let message = message.trim();
        if message.is_empty() || pieces.iter().any(|p| p.contains(message)) {
            continue;
        }
        // "a" followed by "a: b" says it twice: keep the longer one.
        if pieces.last().is_some_and(|last| message.contains(last)) {
            pieces.pop();
        }
        pieces.push(message);
        if message.contains(&root) {
            break;
        }
    }
    let mut out = format!("error: {}", pieces.join(": "));
    if let Some(hint) = hint(error) {
        out.push_str("\nhint: ");
        out.push_str(hint);
    }
    out
}

/// The command line's fix for a failure the AXL client classified.
fn hint(error: &anyhow::Error) -> Option<&'static str> {
    use ucbridge_axl::TransportKind as K;
    let axl = error.chain().find_map(|e| e.downcast_ref::<AxlError>())?;
    if let Some(kind) = axl.transport_kind() {
        return match kind {
            K::UntrustedCertificate | K::BadCertificate => Some(
                "trust CUCM's CA with --ca-file FILE (or UCBRIDGE_AXL_CA_FILE, [axl] ca_file); \
                 --insecure skips verification (labs only)",
            ),
            K::CertificateNameMismatch => Some(
                "use the host name in CUCM's certificate in --url (UCBRIDGE_AXL_URL); \
                 --insecure skips verification (labs only)",
            ),
            K::ConnectionRefused | K::Dns => {
                Some("check --url (UCBRIDGE_AXL_URL): CUCM serves AXL at https://HOST:8443/axl/")
            }
            _ => None,
        };
    }
    match axl {
        AxlError::Timeout { .. } => Some(
            "--request-timeout / --total-timeout (UCBRIDGE_AXL_REQUEST_TIMEOUT, \
             UCBRIDGE_AXL_TOTAL_TIMEOUT) change the deadlines",
        ),
        AxlError::ResponseTooLarge { status: 200, .. } => {
            Some("--max-response-mib (UCBRIDGE_AXL_MAX_RESPONSE_MIB) changes the cap")
        }
        _ => None,
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose, cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`ucbridge … | head`): what it wanted it got; end quietly
        // with 0, as ripgrep does, rather than the 141 of a process killed by SIGPIPE.
        Err(e) if output::is_stdout_closed(&e) => std::process::ExitCode::SUCCESS,
        Err(e) if auth_cmd::exit_code(&e).is_some() => {
            std::process::ExitCode::from(auth_cmd::exit_code(&e).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("{}", report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "info,ucbridge=info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        // The same fields as the text lines, as JSON; never colour codes.
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        #[cfg(feature = "lab")]
        Command::Demo { users, json } => lab_cmd::demo(users, json).await,
        #[cfg(feature = "lab")]
        Command::Lab(args) => lab_cmd::run_lab(args).await,
        Command::Axl {
            connection,
            json,
            command,
        } => {
            let file = config::load(cli.config.as_deref())?;
            let config = connection.resolve(file.axl.as_ref())?;
            let client = AxlClient::connect(config)
                .await
                .context("cannot connect to CUCM AXL")?;
            axl_cmd::run(&client, command, json).await
        }
        Command::Sync {
            connection,
            database_url,
            command,
        } => run_sync(connection, database_url, command, cli.config.as_deref()).await,
        Command::Devices {
            connection,
            database_url,
            command,
        } => {
            let file = config::load(cli.config.as_deref())?;
            let settings = devices_cmd::settings(file.provisioning.as_ref())?;
            let store = open_store(database_url, &file).await?;
            let client = devices_cmd::connect(&command, &file, &store, || {
                connection.resolve(file.axl.as_ref())
            })
            .await?;
            let p = devices_cmd::provisioner(client, store, settings);
            devices_cmd::run(&p, command).await
        }
        Command::Auth {
            connection,
            database_url,
            command,
        } => auth_cmd::run(command, connection, database_url, cli.config.as_deref()).await,
        Command::Users {
            database_url,
            command,
        } => {
            let file = config::load(cli.config.as_deref())?;
            let store = open_store(database_url, &file).await?;
            sync_cmd::local_users(&store, command).await
        }
        Command::Cuc {
            connection,
            json,
            command,
        } => {
            let file = config::load(cli.config.as_deref())?;
            let client = connection.resolve(file.cuc.as_ref())?;
            cuc_cmd::run(&client, command, json).await
        }
        Command::Serve { database_url, args } => {
            let file = config::load(cli.config.as_deref())?;
            let store = open_store(database_url, &file).await?;
            serve_cmd::serve(args, &file, store).await
        }
        Command::Admin {
            database_url,
            command: serve_cmd::AdminCommand::Data(command),
        } => {
            let file = config::load(cli.config.as_deref())?;
            backup_cmd::run(command, database_url, &file).await
        }
        Command::Admin {
            database_url,
            command,
        } => {
            let file = config::load(cli.config.as_deref())?;
            let store = open_store(database_url, &file).await?;
            serve_cmd::admin(&store, command).await
        }
        Command::Ldap {
            database_url,
            command,
        } => {
            let file = config::load(cli.config.as_deref())?;
            let store = open_store(database_url, &file).await?;
            ldap_cmd::run(store, file.ldap_export.as_ref(), command).await
        }
        Command::Config { command } => config_check::run(command, cli.config.as_deref()).await,
        Command::Sso {
            connection,
            json,
            command,
        } => {
            let file = config::load(cli.config.as_deref())?;
            sso_cmd::run(connection, file.sso.as_ref(), command, json).await
        }
    }
}

/// `ucbridge sync …`: the snapshot, user sync, status, voicemail and watch.
async fn run_sync(
    connection: AxlConnection,
    database_url: Option<String>,
    command: sync_cmd::SyncCommand,
    config_path: Option<&std::path::Path>,
) -> Result<()> {
    let file = config::load(config_path)?;
    let store = open_store(database_url, &file).await?;
    let rules = file
        .directory_sync
        .clone()
        .unwrap_or_default()
        .compile()
        .context("bad [directory_sync] rules")?;
    let snapshot_options = match &file.snapshot {
        Some(s) => s.to_options()?,
        None => SnapshotOptions::default(),
    };
    let keeper = async || -> Result<SnapshotKeeper> {
        let config = connection.clone().resolve(file.axl.as_ref())?;
        let client = AxlClient::connect(config)
            .await
            .context("cannot connect to CUCM AXL")?;
        Ok(SnapshotKeeper::new(
            client,
            store.clone(),
            snapshot_options.clone(),
        ))
    };
    match command {
        sync_cmd::SyncCommand::Refresh { source } => match source.as_deref() {
            None | Some(ucbridge_store::SOURCE_CUCM) => sync_cmd::refresh(&keeper().await?).await,
            Some(name) => sync_cmd::refresh_source(&store, &file, name).await,
        },
        sync_cmd::SyncCommand::Users {
            dry_run,
            confirm_removals,
            refresh,
            full,
            json,
        } => {
            if refresh {
                sync_cmd::refresh(&keeper().await?).await?;
            }
            let options = SyncOptions {
                dry_run,
                confirm_removals,
                full,
                ..SyncOptions::default()
            };
            let outcome = sync_cmd::users(&store, &rules, options, json).await?;
            if outcome.status == RunStatus::Refused {
                anyhow::bail!("the user sync was refused (see above); nothing was changed");
            }
            Ok(())
        }
        sync_cmd::SyncCommand::Status { json } => sync_cmd::status(&store, json).await,
        sync_cmd::SyncCommand::Voicemail(args) => {
            voicemail_cmd::run(args, &file, store.clone()).await
        }
        sync_cmd::SyncCommand::Watch => {
            let keeper = keeper().await?;
            eprintln!("Keeping the CUCM snapshot fresh; Ctrl-C stops.");
            keeper
                .run(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await;
            Ok(())
        }
    }
}

async fn open_store(flag: Option<String>, file: &config::FileConfig) -> Result<Store> {
    let url = config::database_url(flag, file);
    Store::open(&url)
        .await
        .with_context(|| format!("cannot open the database {url}"))
}

#[cfg(test)]
mod tests {
    use super::report;

    /// An error with a message and an optional cause, like the layers of a reqwest error.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    fn chain(messages: &[&'static str]) -> anyhow::Error {
        let mut layer: Option<Box<Layer>> = None;
        for m in messages.iter().rev() {
            layer = Some(Box::new(Layer(m, layer)));
        }
        anyhow::Error::new(*layer.unwrap())
    }

    #[test]
    fn the_chain_stops_once_the_root_cause_is_said() {
        let e = chain(&[
            "getCCMVersion: http://127.0.0.1:9: connection refused (Connection refused (os error 111))",
            "error sending request for url (http://127.0.0.1:9/axl/)",
            "client error (Connect)",
            "tcp connect error",
            "Connection refused (os error 111)",
        ])
        .context("cannot connect to CUCM AXL");
        assert_eq!(
            report(&e),
            "error: cannot connect to CUCM AXL: getCCMVersion: http://127.0.0.1:9: connection refused (Connection refused (os error 111))"
        );
    }

    #[test]
    fn repeated_and_contained_messages_print_once() {
        let e = chain(&["a: b", "b", "b"]).context("a");
        assert_eq!(report(&e), "error: a: b");
        let e = chain(&["one", "two", "three"]);
        assert_eq!(report(&e), "error: one: two: three");
    }
}
