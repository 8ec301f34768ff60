//! Settings: the IMAP server (`[imap]`) and the sync itself (`[voicemail]`), as typed
//! values and as the TOML tables the CLI and the server read.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ucbridge_auth::{Secret, TlsOptions};
use ucbridge_store::local_index::LocalKey;

use crate::VoicemailError;

/// How the connection to the IMAP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapSecurity {
    /// Implicit TLS (port 993, RFC 8314).
    Tls,
    /// Plain connection upgraded with STARTTLS (port 143).
    Starttls,
    /// No TLS: allowed only to a loopback address, or with `allow_plaintext`.
    Plain,
}

/// How ucbridge logs in to each user's mailbox without the user's password.
#[derive(Clone)]
pub enum ImapLogin {
    /// Dovecot master user: `LOGIN "<user><separator><master>" <master password>`
    /// (Dovecot `auth_master_user_separator`, usually `*`).
    MasterUser {
        master_user: String,
        password: Secret,
        separator: String,
    },
    /// SASL PLAIN with an authorization identity (RFC 4616 §2): authcid = the admin,
    /// authzid = the user. Dovecot master users and Cyrus admins accept it.
    SaslAuthzid {
        admin_user: String,
        password: Secret,
    },
}

impl std::fmt::Debug for ImapLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImapLogin::MasterUser {
                master_user,
                separator,
                ..
            } => f
                .debug_struct("MasterUser")
                .field("master_user", master_user)
                .field("separator", separator)
                .field("password", &"***")
                .finish(),
            ImapLogin::SaslAuthzid { admin_user, .. } => f
                .debug_struct("SaslAuthzid")
                .field("admin_user", admin_user)
                .field("password", &"***")
                .finish(),
        }
    }
}

/// Where the IMAP server is and how to log in.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub security: ImapSecurity,
    /// Extra CAs / verification switch (verification is on by default).
    pub tls: TlsOptions,
    /// Allow `Plain` to a non-loopback host (passwords would cross the network in clear).
    pub allow_plaintext: bool,
    pub login: ImapLogin,
    pub connect_timeout: Duration,
    /// Upper bound for one IMAP command.
    pub command_timeout: Duration,
}

impl ImapSettings {
    /// Plain IMAP to a loopback server with a Dovecot master user (tests, labs).
    pub fn plain_loopback(port: u16, master_user: &str, password: &str) -> ImapSettings {
        ImapSettings {
            host: "127.0.0.1".into(),
            port,
            security: ImapSecurity::Plain,
            tls: TlsOptions::default(),
            allow_plaintext: false,
            login: ImapLogin::MasterUser {
                master_user: master_user.into(),
                password: Secret::new(password),
                separator: "*".into(),
            },
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(60),
        }
    }
}

/// The seed's "CISCO ID Source": which CUC value identifies an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CucIdSource {
    /// Alias (User ID).
    Alias,
    /// Part before @ of the alias (when aliases are whole addresses).
    AliasLocalPart,
    /// CUC's SMTP address (not the corporate e-mail; seed 002 warns about the two).
    SmtpAddress,
    SmtpLocalPart,
    /// The primary extension (DtmfAccessId).
    Extension,
}

/// Account matching: a CUC value against a local value (seed 002 "Account Matching").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountMatching {
    pub cuc: CucIdSource,
    pub local: LocalKey,
}

impl Default for AccountMatching {
    fn default() -> Self {
        AccountMatching {
            cuc: CucIdSource::Alias,
            local: LocalKey::Username,
        }
    }
}

/// Which local value is the IMAP login name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImapUserSource {
    #[default]
    Username,
    Email,
}

/// IMAP folders mirroring CUC's three folders; `/` separates levels and is replaced by the
/// server's hierarchy delimiter. Only used to create a folder: once created, a folder is
/// found by identity wherever the user moves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderNames {
    pub inbox: String,
    pub sent: String,
    pub deleted: String,
}

impl Default for FolderNames {
    fn default() -> Self {
        FolderNames {
            inbox: "Voicemail".into(),
            sent: "Voicemail/Sent".into(),
            deleted: "Voicemail/Deleted".into(),
        }
    }
}

