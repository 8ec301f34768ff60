//! `ucbridge`: the command line of ucbridge.
//!
//! - `demo`: start the built-in CUCM lab and list its users through the AXL client (the
//!   "does it work" command; needs nothing else).
//! - `lab`: run the CUCM AXL emulator for other tools to use.
//! - `axl ...`: talk to any CUCM (or the lab) over AXL.
//! - `bench`: measure listing users from the lab.

mod bench;
mod bench_api;
mod bench_ldap;
mod bench_voicemail;
mod config;
mod cuc_cmd;
mod devices_cmd;
mod ldap_cmd;
mod output;
mod serve_cmd;
mod sso_cmd;
mod sync_cmd;
mod voicemail_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ucbridge_axl::{
    AxlClient, AxlConfig, AxlError, Key, ListOptions, PhoneSearch, PhoneTag, UserSearch, UserTag,
};
use ucbridge_lab::{LabConfig, RunningLab};
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the built-in CUCM lab and list its users over AXL: the quick start.
    Demo {
        /// Users to seed in the lab.
        #[arg(long, default_value_t = 25)]
        users: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the CUCM AXL emulator until Ctrl-C.
    Lab(LabArgs),
    /// Talk to a CUCM over AXL.
    Axl {
        #[command(flatten)]
        connection: AxlConnection,
        /// Print JSON instead of tables.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: AxlCommand,
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
    /// Benchmark: list users from a lab started as a child process.
    Bench(bench::BenchArgs),
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

#[derive(Args, Clone)]
struct LabArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8443")]
    bind: SocketAddr,
    /// End users to seed.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Seed of the generated population (same seed, same users).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// CUCM release to emulate; decides which AXL schemas are accepted.
    #[arg(long, default_value = "14.0.1.14900(11)")]
    cucm_version: String,
    #[arg(long, default_value = "administrator")]
    username: String,
    #[arg(long, default_value = "ucbridge-lab", env = "UCBRIDGE_LAB_PASSWORD")]
    password: String,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    no_tls: bool,
    /// Write the lab's CA certificate (PEM) here, for clients to trust.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Largest list/SQL response before the "Query request too large" fault (CUCM: 8 MB).
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    max_response_bytes: usize,
    /// Concurrent requests above which the lab answers 503.
    #[arg(long)]
    max_concurrent: Option<usize>,
    /// Writes per minute above which the lab answers 503.
    #[arg(long)]
    writes_per_minute: Option<u32>,
    #[command(flatten)]
    cuc: cuc_cmd::LabCucArgs,
}

impl LabArgs {
    fn to_config(&self) -> LabConfig {
        let mut config = LabConfig {
            bind: self.bind,
            tls: !self.no_tls,
            cucm_version: self.cucm_version.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            users: self.users,
            seed: self.seed,
            max_response_bytes: self.max_response_bytes,
            max_concurrent_requests: self.max_concurrent,
            writes_per_minute: self.writes_per_minute,
            ..LabConfig::default()
        };
        self.cuc.apply(&mut config);
        config
    }
}

#[derive(Subcommand)]
enum AxlCommand {
    /// The CUCM release (getCCMVersion) and the AXL schema in use.
    Version,
    /// End users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Phones.
    Phones {
        #[command(subcommand)]
        command: PhonesCommand,
    },
    /// Run a read-only SQL query (executeSQLQuery).
    Sql {
        /// The SELECT statement (Informix SQL; page with SELECT SKIP n FIRST m).
        query: String,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// List end users (listUser, paged).
    List {
        /// userid pattern, `%` is the wildcard.
        #[arg(long)]
        userid: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        department: Option<String>,
        /// Fields to return, comma-separated AXL names (default: a useful set).
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Rows per AXL request.
        #[arg(long, default_value_t = 1000)]
        page_size: u32,
    },
    /// Show one end user (getUser).
    Get { userid: String },
}

#[derive(Subcommand)]
enum PhonesCommand {
    /// List phones (listPhone, paged).
    List {
        /// Device name pattern, `%` is the wildcard.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        device_pool: Option<String>,
        #[arg(long, default_value_t = 1000)]
        page_size: u32,
    },
    /// Show one phone (getPhone).
    Get { name: String },
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
    init_tracing(cli.verbose);
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
            eprintln!("{}", report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,ucbridge=info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo { users, json } => demo(users, json).await,
        Command::Lab(args) => run_lab(args).await,
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
            axl(&client, command, json).await
        }
        Command::Sync {
            connection,
            database_url,
            command,
        } => {
            let file = config::load(cli.config.as_deref())?;
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
                sync_cmd::SyncCommand::Refresh => sync_cmd::refresh(&keeper().await?).await,
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
        Command::Devices {
            connection,
            database_url,
            command,
        } => {
            let file = config::load(cli.config.as_deref())?;
            let settings = devices_cmd::settings(file.provisioning.as_ref())?;
            let store = open_store(database_url, &file).await?;
            let config = connection.resolve(file.axl.as_ref())?;
            let client = AxlClient::connect(config)
                .await
                .context("cannot connect to CUCM AXL")?;
            let p = devices_cmd::provisioner(client, store, settings);
            devices_cmd::run(&p, command).await
        }
        Command::Users {
            database_url,
            command,
        } => {
            let file = config::load(cli.config.as_deref())?;
            let store = open_store(database_url, &file).await?;
            sync_cmd::local_users(&store, command).await
        }
        Command::Bench(args) => bench::run(args).await,
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

async fn open_store(flag: Option<String>, file: &config::FileConfig) -> Result<Store> {
    let url = config::database_url(flag, file);
    Store::open(&url)
        .await
        .with_context(|| format!("cannot open the database {url}"))
}

async fn demo(users: usize, json: bool) -> Result<()> {
    eprintln!("Starting the CUCM lab with {users} users...");
    let lab = RunningLab::start(LabConfig {
        users,
        ..LabConfig::default()
    })
    .await
    .context("cannot start the lab")?;
    let defaults = LabConfig::default();
    let mut config = AxlConfig::new(lab.axl_url(), defaults.username, defaults.password);
    config.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    eprintln!(
        "Lab AXL endpoint: {} (TLS, trusted through the lab's own CA)",
        lab.axl_url()
    );
    let client = AxlClient::connect(config)
        .await
        .context("cannot connect to the lab")?;
    let release = client.get_ccm_version().await?;
    eprintln!(
        "CUCM release {release}, AXL schema {} (discovered with getCCMVersion)\n",
        client.schema_version()
    );
    let started = Instant::now();
    let listed = client
        .list_users(&UserSearch::all(), DEFAULT_USER_TAGS)
        .await
        .context("listUser failed")?;
    let elapsed = started.elapsed();
    output::users(&listed, json)?;
    let stats = client.stats();
    eprintln!(
        "\n{} users listed in {:.0?} with {} AXL requests ({} reused the CUCM session).",
        listed.len(),
        elapsed,
        stats.requests,
        stats.session_reuses
    );

    // Directory sync, both stages, into a throwaway database.
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("demo.db").display()
    ))
    .await?;
    eprintln!("\nDirectory sync into a throwaway SQLite database:");
    let keeper = SnapshotKeeper::new(client.clone(), store.clone(), SnapshotOptions::default());
    sync_cmd::refresh(&keeper).await?;
    let rules = ucbridge_sync::SyncRules::default().compile()?;
    sync_cmd::users(&store, &rules, SyncOptions::default(), false).await?;
    store.close().await;
    lab.shutdown().await;
    Ok(())
}

async fn run_lab(args: LabArgs) -> Result<()> {
    let lab = RunningLab::start(args.to_config())
        .await
        .context("cannot start the lab")?;
    if let (Some(path), Some(pem)) = (&args.ca_out, lab.ca_certificate_pem()) {
        std::fs::write(path, pem)
            .with_context(|| format!("cannot write the CA to {}", path.display()))?;
    }
    println!("CUCM lab (release {}) listening", args.cucm_version);
    println!("  AXL endpoint: {}", lab.axl_url());
    println!("  credentials:  {} / (the --password value)", args.username);
    println!("  users seeded: {} (seed {})", args.users, args.seed);
    cuc_cmd::print_lab_endpoints(&lab, &args.cuc);
    match &args.ca_out {
        Some(path) => println!("  CA certificate written to {}", path.display()),
        None if !args.no_tls => {
            println!("  TLS: self-signed; pass --ca-out FILE to get the CA for clients")
        }
        None => println!("  TLS: off (plain HTTP)"),
    }
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    lab.shutdown().await;
    Ok(())
}

const DEFAULT_USER_TAGS: &[UserTag] = &[
    UserTag::Userid,
    UserTag::FirstName,
    UserTag::LastName,
    UserTag::Mailid,
    UserTag::Department,
    UserTag::TelephoneNumber,
    UserTag::PrimaryExtension,
];

async fn axl(client: &AxlClient, command: AxlCommand, json: bool) -> Result<()> {
    match command {
        AxlCommand::Version => {
            let release = client.get_ccm_version().await?;
            if json {
                output::json(&serde_json::json!({
                    "release": release,
                    "schema": client.schema_version().to_string(),
                }))
            } else {
                println!("CUCM release: {release}");
                println!("AXL schema:   {}", client.schema_version());
                Ok(())
            }
        }
        AxlCommand::Users { command } => match command {
            UsersCommand::List {
                userid,
                last_name,
                first_name,
                department,
                tags,
                page_size,
            } => {
                let tags: Vec<UserTag> = if tags.is_empty() {
                    DEFAULT_USER_TAGS.to_vec()
                } else {
                    tags.iter().map(|t| t.parse()).collect::<Result<_, _>>()?
                };
                let search = UserSearch {
                    first_name,
                    last_name,
                    userid,
                    department,
                };
                let progress = output::counter("users");
                let mut all = Vec::new();
                client
                    .for_each_user_page(
                        &search,
                        &tags,
                        ListOptions {
                            page_size,
                            ..ListOptions::default()
                        },
                        async |page| {
                            progress.inc(page.len() as u64);
                            all.extend(page);
                            Ok::<_, AxlError>(())
                        },
                    )
                    .await?;
                progress.finish_and_clear();
                output::users(&all, json)
            }
            UsersCommand::Get { userid } => {
                let user = client.get_user(Key::Name(&userid)).await?;
                output::user_detail(&user, json)
            }
        },
        AxlCommand::Phones { command } => match command {
            PhonesCommand::List {
                name,
                device_pool,
                page_size,
            } => {
                let search = PhoneSearch {
                    name,
                    device_pool,
                    ..PhoneSearch::default()
                };
                let tags = [
                    PhoneTag::Name,
                    PhoneTag::Description,
                    PhoneTag::Product,
                    PhoneTag::Protocol,
                    PhoneTag::DevicePoolName,
                    PhoneTag::OwnerUserName,
                ];
                let progress = output::counter("phones");
                let mut all = Vec::new();
                client
                    .for_each_phone_page(
                        &search,
                        &tags,
                        ListOptions {
                            page_size,
                            ..ListOptions::default()
                        },
                        async |page| {
                            progress.inc(page.len() as u64);
                            all.extend(page);
                            Ok::<_, AxlError>(())
                        },
                    )
                    .await?;
                progress.finish_and_clear();
                output::phones(&all, json)
            }
            PhonesCommand::Get { name } => {
                let phone = client.get_phone(Key::Name(&name)).await?;
                output::phone_detail(&phone, json)
            }
        },
        AxlCommand::Sql { query } => {
            let rows = client
                .execute_sql_query(ucbridge_axl::SqlQuery::raw(query))
                .await?;
            output::sql_rows(&rows, json)
        }
    }
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
