//! Deterministic device names.
//!
//! The AXL schema types `XPhone.name` as `UniqueString128` ("The device name, using only
//! URL-friendly characters", AXLSoap.xsd 11.5–15.0). Names of MAC-identified phones are 15
//! characters (`SEP` + 12 hex digits) and CUCM's administration pages limit the names of
//! non-MAC devices to 15 characters of `A-Z a-z 0-9 . _ -` (from Cisco's admin guides; not
//! re-checked for 14/15, so ucbridge stays inside the stricter rule). Names are upper case:
//! CUCM compares device names case-insensitively.
//!
//! Scheme: `<PREFIX><USERID>` with the userid upper-cased, when that is at most 15
//! characters and the userid has only allowed characters. Otherwise `<PREFIX>` + the first
//! allowed characters of the userid + 5 hex digits of SHA-256(userid), 15 characters in
//! all. The same userid always gives the same name; a clash with another device is
//! detected by CUCM (-239) and reported.

use sha2::{Digest, Sha256};

/// Longest device name ucbridge generates.
pub const MAX_NAME_LEN: usize = 15;
/// Longest prefix, so that hashed names keep at least 4 characters of the userid.
pub const MAX_PREFIX_LEN: usize = 6;
const HASH_LEN: usize = 5;

pub(crate) fn allowed_byte(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
}

/// The device name for `userid` with `prefix` (already upper case and allowed).
pub fn device_name(prefix: &str, userid: &str) -> String {
    let upper = userid.to_ascii_uppercase();
    let kept: String = upper
        .chars()
        .filter(|c| c.is_ascii() && allowed_byte(*c as u8))
        .collect();
    if kept.len() == upper.len() && !kept.is_empty() && prefix.len() + kept.len() <= MAX_NAME_LEN {
        return format!("{prefix}{kept}");
    }
    let digest = Sha256::digest(userid.as_bytes());
    let hash: String = digest
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .take(HASH_LEN)
        .map(|n| {
            char::from_digit(u32::from(n), 16)
                .unwrap_or('0')
                .to_ascii_uppercase()
        })
        .collect();
    let room = MAX_NAME_LEN.saturating_sub(prefix.len() + HASH_LEN);
    let head: String = kept.chars().take(room).collect();
    format!("{prefix}{head}{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_userids_are_readable() {
        assert_eq!(device_name("UCB", "jsmith1"), "UCBJSMITH1");
        assert_eq!(device_name("UCB", "a.b-c_d"), "UCBA.B-C_D");
    }

    #[test]
    fn long_or_odd_userids_are_hashed_and_fit() {
        for userid in [
            "averyveryverylonguserid",
            "john.smith@example.com",
            "Jörg",
            "ä",
            "with space",
        ] {
            let name = device_name("UCB", userid);
            assert!(name.len() <= MAX_NAME_LEN, "{name}");
            assert!(name.bytes().all(allowed_byte), "{name}");
            assert!(name.starts_with("UCB"));
            assert_eq!(name, device_name("UCB", userid), "deterministic");
        }
        assert_ne!(
            device_name("UCB", "averyveryverylonguserid1"),
            device_name("UCB", "averyveryverylonguserid2")
        );
        assert_eq!(device_name("UCB", "john.smith@example.com").len(), 15);
    }
}
