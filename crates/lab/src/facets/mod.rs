//! XSD facets of the emulated operations' requests, enforced before an operation runs
//! (issue 11 item 3).
//!
//! `xsd_facets.txt` is generated from Cisco's `AXLSoap.xsd` 11.5/12.5/14.0/15.0 (the
//! fixtures, absent when `ucbridge --lab` runs) and holds names and facet values only:
//! `maxLength`/`minLength`, `pattern`, the enumeration type of an element and its values,
//! `XFkType` references, required `choice`s, and the `searchCriteria` elements whose
//! annotation says "At least one element under searchCriteria has to be mentioned". The
//! unit test `generate::table_matches_the_fixture_xsd` regenerates it from the fixtures
//! and compares (`UCBRIDGE_REGENERATE_FACETS=1` rewrites it).
//!
//! Lab choices (CUCM's answers to requests that break the schema are not public):
//! - Every violation is a `soapenv:Client` fault with axlcode 5003, CUCM's code for an
//!   invalid value (notes §3); the text names the element and the facet.
//! - `XUUID`'s pattern (`{…}`) is not enforced: the Developer Guide says non-SQL requests
//!   accept a uuid with or without braces (notes §1), which is documented, the pattern not.
//! - `minOccurs` is not enforced beyond what each operation checks itself (clients leave
//!   out many schema-required elements that CUCM defaults, e.g. zeep's addPhone samples).
//! - Text without a `maxLength` facet (`xsd:string`, e.g. XUser.department) in add*/
//!   update* requests is capped at [`UNBOUNDED_TEXT_CAP`] characters: the CUCM database
//!   columns behind them are bounded but their widths are not in the fixtures, so the
//!   stricter option is to refuse what the widest AXL string type (`String255`) refuses.

mod pattern;

#[cfg(test)]
mod generate;

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use crate::ops::AxlFault;
use crate::xmlin::{Elem, Field};
use pattern::Pattern;

const TABLE: &str = include_str!("xsd_facets.txt");

/// The fixture schemas the table covers, oldest first.
pub(crate) const FIXTURE_SCHEMAS: [&str; 4] = ["11.5", "12.5", "14.0", "15.0"];

/// Characters accepted in add*/update* text that has no `maxLength` facet (lab choice,
/// see the module docs).
pub(crate) const UNBOUNDED_TEXT_CAP: usize = 255;

