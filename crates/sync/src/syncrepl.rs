//! RFC 4533 content synchronisation ("syncrepl") messages, decoded without panicking.
//!
//! ldap3 builds the Sync Request control (`ldap3::controls::SyncRequest`), and that is what
//! is used to ask. Its parsers for the answers (`SyncState`, `parse_syncinfo`) `panic!` on
//! a malformed value, and these values come from the network, so the two answers are
//! decoded here with ldap3's own BER reader (`ldap3::asn1`, re-exported lber):
//!
//! - Sync State control (RFC 4533 §2.3), on each entry:
//!   `SEQUENCE { state ENUMERATED {present(0), add(1), modify(2), delete(3)},
//!   entryUUID OCTET STRING (16), cookie OCTET STRING OPTIONAL }`
//! - Sync Info message (§2.5), an Intermediate Response (RFC 4511 §4.13):
//!   `CHOICE { newcookie [0] OCTET STRING, refreshDelete [1] SEQUENCE {cookie OPTIONAL,
//!   refreshDone BOOLEAN DEFAULT TRUE}, refreshPresent [2] SEQUENCE {…}, syncIdSet [3]
//!   SEQUENCE { cookie OPTIONAL, refreshDeletes BOOLEAN DEFAULT FALSE, syncUUIDs SET OF
//!   OCTET STRING } }`
//! - Sync Done control (§2.4), on the SearchResultDone of a refreshOnly search:
//!   `SEQUENCE { cookie OCTET STRING OPTIONAL, refreshDeletes BOOLEAN DEFAULT FALSE }`

use ldap3::asn1::{parse_tag, parse_uint, StructureTag, TagClass, Types, PL};
use ldap3::controls::Control;
use ldap3::ResultEntry;

/// The Sync State control's OID (RFC 4533 §2.3).
pub const SYNC_STATE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.2";
/// The Sync Info message's OID (RFC 4533 §2.5).
pub const SYNC_INFO_OID: &str = "1.3.6.1.4.1.4203.1.9.1.4";
/// The Sync Done control's OID (RFC 4533 §2.4).
pub const SYNC_DONE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.3";
/// e-syncRefreshRequired (RFC 4533 §2.6 and §3.3.1): the server cannot resume from the
/// cookie; the client must reload the content.
pub const SYNC_REFRESH_REQUIRED: u32 = 4096;

/// What happened to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    Present,
    Add,
    Modify,
    Delete,
}

/// A decoded Sync State control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub state: EntryState,
    pub entry_uuid: Vec<u8>,
    pub cookie: Option<Vec<u8>>,
}

/// What a Sync Info message says that a client acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncInfo {
    pub cookie: Option<Vec<u8>>,
    /// Entries deleted (a syncIdSet with refreshDeletes).
    pub deleted: Vec<Vec<u8>>,
    /// A refreshDelete or refreshPresent that ends the refresh phase (refreshDone TRUE,
    /// the default): from here on a refreshAndPersist session persists.
    pub refresh_done: bool,
}

fn bad(what: &str) -> String {
    format!("malformed syncrepl message: {what}")
}

fn parse(bytes: &[u8]) -> Result<StructureTag, String> {
    match parse_tag(bytes) {
        Ok((_, tag)) => Ok(tag),
        Err(_) => Err(bad("not BER")),
    }
}

/// The Sync State control among an entry's controls, if there is one.
pub fn sync_state(controls: &[Control]) -> Option<Result<SyncState, String>> {
    let raw = controls
        .iter()
        .map(|c| &c.1)
        .find(|c| c.ctype == SYNC_STATE_OID)?;
    Some(decode_state(raw.val.as_deref().unwrap_or_default()))
}

fn decode_state(value: &[u8]) -> Result<SyncState, String> {
    let mut parts = parse(value)?
        .expect_constructed()
        .ok_or_else(|| bad("state is not a sequence"))?
        .into_iter();
    let state = parts
        .next()
        .filter(|t| t.class == TagClass::Universal && t.id == Types::Enumerated as u64)
        .and_then(StructureTag::expect_primitive)
        .ok_or_else(|| bad("no state"))?;
    let state = match parse_uint(&state).map(|(_, n)| n) {
        Ok(0) => EntryState::Present,
        Ok(1) => EntryState::Add,
        Ok(2) => EntryState::Modify,
        Ok(3) => EntryState::Delete,
        _ => return Err(bad("unknown state")),
    };
    let entry_uuid = parts
        .next()
        .and_then(StructureTag::expect_primitive)
        .filter(|u| u.len() == 16)
        .ok_or_else(|| bad("entryUUID"))?;
    let cookie = parts.next().and_then(StructureTag::expect_primitive);
    Ok(SyncState {
        state,
        entry_uuid,
        cookie,
    })
}

