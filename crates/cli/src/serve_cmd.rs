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
    AuthMode, ConnectionOptions, ConnectionSettings, ConnectionUpdate, IdsOptions, ImapOptions,
    XmppOptions, XmppTls,
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
    /// Also start the built-in lab (CUCM, CUC, IdS; Dovecot and slapd when installed) and
    /// point unconfigured connections at it: the zero-setup way to try everything.
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
    /// `backup FILE` / `restore FILE` (crate::backup_cmd; run before the store is opened).
    #[command(flatten)]
    Data(crate::backup_cmd::DataCommand),
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
    c.sources = server_sources(file);
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

/// The `[sources.NAME]` tables, each bind password from the table, its
/// `bind_password_file`, or `UCBRIDGE_SOURCE_<NAME>_BIND_PASSWORD` (as `sync refresh
/// --source`); the server runs each as the job `source:NAME`.
pub(crate) fn server_sources(file: &FileConfig) -> Vec<(String, ucbridge_sync::SourceConfig)> {
    let mut out = Vec::new();
    for (name, config) in file.sources.iter().flatten() {
        let mut settings = match config.clone() {
            ucbridge_sync::SourceConfig::Ldap(settings) => settings,
            // A cluster's password is resolved (table, file, environment) by its job.
            cucm @ ucbridge_sync::SourceConfig::Cucm(_) => {
                out.push((name.clone(), cucm));
                continue;
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
        out.push((name.clone(), ucbridge_sync::SourceConfig::Ldap(settings)));
    }
    out
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
        if save_lab_connection(store, secrets, kind, update).await? {
            eprintln!("The {kind} connection points at the built-in lab.");
        }
    }
    Ok(())
}

/// Who the lab's connections are stored by; a connection saved by anyone else is left
/// alone, one the lab saved in an earlier run is pointed at this run's servers.
#[cfg(feature = "lab")]
const LAB_BY: &str = "built-in lab";

/// The IMAP master user of the lab's Dovecot (also skipped by the push script).
#[cfg(feature = "lab")]
const LAB_IMAP_MASTER: &str = "ucbridge";

/// ucbridge's push script for Dovecot, shipped in the binary for `serve --lab`.
#[cfg(feature = "lab")]
const PUSH_LUA: &str = include_str!("../../../contrib/dovecot/ucbridge-push.lua");

/// Save a lab connection unless someone other than the lab configured it. True when saved.
#[cfg(feature = "lab")]
async fn save_lab_connection(
    store: &Store,
    secrets: &SecretBox,
    kind: &str,
    update: ConnectionUpdate,
) -> Result<bool> {
    let parsed: connections::ConnectionKind = kind.parse()?;
    let ours = match store.setting(&connections::storage_name(parsed)).await? {
        None => true,
        Some(s) => s.updated_by.as_deref() == Some(LAB_BY),
    };
    if !ours {
        return Ok(false);
    }
    connections::save(store, secrets, kind, update, Some(LAB_BY), false).await?;
    Ok(true)
}

/// True when the `kind` connection is configured by someone other than the lab.
#[cfg(feature = "lab")]
async fn configured_elsewhere(store: &Store, kind: connections::ConnectionKind) -> Result<bool> {
    Ok(store
        .setting(&connections::storage_name(kind))
        .await?
        .is_some_and(|s| s.updated_by.as_deref() != Some(LAB_BY)))
}

/// A secret for the lab's own servers (never printed).
#[cfg(feature = "lab")]
fn lab_secret() -> String {
    ucbridge_server::auth::random_token()
}

/// Write a secret file readable by its owner only.
#[cfg(feature = "lab")]
fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{text}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The first line of a token file, trimmed.
#[cfg(feature = "lab")]
fn read_token(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// The lab's Dovecot and slapd and the directory holding their data; everything is
/// stopped and removed when dropped (servers first: fields drop in order).
#[cfg(feature = "lab")]
struct LabServices {
    dovecot: Option<ucbridge_lab::services::Dovecot>,
    slapd: Option<ucbridge_lab::services::Slapd>,
    /// Prosody as the IM and Presence stand-in (chat on the user page).
    prosody: Option<ucbridge_lab::services::Prosody>,
    dir: tempfile::TempDir,
    /// The passdb token file for Dovecot's checkpassword, when mail sign-in is on.
    passdb_token_file: Option<PathBuf>,
    /// The IMAP push token for Dovecot's push script, or why push is off.
    push_token: std::result::Result<String, String>,
}

/// Before the server starts: the directory of the lab's servers, and the tokens of mail
/// sign-in (`/api/v1/passdb`) and IMAP push (`/callbacks/imap`), generated when the
/// configuration names none. The server reads both tokens at start, so they are settled
/// here; the servers start once its URL is known ([`start_lab_services`]).
#[cfg(feature = "lab")]
async fn prepare_lab_services(store: &Store, config: &mut ServerConfig) -> Result<LabServices> {
    let dir = tempfile::Builder::new()
        .prefix("ucbridge-lab-")
        .tempdir()
        .context("cannot create the lab's directory")?;
    // Dovecot's mail processes (nobody, when run as root) traverse it to their maildirs.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .context("cannot open the lab's directory to Dovecot")?;
    }
    // Mail sign-in: the token the server expects, in a file for `auth checkpassword`.
    let passdb_token_file = match std::env::var("UCBRIDGE_PASSDB_TOKEN") {
        Ok(t) if !t.trim().is_empty() => {
            let path = dir.path().join("passdb-token");
            write_secret(&path, t.trim())?;
            Some(path)
        }
        _ => match &config.signin.passdb_token_file {
            Some(path) => Some(path.clone()),
            None => {
                let path = dir.path().join("passdb-token");
                write_secret(&path, &lab_secret())?;
                config.signin.passdb_token_file = Some(path.clone());
                Some(path)
            }
        },
    };
    // IMAP push: the voicemail options name the token (environment, or a file); without
    // voicemail options a token file in the data directory is generated once and named.
    let push_token = match std::env::var(ucbridge_voicemail::IMAP_PUSH_TOKEN_ENV) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        _ => match store.setting(connections::VOICEMAIL_SETTING).await? {
            Some(s) => {
                let file: ucbridge_voicemail::VoicemailFileConfig =
                    serde_json::from_str(&s.value).context("the stored voicemail options")?;
                match file.imap_push_token_file {
                    Some(path) => read_token(&path).map_err(|e| format!("{e:#}")),
                    None => Err("the voicemail options name no imap_push_token_file".to_owned()),
                }
            }
            None => {
                let data = config::data_dir();
                std::fs::create_dir_all(&data)
                    .with_context(|| format!("cannot create {}", data.display()))?;
                let path = data.join("lab-imap-push-token");
                if !path.exists() {
                    write_secret(&path, &lab_secret())?;
                }
                let options = ucbridge_voicemail::VoicemailFileConfig {
                    imap_push_token_file: Some(path.clone()),
                    ..Default::default()
                };
                store
                    .put_setting(
                        connections::VOICEMAIL_SETTING,
                        &serde_json::to_string(&options)?,
                        ucbridge_store::SecretUpdate::Clear,
                        Some(LAB_BY),
                        true,
                    )
                    .await?;
                Ok(read_token(&path)?)
            }
        },
    };
    Ok(LabServices {
        dovecot: None,
        slapd: None,
        prosody: None,
        dir,
        passdb_token_file,
        push_token,
    })
}

