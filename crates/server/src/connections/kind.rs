//! The kinds of connection: what each one talks to, which URL schemes it takes, and
//! whether it may log in with SSO.
//!
//! The kind is separate from where a connection is stored (`storage_name` in the parent
//! module), so several named connections of one kind can be added later without touching
//! this type.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ConnectionError;

/// One kind of connection, in the order the admin page shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// Cisco Unified CM over AXL.
    Cucm,
    /// Unity Connection (CUMI / CUPI).
    Cuc,
    /// The identity service (OAuth token endpoint) and the SSO Status API.
    Ids,
    /// The IMAP server voicemail is mirrored into.
    Imap,
    /// The LDAP directory users are exported to.
    Ldap,
    /// Cisco IM and Presence (XMPP): end users' chat and presence.
    Xmpp,
}

impl ConnectionKind {
    /// Every kind, in the order the admin page shows them.
    pub const ALL: [ConnectionKind; 6] = [
        ConnectionKind::Cucm,
        ConnectionKind::Cuc,
        ConnectionKind::Ids,
        ConnectionKind::Imap,
        ConnectionKind::Ldap,
        ConnectionKind::Xmpp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::Cucm => "cucm",
            ConnectionKind::Cuc => "cuc",
            ConnectionKind::Ids => "ids",
            ConnectionKind::Imap => "imap",
            ConnectionKind::Ldap => "ldap",
            ConnectionKind::Xmpp => "xmpp",
        }
    }

    /// The URL schemes a connection of this kind accepts.
    pub fn url_schemes(self) -> &'static [&'static str] {
        match self {
            ConnectionKind::Imap => &["imap://", "imaps://"],
            ConnectionKind::Ldap => &["ldap://", "ldaps://"],
            // IM&P is reached by address and port (no DNS SRV, seed 002): `xmpp://host:5222`.
            ConnectionKind::Xmpp => &["xmpp://"],
            _ => &["https://", "http://"],
        }
    }

    /// Whether the connection may authenticate with an SSO Bearer token from `ids`.
    pub fn allows_sso(self) -> bool {
        matches!(self, ConnectionKind::Cucm | ConnectionKind::Cuc)
    }
}

impl fmt::Display for ConnectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConnectionKind {
    type Err = ConnectionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnectionKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ConnectionError::UnknownKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for kind in ConnectionKind::ALL {
            assert_eq!(kind.as_str().parse::<ConnectionKind>().unwrap(), kind);
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
        let err = "ldapp".parse::<ConnectionKind>().unwrap_err().to_string();
        assert!(err.contains("ldapp"), "{err}");
    }
}
