//! A throwaway Dovecot IMAP server (Debian `dovecot-imapd`).
//!
//! [`Dovecot::start`] writes a config into a fresh directory — its own `base_dir`,
//! `state_dir` and logs, so it never touches a system Dovecot — with passwd-file users, one
//! master user (`user*master` logins, see docs/voicemail.md) and maildirs under that
//! directory, then runs `dovecot -F` on 127.0.0.1. Dropping the handle stops it; the
//! watchdog then removes the directory.
//!
//! Opt-in features ([`DovecotConfig`]): TLS, Dovecot's push-notification plugin with a Lua
//! script ([`LuaPush`], e.g. ucbridge's `contrib/dovecot/ucbridge-push.lua`), and the
//! checkpassword passdb ([`Checkpassword`], e.g. `ucbridge auth checkpassword`).
//!
//! As root, Dovecot drops privileges: mail processes run as `nobody`, so the mail
//! directory belongs to `nobody` and the directory is made traversable.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{chmod, command_output, find_program, free_port, ServerCertificate, ServiceError};

/// How long Dovecot may take to greet on its port.
const READY_WITHIN: Duration = Duration::from_secs(15);

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

/// What to start.
#[derive(Clone)]
pub struct DovecotConfig {
    /// passwd-file users, each with `user_password`.
    pub users: Vec<String>,
    pub user_password: String,
    /// The master user (`user*master` logs in as `user`).
    pub master_user: String,
    pub master_password: String,
    /// Also offer STARTTLS on the IMAP port and implicit TLS on a second port.
    pub tls: Option<ServerCertificate>,
    pub lua_push: Option<LuaPush>,
    pub checkpassword: Option<Checkpassword>,
    /// Every login name is a mailbox for the master user, not only `users` (a static
    /// passdb with an unguessable password answers the master login's user lookup);
    /// users' own logins still need `users` or the checkpassword passdb.
    pub any_user: bool,
    /// The IMAP port; `None` = one the OS assigns.
    pub port: Option<u16>,
    /// Where the server's own directory is created; `None` = the system temp dir.
    pub parent_dir: Option<PathBuf>,
}

impl std::fmt::Debug for DovecotConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DovecotConfig")
            .field("users", &self.users.len())
            .field("master_user", &self.master_user)
            .field("tls", &self.tls.is_some())
            .field("lua_push", &self.lua_push.is_some())
            .field("checkpassword", &self.checkpassword.is_some())
            .field("any_user", &self.any_user)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A running Dovecot; stopped on drop.
pub struct Dovecot {
    dir: PathBuf,
    port: u16,
    imaps_port: Option<u16>,
    users_file: PathBuf,
    user_password: String,
    pid_file: PathBuf,
}

impl std::fmt::Debug for Dovecot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dovecot")
            .field("port", &self.port)
            .field("imaps_port", &self.imaps_port)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The installed `dovecot` binary, if any.
pub fn binary() -> Option<PathBuf> {
    find_program("dovecot")
}

/// The installed Dovecot's version (`2.3.19.1`), if it runs.
pub fn version() -> Option<String> {
    let bin = binary()?;
    let text = command_output(&bin.display().to_string(), &["--version"])?;
    text.split_whitespace().next().map(str::to_owned)
}

/// A value written into passwd-file or config lines: no separators, no line breaks.
fn plain_value(what: &str, value: &str) -> Result<(), ServiceError> {
    if value.is_empty()
        || value.contains([':', '\n', '\r', '\0'])
        || value.contains(char::is_whitespace)
    {
        return Err(ServiceError::BadSetting(format!(
            "{what} must be non-empty without ':', spaces or line breaks"
        )));
    }
    Ok(())
}

