//! `ucbridge config check`: read the configuration as the other commands do (flags, then
//! environment, then the TOML file) and report every problem at once — TOML syntax with
//! its line and column, unknown tables and keys, bad values (each table's own
//! validation), durations, unreadable CA, key, password and token files, the key for
//! secrets at rest — one line per problem naming `table.key`. With `--connect` each
//! configured server is also tried (TCP, then TLS and HTTP for `https://`), 5 s each.
//! Exit status 0 when clean, 1 otherwise; `--json` prints one JSON document instead.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use ucbridge_auth::{SecretBox, SecretKeyError, TlsOptions};

use crate::config::{self, AxlConnection, FileConfig, SeedTables};
use crate::output::outln;
use crate::serve_cmd;

/// How long one reachability probe (`--connect`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Report every problem of the configuration (file, environment, flags); exit 1 if any.
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    connection: AxlConnection,
    /// Database URL (sqlite://… or postgres://…), as the other commands take it.
    #[arg(long, env = "UCBRIDGE_DATABASE_URL")]
    database_url: Option<String>,
    /// Also try to reach every configured server (TCP; TLS and HTTP for https://), 5 s each.
    #[arg(long)]
    connect: bool,
    /// Print one JSON document instead of lines.
    #[arg(long)]
    json: bool,
}

/// One thing wrong, about `key` (`table.key`, `table`, or `config` for the file itself).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

/// A server `--connect` reached.
#[derive(Debug, Serialize)]
struct Reached {
    key: String,
    url: String,
    how: String,
}

/// The problems found so far, and the files already reported unreadable (a later check
/// that trips over the same file says nothing new).
#[derive(Debug, Default)]
struct Problems(Vec<Problem>, Vec<String>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl std::fmt::Display) {
        let p = Problem {
            key: key.into(),
            message: message.to_string(),
        };
        if !self.0.contains(&p) {
            self.0.push(p);
        }
    }

    /// Add unless an earlier problem already said it (same key and word, or the same text).
    fn add_unless_said(&mut self, key: &str, message: impl std::fmt::Display) {
        let message = message.to_string();
        let said = self.1.iter().any(|path| message.contains(path.as_str()))
            || self.0.iter().any(|p| {
                message.contains(&p.message)
                    || p.key
                        .split_once('.')
                        .is_some_and(|(t, k)| message.contains(t) && message.contains(k))
            });
        if !said {
            self.add(key, message);
        }
    }
}

pub async fn run(command: ConfigCommand, path: Option<&Path>) -> Result<()> {
    let ConfigCommand::Check(args) = command;
    let mut problems = Problems::default();
    let (file, raw) = read_file(path, &mut problems);
    if let Some(raw) = &raw {
        check_files(raw, &mut problems);
    }
    if let Some(file) = &file {
        check_values(file, &args, &mut problems);
        check_sources(file, &mut problems).await;
    }
    let reached = match (&file, args.connect) {
        (Some(file), true) => connect_all(file, &args, &mut problems).await,
        _ => Vec::new(),
    };
    print(path, &problems.0, &reached, args.json)?;
    if !problems.0.is_empty() {
        bail!(
            "the configuration has {} problem{}",
            problems.0.len(),
            if problems.0.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

fn print(path: Option<&Path>, problems: &[Problem], reached: &[Reached], json: bool) -> Result<()> {
    if json {
        let doc = serde_json::json!({
            "file": path.map(|p| p.display().to_string()),
            "ok": problems.is_empty(),
            "problems": problems,
            "reached": reached,
        });
        outln!("{doc}")?;
        return Ok(());
    }
    for p in problems {
        outln!("{}: {}", p.key, p.message)?;
    }
    for r in reached {
        outln!("{}: reached {} ({})", r.key, r.url, r.how)?;
    }
    if problems.is_empty() {
        match path {
            Some(p) => outln!("{}: no problems found", p.display())?,
            None => outln!("no configuration file (--config, UCBRIDGE_CONFIG); no problems found in the environment")?,
        }
    }
    Ok(())
}

/// The file parsed, as far as it goes: the typed form with every bad key left out (each
/// reported), and the raw table for the file checks. `None` when there is nothing to read.
fn read_file(
    path: Option<&Path>,
    problems: &mut Problems,
) -> (Option<FileConfig>, Option<toml::Table>) {
    let Some(path) = path else {
        return (Some(FileConfig::default()), None);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.add("config", format!("cannot read {}: {e}", path.display()));
            return (None, None);
        }
    };
    let mut raw: toml::Table = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            problems.add("config", one_line(&e.to_string()));
            return (None, None);
        }
    };
    let all = raw.clone();
    for (table, value) in &all {
        let Some(keys) = value.as_table() else {
            if !KNOWN_TABLES.contains(&table.as_str()) {
                problems.add(table.clone(), "unknown key (not a table ucbridge reads)");
                raw.remove(table);
            } else {
                problems.add(table.clone(), format!("must be a table ([{table}])"));
                raw.remove(table);
            }
            continue;
        };
        if !KNOWN_TABLES.contains(&table.as_str()) {
            let known = KNOWN_TABLES.join(", ");
            problems.add(
                table.clone(),
                format!("unknown table [{table}] (known: {known})"),
            );
            raw.remove(table);
            continue;
        }
        for (key, v) in keys {
            if let Err(message) = parse_one(table, key, v) {
                problems.add(format!("{table}.{key}"), message);
                if let Some(t) = raw.get_mut(table).and_then(|t| t.as_table_mut()) {
                    t.remove(key);
                }
            }
        }
    }
    match toml::Value::Table(raw.clone()).try_into::<FileConfig>() {
        Ok(file) => (Some(file), Some(all)),
        Err(e) => {
            problems.add("config", one_line(&e.to_string()));
            (None, Some(all))
        }
    }
}

