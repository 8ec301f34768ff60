//! The `[signin]` table (as the CLI and the server read it) and its typed, validated form.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
pub use ucbridge_store::LoginKey;

/// The `[signin]` table; durations as "5m", "30s".
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInFileConfig {
    /// How long a password CUCM accepted is accepted again without asking CUCM
    /// (default "5m"; "0s" = always ask CUCM).
    pub cache_ttl: Option<String>,
    /// When CUCM cannot be reached: accept a cached password this long past `cache_ttl`
    /// (default "0s" = refuse; see the crate docs for the trade-off).
    pub unavailable_grace: Option<String>,
    /// Attempts per minute for one login name (default 30; 0 = no limit).
    pub attempts_per_minute_per_user: Option<u32>,
    /// Attempts per minute from one client address (IPv6: per /64; default 300; 0 = no
    /// limit). Behind a proxy or NAT, all its clients share it.
    pub attempts_per_minute_per_address: Option<u32>,
    /// Which values of a synced user a login name is compared with, in order (default:
    /// username, userid, userid_local_part, email, extension).
    pub id_sources: Option<Vec<LoginKey>>,
    /// Longest password accepted, in bytes (default 128).
    pub max_password_bytes: Option<usize>,
    /// Refusals are answered no sooner than this after the attempt began (default "1s"),
    /// so the time of an answer does not tell an unknown user from a wrong password.
    pub refusal_delay: Option<String>,
    /// Longest wait for CUCM's answer (default "10s"); past it CUCM counts as unreachable.
    pub cucm_timeout: Option<String>,
    /// File whose first line is the bearer token the mail server's passdb presents to
    /// `POST /api/v1/passdb` (or `UCBRIDGE_PASSDB_TOKEN`). Without one the endpoint is off.
    pub passdb_token_file: Option<PathBuf>,
}

/// The validated `[signin]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInConfig {
    pub cache_ttl: Duration,
    pub unavailable_grace: Duration,
    pub attempts_per_minute_per_user: u32,
    pub attempts_per_minute_per_address: u32,
    pub id_sources: Vec<LoginKey>,
    pub max_password_bytes: usize,
    pub refusal_delay: Duration,
    pub cucm_timeout: Duration,
}

/// Longest login name looked at (bytes); longer ones are refused as invalid.
pub const MAX_LOGIN_BYTES: usize = 256;

/// Hard ceiling of `max_password_bytes` (CUCM's own limit is far below it).
pub const PASSWORD_BYTES_CEILING: usize = 1024;

impl Default for SignInConfig {
    fn default() -> Self {
        SignInConfig {
            cache_ttl: Duration::from_secs(5 * 60),
            unavailable_grace: Duration::ZERO,
            attempts_per_minute_per_user: 30,
            attempts_per_minute_per_address: 300,
            id_sources: LoginKey::ALL.to_vec(),
            max_password_bytes: 128,
            refusal_delay: Duration::from_secs(1),
            cucm_timeout: Duration::from_secs(10),
        }
    }
}

/// A `[signin]` value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("[signin] {0}")]
pub struct SignInConfigError(String);

impl SignInFileConfig {
    /// Validate into settings (defaults for what is not set).
    pub fn to_config(&self) -> Result<SignInConfig, SignInConfigError> {
        let mut c = SignInConfig::default();
        let parse = |name: &str, v: &Option<String>, into: &mut Duration| {
            if let Some(v) = v {
                *into = humantime::parse_duration(v)
                    .map_err(|e| SignInConfigError(format!("{name} {v:?}: {e}")))?;
            }
            Ok::<_, SignInConfigError>(())
        };
        parse("cache_ttl", &self.cache_ttl, &mut c.cache_ttl)?;
        parse(
            "unavailable_grace",
            &self.unavailable_grace,
            &mut c.unavailable_grace,
        )?;
        parse("refusal_delay", &self.refusal_delay, &mut c.refusal_delay)?;
        parse("cucm_timeout", &self.cucm_timeout, &mut c.cucm_timeout)?;
        if c.cucm_timeout.is_zero() {
            return Err(SignInConfigError("cucm_timeout must be over 0s".into()));
        }
        if c.refusal_delay > Duration::from_secs(30) {
            return Err(SignInConfigError(
                "refusal_delay over 30s would hold connections for nothing".into(),
            ));
        }
        if let Some(n) = self.attempts_per_minute_per_user {
            c.attempts_per_minute_per_user = n;
        }
        if let Some(n) = self.attempts_per_minute_per_address {
            c.attempts_per_minute_per_address = n;
        }
        if let Some(sources) = &self.id_sources {
            if sources.is_empty() {
                return Err(SignInConfigError(
                    "id_sources is empty: nobody could sign in".into(),
                ));
            }
            c.id_sources = sources.clone();
        }
        if let Some(n) = self.max_password_bytes {
            if n == 0 || n > PASSWORD_BYTES_CEILING {
                return Err(SignInConfigError(format!(
                    "max_password_bytes {n}: use 1 to {PASSWORD_BYTES_CEILING}"
                )));
            }
            c.max_password_bytes = n;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = SignInFileConfig::default().to_config().unwrap();
        assert_eq!(c, SignInConfig::default());
        assert_eq!(c.unavailable_grace, Duration::ZERO, "refuse by default");
        let f: SignInFileConfig = serde_json::from_value(serde_json::json!({
            "cache_ttl": "2m", "unavailable_grace": "1h", "id_sources": ["extension"],
            "attempts_per_minute_per_user": 0, "max_password_bytes": 64
        }))
        .unwrap();
        let c = f.to_config().unwrap();
        assert_eq!(c.cache_ttl, Duration::from_secs(120));
        assert_eq!(c.unavailable_grace, Duration::from_secs(3600));
        assert_eq!(c.id_sources, vec![LoginKey::Extension]);
        assert_eq!(c.attempts_per_minute_per_user, 0);
        assert_eq!(c.max_password_bytes, 64);
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            serde_json::json!({"cache_ttl": "soon"}),
            serde_json::json!({"id_sources": []}),
            serde_json::json!({"max_password_bytes": 0}),
            serde_json::json!({"max_password_bytes": 100000}),
            serde_json::json!({"refusal_delay": "5m"}),
        ] {
            let f: SignInFileConfig = serde_json::from_value(bad.clone()).unwrap();
            assert!(f.to_config().is_err(), "{bad}");
        }
        let unknown: Result<SignInFileConfig, _> =
            serde_json::from_value(serde_json::json!({"id_sources": ["phone"]}));
        assert!(unknown.is_err());
    }
}
