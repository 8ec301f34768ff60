//! Tidy checks over the whole workspace, after rust-analyzer's `xtask/src/tidy.rs`: every
//! `crates/*/Cargo.toml` against the layers of ARCHITECTURE.md ("Layers"), every crate a
//! workspace member and described in ARCHITECTURE.md, and a `//!` module doc at the top of
//! every source file. The checkers take text, so the tests at the bottom feed them broken
//! manifests and files to prove each rule fails when it should.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

/// The layers of ARCHITECTURE.md § Layers, bottom first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    /// auth, audio: leaves the layers above may use.
    Support,
    /// axl, cuc: one Cisco API each.
    Clients,
    /// store: the database.
    Store,
    /// sync, provision, ldap, voicemail: libraries over clients and store.
    Engines,
    /// server: runs the engines continuously.
    Server,
    /// cli: the shipped binary.
    Binary,
    /// bench: developer tools, never published.
    Tool,
    /// lab: the Cisco emulator; shares no code with the clients it answers.
    Emulator,
    /// testkit: test support, never shipped; may use the lab (its service launchers).
    TestSupport,
}

use Layer::*;

impl Layer {
    fn name(self) -> &'static str {
        match self {
            Support => "support",
            Clients => "clients",
            Store => "store",
            Engines => "engines",
            Server => "server",
            Binary => "binary",
            Tool => "tools",
            Emulator => "emulator",
            TestSupport => "test support",
        }
    }

    /// What this layer's [dependencies] and [build-dependencies] may point at.
    fn may_use(self) -> &'static [Layer] {
        match self {
            Support | Emulator => &[],
            // The lab's Dovecot and slapd launchers, wrapped with the test policy.
            TestSupport => &[Emulator],
            Clients | Store => &[Support],
            Engines => &[Support, Clients, Store],
            Server => &[Support, Clients, Store, Engines],
            // Emulator only as an optional dependency, i.e. behind a feature (checked below).
            Binary => &[Support, Clients, Store, Engines, Server, Emulator],
            Tool => &[
                Support,
                Clients,
                Store,
                Engines,
                Server,
                Emulator,
                TestSupport,
            ],
        }
    }

    /// What [dev-dependencies] may point at: the same, plus the lab, test support and a
    /// sibling of the same layer (cuc's tests drive the AXL client, ldap's hash passwords
    /// as sync does); never up, never a binary or a tool.
    fn dev_may_use(self, dep: Layer) -> bool {
        !matches!(dep, Binary | Tool)
            && (self.may_use().contains(&dep)
                || dep == self
                || matches!(dep, Emulator | TestSupport))
    }
}

/// Every crate under `crates/`, by directory. A new crate gets a row here and in
/// ARCHITECTURE.md § Layers.
const LAYERS: &[(&str, Layer)] = &[
    ("auth", Support),
    ("audio", Support),
    ("axl", Clients),
    ("cuc", Clients),
    ("im", Clients),
    ("store", Store),
    ("sync", Engines),
    ("provision", Engines),
    ("ldap", Engines),
    ("voicemail", Engines),
    ("signin", Engines),
    ("server", Server),
    ("cli", Binary),
    ("bench", Tool),
    ("lab", Emulator),
    ("testkit", TestSupport),
];

fn layer_of(dir: &str) -> Option<Layer> {
    LAYERS.iter().find(|(d, _)| *d == dir).map(|(_, l)| *l)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Normal,
    Dev,
    Build,
}

/// Outside crates only the named crates may have in [dependencies] or [build-dependencies],
/// because an architecture invariant says so; tests anywhere may use them.
const ONLY_IN: &[(&str, &[&str], &str)] = &[
    (
        "anyhow",
        &["cli", "bench"],
        "libraries return typed errors: use a `thiserror` enum",
    ),
    (
        "sqlx",
        &["store"],
        "every query lives in ucbridge-store: add a `Store` method there",
    ),
];