/// The mass-removal guard: how many of an account's voicemails one sync may remove from
/// IMAP because Unity Connection no longer lists them. An administrator without the
/// "Mailbox Access Delegate Account" role sees every mailbox empty (notes §1.3), which
/// looks exactly like "every message was deleted".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemovalGuard {
    /// Largest share (0–1) of the account's messages on IMAP one sync may remove.
    pub max_share: f64,
    /// Fewer removals than this never trip the share rule (a user deleting a voicemail
    /// or two for good is normal). An empty CUC mailbox trips the guard regardless.
    pub min_removals: u64,
}

impl Default for RemovalGuard {
    fn default() -> Self {
        RemovalGuard {
            max_share: 0.5,
            min_removals: 3,
        }
    }
}

impl RemovalGuard {
    /// Whether removing `removals` of the `on_imap` messages ucbridge owns in an account
    /// must be refused; `cuc_empty` = CUC listed no message at all in the account.
    pub fn refuses(&self, removals: u64, on_imap: u64, cuc_empty: bool) -> bool {
        if removals == 0 {
            return false;
        }
        if cuc_empty {
            return true;
        }
        removals >= self.min_removals && removals as f64 > self.max_share * on_imap.max(1) as f64
    }
}

/// How the recording is attached to the mail (`[voicemail] attachment_format`).
///
/// MP3 is the default: phones' mail apps play it everywhere, while CUC's µ-law WAV does not
/// play on iOS, and the 32 kbps MP3 is half the size of µ-law (a quarter of PCM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentFormat {
    /// The WAV as CUC stores it.
    Wav,
    /// An MP3 made from it (the WAV when it cannot be converted, e.g. GSM 6.10).
    #[default]
    Mp3,
    /// The MP3 first, then the WAV.
    Both,
}

/// Whether IMAP changes are watched with IDLE (RFC 2177) (`[voicemail] imap_idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapIdle {
    /// IDLE only when no IMAP push token is configured: a server that calls ucbridge's
    /// webhook (Dovecot's push-notification plugin) needs no open connection per account.
    #[default]
    Auto,
    /// IDLE even with push configured (e.g. push reaches only part of the users).
    On,
    /// Never: changes are found by push and the HIGHESTMODSEQ poll only.
    Off,
}

/// Default [`VoicemailOptions::imap_idle_connections`]: IDLE connections per engine (the
/// engine runs on the one node holding the voicemail job's lease).
pub const IDLE_CONNECTIONS: usize = 100;

/// Default [`VoicemailOptions::imap_idle_renew`]. RFC 2177 §3 asks clients to re-issue
/// IDLE at least every 29 minutes; servers and NAT devices drop quiet connections sooner
/// (Dovecot's `imap_idle_notify_interval` sends "OK Still here" every 2 minutes for that
/// reason), so ucbridge ends and re-issues each IDLE after 10 minutes, checking the
/// account's other voicemail folders (which one IDLE cannot watch) in between.
pub const IDLE_RENEW: Duration = Duration::from_secs(10 * 60);

/// Longest accepted [`VoicemailOptions::imap_idle_renew`] (RFC 2177 §3: 29 minutes).
pub const IDLE_RENEW_MAX: Duration = Duration::from_secs(29 * 60);

