//! A throwaway Dovecot IMAP server for tests (Debian `dovecot-imapd`).
//!
//! [`Dovecot::start`] writes a config into a temp dir — its own `base_dir`, `state_dir` and
//! logs, so it never touches a system Dovecot — with passwd-file users, one master user
//! (`user*master` logins, see docs/voicemail.md) and maildirs under the
//! temp dir, then runs `dovecot -F` on a free 127.0.0.1 port. Dropping the handle stops it.
//! A missing `dovecot` binary is a loud skip, or a failure under `CI=true`.
//!
//! [`Dovecot::builder`] adds opt-in features: TLS, and Dovecot's push-notification plugin
//! with a Lua script ([`DovecotBuilder::lua_push`], e.g. ucbridge's
//! `contrib/dovecot/ucbridge-push.lua`).
//!
//! As root, Dovecot drops privileges: mail processes run as `nobody`, so the mail
//! directory belongs to `nobody` and the temp dir is made traversable.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::skip_or_fail;

/// The master user every test Dovecot has.
pub const MASTER_USER: &str = "ucbridge-master";
/// Its password (a throwaway server on 127.0.0.1).
pub const MASTER_PASSWORD: &str = "master-secret";
/// Password of users added without one.
pub const USER_PASSWORD: &str = "user-secret";

/// A running test Dovecot; stopped on drop.
pub struct Dovecot {
    dir: PathBuf,
    port: u16,
    imaps_port: Option<u16>,
    users_file: PathBuf,
    pid_file: PathBuf,
}

/// Dovecot's push-notification plugin with the Lua driver (Dovecot 2.3+): the script and
/// the `plugin {}` settings it reads with `user:plugin_getenv`.
#[derive(Debug, Clone)]
pub struct LuaPush {
    pub script: PathBuf,
    pub settings: Vec<(String, String)>,
}

/// Dovecot's checkpassword passdb (built into Dovecot 2.3): `program` with `args` runs for
/// every login that is not the master user's, through a wrapper script that exports `env`
/// first; the passwd-file users are then not consulted.
#[derive(Debug, Clone)]
pub struct Checkpassword {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Options of a test Dovecot ([`Dovecot::builder`]); nothing beyond the plain server
/// unless asked for.
pub struct DovecotBuilder<'a> {
    users: Vec<String>,
    tls: Option<&'a crate::tls::ServerCertificate>,
    lua_push: Option<LuaPush>,
    checkpassword: Option<Checkpassword>,
}

impl<'a> DovecotBuilder<'a> {
    /// Also offer STARTTLS on the IMAP port and implicit TLS on a second port.
    pub fn tls(mut self, cert: Option<&'a crate::tls::ServerCertificate>) -> Self {
        self.tls = cert;
        self
    }

    /// Load the push-notification plugin with this Lua script (copied into the server's
    /// directory) and these plugin settings.
    pub fn lua_push(mut self, push: Option<LuaPush>) -> Self {
        self.lua_push = push;
        self
    }

    /// Check users' passwords with a checkpassword program instead of the passwd-file.
    pub fn checkpassword(mut self, checkpassword: Option<Checkpassword>) -> Self {
        self.checkpassword = checkpassword;
        self
    }

    /// Start it; `None` = skip the test (see the module docs).
    pub fn start(self) -> Option<Dovecot> {
        let Some(binary) = dovecot_binary() else {
            skip_or_fail("dovecot is not installed (Debian package dovecot-imapd)");
            return None;
        };
        match Dovecot::start_with(&binary, &self) {
            Ok(d) => Some(d),
            Err(why) => {
                skip_or_fail(&format!("cannot start a test Dovecot: {why}"));
                None
            }
        }
    }
}

