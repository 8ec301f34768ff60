//! LDAP entries → snapshot entries: decoding a SearchResultEntry, the attribute mapping,
//! identities (entryUUID, objectGUID), AD's disabled bit and the change cursor.
//!
//! The entry is decoded here from ldap3's BER structure (`ldap3::asn1`, re-exported lber)
//! rather than with `ldap3::SearchEntry::construct`, because that one panics on a
//! malformed entry and silently moves non-UTF-8 values elsewhere; a directory is input
//! from the network, and an undecodable entry or value must be a per-entry problem.

use std::collections::BTreeMap;

use ldap3::asn1::StructureTag;
use ucbridge_store::{SourceEntry, SourceUser};

use crate::ldap_source::DirectoryFlavor;

/// AD `userAccountControl` ACCOUNTDISABLE (MS-ADTS 2.2.16, 0x00000002).
pub const UAC_ACCOUNTDISABLE: i64 = 0x2;
/// Values kept per attribute (the rest are ignored); the first is used.
const MAX_VALUES: usize = 16;
/// Bytes kept per value; longer values are a per-entry problem.
const MAX_VALUE_BYTES: usize = 16 * 1024;
/// How far a `modifyTimestamp` poll looks back behind its cursor, so that an entry changed
/// while a full refresh ran (and read before its change) is seen by the next poll.
pub const TIMESTAMP_OVERLAP_SECS: i64 = 300;

