//! `ucbridge auth`: end users' sign-in with CUCM credentials.
//!
//! - `check USER`: one sign-in through the same authenticator the server uses (synced
//!   users from the database, CUCM from `[axl]`, `[signin]` settings), the password read
//!   from standard input (never from the command line); the exit code says the result.
//! - `checkpassword REPLY...`: Dovecot's checkpassword passdb protocol, answered by asking a
//!   running `ucbridge serve` (`POST /api/v1/passdb`), so every login shares the server's
//!   cache and throttling (see `contrib/dovecot/`).

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use ucbridge_axl::AxlClient;
use ucbridge_signin::{Authenticator, CucmUnavailable, SignInAttempt, SignInError};
use ucbridge_store::Store;

use crate::config::{self, AxlConnection};
use crate::output::outln;

/// Exit codes of `auth check` (0 = signed in; 1 = ucbridge could not run the check).
pub const EXIT_REJECTED: u8 = 3;
pub const EXIT_THROTTLED: u8 = 4;
pub const EXIT_UNAVAILABLE: u8 = 5;
pub const EXIT_INVALID: u8 = 6;

/// Exit codes of the checkpassword protocol (qmail's, as Dovecot reads them).
const CHECKPASSWORD_FAILED: u8 = 1;
const CHECKPASSWORD_TEMPORARY: u8 = 111;

/// Longest input read from stdin or fd 3 (bytes); more is refused unread.
const MAX_INPUT: u64 = 4096;

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Check USER's CUCM password (read from stdin, first line). Exit codes: 0 signed in,
    /// 3 refused (wrong, locked, expired, unknown or disabled: one answer; the reason is
    /// in the audit log), 4 throttled, 5 CUCM unreachable, 6 invalid input (empty, too
    /// long, binary), 1 ucbridge could not run the check (configuration, database).
    Check {
        /// Login name: username, CUCM userid, mail address or extension ([signin] id_sources).
        user: String,
        /// The end user's address, for throttling and the audit log.
        #[arg(long)]
        client: Option<IpAddr>,
    },
    /// Dovecot checkpassword passdb: reads "user\0password\0" on fd 3, asks the ucbridge
    /// server, and on success runs REPLY with USER set to the ucbridge username. Exit 1 =
    /// refused, 111 = temporary failure (server, CUCM or throttling).
    Checkpassword {
        /// The ucbridge server, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "UCBRIDGE_PASSDB_SERVER")]
        server: String,
        /// File whose first line is the passdb token ([signin] passdb_token_file).
        #[arg(long, env = "UCBRIDGE_PASSDB_TOKEN_FILE")]
        token_file: PathBuf,
        /// Extra CA (PEM) to trust for an HTTPS server.
        #[arg(long, env = "UCBRIDGE_PASSDB_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// Seconds to wait for the server.
        #[arg(long, default_value_t = 15)]
        timeout: u64,
        /// Dovecot's checkpassword-reply and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        reply: Vec<std::ffi::OsString>,
    },
}

/// A command's outcome that is an exit code, not an error message.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// The exit code an `auth` command ended with, if it ended that way.
pub fn exit_code(error: &anyhow::Error) -> Option<u8> {
    error.downcast_ref::<Exit>().map(|e| e.0)
}

pub async fn run(
    command: AuthCommand,
    connection: AxlConnection,
    database_url: Option<String>,
    config_file: Option<&Path>,
) -> Result<()> {
    match command {
        AuthCommand::Check { user, client } => {
            let file = config::load(config_file)?;
            let settings = file
                .signin
                .clone()
                .unwrap_or_default()
                .to_config()
                .context("bad [signin]")?;
            let url = config::database_url(database_url, &file);
            let store = Store::open(&url)
                .await
                .with_context(|| format!("cannot open the database {url}"))?;
            let axl = connection.resolve(file.axl.as_ref())?;
            let cucm = move || -> Pin<Box<dyn std::future::Future<Output = _> + Send>> {
                let axl = axl.clone();
                Box::pin(async move {
                    AxlClient::connect(axl)
                        .await
                        .map_err(|e| CucmUnavailable(e.to_string()))
                })
            };
            let auth = Authenticator::new(settings, Arc::new(cucm), store);
            check(&auth, &user, client).await
        }
        AuthCommand::Checkpassword {
            server,
            token_file,
            ca_file,
            timeout,
            reply,
        } => {
            let target = Passdb {
                server,
                token_file,
                ca_file,
                timeout: Duration::from_secs(timeout),
            };
            checkpassword(&target, &reply).await
        }
    }
}

async fn check(auth: &Authenticator, user: &str, client: Option<IpAddr>) -> Result<()> {
    let Some(password) = read_password(std::io::stdin().lock())? else {
        eprintln!("invalid input: the password is too long or not UTF-8");
        return Err(Exit(EXIT_INVALID).into());
    };
    let attempt = SignInAttempt {
        login: user,
        password: &password,
        client,
        via: "cli",
    };
    match auth.authenticate(attempt).await {
        Ok(who) => {
            outln!(
                "signed in: {} (CUCM userid {}{})",
                who.username,
                who.cucm_userid,
                if who.from_cache { ", cached" } else { "" }
            )?;
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            let code = match e {
                SignInError::Rejected { .. } => EXIT_REJECTED,
                SignInError::Throttled { .. } => EXIT_THROTTLED,
                SignInError::Unavailable => EXIT_UNAVAILABLE,
                SignInError::Invalid(_) => EXIT_INVALID,
                SignInError::Internal(_) => 1,
            };
            Err(Exit(code).into())
        }
    }
}