#[derive(Debug)]
enum Facet {
    MaxLength(usize),
    MinLength(usize),
    Pattern(Pattern, &'static str),
    Enum(&'static str),
    Reference,
    Choice(Vec<&'static str>),
    AtLeastOne,
}

#[derive(Debug)]
struct Rule {
    /// Element names below the operation element; empty = the operation element.
    path: Vec<&'static str>,
    facet: Facet,
}

#[derive(Debug, Default)]
struct Schema {
    rules: HashMap<&'static str, Vec<Rule>>,
    enums: HashMap<&'static str, HashSet<&'static str>>,
}

/// The fixture schema whose facets judge `schema`: the newest fixture not newer than it
/// (11.0, 10.0 and 12.0 are not among the fixtures: judged by 11.5).
fn fixture_index(schema: &str) -> usize {
    let key = |s: &str| {
        let mut p = s.split('.').map(|n| n.parse::<u32>().unwrap_or(0));
        (p.next().unwrap_or(0), p.next().unwrap_or(0))
    };
    FIXTURE_SCHEMAS
        .iter()
        .rposition(|f| key(f) <= key(schema))
        .unwrap_or(0)
}

fn schemas() -> &'static [Schema; 4] {
    static PARSED: OnceLock<[Schema; 4]> = OnceLock::new();
    PARSED.get_or_init(|| parse_table(TABLE))
}

fn parse_table(table: &'static str) -> [Schema; 4] {
    let mut out: [Schema; 4] = Default::default();
    for line in table.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&'static str> = line.splitn(5, '\t').collect();
        let [versions, op, path, kind, value] = cols[..] else {
            continue;
        };
        for (i, schema) in FIXTURE_SCHEMAS.iter().enumerate() {
            if !versions.split(',').any(|v| v == *schema) {
                continue;
            }
            if op == "@" {
                out[i].enums.entry(path).or_default().insert(value);
                continue;
            }
            let Some(facet) = parse_facet(kind, value) else {
                continue;
            };
            let path = if path == "." {
                Vec::new()
            } else {
                path.split('/').collect()
            };
            out[i]
                .rules
                .entry(op)
                .or_default()
                .push(Rule { path, facet });
        }
    }
    out
}

fn parse_facet(kind: &str, value: &'static str) -> Option<Facet> {
    Some(match kind {
        "maxLength" => Facet::MaxLength(value.parse().ok()?),
        "minLength" => Facet::MinLength(value.parse().ok()?),
        "pattern" => Facet::Pattern(Pattern::parse(value).ok()?, value),
        "enum" => Facet::Enum(value),
        "ref" => Facet::Reference,
        "choice" => Facet::Choice(value.split('|').collect()),
        "atLeastOne" => Facet::AtLeastOne,
        _ => return None,
    })
}

/// The values of enumeration `name` (e.g. `XProduct`) in the table for `schema`.
#[cfg(test)]
pub(crate) fn enum_values(schema: &str, name: &str) -> Option<&'static HashSet<&'static str>> {
    schemas()[fixture_index(schema)].enums.get(name)
}

/// An `XFkType` reference given by name in a request: the element name and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReferenceUse<'a> {
    pub element: &'a str,
    pub value: &'a str,
}

/// Check `req` (the operation element) against the facets of its schema; the references
/// it names, for the caller to resolve.
pub(crate) fn check<'a>(schema: &str, req: &'a Elem) -> Result<Vec<ReferenceUse<'a>>, AxlFault> {
    let table = &schemas()[fixture_index(schema)];
    let rules = table
        .rules
        .get(req.name.as_str())
        .map_or(&[][..], Vec::as_slice);
    let mut references = Vec::new();
    let mut bounded: HashSet<Vec<&str>> = HashSet::new();
    for rule in rules {
        if matches!(rule.facet, Facet::MaxLength(_) | Facet::Enum(_)) {
            bounded.insert(rule.path.clone());
        }
        for elem in matching(req, &rule.path) {
            check_one(table, rule, elem, &mut references)?;
        }
    }
    if req.name.starts_with("add") || req.name.starts_with("update") {
        check_unbounded(req, &mut Vec::new(), &bounded)?;
    }
    Ok(references)
}

/// Elements at `path` below `root` (every repetition).
fn matching<'a>(root: &'a Elem, path: &[&str]) -> Vec<&'a Elem> {
    let mut current = vec![root];
    for name in path {
        current = current
            .into_iter()
            .flat_map(|e| e.children.iter().filter(|c| c.name == *name))
            .collect();
    }
    current
}

fn check_one<'a>(
    table: &Schema,
    rule: &Rule,
    elem: &'a Elem,
    references: &mut Vec<ReferenceUse<'a>>,
) -> Result<(), AxlFault> {
    let name = elem.name.as_str();
    let value = match elem.as_field() {
        Field::Value(v) => Some(v),
        _ => None,
    };
    match (&rule.facet, value) {
        (Facet::MaxLength(max), Some(v)) if v.chars().count() > *max => Err(violation(
            name,
            v,
            &format!("is longer than {max} characters"),
        )),
        (Facet::MinLength(min), Some(v)) if v.chars().count() < *min => Err(violation(
            name,
            v,
            &format!("is shorter than {min} characters"),
        )),
        (Facet::Pattern(p, src), Some(v)) if !p.matches(v) => Err(violation(
            name,
            v,
            &format!("does not match the pattern {src}"),
        )),
        (Facet::Enum(e), Some(v)) if !table.enums.get(e).is_some_and(|vals| vals.contains(v)) => {
            Err(violation(name, v, &format!("is not a value of {e}")))
        }
        (Facet::Reference, Some(v)) => {
            references.push(ReferenceUse {
                element: name,
                value: v,
            });
            Ok(())
        }
        (Facet::Choice(options), _) if !options.iter().any(|o| elem.child(o).is_some()) => {
            Err(AxlFault::missing(&options.join(" or ")))
        }
        (Facet::AtLeastOne, _) if elem.children.is_empty() => Err(AxlFault::client(
            5003,
            format!("At least one element under {name} has to be mentioned"),
        )),
        _ => Ok(()),
    }
}

