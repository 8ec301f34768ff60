//! How to reach Cisco IM and Presence: address, XMPP domain, TLS, limits, back-off.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ImError;

/// Transport security of the c2s connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImTls {
    /// STARTTLS required (RFC 6120 §5), certificate verified against the XMPP domain.
    #[default]
    #[serde(rename = "starttls")]
    StartTls,
    /// No TLS: IM&P's non-secure mode, only when configured so. The password crosses the
    /// network in clear with SASL PLAIN.
    Plain,
}

/// Reconnect back-off: `initial`, doubling up to `max`, each delay with ±20 % jitter so
/// a thousand sessions do not hammer a restarted IM&P in lock-step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before reconnect attempt `attempt` (1-based), jittered.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(16);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let jitter = rand::random::<f64>() * 0.4 + 0.8;
        base.mul_f64(jitter)
    }
}

/// Connection settings of IM sessions (one per user, all alike).
#[derive(Debug, Clone)]
pub struct ImSettings {
    /// IM&P node by IP or name; connected to directly (no DNS SRV lookup).
    pub host: String,
    pub port: u16,
    /// The XMPP domain IM&P serves; a mismatch is [`ImError::WrongDomain`].
    pub domain: String,
    pub tls: ImTls,
    /// Extra CA (PEM) beside the system roots, e.g. IM&P's cup-xmpp CA.
    pub ca_file: Option<PathBuf>,
    /// TCP + TLS + SASL + bind + roster, together.
    pub connect_timeout: Duration,
    /// A larger stanza from the server ends the session ([`ImError::Hostile`]).
    pub max_stanza_bytes: usize,
    pub reconnect: Backoff,
}

/// Default c2s port (RFC 6120 §14.7).
pub const DEFAULT_PORT: u16 = 5222;
/// Default limit of one stanza from the server; Prosody's own default limit is the same.
pub const DEFAULT_MAX_STANZA_BYTES: usize = 256 * 1024;

impl ImSettings {
    /// Settings with the defaults: STARTTLS, system roots, 10 s connect timeout, 256 KiB
    /// stanzas, back-off 1 s doubling to 60 s.
    pub fn new(host: impl Into<String>, port: u16, domain: impl Into<String>) -> Self {
        ImSettings {
            host: host.into(),
            port,
            domain: domain.into(),
            tls: ImTls::StartTls,
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            max_stanza_bytes: DEFAULT_MAX_STANZA_BYTES,
            reconnect: Backoff::default(),
        }
    }

    /// Refuse settings that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), ImError> {
        let bad = |s: &str| Err(ImError::InvalidSettings(s.to_owned()));
        if self.host.trim().is_empty() || self.host.contains(char::is_whitespace) {
            return bad("host must be an address or a name without spaces");
        }
        if self.port == 0 {
            return bad("port must not be 0");
        }
        if crate::jid::parse_domain(&self.domain).is_err() {
            return bad("domain must be an XMPP domain such as example.com");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout must be positive");
        }
        if self.max_stanza_bytes < 4096 {
            return bad("max_stanza_bytes must be at least 4096");
        }
        if self.reconnect.initial.is_zero() || self.reconnect.max < self.reconnect.initial {
            return bad("reconnect back-off needs 0 < initial <= max");
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                return Err(ImError::InvalidSettings(format!(
                    "ca_file {} is not a readable file",
                    ca.display()
                )));
            }
        }
        Ok(())
    }
}