/// How the engine behaves.
#[derive(Debug, Clone)]
pub struct VoicemailOptions {
    pub matching: AccountMatching,
    pub imap_user: ImapUserSource,
    pub folders: FolderNames,
    /// Wait after an IMAP-side change before syncing the account, so that several actions
    /// in a row make one sync (seed 002: five seconds).
    pub debounce: Duration,
    /// Full reconcile of every account (catches anything events and polling missed).
    pub reconcile_every: Duration,
    /// A reconcile skips an account whose CUC fingerprint (folder counts and USNs) and IMAP
    /// HIGHESTMODSEQs are unchanged, except when its last full read of CUC's listings is
    /// older than this: the full read catches what a fingerprint can miss (a CUC whose USN
    /// did not move on a change; notes §1.1 leave USN semantics unverified). Zero: never skip.
    pub full_read_every: Duration,
    /// How often IMAP folders are checked for changes (HIGHESTMODSEQ, RFC 7162).
    pub imap_poll_every: Duration,
    /// Accounts synced at once.
    pub concurrency: usize,
    /// CUMI rows per page.
    pub page_size: u32,
    /// Lifetime asked for a CUNI subscription; it is renewed at half of it.
    pub subscription_lifetime: Duration,
    /// Re-subscribe (and reconcile) when CUC has sent nothing, not even a keep-alive, for
    /// this long: a CUC restart or refresh upgrade drops subscriptions without telling
    /// anyone (notes §3). CUC's keep-alive period is not documented, so keep this well
    /// above it; `None` turns the watchdog off.
    pub push_silence_limit: Option<Duration>,
    /// First retry delay after a failed account sync; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// `harddelete=` on CUC deletes coming from IMAP; `None` lets CUC's COS decide.
    pub hard_delete: Option<bool>,
    /// Domain of synthetic sender addresses (callers have numbers, not addresses).
    pub sender_domain: String,
    /// Upper bound for one account sync.
    pub account_timeout: Duration,
    /// Refuse syncs that would remove too much from IMAP ([`RemovalGuard`]).
    pub removal_guard: RemovalGuard,
    /// Let removals the guard would refuse happen (`--confirm-removals`).
    pub confirm_removals: bool,
    /// What the mail carries: MP3, the original WAV, or both.
    pub attachment_format: AttachmentFormat,
    /// Per-user exceptions to `attachment_format`, by local username (lower-cased), e.g.
    /// `wav` for a user whose client plays only WAV.
    pub attachment_format_by_user: HashMap<String, AttachmentFormat>,
    /// Bearer token the IMAP server's push notifications present on `POST
    /// /callbacks/imap` (Dovecot with `contrib/dovecot/ucbridge-push.lua`); `None` = the
    /// route refuses everything and IMAP changes are found by polling only.
    pub imap_push_token: Option<Secret>,
    /// Trust IMAP push (issue 17 item 4): with `imap_push_token` set, a reconcile skips
    /// the IMAP login of an account whose CUC fingerprint is unchanged, no push
    /// notification arrived for it since IMAP was last checked (by a sync, a reconcile or
    /// a poll of this engine run), that check is younger than `push_trust_window`, and
    /// push is healthy (a notification was accepted since the run started and none was
    /// refused since). `false`: every reconcile logs in to check HIGHESTMODSEQ.
    pub trust_imap_push: bool,
    /// How long an IMAP check is trusted while push is healthy: the longest a change whose
    /// notification was lost (Dovecot could not reach ucbridge) goes unnoticed by the
    /// reconcile; the HIGHESTMODSEQ poll (`imap_poll_every`) still looks meanwhile.
    pub push_trust_window: Duration,
    /// Watch accounts' voicemail inbox folders with IDLE: [`ImapIdle::Auto`] (default)
    /// uses it only without `imap_push_token`, and only when the server offers IDLE.
    pub imap_idle: ImapIdle,
    /// At most this many IDLE connections (one per account); accounts beyond them keep the
    /// HIGHESTMODSEQ poll. 0 = no IDLE.
    pub imap_idle_connections: usize,
    /// Each IDLE ends and is re-issued after this long (at most [`IDLE_RENEW_MAX`]); the
    /// account's other folders are checked (LIST-STATUS) on the same connection then.
    pub imap_idle_renew: Duration,
}

impl VoicemailOptions {
    /// Whether the continuous mode opens IDLE connections at all (the server must also
    /// offer IDLE; that is found out on the first connection).
    pub fn idle_wanted(&self) -> bool {
        self.imap_idle_connections > 0
            && match self.imap_idle {
                ImapIdle::On => true,
                ImapIdle::Off => false,
                ImapIdle::Auto => self.imap_push_token.is_none(),
            }
    }
}

/// Default [`VoicemailOptions::push_trust_window`]: longer than `reconcile_every` (15 min),
/// so that most reconciles skip the login, short enough to bound a lost notification.
pub const PUSH_TRUST_WINDOW: Duration = Duration::from_secs(3600);

/// Environment variable holding the IMAP push token (instead of `imap_push_token_file`).
pub const IMAP_PUSH_TOKEN_ENV: &str = "UCBRIDGE_IMAP_PUSH_TOKEN";

/// Shortest accepted push token: it is the only thing between the internet and a sync
/// trigger, so a guessable word is refused (16 random alphanumerics ≈ 95 bits).
pub const MIN_PUSH_TOKEN_LEN: usize = 16;

