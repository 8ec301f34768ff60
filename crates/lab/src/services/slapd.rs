//! A throwaway OpenLDAP `slapd` (Debian `slapd`, with `ldap-utils` for people's use).
//!
//! Each [`Slapd`] is its own server: a `slapd.conf` generated in a fresh directory (core,
//! cosine and inetOrgPerson schemas, the `argon2` password module, one mdb database), the
//! base entries ([`BASE_DN`] and [`PEOPLE_DN`]) loaded offline with `slapadd`, then
//! `slapd -d 0` (foreground) on 127.0.0.1, optionally with TLS (ldaps:// beside ldap://,
//! StartTLS on the latter). It is stopped on drop (and its directory removed), and a
//! watchdog stops it should this process die without dropping it. The system slapd and
//! its configuration are never touched.
//!
//! [`SlapdFeatures`] add what directory-source tests need: the `syncprov` overlay
//! (content synchronisation, RFC 4533: syncrepl refreshOnly/refreshAndPersist searches)
//! and a small Active-Directory-like schema ([`AD_SCHEMA`]: `objectGUID`,
//! `userAccountControl`, `sAMAccountName`, `userPrincipalName`, `uSNChanged` under AD's
//! own OIDs, and an auxiliary class `user`). slapd does not maintain `objectGUID` or
//! `uSNChanged` as AD does: whoever writes entries sets them.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{find_program, free_port, ServerCertificate, ServiceError};

/// The suffix of the directory.
pub const BASE_DN: &str = "dc=ucbridge,dc=test";
/// Where people entries go.
pub const PEOPLE_DN: &str = "ou=people,dc=ucbridge,dc=test";
/// The rootdn: bypasses access control, like a directory administrator.
pub const ADMIN_DN: &str = "cn=admin,dc=ucbridge,dc=test";

/// Where Debian puts slapd's loadable modules (`back_mdb.so`, `argon2.so`).
const MODULE_DIR: &str = "/usr/lib/ldap";
const SCHEMA_DIR: &str = "/etc/ldap/schema";
/// How long slapd may take to listen.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A small Active-Directory-like schema (slapd.conf format). The OIDs are AD's own
/// (MS-ADA1/MS-ADA3: objectGUID 1.2.840.113556.1.4.2 is a 16-byte octet string,
/// userAccountControl 1.2.840.113556.1.4.8 an integer whose bit 0x2 is ACCOUNTDISABLE,
/// uSNChanged 1.2.840.113556.1.2.120 an ordered integer); `user` is structural in AD and
/// auxiliary here, so entries stay `inetOrgPerson` as well.
pub const AD_SCHEMA: &str = "\
attributetype ( 1.2.840.113556.1.4.2 NAME 'objectGUID' EQUALITY octetStringMatch \
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch \
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch \
  SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{256} SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName' EQUALITY caseIgnoreMatch \
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024} SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.2.120 NAME 'uSNChanged' EQUALITY integerMatch \
  ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.2.840.113556.1.5.9 NAME 'user' AUXILIARY \
  MAY ( objectGUID $ userAccountControl $ sAMAccountName $ userPrincipalName $ uSNChanged ) )
";

/// Optional parts of the server, beyond [`SlapdConfig`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SlapdFeatures {
    /// Load the `syncprov` overlay on the database (RFC 4533 content synchronisation).
    pub syncprov: bool,
    /// Load [`AD_SCHEMA`].
    pub ad_schema: bool,
}

/// What to start.
#[derive(Clone)]
pub struct SlapdConfig {
    /// The rootdn's ([`ADMIN_DN`]) password.
    pub admin_password: String,
    /// Serve TLS too: `ldaps://` on a second port, and StartTLS on `ldap://`.
    pub tls: Option<ServerCertificate>,
    /// The ldap:// port; `None` = one the OS assigns (retried if taken meanwhile).
    pub port: Option<u16>,
    /// Where the server's own directory is created; `None` = the system temp dir.
    pub parent_dir: Option<PathBuf>,
}

impl std::fmt::Debug for SlapdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlapdConfig")
            .field("tls", &self.tls.is_some())
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A running slapd; stopped (and its directory removed) on drop.
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

/// The installed `slapd` and `slapadd`, if both are.
pub fn binaries() -> Option<(PathBuf, PathBuf)> {
    Some((find_program("slapd")?, find_program("slapadd")?))
}

/// The installed slapd's version (`2.5.13`), if it runs.
pub fn version() -> Option<String> {
    let (slapd, _) = binaries()?;
    let out = Command::new(slapd)
        .arg("-VV")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    // "@(#) $OpenLDAP: slapd 2.5.13+dfsg-5 (Feb  8 2023 01:56:12) $" on stderr.
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let rest = text.split("slapd ").nth(1)?;
    let word = rest.split_whitespace().next()?;
    Some(word.split(['+', '-']).next().unwrap_or(word).to_owned())
}

/// The modules this launcher loads that are missing, if any.
pub fn missing_module() -> Option<String> {
    ["back_mdb.so", "argon2.so"]
        .into_iter()
        .map(|m| Path::new(MODULE_DIR).join(m))
        .find(|p| !p.exists())
        .map(|p| p.display().to_string())
}

impl Slapd {
    /// Start a server (see the module docs). Blocks until it listens, at most 10 s per
    /// attempt.
    pub fn start(config: &SlapdConfig) -> Result<Slapd, ServiceError> {
        Slapd::start_with_features(config, SlapdFeatures::default())
    }

