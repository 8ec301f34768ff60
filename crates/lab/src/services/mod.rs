//! Real mail and directory servers for the lab: a throwaway Dovecot (IMAP) and OpenLDAP
//! `slapd`, started as child processes on 127.0.0.1 for `ucbridge serve --lab` and for the
//! workspace's tests (`ucbridge_testkit::{dovecot, slapd}` wrap these launchers).
//!
//! Each launcher finds the installed binary (PATH, then Debian's `/usr/sbin`), writes its
//! configuration into a fresh directory of its own (never the system server's), starts the
//! server on 127.0.0.1 (an OS-assigned free port unless one is chosen), waits a bounded
//! time until it answers, and stops it when the handle is dropped. A watchdog shell also
//! stops it should this process die without dropping the handle.
//!
//! Unlike the emulators these are not Cisco's protocols, so sharing them with the clients'
//! tests builds no misreading into both sides; they use no ucbridge crate.

use std::path::PathBuf;
use std::process::{Command, Stdio};

pub mod dovecot;
pub mod prosody;
pub mod slapd;

pub use dovecot::{Checkpassword, Dovecot, DovecotConfig, LuaPush};
pub use prosody::{Prosody, ProsodyConfig};
pub use slapd::{Slapd, SlapdConfig, SlapdFeatures};

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The program (or a module it needs) is not installed.
    #[error("{what} not installed ({hint})")]
    NotInstalled {
        what: String,
        /// What to install, e.g. "apt-get install dovecot-imapd".
        hint: &'static str,
    },
    /// A file or directory could not be written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A setting cannot be written into the server's configuration safely.
    #[error("bad setting: {0}")]
    BadSetting(String),
    /// The server was started but did not come up (its log is included).
    #[error("{0}")]
    Start(String),
}

impl ServiceError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServiceError {
        let context = context.into();
        move |source| ServiceError::Io { context, source }
    }
}

/// A server's certificate and key, PEM text (e.g. from `ucbridge_testkit::tls`).
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

/// `name` on PATH or in `/usr/sbin`, `/usr/local/sbin` (which a non-root PATH often lacks).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A free port on 127.0.0.1, as the OS assigns it.
pub(crate) fn free_port() -> Result<u16, ServiceError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(ServiceError::io("bind 127.0.0.1:0"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(ServiceError::io("bind 127.0.0.1:0"))
}

/// A program's stdout (trimmed) when it runs and succeeds.
pub(crate) fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `chmod <mode> <path>`, best effort (the server's own users must read what we write).
pub(crate) fn chmod(mode: &str, path: &std::path::Path) {
    let _ = Command::new("chmod")
        .arg(mode)
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