/// `imap_poll_every` when push is configured and no interval is set: the poll is then
/// only the safety net for notifications that were lost (ucbridge down, Dovecot's HTTP
/// call failed), beside the full reconcile every `reconcile_every`.
pub const POLL_EVERY_WITH_PUSH: Duration = Duration::from_secs(10 * 60);

impl VoicemailOptions {
    /// The attachment format of one user's voicemail: their exception, else the global one.
    pub fn attachment_format_for(&self, local_username: &str) -> AttachmentFormat {
        self.attachment_format_by_user
            .get(&local_username.trim().to_lowercase())
            .copied()
            .unwrap_or(self.attachment_format)
    }
}

impl Default for VoicemailOptions {
    fn default() -> Self {
        VoicemailOptions {
            matching: AccountMatching::default(),
            imap_user: ImapUserSource::Username,
            folders: FolderNames::default(),
            debounce: Duration::from_secs(5),
            reconcile_every: Duration::from_secs(15 * 60),
            full_read_every: Duration::from_secs(6 * 3600),
            imap_poll_every: Duration::from_secs(30),
            concurrency: 8,
            page_size: 500,
            subscription_lifetime: Duration::from_secs(24 * 3600),
            push_silence_limit: Some(Duration::from_secs(10 * 60)),
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
            hard_delete: None,
            // RFC 2606: a domain that can never receive mail.
            sender_domain: "voicemail.invalid".into(),
            account_timeout: Duration::from_secs(300),
            removal_guard: RemovalGuard::default(),
            confirm_removals: false,
            attachment_format: AttachmentFormat::default(),
            attachment_format_by_user: HashMap::new(),
            imap_push_token: None,
            trust_imap_push: true,
            push_trust_window: PUSH_TRUST_WINDOW,
            imap_idle: ImapIdle::default(),
            imap_idle_connections: IDLE_CONNECTIONS,
            imap_idle_renew: IDLE_RENEW,
        }
    }
}

/// The `[imap]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapFileConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `tls` (default), `starttls` or `plain`.
    pub security: Option<ImapSecurity>,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    #[serde(default)]
    pub allow_plaintext: bool,
    /// `master_user` (Dovecot `user*master`, default) or `sasl_authzid`.
    pub login: Option<String>,
    pub master_user: Option<String>,
    pub master_password: Option<String>,
    pub master_password_file: Option<PathBuf>,
    /// Dovecot's `auth_master_user_separator`; default `*`.
    pub master_separator: Option<String>,
}

impl ImapFileConfig {
    /// Validate into settings; the password from the value, the file, or
    /// `UCBRIDGE_IMAP_MASTER_PASSWORD` (`env_password`).
    pub fn to_settings(
        &self,
        env_password: Option<String>,
    ) -> Result<ImapSettings, VoicemailError> {
        let config = |m: &str| VoicemailError::Config(m.to_owned());
        let host = self
            .host
            .clone()
            .ok_or_else(|| config("[imap] host is required"))?;
        let security = self.security.unwrap_or(ImapSecurity::Tls);
        let port = self.port.unwrap_or(match security {
            ImapSecurity::Tls => 993,
            _ => 143,
        });
        let master_user = self
            .master_user
            .clone()
            .ok_or_else(|| config("[imap] master_user is required"))?;
        let password = match (env_password, &self.master_password, &self.master_password_file) {
            (Some(p), _, _) => p,
            (None, Some(p), _) => p.clone(),
            (None, None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    VoicemailError::Config(format!(
                        "cannot read [imap] master_password_file {}: {e}",
                        path.display()
                    ))
                })?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            (None, None, None) => {
                return Err(config(
                    "no IMAP master password: set UCBRIDGE_IMAP_MASTER_PASSWORD or [imap] master_password(_file)",
                ))
            }
        };
        let login = match self.login.as_deref().unwrap_or("master_user") {
            "master_user" => ImapLogin::MasterUser {
                master_user,
                password: Secret::new(password),
                separator: self.master_separator.clone().unwrap_or_else(|| "*".into()),
            },
            "sasl_authzid" => ImapLogin::SaslAuthzid {
                admin_user: master_user,
                password: Secret::new(password),
            },
            other => {
                return Err(VoicemailError::Config(format!(
                    "[imap] login {other:?}: use master_user or sasl_authzid"
                )))
            }
        };
        Ok(ImapSettings {
            host,
            port,
            security,
            tls: TlsOptions {
                ca_file: self.ca_file.clone(),
                ca_pem: None,
                insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            },
            allow_plaintext: self.allow_plaintext,
            login,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(60),
        })
    }
}

