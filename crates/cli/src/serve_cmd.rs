//! `ucbridge serve` and `ucbridge admin ...`: run the server; manage its accounts and
//! API tokens from the shell.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ucbridge_auth::SecretBox;
use ucbridge_server::connections;
#[cfg(feature = "lab")]
use ucbridge_server::connections::{
    AuthMode, ConnectionOptions, ConnectionSettings, ConnectionUpdate, IdsOptions,
};
use ucbridge_server::{JobDefaults, Server, ServerConfig, ServerFileConfig, TlsFiles};
use ucbridge_store::{Role, Store};

use crate::config::{self, FileConfig};
use crate::output::outln;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address of the API and admin page (default 127.0.0.1:8080).
    #[arg(long, env = "UCBRIDGE_BIND")]
    bind: Option<SocketAddr>,
    /// This node's name in leases and job runs (default: host-pid-random).
    #[arg(long, env = "UCBRIDGE_NODE_ID")]
    node_id: Option<String>,
    /// Lease TTL, e.g. 15s.
    #[arg(long)]
    lease_ttl: Option<humantime::Duration>,
    /// Scheduler tick, e.g. 1s.
    #[arg(long)]
    tick: Option<humantime::Duration>,
    /// Browser origins allowed to call the API (repeatable).
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// Serve /metrics without authentication.
    #[arg(long)]
    metrics_public: bool,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, env = "UCBRIDGE_TLS_CERT_FILE")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "UCBRIDGE_TLS_KEY_FILE")]
    tls_key: Option<PathBuf>,
    /// Serve the API only; run no jobs on this node.
    #[arg(long)]
    no_jobs: bool,
    /// Also start the built-in lab (CUCM, CUC, IdS) and point unconfigured connections at
    /// it: the zero-setup way to try everything.
    #[cfg(feature = "lab")]
    #[arg(long)]
    lab: bool,
    /// End users in the built-in lab.
    #[cfg(feature = "lab")]
    #[arg(long, default_value_t = 200)]
    lab_users: usize,
    /// Print "listening on <url>" as the first stdout line (for scripts and tests).
    #[arg(long, hide = true)]
    print_url: bool,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an admin-page account or set its password and role. The password comes from
    /// UCBRIDGE_ADMIN_PASSWORD or the first line of stdin.
    SetAccount {
        username: String,
        /// admin or read-only.
        #[arg(long, default_value = "admin")]
        role: String,
    },
    /// Remove an account (its sessions end).
    DeleteAccount { username: String },
    /// List accounts and API tokens.
    List,
    /// Create an API token (printed once; only its hash is kept).
    CreateToken {
        name: String,
        #[arg(long, default_value = "read-only")]
        role: String,
    },
    /// Revoke an API token.
    DeleteToken { name: String },
}

/// The `[server]` HTTP timeouts, connection limit and connection-test deadline.
fn http_limits(c: &mut ServerConfig, f: Option<&ServerFileConfig>) -> Result<()> {
    let Some(f) = f else { return Ok(()) };
    let positive = |name: &str, v: &Option<String>| -> Result<Option<Duration>> {
        match duration(name, v.as_deref())? {
            Some(d) if d.is_zero() => bail!("[server] {name} must be more than 0"),
            d => Ok(d),
        }
    };
    let h = &mut c.http;
    for (name, value, target) in [
        (
            "header_read_timeout",
            &f.header_read_timeout,
            &mut h.header_read_timeout,
        ),
        (
            "body_read_timeout",
            &f.body_read_timeout,
            &mut h.body_read_timeout,
        ),
        ("idle_timeout", &f.idle_timeout, &mut h.idle_timeout),
        (
            "request_timeout",
            &f.request_timeout,
            &mut h.request_timeout,
        ),
        (
            "connection_test_timeout",
            &f.connection_test_timeout,
            &mut c.connection_test_timeout,
        ),
    ] {
        if let Some(d) = positive(name, value)? {
            *target = d;
        }
    }
    match f.max_connections {
        Some(0) => bail!("[server] max_connections must be at least 1"),
        Some(n) => h.max_connections = n,
        None => {}
    }
    Ok(())
}

fn duration(name: &str, v: Option<&str>) -> Result<Option<Duration>> {
    v.map(|v| humantime::parse_duration(v).with_context(|| format!("bad [server] {name} {v:?}")))
        .transpose()
}