/// Leaf text in add/update requests without a `maxLength`/enumeration facet is capped.
fn check_unbounded<'a>(
    elem: &'a Elem,
    path: &mut Vec<&'a str>,
    bounded: &HashSet<Vec<&str>>,
) -> Result<(), AxlFault> {
    for child in &elem.children {
        path.push(&child.name);
        if child.children.is_empty() {
            let len = child.text.trim().chars().count();
            if len > UNBOUNDED_TEXT_CAP && !bounded.contains(path.as_slice()) {
                return Err(violation(
                    &child.name,
                    child.text.trim(),
                    &format!("is longer than {UNBOUNDED_TEXT_CAP} characters"),
                ));
            }
        } else {
            check_unbounded(child, path, bounded)?;
        }
        path.pop();
    }
    Ok(())
}

/// 5003 naming the element and the facet; long values are cut so a 12 MB value does not
/// come back in the fault.
fn violation(element: &str, value: &str, problem: &str) -> AxlFault {
    const SHOWN: usize = 40;
    let shown: String = value.chars().take(SHOWN).collect();
    let ellipsis = if value.chars().nth(SHOWN).is_some() {
        "…"
    } else {
        ""
    };
    AxlFault::client(
        5003,
        format!("Invalid value for {element}: '{shown}{ellipsis}' {problem}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_schema_of_each_applied_schema() {
        assert_eq!(FIXTURE_SCHEMAS[fixture_index("10.0")], "11.5");
        assert_eq!(FIXTURE_SCHEMAS[fixture_index("11.0")], "11.5");
        assert_eq!(FIXTURE_SCHEMAS[fixture_index("12.0")], "11.5");
        assert_eq!(FIXTURE_SCHEMAS[fixture_index("12.5")], "12.5");
        assert_eq!(FIXTURE_SCHEMAS[fixture_index("14.0")], "14.0");
        assert_eq!(FIXTURE_SCHEMAS[fixture_index("15.0")], "15.0");
    }

    /// Every catalogue product is an XProduct value of the fixture schemas, except the
    /// 9800 series, which no fixture lists (see `db::MODELS`).
    #[test]
    fn the_product_catalogue_is_named_as_in_xproduct() {
        let newest = enum_values("15.0", "XProduct").expect("XProduct in the table");
        for (_, name) in crate::db::MODELS {
            let listed = newest.contains(name);
            let device_pack_only = matches!(*name, "Cisco 9861" | "Cisco 9871");
            assert!(listed != device_pack_only, "{name}");
        }
        let cucm_14 = enum_values("14.0", "XProduct").expect("XProduct in the table");
        assert!(cucm_14.contains("Cisco Webex Desk") && !cucm_14.contains("Cisco 8875"));
    }

    #[test]
    fn every_table_line_parses() {
        for line in TABLE
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let cols: Vec<&'static str> = line.splitn(5, '\t').collect();
            assert_eq!(cols.len(), 5, "{line}");
            if cols[1] != "@" {
                assert!(parse_facet(cols[3], cols[4]).is_some(), "{line}");
            }
        }
    }
}