/// The `[voicemail]` table (durations as "5s", "15m").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoicemailFileConfig {
    /// CUC side of account matching: alias | alias_local_part | smtp_address |
    /// smtp_local_part | extension.
    pub cuc_id: Option<CucIdSource>,
    /// Local side: username | any_alias | any_email | alias_or_email.
    pub local_id: Option<LocalKey>,
    pub imap_user: Option<ImapUserSource>,
    pub folders: Option<FolderNames>,
    pub debounce: Option<String>,
    pub reconcile_every: Option<String>,
    /// Longest time an unchanged account goes without a full read of CUC (e.g. "6h"; "0s" = always).
    pub full_read_every: Option<String>,
    pub imap_poll_every: Option<String>,
    pub concurrency: Option<usize>,
    /// Re-subscribe when CUC has been silent this long (e.g. "10m"; "0s" = never).
    pub push_silence_limit: Option<String>,
    pub hard_delete: Option<bool>,
    /// Where CUC's Notifier reaches ucbridge, e.g. `http://ucbridge.example.com:8080/callbacks/cuc`
    /// (HTTP only before CUC 12.5(1)SU3).
    pub callback_url: Option<String>,
    pub sender_domain: Option<String>,
    /// Refuse an account sync that would remove more than this share (0–1, default 0.5)
    /// of the voicemails ucbridge put on IMAP (CUC listing them no longer).
    pub max_removal_share: Option<f64>,
    /// Fewer removals than this (default 3) never trip the share rule.
    pub removal_guard_min: Option<u64>,
    /// Let refused removals happen; for the server, set it for one reconcile after
    /// checking CUC, then remove it again (the CLI has `--confirm-removals`).
    #[serde(default)]
    pub confirm_removals: bool,
    /// `mp3` (default), `wav` (as CUC stores it) or `both`.
    pub attachment_format: Option<AttachmentFormat>,
    /// Exceptions by local username: `{ jdoe = "wav" }`.
    #[serde(default)]
    pub attachment_format_by_user: BTreeMap<String, AttachmentFormat>,
    /// File holding the bearer token of IMAP push notifications (`POST /callbacks/imap`,
    /// first line; or `UCBRIDGE_IMAP_PUSH_TOKEN`). Not a value in this table: the server
    /// shows the table to API readers.
    pub imap_push_token_file: Option<PathBuf>,
    /// With push configured, let a reconcile trust it instead of logging in to IMAP for
    /// unchanged accounts (default true).
    pub trust_imap_push: Option<bool>,
    /// How long an IMAP check stays trusted while push is healthy (default "1h").
    pub push_trust_window: Option<String>,
    /// `auto` (default: IDLE when no push token is set), `on` or `off`.
    pub imap_idle: Option<ImapIdle>,
    /// IDLE connections at most (default 100; 0 = none); further accounts are polled.
    pub imap_idle_connections: Option<usize>,
    /// Re-issue each IDLE after this long (default "10m", at most "29m", RFC 2177).
    pub imap_idle_renew: Option<String>,
}

