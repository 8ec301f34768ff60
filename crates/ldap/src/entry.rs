//! From a local user to the LDAP entry ucbridge wants: DN, managed attributes, fingerprint.
//!
//! Pure functions; no I/O. The mapping (docs/ldap-export.md):
//!
//! | setting | value |
//! |---|---|
//! | `uid_from = primary_alias` | first of the user's aliases |
//! | `uid_from = primary_email` | e-mail |
//! | `uid_from = username` | username |
//! | `uid_from = internal_id` | ucbridge's user id |
//! | `uid_from = phone` / `numeric_phone` | extension / its digits |
//! | `phone_from = phone` / `numeric_phone` / `empty` | extension / its digits / none |
//!
//! inetOrgPerson requires `cn` and `sn` (RFC 4519 `person`), so those are always written:
//! `cn` = display name, else "first last", else the uid; `sn` = last name, else the uid.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sha2::{Digest, Sha256};
use ucbridge_store::ExportUser;

use crate::settings::{LdapExportSettings, NamingAttribute, PhoneSource, UidSource};

/// The attributes ucbridge owns on its entries; anything else on an entry is left alone.
pub const MANAGED_ATTRIBUTES: &[&str] = &[
    "uid",
    "cn",
    "sn",
    "givenName",
    "displayName",
    "mail",
    "telephoneNumber",
    "userPassword",
];

/// The userPassword scheme of OpenLDAP's argon2 module (contrib/slapd-modules/passwd/argon2,
/// built into 2.5 as `argon2.so`): `{ARGON2}` followed by the encoded PHC string.
pub const ARGON2_SCHEME: &str = "{ARGON2}";

/// What ucbridge wants the directory to hold for one user.
#[derive(Clone, PartialEq, Eq)]
pub struct DesiredEntry {
    pub dn: String,
    /// `uid=<escaped value>` (or `cn=…`): what a rename passes to ModifyDN.
    pub rdn: String,
    /// Managed attribute → values; a managed attribute missing here must be absent.
    pub attributes: BTreeMap<&'static str, Vec<String>>,
    pub fingerprint: String,
}

impl std::fmt::Debug for DesiredEntry {
    // userPassword is a hash, but a hash can be cracked offline: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: BTreeMap<_, _> = self
            .attributes
            .iter()
            .map(|(k, v)| {
                let v = if *k == "userPassword" {
                    vec!["<hash>".to_owned()]
                } else {
                    v.clone()
                };
                (*k, v)
            })
            .collect();
        f.debug_struct("DesiredEntry")
            .field("dn", &self.dn)
            .field("attributes", &shown)
            .finish()
    }
}