/// The key that seals secrets: `UCBRIDGE_SECRET_KEY`, `UCBRIDGE_SECRET_KEY_FILE`, the
/// configured key file, else `secret.key` in the data directory (created, mode 0600).
pub fn secret_box(file: &FileConfig) -> Result<SecretBox> {
    let configured = file.server.as_ref().and_then(|s| s.secret_key_file.clone());
    match SecretBox::from_env_or_file(configured.as_deref()) {
        Ok(b) => return Ok(b),
        Err(ucbridge_auth::SecretKeyError::Missing) => {}
        Err(e) => return Err(e.into()),
    }
    let path = config::data_dir().join("secret.key");
    if !path.exists() {
        create_key_file(&path)?;
        eprintln!(
            "Created a key for secrets at rest in {} (back it up: without it stored passwords cannot be read).",
            path.display()
        );
    }
    Ok(SecretBox::from_file(&path)?)
}

fn create_key_file(path: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(SecretBox::generate_key_base64().as_bytes())?;
    Ok(())
}

pub fn server_config(args: &ServeArgs, file: &FileConfig) -> Result<ServerConfig> {
    let f = file.server.as_ref();
    let mut c = ServerConfig::default();
    if let Some(b) = args.bind.or(f.and_then(|f| f.bind)) {
        c.bind = b;
    }
    c.node_id = args.node_id.clone().or(f.and_then(|f| f.node_id.clone()));
    if let Some(d) = args.lease_ttl.map(Into::into).or(duration(
        "lease_ttl",
        f.and_then(|f| f.lease_ttl.as_deref()),
    )?) {
        c.lease_ttl = d;
    }
    if let Some(d) = args
        .tick
        .map(Into::into)
        .or(duration("tick", f.and_then(|f| f.tick.as_deref()))?)
    {
        c.tick = d;
    }
    if let Some(d) = duration("session_ttl", f.and_then(|f| f.session_ttl.as_deref()))? {
        c.session_ttl = d;
    }
    if c.tick * 3 > c.lease_ttl {
        bail!("the scheduler tick ({:?}) must be at most a third of the lease TTL ({:?}) so leases are renewed in time", c.tick, c.lease_ttl);
    }
    c.cors_origins = args.cors_origins.clone();
    c.cors_origins
        .extend(f.map(|f| f.cors_origins.clone()).unwrap_or_default());
    c.secure_cookies = f.is_some_and(|f| f.secure_cookies);
    c.signin = file.signin.clone().unwrap_or_default();
    let cert = args
        .tls_cert
        .clone()
        .or_else(|| f.and_then(|f| f.tls_cert_file.clone()));
    let key = args
        .tls_key
        .clone()
        .or_else(|| f.and_then(|f| f.tls_key_file.clone()));
    c.tls = match (cert, key) {
        (Some(cert_file), Some(key_file)) => Some(TlsFiles {
            cert_file,
            key_file,
        }),
        (None, None) => None,
        _ => bail!("HTTPS needs both a certificate and a key (tls_cert_file and tls_key_file, or --tls-cert and --tls-key)"),
    };
    if let Some(n) = f.and_then(|f| f.login_attempts_per_minute) {
        c.login_attempts_per_minute = n;
    }
    http_limits(&mut c, f)?;
    c.public_url = f.and_then(|f| f.public_url.clone());
    c.metrics_public = args.metrics_public || f.is_some_and(|f| f.metrics_public);
    c.run_jobs = !args.no_jobs;
    if let Some(s) = &file.snapshot {
        c.snapshot = s.to_options()?;
    }
    c.jobs = JobDefaults {
        user_sync: file
            .directory_sync
            .as_ref()
            .and_then(|r| r.schedule.clone()),
        devices: f.and_then(|f| f.devices_schedule.clone()),
        ldap_export: f.and_then(|f| f.ldap_export_schedule.clone()),
    };
    for (key, schedule) in [
        ("[directory_sync] schedule", &c.jobs.user_sync),
        ("[server] devices_schedule", &c.jobs.devices),
        ("[server] ldap_export_schedule", &c.jobs.ldap_export),
    ] {
        if let Some(text) = schedule {
            ucbridge_sync::schedule::Schedule::parse(text)
                .map_err(|e| anyhow::anyhow!("bad {key}: {e}"))?;
        }
    }
    Ok(c)
}

/// First start: an admin account from UCBRIDGE_ADMIN_PASSWORD (user UCBRIDGE_ADMIN_USER,
/// default "admin") when there is none yet.
async fn bootstrap_admin(store: &Store) -> Result<()> {
    if !store.admin_accounts().await?.is_empty() {
        return Ok(());
    }
    match std::env::var("UCBRIDGE_ADMIN_PASSWORD") {
        Ok(password) if !password.is_empty() => {
            let user = std::env::var("UCBRIDGE_ADMIN_USER").unwrap_or_else(|_| "admin".into());
            ucbridge_server::auth::set_account(store, &user, &password, Role::Admin)
                .await
                .context("cannot create the first admin account from UCBRIDGE_ADMIN_PASSWORD")?;
            eprintln!("Created the admin account {user:?}.");
        }
        _ => eprintln!(
            "No admin account yet: create one with `UCBRIDGE_ADMIN_PASSWORD=... ucbridge admin set-account admin` (or set UCBRIDGE_ADMIN_PASSWORD before `serve`)."
        ),
    }
    Ok(())
}