/// A dependency the layers forbid but the code has today. Each one names the work that
/// removes it; `exceptions_are_still_needed` fails once that work is done, so the entry is
/// deleted and the rule holds from then on. Keep ARCHITECTURE.md § Layers in step.
struct Exception {
    krate: &'static str,
    kind: Kind,
    dep: &'static str,
}

const EXCEPTIONS: &[Exception] = &[];

/// One broken rule: which file, what, and how to fix it. `edge` is the dependency it is
/// about, so an exception can match it.
#[derive(Debug)]
struct Problem {
    message: String,
    edge: Option<(String, Kind, String)>,
}

impl Problem {
    fn plain(message: String) -> Self {
        Problem {
            message,
            edge: None,
        }
    }
}

/// What the checks need to know about the workspace besides one crate's manifest.
struct Workspace {
    /// package name → directory under `crates/`
    packages: BTreeMap<String, String>,
    /// `[workspace.dependencies]`, to resolve `workspace = true` and renamed packages
    deps: Table,
}

/// The workspace checked: the one `cargo test` runs in (see `ucbridge_testkit::workspace_root`
/// for why not the compile-time path).
fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../..")
}

fn parse(path: &Path) -> Table {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse::<Table>()
        .unwrap_or_else(|e| panic!("{}: not valid TOML: {e}", path.display()))
}

