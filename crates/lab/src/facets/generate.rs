//! Generates `xsd_facets.txt` from the fixture XSDs and checks the embedded table against
//! them (the same approach as `wsdl_operations.txt`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::xmlin::Elem;

/// Element nesting followed below the operation element. Deeper elements of the emulated
/// requests are not modelled by the lab (XPhone's line options end at depth 4).
const MAX_DEPTH: usize = 6;

/// Top-level declarations of one AXLSoap.xsd.
struct Xsd<'a> {
    elements: HashMap<&'a str, &'a Elem>,
    complex: HashMap<&'a str, &'a Elem>,
    simple: HashMap<&'a str, &'a Elem>,
}

fn attr<'a>(e: &'a Elem, name: &str) -> Option<&'a str> {
    e.attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn local(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

fn optional(e: &Elem) -> bool {
    attr(e, "minOccurs") == Some("0")
}

/// One facet line before merging across versions: (op, path, kind, value).
type Line = (String, String, String, String);

struct Walk<'a> {
    xsd: &'a Xsd<'a>,
    op: String,
    lines: Vec<Line>,
    enums: BTreeMap<String, Vec<String>>,
}

impl<'a> Walk<'a> {
    fn push(&mut self, path: &str, kind: &str, value: &str) {
        let path = if path.is_empty() { "." } else { path };
        self.lines
            .push((self.op.clone(), path.into(), kind.into(), value.into()));
    }

    /// An element declaration at `path`.
    fn element(&mut self, decl: &'a Elem, path: &str, depth: usize) {
        let documented_one = decl
            .child("annotation")
            .and_then(|a| a.child("documentation"))
            .is_some_and(|d| d.text.contains("At least one element"));
        if documented_one {
            self.push(path, "atLeastOne", "");
        }
        if let Some(t) = attr(decl, "type") {
            if !t.starts_with("xsd:") {
                self.named_type(local(t), path, depth);
            }
        } else if let Some(ct) = decl.child("complexType") {
            self.complex(ct, path, depth);
        } else if let Some(st) = decl.child("simpleType") {
            self.simple(st, path, &format!("{}:{path}", self.op));
        }
    }

    fn named_type(&mut self, name: &str, path: &str, depth: usize) {
        if name == "XFkType" {
            self.push(path, "ref", "");
        } else if name == "XUUID" {
            // Not enforced: non-SQL requests accept uuids without braces (notes §1).
        } else if let Some(st) = self.xsd.simple.get(name) {
            self.simple(st, path, name);
        } else if let Some(ct) = self.xsd.complex.get(name) {
            self.complex(ct, path, depth);
        }
    }

    /// Facets of a simple type; enumerations go to `enums` under `enum_name`.
    fn simple(&mut self, st: &'a Elem, path: &str, enum_name: &str) {
        if let Some(union) = st.child("union") {
            // Cisco's enumerations (XProduct, XClass, …) are unions of the listed values
            // and any string; CUCM resolves them in its type tables, so the listed values
            // are enforced (stricter). Other unions (XInteger) carry no facet here.
            let values: Vec<String> = union
                .children_named("simpleType")
                .filter_map(|m| m.child("restriction"))
                .flat_map(|r| r.children_named("enumeration"))
                .filter_map(|e| attr(e, "value").map(str::to_owned))
                .collect();
            if values.iter().any(|v| !v.is_empty()) {
                self.push(path, "enum", enum_name);
                self.enums.insert(enum_name.to_owned(), values);
            }
            return;
        }
        let Some(r) = st.child("restriction") else {
            return; // lists carry no facet the lab checks
        };
        if let Some(base) = attr(r, "base").filter(|b| !b.starts_with("xsd:")) {
            if let Some(base_st) = self.xsd.simple.get(local(base)) {
                self.simple(base_st, path, local(base));
            }
        }
        let mut values = Vec::new();
        for f in &r.children {
            let Some(v) = attr(f, "value") else { continue };
            match f.name.as_str() {
                "maxLength" | "minLength" | "pattern" => self.push(path, &f.name, v),
                "enumeration" => values.push(v.to_owned()),
                _ => {}
            }
        }
        if !values.is_empty() {
            self.push(path, "enum", enum_name);
            self.enums.insert(enum_name.to_owned(), values);
        }
    }

    fn complex(&mut self, ct: &'a Elem, path: &str, depth: usize) {
        if depth >= MAX_DEPTH {
            return;
        }
        for part in &ct.children {
            match part.name.as_str() {
                "sequence" | "choice" | "all" => self.group(part, path, depth, true),
                "complexContent" => {
                    let Some(ext) = part.children.first() else {
                        continue;
                    };
                    if let Some(base) =
                        attr(ext, "base").and_then(|b| self.xsd.complex.get(local(b)))
                    {
                        self.complex(base, path, depth);
                    }
                    self.complex(ext, path, depth);
                }
                _ => {}
            }
        }
    }