impl VoicemailFileConfig {
    pub fn to_options(&self) -> Result<VoicemailOptions, VoicemailError> {
        let mut o = VoicemailOptions::default();
        let parse = |name: &str, v: &str| {
            humantime::parse_duration(v)
                .map_err(|e| VoicemailError::Config(format!("bad [voicemail] {name} {v:?}: {e}")))
        };
        if let Some(c) = self.cuc_id {
            o.matching.cuc = c;
        }
        if let Some(l) = self.local_id {
            o.matching.local = l;
        }
        if let Some(u) = self.imap_user {
            o.imap_user = u;
        }
        if let Some(f) = &self.folders {
            o.folders = f.clone();
        }
        if let Some(v) = &self.debounce {
            o.debounce = parse("debounce", v)?;
        }
        if let Some(v) = &self.reconcile_every {
            o.reconcile_every = parse("reconcile_every", v)?;
        }
        if let Some(v) = &self.full_read_every {
            o.full_read_every = parse("full_read_every", v)?;
        }
        if let Some(v) = &self.imap_poll_every {
            o.imap_poll_every = parse("imap_poll_every", v)?;
        }
        match self.concurrency {
            Some(0) => {
                return Err(VoicemailError::Config(
                    "bad [voicemail] concurrency 0: at least 1".into(),
                ))
            }
            Some(c) => o.concurrency = c,
            None => {}
        }
        if let Some(v) = &self.push_silence_limit {
            let limit = parse("push_silence_limit", v)?;
            o.push_silence_limit = (!limit.is_zero()).then_some(limit);
        }
        o.hard_delete = self.hard_delete;
        if let Some(d) = &self.sender_domain {
            o.sender_domain = d.clone();
        }
        if let Some(share) = self.max_removal_share {
            if !(0.0..=1.0).contains(&share) {
                return Err(VoicemailError::Config(format!(
                    "bad [voicemail] max_removal_share {share}: between 0 and 1"
                )));
            }
            o.removal_guard.max_share = share;
        }
        if let Some(min) = self.removal_guard_min {
            o.removal_guard.min_removals = min;
        }
        o.confirm_removals = self.confirm_removals;
        if let Some(f) = self.attachment_format {
            o.attachment_format = f;
        }
        o.attachment_format_by_user = self
            .attachment_format_by_user
            .iter()
            .map(|(user, f)| (user.trim().to_lowercase(), *f))
            .collect();
        if let Some(trust) = self.trust_imap_push {
            o.trust_imap_push = trust;
        }
        if let Some(v) = &self.push_trust_window {
            o.push_trust_window = parse("push_trust_window", v)?;
        }
        self.idle_options(&mut o)?;
        o.imap_push_token = self.push_token(std::env::var(IMAP_PUSH_TOKEN_ENV).ok())?;
        if self.imap_poll_every.is_none() && o.imap_push_token.is_some() {
            o.imap_poll_every = POLL_EVERY_WITH_PUSH;
        }
        Ok(o)
    }

    /// `imap_idle`, `imap_idle_connections` and `imap_idle_renew` (10 s to 29 min).
    fn idle_options(&self, o: &mut VoicemailOptions) -> Result<(), VoicemailError> {
        if let Some(mode) = self.imap_idle {
            o.imap_idle = mode;
        }
        if let Some(n) = self.imap_idle_connections {
            o.imap_idle_connections = n;
        }
        if let Some(v) = &self.imap_idle_renew {
            let renew = humantime::parse_duration(v).map_err(|e| {
                VoicemailError::Config(format!("bad [voicemail] imap_idle_renew {v:?}: {e}"))
            })?;
            if renew < Duration::from_secs(10) || renew > IDLE_RENEW_MAX {
                return Err(VoicemailError::Config(format!(
                    "bad [voicemail] imap_idle_renew {v:?}: between 10s and 29m (RFC 2177 asks for a new IDLE at least every 29 minutes)"
                )));
            }
            o.imap_idle_renew = renew;
        }
        Ok(())
    }

