//! The built-in lab in the product (cargo feature `lab`, on by default): `ucbridge demo`
//! and `ucbridge lab`. (`serve --lab` is in `serve_cmd.rs`.) Built with
//! `--no-default-features`, the binary has neither the lab nor these commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use ucbridge_axl::{AxlClient, AxlConfig, ListOptions, UserSearch};
use ucbridge_lab::{LabConfig, RunningLab};
use ucbridge_provision::{EnsureOptions, Provisioner, ProvisioningConfig, SecretBox};
use ucbridge_signin::{Authenticator, SignInAttempt, SignInConfig};
use ucbridge_store::Store;
use ucbridge_sync::{SnapshotKeeper, SnapshotOptions, SyncOptions};

use crate::output::outln;
use crate::{axl_cmd, sync_cmd};

#[derive(Args, Clone)]
pub struct LabArgs {
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
    cuc: LabCucArgs,
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

/// `ucbridge lab` flags for the Unity Connection, IdS and SSO emulators.
#[derive(Args, Clone, Debug)]
pub struct LabCucArgs {
    /// Origin allowed to call /vmrest from a browser (CORS), e.g. https://app.example.com;
    /// repeat for more. None by default.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Password of every lab end user (CUC Basic auth, IdS password grant).
    #[arg(
        long,
        default_value = "ucbridge-user",
        env = "UCBRIDGE_LAB_USER_PASSWORD"
    )]
    user_password: String,
    /// Inbox messages generated per user.
    #[arg(long, default_value_t = 3)]
    messages_per_user: usize,
    /// Lifetime of IdS access tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    access_token_secs: u64,
    /// Let AXL accept IdS Bearer tokens of the administrator.
    #[arg(long)]
    axl_accept_bearer: bool,
}

impl LabCucArgs {
    pub fn apply(&self, config: &mut LabConfig) {
        config.cuc.cors_allowed_origins = self.cors_origins.clone();
        config.cuc.messages_per_user = self.messages_per_user;
        config.user_password = self.user_password.clone();
        config.ids.access_token_lifetime = Duration::from_secs(self.access_token_secs.max(1));
        config.axl_accepts_bearer = self.axl_accept_bearer;
    }
}

/// The lines `ucbridge lab` prints about the CUC/IdS/SSO emulators (the e2e test reads the
/// `CUC endpoint:` line).
fn print_lab_endpoints(lab: &RunningLab, args: &LabCucArgs) -> Result<()> {
    outln!(
        "  CUC endpoint: {}  (/vmrest, Basic or Bearer)",
        lab.cuc_url()
    )?;
    outln!("  IdS token:    {}", lab.ids_token_url())?;
    outln!(
        "  SSO status:   {}/unifiedconfig/config/sso/status",
        lab.unifiedconfig_url()
    )?;
    outln!("  end users' password: (the --user-password value)")?;
    if args.cors_origins.is_empty() {
        outln!("  CORS: off (pass --cors-origin to allow a browser origin)")
    } else {
        outln!("  CORS origins: {}", args.cors_origins.join(", "))
    }
}

/// `ucbridge lab`: the emulators until Ctrl-C.
pub async fn run_lab(args: LabArgs) -> Result<()> {
    let lab = RunningLab::start(args.to_config())
        .await
        .context("cannot start the lab")?;
    if let (Some(path), Some(pem)) = (&args.ca_out, lab.ca_certificate_pem()) {
        std::fs::write(path, pem)
            .with_context(|| format!("cannot write the CA to {}", path.display()))?;
    }
    outln!("CUCM lab (release {}) listening", args.cucm_version)?;
    outln!("  AXL endpoint: {}", lab.axl_url())?;
    outln!("  credentials:  {} / (the --password value)", args.username)?;
    outln!("  users seeded: {} (seed {})", args.users, args.seed)?;
    print_lab_endpoints(&lab, &args.cuc)?;
    match &args.ca_out {
        Some(path) => outln!("  CA certificate written to {}", path.display())?,
        None if !args.no_tls => {
            outln!("  TLS: self-signed; pass --ca-out FILE to get the CA for clients")?
        }
        None => outln!("  TLS: off (plain HTTP)")?,
    }
    outln!("Press Ctrl-C to stop.")?;
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    lab.shutdown().await;
    Ok(())
}

/// `ucbridge demo`: start the lab, list its users over AXL, sync them into a throwaway
/// database.
pub async fn demo(users: usize, json: bool) -> Result<()> {
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
    let listed = axl_cmd::list_users(
        &client,
        &UserSearch::all(),
        axl_cmd::DEFAULT_USER_TAGS,
        ListOptions::default().page_size,
        json,
    )
    .await
    .context("listUser failed")?;
    let elapsed = started.elapsed();
    let stats = client.stats();
    eprintln!(
        "\n{listed} users listed in {elapsed:.0?} with {} AXL requests ({} reused the CUCM session).",
        stats.requests, stats.session_reuses
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

    sign_in_and_webphone(&client, &store, &defaults.user_password).await?;
    store.close().await;
    lab.shutdown().await;
    Ok(())
}

/// The user-facing half: a synced user signs in with their CUCM password (as a mail server
/// would ask), a second time from the cache, a wrong password is refused; then their
/// WebPhone (third-party SIP device with the user as digest user) is ensured.
async fn sign_in_and_webphone(client: &AxlClient, store: &Store, password: &str) -> Result<()> {
    let (_, users) = store.search_local_users(None, 0, 1).await?;
    let Some(user) = users.into_iter().next() else {
        return Ok(());
    };
    let login = user.record.username;
    eprintln!(
        "
Sign-in with Cisco credentials (what the mail server asks ucbridge):"
    );
    let authenticator = Authenticator::new(
        SignInConfig::default(),
        Arc::new(client.clone()),
        store.clone(),
    );
    for (what, given) in [
        ("right password", password),
        ("again", password),
        ("wrong password", "not-the-password"),
    ] {
        let attempt = SignInAttempt {
            login: &login,
            password: given,
            client: None,
            via: "cli",
        };
        let answer = match authenticator.authenticate(attempt).await {
            Ok(who) if who.from_cache => "signed in (cached verifier; CUCM not asked)".to_owned(),
            Ok(_) => "signed in (CUCM doAuthenticateUser)".to_owned(),
            Err(e) => format!("refused: {e}"),
        };
        eprintln!("  {login}, {what}: {answer}");
    }

    eprintln!(
        "
WebPhone on first sign-in (third-party SIP device, digest user):"
    );
    let settings = ProvisioningConfig::default().compile()?;
    let secrets = SecretBox::from_base64(&SecretBox::generate_key_base64(), "demo")?;
    let provisioner = Provisioner::new(client.clone(), store.clone(), settings, secrets);
    let report = provisioner
        .ensure(&login, &EnsureOptions::default())
        .await
        .context("cannot ensure the WebPhone")?;
    eprintln!(
        "  {}: device {} on line {}, digest user {} ({:?})",
        report.userid,
        report.device_name,
        report.directory_number.pattern,
        report.userid,
        report.outcome
    );
    Ok(())
}