/// Whether Dovecot's Lua push driver is installed (Debian `dovecot-lua`).
#[cfg(feature = "lab")]
fn dovecot_has_lua() -> bool {
    ["/usr/lib/dovecot/modules", "/usr/lib64/dovecot/modules"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .contains("push_notification_lua")
        })
}

/// Start the lab's Dovecot and slapd when installed, point the unconfigured `imap` and
/// `ldap` connections at them, and say on stderr which parts run and which are off.
#[cfg(feature = "lab")]
async fn start_lab_services(
    store: &Store,
    secrets: &SecretBox,
    services: &mut LabServices,
    server_url: &str,
) -> Result<()> {
    let server_url = server_url
        .replace("://0.0.0.0:", "://127.0.0.1:")
        .replace("://[::]:", "://[::1]:");
    start_lab_dovecot(store, secrets, services, &server_url).await?;
    start_lab_slapd(store, secrets, services).await
}

/// Dovecot with a master user for voicemail sync, the push script and the checkpassword
/// passdb, when installed and no `imap` connection is configured by someone else.
#[cfg(feature = "lab")]
async fn start_lab_dovecot(
    store: &Store,
    secrets: &SecretBox,
    services: &mut LabServices,
    server_url: &str,
) -> Result<()> {
    use ucbridge_lab::services::{self as svc, ServiceError};
    if configured_elsewhere(store, connections::ConnectionKind::Imap).await? {
        eprintln!("IMAP: the imap connection is configured; the lab starts no Dovecot.");
        return Ok(());
    }
    if svc::dovecot::binary().is_none() {
        eprintln!("IMAP: off (dovecot not installed: apt-get install dovecot-imapd)");
        return Ok(());
    }
    let dir = services.dir.path().to_owned();
    let mut parts = vec!["voicemail sync"];
    let mut off = Vec::new();
    let lua_push = lab_push_plugin(services, &dir, server_url, &mut parts, &mut off)?;
    let checkpassword = lab_checkpassword(services, &dir, server_url, &mut parts, &mut off)?;
    let master_password = lab_secret();
    let dovecot_config = svc::DovecotConfig {
        users: Vec::new(),
        user_password: lab_secret(),
        master_user: LAB_IMAP_MASTER.into(),
        master_password: master_password.clone(),
        tls: None,
        lua_push,
        checkpassword,
        any_user: true,
        port: None,
        parent_dir: Some(dir),
    };
    match tokio::task::spawn_blocking(move || svc::Dovecot::start(&dovecot_config)).await? {
        Ok(dovecot) => {
            let update = ConnectionUpdate {
                settings: ConnectionSettings {
                    url: format!("imap://{}:{}", dovecot.host(), dovecot.port()),
                    username: LAB_IMAP_MASTER.into(),
                    auth: AuthMode::Basic,
                    ca_pem: None,
                    insecure_skip_tls_verify: false,
                    options: ConnectionOptions::Imap(ImapOptions {
                        security: Some(ucbridge_voicemail::ImapSecurity::Plain),
                        ..ImapOptions::default()
                    })
                    .to_stored(),
                },
                password: Some(master_password),
            };
            save_lab_connection(store, secrets, "imap", update).await?;
            let version = svc::dovecot::version().unwrap_or_else(|| "version unknown".into());
            let mut line = format!(
                "IMAP (Dovecot {version}) on {}:{}: {}",
                dovecot.host(),
                dovecot.port(),
                parts.join(", ")
            );
            for o in &off {
                line.push_str("; ");
                line.push_str(o);
            }
            eprintln!("{line}");
            services.dovecot = Some(dovecot);
        }
        Err(e @ ServiceError::NotInstalled { .. }) => eprintln!("IMAP: off ({e})"),
        Err(e) => eprintln!("IMAP: off (Dovecot did not start: {e})"),
    }
    Ok(())
}