/// The digits of a phone number (IceWarp's "Numeric characters of Phone #").
pub fn numeric_phone(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The exported uid value, or why there is none.
pub fn uid_value(user: &ExportUser, from: UidSource) -> Result<String, String> {
    let r = &user.user.record;
    let (value, what) = match from {
        UidSource::PrimaryAlias => (non_empty(r.aliases.first().map(String::as_str)), "alias"),
        UidSource::PrimaryEmail => (non_empty(r.email.as_deref()), "e-mail address"),
        UidSource::Username => (non_empty(Some(&r.username)), "username"),
        UidSource::InternalId => (Some(user.user.id.to_string()), "id"),
        UidSource::Phone => (non_empty(r.extension.as_deref()), "phone number"),
        UidSource::NumericPhone => (
            non_empty(r.extension.as_deref().map(numeric_phone).as_deref()),
            "phone number with digits",
        ),
    };
    value.ok_or_else(|| format!("no {what} to export as uid (uid_from = {from:?})"))
}

fn phone_value(user: &ExportUser, from: PhoneSource) -> Option<String> {
    let ext = user.user.record.extension.as_deref();
    match from {
        PhoneSource::Empty => None,
        PhoneSource::Phone => non_empty(ext),
        PhoneSource::NumericPhone => non_empty(ext.map(numeric_phone).as_deref()),
    }
}

/// The entry for `user`, or why the user cannot be exported.
pub fn desired_entry(
    user: &ExportUser,
    settings: &LdapExportSettings,
) -> Result<DesiredEntry, String> {
    let r = &user.user.record;
    let uid = uid_value(user, settings.uid_from)?;
    let full_name = match (
        non_empty(r.first_name.as_deref()),
        non_empty(r.last_name.as_deref()),
    ) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (f, l) => f.or(l),
    };
    let display = non_empty(r.display_name.as_deref());
    let mut attributes: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    attributes.insert("uid", vec![uid.clone()]);
    let cn = match settings.naming_attribute {
        NamingAttribute::Cn => uid.clone(),
        NamingAttribute::Uid => display
            .clone()
            .or_else(|| full_name.clone())
            .unwrap_or_else(|| uid.clone()),
    };
    attributes.insert("cn", vec![cn]);
    attributes.insert(
        "sn",
        vec![non_empty(r.last_name.as_deref()).unwrap_or_else(|| uid.clone())],
    );
    if let Some(v) = non_empty(r.first_name.as_deref()) {
        attributes.insert("givenName", vec![v]);
    }
    if let Some(v) = display.or(full_name) {
        attributes.insert("displayName", vec![v]);
    }
    // `mail` is an IA5String (RFC 4524 §2.16): an internationalised address cannot be
    // stored there, so it is left out rather than failing the whole user.
    if let Some(v) = non_empty(r.email.as_deref()).filter(|v| v.is_ascii()) {
        attributes.insert("mail", vec![v]);
    }
    if let Some(v) = phone_value(user, settings.phone_from) {
        attributes.insert("telephoneNumber", vec![v]);
    }
    if let Some(hash) = user.password_hash.as_deref().filter(|h| !h.is_empty()) {
        attributes.insert("userPassword", vec![format!("{ARGON2_SCHEME}{hash}")]);
    }
    // RFC 4514 §2.4: escape the value, then join it to its type and the parent DN.
    let rdn = format!(
        "{}={}",
        settings.naming_attribute.name(),
        ldap3::dn_escape(uid.as_str())
    );
    let dn = format!("{rdn},{}", settings.base_dn.trim());
    let fingerprint = fingerprint(&dn, &settings.object_classes, &attributes);
    Ok(DesiredEntry {
        dn,
        rdn,
        attributes,
        fingerprint,
    })
}