fn dovecot_binary() -> Option<PathBuf> {
    for candidate in ["dovecot", "/usr/sbin/dovecot"] {
        let ok = Command::new(candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Some(PathBuf::from(candidate));
        }
    }
    None
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The push-notification plugin's part of the config (empty without `push`): the script
/// copied next to the config (readable by the mail processes), the plugins — mail_lua
/// provides the Lua runtime the push driver needs; without it the driver fails to load
/// with "undefined symbol: dlua_dovecot_register" — and the plugin settings.
fn push_config(dir: &Path, push: Option<&LuaPush>) -> Result<String, String> {
    let Some(push) = push else {
        return Ok(String::new());
    };
    let script = dir.join("push.lua");
    std::fs::copy(&push.script, &script)
        .map_err(|e| format!("cannot copy {}: {e}", push.script.display()))?;
    let _ = Command::new("chmod").arg("644").arg(&script).status();
    let mut text = format!(
        "mail_plugins = $mail_plugins notify push_notification mail_lua push_notification_lua\n\
         plugin {{\n  push_notification_driver = lua:file={}\n",
        script.display()
    );
    for (key, value) in &push.settings {
        if key.contains(char::is_whitespace) || value.contains(['\n', '\r']) {
            return Err(format!("bad push setting {key:?}"));
        }
        text.push_str(&format!("  {key} = {value}\n"));
    }
    text.push_str("}\n");
    Ok(text)
}

/// The users' passdb: the passwd-file, or a checkpassword wrapper script written to `dir`.
fn users_passdb(
    dir: &Path,
    users_file: &Path,
    c: Option<&Checkpassword>,
) -> Result<String, String> {
    let Some(c) = c else {
        return Ok(format!(
            "passdb {{\n  driver = passwd-file\n  args = {}\n}}\n",
            users_file.display()
        ));
    };
    let quote = |s: &str| {
        if s.contains('\'') || s.contains(['\n', '\r']) {
            Err(format!("checkpassword value {s:?} cannot be quoted"))
        } else {
            Ok(format!("'{s}'"))
        }
    };
    let mut script = String::from("#!/bin/sh\n");
    for (key, value) in &c.env {
        if !key
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            return Err(format!("bad environment name {key:?}"));
        }
        script.push_str(&format!("export {key}={}\n", quote(value)?));
    }
    script.push_str(&format!(
        "exec {}",
        quote(&c.program.display().to_string())?
    ));
    for arg in &c.args {
        script.push_str(&format!(" {}", quote(arg)?));
    }
    script.push_str(" \"$@\"\n");
    let path = dir.join("checkpassword.sh");
    std::fs::write(&path, script).map_err(|e| e.to_string())?;
    let _ = Command::new("chmod").arg("755").arg(&path).status();
    Ok(format!(
        "passdb {{\n  driver = checkpassword\n  args = {}\n}}\n",
        path.display()
    ))
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

impl Dovecot {
    /// Start a Dovecot with `users` (each with [`USER_PASSWORD`]). `None` = skip the test.
    pub fn start(users: &[&str]) -> Option<Dovecot> {
        Self::start_with_tls(users, None)
    }

    /// Like [`Dovecot::start`]; with a certificate it also offers STARTTLS on the IMAP
    /// port and implicit TLS on a second port ([`Dovecot::imaps_port`]).
    pub fn start_with_tls(
        users: &[&str],
        tls: Option<&crate::tls::ServerCertificate>,
    ) -> Option<Dovecot> {
        Self::builder(users).tls(tls).start()
    }

    /// A Dovecot with options ([`DovecotBuilder`]); `start()` runs it.
    pub fn builder<'a>(users: &[&str]) -> DovecotBuilder<'a> {
        DovecotBuilder {
            users: users.iter().map(|u| (*u).to_owned()).collect(),
            tls: None,
            lua_push: None,
            checkpassword: None,
        }
    }

    fn start_with(binary: &Path, options: &DovecotBuilder<'_>) -> Result<Dovecot, String> {
        let (users, tls) = (&options.users, options.tls);
        let dir = tempfile::Builder::new()
            .prefix("ucbridge-dovecot-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let as_root = command_output("id", &["-u"]).as_deref() == Some("0");
        let (mail_user, mail_group) = if as_root {
            ("nobody".to_owned(), "nogroup".to_owned())
        } else {
            (
                command_output("id", &["-un"]).ok_or("cannot read the user name")?,
                command_output("id", &["-gn"]).ok_or("cannot read the group name")?,
            )
        };
        for sub in ["base", "state", "mail"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
        }
        // The auth and mail processes (as mail_user) must traverse the dir and read the
        // passwd-files.
        let _ = Command::new("chmod").arg("755").arg(&dir).status();
        if as_root {
            let _ = Command::new("chown")
                .arg(format!("{mail_user}:{mail_group}"))
                .arg(dir.join("mail"))
                .status();
        }
        let port = free_port()?;
        let users_file = dir.join("users");
        let masters_file = dir.join("master-users");
        let mut users_text = String::new();
        for u in users {
            users_text.push_str(&format!("{u}:{{PLAIN}}{USER_PASSWORD}::::::\n"));
        }
        std::fs::write(&users_file, users_text).map_err(|e| e.to_string())?;
        std::fs::write(
            &masters_file,
            format!("{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}::::::\n"),
        )
        .map_err(|e| e.to_string())?;
        let d = dir.display();
        let (ssl, imaps_port) = match tls {
            None => ("ssl = no".to_owned(), None),
            Some(cert) => {
                std::fs::write(dir.join("server.pem"), &cert.cert_pem)
                    .map_err(|e| e.to_string())?;
                std::fs::write(dir.join("server.key"), &cert.key_pem).map_err(|e| e.to_string())?;
                (
                    format!("ssl = yes\nssl_cert = <{d}/server.pem\nssl_key = <{d}/server.key"),
                    Some(free_port()?),
                )
            }
        };
        let push = push_config(&dir, options.lua_push.as_ref())?;
        let users_passdb = users_passdb(&dir, &users_file, options.checkpassword.as_ref())?;
        let imaps_listener = match imaps_port {
            Some(p) => format!("address = 127.0.0.1\n    port = {p}"),
            None => "port = 0".to_owned(),
        };
        let config = format!(
            r#"# Throwaway Dovecot for ucbridge tests.
base_dir = {d}/base
state_dir = {d}/state
instance_name = ucbridge-test-{port}
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
# Plain LOGIN over loopback only (the test server has no TLS).
disable_plaintext_auth = no
auth_mechanisms = plain login
# "user*master" logs in as user with the master's password (Dovecot master users).
auth_master_user_separator = *
mail_location = maildir:{d}/mail/%u
mail_uid = {mail_user}
mail_gid = {mail_group}
first_valid_uid = 1
first_valid_gid = 1
default_internal_user = {mail_user}
default_internal_group = {mail_group}
default_login_user = {mail_user}
mail_fsync = never
default_process_limit = 1100
default_client_limit = 4000
protocol imap {{
  mail_max_userip_connections = 50
}}
{push}
service imap-login {{
  chroot =
  # High-performance mode: login processes serve many clients.
  service_count = 0
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    {imaps_listener}
  }}
}}
service anvil {{
  chroot =
}}
passdb {{
  driver = passwd-file
  args = {masters}
  master = yes
  pass = yes
}}
{users_passdb}userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={d}/mail/%u
}}
"#,
            masters = masters_file.display(),
        );
        let config_path = dir.join("dovecot.conf");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        for f in [&users_file, &masters_file, &config_path] {
            let _ = Command::new("chmod").arg("644").arg(f).status();
        }
        // A watchdog shell stops Dovecot once this test process is gone, even if it was
        // killed before Drop could run.
        let script = format!(
            "'{bin}' -F -c '{conf}' >'{d}/stdout.log' 2>&1 & dc=$!; \
             while [ -d /proc/{parent} ] && [ -d /proc/$dc ]; do sleep 1; done; \
             kill $dc 2>/dev/null; wait $dc; rm -rf '{d}'",
            bin = binary.display(),
            conf = config_path.display(),
            parent = std::process::id(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run dovecot: {e}"))?;
        let dovecot = Dovecot {
            pid_file: dir.join("base").join("master.pid"),
            dir,
            port,
            imaps_port,
            users_file,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut greeting = String::new();
                if BufReader::new(stream).read_line(&mut greeting).is_ok()
                    && greeting.starts_with("* OK")
                {
                    return Ok(dovecot);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Dovecot did not answer on 127.0.0.1:{port}; log: {} {}",
                    std::fs::read_to_string(dovecot.dir.join("dovecot.log")).unwrap_or_default(),
                    std::fs::read_to_string(dovecot.dir.join("stdout.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The implicit-TLS port, when started with a certificate.
    pub fn imaps_port(&self) -> Option<u16> {
        self.imaps_port
    }

    /// The folder holding each user's maildir (`<dir>/<user>`).
    pub fn mail_dir(&self) -> PathBuf {
        self.dir.join("mail")
    }

    /// Dovecot's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }

    /// Add users (password [`USER_PASSWORD`]); passwd-file is re-read when it changes.
    pub fn add_users(&self, users: &[&str]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.users_file)?;
        for u in users {
            writeln!(f, "{u}:{{PLAIN}}{USER_PASSWORD}::::::")?;
        }
        Ok(())
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        else {
            return;
        };
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // The watchdog removes the directory once Dovecot is gone.
    }
}
