//! `ucbridge cuc ...`: Unity Connection users and messages. Lists are written page by page
//! as they arrive (see [`crate::output::ListWriter`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ucbridge_auth::{Credentials, Secret, TlsOptions, TokenEndpoint, TokenSet, TokenSource};
use ucbridge_cuc::{
    CucClient, CucConfig, Folder, Format, MailboxRef, Message, MessageQuery, User, UserField,
    UserFilter, UserQuery, MAX_LIST_RECORDS,
};

use crate::config::CucFileConfig;
use crate::output::{self, outln, ListWriter};

/// Applies the deadlines and size caps set in the `[cuc]` table; deadlines given as flags
/// win.
fn apply_limits(
    file: &CucFileConfig,
    timeout: Option<Duration>,
    audio_timeout: Option<Duration>,
    config: &mut CucConfig,
) -> Result<()> {
    let duration = |name: &str, v: &Option<String>| -> Result<Option<Duration>> {
        v.as_deref()
            .map(|v| {
                humantime::parse_duration(v).with_context(|| format!("bad [cuc] {name} {v:?}"))
            })
            .transpose()
    };
    if let Some(d) = timeout.or(duration("timeout", &file.timeout)?) {
        config.timeout = d;
    }
    if let Some(d) = audio_timeout.or(duration("audio_timeout", &file.audio_timeout)?) {
        config.audio_timeout = d;
    }
    let sizes = [
        (file.max_document_bytes, &mut config.max_document_bytes),
        (file.max_audio_bytes, &mut config.max_audio_bytes),
        (file.max_error_bytes, &mut config.max_error_bytes),
    ];
    for (value, field) in sizes {
        if let Some(v) = value {
            *field = v;
        }
    }
    Ok(())
}

/// Unity Connection connection flags; each falls back to its environment variable, then to
/// the `[cuc]` table. A token (`--token`) wins over a username/password.
#[derive(Args, Debug, Clone)]
pub struct CucConnection {
    /// Unity Connection base URL, e.g. https://cuc.example.com
    #[arg(long, global = true, env = "UCBRIDGE_CUC_URL")]
    url: Option<String>,
    #[arg(long, global = true, env = "UCBRIDGE_CUC_USERNAME")]
    username: Option<String>,
    #[arg(
        long,
        global = true,
        env = "UCBRIDGE_CUC_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    /// SSO access token, sent as `Authorization: Bearer <token>`.
    #[arg(
        long,
        global = true,
        env = "UCBRIDGE_SSO_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Refresh token; with --ids-token-url the access token is renewed when refused.
    #[arg(
        long,
        global = true,
        env = "UCBRIDGE_SSO_REFRESH_TOKEN",
        hide_env_values = true
    )]
    refresh_token: Option<String>,
    /// IdS OAuth token endpoint, e.g. https://ids:8553/ids/v1/oauth/token
    #[arg(long, global = true, env = "UCBRIDGE_IDS_TOKEN_URL")]
    ids_token_url: Option<String>,
    /// Extra CA certificate (PEM) to trust.
    #[arg(long, global = true, env = "UCBRIDGE_CUC_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Do not verify TLS certificates (labs only).
    #[arg(long, global = true)]
    insecure: bool,
    /// Ask CUC for JSON instead of XML (same results; for testing both).
    #[arg(long, global = true)]
    wire_json: bool,
    /// Longest one CUC call may take, reading the answer included (default 60s).
    #[arg(long, global = true, env = "UCBRIDGE_CUC_TIMEOUT")]
    cuc_timeout: Option<humantime::Duration>,
    /// Longest one voice message download may take (default 5m).
    #[arg(long, global = true, env = "UCBRIDGE_CUC_AUDIO_TIMEOUT")]
    cuc_audio_timeout: Option<humantime::Duration>,
}