    /// [`Slapd::start`] with optional parts (syncprov, the AD-like schema).
    pub fn start_with_features(
        config: &SlapdConfig,
        features: SlapdFeatures,
    ) -> Result<Slapd, ServiceError> {
        let (slapd, slapadd) = binaries().ok_or(ServiceError::NotInstalled {
            what: "slapd/slapadd".into(),
            hint: "apt-get install slapd",
        })?;
        let syncprov = Path::new(MODULE_DIR).join("syncprov.so");
        if features.syncprov && !syncprov.exists() {
            return Err(ServiceError::NotInstalled {
                what: format!("slapd module {}", syncprov.display()),
                hint: "apt-get install slapd",
            });
        }
        if let Some(module) = missing_module() {
            return Err(ServiceError::NotInstalled {
                what: format!("slapd module {module}"),
                hint: "apt-get install slapd",
            });
        }
        if config.admin_password.is_empty() || config.admin_password.contains(char::is_whitespace) {
            return Err(ServiceError::BadSetting(
                "the admin password must be non-empty without spaces".into(),
            ));
        }
        // A port picked by binding :0 can be taken by someone else before slapd binds it;
        // try again with a new one in that (rare) case.
        let attempts = if config.port.is_some() { 1 } else { 3 };
        let mut last_error = None;
        for _ in 0..attempts {
            match start_once(&slapd, &slapadd, config, features) {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| ServiceError::Start("slapd did not start".into())))
    }

    /// The base DN of the directory.
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

fn write(path: &Path, text: &str) -> Result<(), ServiceError> {
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(ServiceError::io(format!("cannot write {}", path.display())))
}

/// The slapd.conf lines `features` add: (before the database, after it).
fn feature_config(root: &Path, features: SlapdFeatures) -> Result<(String, String), ServiceError> {
    let mut global = String::new();
    let mut database = String::new();
    if features.ad_schema {
        let schema = root.join("ad-like.schema");
        write(&schema, AD_SCHEMA)?;
        global.push_str(&format!("include {}\n", schema.display()));
    }
    if features.syncprov {
        global.push_str("moduleload syncprov.so\n");
        // Session log: deletes within the last 1,000 changes are sent by uuid on refresh.
        database.push_str(
            "index objectClass eq\nindex entryCSN,entryUUID eq\noverlay syncprov\n\
             syncprov-checkpoint 100 1\nsyncprov-sessionlog 1000\n",
        );
    }
    Ok((global, database))
}

fn start_once(
    slapd: &Path,
    slapadd: &Path,
    config: &SlapdConfig,
    features: SlapdFeatures,
) -> Result<Slapd, ServiceError> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("ucbridge-slapd-");
    let dir = match &config.parent_dir {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
    .map_err(ServiceError::io("cannot create slapd's directory"))?;
    let root = dir.path();
    let db = root.join("db");
    std::fs::create_dir(&db).map_err(ServiceError::io("cannot create slapd's database dir"))?;
    let port = match config.port {
        Some(p) => p,
        None => free_port()?,
    };
    let mut urls = format!("ldap://127.0.0.1:{port}/");
    let mut ldaps_url = None;
    let mut tls_config = String::new();
    if let Some(tls) = &config.tls {
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
    let (feature_global, feature_database) = feature_config(root, features)?;
    // slapd.conf(5). Users may authenticate against their userPassword and nobody reads it;
    // the rootdn bypasses these rules. `maxsize`: a sparse 1 GiB map leaves room for
    // benchmarks of 100,000+ entries. `dbnosync`: a throwaway database need not fsync each write (measured: 2,000
    // adds took 9.9 s with fsync, 2.4 s without).
    let text = format!(
        "include {SCHEMA_DIR}/core.schema\n\
         include {SCHEMA_DIR}/cosine.schema\n\
         include {SCHEMA_DIR}/inetorgperson.schema\n\
         modulepath {MODULE_DIR}\n\
         moduleload back_mdb.so\n\
         moduleload argon2.so\n\
         {feature_global}\
         pidfile {pid}\n\
         {tls_config}\
         database mdb\n\
         maxsize 1073741824\n\
         dbnosync\n\
         suffix \"{BASE_DN}\"\n\
         rootdn \"{ADMIN_DN}\"\n\
         rootpw {admin_password}\n\
         directory {db}\n\
         access to attrs=userPassword by self write by anonymous auth by * none\n\
         access to * by * read\n\
         {feature_database}",
        pid = root.join("slapd.pid").display(),
        db = db.display(),
        admin_password = config.admin_password,
    );
    let conf = root.join("slapd.conf");
    write(&conf, &text)?;
    // Only this user reads the rootpw.
    super::chmod("600", &conf);
    let base = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: ucbridge\no: ucbridge lab\n\n\
         dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n"
    );
    let ldif = root.join("base.ldif");
    write(&ldif, &base)?;
    let out = Command::new(slapadd)
        .arg("-f")
        .arg(&conf)
        .arg("-l")
        .arg(&ldif)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ServiceError::Start(format!("cannot run slapadd: {e}")))?;
    if !out.status.success() {
        return Err(ServiceError::Start(format!(
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let log_path = root.join("slapd.log");
    let log =
        std::fs::File::create(&log_path).map_err(ServiceError::io("cannot create slapd.log"))?;
    let log_err = log
        .try_clone()
        .map_err(ServiceError::io("cannot create slapd.log"))?;
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
        .map_err(|e| ServiceError::Start(format!("cannot run slapd: {e}")))?;
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ServiceError::Start(format!(
                "slapd exited with {status}: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            )));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ServiceError::Start(format!(
                "slapd did not listen within {} s: {}",
                READY_WITHIN.as_secs(),
                std::fs::read_to_string(&log_path).unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // Stops slapd if this process dies without running Drop.
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
