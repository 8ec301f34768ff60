//! CUCM releases, the AXL schemas each accepts, the SOAPAction header, and what the
//! fallback path (a SOAPAction without a CUCM version, seed 001) ignores.

use crate::xmlin::Elem;

/// The CUCM release the lab pretends to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CucmRelease {
    /// Full version string, e.g. `14.0.1.14900(11)`, as getCCMVersion reports it.
    pub full: String,
    /// Accepted AXL schemas, newest first; the last one is applied to namespace 1.0.
    pub schemas: &'static [&'static str],
}

// notes §1, table "Schema Version Requested vs. Version Applied" (Cisco AXL Developer Guide).
// Checked against the guide's policy by `tests::schema_table_follows_the_versioning_policy`:
// a schema per major/minor release, none for maintenance releases, older schemas kept for
// N-2 majors (13 skipped). The table lists no 10.5 (nor 8.5/9.5…) although 10.5 was a
// minor release with its own schema that N-2 would keep on 11.5 and 12.5: the guide's
// explicit per-release rows win over the general rule, and refusing (599) is the stricter
// option, so 10.5 is not served by any emulated release.
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
    /// Any other form (e.g. SOAP::Lite's `http://…/AXL/API/8.5#addPhone`, seed 001): no
    /// operation has this action, so Axis2 dispatches on the body element instead and the
    /// request is served under the lowest schema (see the crate docs, "Seed 001's trap").
    /// Holds the unquoted value for the fault text when the body names no operation either.
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

/// Elements the fallback path does not apply, by operation: the path below the operation
/// element. Served under the lowest schema, these are ignored without a fault, as seed 001's
/// `digestUser` was. A hand table, not derived from the XSD: `digestUser` is in XPhone of
/// every schema in the fixtures (11.5–15.0) and was documented for 8.5 in seed 001, so the
/// drop is not explained by the schema lacking the element, and the schemas the fallback
/// applies (11.0, 10.0, 12.0) are not among the fixtures. Only what a source shows is listed.
pub(crate) const UNAPPLIED_ON_FALLBACK: &[(&str, &[&str])] = &[
    ("addPhone", &["phone", "digestUser"]),
    // AXL 7.x's wrapper, as seed 001's SOAP::Lite client sent it.
    ("addPhone", &["newPhone", "digestUser"]),
    ("updatePhone", &["digestUser"]),
];

/// Remove from `req` (an operation element) what the fallback path ignores; the number of
/// elements removed.
pub(crate) fn strip_unapplied(req: &mut Elem) -> usize {
    let mut removed = 0;
    for (op, path) in UNAPPLIED_ON_FALLBACK {
        if req.name != *op {
            continue;
        }
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let mut targets: Vec<&mut Elem> = vec![req];
        for parent in parents {
            targets = targets
                .into_iter()
                .flat_map(|e| e.children.iter_mut().filter(|c| c.name == *parent))
                .collect();
        }
        for target in targets {
            let before = target.children.len();
            target.children.retain(|c| c.name != *last);
            removed += before - target.children.len();
        }
    }
    removed
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
    fn schema_table_follows_the_versioning_policy() {
        let releases = [
            ("15.0.1", "15.0"),
            ("14.0.1", "14.0"),
            ("12.5.1", "12.5"),
            ("12.0.1", "12.0"),
            ("11.5.1", "11.5"),
        ];
        for (full, own) in releases {
            let r = CucmRelease::parse(full).expect("release in the table");
            let major = schema_major(own);
            // Its own schema first; older majors only down to N-2, 13 not counted.
            assert_eq!(r.schemas.first(), Some(&own), "{full}");
            let oldest_major = if major >= 14 { major - 3 } else { major - 2 };
            for s in r.schemas {
                assert!(schema_major(s) >= oldest_major, "{full} serves {s}");
                assert!(schema_major(s) != 13, "13.x was skipped");
                // Maintenance releases get no schema: every entry is major.minor.
                assert_eq!(s.split('.').count(), 2, "{s}");
            }
            assert!(
                r.accepts("10.5").is_none(),
                "{full}: no 10.5 in the guide's table"
            );
        }
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
    fn fallback_strips_digest_user_only_where_listed() {
        let elem = |name: &str, children: Vec<Elem>| Elem {
            name: name.into(),
            children,
            ..Elem::default()
        };
        let phone = || {
            elem(
                "phone",
                vec![elem("name", vec![]), elem("digestUser", vec![])],
            )
        };
        let mut add = elem("addPhone", vec![phone()]);
        assert_eq!(strip_unapplied(&mut add), 1);
        let names: Vec<_> = add.children[0].children.iter().map(|c| &c.name).collect();
        assert_eq!(names, ["name"]);
        let mut update = elem("updatePhone", vec![elem("digestUser", vec![])]);
        assert_eq!(strip_unapplied(&mut update), 1);
        assert!(update.children.is_empty());
        // Not on other operations, nor below other wrappers.
        let mut user = elem("updateUser", vec![elem("digestUser", vec![])]);
        assert_eq!(strip_unapplied(&mut user), 0);
        let mut other = elem(
            "addPhone",
            vec![elem("lines", vec![elem("digestUser", vec![])])],
        );
        assert_eq!(strip_unapplied(&mut other), 0);
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