    /// The push token: `env` (the environment variable) first, then the file's first
    /// line; refused when shorter than [`MIN_PUSH_TOKEN_LEN`].
    fn push_token(&self, env: Option<String>) -> Result<Option<Secret>, VoicemailError> {
        let token = match (env, &self.imap_push_token_file) {
            (Some(t), _) if !t.trim().is_empty() => t.trim().to_owned(),
            (_, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    VoicemailError::Config(format!(
                        "cannot read [voicemail] imap_push_token_file {}: {e}",
                        path.display()
                    ))
                })?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
            _ => return Ok(None),
        };
        if token.chars().count() < MIN_PUSH_TOKEN_LEN {
            return Err(VoicemailError::Config(format!(
                "the IMAP push token must have at least {MIN_PUSH_TOKEN_LEN} characters (e.g. openssl rand -hex 24)"
            )));
        }
        Ok(Some(Secret::new(token)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_tables_parse() {
        let imap: ImapFileConfig = toml::from_str(
            "host = \"mail.example.com\"\nmaster_user = \"ucb\"\nmaster_password = \"x\"\n",
        )
        .unwrap();
        let s = imap.to_settings(None).unwrap();
        assert_eq!((s.port, s.security), (993, ImapSecurity::Tls));
        assert!(format!("{:?}", s.login).contains("***"));
        let vm: VoicemailFileConfig =
            toml::from_str("cuc_id = \"extension\"\nlocal_id = \"any_alias\"\ndebounce = \"2s\"\n")
                .unwrap();
        let o = vm.to_options().unwrap();
        assert_eq!(o.matching.cuc, CucIdSource::Extension);
        assert_eq!(o.matching.local, LocalKey::AnyAlias);
        assert_eq!(o.debounce, Duration::from_secs(2));
        assert_eq!(o.push_silence_limit, Some(Duration::from_secs(600)));
        assert_eq!(o.full_read_every, Duration::from_secs(6 * 3600));
        assert!(o.trust_imap_push);
        assert_eq!(o.push_trust_window, PUSH_TRUST_WINDOW);
        let trust: VoicemailFileConfig =
            toml::from_str("trust_imap_push = false\npush_trust_window = \"20m\"").unwrap();
        let trust = trust.to_options().unwrap();
        assert!(!trust.trust_imap_push);
        assert_eq!(trust.push_trust_window, Duration::from_secs(1200));
        let full: VoicemailFileConfig = toml::from_str("full_read_every = \"0s\"").unwrap();
        assert_eq!(full.to_options().unwrap().full_read_every, Duration::ZERO);
        let off: VoicemailFileConfig = toml::from_str("push_silence_limit = \"0s\"").unwrap();
        assert_eq!(off.to_options().unwrap().push_silence_limit, None);
        assert!(toml::from_str::<VoicemailFileConfig>("debounc = \"1s\"").is_err());
        assert!(VoicemailFileConfig {
            concurrency: Some(0),
            ..Default::default()
        }
        .to_options()
        .is_err());
        assert!(VoicemailFileConfig {
            max_removal_share: Some(1.5),
            ..Default::default()
        }
        .to_options()
        .is_err());
        let guard: VoicemailFileConfig = toml::from_str(
            "max_removal_share = 0.2\nremoval_guard_min = 10\nconfirm_removals = true",
        )
        .unwrap();
        let o = guard.to_options().unwrap();
        assert_eq!(
            (
                o.removal_guard.max_share,
                o.removal_guard.min_removals,
                o.confirm_removals
            ),
            (0.2, 10, true)
        );
        assert!(VoicemailFileConfig {
            debounce: Some("soon".into()),
            ..Default::default()
        }
        .to_options()
        .is_err());
    }

    #[test]
    fn the_push_token_comes_from_the_environment_or_a_file_and_lengthens_the_poll() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "0123456789abcdef0123\nignored\n").unwrap();
        let vm = VoicemailFileConfig {
            imap_push_token_file: Some(file.clone()),
            ..Default::default()
        };
        let token = vm.push_token(None).unwrap().expect("token");
        assert_eq!(token.expose(), "0123456789abcdef0123");
        let env = vm
            .push_token(Some("from-the-environment-1".into()))
            .unwrap();
        assert_eq!(env.unwrap().expose(), "from-the-environment-1");
        assert!(VoicemailFileConfig::default()
            .push_token(None)
            .unwrap()
            .is_none());
        std::fs::write(&file, "short\n").unwrap();
        assert!(vm.push_token(None).is_err(), "a guessable token is refused");
        let missing = VoicemailFileConfig {
            imap_push_token_file: Some(dir.path().join("absent")),
            ..Default::default()
        };
        assert!(missing.push_token(None).is_err());
        // With push, the poll is a safety net: long unless set.
        std::fs::write(&file, "0123456789abcdef0123\n").unwrap();
        if std::env::var(IMAP_PUSH_TOKEN_ENV).is_err() {
            let o = vm.to_options().unwrap();
            assert_eq!(o.imap_poll_every, POLL_EVERY_WITH_PUSH);
            let set = VoicemailFileConfig {
                imap_poll_every: Some("1m".into()),
                ..vm.clone()
            };
            assert_eq!(
                set.to_options().unwrap().imap_poll_every,
                Duration::from_secs(60)
            );
            let without = VoicemailFileConfig::default().to_options().unwrap();
            assert_eq!(without.imap_poll_every, Duration::from_secs(30));
        }
    }