/// The first line of `input` (without its line end); `None` when over [`MAX_INPUT`] or
/// not UTF-8.
fn read_password(input: impl Read) -> Result<Option<String>> {
    let mut bytes = Vec::new();
    input
        .take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .context("cannot read the password from stdin")?;
    if bytes.len() as u64 > MAX_INPUT {
        return Ok(None);
    }
    let Ok(text) = String::from_utf8(bytes) else {
        return Ok(None);
    };
    let line = text.split('\n').next().unwrap_or_default();
    Ok(Some(line.strip_suffix('\r').unwrap_or(line).to_owned()))
}

struct Passdb {
    server: String,
    token_file: PathBuf,
    ca_file: Option<PathBuf>,
    timeout: Duration,
}

/// The checkpassword protocol: fd 3 in, exec REPLY on success, exit 1 or 111 otherwise.
async fn checkpassword(target: &Passdb, reply: &[std::ffi::OsString]) -> Result<()> {
    let Some((user, password)) = read_fd3()? else {
        return Err(Exit(CHECKPASSWORD_FAILED).into());
    };
    let body = serde_json::json!({
        "user": user,
        "password": password,
        "remote_ip": std::env::var("TCPREMOTEIP").ok(),
        "service": std::env::var("SERVICE").ok(),
    });
    let answer = match ask(target, &body).await {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("ucbridge passdb: {e:#}");
            return Err(Exit(CHECKPASSWORD_TEMPORARY).into());
        }
    };
    match answer {
        Answer::SignedIn(username) => exec_reply(reply, &username),
        Answer::Refused => Err(Exit(CHECKPASSWORD_FAILED).into()),
        Answer::Temporary(status) => {
            eprintln!("ucbridge passdb: the server answered {status}");
            Err(Exit(CHECKPASSWORD_TEMPORARY).into())
        }
    }
}

/// "user\0password\0..." from fd 3 (Dovecot's side of the pipe).
fn read_fd3() -> Result<Option<(String, String)>> {
    let fd3 = std::fs::File::open("/dev/fd/3").context("checkpassword: fd 3 is not open")?;
    let mut bytes = Vec::new();
    fd3.take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .context("checkpassword: cannot read fd 3")?;
    if bytes.len() as u64 > MAX_INPUT {
        return Ok(None);
    }
    let mut parts = bytes.split(|b| *b == 0);
    let (Some(user), Some(password)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    match (
        String::from_utf8(user.to_vec()),
        String::from_utf8(password.to_vec()),
    ) {
        (Ok(u), Ok(p)) if !u.is_empty() && !p.is_empty() => Ok(Some((u, p))),
        _ => Ok(None),
    }
}

enum Answer {
    SignedIn(String),
    Refused,
    Temporary(reqwest::StatusCode),
}

async fn ask(target: &Passdb, body: &serde_json::Value) -> Result<Answer> {
    let token = std::fs::read_to_string(&target.token_file)
        .with_context(|| format!("cannot read {}", target.token_file.display()))?;
    let token = token.lines().next().unwrap_or_default().trim().to_owned();
    let mut client = reqwest::Client::builder()
        .timeout(target.timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &target.ca_file {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        client = client.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let url = format!("{}/api/v1/passdb", target.server.trim_end_matches('/'));
    let response = client
        .build()?
        .post(&url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    Ok(match status.as_u16() {
        200 => {
            let v = read_small_json(response).await?;
            match v["user"].as_str() {
                Some(u) if !u.is_empty() => Answer::SignedIn(u.to_owned()),
                _ => Answer::Temporary(status),
            }
        }
        // Refused, and bad input (a name or password ucbridge cannot check).
        400 | 403 => Answer::Refused,
        _ => Answer::Temporary(status),
    })
}

/// A JSON answer of at most [`MAX_INPUT`] bytes.
async fn read_small_json(mut response: reqwest::Response) -> Result<serde_json::Value> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.context("passdb answer")? {
        body.extend_from_slice(&chunk);
        anyhow::ensure!(
            body.len() as u64 <= MAX_INPUT,
            "the passdb answer is too large"
        );
    }
    serde_json::from_slice(&body).context("bad passdb answer")
}

/// Run Dovecot's reply program with `USER` = the ucbridge username (the mailbox's name,
/// whatever name the user typed).
fn exec_reply(reply: &[std::ffi::OsString], username: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = reply.split_first() else {
        return Err(Exit(CHECKPASSWORD_TEMPORARY).into());
    };
    let error = std::process::Command::new(program)
        .args(args)
        .env("USER", username)
        .exec();
    eprintln!(
        "ucbridge passdb: cannot run {}: {error}",
        program.to_string_lossy()
    );
    Err(Exit(CHECKPASSWORD_TEMPORARY).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_first_line_and_bounded() {
        let read = |s: &[u8]| read_password(s).unwrap();
        assert_eq!(read(b"secret\n").as_deref(), Some("secret"));
        assert_eq!(read(b"secret\r\nmore").as_deref(), Some("secret"));
        assert_eq!(read(b"").as_deref(), Some(""));
        assert_eq!(read(&[0xff, 0xfe]), None);
        assert_eq!(read(&vec![b'x'; 5000]), None);
    }
}