/// The directories under `crates/` that hold a Cargo.toml, sorted.
fn crate_dirs(root: &Path) -> Vec<String> {
    let mut dirs: Vec<String> = fs::read_dir(root.join("crates"))
        .expect("read crates/")
        .map(|e| e.expect("read crates/").path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    dirs
}

fn load_manifests(root: &Path) -> Vec<(String, Table)> {
    crate_dirs(root)
        .into_iter()
        .map(|dir| {
            let manifest = parse(&root.join("crates").join(&dir).join("Cargo.toml"));
            (dir, manifest)
        })
        .collect()
}

fn workspace(root_manifest: &Table, manifests: &[(String, Table)]) -> Workspace {
    let packages = manifests
        .iter()
        .filter_map(|(dir, m)| {
            let name = m.get("package")?.get("name")?.as_str()?;
            Some((name.to_owned(), dir.clone()))
        })
        .collect();
    let deps = root_manifest
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(Value::as_table)
        .cloned()
        .unwrap_or_default();
    Workspace { packages, deps }
}

/// Every dependency table of a manifest, target-specific ones included, with the header a
/// reader looks for.
fn dependency_tables(manifest: &Table) -> Vec<(Kind, String, &Table)> {
    const KINDS: &[(&str, Kind)] = &[
        ("dependencies", Kind::Normal),
        ("dev-dependencies", Kind::Dev),
        ("dev_dependencies", Kind::Dev),
        ("build-dependencies", Kind::Build),
        ("build_dependencies", Kind::Build),
    ];
    let mut scopes = vec![(String::new(), manifest)];
    if let Some(targets) = manifest.get("target").and_then(Value::as_table) {
        for (cfg, scope) in targets {
            if let Some(scope) = scope.as_table() {
                scopes.push((format!("target.'{cfg}'."), scope));
            }
        }
    }
    let mut tables = Vec::new();
    for (prefix, scope) in scopes {
        for (key, kind) in KINDS {
            if let Some(t) = scope.get(*key).and_then(Value::as_table) {
                tables.push((*kind, format!("[{prefix}{key}]"), t));
            }
        }
    }
    tables
}

/// The package a dependency entry names: `package = ...` (here or in the workspace table)
/// wins over the key.
fn package_of(ws: &Workspace, key: &str, spec: &Value) -> String {
    if let Some(p) = spec.get("package").and_then(Value::as_str) {
        return p.to_owned();
    }
    if spec.get("workspace").and_then(Value::as_bool) == Some(true) {
        if let Some(p) = ws
            .deps
            .get(key)
            .and_then(|d| d.get("package"))
            .and_then(Value::as_str)
        {
            return p.to_owned();
        }
    }
    key.to_owned()
}

fn names(layers: &[Layer]) -> String {
    if layers.is_empty() {
        return "no other ucbridge crate".to_owned();
    }
    layers
        .iter()
        .map(|l| l.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The layer rules for one crate's manifest (`dir` is its directory under `crates/`).
fn check_manifest(ws: &Workspace, dir: &str, manifest: &Table) -> Vec<Problem> {
    let file = format!("crates/{dir}/Cargo.toml");
    let Some(layer) = layer_of(dir) else {
        return vec![Problem::plain(format!(
            "{file}: crate `{dir}` has no layer: add it to LAYERS in \
             crates/testkit/tests/tidy.rs and to ARCHITECTURE.md § Layers"
        ))];
    };
    let mut problems = Vec::new();
    if layer == Tool {
        let publish = manifest.get("package").and_then(|p| p.get("publish"));
        let unpublished = match publish {
            Some(Value::Boolean(b)) => !b,
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        if !unpublished {
            problems.push(Problem::plain(format!(
                "{file}: `{dir}` is a tool (it may use testkit and the lab) and must not be \
                 published: add `publish = false` to [package]"
            )));
        }
    }
    for (kind, header, table) in dependency_tables(manifest) {
        for (key, spec) in table {
            let package = package_of(ws, key, spec);
            if kind != Kind::Dev {
                for (name, owners, fix) in ONLY_IN {
                    if package == *name && !owners.contains(&dir) {
                        problems.push(Problem::plain(format!(
                            "{file}: {header} has `{name}`, which only {} may use: {fix}. See \
                             ARCHITECTURE.md.",
                            owners.join(", ")
                        )));
                    }
                }
            }
            let Some(dep) = ws.packages.get(&package) else {
                continue; // not a workspace crate
            };
            let Some(dep_layer) = layer_of(dep) else {
                continue; // reported for the crate itself
            };
            let optional = spec.get("optional").and_then(Value::as_bool) == Some(true);
            let allowed = match kind {
                Kind::Dev => layer.dev_may_use(dep_layer),
                // A binary carries the lab only when a feature asks for it.
                Kind::Normal if layer == Binary && dep_layer == Emulator => optional,
                Kind::Build if dep_layer == Emulator => layer == Tool,
                Kind::Normal | Kind::Build => layer.may_use().contains(&dep_layer),
            };
            if allowed {
                continue;
            }
            let fix = if matches!(dep_layer, Binary | Tool) {
                "nothing depends on a binary or a tool: move the code into a library crate"
                    .to_owned()
            } else if kind == Kind::Normal && layer == Binary && dep_layer == Emulator {
                "make it `optional = true` and enable it from a feature of the binary \
                 (e.g. `lab = [\"dep:ucbridge-lab\"]`, in `default`)"
                    .to_owned()
            } else if kind != Kind::Dev && matches!(dep_layer, Emulator | TestSupport) {
                "move it to [dev-dependencies]: the lab ships only behind a feature of the \
                 binary, test support never"
                    .to_owned()
            } else if layer == Emulator {
                "the lab shares no code with the clients it answers, so a misreading of \
                 Cisco's protocol is not built into both sides: give the lab its own copy"
                    .to_owned()
            } else if layer == TestSupport {
                "every crate's tests use testkit, so it depends on none of them (only on the \
                 lab): take what it needs as arguments"
                    .to_owned()
            } else if dep_layer == layer {
                "crates of one layer do not depend on each other: move what both need into a \
                 lower layer"
                    .to_owned()
            } else {
                format!(
                    "no arrow up the layers: move what both need into a lower layer, or let \
                     the caller pass it in (the {} layer may use: {})",
                    layer.name(),
                    names(layer.may_use())
                )
            };
            problems.push(Problem {
                message: format!(
                    "{file}: {header} has `{package}` ({} layer) in crate `{dir}` ({} layer): \
                     {fix}. See ARCHITECTURE.md § Layers.",
                    dep_layer.name(),
                    layer.name()
                ),
                edge: Some((dir.to_owned(), kind, dep.clone())),
            });
        }
    }
    problems
}

/// Drops the problems an exception covers; returns the rest and, per exception, whether it
/// matched anything.
fn apply_exceptions(problems: Vec<Problem>, exceptions: &[Exception]) -> (Vec<Problem>, Vec<bool>) {
    let mut used = vec![false; exceptions.len()];
    let remaining = problems
        .into_iter()
        .filter(|p| {
            let Some((krate, kind, dep)) = &p.edge else {
                return true;
            };
            match exceptions
                .iter()
                .position(|e| e.krate == krate && e.kind == *kind && e.dep == dep)
            {
                Some(i) => {
                    used[i] = true;
                    false
                }
                None => true,
            }
        })
        .collect();
    (remaining, used)
}

/// Every crate directory is a workspace member (by path or a `crates/*` glob).
fn check_members(root_manifest: &Table, dirs: &[String]) -> Vec<String> {
    let members: Vec<&str> = root_manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    dirs.iter()
        .filter(|dir| {
            let path = format!("crates/{dir}");
            !members
                .iter()
                .any(|m| m.trim_end_matches('/') == path || *m == "crates/*")
        })
        .map(|dir| {
            format!(
                "Cargo.toml: crates/{dir} is not in [workspace] members: add \"crates/{dir}\" \
                 (and `ucbridge-{dir} = {{ path = \"crates/{dir}\" }}` to \
                 [workspace.dependencies] if others use it)"
            )
        })
        .collect()
}

/// The text of the `## Layers` section, if there is one.
fn layers_section(text: &str) -> Option<&str> {
    let start = text.find("\n## Layers\n")? + 1;
    let rest = &text[start + "## Layers\n".len()..];
    let end = rest.find("\n## ").map_or(rest.len(), |i| i + 1);
    Some(&rest[..end])
}

/// The text of every `### \`crates/<dir>\`` section of ARCHITECTURE.md (the lab has two).
fn crate_sections<'a>(text: &'a str, dir: &str) -> Vec<&'a str> {
    let heading = format!("\n### `crates/{dir}`");
    text.match_indices(&heading)
        .map(|(i, _)| {
            let body = &text[i + 1..];
            let end = body[1..]
                .find("\n## ")
                .into_iter()
                .chain(body[1..].find("\n### "))
                .min()
                .map_or(body.len(), |e| e + 2);
            &body[..end]
        })
        .collect()
}

/// Every crate is placed in § Layers and has a section with its architecture invariant.
fn check_architecture(text: &str, dirs: &[String]) -> Vec<String> {
    let Some(layers) = layers_section(text) else {
        return vec![
            "ARCHITECTURE.md: no `## Layers` section: add it after \"Bird's-eye view\" with \
             the table of LAYERS in crates/testkit/tests/tidy.rs"
                .to_owned(),
        ];
    };
    let mut problems = Vec::new();
    for dir in dirs {
        if !layers.contains(&format!("`{dir}`")) {
            problems.push(format!(
                "ARCHITECTURE.md: § Layers does not name `{dir}`: add it to the row of its \
                 layer ({})",
                layer_of(dir).map_or("see LAYERS in tidy.rs", Layer::name)
            ));
        }
        let sections = crate_sections(text, dir);
        if sections.is_empty() {
            problems.push(format!(
                "ARCHITECTURE.md: no section for crates/{dir}: add a \"### `crates/{dir}` — \
                 <package>, <what it owns>\" section under \"Crates\""
            ));
        } else if !sections
            .iter()
            .any(|s| s.contains("Architecture invariant:"))
        {
            problems.push(format!(
                "ARCHITECTURE.md: the section of crates/{dir} has no \"Architecture \
                 invariant:\" line: add one saying what the crate may depend on and what \
                 must stay true of it"
            ));
        }
    }
    problems
}

/// Unit-test modules (`tests.rs`, anything under a `tests/` folder) are exempt: their test
/// names say what they check.
fn is_test_file(relative: &Path) -> bool {
    relative.file_name().is_some_and(|n| n == "tests.rs")
        || relative.components().any(|c| c.as_os_str() == "tests")
}

/// A module doc is a `//!` first line, and the leading `//!` block says something.
fn check_module_doc(relative: &Path, text: &str) -> Option<String> {
    if is_test_file(relative) {
        return None;
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let doc: Vec<&str> = text
        .lines()
        .map_while(|l| l.trim_start().strip_prefix("//!"))
        .collect();
    let starts_with_doc = text.lines().next().is_some_and(|l| l.starts_with("//!"));
    if starts_with_doc && doc.iter().any(|l| !l.trim().is_empty()) {
        return None;
    }
    Some(format!(
        "{}: no module doc: make the first line a `//!` comment saying what this module is \
         for (one accurate line is enough)",
        relative.display()
    ))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("read directory").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn report(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "\n{what}:\n  {}\n",
        problems.join("\n  ")
    );
}

#[test]
fn crate_dependencies_follow_the_layers() {
    let root = root();
    let manifests = load_manifests(&root);
    let ws = workspace(&parse(&root.join("Cargo.toml")), &manifests);
    let problems: Vec<Problem> = manifests
        .iter()
        .flat_map(|(dir, m)| check_manifest(&ws, dir, m))
        .collect();
    let (remaining, _) = apply_exceptions(problems, EXCEPTIONS);
    let messages: Vec<String> = remaining.into_iter().map(|p| p.message).collect();
    report("dependencies against ARCHITECTURE.md § Layers", &messages);
}

#[test]
fn exceptions_are_still_needed() {
    let root = root();
    let manifests = load_manifests(&root);
    let ws = workspace(&parse(&root.join("Cargo.toml")), &manifests);
    let problems: Vec<Problem> = manifests
        .iter()
        .flat_map(|(dir, m)| check_manifest(&ws, dir, m))
        .collect();
    let (_, used) = apply_exceptions(problems, EXCEPTIONS);
    let stale: Vec<String> = EXCEPTIONS
        .iter()
        .zip(used)
        .filter(|(_, used)| !used)
        .map(|(e, _)| {
            format!(
                "crates/testkit/tests/tidy.rs: the exception {} -> {} ({:?}) is no longer \
                 needed: delete it from EXCEPTIONS and from ARCHITECTURE.md § Layers",
                e.krate, e.dep, e.kind
            )
        })
        .collect();
    report("stale layer exceptions", &stale);
}

#[test]
fn every_crate_is_a_member_and_documented() {
    let root = root();
    let dirs = crate_dirs(&root);
    let mut problems = check_members(&parse(&root.join("Cargo.toml")), &dirs);
    let architecture = fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    problems.extend(check_architecture(&architecture, &dirs));
    report(
        "crates against the workspace and ARCHITECTURE.md",
        &problems,
    );
}

#[test]
fn every_module_has_a_doc_comment() {
    let root = root();
    let mut problems = Vec::new();
    for dir in crate_dirs(&root) {
        let mut files = Vec::new();
        rust_files(&root.join("crates").join(&dir).join("src"), &mut files);
        for path in files {
            let text =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let relative = path.strip_prefix(&root).unwrap_or(&path);
            problems.extend(check_module_doc(relative, &text));
        }
    }
    report("module docs", &problems);
}

/// The checkers against manifests and files made up here, so each rule is seen to fail.
mod checker {
    use super::*;

    /// A workspace shaped like the real one, independent of the files on disk.
    fn fake_workspace() -> Workspace {
        let mut packages = BTreeMap::new();
        let mut deps = Table::new();
        for (dir, _) in LAYERS {
            let name = if *dir == "cli" {
                "ucbridge".to_owned()
            } else {
                format!("ucbridge-{dir}")
            };
            packages.insert(name.clone(), (*dir).to_owned());
            let mut spec = Table::new();
            spec.insert("path".into(), Value::String(format!("crates/{dir}")));
            deps.insert(name, Value::Table(spec));
        }
        // A workspace-level rename, as `ucbridge-xml = { package = "ucbridge-axl" }` would be.
        let mut renamed = Table::new();
        renamed.insert("package".into(), Value::String("ucbridge-axl".into()));
        deps.insert("soap".into(), Value::Table(renamed));
        Workspace { packages, deps }
    }

    fn check(dir: &str, manifest: &str) -> Vec<String> {
        let manifest: Table = manifest.parse().expect("test manifest");
        check_manifest(&fake_workspace(), dir, &manifest)
            .into_iter()
            .map(|p| p.message)
            .collect()
    }

    fn one(dir: &str, manifest: &str, needles: &[&str]) {
        let problems = check(dir, manifest);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        for needle in needles {
            assert!(
                problems[0].contains(needle),
                "{needle:?} not in {:?}",
                problems[0]
            );
        }
    }

    #[test]
    fn allowed_dependencies_pass() {
        let engine = r#"
            [dependencies]
            ucbridge-axl.workspace = true
            ucbridge-store = { workspace = true }
            ucbridge-auth = { path = "../auth" }
            tokio.workspace = true
            [dev-dependencies]
            ucbridge-lab.workspace = true
            ucbridge-testkit.workspace = true
            ucbridge-ldap.workspace = true
        "#;
        assert!(
            check("sync", engine).is_empty(),
            "{:#?}",
            check("sync", engine)
        );
        let binary = r#"
            [features]
            default = ["lab"]
            lab = ["dep:ucbridge-lab"]
            [dependencies]
            ucbridge-server.workspace = true
            ucbridge-lab = { workspace = true, optional = true }
        "#;
        assert!(
            check("cli", binary).is_empty(),
            "{:#?}",
            check("cli", binary)
        );
        let tool = r#"
            [package]
            publish = false
            [dependencies]
            ucbridge-server.workspace = true
            ucbridge-lab.workspace = true
            ucbridge-testkit.workspace = true
        "#;
        assert!(
            check("bench", tool).is_empty(),
            "{:#?}",
            check("bench", tool)
        );
    }

    #[test]
    fn an_upward_dependency_fails() {
        one(
            "sync",
            "[dependencies]\nucbridge-server.workspace = true\n",
            &[
                "crates/sync/Cargo.toml",
                "[dependencies]",
                "`ucbridge-server`",
                "no arrow up",
            ],
        );
        // Also from dev-dependencies: tests do not reach up either.
        one(
            "axl",
            "[dev-dependencies]\nucbridge-sync.workspace = true\n",
            &[
                "[dev-dependencies]",
                "`ucbridge-sync`",
                "the clients layer may use: support",
            ],
        );
    }

    #[test]
    fn a_sideways_dependency_fails_outside_tests() {
        one(
            "voicemail",
            "[dependencies]\nucbridge-sync.workspace = true\n",
            &[
                "`ucbridge-sync` (engines layer)",
                "one layer do not depend on each other",
            ],
        );
        one(
            "axl",
            "[dependencies]\nucbridge-cuc.workspace = true\n",
            &["one layer"],
        );
    }

    #[test]
    fn lab_and_testkit_in_a_library_fail() {
        one(
            "server",
            "[dependencies]\nucbridge-testkit.workspace = true\n",
            &["`ucbridge-testkit`", "move it to [dev-dependencies]"],
        );
        one(
            "provision",
            "[dependencies]\nucbridge-lab.workspace = true\n",
            &["`ucbridge-lab`", "move it to [dev-dependencies]"],
        );
        one(
            "store",
            "[build-dependencies]\nucbridge-testkit.workspace = true\n",
            &["[build-dependencies]", "`ucbridge-testkit`"],
        );
    }

    #[test]
    fn the_lab_ships_only_behind_a_feature() {
        one(
            "cli",
            "[dependencies]\nucbridge-lab.workspace = true\n",
            &["crates/cli/Cargo.toml", "`ucbridge-lab`", "optional = true"],
        );
        one(
            "cli",
            "[dependencies]\nucbridge-testkit.workspace = true\n",
            &["`ucbridge-testkit`", "move it to [dev-dependencies]"],
        );
        one(
            "cli",
            "[build-dependencies]\nucbridge-lab = { workspace = true, optional = true }\n",
            &["[build-dependencies]", "`ucbridge-lab`"],
        );
    }

    #[test]
    fn the_lab_and_testkit_stay_independent() {
        one(
            "lab",
            "[dependencies]\nucbridge-auth.workspace = true\n",
            &["(emulator layer)", "shares no code"],
        );
        one(
            "testkit",
            "[dependencies]\nucbridge-store.workspace = true\n",
            &["(test support layer)", "depends on none of them"],
        );
    }

    #[test]
    fn testkit_may_use_the_lab_and_the_lab_not_testkit() {
        assert!(check("testkit", "[dependencies]\nucbridge-lab.workspace = true\n").is_empty());
        one(
            "lab",
            "[dependencies]\nucbridge-testkit.workspace = true\n",
            &["`ucbridge-testkit`", "move it to [dev-dependencies]"],
        );
    }

    #[test]
    fn nothing_depends_on_a_binary_or_a_tool() {
        one(
            "server",
            "[dev-dependencies]\nucbridge.workspace = true\n",
            &["`ucbridge` (binary layer)", "nothing depends on a binary"],
        );
        one(
            "cli",
            "[dependencies]\nucbridge-bench.workspace = true\n",
            &["`ucbridge-bench` (tools layer)"],
        );
    }

    #[test]
    fn renamed_and_target_specific_dependencies_are_seen() {
        one(
            "auth",
            "[dependencies]\nsoap.workspace = true\n",
            &["`ucbridge-axl`", "support layer"],
        );
        one(
            "auth",
            "[dependencies]\nxml = { package = \"ucbridge-axl\", path = \"../axl\" }\n",
            &["`ucbridge-axl`"],
        );
        one(
            "store",
            "[target.'cfg(unix)'.dependencies]\nucbridge-sync.workspace = true\n",
            &["[target.'cfg(unix)'.dependencies]", "`ucbridge-sync`"],
        );
    }

    #[test]
    fn anyhow_and_sqlx_stay_where_they_belong() {
        one(
            "provision",
            "[dependencies]\nanyhow.workspace = true\n",
            &["crates/provision/Cargo.toml", "`anyhow`", "thiserror"],
        );
        one(
            "sync",
            "[build-dependencies]\nsqlx.workspace = true\n",
            &["[build-dependencies]", "`sqlx`", "Store"],
        );
        let fine = "[dependencies]\nanyhow.workspace = true\n[dev-dependencies]\nsqlx = \"0.8\"\n";
        assert!(check("cli", fine).is_empty(), "{:#?}", check("cli", fine));
        let store = "[dependencies]\nsqlx.workspace = true\n";
        assert!(
            check("store", store).is_empty(),
            "{:#?}",
            check("store", store)
        );
    }

    #[test]
    fn a_tool_must_not_be_published() {
        one(
            "bench",
            "[package]\nname = \"ucbridge-bench\"\n",
            &["publish = false"],
        );
    }

    #[test]
    fn a_crate_without_a_layer_fails() {
        one(
            "xmpp",
            "[dependencies]\n",
            &["crates/xmpp/Cargo.toml", "add it to LAYERS"],
        );
    }

    #[test]
    fn exceptions_cover_only_their_edge_and_report_use() {
        let ws = fake_workspace();
        let manifest: Table = "[dependencies]\nucbridge-sync.workspace = true\n\
                               ucbridge-provision.workspace = true\n"
            .parse()
            .unwrap();
        let exceptions = [
            Exception {
                krate: "voicemail",
                kind: Kind::Normal,
                dep: "sync",
            },
            // Same edge in dev-dependencies only: must not cover the normal one.
            Exception {
                krate: "voicemail",
                kind: Kind::Dev,
                dep: "provision",
            },
        ];
        let (remaining, used) =
            apply_exceptions(check_manifest(&ws, "voicemail", &manifest), &exceptions);
        assert_eq!(used, [true, false]);
        assert_eq!(remaining.len(), 1);
        assert!(remaining[0].message.contains("`ucbridge-provision`"));
    }

    #[test]
    fn members_must_list_every_crate() {
        let root: Table = "[workspace]\nmembers = [\"crates/axl\", \"crates/cli/\"]\n"
            .parse()
            .unwrap();
        let dirs = ["axl".to_owned(), "cli".to_owned(), "bench".to_owned()];
        let problems = check_members(&root, &dirs);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("crates/bench is not in [workspace] members"));
        let glob: Table = "[workspace]\nmembers = [\"crates/*\"]\n".parse().unwrap();
        assert!(check_members(&glob, &dirs).is_empty());
    }

    #[test]
    fn architecture_must_place_and_describe_every_crate() {
        let dirs = ["axl".to_owned(), "lab".to_owned()];
        let good = "# A\n\n## Layers\n\n| clients | `axl` |\n| emulator | `lab` |\n\n\
                    ## Crates\n\n### `crates/axl` — client\n\nText.\n\n\
                    Architecture invariant: uses auth only.\n\n\
                    ### `crates/lab` — one\n\nText.\n\n### `crates/lab` — two\n\n\
                    Architecture invariant: no ucbridge dependency.\n\n## Invariants\n";
        assert!(
            check_architecture(good, &dirs).is_empty(),
            "{:#?}",
            check_architecture(good, &dirs)
        );

        let no_layers = good.replace("## Layers", "## Levels");
        assert!(check_architecture(&no_layers, &dirs)[0].contains("no `## Layers` section"));

        let unplaced = good.replace("| emulator | `lab` |", "");
        let problems = check_architecture(&unplaced, &dirs);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("§ Layers does not name `lab`"));

        // The invariant of the next section does not count for this one.
        let no_invariant = good.replace("Architecture invariant: uses auth only.", "");
        let problems = check_architecture(&no_invariant, &dirs);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("crates/axl has no \"Architecture invariant:\""));

        let more = ["axl".to_owned(), "lab".to_owned(), "bench".to_owned()];
        let problems = check_architecture(good, &more);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[1].contains("no section for crates/bench"));
    }

    /// The real walk reaches nested modules, so `every_module_has_a_doc_comment` sees them.
    #[test]
    fn the_walk_sees_nested_modules() {
        let root = root();
        let mut files = Vec::new();
        rust_files(&root.join("crates/lab/src"), &mut files);
        let files: Vec<PathBuf> = files
            .iter()
            .map(|f| f.strip_prefix(&root).unwrap().to_path_buf())
            .collect();
        for expected in ["crates/lab/src/lib.rs", "crates/lab/src/cuc/mod.rs"] {
            assert!(
                files.contains(&PathBuf::from(expected)),
                "{expected} not in {files:?}"
            );
        }
    }

    #[test]
    fn a_module_without_a_doc_fails() {
        let path = Path::new("crates/server/src/error.rs");
        assert!(check_module_doc(path, "//! Server errors.\nuse x;\n").is_none());
        assert!(check_module_doc(path, "//!\n//! Server errors.\n").is_none());
        for text in [
            "use axum::http::StatusCode;\n",
            "// Server errors.\nuse x;\n",
            "/// The error.\npub enum E {}\n",
            "\n//! Not on the first line.\n",
            "//!\n//!\nuse x;\n",
            "",
        ] {
            let problem = check_module_doc(path, text).unwrap_or_else(|| panic!("{text:?} passed"));
            assert!(
                problem.starts_with("crates/server/src/error.rs: no module doc"),
                "{problem}"
            );
        }
        // mod.rs, lib.rs and main.rs are modules like any other.
        for file in [
            "crates/lab/src/cuc/mod.rs",
            "crates/axl/src/lib.rs",
            "crates/cli/src/main.rs",
        ] {
            assert!(
                check_module_doc(Path::new(file), "use x;\n").is_some(),
                "{file}"
            );
        }
        // Unit-test modules are exempt.
        assert!(check_module_doc(Path::new("crates/sync/src/tests.rs"), "use x;\n").is_none());
        assert!(
            check_module_doc(Path::new("crates/sync/src/plan/tests/a.rs"), "use x;\n").is_none()
        );
    }
}