    #[test]
    fn idle_is_automatic_without_push_bounded_and_renewed_within_rfc_2177() {
        let o = VoicemailFileConfig::default().to_options().unwrap();
        assert_eq!(
            (o.imap_idle, o.imap_idle_connections, o.imap_idle_renew),
            (ImapIdle::Auto, IDLE_CONNECTIONS, IDLE_RENEW)
        );
        let with_push = |mode| VoicemailOptions {
            imap_idle: mode,
            imap_push_token: Some(Secret::new("0123456789abcdef0123")),
            ..VoicemailOptions::default()
        };
        assert_eq!(
            o.imap_push_token.is_none(),
            o.idle_wanted(),
            "auto: IDLE exactly when no push token is set"
        );
        assert!(
            !with_push(ImapIdle::Auto).idle_wanted(),
            "push makes IDLE unneeded"
        );
        assert!(with_push(ImapIdle::On).idle_wanted());
        assert!(!with_push(ImapIdle::Off).idle_wanted());
        let none = VoicemailOptions {
            imap_idle: ImapIdle::On,
            imap_idle_connections: 0,
            ..VoicemailOptions::default()
        };
        assert!(!none.idle_wanted(), "a pool of 0 is no IDLE");
        let vm: VoicemailFileConfig = toml::from_str(
            "imap_idle = \"on\"\nimap_idle_connections = 5\nimap_idle_renew = \"29m\"",
        )
        .unwrap();
        let o = vm.to_options().unwrap();
        assert_eq!(
            (o.imap_idle, o.imap_idle_connections, o.imap_idle_renew),
            (ImapIdle::On, 5, IDLE_RENEW_MAX)
        );
        for bad in ["30m", "5s", "soon"] {
            let vm = VoicemailFileConfig {
                imap_idle_renew: Some(bad.into()),
                ..Default::default()
            };
            assert!(vm.to_options().is_err(), "{bad}");
        }
        assert!(toml::from_str::<VoicemailFileConfig>("imap_idle = \"sometimes\"").is_err());
    }

    #[test]
    fn attachment_format_parses() {
        let o = VoicemailFileConfig::default().to_options().unwrap();
        assert_eq!(o.attachment_format, AttachmentFormat::Mp3);
        for (text, want) in [
            ("wav", AttachmentFormat::Wav),
            ("mp3", AttachmentFormat::Mp3),
            ("both", AttachmentFormat::Both),
        ] {
            let vm: VoicemailFileConfig =
                toml::from_str(&format!("attachment_format = \"{text}\"")).unwrap();
            assert_eq!(vm.to_options().unwrap().attachment_format, want);
        }
        assert!(toml::from_str::<VoicemailFileConfig>("attachment_format = \"ogg\"").is_err());
        let vm: VoicemailFileConfig = toml::from_str(
            "attachment_format = \"both\"\nattachment_format_by_user = { JDoe = \"wav\" }",
        )
        .unwrap();
        let o = vm.to_options().unwrap();
        assert_eq!(o.attachment_format_for("jdoe"), AttachmentFormat::Wav);
        assert_eq!(o.attachment_format_for("JDOE "), AttachmentFormat::Wav);
        assert_eq!(o.attachment_format_for("alice"), AttachmentFormat::Both);
        assert!(toml::from_str::<VoicemailFileConfig>(
            "attachment_format_by_user = { jdoe = \"ogg\" }"
        )
        .is_err());
    }

    #[test]
    fn the_removal_guard_refuses_mass_and_empty_mailbox_removals() {
        let g = RemovalGuard::default();
        assert!(!g.refuses(0, 10, true), "nothing to remove");
        assert!(g.refuses(1, 1, true), "CUC empty: even one");
        assert!(
            !g.refuses(2, 2, false),
            "a couple of deletes for good are normal"
        );
        assert!(!g.refuses(3, 10, false), "30 % is under the share");
        assert!(g.refuses(6, 10, false), "60 % is over it");
        assert!(g.refuses(3, 4, false));
        let off = RemovalGuard {
            max_share: 1.0,
            min_removals: 0,
        };
        assert!(!off.refuses(10, 10, false));
    }
}