fn read_password(inline: Option<String>, file: Option<&PathBuf>) -> Result<Option<String>> {
    if let Some(p) = inline {
        return Ok(Some(p));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read password file {}", path.display()))?;
    Ok(Some(text.lines().next().unwrap_or_default().to_owned()))
}

pub fn http(tls: &TlsOptions) -> Result<reqwest::Client> {
    Ok(ucbridge_auth::http_client(
        tls,
        Duration::from_secs(10),
        Duration::from_secs(60),
    )?)
}

/// Credentials from a token (+ optional refresh) or a username/password.
pub fn credentials(
    tls: &TlsOptions,
    token: Option<String>,
    refresh_token: Option<String>,
    ids_token_url: Option<String>,
    username: Option<String>,
    password: Option<String>,
) -> Result<Credentials> {
    if let Some(token) = token {
        let source = match (refresh_token, ids_token_url) {
            (Some(refresh), Some(url)) => TokenSource::new(
                TokenSet {
                    access_token: Secret::new(token),
                    refresh_token: Some(Secret::new(refresh)),
                    expires_in: None,
                    token_type: "Bearer".into(),
                },
                Some(TokenEndpoint::new(url, http(tls)?)),
            ),
            (Some(_), None) => bail!("--refresh-token needs --ids-token-url"),
            _ => TokenSource::fixed(token),
        };
        return Ok(Credentials::bearer(source));
    }
    match (username, password) {
        (Some(u), Some(p)) => Ok(Credentials::basic(u, p)),
        (Some(_), None) => {
            bail!("no password: set UCBRIDGE_CUC_PASSWORD (or --password, or password_file)")
        }
        _ => bail!("no credentials: pass --token (SSO) or --username with UCBRIDGE_CUC_PASSWORD"),
    }
}

impl CucConnection {
    pub fn resolve(self, file: Option<&CucFileConfig>) -> Result<CucClient> {
        let empty = CucFileConfig::default();
        let file = file.unwrap_or(&empty);
        let Some(url) = self.url.or_else(|| file.url.clone()) else {
            bail!("no Unity Connection URL: pass --url, set UCBRIDGE_CUC_URL, or set [cuc] url");
        };
        let tls = TlsOptions {
            ca_file: self.ca_file.or_else(|| file.ca_file.clone()),
            ca_pem: None,
            insecure_skip_tls_verify: self.insecure || file.insecure_skip_tls_verify,
        };
        let password = read_password(
            self.password.or_else(|| file.password.clone()),
            file.password_file.as_ref(),
        )?;
        let creds = credentials(
            &tls,
            self.token,
            self.refresh_token,
            self.ids_token_url.or_else(|| file.ids_token_url.clone()),
            self.username.or_else(|| file.username.clone()),
            password,
        )?;
        let mut config = CucConfig::new(url, creds);
        config.tls = tls;
        if self.wire_json {
            config.format = Format::Json;
        }
        apply_limits(
            file,
            self.cuc_timeout.map(Into::into),
            self.cuc_audio_timeout.map(Into::into),
            &mut config,
        )?;
        Ok(CucClient::new(config)?)
    }
}

#[derive(Subcommand)]
pub enum CucCommand {
    /// CUPI users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// CUMI messages.
    Messages {
        #[command(subcommand)]
        command: MessagesCommand,
    },
    /// The server's vmrest version.
    Version,
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// List users (paged), optionally filtered.
    List {
        /// `FIELD=VALUE` exact match; FIELD is objectid, alias, firstname, lastname,
        /// displayname, email, smtp or extension.
        #[arg(long, value_name = "FIELD=VALUE")]
        filter: Option<String>,
        /// `FIELD=PREFIX` match.
        #[arg(long, value_name = "FIELD=PREFIX", conflicts_with = "filter")]
        starts_with: Option<String>,
        #[arg(long, default_value_t = 500)]
        page_size: u32,
    },
}

#[derive(Subcommand)]
pub enum MessagesCommand {
    /// List a user's messages: USER is an alias (opened as administrator through
    /// `userobjectid`), or `me` for the authenticated user's own mailbox.
    List {
        user: String,
        #[arg(long, default_value = "inbox")]
        folder: Folder,
        /// Only unread messages.
        #[arg(long)]
        unread: bool,
        #[arg(long, default_value_t = 200)]
        page_size: u32,
    },
    /// Download a message's audio (WAV).
    Fetch {
        id: String,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Whose mailbox (alias), when acting as administrator.
        #[arg(long)]
        user: Option<String>,
    },
    /// Mark a message read (or unread with --unread).
    Mark {
        id: String,
        #[arg(long)]
        unread: bool,
        #[arg(long)]
        user: Option<String>,
    },
    /// Delete a message (into `deleted`, or for good with --hard).
    Delete {
        id: String,
        #[arg(long)]
        hard: bool,
        #[arg(long)]
        user: Option<String>,
    },
}

async fn mailbox_of(client: &CucClient, user: Option<&str>) -> Result<MailboxRef> {
    match user {
        None | Some("me") => Ok(MailboxRef::Own),
        Some(alias) => {
            let found = client
                .user_by_alias(alias)
                .await
                .with_context(|| format!("cannot look up user {alias:?}"))?;
            match found {
                Some(u) => Ok(MailboxRef::User(u.object_id)),
                None => bail!("no Unity Connection user with alias {alias:?}"),
            }
        }
    }
}

fn parse_filter(text: &str, starts: bool) -> Result<UserFilter> {
    let Some((field, value)) = text.split_once('=') else {
        bail!("filter {text:?} must be FIELD=VALUE");
    };
    let field: UserField = field.parse()?;
    Ok(if starts {
        UserFilter::starts_with(field, value)
    } else {
        UserFilter::is(field, value)
    })
}

pub async fn run(client: &CucClient, command: CucCommand, json: bool) -> Result<()> {
    match command {
        CucCommand::Version => {
            let v = client.version().await?;
            if json {
                output::json(&v)
            } else {
                outln!("vmrest {}", v.version)
            }
        }
        CucCommand::Users {
            command:
                UsersCommand::List {
                    filter,
                    starts_with,
                    page_size,
                },
        } => {
            let filter = match (filter, starts_with) {
                (Some(f), _) => Some(parse_filter(&f, false)?),
                (None, Some(s)) => Some(parse_filter(&s, true)?),
                (None, None) => None,
            };
            list_users(client, filter, page_size, json).await
        }
        CucCommand::Messages { command } => match command {
            MessagesCommand::List {
                user,
                folder,
                unread,
                page_size,
            } => {
                let mb = mailbox_of(client, Some(&user)).await?;
                let query = MessageQuery {
                    rows_per_page: page_size,
                    read: unread.then_some(false),
                    ..MessageQuery::default()
                };
                list_messages(client, &mb, folder, query, json).await
            }
            MessagesCommand::Fetch { id, output, user } => {
                let mb = mailbox_of(client, user.as_deref()).await?;
                fetch_audio(client, &mb, &id, &output).await
            }
            MessagesCommand::Mark { id, unread, user } => {
                let mb = mailbox_of(client, user.as_deref()).await?;
                client.set_read(&mb, &id, !unread).await?;
                eprintln!("{id} marked {}", if unread { "unread" } else { "read" });
                Ok(())
            }
            MessagesCommand::Delete { id, hard, user } => {
                let mb = mailbox_of(client, user.as_deref()).await?;
                client
                    .delete_message(&mb, &id, hard.then_some(true))
                    .await?;
                eprintln!("{id} deleted");
                Ok(())
            }
        },
    }
}

/// Every user matching `filter`, written page by page (as `CucClient::all_users`,
/// without holding the pages).
async fn list_users(
    client: &CucClient,
    filter: Option<UserFilter>,
    page_size: u32,
    json: bool,
) -> Result<()> {
    let mut query = UserQuery {
        filter,
        rows_per_page: page_size.max(1),
        ..UserQuery::default()
    };
    let mut list = ListWriter::stdout(json, USER_HEADER);
    let mut seen = Paging::default();
    loop {
        let page = client.users(&query).await?;
        for u in &page.users {
            list.push(u, user_row)?;
        }
        list.flush()?;
        if seen.last_page(page.users.len(), page.total)? {
            break;
        }
        query.page_number += 1;
    }
    let n = list.finish()?;
    if !json {
        eprintln!("{n} users");
    }
    Ok(())
}

/// The messages of one folder, written page by page.
async fn list_messages(
    client: &CucClient,
    mb: &MailboxRef,
    folder: Folder,
    mut query: MessageQuery,
    json: bool,
) -> Result<()> {
    let mut list = ListWriter::stdout(json, MESSAGE_HEADER);
    let mut seen = Paging::default();
    loop {
        let page = client.messages(mb, folder, &query).await?;
        for m in &page.messages {
            list.push(m, message_row)?;
        }
        list.flush()?;
        if seen.last_page(page.messages.len(), page.total)? {
            break;
        }
        query.page_number += 1;
    }
    let n = list.finish()?;
    if !json {
        eprintln!("{n} messages");
    }
    Ok(())
}

/// Download a message's audio to `output`: written to a temporary file beside the target,
/// renamed when complete, so a failed download never leaves a truncated WAV under the
/// final name.
async fn fetch_audio(
    client: &CucClient,
    mb: &MailboxRef,
    id: &str,
    output: &std::path::Path,
) -> Result<()> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let mut file = tokio::fs::File::from_std(tmp.reopen()?);
    let info = client.download_audio(mb, id, &mut file).await?;
    drop(file);
    tmp.persist(output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    eprintln!(
        "{} bytes ({}) written to {}",
        info.bytes,
        info.content_type.as_deref().unwrap_or("unknown type"),
        output.display()
    );
    Ok(())
}

/// Where a paged CUC listing stands: the last page is one that adds nothing or reaches the
/// total the server gives; a server that never stops is refused past
/// [`MAX_LIST_RECORDS`], as `CucClient::all_users` does (nothing is held here, but the
/// listing must still end).
#[derive(Default)]
struct Paging {
    seen: usize,
}

impl Paging {
    fn last_page(&mut self, got: usize, total: u64) -> Result<bool> {
        self.seen += got;
        if self.seen > MAX_LIST_RECORDS {
            bail!(
                "the listing goes on past {MAX_LIST_RECORDS} records (the server claims {total})"
            );
        }
        Ok(got == 0 || self.seen as u64 >= total)
    }
}

const USER_HEADER: &[&str] = &["alias", "display name", "extension", "email", "object id"];

fn user_row(u: &User) -> Vec<String> {
    vec![
        u.alias.clone(),
        u.display_name.clone().unwrap_or_default(),
        u.extension.clone().unwrap_or_default(),
        u.email_address.clone().unwrap_or_default(),
        u.object_id.clone(),
    ]
}

const MESSAGE_HEADER: &[&str] = &[
    "id",
    "subject",
    "from",
    "read",
    "priority",
    "seconds",
    "arrived (ms since 1970)",
];

fn message_row(m: &Message) -> Vec<String> {
    vec![
        m.id.clone(),
        m.subject.clone().unwrap_or_default(),
        m.caller_id
            .number
            .clone()
            .or_else(|| m.from.display_name.clone())
            .unwrap_or_default(),
        if m.read { "yes" } else { "no" }.to_owned(),
        m.priority.clone().unwrap_or_default(),
        m.duration_ms
            .map(|d| format!("{:.1}", d as f64 / 1000.0))
            .unwrap_or_default(),
        m.arrival_time_ms.map(|a| a.to_string()).unwrap_or_default(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_the_file_and_flags_win() {
        let file: CucFileConfig = toml::from_str(
            r#"
            timeout = "5s"
            audio_timeout = "10m"
            max_document_bytes = 1048576
            max_audio_bytes = 2097152
            max_error_bytes = 4096
            "#,
        )
        .unwrap();
        let mut config = CucConfig::new("https://cuc", Credentials::basic("a", "b"));
        apply_limits(&file, None, None, &mut config).unwrap();
        assert_eq!(config.timeout, Duration::from_secs(5));
        assert_eq!(config.audio_timeout, Duration::from_secs(600));
        assert_eq!(
            (
                config.max_document_bytes,
                config.max_audio_bytes,
                config.max_error_bytes
            ),
            (1 << 20, 2 << 20, 4096)
        );
        apply_limits(&file, Some(Duration::from_secs(2)), None, &mut config).unwrap();
        assert_eq!(config.timeout, Duration::from_secs(2));
        let bad = CucFileConfig {
            timeout: Some("soon".into()),
            ..CucFileConfig::default()
        };
        let err = apply_limits(&bad, None, None, &mut config).unwrap_err();
        assert!(format!("{err:#}").contains("[cuc] timeout"), "{err:#}");
    }

    #[test]
    fn filters_and_credentials_resolve() {
        let f = parse_filter("extension=10001", false).unwrap();
        assert_eq!(f.to_query().unwrap(), "(DtmfAccessId is 10001)");
        let f = parse_filter("displayname=Jo", true).unwrap();
        assert_eq!(f.to_query().unwrap(), "(displayname startswith Jo)");
        assert!(parse_filter("alias", false).is_err());
        assert!(parse_filter("pin=1", false).is_err());

        let tls = TlsOptions::default();
        let c = credentials(
            &tls,
            Some("tok".into()),
            None,
            None,
            Some("u".into()),
            Some("p".into()),
        )
        .unwrap();
        assert_eq!(c.scheme(), "Bearer", "a token wins over a password");
        let c = credentials(&tls, None, None, None, Some("u".into()), Some("p".into())).unwrap();
        assert_eq!(c.username(), Some("u"));
        assert!(credentials(&tls, Some("t".into()), Some("r".into()), None, None, None).is_err());
        assert!(credentials(&tls, None, None, None, Some("u".into()), None).is_err());
        assert!(credentials(&tls, None, None, None, None, None).is_err());
    }

    #[test]
    fn config_file_takes_cuc_and_sso_tables() {
        let file: crate::config::FileConfig = toml::from_str(
            "[cuc]\nurl = \"https://cuc\"\nusername = \"a\"\n[sso]\nids_token_url = \"https://ids/t\"\n",
        )
        .unwrap();
        assert_eq!(file.cuc.unwrap().url.as_deref(), Some("https://cuc"));
        assert_eq!(
            file.sso.unwrap().ids_token_url.as_deref(),
            Some("https://ids/t")
        );
    }
}
