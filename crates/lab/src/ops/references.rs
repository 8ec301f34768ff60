//! Every `XFkType` reference of an add/update request resolved before the operation runs
//! (issue 11 item 4): an unknown name is the same 5007 "not found" fault the modelled
//! references (device pool, partition, …) always gave, never a silent drop.
//!
//! Which element is an `XFkType` comes from the XSD facet table (`facets`); what it names
//! is decided here by the element's name: CUCM's XSD does not say which table a reference
//! points to. Kinds the lab does not model as tables live in `namedobject`, seeded with
//! CUCM's default-install names; a reference to a kind with no seeded object is "not
//! found" (stricter: the lab has none of them).

use rusqlite::{Connection, OptionalExtension};

use super::AxlFault;
use crate::facets::ReferenceUse;

/// Where a reference element points: a table with a `name`-like column, or `namedobject`.
enum Target {
    Table {
        table: &'static str,
        column: &'static str,
        kind: &'static str,
    },
    Named(String),
}

/// The target of a reference element, by its name in the XSD.
fn target(element: &str) -> Target {
    let table = |table, column, kind| Target::Table {
        table,
        column,
        kind,
    };
    match element {
        e if e.to_ascii_lowercase().contains("callingsearchspace")
            || e.ends_with("CssName")
            || e.ends_with("Css") =>
        {
            table("callingsearchspace", "name", "Calling Search Space")
        }
        "routePartitionName" | "partition" | "routePartition" | "ipccRoutePartition" => {
            table("routepartition", "name", "Route Partition")
        }
        "devicePoolName" => table("devicepool", "name", "Device Pool"),
        "commonPhoneConfigName" => table("commonphoneconfig", "name", "Common Phone Config"),
        "locationName" => table("location", "name", "Location"),
        "securityProfileName" => table("securityprofile", "name", "Security Profile"),
        "sipProfileName" => table("sipprofile", "name", "SIP Profile"),
        "ownerUserName" | "mobilityUserIdName" | "convertUserAccount" => {
            table("enduser", "userid", "User")
        }
        "primaryPhoneName" | "defaultActivatedDeviceName" => table("device", "name", "Phone"),
        "pattern" | "ipccExtension" | "cgpnIngressDN" | "laapAssociate" => {
            table("numplan", "dnorpattern", "Line")
        }
        other => Target::Named(other.strip_suffix("Name").unwrap_or(other).to_owned()),
    }
}

/// Resolve every reference of an add*/update* request; the first unknown one is a 5007.
pub(crate) fn check(
    conn: &Connection,
    op: &str,
    references: &[ReferenceUse<'_>],
) -> Result<(), AxlFault> {
    if !(op.starts_with("add") || op.starts_with("update")) {
        return Ok(());
    }
    for r in references {
        let found: Option<i64> = match target(r.element) {
            // `table` and `column` are constants from `target`.
            Target::Table { table, column, .. } => conn
                .query_row(
                    &format!("SELECT 1 FROM {table} WHERE {column} = ?1 LIMIT 1"),
                    [r.value],
                    |row| row.get(0),
                )
                .optional()?,
            Target::Named(ref kind) => conn
                .query_row(
                    "SELECT 1 FROM namedobject WHERE kind = ?1 AND name = ?2",
                    [kind.as_str(), r.value],
                    |row| row.get(0),
                )
                .optional()?,
        };
        if found.is_none() {
            return Err(AxlFault::unknown_reference(&kind_label(r.element), r.value));
        }
    }
    Ok(())
}

/// The name used in the fault text.
fn kind_label(element: &str) -> String {
    match target(element) {
        Target::Table { kind, .. } => kind.to_owned(),
        Target::Named(kind) => kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_targets() {
        assert_eq!(
            kind_label("rerouteCallingSearchSpaceName"),
            "Calling Search Space"
        );
        assert_eq!(kind_label("monitoringCssName"), "Calling Search Space");
        assert_eq!(kind_label("devicePoolName"), "Device Pool");
        assert_eq!(kind_label("phoneTemplateName"), "phoneTemplate");
        assert_eq!(kind_label("serviceProfile"), "serviceProfile");
    }
}