/// The push-notification plugin's part of the config (empty without `push`): the script
/// copied next to the config (readable by the mail processes), the plugins — mail_lua
/// provides the Lua runtime the push driver needs; without it the driver fails to load
/// with "undefined symbol: dlua_dovecot_register" — and the plugin settings.
fn push_config(dir: &Path, push: Option<&LuaPush>) -> Result<String, ServiceError> {
    let Some(push) = push else {
        return Ok(String::new());
    };
    let script = dir.join("push.lua");
    std::fs::copy(&push.script, &script).map_err(ServiceError::io(format!(
        "cannot copy {}",
        push.script.display()
    )))?;
    chmod("644", &script);
    let mut text = format!(
        "mail_plugins = $mail_plugins notify push_notification mail_lua push_notification_lua\n\
         plugin {{\n  push_notification_driver = lua:file={}\n",
        script.display()
    );
    for (key, value) in &push.settings {
        if key.contains(char::is_whitespace) || value.contains(['\n', '\r']) {
            return Err(ServiceError::BadSetting(format!("push setting {key:?}")));
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
) -> Result<String, ServiceError> {
    let Some(c) = c else {
        return Ok(format!(
            "passdb {{\n  driver = passwd-file\n  args = {}\n}}\n",
            users_file.display()
        ));
    };
    let quote = |s: &str| {
        if s.contains('\'') || s.contains(['\n', '\r']) {
            Err(ServiceError::BadSetting(
                "a checkpassword value cannot be quoted".into(),
            ))
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
            return Err(ServiceError::BadSetting(format!(
                "environment name {key:?}"
            )));
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
    std::fs::write(&path, script).map_err(ServiceError::io("cannot write checkpassword.sh"))?;
    chmod("755", &path);
    Ok(format!(
        "passdb {{\n  driver = checkpassword\n  args = {}\n}}\n",
        path.display()
    ))
}

/// 32 random bytes from the OS, hex.
fn random_password() -> Result<String, ServiceError> {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| ServiceError::Start(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write(path: &Path, text: &str) -> Result<(), ServiceError> {
    std::fs::write(path, text).map_err(ServiceError::io(format!("cannot write {}", path.display())))
}

impl Dovecot {
    /// Start a Dovecot (see the module docs). Blocks until it greets, at most 15 s.
    pub fn start(config: &DovecotConfig) -> Result<Dovecot, ServiceError> {
        let binary = binary().ok_or(ServiceError::NotInstalled {
            what: "dovecot".into(),
            hint: "apt-get install dovecot-imapd",
        })?;
        plain_value("the master user", &config.master_user)?;
        plain_value("the master password", &config.master_password)?;
        plain_value("the user password", &config.user_password)?;
        for u in &config.users {
            plain_value("a user name", u)?;
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix("ucbridge-dovecot-");
        let dir = match &config.parent_dir {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .map_err(ServiceError::io("cannot create Dovecot's directory"))?
        .keep();
        let started = start_in(&binary, &dir, config);
        if started.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
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

    /// Add passwd-file users (with the configured user password); Dovecot re-reads the
    /// file when it changes.
    pub fn add_users(&self, users: &[&str]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.users_file)?;
        for u in users {
            writeln!(f, "{u}:{{PLAIN}}{}::::::", self.user_password)?;
        }
        Ok(())
    }
}

fn running_as_root() -> bool {
    command_output("id", &["-u"]).as_deref() == Some("0")
}

/// The account Dovecot's auth and mail processes run as: `nobody` when started as root,
/// else this process's own user.
fn mail_account(as_root: bool) -> Result<(String, String), ServiceError> {
    if as_root {
        return Ok(("nobody".to_owned(), "nogroup".to_owned()));
    }
    Ok((
        command_output("id", &["-un"])
            .ok_or_else(|| ServiceError::Start("cannot read the user name".into()))?,
        command_output("id", &["-gn"])
            .ok_or_else(|| ServiceError::Start("cannot read the group name".into()))?,
    ))
}

/// Make a file Dovecot's processes must read (e.g. the token a checkpassword program
/// reads) theirs: owned by `nobody` when running as root (Dovecot's auth process runs as
/// its internal user), untouched otherwise (they run as this user). Give it a file of
/// its own, not one the configuration names.
pub fn hand_to_dovecot(path: &Path) -> Result<(), ServiceError> {
    if !running_as_root() {
        return Ok(());
    }
    let (user, group) = mail_account(true)?;
    let ok = Command::new("chown")
        .arg(format!("{user}:{group}"))
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Start(format!(
            "cannot hand {} to {user}",
            path.display()
        )))
    }
}

fn start_in(binary: &Path, dir: &Path, config: &DovecotConfig) -> Result<Dovecot, ServiceError> {
    let as_root = running_as_root();
    let (mail_user, mail_group) = mail_account(as_root)?;
    for sub in ["base", "state", "mail"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(ServiceError::io(format!("cannot create {sub}")))?;
    }
    // The auth and mail processes (as mail_user) must traverse the dir and read the
    // passwd-files.
    chmod("755", dir);
    if as_root {
        let _ = Command::new("chown")
            .arg(format!("{mail_user}:{mail_group}"))
            .arg(dir.join("mail"))
            .status();
    }
    let port = match config.port {
        Some(p) => p,
        None => free_port()?,
    };
    let users_file = dir.join("users");
    let masters_file = dir.join("master-users");
    let mut users_text = String::new();
    for u in &config.users {
        users_text.push_str(&format!("{u}:{{PLAIN}}{}::::::\n", config.user_password));
    }
    write(&users_file, &users_text)?;
    write(
        &masters_file,
        &format!(
            "{}:{{PLAIN}}{}::::::\n",
            config.master_user, config.master_password
        ),
    )?;
    let d = dir.display();
    let (ssl, imaps_port) = match &config.tls {
        None => ("ssl = no".to_owned(), None),
        Some(cert) => {
            write(&dir.join("server.pem"), &cert.cert_pem)?;
            write(&dir.join("server.key"), &cert.key_pem)?;
            (
                format!("ssl = yes\nssl_cert = <{d}/server.pem\nssl_key = <{d}/server.key"),
                Some(free_port()?),
            )
        }
    };
    let push = push_config(dir, config.lua_push.as_ref())?;
    let mut users_passdb = users_passdb(dir, &users_file, config.checkpassword.as_ref())?;
    if config.any_user {
        // First, so a master login's lookup finds every user; a user's own password fails
        // here and Dovecot goes on to the next passdb (result_failure = continue).
        users_passdb = format!(
            "passdb {{\n  driver = static\n  args = password={}\n}}\n{users_passdb}",
            random_password()?
        );
    }
    let imaps_listener = match imaps_port {
        Some(p) => format!("address = 127.0.0.1\n    port = {p}"),
        None => "port = 0".to_owned(),
    };
    let text = format!(
        r#"# Throwaway Dovecot started by ucbridge (lab or tests).
base_dir = {d}/base
state_dir = {d}/state
instance_name = ucbridge-lab-{port}
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
# Plain LOGIN over loopback only.
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
    write(&config_path, &text)?;
    for f in [&users_file, &masters_file, &config_path] {
        chmod("644", f);
    }
    // A watchdog shell stops Dovecot once this process is gone, even if it was killed
    // before Drop could run, and removes the directory once Dovecot has stopped.
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
        .map_err(|e| ServiceError::Start(format!("cannot run dovecot: {e}")))?;
    let dovecot = Dovecot {
        pid_file: dir.join("base").join("master.pid"),
        dir: dir.to_owned(),
        port,
        imaps_port,
        users_file,
        user_password: config.user_password.clone(),
    };
    let deadline = Instant::now() + READY_WITHIN;
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
            let why = format!(
                "Dovecot did not answer on 127.0.0.1:{port}; log: {} {}",
                std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default(),
                std::fs::read_to_string(dir.join("stdout.log")).unwrap_or_default()
            );
            drop(dovecot);
            return Err(ServiceError::Start(why));
        }
        std::thread::sleep(Duration::from_millis(50));
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
