//! Test support shared by the workspace's test suites.
//!
//! Two jobs:
//! - find the shared fixtures (Cisco's AXL schema, sample payloads) that live beside the
//!   project, never inside it: `UCBRIDGE_FIXTURES`, default `../shared/fixtures` from the
//!   workspace root. Under `CI=true` a missing fixture fails the run; elsewhere the test
//!   prints a loud skip notice and returns early.
//! - validate AXL messages against Cisco's XSD with `xmllint` (Debian `libxml2-utils`). The
//!   XSD describes the operation element (the child of the SOAP `Body`), not the envelope,
//!   so each envelope is reduced to that element before validation.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use quick_xml::events::Event;
use quick_xml::Reader;

pub mod dovecot;
pub mod hostile;
pub mod prosody;
pub mod slapd;
pub mod tls;

/// True when running under CI, where missing fixtures or tools are errors, not skips.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// The shared fixtures folder: `$UCBRIDGE_FIXTURES` or `<workspace>/../shared/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("UCBRIDGE_FIXTURES") {
        return PathBuf::from(dir);
    }
    workspace_root().join("..").join("shared").join("fixtures")
}

/// The workspace root (two levels above a crate's manifest). Read at run time first
/// (`cargo test` sets `CARGO_MANIFEST_DIR` to the tested crate's directory): cargo hashes
/// path packages relative to the workspace, so a test binary built in another checkout
/// sharing the target directory can be reused as fresh, and its compile-time path would
/// name that other checkout.
pub fn workspace_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let root = manifest.join("..").join("..");
    root.canonicalize().unwrap_or(root)
}

/// A fixture by path relative to [`fixtures_dir`]. `None` means "skip this test" (after a
/// loud notice); under CI a missing fixture panics so the run fails.
pub fn fixture(relative: &str) -> Option<PathBuf> {
    let path = fixtures_dir().join(relative);
    if path.exists() {
        return Some(path);
    }
    skip_or_fail(&format!("fixture {} not found", path.display()));
    None
}

/// Read a fixture as bytes (see [`fixture`] for the missing case).
pub fn fixture_bytes(relative: &str) -> Option<Vec<u8>> {
    let path = fixture(relative)?;
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => panic!("cannot read fixture {}: {e}", path.display()),
    }
}

fn skip_or_fail(why: &str) {
    if in_ci() {
        panic!("{why} (CI=true: missing fixtures or tools fail the run; set UCBRIDGE_FIXTURES)");
    }
    eprintln!("\n*** SKIPPED: {why}. Set UCBRIDGE_FIXTURES to the shared fixtures folder. ***\n");
}

/// The AXL schema file for one version, if present.
pub fn axl_schema(version: &str) -> Option<PathBuf> {
    fixture(&format!("axl-schema/{version}/AXLSoap.xsd"))
}