/// SHA-256 over the DN, object classes and managed attributes, length-prefixed so no two
/// different entries hash alike by concatenation.
fn fingerprint(
    dn: &str,
    object_classes: &[String],
    attributes: &BTreeMap<&'static str, Vec<String>>,
) -> String {
    let mut h = Sha256::new();
    let mut put = |s: &str| {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    };
    put("v1");
    put(dn);
    for oc in object_classes {
        put(oc);
    }
    for (name, values) in attributes {
        put(name);
        for v in values {
            put(v);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Attribute values as an entry holds them, looked up case-insensitively (servers return
/// attribute names in their own spelling).
pub fn current_values<'a>(
    attrs: &'a HashMap<String, Vec<String>>,
    name: &str,
) -> Option<&'a Vec<String>> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// One change to a managed attribute: replace with these values (empty = delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeChange {
    pub name: &'static str,
    pub values: Vec<String>,
}

/// What must change on an existing entry to match `desired`: managed attributes that
/// differ (as sets of values) are replaced, unwanted ones removed; missing object classes
/// are returned separately (they are added, never removed).
pub fn diff(
    desired: &DesiredEntry,
    object_classes: &[String],
    current: &HashMap<String, Vec<String>>,
) -> (Vec<String>, Vec<AttributeChange>) {
    let have_classes: BTreeSet<String> = current_values(current, "objectClass")
        .map(|v| v.iter().map(|c| c.to_ascii_lowercase()).collect())
        .unwrap_or_default();
    let missing_classes = object_classes
        .iter()
        .filter(|c| !have_classes.contains(&c.to_ascii_lowercase()))
        .cloned()
        .collect();
    let mut changes = Vec::new();
    for name in MANAGED_ATTRIBUTES {
        let want: BTreeSet<&str> = desired
            .attributes
            .get(name)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let have: BTreeSet<&str> = current_values(current, name)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default();
        if want != have {
            changes.push(AttributeChange {
                name,
                values: want.into_iter().map(str::to_owned).collect(),
            });
        }
    }
    (missing_classes, changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ucbridge_auth::Secret;
    use ucbridge_store::{LocalUser, UserRecord};

    fn user(id: i64, username: &str, ext: Option<&str>) -> ExportUser {
        ExportUser {
            user: LocalUser {
                id,
                record: UserRecord {
                    username: username.into(),
                    first_name: Some("Jane".into()),
                    last_name: Some("Smith".into()),
                    email: Some(format!("{username}@example.com")),
                    aliases: vec!["jsm".into(), "1001".into()],
                    extension: ext.map(str::to_owned),
                    source: "local".into(),
                    ..UserRecord::default()
                },
                has_password: true,
                created_at: 0,
                updated_at: 0,
            },
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into()),
        }
    }

    fn settings() -> LdapExportSettings {
        LdapExportSettings::new(
            "ldap://127.0.0.1",
            "cn=admin,dc=x",
            Secret::new("pw"),
            "ou=people,dc=x",
        )
    }

    #[test]
    fn every_uid_source_maps_as_documented() {
        let u = user(42, "jsmith", Some("+1 (555) 100*2"));
        let cases = [
            (UidSource::PrimaryAlias, "jsm"),
            (UidSource::PrimaryEmail, "jsmith@example.com"),
            (UidSource::Username, "jsmith"),
            (UidSource::InternalId, "42"),
            (UidSource::Phone, "+1 (555) 100*2"),
            (UidSource::NumericPhone, "15551002"),
        ];
        for (from, want) in cases {
            assert_eq!(uid_value(&u, from).as_deref(), Ok(want), "{from:?}");
        }
        let no_phone = user(1, "x", None);
        let err = uid_value(&no_phone, UidSource::Phone).unwrap_err();
        assert!(err.contains("phone"), "{err}");
        let stars = user(1, "x", Some("**"));
        assert!(uid_value(&stars, UidSource::NumericPhone).is_err());
    }

    #[test]
    fn entry_escapes_the_rdn_and_prefixes_the_hash() {
        let mut s = settings();
        s.phone_from = PhoneSource::NumericPhone;
        let hostile = r#"a,b+c"d<e>f;g=h\"#;
        let e = desired_entry(&user(1, hostile, Some("*100#")), &s).unwrap();
        assert_eq!(
            e.dn, r"uid=a\2cb\2bc\22d\3ce\3ef\3bg\3dh\5c,ou=people,dc=x",
            "RFC 4514 hex escapes"
        );
        assert_eq!(e.attributes["uid"], vec![hostile.to_owned()]);
        assert_eq!(e.attributes["telephoneNumber"], vec!["100".to_owned()]);
        assert!(e.attributes["userPassword"][0].starts_with("{ARGON2}$argon2id$"));
        assert!(
            !format!("{e:?}").contains("argon2id"),
            "Debug hides the hash"
        );
        s.phone_from = PhoneSource::Empty;
        let e2 = desired_entry(&user(1, hostile, Some("*100#")), &s).unwrap();
        assert!(!e2.attributes.contains_key("telephoneNumber"));
        assert_ne!(e.fingerprint, e2.fingerprint);
    }

    #[test]
    fn diff_touches_only_what_differs() {
        let s = settings();
        let e = desired_entry(&user(1, "jsmith", Some("1001")), &s).unwrap();
        let mut current: HashMap<String, Vec<String>> = e
            .attributes
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        current.insert("objectClass".into(), vec!["inetOrgPerson".into()]);
        current.insert("description".into(), vec!["not ours".into()]);
        let (classes, changes) = diff(&e, &s.object_classes, &current);
        assert!(classes.is_empty() && changes.is_empty(), "{changes:?}");
        current.insert("telephonenumber".into(), vec!["1002".into()]);
        current.insert("mobile".into(), vec!["x".into()]);
        let (_, changes) = diff(&e, &s.object_classes, &current);
        assert_eq!(
            changes,
            vec![AttributeChange {
                name: "telephoneNumber",
                values: vec!["1001".into()]
            }]
        );
    }
}
