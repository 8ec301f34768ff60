//! The operations of Cisco's AXL WSDL, by name only, so that an operation the lab does not
//! emulate is told apart from one that does not exist (issue 11).
//!
//! `wsdl_operations.txt` lists the `soapAction="CUCM:DB ver=X.Y <name>"` names of the
//! binding in `shared/fixtures/axl-schema/<ver>/AXLAPI.wsdl`: section `[11.5]` holds the
//! 1,026 operations of 11.5, section `[12.5]` the 42 that 12.5 added (14.0 and 15.0 have the
//! 12.5 set). The fixtures are not part of the repository (and not there when `ucbridge
//! --lab` runs), hence this generated list; `tests/lab.rs` checks it against them.

use std::collections::HashMap;
use std::sync::OnceLock;

const LIST: &str = include_str!("wsdl_operations.txt");

/// One operation of the AXL WSDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsdlOperation {
    /// Operation (and request element) name, e.g. `addSipProfile`.
    pub name: &'static str,
    /// The first fixture schema whose WSDL has it: `11.5` or `12.5`.
    pub since: &'static str,
}

fn parse() -> Vec<WsdlOperation> {
    let mut since = "11.5";
    let mut out = Vec::new();
    for line in LIST.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            since = if section == "12.5" { "12.5" } else { "11.5" };
            continue;
        }
        out.push(WsdlOperation { name: line, since });
    }
    out
}

fn index() -> &'static HashMap<&'static str, &'static str> {
    static INDEX: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    INDEX.get_or_init(|| parse().into_iter().map(|o| (o.name, o.since)).collect())
}

/// Every operation of the AXL WSDL 11.5–15.0, in the list's order.
pub fn wsdl_operations() -> Vec<WsdlOperation> {
    parse()
}

/// `(major, minor)` of a schema string, for ordering (`9.1` < `11.5` < `12.5`).
fn schema_key(schema: &str) -> (u32, u32) {
    let mut parts = schema.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Whether `name` is an operation of the WSDL of `schema`. Schemas older than 11.5 (served
/// on the fallback paths, e.g. 11.0 on CUCM 14) are judged by the 11.5 set: their WSDLs
/// are not among the fixtures.
pub(crate) fn has_operation(schema: &str, name: &str) -> bool {
    index()
        .get(name)
        .is_some_and(|since| schema_key(schema) >= schema_key(since) || *since == "11.5")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_has_the_fixture_counts_and_versions() {
        let ops = wsdl_operations();
        assert_eq!(ops.iter().filter(|o| o.since == "11.5").count(), 1026);
        assert_eq!(ops.len(), 1068);
        assert!(has_operation("14.0", "addSipProfile"));
        assert!(has_operation("11.0", "executeSQLUpdate"));
        assert!(!has_operation("14.0", "getCCMVersion123"));
        let added = ops
            .iter()
            .find(|o| o.since == "12.5")
            .expect("12.5 additions");
        assert!(has_operation("12.5", added.name));
        assert!(has_operation("15.0", added.name));
        assert!(!has_operation("11.5", added.name));
        assert!(!has_operation("11.0", added.name));
    }
}