/// The push script's settings, or why push is off.
#[cfg(feature = "lab")]
fn lab_push_plugin(
    services: &LabServices,
    dir: &std::path::Path,
    server_url: &str,
    parts: &mut Vec<&'static str>,
    off: &mut Vec<String>,
) -> Result<Option<ucbridge_lab::services::LuaPush>> {
    use ucbridge_lab::services as svc;
    Ok(match &services.push_token {
        Ok(token) if dovecot_has_lua() => {
            let script = dir.join("ucbridge-push.lua");
            std::fs::write(&script, PUSH_LUA).context("cannot write the push script")?;
            let token_file = dir.join("imap-push-token");
            write_secret(&token_file, token)?;
            parts.push("IMAP push");
            Some(svc::LuaPush {
                script,
                settings: vec![
                    (
                        "ucbridge_push_url".into(),
                        format!("{server_url}/callbacks/imap"),
                    ),
                    (
                        "ucbridge_push_token".into(),
                        format!("<{}", token_file.display()),
                    ),
                    ("ucbridge_push_skip_master".into(), LAB_IMAP_MASTER.into()),
                ],
            })
        }
        Ok(_) => {
            off.push("IMAP push off (Dovecot's Lua push driver is not installed: apt-get install dovecot-lua)".to_owned());
            None
        }
        Err(why) => {
            off.push(format!("IMAP push off ({why})"));
            None
        }
    })
}