/// The tables `FileConfig` reads.
const KNOWN_TABLES: &[&str] = &[
    "axl",
    "cuc",
    "sso",
    "store",
    "snapshot",
    "directory_sync",
    "provisioning",
    "imap",
    "voicemail",
    "ldap_export",
    "server",
    "signin",
    "sources",
];

/// Parse one key alone in its table: its own problem, if any (a missing required key is
/// not this key's problem; the whole table is checked after).
fn parse_one(table: &str, key: &str, value: &toml::Value) -> Result<(), String> {
    let mut inner = toml::Table::new();
    inner.insert(key.to_owned(), value.clone());
    let mut outer = toml::Table::new();
    outer.insert(table.to_owned(), toml::Value::Table(inner));
    match toml::Value::Table(outer).try_into::<FileConfig>() {
        Ok(_) => Ok(()),
        Err(e) if e.message().starts_with("missing field") => Ok(()),
        Err(e) => {
            let m = one_line(e.message());
            Err(if m.starts_with("unknown field") {
                m.replacen("unknown field", "unknown key", 1)
            } else {
                m
            })
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The server's start-time check of every `[sources.NAME]` table (settings, password
/// and its file, filter, TLS; no connection), against a throwaway database: one problem
/// per source, named `sources.NAME`.
async fn check_sources(file: &FileConfig, problems: &mut Problems) {
    let sources = serve_cmd::server_sources(file);
    match ucbridge_server::jobs::check_sources(&sources).await {
        Ok(found) => {
            for (key, why) in found {
                problems.add_unless_said(&key, why);
            }
        }
        Err(e) => problems.add("sources", format!("cannot check the sources: {e}")),
    }
}

/// Every `*_file` key must name a readable file; `ca_file` ones a PEM with a certificate.
fn check_files(raw: &toml::Table, problems: &mut Problems) {
    for (table, value) in raw {
        let Some(keys) = value.as_table() else {
            continue;
        };
        for (key, v) in keys {
            let (Some(path), true) = (v.as_str(), key.ends_with("_file")) else {
                continue;
            };
            let key_name = format!("{table}.{key}");
            let before = problems.0.len();
            if key == "ca_file" {
                let tls = TlsOptions {
                    ca_file: Some(path.into()),
                    ..TlsOptions::default()
                };
                if let Err(e) = tls.extra_roots() {
                    problems.add(key_name, e);
                }
            } else if let Err(e) = std::fs::read(path) {
                problems.add(key_name, format!("cannot read {path}: {e}"));
            }
            if problems.0.len() > before {
                problems.1.push(path.to_owned());
            }
        }
    }
}

/// Each table's own validation, and the settings built from several (the server's).
fn check_values(file: &FileConfig, args: &CheckArgs, problems: &mut Problems) {
    fn check<E: std::fmt::Display>(p: &mut Problems, key: &str, r: Result<impl Sized, E>) {
        if let Err(e) = r {
            p.add_unless_said(key, e);
        }
    }
    if let Some(s) = &file.snapshot {
        check(
            problems,
            "snapshot",
            s.to_options().map_err(|e| format!("{e:#}")),
        );
    }
    if let Some(r) = &file.directory_sync {
        check(problems, "directory_sync", r.compile());
    }
    if let Some(p) = &file.provisioning {
        check(problems, "provisioning", p.compile());
    }
    if let Some(i) = &file.imap {
        let env = std::env::var("UCBRIDGE_IMAP_MASTER_PASSWORD").ok();
        check(problems, "imap", i.to_settings(env));
    }
    if let Some(v) = &file.voicemail {
        check(problems, "voicemail", v.to_options());
    }
    if let Some(l) = &file.ldap_export {
        check(problems, "ldap_export", l.validate());
    }
    if let Some(s) = &file.signin {
        check(problems, "signin", s.to_config());
    }
    check_durations(file, problems);
    check(
        problems,
        "server",
        server_settings(file).map_err(|e| format!("{e:#}")),
    );
    match args.connection.clone().resolve(file.axl.as_ref()) {
        // No `[axl]` and no --url / UCBRIDGE_AXL_URL: AXL is not configured, not wrong.
        Err(e) if file.axl.is_none() && e.to_string().starts_with("no CUCM URL") => {}
        r => check(problems, "axl", r.map_err(|e| format!("{e:#}"))),
    }
    for (table, tables) in one_by_one(file) {
        check(
            problems,
            table,
            ucbridge_server::connections::file::updates(tables),
        );
    }
    check_store(file, args, problems);
    check_secret_key(file, problems);
}

/// The connection tables one at a time, so a bad one does not hide the others.
fn one_by_one(file: &FileConfig) -> Vec<(&'static str, SeedTables<'_>)> {
    let all = file.seed_tables();
    let none = SeedTables::default();
    vec![
        (
            "axl",
            SeedTables {
                axl: all.axl,
                ..none
            },
        ),
        (
            "cuc",
            SeedTables {
                cuc: all.cuc,
                ..none
            },
        ),
        (
            "sso",
            SeedTables {
                sso: all.sso,
                ..none
            },
        ),
        (
            "imap",
            SeedTables {
                imap: all.imap,
                ..none
            },
        ),
        (
            "ldap_export",
            SeedTables {
                ldap_export: all.ldap_export,
                ..none
            },
        ),
        (
            "xmpp",
            SeedTables {
                xmpp: all.xmpp,
                ..none
            },
        ),
    ]
}

/// Every duration-valued key of `[server]` (the server's own check stops at the first).
fn check_durations(file: &FileConfig, problems: &mut Problems) {
    let Some(s) = &file.server else { return };
    for (key, value) in [
        ("lease_ttl", &s.lease_ttl),
        ("tick", &s.tick),
        ("session_ttl", &s.session_ttl),
        ("header_read_timeout", &s.header_read_timeout),
        ("body_read_timeout", &s.body_read_timeout),
        ("idle_timeout", &s.idle_timeout),
        ("request_timeout", &s.request_timeout),
        ("connection_test_timeout", &s.connection_test_timeout),
    ] {
        if let Some(v) = value {
            if let Err(e) = humantime::parse_duration(v) {
                problems.add(
                    format!("server.{key}"),
                    format!("{v:?} is not a duration like \"30s\": {e}"),
                );
            }
        }
    }
}

/// What `serve` would build: `[server]` with the `serve` environment variables.
fn server_settings(file: &FileConfig) -> Result<()> {
    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: serve_cmd::ServeArgs,
    }
    let serve = Serve::try_parse_from(["serve"])?;
    serve_cmd::server_config(&serve.args, file)?;
    Ok(())
}

fn check_store(file: &FileConfig, args: &CheckArgs, problems: &mut Problems) {
    let url = config::database_url(args.database_url.clone(), file);
    let known = ["sqlite:", "postgres:", "postgresql:"];
    if !known.iter().any(|s| url.starts_with(s)) {
        problems.add(
            "store.url",
            format!("{url:?} is neither sqlite://… nor postgres://…"),
        );
    }
}

/// The key for secrets at rest: given (environment or `[server] secret_key_file`) and
/// usable, or the data directory's `secret.key` readable when it exists (it is created on
/// the first `serve` otherwise).
fn check_secret_key(file: &FileConfig, problems: &mut Problems) {
    let configured = file.server.as_ref().and_then(|s| s.secret_key_file.clone());
    match SecretBox::from_env_or_file(configured.as_deref()) {
        Ok(_) => {}
        Err(SecretKeyError::Missing) => {
            let path = config::data_dir().join("secret.key");
            if path.exists() {
                if let Err(e) = SecretBox::from_file(&path) {
                    problems.add("secret_key", format!("{}: {e}", path.display()));
                }
            }
        }
        Err(e) => problems.add_unless_said("secret_key", e),
    }
}

/// The servers the configuration names, with the trust each is reached with.
fn targets(file: &FileConfig, args: &CheckArgs) -> Vec<(String, String, TlsOptions)> {
    let mut out = Vec::new();
    for (_, tables) in one_by_one(file) {
        let Ok(updates) = ucbridge_server::connections::file::updates(tables) else {
            continue;
        };
        for (kind, u) in updates {
            let tls = TlsOptions {
                ca_file: None,
                ca_pem: u.settings.ca_pem.clone(),
                insecure_skip_tls_verify: u.settings.insecure_skip_tls_verify,
            };
            out.push((kind.as_str().to_owned(), u.settings.url.clone(), tls));
        }
    }
    if let Ok(axl) = args.connection.clone().resolve(file.axl.as_ref()) {
        if !out.iter().any(|(_, url, _)| *url == axl.url) {
            let tls = TlsOptions {
                ca_file: axl.ca_file.clone(),
                ca_pem: None,
                insecure_skip_tls_verify: axl.insecure_skip_tls_verify,
            };
            out.push(("axl".to_owned(), axl.url.clone(), tls));
        }
    }
    let db = config::database_url(args.database_url.clone(), file);
    if db.starts_with("postgres") {
        out.push(("store".to_owned(), db, TlsOptions::default()));
    }
    out
}

async fn connect_all(file: &FileConfig, args: &CheckArgs, problems: &mut Problems) -> Vec<Reached> {
    let mut reached = Vec::new();
    for (key, url, tls) in targets(file, args) {
        let shown = shown_url(&url);
        match probe(&url, &tls).await {
            Ok(how) => reached.push(Reached {
                key,
                url: shown,
                how,
            }),
            Err(why) => problems.add(key, format!("cannot reach {shown}: {why}")),
        }
    }
    reached
}

/// The URL without its user information (a PostgreSQL URL may carry a password).
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

/// Reach one server within [`CONNECT_TIMEOUT`]: an HTTP answer (any status) for http(s),
/// else a TCP connection to its host and port.
async fn probe(url: &str, tls: &TlsOptions) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
    if matches!(parsed.scheme(), "http" | "https") {
        let client = ucbridge_auth::http_client(tls, CONNECT_TIMEOUT, CONNECT_TIMEOUT)
            .map_err(|e| e.to_string())?;
        let send = client.get(url).timeout(CONNECT_TIMEOUT).send();
        return match send.await {
            Ok(r) => Ok(format!("HTTP {}", r.status().as_u16())),
            Err(e) => {
                let f = ucbridge_auth::net::classify(&e);
                Err(format!("{} ({})", f.kind.summary(), f.cause))
            }
        };
    }
    let host = parsed.host_str().ok_or("the URL names no host")?.to_owned();
    let port = parsed
        .port()
        .or(match parsed.scheme() {
            "imap" => Some(143),
            "imaps" => Some(993),
            "ldap" => Some(389),
            "ldaps" => Some(636),
            "postgres" | "postgresql" => Some(5432),
            _ => None,
        })
        .ok_or("the URL names no port")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok("TCP; TLS not tried".to_owned()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(text: &str) -> Vec<Problem> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let mut p = Problems::default();
        let (_, raw) = read_file(Some(&path), &mut p);
        if let Some(raw) = raw {
            check_files(&raw, &mut p);
        }
        p.0
    }

    #[test]
    fn every_bad_key_is_reported_not_only_the_first() {
        let p = problems_of(
            "[axl]\nurll = \"x\"\nmax_response_bytes = \"big\"\nca_file = \"/nonexistent/ca.pem\"\n\
             [cuc]\nusernme = \"u\"\n[nonsense]\na = 1\n",
        );
        let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "axl.urll",
            "axl.max_response_bytes",
            "axl.ca_file",
            "cuc.usernme",
            "nonsense",
        ] {
            assert!(keys.contains(&k), "{k} missing from {p:?}");
        }
    }

    /// The server's start-time check of `[sources.*]`: every broken source named by its
    /// table, a good one silent, the password in no message.
    #[tokio::test]
    async fn each_source_is_checked_as_the_server_checks_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[sources.east]\nkind = \"cucm\"\nurl = \"https://east:8443/axl/\"\n\
             username = \"axl\"\n\
             [sources.corp]\nkind = \"ldap\"\nurl = \"ldap://dc1.example.com\"\n\
             bind_dn = \"cn=r\"\nbind_password = \"Secret-4711\"\nbase_dn = \"dc=example\"\n\
             filter = \"(uid=\"\n\
             [sources.west]\nkind = \"cucm\"\nurl = \"https://west:8443/axl/\"\n\
             username = \"axl\"\npassword = \"pw\"\n",
        )
        .unwrap();
        let mut p = Problems::default();
        let (file, _) = read_file(Some(&path), &mut p);
        assert!(p.0.is_empty(), "{:?}", p.0);
        check_sources(&file.unwrap(), &mut p).await;
        let keys: Vec<&str> = p.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["sources.corp", "sources.east"], "{:?}", p.0);
        assert!(
            p.0[1].message.contains("UCBRIDGE_SOURCE_EAST_PASSWORD"),
            "{:?}",
            p.0
        );
        assert!(p.0.iter().all(|p| !p.message.contains("Secret-4711")));
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let p = problems_of("[axl]\nurl = \"x\"\nusername = \n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].message.contains("line 3"), "{p:?}");
    }
}