/// Validate the operation element of each SOAP envelope against Cisco's AXL XSD for
/// `version`, with one `xmllint` run for the whole batch (loading the schema takes ~0.5 s).
///
/// Returns `Ok(())` after a skip notice when the schema or `xmllint` is missing outside CI.
pub fn validate_axl_bodies(version: &str, envelopes: &[Vec<u8>]) -> Result<(), String> {
    let Some(schema) = axl_schema(version) else {
        return Ok(());
    };
    if Command::new("xmllint").arg("--version").output().is_err() {
        skip_or_fail("xmllint not installed (Debian package libxml2-utils)");
        return Ok(());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut files = Vec::with_capacity(envelopes.len());
    for (i, envelope) in envelopes.iter().enumerate() {
        let body = extract_body_element(envelope)
            .map_err(|e| format!("message #{i} is not a SOAP envelope: {e}"))?;
        let path = dir.path().join(format!("message-{i:03}.xml"));
        let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
        f.write_all(&body).map_err(|e| e.to_string())?;
        files.push(path);
    }
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .args(&files)
        .output()
        .map_err(|e| format!("cannot run xmllint: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let mut report = String::from_utf8_lossy(&output.stderr).into_owned();
    // Name the failing message's content so the failure can be read without the temp dir.
    for (i, path) in files.iter().enumerate() {
        let name = path.display().to_string();
        if report.contains(&format!("{name} fails")) {
            let body = std::fs::read_to_string(path).unwrap_or_default();
            let shown: String = body.chars().take(2000).collect();
            report.push_str(&format!("\n--- message #{i} ---\n{shown}\n"));
        }
    }
    Err(report)
}

/// The first element child of `Envelope/Body`, re-serialised as a standalone document with
/// every namespace declaration in scope copied onto it (so `ns:` prefixes declared on the
/// Envelope still resolve).
pub fn extract_body_element(envelope: &[u8]) -> Result<Vec<u8>, String> {
    let mut reader = Reader::from_reader(envelope);
    let mut depth = 0usize;
    let mut in_body_at: Option<usize> = None;
    let mut inherited: Vec<(String, String)> = Vec::new();
    let mut start: Option<usize> = None;
    let mut buf = Vec::new();
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("XML error: {e}"))?;
        match event {
            Event::Start(e) => {
                depth += 1;
                let local = e.local_name();
                if in_body_at.is_none() {
                    for attr in e.attributes().flatten() {
                        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
                        if key.starts_with("xmlns") {
                            let value = String::from_utf8_lossy(&attr.value).into_owned();
                            inherited.push((key, value));
                        }
                    }
                    if local.as_ref() == b"Body" {
                        in_body_at = Some(depth);
                    }
                } else if Some(depth - 1) == in_body_at && start.is_none() {
                    start = Some(before);
                }
            }
            Event::Empty(_) if in_body_at.is_some() && Some(depth) == in_body_at => {
                let end = reader.buffer_position() as usize;
                return Ok(with_namespaces(&envelope[before..end], &inherited));
            }
            Event::End(_) => {
                if let (Some(s), Some(b)) = (start, in_body_at) {
                    if depth == b + 1 {
                        let end = reader.buffer_position() as usize;
                        return Ok(with_namespaces(&envelope[s..end], &inherited));
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => return Err("no element inside soap Body".into()),
            _ => {}
        }
        buf.clear();
    }
}

/// Insert the inherited `xmlns` declarations into the element's start tag, unless the
/// element declares the same prefix itself.
fn with_namespaces(element: &[u8], inherited: &[(String, String)]) -> Vec<u8> {
    let text = String::from_utf8_lossy(element);
    let trimmed = text.trim_start();
    let tag_end = trimmed
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(trimmed.len());
    let open_tag_end = trimmed.find('>').unwrap_or(trimmed.len());
    let open_tag = &trimmed[..open_tag_end];
    let mut decls = String::new();
    for (key, value) in inherited {
        if !open_tag.contains(&format!("{key}=")) {
            let escaped = value.replace('&', "&amp;").replace('"', "&quot;");
            decls.push_str(&format!(" {key}=\"{escaped}\""));
        }
    }
    let mut out = String::with_capacity(trimmed.len() + decls.len() + 40);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&trimmed[..tag_end]);
    out.push_str(&decls);
    out.push_str(&trimmed[tag_end..]);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_operation_with_envelope_namespaces() {
        let env = br#"<?xml version='1.0'?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ns="http://www.cisco.com/AXL/API/14.0"><s:Header/><s:Body><ns:getCCMVersion><processNodeName/></ns:getCCMVersion></s:Body></s:Envelope>"#;
        let body = String::from_utf8(extract_body_element(env).unwrap()).unwrap();
        assert!(body.contains(r#"<ns:getCCMVersion xmlns:s="#), "{body}");
        assert!(body.contains(r#"xmlns:ns="http://www.cisco.com/AXL/API/14.0""#));
        assert!(body.trim_end().ends_with("</ns:getCCMVersion>"));
    }

    #[test]
    fn extracts_empty_operation() {
        let env = br#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><n:getCCMVersion xmlns:n="http://www.cisco.com/AXL/API/14.0"/></e:Body></e:Envelope>"#;
        let body = String::from_utf8(extract_body_element(env).unwrap()).unwrap();
        assert!(body.contains("<n:getCCMVersion xmlns:e="), "{body}");
    }

    #[test]
    fn validates_a_real_zeep_request_and_rejects_a_bad_one() {
        let Some(good) = fixture_bytes("axl-samples/listUser.request.zeep-generated-14.0.xml")
        else {
            return;
        };
        validate_axl_bodies("14.0", std::slice::from_ref(&good))
            .expect("zeep's own request is valid");
        let bad = String::from_utf8(good)
            .unwrap()
            .replace("<skip>0</skip>", "<skip>zero</skip>");
        let err = validate_axl_bodies("14.0", &[bad.into_bytes()]).unwrap_err();
        assert!(err.contains("skip"), "{err}");
    }
}

/// PostgreSQL for tests: `UCBRIDGE_TEST_PG_URL` when set (a server URL such as
/// `postgres://postgres@127.0.0.1:5433`), else a throwaway cluster started once per test
/// process from the `initdb`/`postgres` binaries on PATH. Each call creates a fresh,
/// empty database and returns its URL. `None` means "skip" (loudly; a failure under CI).
pub fn postgres_database() -> Option<String> {
    let server = pg::server()?;
    let name = format!(
        "t{}_{}",
        std::process::id(),
        pg::NEXT_DB.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let status = Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .output();
    match status {
        Ok(out) if out.status.success() => Some(format!("{server}/{name}")),
        Ok(out) => {
            skip_or_fail(&format!(
                "cannot create a test database: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            None
        }
        Err(e) => {
            skip_or_fail(&format!("cannot run psql: {e}"));
            None
        }
    }
}

mod pg {
    use std::process::{Command, Stdio};
    use std::sync::atomic::AtomicU32;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use super::skip_or_fail;

    pub(super) static NEXT_DB: AtomicU32 = AtomicU32::new(0);
    static SERVER: OnceLock<Option<String>> = OnceLock::new();

    pub(super) fn server() -> Option<String> {
        SERVER.get_or_init(start).clone()
    }

    fn start() -> Option<String> {
        if let Ok(url) = std::env::var("UCBRIDGE_TEST_PG_URL") {
            return Some(url.trim_end_matches('/').to_owned());
        }
        match start_cluster() {
            Ok(url) => Some(url),
            Err(why) => {
                skip_or_fail(&format!("PostgreSQL not available for tests: {why}"));
                None
            }
        }
    }

    /// initdb + postgres in a temp dir, listening on 127.0.0.1 only. PostgreSQL refuses to
    /// run as root, so as root the cluster runs as `nobody`. A watchdog shell stops the
    /// server and removes the directory once this test process is gone (it looks in /proc
    /// rather than using `kill -0`, which `nobody` may not send to a root process).
    fn start_cluster() -> Result<String, String> {
        let dir = tempfile::Builder::new()
            .prefix("ucbridge-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let data = dir.join("data");
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let run_as = |program: &str| -> Command {
            if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "nobody", "--", program]);
                c
            } else {
                Command::new(program)
            }
        };
        if as_root {
            let ok = Command::new("chown")
                .args(["-R", "nobody"])
                .arg(&dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return Err("cannot chown the cluster directory to nobody".into());
            }
        }
        let init = run_as("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !init.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        let port = free_port()?;
        let log = dir.join("postgres.log");
        let script = format!(
            "postgres -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=200 >'{log}' 2>&1 & pg=$!; \
             while [ -d /proc/{parent} ] && [ -d /proc/$pg ]; do sleep 1; done; \
             kill -INT $pg 2>/dev/null; wait $pg; rm -rf '{dir}'",
            data = data.display(),
            dir = dir.display(),
            log = log.display(),
            parent = std::process::id(),
        );
        let mut watchdog = if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        watchdog
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        let url = format!("postgres://postgres@127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = Command::new("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(url);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "postgres did not become ready; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        ))
    }

    fn free_port() -> Result<u16, String> {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
    }
}
