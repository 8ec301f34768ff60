//! A throwaway Prosody XMPP server (Debian `prosody`), the stand-in for Cisco IM and
//! Presence in the lab and in tests.
//!
//! [`Prosody::start`] writes `prosody.cfg.lua` into a fresh directory — its own data
//! store, pid file, certificate and log, so the system Prosody and `/etc/prosody` are never
//! used — with one VirtualHost (the XMPP domain), c2s on 127.0.0.1 only (no s2s, no HTTP),
//! the modules a Jabber client needs (roster, SASL, STARTTLS, disco, carbons (XEP-0280),
//! offline storage (XEP-0160), ping, presence) and the `internal_plain` account store.
//! Accounts are written straight into that store (Prosody's datamanager layout), which is
//! how [`Prosody::add_user`] works while the server runs and how a benchmark registers a
//! thousand users in milliseconds. Then `prosody -F` runs in the foreground; the handle
//! waits a bounded time for the XMPP stream header on the port and stops Prosody on drop.
//! A watchdog shell stops it should this process die without dropping the handle.
//!
//! As root, Prosody 0.12 refuses to start ("Danger, Will Robinson!", mod_posix) unless the
//! config says `run_as_root = true`; the launcher sets that when it runs as root, since
//! the server only ever serves 127.0.0.1 from its own temp directory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{command_output, find_program, free_port, ServerCertificate, ServiceError};

/// How long Prosody may take to answer on its port.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// What to start.
#[derive(Clone)]
pub struct ProsodyConfig {
    /// The XMPP domain (the one VirtualHost), e.g. `ucbridge.test`.
    pub domain: String,
    /// Accounts `(localpart, password)` created before the start.
    pub users: Vec<(String, String)>,
    /// Offer STARTTLS with this certificate (its SANs should name `domain`).
    pub certificate: Option<ServerCertificate>,
    /// `c2s_require_encryption`: refuse clients that do not STARTTLS (needs a certificate).
    pub require_encryption: bool,
    /// The c2s port; `None` = one the OS assigns.
    pub port: Option<u16>,
}

impl std::fmt::Debug for ProsodyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProsodyConfig")
            .field("domain", &self.domain)
            .field("users", &self.users.len())
            .field("certificate", &self.certificate.is_some())
            .field("require_encryption", &self.require_encryption)
            .field("port", &self.port)
            .finish()
    }
}

/// A running Prosody; stopped (and its directory removed) on drop.
pub struct Prosody {
    domain: String,
    port: u16,
    binary: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Prosody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prosody")
            .field("domain", &self.domain)
            .field("port", &self.port)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

/// The installed `prosody` binary, if any.
pub fn binary() -> Option<PathBuf> {
    find_program("prosody")
}

/// Prosody's datamanager file-name encoding (util/datamanager.lua `encode`): every
/// non-alphanumeric byte becomes `%xx`, lower-case hex.
fn datamanager_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// A Lua string literal holding exactly `s`: every byte that is not alphanumeric is a
/// decimal escape (`\ddd`), so nothing in `s` can end the string or the file.
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\{b:03}"));
        }
    }
    out.push('"');
    out
}

/// A domain Prosody can serve and we can put in its config: DNS-like labels only.
fn check_domain(domain: &str) -> Result<(), ServiceError> {
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::BadSetting(format!(
            "XMPP domain {domain:?}: letters, digits, '.' and '-' only"
        )))
    }
}

/// A localpart we create: non-empty, no '@', '/' or whitespace (RFC 7622 forbids more,
/// but these are the ones that would make a different JID).
fn check_localpart(user: &str) -> Result<(), ServiceError> {
    if user.is_empty()
        || user.len() > 1023
        || user.contains(['@', '/', '"', '&', '\'', '<', '>', ':'])
        || user.contains(char::is_whitespace)
        || user.chars().any(|c| c.is_uppercase())
    {
        return Err(ServiceError::BadSetting(format!(
            "XMPP user {user:?}: lower case, no spaces or @/\"&'<>:"
        )));
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), ServiceError> {
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(ServiceError::io(format!("cannot write {}", path.display())))
}

fn running_as_root() -> bool {
    command_output("id", &["-u"]).as_deref() == Some("0")
}

/// Write one account into the `internal_plain` store of `domain` under `data`.
fn write_account(
    data: &Path,
    domain: &str,
    user: &str,
    password: &str,
) -> Result<(), ServiceError> {
    check_localpart(user)?;
    if password.is_empty() {
        return Err(ServiceError::BadSetting(format!(
            "empty password for {user:?}"
        )));
    }
    let accounts = data.join(datamanager_encode(domain)).join("accounts");
    std::fs::create_dir_all(&accounts).map_err(ServiceError::io(format!(
        "cannot create {}",
        accounts.display()
    )))?;
    let file = accounts.join(format!("{}.dat", datamanager_encode(user)));
    // Written to a temp name and renamed, so a running Prosody never reads half a file.
    let tmp = accounts.join(format!("{}.dat.tmp", datamanager_encode(user)));
    write(
        &tmp,
        &format!(
            "return {{\n\t[\"password\"] = {};\n}};\n",
            lua_string(password)
        ),
    )?;
    std::fs::rename(&tmp, &file)
        .map_err(ServiceError::io(format!("cannot write {}", file.display())))
}

/// The text of `prosody.cfg.lua` for `config` in `dir` (see the module docs).
fn config_text(dir: &Path, config: &ProsodyConfig, port: u16) -> Result<String, ServiceError> {
    let d = |name: &str| lua_string(&dir.join(name).display().to_string());
    let tls = match &config.certificate {
        Some(cert) => {
            write(&dir.join("certs").join("server.crt"), &cert.cert_pem)?;
            write(&dir.join("certs").join("server.key"), &cert.key_pem)?;
            super::chmod("600", &dir.join("certs").join("server.key"));
            format!(
                "ssl = {{ certificate = {}; key = {}; }}\n",
                d("certs/server.crt"),
                d("certs/server.key")
            )
        }
        None => String::new(),
    };
    let encryption = if config.require_encryption {
        "c2s_require_encryption = true\nallow_unencrypted_plain_auth = false\n"
    } else {
        // The non-TLS mode Cisco IM&P can be set to; SASL PLAIN over plain TCP on loopback.
        "c2s_require_encryption = false\nallow_unencrypted_plain_auth = true\n"
    };
    let root = if running_as_root() {
        "run_as_root = true\n"
    } else {
        ""
    };
    Ok(format!(
        r#"-- Throwaway Prosody started by ucbridge (lab or tests).
{root}pidfile = {pid}
data_path = {data}
certificates = {certs}
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = {log} }} }}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "carbons"; "offline"; "ping"; "presence"; "posix" }}
modules_disabled = {{ "s2s"; "s2s_auth_certs"; "s2s_bidi"; "dialback" }}
authentication = "internal_plain"
storage = "internal"
-- Unauthenticated connections are dropped after a minute.
c2s_timeout = 60
{encryption}{tls}
VirtualHost {domain}
"#,
        pid = d("prosody.pid"),
        data = d("data"),
        certs = d("certs"),
        log = d("prosody.log"),
        domain = lua_string(&config.domain),
    ))
}