    /// A model group; `required` = every enclosing group below the element is required.
    fn group(&mut self, g: &'a Elem, path: &str, depth: usize, required: bool) {
        let required = required && !optional(g);
        if g.name == "choice" && required {
            let options: Vec<&str> = g
                .children
                .iter()
                .filter_map(|c| match c.name.as_str() {
                    "element" => attr(c, "name"),
                    _ => c.child("element").and_then(|e| attr(e, "name")),
                })
                .collect();
            self.push(path, "choice", &options.join("|"));
        }
        for c in &g.children {
            match c.name.as_str() {
                "element" => {
                    let Some(name) = attr(c, "name") else {
                        continue;
                    };
                    // returnedTags children are empty selectors, not values.
                    if name == "returnedTags" {
                        continue;
                    }
                    let child = if path.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{path}/{name}")
                    };
                    self.element(c, &child, depth + 1);
                }
                "sequence" | "choice" | "all" => {
                    self.group(c, path, depth, required && g.name != "choice")
                }
                _ => {}
            }
        }
    }
}

/// Facet lines and enumerations of the emulated operations in one schema.
fn lines_of(schema: &Elem) -> (Vec<Line>, BTreeMap<String, Vec<String>>) {
    let mut xsd = Xsd {
        elements: HashMap::new(),
        complex: HashMap::new(),
        simple: HashMap::new(),
    };
    for c in &schema.children {
        let Some(name) = attr(c, "name") else {
            continue;
        };
        match c.name.as_str() {
            "element" => xsd.elements.insert(name, c),
            "complexType" => xsd.complex.insert(name, c),
            "simpleType" => xsd.simple.insert(name, c),
            _ => None,
        };
    }
    let mut lines = Vec::new();
    let mut enums = BTreeMap::new();
    for op in crate::ops::emulated_names() {
        let Some(decl) = xsd.elements.get(op) else {
            continue;
        };
        let mut walk = Walk {
            xsd: &xsd,
            op: op.to_owned(),
            lines: Vec::new(),
            enums: BTreeMap::new(),
        };
        walk.element(decl, "", 0);
        lines.extend(walk.lines);
        enums.extend(walk.enums);
    }
    (lines, enums)
}

/// The whole table, versions merged: a line present in several schemas is written once.
pub(super) fn generate(fixtures: &std::path::Path) -> Result<String, String> {
    let mut merged: Vec<(String, Vec<&str>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut add = |line: String, version: &'static str| match index.get(&line) {
        Some(&i) => merged[i].1.push(version),
        None => {
            index.insert(line.clone(), merged.len());
            merged.push((line, vec![version]));
        }
    };
    for version in super::FIXTURE_SCHEMAS {
        let path = fixtures.join(format!("axl-schema/{version}/AXLSoap.xsd"));
        let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let root = crate::xmlin::parse_document(&text).map_err(|e| e.to_string())?;
        let (lines, enums) = lines_of(&root);
        for (op, path, kind, value) in lines {
            add(format!("{op}\t{path}\t{kind}\t{value}"), version);
        }
        for (name, values) in enums {
            for v in values {
                add(format!("@\t{name}\tvalue\t{v}"), version);
            }
        }
    }
    let mut out = String::from(
        "# XSD facets of the emulated AXL operations' requests: names and facet values only.\n\
         # Generated from shared/fixtures/axl-schema/{11.5,12.5,14.0,15.0}/AXLSoap.xsd by\n\
         # crates/lab/src/facets/generate.rs (UCBRIDGE_REGENERATE_FACETS=1 cargo test -p ucbridge-lab facets).\n\
         # Columns: schemas, operation (or @ for an enumeration), path (or enumeration), kind, value.\n",
    );
    for (line, versions) in merged {
        let _ = writeln!(out, "{}\t{line}", versions.join(","));
    }
    Ok(out)
}

#[test]
fn table_matches_the_fixture_xsd() {
    let Some(dir) = ucbridge_testkit::fixture("axl-schema/14.0/AXLSoap.xsd") else {
        return;
    };
    let fixtures = dir
        .ancestors()
        .nth(3)
        .expect("fixture path has its directory");
    let generated = generate(fixtures).expect("fixtures parse");
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/facets/xsd_facets.txt");
    if std::env::var_os("UCBRIDGE_REGENERATE_FACETS").is_some() {
        std::fs::write(&file, &generated).expect("table written");
        return;
    }
    assert!(
        generated == super::TABLE,
        "src/facets/xsd_facets.txt differs from the fixture XSDs; regenerate it with \
         UCBRIDGE_REGENERATE_FACETS=1 cargo test -p ucbridge-lab facets"
    );
    // Every pattern of the table is one the matcher understands.
    for line in super::TABLE.lines().filter(|l| l.contains("\tpattern\t")) {
        let src = line.rsplit('\t').next().unwrap_or_default();
        assert!(pattern::Pattern::parse(src).is_ok(), "{line}");
    }
}

use super::pattern;