/// The checkpassword passdb asking this server, or why mail sign-in is off.
#[cfg(feature = "lab")]
fn lab_checkpassword(
    services: &LabServices,
    dir: &std::path::Path,
    server_url: &str,
    parts: &mut Vec<&'static str>,
    off: &mut Vec<String>,
) -> Result<Option<ucbridge_lab::services::Checkpassword>> {
    use ucbridge_lab::services as svc;
    Ok(
        match (&services.passdb_token_file, std::env::current_exe()) {
            (Some(server_token_file), Ok(program)) => {
                // A copy Dovecot's auth process (nobody, when run as root) may read.
                let token_file = dir.join("dovecot-passdb-token");
                write_secret(&token_file, &read_token(server_token_file)?)?;
                svc::dovecot::hand_to_dovecot(&token_file)?;
                parts.push("mail sign-in");
                Some(svc::Checkpassword {
                    program,
                    args: vec!["auth".into(), "checkpassword".into()],
                    env: vec![
                        ("UCBRIDGE_PASSDB_SERVER".into(), server_url.to_owned()),
                        (
                            "UCBRIDGE_PASSDB_TOKEN_FILE".into(),
                            token_file.display().to_string(),
                        ),
                    ],
                })
            }
            (None, _) => {
                off.push("mail sign-in off (no passdb token)".to_owned());
                None
            }
            (_, Err(e)) => {
                off.push(format!("mail sign-in off (cannot find this program: {e})"));
                None
            }
        },
    )
}

/// slapd with a generated admin password, when installed and no `ldap` connection is
/// configured by someone else.
#[cfg(feature = "lab")]
async fn start_lab_slapd(
    store: &Store,
    secrets: &SecretBox,
    services: &mut LabServices,
) -> Result<()> {
    use ucbridge_lab::services::{self as svc, ServiceError};
    if configured_elsewhere(store, connections::ConnectionKind::Ldap).await? {
        eprintln!("LDAP: the ldap connection is configured; the lab starts no slapd.");
    } else if svc::slapd::binaries().is_none() {
        eprintln!("LDAP: off (slapd not installed: apt-get install slapd)");
    } else {
        let admin_password = lab_secret();
        let slapd_config = svc::SlapdConfig {
            admin_password: admin_password.clone(),
            tls: None,
            port: None,
            parent_dir: Some(services.dir.path().to_owned()),
        };
        match tokio::task::spawn_blocking(move || svc::Slapd::start(&slapd_config)).await? {
            Ok(slapd) => {
                let mut options = serde_json::Map::new();
                options.insert("base_dn".into(), svc::slapd::PEOPLE_DN.into());
                let options =
                    ConnectionOptions::parse(connections::ConnectionKind::Ldap, &options)?;
                let update = ConnectionUpdate {
                    settings: ConnectionSettings {
                        url: slapd.url.clone(),
                        username: svc::slapd::ADMIN_DN.into(),
                        auth: AuthMode::Basic,
                        ca_pem: None,
                        insecure_skip_tls_verify: false,
                        options: options.to_stored(),
                    },
                    password: Some(admin_password),
                };
                save_lab_connection(store, secrets, "ldap", update).await?;
                let version = svc::slapd::version().unwrap_or_else(|| "version unknown".into());
                eprintln!(
                    "LDAP (OpenLDAP slapd {version}) at {}, base {}: LDAP export",
                    slapd.url,
                    svc::slapd::PEOPLE_DN
                );
                services.slapd = Some(slapd);
            }
            Err(e @ ServiceError::NotInstalled { .. }) => eprintln!("LDAP: off ({e})"),
            Err(e) => eprintln!("LDAP: off (slapd did not start: {e})"),
        }
    }
    Ok(())
}