/// Seed from the configuration file what the admin page edits later: connections and
/// voicemail options (the server reads the tables: `connections::file`), and the
/// directory sync rules. What the admin page saved wins.
async fn seed_from_file(store: &Store, secrets: &SecretBox, file: &FileConfig) -> Result<()> {
    connections::file::seed(store, secrets, file.seed_tables())
        .await
        .context("cannot seed the connections from the configuration file")?;
    if let Some(rules) = &file.directory_sync {
        rules.compile().context("bad [directory_sync] rules")?;
        let text = serde_json::to_string(rules)?;
        store
            .put_setting(
                ucbridge_server::jobs::RULES_SETTING,
                &text,
                ucbridge_store::SecretUpdate::Clear,
                Some("config file"),
                true,
            )
            .await?;
    }
    Ok(())
}

/// Point unconfigured connections at a lab started in this process.
#[cfg(feature = "lab")]
async fn seed_lab(
    store: &Store,
    secrets: &SecretBox,
    lab: &ucbridge_lab::RunningLab,
    user: &str,
    password: &str,
) -> Result<()> {
    let ca = lab.ca_certificate_pem().map(str::to_owned);
    let conn = |url: String, options: ConnectionOptions| ConnectionUpdate {
        settings: ConnectionSettings {
            url,
            username: user.to_owned(),
            auth: AuthMode::Basic,
            ca_pem: ca.clone(),
            insecure_skip_tls_verify: false,
            options: options.to_stored(),
        },
        password: Some(password.to_owned()),
    };
    let ids_options = ConnectionOptions::Ids(IdsOptions {
        status_url: Some(lab.unifiedconfig_url()),
        ..IdsOptions::default()
    });
    for (kind, update) in [
        (
            "cucm",
            conn(lab.axl_url(), ConnectionOptions::Cucm(Default::default())),
        ),
        (
            "cuc",
            conn(lab.cuc_url(), ConnectionOptions::Cuc(Default::default())),
        ),
        ("ids", conn(lab.ids_token_url(), ids_options)),
    ] {
        if connections::save(store, secrets, kind, update, Some("built-in lab"), true).await? {
            eprintln!("The {kind} connection points at the built-in lab.");
        }
    }
    Ok(())
}

pub async fn serve(args: ServeArgs, file: &FileConfig, store: Store) -> Result<()> {
    let config = server_config(&args, file)?;
    let secrets = secret_box(file)?;
    bootstrap_admin(&store).await?;
    seed_from_file(&store, &secrets, file).await?;
    #[cfg(feature = "lab")]
    let lab = if args.lab {
        let lab_config = ucbridge_lab::LabConfig {
            users: args.lab_users,
            ..ucbridge_lab::LabConfig::default()
        };
        let (user, password) = (lab_config.username.clone(), lab_config.password.clone());
        let lab = ucbridge_lab::RunningLab::start(lab_config)
            .await
            .context("cannot start the built-in lab")?;
        eprintln!("Built-in lab (CUCM AXL, CUC, IdS) at {}", lab.cuc_url());
        seed_lab(&store, &secrets, &lab, &user, &password).await?;
        Some(lab)
    } else {
        None
    };
    let server = Server::start(store, secrets, config)
        .await
        .context("cannot start the server")?;
    if args.print_url {
        outln!("listening on {}", server.url())?;
    }
    eprintln!(
        "ucbridge is serving the admin page at {}/ (node {}); Ctrl-C stops.",
        server.url(),
        server.node_id()
    );
    let stop = server.shutdown_token();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    #[cfg(unix)]
    {
        let stop = server.shutdown_token();
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::spawn(async move {
                term.recv().await;
                stop.cancel();
            });
        }
    }
    server.wait().await;
    #[cfg(feature = "lab")]
    drop(lab);
    eprintln!("stopped");
    Ok(())
}

fn role(text: &str) -> Result<Role> {
    Role::parse(text).with_context(|| format!("unknown role {text:?}: use admin or read-only"))
}