/// Decode a Sync Info intermediate message; `Ok(None)` for another intermediate message.
pub fn sync_info(entry: &ResultEntry) -> Result<Option<SyncInfo>, String> {
    let parts = entry
        .0
        .clone()
        .match_id(25)
        .and_then(StructureTag::expect_constructed)
        .ok_or_else(|| bad("intermediate response"))?;
    let mut name = None;
    let mut value = None;
    for part in parts {
        match part.id {
            0 => name = part.expect_primitive(),
            1 => value = part.expect_primitive(),
            _ => {}
        }
    }
    if name.as_deref() != Some(SYNC_INFO_OID.as_bytes()) {
        return Ok(None);
    }
    let info = parse(&value.ok_or_else(|| bad("no value"))?)?;
    if info.class != TagClass::Context {
        return Err(bad("sync info choice"));
    }
    let mut out = SyncInfo::default();
    match (info.id, info.payload) {
        (0, PL::P(cookie)) => out.cookie = Some(cookie),
        (1..=3, PL::C(fields)) => {
            let id_set = info.id == 3;
            // The BOOLEAN is refreshDone (default TRUE) in refreshDelete/refreshPresent,
            // refreshDeletes (default FALSE) in syncIdSet.
            let mut flag_value = !id_set;
            for f in fields {
                match (f.id, f.payload) {
                    (id, PL::P(cookie)) if id == Types::OctetString as u64 => {
                        out.cookie = Some(cookie)
                    }
                    (id, PL::P(flag)) if id == Types::Boolean as u64 => {
                        flag_value = flag.first().is_some_and(|b| *b != 0)
                    }
                    (id, PL::C(uuids)) if id == Types::Set as u64 && id_set => {
                        out.deleted = uuids
                            .into_iter()
                            .filter_map(StructureTag::expect_primitive)
                            .filter(|u| u.len() == 16)
                            .collect();
                    }
                    _ => return Err(bad("sync info field")),
                }
            }
            // A syncIdSet without refreshDeletes lists entries that are *present*; the
            // periodic full compare handles that form of deletion.
            if !(id_set && flag_value) {
                out.deleted.clear();
            }
            out.refresh_done = !id_set && flag_value;
        }
        _ => return Err(bad("sync info choice")),
    }
    Ok(Some(out))
}

/// The cookie of the Sync Done control among a SearchResultDone's controls: `Ok(None)`
/// when there is no such control or it carries no cookie.
pub fn sync_done_cookie(controls: &[Control]) -> Result<Option<Vec<u8>>, String> {
    let Some(raw) = controls
        .iter()
        .map(|c| &c.1)
        .find(|c| c.ctype == SYNC_DONE_OID)
    else {
        return Ok(None);
    };
    let Some(value) = raw.val.as_deref().filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let parts = parse(value)?
        .expect_constructed()
        .ok_or_else(|| bad("sync done is not a sequence"))?;
    Ok(parts
        .into_iter()
        .find(|t| t.class == TagClass::Universal && t.id == Types::OctetString as u64)
        .and_then(StructureTag::expect_primitive))
}

/// A 16-byte UUID in RFC 4122 / RFC 4530 string form (how `entryUUID` reads).
pub fn uuid_text(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if hex.len() != 32 {
        return hex;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A cookie as stored text: as it is when it is UTF-8 (OpenLDAP's are), else `hex:…`.
pub fn cookie_text(cookie: &[u8]) -> String {
    match std::str::from_utf8(cookie) {
        Ok(t) if !t.starts_with("hex:") => t.to_owned(),
        _ => format!(
            "hex:{}",
            cookie
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
    }
}

/// The bytes of a stored cookie.
pub fn cookie_bytes(text: &str) -> Option<Vec<u8>> {
    match text.strip_prefix("hex:") {
        None => Some(text.as_bytes().to_vec()),
        Some(hex) => (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_garbage() {
        // SEQUENCE { ENUMERATED 3, OCTET STRING (16 bytes) }
        let mut v = vec![0x30, 21, 0x0a, 1, 3, 0x04, 16];
        v.extend([0xab; 16]);
        let s = decode_state(&v).unwrap();
        assert_eq!(s.state, EntryState::Delete);
        assert_eq!(
            uuid_text(&s.entry_uuid),
            "abababab-abab-abab-abab-abababababab"
        );
        assert!(decode_state(&[0x30, 0x05, 0x01]).is_err());
        assert!(decode_state(&[]).is_err());
    }

    #[test]
    fn sync_done_cookie_is_read() {
        use ldap3::controls::RawControl;
        let raw = |val: Option<Vec<u8>>| {
            vec![Control(
                None,
                RawControl {
                    ctype: SYNC_DONE_OID.into(),
                    crit: false,
                    val,
                },
            )]
        };
        // SEQUENCE { OCTET STRING "c1" }
        let with = raw(Some(vec![0x30, 4, 0x04, 2, b'c', b'1']));
        assert_eq!(sync_done_cookie(&with).unwrap(), Some(b"c1".to_vec()));
        assert_eq!(sync_done_cookie(&raw(Some(vec![0x30, 0]))).unwrap(), None);
        assert!(sync_done_cookie(&raw(Some(vec![0x30, 9, 1]))).is_err());
        assert_eq!(sync_done_cookie(&[]).unwrap(), None);
    }

    #[test]
    fn cookies_round_trip() {
        for c in [b"rid=000,csn=1".to_vec(), vec![0xff, 0x00]] {
            assert_eq!(cookie_bytes(&cookie_text(&c)).unwrap(), c);
        }
    }
}
