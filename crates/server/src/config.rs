//! How a node runs: where it listens, who it is, how long leases last. [`ServerConfig`]
//! is the typed form; [`ServerFileConfig`] the `[server]` table of the configuration
//! file, which the CLI merges with its flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use ucbridge_sync::SnapshotOptions;

/// The `[server]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFileConfig {
    pub bind: Option<SocketAddr>,
    pub node_id: Option<String>,
    /// e.g. "15s": a dead node's jobs move to another node after at most this long.
    pub lease_ttl: Option<String>,
    pub tick: Option<String>,
    pub session_ttl: Option<String>,
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Where CUC and browsers reach this node, e.g. `http://ucbridge-1.example.com:8080`
    /// (CUC posts voicemail events to `<public_url>/callbacks/cuc`).
    pub public_url: Option<String>,
    #[serde(default)]
    pub secure_cookies: bool,
    #[serde(default)]
    pub metrics_public: bool,
    /// Login attempts per minute per client address and per username (default 10; 0 =
    /// unlimited).
    pub login_attempts_per_minute: Option<u32>,
    /// HTTP limits (defaults 10s, 30s, 60s, 5m, 512): a request head (and TLS handshake)
    /// must arrive within `header_read_timeout`, a body within `body_read_timeout`; a
    /// connection with no request in progress closes after `idle_timeout`, one whose
    /// request is not answered within `request_timeout` too; at most `max_connections`.
    pub header_read_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub max_connections: Option<usize>,
    /// Total time one "Test connection" may take (default 10s).
    pub connection_test_timeout: Option<String>,
    /// Serve HTTPS: the certificate chain (PEM, leaf first) and its private key (PEM).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Key file for secrets at rest when `UCBRIDGE_SECRET_KEY` is not set (default:
    /// `secret.key` in the data directory, created on first start).
    pub secret_key_file: Option<PathBuf>,
    /// Schedules given to jobs when first registered (the admin page can change them).
    pub devices_schedule: Option<String>,
    pub ldap_export_schedule: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the API and admin page (loopback by default; put a TLS-terminating
    /// proxy in front when exposing it).
    pub bind: SocketAddr,
    /// This node's name in leases and job runs; default `<hostname>-<pid>-<random>`.
    pub node_id: Option<String>,
    /// How long a job lease lasts without renewal: a dead node's jobs move to another
    /// node after at most this long.
    pub lease_ttl: Duration,
    /// How often the scheduler renews leases and looks for due jobs and requests.
    pub tick: Duration,
    /// Lifetime of a login session.
    pub session_ttl: Duration,
    /// Origins allowed to call the API from a browser (CORS); empty = none.
    pub cors_origins: Vec<String>,
    /// Where others reach this node (e.g. `http://ucbridge-1.example.com:8080`): CUC posts
    /// voicemail events to `<public_url>/callbacks/cuc`.
    pub public_url: Option<String>,
    /// Login attempts allowed per minute from one client address, and separately for one
    /// username (a burst of this many, then one every `60 s / n`); more get 429.
    pub login_attempts_per_minute: u32,
    /// Serve HTTPS with this certificate instead of plain HTTP (the session cookie is then
    /// `Secure` whatever `secure_cookies` says).
    pub tls: Option<TlsFiles>,
    /// Mark the session cookie `Secure` (set when a proxy serves the page over HTTPS).
    pub secure_cookies: bool,
    /// Serve `/metrics` without authentication (for a scraper on a trusted network).
    pub metrics_public: bool,
    /// Run no jobs (API only), e.g. for a read replica of the admin page.
    pub run_jobs: bool,
    pub snapshot: SnapshotOptions,
    pub jobs: JobDefaults,
    /// Timeouts and the connection limit of the HTTP(S) listener.
    pub http: HttpLimits,
    /// Total time one "Test connection" may take before it is answered with a timeout.
    pub connection_test_timeout: Duration,
    /// End users' sign-in with CUCM credentials (the `[signin]` table).
    pub signin: ucbridge_signin::SignInFileConfig,
    /// Directory sources beside the default CUCM (`[sources.NAME]`), each run as the
    /// continuous job `source:NAME` (docs/directory-sources.md).
    pub sources: Vec<(String, ucbridge_sync::SourceConfig)>,
}

/// What one client can hold of the listener: a slow or silent peer is closed after these
/// timeouts, and at most `max_connections` are open at once.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// A request head (and, over HTTPS, the TLS handshake) must arrive within this long.
    /// For HTTP/1.1 it counts from the end of the previous response, so it also bounds
    /// how long a keep-alive connection may wait for its next request.
    pub header_read_timeout: Duration,
    /// A request body must arrive completely within this long after its head.
    pub body_read_timeout: Duration,
    /// A connection with no request in progress (HTTP/2 included) is closed after this long.
    pub idle_timeout: Duration,
    /// A request must be handled and its response delivered within this long, else its
    /// connection is closed (a hung handler or a client that stops reading).
    pub request_timeout: Duration,
    /// Open connections at most. At the limit the oldest connection with no request in
    /// progress is closed to make room; when every one is busy, new ones wait in the
    /// listen backlog.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(300),
            max_connections: 512,
        }
    }
}

/// The node's own HTTPS certificate: PEM files, the chain leaf first, and its private key
/// (PKCS#8, PKCS#1 or SEC1).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Schedules a job gets when it is first registered; the admin page can change them.
#[derive(Debug, Clone, Default)]
pub struct JobDefaults {
    pub user_sync: Option<String>,
    pub devices: Option<String>,
    pub ldap_export: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            node_id: None,
            lease_ttl: Duration::from_secs(15),
            tick: Duration::from_secs(1),
            session_ttl: Duration::from_secs(12 * 3600),
            cors_origins: Vec::new(),
            public_url: None,
            login_attempts_per_minute: 10,
            tls: None,
            secure_cookies: false,
            metrics_public: false,
            run_jobs: true,
            snapshot: SnapshotOptions::default(),
            jobs: JobDefaults::default(),
            http: HttpLimits::default(),
            connection_test_timeout: Duration::from_secs(10),
            signin: Default::default(),
            sources: Vec::new(),
        }
    }
}

pub(crate) fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
