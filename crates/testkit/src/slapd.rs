//! A throwaway OpenLDAP `slapd` for tests.
//!
//! Each [`Slapd`] is its own server: a `slapd.conf` generated in a temp dir (core, cosine
//! and inetOrgPerson schemas, the `argon2` password module, one mdb database), the base
//! entries loaded offline with `slapadd`, then `slapd -d 0` (foreground) listening on a
//! free 127.0.0.1 port, optionally with TLS (ldaps:// beside ldap://, StartTLS on the
//! latter). It is stopped on drop, and a watchdog stops it should the test process die
//! without dropping it. The system slapd and its configuration are never touched.
//!
//! `None` from [`Slapd::start`] means "skip" after a loud notice; under `CI=true` a
//! missing `slapd` panics instead.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The suffix of the test directory.
pub const BASE_DN: &str = "dc=ucbridge,dc=test";
/// Where people entries go.
pub const PEOPLE_DN: &str = "ou=people,dc=ucbridge,dc=test";
/// The rootdn: bypasses access control, like a directory administrator.
pub const ADMIN_DN: &str = "cn=admin,dc=ucbridge,dc=test";
/// Its password (a throwaway server on 127.0.0.1; nothing to protect).
pub const ADMIN_PASSWORD: &str = "ucbridge-test-admin";

/// Where Debian puts slapd's loadable modules (`back_mdb.so`, `argon2.so`).
const MODULE_DIR: &str = "/usr/lib/ldap";
const SCHEMA_DIR: &str = "/etc/ldap/schema";

/// The server certificate slapd presents.
pub type SlapdTls = crate::tls::ServerCertificate;

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct SlapdOptions {
    /// Serve TLS too: `ldaps://` on a second port, and StartTLS on `ldap://`.
    pub tls: Option<SlapdTls>,
}

/// A running throwaway slapd; stopped (and its directory removed) on drop.
pub struct Slapd {
    /// `ldap://127.0.0.1:<port>`
    pub url: String,
    /// `ldaps://127.0.0.1:<port>` when started with TLS.
    pub ldaps_url: Option<String>,
    child: Child,
    watchdog: Option<Child>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Slapd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slapd")
            .field("url", &self.url)
            .field("ldaps_url", &self.ldaps_url)
            .field("pid", &self.child.id())
            .finish()
    }
}

fn skip_or_fail(why: &str) {
    if super::in_ci() {
        panic!("{why} (CI=true: a missing slapd fails the run; install slapd and ldap-utils)");
    }
    eprintln!("\n*** SKIPPED: {why}. Install the Debian packages slapd and ldap-utils. ***\n");
}

fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    // slapd lives in /usr/sbin, which a non-root PATH often lacks.
    dirs.extend(["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

impl Slapd {
    /// Start a server without TLS.
    pub fn start() -> Option<Slapd> {
        Slapd::start_with(SlapdOptions::default())
    }

    /// Start a server; `None` = skip (slapd or its modules are not installed).
    pub fn start_with(options: SlapdOptions) -> Option<Slapd> {
        let (Some(slapd), Some(slapadd)) = (find_program("slapd"), find_program("slapadd")) else {
            skip_or_fail("slapd/slapadd not found");
            return None;
        };
        for module in ["back_mdb.so", "argon2.so"] {
            if !Path::new(MODULE_DIR).join(module).exists() {
                skip_or_fail(&format!("slapd module {MODULE_DIR}/{module} not found"));
                return None;
            }
        }
        // A port picked by binding :0 can be taken by someone else before slapd binds it;
        // try again with a new one in that (rare) case.
        let mut last_error = String::new();
        for _ in 0..3 {
            match start_once(&slapd, &slapadd, &options) {
                Ok(server) => return Some(server),
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start a test slapd: {last_error}");
    }

    /// The base DN of the test directory.
    pub fn base_dn(&self) -> &'static str {
        BASE_DN
    }

    /// `ou=people` under the base.
    pub fn people_dn(&self) -> &'static str {
        PEOPLE_DN
    }

    pub fn admin_dn(&self) -> &'static str {
        ADMIN_DN
    }

    pub fn admin_password(&self) -> &'static str {
        ADMIN_PASSWORD
    }

    /// What slapd printed so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        // SIGTERM lets slapd close the mdb environment; SIGKILL if it does not stop.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(w) = &mut self.watchdog {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn start_once(slapd: &Path, slapadd: &Path, options: &SlapdOptions) -> Result<Slapd, String> {
    let dir = tempfile::Builder::new()
        .prefix("ucbridge-slapd-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let root = dir.path();
    let db = root.join("db");
    std::fs::create_dir(&db).map_err(|e| e.to_string())?;
    let port = free_port()?;
    let mut urls = format!("ldap://127.0.0.1:{port}/");
    let mut ldaps_url = None;
    let mut tls_config = String::new();
    if let Some(tls) = &options.tls {
        let tls_port = free_port()?;
        write(&root.join("server.pem"), &tls.cert_pem)?;
        write(&root.join("server.key"), &tls.key_pem)?;
        tls_config = format!(
            "TLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
            root.join("server.pem").display(),
            root.join("server.key").display()
        );
        urls.push_str(&format!(" ldaps://127.0.0.1:{tls_port}/"));
        ldaps_url = Some(format!("ldaps://127.0.0.1:{tls_port}"));
    }
    // slapd.conf(5). Users may authenticate against their userPassword and nobody reads it;
    // the rootdn bypasses these rules. `maxsize`: a sparse 32 MiB map leaves room for bigger
    // tests. `dbnosync`: a throwaway database need not fsync each write (measured: 2,000
    // adds took 9.9 s with fsync, 2.4 s without).
    let config = format!(
        "include {SCHEMA_DIR}/core.schema\n\
         include {SCHEMA_DIR}/cosine.schema\n\
         include {SCHEMA_DIR}/inetorgperson.schema\n\
         modulepath {MODULE_DIR}\n\
         moduleload back_mdb.so\n\
         moduleload argon2.so\n\
         pidfile {pid}\n\
         {tls_config}\
         database mdb\n\
         maxsize 33554432\n\
         dbnosync\n\
         suffix \"{BASE_DN}\"\n\
         rootdn \"{ADMIN_DN}\"\n\
         rootpw {ADMIN_PASSWORD}\n\
         directory {db}\n\
         access to attrs=userPassword by self write by anonymous auth by * none\n\
         access to * by * read\n",
        pid = root.join("slapd.pid").display(),
        db = db.display(),
    );
    let conf = root.join("slapd.conf");
    write(&conf, &config)?;
    let base = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: ucbridge\no: ucbridge tests\n\n\
         dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n"
    );
    let ldif = root.join("base.ldif");
    write(&ldif, &base)?;
    let out = Command::new(slapadd)
        .arg("-f")
        .arg(&conf)
        .arg("-l")
        .arg(&ldif)
        .output()
        .map_err(|e| format!("cannot run slapadd: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let log_path = root.join("slapd.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    // `-d 0`: stay in the foreground (any -d does) without debug output.
    let mut child = Command::new(slapd)
        .arg("-f")
        .arg(&conf)
        .arg("-h")
        .arg(&urls)
        .args(["-d", "0"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("cannot run slapd: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "slapd exited with {status}: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            ));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "slapd did not listen within 10 s: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // Stops slapd if this process dies without running Drop (killed test binary).
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -TERM {slapd} 2>/dev/null",
            me = std::process::id(),
            slapd = child.id()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok();
    Ok(Slapd {
        url: format!("ldap://127.0.0.1:{port}"),
        ldaps_url,
        child,
        watchdog,
        dir,
    })
}