impl Prosody {
    /// Start a Prosody (see the module docs). Blocks until it answers, at most 15 s.
    pub fn start(config: &ProsodyConfig) -> Result<Prosody, ServiceError> {
        let binary = binary().ok_or(ServiceError::NotInstalled {
            what: "prosody".into(),
            hint: "apt-get install prosody",
        })?;
        check_domain(&config.domain)?;
        if config.require_encryption && config.certificate.is_none() {
            return Err(ServiceError::BadSetting(
                "require_encryption needs a certificate".into(),
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("ucbridge-prosody-")
            .tempdir()
            .map_err(ServiceError::io("cannot create Prosody's directory"))?;
        for sub in ["data", "certs"] {
            std::fs::create_dir_all(dir.path().join(sub))
                .map_err(ServiceError::io(format!("cannot create {sub}")))?;
        }
        for (user, password) in &config.users {
            write_account(&dir.path().join("data"), &config.domain, user, password)?;
        }
        let port = match config.port {
            Some(p) => p,
            None => free_port()?,
        };
        let text = config_text(dir.path(), config, port)?;
        let conf = dir.path().join("prosody.cfg.lua");
        write(&conf, &text)?;
        let mut prosody = Prosody {
            domain: config.domain.clone(),
            port,
            binary,
            child: None,
            watchdog: None,
            dir,
        };
        prosody.spawn()?;
        Ok(prosody)
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The c2s port (plain TCP, STARTTLS when configured).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The XMPP domain it serves.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Create (or re-password) an account; takes effect at once, also while running.
    pub fn add_user(&self, user: &str, password: &str) -> Result<(), ServiceError> {
        write_account(&self.dir.path().join("data"), &self.domain, user, password)
    }

    /// Stop Prosody and start it again on the same port with the same data (accounts,
    /// rosters, offline messages): what a client sees when IM&P restarts.
    pub fn restart(&mut self) -> Result<(), ServiceError> {
        self.stop();
        // The port may linger in the kernel for a moment after the old process exits.
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Prosody's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
            + &std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Run `prosody -F` with our config, wait until it answers, start the watchdog.
    fn spawn(&mut self) -> Result<(), ServiceError> {
        let conf = self.dir.path().join("prosody.cfg.lua");
        let out_path = self.dir.path().join("stdout.log");
        let out = std::fs::File::create(&out_path).map_err(ServiceError::io("stdout.log"))?;
        let err = out.try_clone().map_err(ServiceError::io("stdout.log"))?;
        let mut child = Command::new(&self.binary)
            .arg("-F")
            .arg("--config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| ServiceError::Start(format!("cannot run prosody: {e}")))?;
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(ServiceError::Start(format!(
                    "prosody exited with {status}: {}",
                    self.log()
                )));
            }
            if answers(self.port, &self.domain) {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ServiceError::Start(format!(
                    "prosody did not answer on 127.0.0.1:{} within {} s: {}",
                    self.port,
                    READY_WITHIN.as_secs(),
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -TERM {pid} 2>/dev/null",
                me = std::process::id(),
                pid = child.id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        self.child = Some(child);
        Ok(())
    }

    /// SIGTERM (Prosody closes its streams and saves), SIGKILL after 5 s.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// True when the port answers an XMPP stream header with one of its own.
fn answers(port: u16, domain: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let header = format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' \
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    );
    if stream.write_all(header.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    let answered = matches!(stream.read(&mut buf), Ok(n) if n > 0 && buf[..n].windows(7).any(|w| w == b"stream:"));
    let _ = stream.write_all(b"</stream:stream>");
    answered
}

impl Drop for Prosody {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_lua_strings_are_escaped() {
        assert_eq!(datamanager_encode("ucbridge.test"), "ucbridge%2etest");
        assert_eq!(datamanager_encode("a-b"), "a%2db");
        assert_eq!(lua_string("a\"]b"), "\"a\\034\\093b\"");
    }
}
