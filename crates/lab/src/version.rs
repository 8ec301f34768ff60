//! CUCM releases, the AXL schemas each accepts, and the SOAPAction header.

/// The CUCM release the lab pretends to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CucmRelease {
    /// Full version string, e.g. `14.0.1.14900(11)`, as getCCMVersion reports it.
    pub full: String,
    /// Accepted AXL schemas, newest first; the last one is applied to namespace 1.0.
    pub schemas: &'static [&'static str],
}

// notes §1, table "Schema Version Requested vs. Version Applied" (Cisco AXL Developer Guide).
const CUCM_15: &[&str] = &["15.0", "14.0", "12.5", "12.0"];
const CUCM_14: &[&str] = &["14.0", "12.5", "12.0", "11.5", "11.0"];
const CUCM_12_5: &[&str] = &["12.5", "12.0", "11.5", "11.0", "10.0"];
const CUCM_12_0: &[&str] = &["12.0", "11.5", "11.0", "10.0"];
const CUCM_11_5: &[&str] = &["11.5", "11.0", "10.0", "9.1", "9.0"];

impl CucmRelease {
    /// `None` for releases outside the table above.
    pub fn parse(full: &str) -> Option<CucmRelease> {
        let mut parts = full.split(['.', '(']);
        let major: u32 = parts.next()?.trim().parse().ok()?;
        let minor: u32 = parts
            .next()
            .and_then(|m| m.trim().parse().ok())
            .unwrap_or(0);
        let schemas = match (major, minor) {
            (15, _) => CUCM_15,
            (14, _) => CUCM_14,
            (12, 5..) => CUCM_12_5,
            (12, _) => CUCM_12_0,
            (11, 5..) => CUCM_11_5,
            _ => return None,
        };
        Some(CucmRelease {
            full: full.to_owned(),
            schemas,
        })
    }

    pub fn accepts(&self, schema: &str) -> Option<&'static str> {
        self.schemas.iter().copied().find(|s| *s == schema)
    }

    /// The schema applied when the request asks for namespace 1.0 without a SOAPAction.
    pub fn lowest(&self) -> &'static str {
        self.schemas.last().copied().unwrap_or("11.0")
    }
}

/// A parsed `SOAPAction: "CUCM:DB ver=X.Y [operation]"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SoapAction {
    pub version: String,
    pub operation: Option<String>,
}

/// What the SOAPAction header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ActionHeader {
    /// Absent or empty: the namespace alone decides (notes §1 "Default version").
    None,
    Cucm(SoapAction),
    /// Any other form (e.g. SOAP::Lite's `http://…/AXL/API/8.5#addPhone`, seed 001): Axis2
    /// finds no operation for it. Holds the unquoted value for the fault text.
    Foreign(String),
}

/// Accepts quoted or unquoted values, extra spaces, and the version-only form real 12.5
/// accepted (notes §1: Postman recording; Cisco's Ansible sample sends two spaces).
pub(crate) fn parse_soap_action(raw: Option<&str>) -> ActionHeader {
    let Some(raw) = raw else {
        return ActionHeader::None;
    };
    let value = raw.trim().trim_matches('"').trim();
    if value.is_empty() {
        return ActionHeader::None;
    }
    let Some(rest) = value.strip_prefix("CUCM:DB") else {
        return ActionHeader::Foreign(value.to_owned());
    };
    let mut words = rest.split_whitespace();
    let Some(version) = words.next().and_then(|w| w.strip_prefix("ver=")) else {
        return ActionHeader::Foreign(value.to_owned());
    };
    let operation = words.next().map(str::to_owned);
    if words.next().is_some() || version.is_empty() {
        return ActionHeader::Foreign(value.to_owned());
    }
    ActionHeader::Cucm(SoapAction {
        version: version.to_owned(),
        operation,
    })
}

/// `http://www.cisco.com/AXL/API/14.0` → `14.0`.
pub(crate) fn namespace_version(ns: &str) -> Option<&str> {
    let v = ns.strip_prefix("http://www.cisco.com/AXL/API/")?;
    let valid = v.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    });
    valid.then_some(v)
}

/// Major version of a schema string (`11.5` → 11).
pub(crate) fn schema_major(schema: &str) -> u32 {
    schema
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_map_to_schema_table() {
        let r = CucmRelease::parse("14.0.1.14900(11)").expect("14 is supported");
        assert_eq!(r.lowest(), "11.0");
        assert!(r.accepts("12.5").is_some());
        assert!(r.accepts("15.0").is_none());
        let r = CucmRelease::parse("12.5.1.10000(22)").expect("12.5 is supported");
        assert_eq!(r.lowest(), "10.0");
        assert_eq!(
            CucmRelease::parse("15.0.1").map(|r| r.lowest()),
            Some("12.0")
        );
        assert!(CucmRelease::parse("10.5.2").is_none());
        assert!(CucmRelease::parse("garbage").is_none());
    }

    #[test]
    fn soap_action_forms() {
        let full = |v: &str, op: Option<&str>| {
            ActionHeader::Cucm(SoapAction {
                version: v.into(),
                operation: op.map(Into::into),
            })
        };
        assert_eq!(
            parse_soap_action(Some("\"CUCM:DB ver=14.0 listUser\"")),
            full("14.0", Some("listUser"))
        );
        assert_eq!(
            parse_soap_action(Some("CUCM:DB ver=12.5")),
            full("12.5", None)
        );
        assert_eq!(
            parse_soap_action(Some("\"CUCM:DB ver=14.0  executeSQLQuery\"")),
            full("14.0", Some("executeSQLQuery"))
        );
        assert_eq!(parse_soap_action(None), ActionHeader::None);
        assert_eq!(parse_soap_action(Some("\"\"")), ActionHeader::None);
        assert_eq!(
            parse_soap_action(Some("\"http://www.cisco.com/AXL/API/8.5#addPhone\"")),
            ActionHeader::Foreign("http://www.cisco.com/AXL/API/8.5#addPhone".into())
        );
    }

    #[test]
    fn namespaces() {
        assert_eq!(
            namespace_version("http://www.cisco.com/AXL/API/14.0"),
            Some("14.0")
        );
        assert_eq!(namespace_version("http://www.cisco.com/AXL/API/x"), None);
        assert_eq!(namespace_version("urn:other"), None);
    }
}