fn admin_password() -> Result<String> {
    if let Ok(p) = std::env::var("UCBRIDGE_ADMIN_PASSWORD") {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.is_empty() {
        bail!("no password: set UCBRIDGE_ADMIN_PASSWORD or pipe it on stdin");
    }
    Ok(p)
}

pub async fn admin(store: &Store, command: AdminCommand) -> Result<()> {
    match command {
        AdminCommand::SetAccount { username, role: r } => {
            let role = role(&r)?;
            let account =
                ucbridge_server::auth::set_account(store, &username, &admin_password()?, role)
                    .await?;
            outln!("account {} ({})", account.username, account.role.as_str())?;
        }
        AdminCommand::DeleteAccount { username } => {
            if !store.delete_admin_account(&username).await? {
                bail!("no account {username:?}");
            }
            outln!("deleted {username}")?;
        }
        AdminCommand::List => {
            for a in store.admin_accounts().await? {
                outln!("account  {:<24} {}", a.username, a.role.as_str())?;
            }
            for t in store.api_tokens().await? {
                outln!("token    {:<24} {}", t.name, t.role.as_str())?;
            }
        }
        AdminCommand::CreateToken { name, role: r } => {
            let role = role(&r)?;
            let token = ucbridge_server::auth::new_api_token();
            store
                .create_api_token(&name, &ucbridge_server::auth::token_hash(&token), role)
                .await?;
            eprintln!(
                "API token {name:?} ({}) created; it is shown only now:",
                role.as_str()
            );
            outln!("{token}")?;
        }
        AdminCommand::DeleteToken { name } => {
            if !store.delete_api_token(&name).await? {
                bail!("no API token {name:?}");
            }
            outln!("revoked {name}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn config(flags: &[&str], toml_text: &str) -> Result<ServerConfig> {
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(flags.iter().copied()))?;
        let file: FileConfig = toml::from_str(toml_text)?;
        server_config(&cli.serve, &file)
    }

    #[test]
    fn https_needs_a_certificate_and_a_key_from_flags_or_the_file() {
        let plain = config(&[], "").unwrap();
        assert!(plain.tls.is_none());
        let from_flags = config(&["--tls-cert", "c.pem", "--tls-key", "k.pem"], "").unwrap();
        let tls = from_flags.tls.expect("tls");
        assert_eq!(
            (tls.cert_file.as_path(), tls.key_file.as_path()),
            (Path::new("c.pem"), Path::new("k.pem"))
        );
        let from_file = config(
            &[],
            "[server]\ntls_cert_file = \"/etc/u/c.pem\"\ntls_key_file = \"/etc/u/k.pem\"\n",
        )
        .unwrap();
        assert!(from_file.tls.is_some());
        let err = config(&["--tls-cert", "c.pem"], "").unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
        let err = config(&[], "[server]\ntls_key_file = \"k.pem\"\n").unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
    }

    /// Issue 18: `every 99999999999d` made `serve` exit with a panic (101).
    #[test]
    fn schedules_are_validated_with_the_key_named() {
        let err = config(&[], "[server]\ndevices_schedule = \"every 99999999999d\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("devices_schedule") && err.contains("366 days"),
            "{err}"
        );
        let err = config(&[], "[directory_sync]\nschedule = \"whenever\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[directory_sync] schedule"), "{err}");
        let ok = config(&[], "[server]\nldap_export_schedule = \"every 1h\"\n").unwrap();
        assert_eq!(ok.jobs.ldap_export.as_deref(), Some("every 1h"));
    }

    /// Issue 18: the HTTP limits are `[server]` keys; zero is refused.
    #[test]
    fn http_limits_are_server_keys() {
        let c = config(
            &[],
            "[server]\nheader_read_timeout = \"5s\"\nbody_read_timeout = \"20s\"\nidle_timeout = \"2m\"\nrequest_timeout = \"90s\"\nmax_connections = 64\nconnection_test_timeout = \"3s\"\n",
        )
        .unwrap();
        assert_eq!(c.http.header_read_timeout, Duration::from_secs(5));
        assert_eq!(c.http.body_read_timeout, Duration::from_secs(20));
        assert_eq!(c.http.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.http.request_timeout, Duration::from_secs(90));
        assert_eq!(c.http.max_connections, 64);
        assert_eq!(c.connection_test_timeout, Duration::from_secs(3));
        let default = config(&[], "").unwrap();
        assert_eq!(default.http.max_connections, 512);
        for bad in ["max_connections = 0", "idle_timeout = \"0s\""] {
            assert!(config(&[], &format!("[server]\n{bad}\n")).is_err(), "{bad}");
        }
    }

    /// Issue 18: `[snapshot] stale_refresh_after` was rejected as unknown.
    #[test]
    fn stale_refresh_after_is_a_snapshot_key() {
        let c = config(&[], "[snapshot]\nstale_refresh_after = \"45s\"\n").unwrap();
        assert_eq!(c.snapshot.stale_refresh_after, Duration::from_secs(45));
        let default = config(&[], "").unwrap();
        assert_eq!(
            default.snapshot.stale_refresh_after,
            ucbridge_sync::DEFAULT_STALE_REFRESH_AFTER
        );
        let err = config(&[], "[snapshot]\nstale_refresh_after = \"1s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("too short"), "{err}");
    }
}