/// The XMPP domain of the lab's Prosody.
#[cfg(feature = "lab")]
const LAB_XMPP_DOMAIN: &str = "ucbridge.lab";

/// Prosody as IM and Presence, with every lab end user and their lab password, when
/// installed and no `xmpp` connection is configured by someone else: STARTTLS required,
/// with a certificate for the lab's XMPP domain from a CA made for this run (the `xmpp`
/// connection trusts it).
#[cfg(feature = "lab")]
async fn start_lab_prosody(
    store: &Store,
    secrets: &SecretBox,
    services: &mut LabServices,
    lab: &ucbridge_lab::RunningLab,
    admin: (&str, &str),
    user_password: &str,
) -> Result<()> {
    use ucbridge_lab::services::{self as svc, ServiceError};
    if configured_elsewhere(store, connections::ConnectionKind::Xmpp).await? {
        eprintln!("Chat: the xmpp connection is configured; the lab starts no Prosody.");
        return Ok(());
    }
    if svc::prosody::binary().is_none() {
        eprintln!("Chat: off (prosody not installed: apt-get install prosody)");
        return Ok(());
    }
    let users = lab_userids(lab, admin).await?;
    let count = users.len();
    let (ca_pem, certificate) = lab_xmpp_certificate()?;
    let config = svc::ProsodyConfig {
        domain: LAB_XMPP_DOMAIN.to_owned(),
        users: users
            .into_iter()
            .map(|u| (u, user_password.to_owned()))
            .collect(),
        certificate: Some(certificate),
        require_encryption: true,
        port: None,
    };
    match tokio::task::spawn_blocking(move || svc::Prosody::start(&config)).await? {
        Ok(prosody) => {
            let options = ConnectionOptions::Xmpp(XmppOptions {
                domain: LAB_XMPP_DOMAIN.to_owned(),
                tls: Some(XmppTls::Starttls),
                idle_timeout: None,
            });
            let url = format!("xmpp://{}:{}", prosody.host(), prosody.port());
            let update = ConnectionUpdate {
                settings: ConnectionSettings {
                    url: url.clone(),
                    username: String::new(),
                    auth: AuthMode::Basic,
                    ca_pem: Some(ca_pem),
                    insecure_skip_tls_verify: false,
                    options: options.to_stored(),
                },
                password: None,
            };
            save_lab_connection(store, secrets, "xmpp", update).await?;
            eprintln!(
                "Chat (Prosody as IM and Presence) at {url}, domain {LAB_XMPP_DOMAIN}, STARTTLS (CA in the xmpp connection): {count} lab users, each with the lab user password (a Jabber client can log in as any of them)"
            );
            services.prosody = Some(prosody);
        }
        Err(e @ ServiceError::NotInstalled { .. }) => eprintln!("Chat: off ({e})"),
        Err(e) => eprintln!("Chat: off (Prosody did not start: {e})"),
    }
    Ok(())
}

