//! JID checks for input from the API (RFC 7622): contacts are bare JIDs of users.

use tokio_xmpp::jid::{BareJid, Jid};

use crate::ImError;

/// The longest JID part RFC 7622 §3 allows (bytes).
const MAX_PART: usize = 1023;

/// A contact's bare JID (`user@domain`), normalised (stringprep: lower case etc.).
pub fn validate_jid(jid: &str) -> Result<String, ImError> {
    parse_bare(jid).map(|j| j.to_string())
}

pub(crate) fn parse_bare(jid: &str) -> Result<BareJid, ImError> {
    let shown = || {
        let mut s: String = jid.chars().take(80).collect();
        if s.len() < jid.len() {
            s.push('…');
        }
        format!("{s:?}")
    };
    if jid.len() > 3 * MAX_PART + 2 || jid.chars().any(char::is_control) {
        return Err(ImError::InvalidJid(format!(
            "{}: too long or control characters",
            shown()
        )));
    }
    let parsed =
        Jid::new(jid.trim()).map_err(|e| ImError::InvalidJid(format!("{}: {e}", shown())))?;
    if parsed.resource().is_some() {
        return Err(ImError::InvalidJid(format!(
            "{}: a bare JID (user@domain) without /resource",
            shown()
        )));
    }
    if parsed.node().is_none() {
        return Err(ImError::InvalidJid(format!(
            "{}: needs a user part (user@domain)",
            shown()
        )));
    }
    Ok(parsed.to_bare())
}

/// An XMPP domain alone (no user, no resource), normalised.
pub(crate) fn parse_domain(domain: &str) -> Result<String, ImError> {
    let parsed = Jid::new(domain.trim())
        .map_err(|e| ImError::InvalidSettings(format!("XMPP domain {domain:?}: {e}")))?;
    if parsed.node().is_some() || parsed.resource().is_some() {
        return Err(ImError::InvalidSettings(format!(
            "XMPP domain {domain:?}: a domain only, without user@ or /resource"
        )));
    }
    Ok(parsed.domain().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_jids_are_normalised_and_others_refused() {
        assert_eq!(
            validate_jid("Alice@Example.COM").unwrap(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a@b/res",
            "a b@c",
            "a@b\n",
        ] {
            assert!(
                matches!(validate_jid(bad), Err(ImError::InvalidJid(_))),
                "{bad:?}"
            );
        }
        assert_eq!(parse_domain("Example.com").unwrap(), "example.com");
        assert!(parse_domain("a@example.com").is_err());
    }
}