/// A decoded entry: DN and attribute values as bytes (names lower-cased).
#[derive(Debug)]
pub struct RawEntry {
    pub dn: Result<String, Vec<u8>>,
    pub attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl RawEntry {
    fn values(&self, name: &str) -> Option<&[Vec<u8>]> {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The DN for messages (lossy when it is not UTF-8).
    pub fn dn_text(&self) -> String {
        match &self.dn {
            Ok(dn) => dn.clone(),
            Err(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}

/// Decode a SearchResultEntry (RFC 4511 §4.5.2: `[APPLICATION 4] SEQUENCE { objectName
/// LDAPDN, attributes PartialAttributeList }`) without panicking.
pub fn decode(tag: StructureTag) -> Result<RawEntry, String> {
    let bad = |what: &str| format!("malformed search result entry: {what}");
    let mut parts = tag
        .match_id(4)
        .and_then(StructureTag::expect_constructed)
        .ok_or_else(|| bad("not an entry"))?
        .into_iter();
    let dn = parts
        .next()
        .and_then(StructureTag::expect_primitive)
        .ok_or_else(|| bad("no DN"))?;
    let dn = String::from_utf8(dn).map_err(|e| e.into_bytes());
    let list = parts
        .next()
        .and_then(StructureTag::expect_constructed)
        .ok_or_else(|| bad("no attribute list"))?;
    let mut attrs = Vec::with_capacity(list.len());
    for attribute in list {
        let mut pair = attribute
            .expect_constructed()
            .ok_or_else(|| bad("attribute"))?
            .into_iter();
        let name = pair
            .next()
            .and_then(StructureTag::expect_primitive)
            .and_then(|n| String::from_utf8(n).ok())
            .ok_or_else(|| bad("attribute name"))?;
        let values = pair
            .next()
            .and_then(StructureTag::expect_constructed)
            .ok_or_else(|| bad("attribute values"))?
            .into_iter()
            .take(MAX_VALUES)
            .map(|v| v.expect_primitive().ok_or_else(|| bad("attribute value")))
            .collect::<Result<Vec<_>, _>>()?;
        attrs.push((name.to_ascii_lowercase(), values));
    }
    Ok(RawEntry { dn, attrs })
}

/// Snapshot fields an attribute can fill (the names the sync rules read).
const FIELDS: &[&str] = &[
    "userid",
    "first_name",
    "middle_name",
    "last_name",
    "display_name",
    "mailid",
    "telephone_number",
    "primary_extension",
    "department",
    "manager",
    "title",
    "mobile_number",
    "home_number",
    "pager_number",
    "directory_uri",
];

fn defaults(flavor: DirectoryFlavor) -> BTreeMap<&'static str, &'static str> {
    let userid = match flavor {
        DirectoryFlavor::Openldap => "uid",
        DirectoryFlavor::ActiveDirectory => "sAMAccountName",
    };
    let department = match flavor {
        DirectoryFlavor::Openldap => "departmentNumber",
        DirectoryFlavor::ActiveDirectory => "department",
    };
    BTreeMap::from([
        ("userid", userid),
        ("first_name", "givenName"),
        ("last_name", "sn"),
        ("display_name", "displayName"),
        ("mailid", "mail"),
        ("telephone_number", "telephoneNumber"),
        ("department", department),
        ("manager", "manager"),
        ("title", "title"),
        ("mobile_number", "mobile"),
        ("home_number", "homePhone"),
        ("pager_number", "pager"),
    ])
}

/// How entries become snapshot users, compiled from the settings.
#[derive(Debug, Clone)]
pub struct Mapping {
    flavor: DirectoryFlavor,
    id_attribute: String,
    /// (snapshot field, attribute)
    fields: Vec<(&'static str, String)>,
    change_attribute: &'static str,
    requested: Vec<String>,
}

/// One entry mapped: the snapshot entry or why it was left out, warnings about values
/// that were dropped, and its change mark (modifyTimestamp / uSNChanged).
pub struct Mapped {
    pub entry: Result<SourceEntry, String>,
    pub warnings: Vec<String>,
    pub change_mark: Option<String>,
}

impl Mapping {
    pub fn new(
        flavor: DirectoryFlavor,
        id_attribute: Option<&str>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Mapping, String> {
        let mut map: BTreeMap<&'static str, String> = defaults(flavor)
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        for (field, attribute) in overrides {
            let Some(known) = FIELDS.iter().find(|f| **f == field.as_str()) else {
                return Err(format!(
                    "unknown snapshot field {field:?} in attributes (known: {})",
                    FIELDS.join(", ")
                ));
            };
            if attribute.trim().is_empty() {
                map.remove(known);
            } else if !attribute
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ';')
            {
                return Err(format!("{attribute:?} is not an attribute description"));
            } else {
                map.insert(known, attribute.trim().to_owned());
            }
        }
        if !map.contains_key("userid") {
            return Err("the userid field must be mapped to an attribute".into());
        }
        let id_attribute = id_attribute
            .map(str::to_owned)
            .unwrap_or_else(|| match flavor {
                DirectoryFlavor::Openldap => "entryUUID".into(),
                DirectoryFlavor::ActiveDirectory => "objectGUID".into(),
            });
        let change_attribute = match flavor {
            DirectoryFlavor::Openldap => "modifyTimestamp",
            DirectoryFlavor::ActiveDirectory => "uSNChanged",
        };
        let fields: Vec<(&'static str, String)> = map.into_iter().collect();
        let mut requested: Vec<String> = fields.iter().map(|(_, a)| a.clone()).collect();
        requested.push(id_attribute.clone());
        requested.push(change_attribute.into());
        if flavor == DirectoryFlavor::ActiveDirectory {
            requested.push("userAccountControl".into());
        }
        requested.sort_by_key(|a| a.to_ascii_lowercase());
        requested.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        Ok(Mapping {
            flavor,
            id_attribute,
            fields,
            change_attribute,
            requested,
        })
    }

    /// Whether identities are `entryUUID`s (what syncrepl names deleted entries by).
    pub fn id_is_entry_uuid(&self) -> bool {
        self.id_attribute.eq_ignore_ascii_case("entryUUID")
    }

    /// The attributes every search asks for (operational ones by name).
    pub fn requested(&self) -> Vec<String> {
        self.requested.clone()
    }

    /// The configured filter restricted to entries changed at or after `cursor`. The
    /// cursor is checked to be a timestamp or a number, so no filter text comes from the
    /// directory unchecked.
    pub fn changed_since(&self, filter: &str, cursor: &str) -> String {
        let since = match self.flavor {
            DirectoryFlavor::Openldap => timestamp_minus(cursor, TIMESTAMP_OVERLAP_SECS)
                .unwrap_or_else(|| "19700101000000Z".into()),
            DirectoryFlavor::ActiveDirectory => cursor
                .parse::<u64>()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "0".into()),
        };
        format!("(&{filter}({}>={since}))", self.change_attribute)
    }

    /// Move `cursor` to `mark` when `mark` is later.
    pub fn advance(&self, cursor: &mut Option<String>, mark: &str) {
        let later = match (self.flavor, cursor.as_deref()) {
            (_, None) => true,
            (DirectoryFlavor::ActiveDirectory, Some(c)) => {
                mark.parse::<u64>().ok() > c.parse::<u64>().ok()
            }
            // GeneralizedTime in one format ("YYYYmmddHHMMSSZ") orders as text.
            (DirectoryFlavor::Openldap, Some(c)) => mark > c,
        };
        if later {
            *cursor = Some(mark.to_owned());
        }
    }

    /// Map one entry.
    pub fn map(&self, raw: &RawEntry) -> Mapped {
        let mut warnings = Vec::new();
        let change_mark = raw
            .values(self.change_attribute)
            .and_then(|v| v.first())
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && s.len() <= 64);
        let entry = self.entry(raw, &mut warnings);
        Mapped {
            entry,
            warnings,
            change_mark,
        }
    }

    fn entry(&self, raw: &RawEntry, warnings: &mut Vec<String>) -> Result<SourceEntry, String> {
        let dn = raw
            .dn
            .clone()
            .map_err(|_| "the DN is not valid UTF-8; entry left out".to_owned())?;
        let uuid = match raw.values(&self.id_attribute).and_then(|v| v.first()) {
            Some(v) if !v.is_empty() => identity(v),
            _ => {
                return Err(format!(
                    "no {} (the identity attribute); entry left out",
                    self.id_attribute
                ))
            }
        };
        let mut user = SourceUser {
            uuid,
            ..SourceUser::default()
        };
        for (field, attribute) in &self.fields {
            let Some(bytes) = raw.values(attribute).and_then(|v| v.first()) else {
                continue;
            };
            if bytes.len() > MAX_VALUE_BYTES {
                warnings.push(format!(
                    "{attribute} is longer than {MAX_VALUE_BYTES} bytes; ignored"
                ));
                continue;
            }
            let Ok(text) = std::str::from_utf8(bytes) else {
                if *field == "userid" {
                    return Err(format!(
                        "{attribute} (the userid) is not valid UTF-8; entry left out"
                    ));
                }
                warnings.push(format!("{attribute} is not valid UTF-8; ignored"));
                continue;
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let value = if *field == "manager" {
                first_rdn_value(text)
            } else {
                text.to_owned()
            };
            set_field(&mut user, field, value);
        }
        if user.userid.trim().is_empty() {
            let attribute = self
                .fields
                .iter()
                .find(|(f, _)| *f == "userid")
                .map_or("userid", |(_, a)| a.as_str());
            return Err(format!("no {attribute} (the userid); entry left out"));
        }
        let disabled = self.flavor == DirectoryFlavor::ActiveDirectory
            && raw
                .values("userAccountControl")
                .and_then(|v| v.first())
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|s| s.trim().parse::<i64>().ok())
                .is_some_and(|uac| uac & UAC_ACCOUNTDISABLE != 0);
        Ok(SourceEntry {
            user,
            dn: Some(dn),
            disabled,
        })
    }
}

fn set_field(u: &mut SourceUser, field: &str, value: String) {
    let slot = match field {
        "userid" => {
            u.userid = value;
            return;
        }
        "first_name" => &mut u.first_name,
        "middle_name" => &mut u.middle_name,
        "last_name" => &mut u.last_name,
        "display_name" => &mut u.display_name,
        "mailid" => &mut u.mailid,
        "telephone_number" => &mut u.telephone_number,
        "primary_extension" => &mut u.primary_extension,
        "department" => &mut u.department,
        "manager" => &mut u.manager,
        "title" => &mut u.title,
        "mobile_number" => &mut u.mobile_number,
        "home_number" => &mut u.home_number,
        "pager_number" => &mut u.pager_number,
        "directory_uri" => &mut u.directory_uri,
        _ => return,
    };
    *slot = Some(value);
}

/// The identity as text: an `entryUUID` as it is (lower-cased), a 16-byte binary value
/// (AD `objectGUID`) in AD's GUID string form — the first three fields are little-endian
/// in the packet representation (MS-DTYP 2.3.4.2) — and other binary values in hex.
pub fn identity(value: &[u8]) -> String {
    if value.len() == 16 && value.iter().any(|b| !b.is_ascii_graphic()) {
        let v = value;
        return format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            v[3], v[2], v[1], v[0], v[5], v[4], v[7], v[6], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]
        );
    }
    match std::str::from_utf8(value) {
        Ok(text) => text.trim().to_ascii_lowercase(),
        Err(_) => value.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// `uid=jdoe,ou=people,…` → `jdoe`; `CN=Doe\, John,OU=…` → `Doe, John`. A manager is a
/// DN in LDAP; the rules get its naming value (a userid on OpenLDAP, a name on AD).
fn first_rdn_value(dn: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    let mut in_value = false;
    for c in dn.chars() {
        if escaped {
            if in_value {
                out.push(c);
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' if !in_value => in_value = true,
            ',' | '+' if in_value => break,
            _ if in_value => out.push(c),
            _ => {}
        }
    }
    if out.trim().is_empty() {
        dn.to_owned()
    } else {
        out.trim().to_owned()
    }
}

/// `YYYYmmddHHMMSS[.f]Z` minus `secs`, in the same form; `None` when it does not parse.
fn timestamp_minus(ts: &str, secs: i64) -> Option<String> {
    let digits: String = ts.chars().take_while(char::is_ascii_digit).collect();
    if digits.len() < 14 {
        return None;
    }
    let t = chrono::NaiveDateTime::parse_from_str(&digits[..14], "%Y%m%d%H%M%S").ok()?;
    Some(format!(
        "{}Z",
        (t - chrono::Duration::seconds(secs)).format("%Y%m%d%H%M%S")
    ))
}

/// A short random-enough tag making refresh owners unique per process.
pub fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:08x}", h.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_guid_uses_ad_string_form() {
        let bytes = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(identity(&bytes), "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(identity(b"6A1E-B2"), "6a1e-b2");
    }

    #[test]
    fn manager_dn_gives_its_naming_value() {
        assert_eq!(first_rdn_value("uid=jdoe,ou=people,dc=x"), "jdoe");
        assert_eq!(first_rdn_value("CN=Doe\\, John,OU=Staff"), "Doe, John");
    }

    #[test]
    fn poll_filter_looks_back_and_checks_the_cursor() {
        let m = Mapping::new(DirectoryFlavor::Openldap, None, &BTreeMap::new()).unwrap();
        assert_eq!(
            m.changed_since("(objectClass=x)", "20261130120500Z"),
            "(&(objectClass=x)(modifyTimestamp>=20261130120000Z))"
        );
        let ad = Mapping::new(DirectoryFlavor::ActiveDirectory, None, &BTreeMap::new()).unwrap();
        assert_eq!(
            ad.changed_since("(a=b)", "12)(x=*"),
            "(&(a=b)(uSNChanged>=0))"
        );
    }
}