/// A CA made for this run and a certificate it signed for the lab's XMPP domain,
/// `localhost` and 127.0.0.1 (XMPP clients check the domain, RFC 6120 §13.7.2).
#[cfg(feature = "lab")]
fn lab_xmpp_certificate() -> Result<(String, ucbridge_lab::services::ServerCertificate)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ucbridge lab XMPP CA");
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let mut leaf =
        CertificateParams::new(vec![LAB_XMPP_DOMAIN.to_owned(), "localhost".to_owned()])?;
    leaf.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca, &ca_key)?;
    Ok((
        ca.pem(),
        ucbridge_lab::services::ServerCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
    ))
}

/// Every end user of the lab's CUCM, lower case (XMPP localparts), asked over AXL.
#[cfg(feature = "lab")]
async fn lab_userids(
    lab: &ucbridge_lab::RunningLab,
    (user, password): (&str, &str),
) -> Result<Vec<String>> {
    let mut config = ucbridge_axl::AxlConfig::new(
        lab.axl_url(),
        user,
        ucbridge_axl::Secret::new(password.to_owned()),
    );
    config.ca_pem = lab.ca_certificate_pem().map(str::to_owned);
    let client = ucbridge_axl::AxlClient::connect(config)
        .await
        .context("cannot ask the lab's CUCM for its users")?;
    let rows = client
        .execute_sql_query("SELECT userid FROM enduser")
        .await
        .context("cannot list the lab's users")?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get("userid"))
        .map(|u| u.to_lowercase())
        .collect())
}

pub async fn serve(args: ServeArgs, file: &FileConfig, store: Store) -> Result<()> {
    #[allow(unused_mut)]
    let mut config = server_config(&args, file)?;
    let secrets = secret_box(file)?;
    bootstrap_admin(&store).await?;
    seed_from_file(&store, &secrets, file).await?;
    #[cfg(feature = "lab")]
    let mut lab = if args.lab {
        let lab_config = ucbridge_lab::LabConfig {
            users: args.lab_users,
            ..ucbridge_lab::LabConfig::default()
        };
        let (user, password) = (lab_config.username.clone(), lab_config.password.clone());
        let user_password = lab_config.user_password.clone();
        let lab = ucbridge_lab::RunningLab::start(lab_config)
            .await
            .context("cannot start the built-in lab")?;
        eprintln!("Built-in lab (CUCM AXL, CUC, IdS) at {}", lab.cuc_url());
        seed_lab(&store, &secrets, &lab, &user, &password).await?;
        let mut services = prepare_lab_services(&store, &mut config).await?;
        let admin = (user.as_str(), password.as_str());
        start_lab_prosody(&store, &secrets, &mut services, &lab, admin, &user_password).await?;
        Some((lab, services))
    } else {
        None
    };
    #[cfg(feature = "lab")]
    let lab_store = (store.clone(), secrets.clone());
    let server = Server::start(store, secrets, config)
        .await
        .context("cannot start the server")?;
    #[cfg(feature = "lab")]
    if let Some((_, services)) = &mut lab {
        start_lab_services(&lab_store.0, &lab_store.1, services, &server.url()).await?;
    }
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
        // main.rs runs these before opening the store (restore must not open it).
        AdminCommand::Data(_) => bail!("backup and restore run without an opened database"),
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

    /// Issue 15: `[sources.NAME]` tables reach the server (it runs each as `source:NAME`).
    #[test]
    fn source_tables_reach_the_server_config() {
        let none = config(&[], "").unwrap();
        assert!(none.sources.is_empty());
        let c = config(
            &[],
            "[sources.corp]\nkind = \"ldap\"\nurl = \"ldap://dc1.example.com\"\n\
             bind_dn = \"cn=r\"\nbind_password = \"pw-in-file\"\nbase_dn = \"dc=example\"\n",
        )
        .unwrap();
        assert_eq!(c.sources.len(), 1);
        let (name, ucbridge_sync::SourceConfig::Ldap(settings)) = &c.sources[0] else {
            panic!("an ldap source: {:?}", c.sources[0]);
        };
        assert_eq!(name, "corp");
        assert_eq!(settings.url, "ldap://dc1.example.com");
        assert!(!format!("{c:?}").contains("pw-in-file"));
    }
}
