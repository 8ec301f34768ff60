//! The HTTP side: one reqwest client, auth with one refresh-and-retry after a 401, error
//! bodies and HTML answers turned into typed errors.

use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use ucbridge_auth::{Credentials, TlsOptions};

use crate::limits::{self, BodyKind, SizeLimits};
use crate::model::{
    read_error, FolderInfo, MailboxInfo, Message, MessagePage, User, UserPage, VersionInfo,
};
use crate::node::{self, Node};
use crate::query::{MessageQuery, UserQuery};
use crate::CucError;

/// Wire format asked for with `Accept` (XML is CUC's default, notes §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Xml,
    Json,
}

impl Format {
    fn mime(self) -> &'static str {
        match self {
            Format::Xml => "application/xml",
            Format::Json => "application/json",
        }
    }
}

/// Where and how to reach one Unity Connection server.
#[derive(Debug, Clone)]
pub struct CucConfig {
    /// Server base URL, e.g. `https://cuc.example.com` (the client adds `/vmrest/...`).
    pub base_url: String,
    pub credentials: Credentials,
    pub tls: TlsOptions,
    pub format: Format,
    /// Pages above this are refused before sending (CUC's limit is undocumented; 2000 is
    /// the largest page CUPI is known to serve, notes §1.5).
    pub max_rows_per_page: u32,
    pub connect_timeout: Duration,
    /// Longest pause between two reads of one answer.
    pub read_timeout: Duration,
    /// Total deadline of one call — connect, send, read the whole answer — so a server
    /// trickling bytes cannot hold the caller (default 60 s).
    pub timeout: Duration,
    /// Total deadline of one audio download (default 5 min: 64 MiB at 2 Mbit/s).
    pub audio_timeout: Duration,
    /// Largest XML/JSON answer read (default 16 MiB; a 2000-user page is ~5 MB).
    pub max_document_bytes: u64,
    /// Largest audio attachment downloaded (default 64 MiB: an hour of 16-bit PCM).
    pub max_audio_bytes: u64,
    /// Largest error-status body read (default 1 MiB; only its code and message are used).
    pub max_error_bytes: u64,
}

impl CucConfig {
    pub fn new(base_url: impl Into<String>, credentials: Credentials) -> Self {
        CucConfig {
            base_url: base_url.into(),
            credentials,
            tls: TlsOptions::default(),
            format: Format::Xml,
            max_rows_per_page: 2000,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            timeout: limits::DEFAULT_TIMEOUT,
            audio_timeout: limits::DEFAULT_AUDIO_TIMEOUT,
            max_document_bytes: limits::DEFAULT_MAX_DOCUMENT_BYTES,
            max_audio_bytes: limits::DEFAULT_MAX_AUDIO_BYTES,
            max_error_bytes: limits::DEFAULT_MAX_ERROR_BYTES,
        }
    }
}

/// Whose mailbox a CUMI call acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxRef {
    /// The authenticated user's own mailbox.
    Own,
    /// Another user's mailbox, by CUC ObjectId, through `?userobjectid=`: the account
    /// must be an administrator holding the "Mailbox Access Delegate Account" role, and
    /// without it CUC returns empty lists rather than an error (notes §1.3).
    User(String),
}

impl MailboxRef {
    fn param(&self) -> Option<(&'static str, String)> {
        match self {
            MailboxRef::Own => None,
            MailboxRef::User(id) => Some(("userobjectid", id.clone())),
        }
    }
}

/// CUMI's folders (notes §0.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    Inbox,
    Sent,
    Deleted,
}

impl Folder {
    pub fn as_str(self) -> &'static str {
        match self {
            Folder::Inbox => "inbox",
            Folder::Sent => "sent",
            Folder::Deleted => "deleted",
        }
    }
}

impl std::str::FromStr for Folder {
    type Err = CucError;
    fn from_str(s: &str) -> Result<Self, CucError> {
        match s.to_ascii_lowercase().as_str() {
            "inbox" => Ok(Folder::Inbox),
            "sent" => Ok(Folder::Sent),
            "deleted" => Ok(Folder::Deleted),
            _ => Err(CucError::InvalidInput(format!(
                "unknown folder {s:?} (inbox, sent or deleted)"
            ))),
        }
    }
}

/// What a downloaded attachment was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInfo {
    pub content_type: Option<String>,
    pub bytes: u64,
}

/// A Unity Connection client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CucClient {
    pub(crate) http: reqwest::Client,
    pub(crate) base: Url,
    pub(crate) credentials: Credentials,
    format: Format,
    max_rows: u32,
    pub(crate) sizes: SizeLimits,
    timeout: Duration,
    audio_timeout: Duration,
}

/// What the caller expects in a 2xx body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Document,
    Audio,
    Nothing,
}

impl CucClient {
    pub fn new(config: CucConfig) -> Result<CucClient, CucError> {
        let mut base = Url::parse(config.base_url.trim_end_matches('/')).map_err(|e| {
            CucError::Config(format!(
                "bad Unity Connection URL {:?}: {e}",
                config.base_url
            ))
        })?;
        if !matches!(base.scheme(), "https" | "http") || base.cannot_be_a_base() {
            return Err(CucError::Config(format!(
                "Unity Connection URL {:?} must be https://host[:port]",
                config.base_url
            )));
        }
        // A base given as https://cuc/vmrest is accepted too.
        if base.path().trim_end_matches('/').ends_with("/vmrest") {
            let path = base
                .path()
                .trim_end_matches('/')
                .trim_end_matches("/vmrest")
                .to_owned();
            base.set_path(&path);
        }
        let http =
            ucbridge_auth::http_client(&config.tls, config.connect_timeout, config.read_timeout)?;
        Ok(CucClient {
            http,
            base,
            credentials: config.credentials,
            format: config.format,
            max_rows: config.max_rows_per_page,
            sizes: SizeLimits {
                document: config.max_document_bytes,
                audio: config.max_audio_bytes,
                error: config.max_error_bytes,
            },
            timeout: config.timeout,
            audio_timeout: config.audio_timeout,
        })
    }

    /// A clone (same connections and credentials) whose every call, audio downloads
    /// included, must finish within `deadline`: for a quick "Test connection".
    pub fn with_timeout(&self, deadline: Duration) -> CucClient {
        CucClient {
            timeout: deadline,
            audio_timeout: deadline,
            ..self.clone()
        }
    }

    /// Runs one call under the client's deadline (the audio one for downloads).
    pub(crate) async fn within<T>(
        &self,
        method: &Method,
        url: &Url,
        expect_audio: bool,
        call: impl std::future::Future<Output = Result<T, CucError>>,
    ) -> Result<T, CucError> {
        let (limit, setting) = if expect_audio {
            (self.audio_timeout, "audio_timeout")
        } else {
            (self.timeout, "timeout")
        };
        limits::within(limit, setting, || format!("{method} {}", url.path()), call).await
    }

    fn url(&self, segments: &[&str]) -> Result<Url, CucError> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| CucError::Config("the base URL cannot take a path".into()))?;
            path.pop_if_empty();
            path.push("vmrest");
            // Pushed one by one: each is percent-encoded, so an id cannot add path parts.
            for s in segments {
                path.push(s);
            }
        }
        Ok(url)
    }

    /// Send with auth; on 401 refresh the token once and resend; then classify the status.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<(&'static str, Vec<u8>)>,
        expect: Expect,
    ) -> Result<reqwest::Response, CucError> {
        let build = |auth: &ucbridge_auth::Authorization| {
            let mut rb = self
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, auth.header_value())
                .header(
                    ACCEPT,
                    match expect {
                        Expect::Audio => "audio/wav, */*",
                        _ => self.format.mime(),
                    },
                );
            if let Some((ct, bytes)) = &body {
                rb = rb.header(CONTENT_TYPE, *ct).body(bytes.clone());
            }
            rb
        };
        let auth = self.credentials.authorization().await?;
        let mut response = build(&auth).send().await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            if let Some(fresh) = self.credentials.retry_after_unauthorized(&auth).await? {
                tracing::debug!(
                    "Unity Connection refused the SSO token; retrying with a refreshed one"
                );
                response = build(&fresh).send().await?;
            }
        }
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok());
            return Err(self.credentials.rejection(challenge).into());
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if status.is_success() {
            if content_type.starts_with("text/html") && expect != Expect::Nothing {
                let body = limits::read_prefix(response, HTML_PREFIX).await;
                return Err(html_error(status.as_u16(), &body));
            }
            return Ok(response);
        }
        let bytes = limits::read_body(response, BodyKind::ErrorBody, self.sizes.error).await?;
        let body = &bytes[..];
        if content_type.starts_with("text/html") || looks_like_html(body) {
            return Err(html_error(status.as_u16(), body));
        }
        // An unreadable (or too deep) error body still reports the status below.
        let parsed = if content_type.contains("json") {
            node::from_json(body, "ErrorDetails").ok()
        } else {
            node::from_xml(body).ok()
        };
        match parsed.as_ref().and_then(read_error) {
            Some((code, message)) => Err(CucError::Api {
                status: status.as_u16(),
                code,
                message,
            }),
            None => Err(CucError::Http {
                status: status.as_u16(),
                body: snippet(body),
            }),
        }
    }

    /// GET a document and read it as `root`, all within the deadline.
    async fn get_node(&self, url: Url, root: &str) -> Result<Node, CucError> {
        self.within(&Method::GET, &url.clone(), false, async {
            let response = self.send(Method::GET, url, None, Expect::Document).await?;
            let status = response.status().as_u16();
            let bytes =
                limits::read_body(response, BodyKind::Document, self.sizes.document).await?;
            if looks_like_html(&bytes) {
                return Err(html_error(status, &bytes));
            }
            match self.format {
                Format::Xml => node::from_xml(&bytes),
                Format::Json => node::from_json(&bytes, root),
            }
        })
        .await
    }

    /// Send a request whose answer body is not needed, within the deadline.
    async fn send_only(
        &self,
        method: Method,
        url: Url,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<(), CucError> {
        self.within(&method.clone(), &url.clone(), false, async {
            self.send(method, url, body, Expect::Nothing).await?;
            Ok(())
        })
        .await
    }

    fn check_rows(&self, rows: u32) -> Result<(), CucError> {
        if rows > self.max_rows {
            return Err(CucError::PageTooLarge {
                requested: rows,
                max: self.max_rows,
            });
        }
        Ok(())
    }

    /// `GET /vmrest/version`.
    pub async fn version(&self) -> Result<VersionInfo, CucError> {
        let node = self
            .get_node(self.url(&["version"])?, "VersionInformation")
            .await?;
        VersionInfo::read_node(&node)
    }

    /// `GET /vmrest/mailbox`.
    pub async fn mailbox(&self, mailbox: &MailboxRef) -> Result<MailboxInfo, CucError> {
        let mut url = self.url(&["mailbox"])?;
        add_params(&mut url, mailbox.param());
        MailboxInfo::read_node(&self.get_node(url, "Mailbox").await?)
    }

    /// `GET /vmrest/mailbox/folders/<folder>`: count, USN, UIDValidity.
    pub async fn folder(
        &self,
        mailbox: &MailboxRef,
        folder: Folder,
    ) -> Result<FolderInfo, CucError> {
        let mut url = self.url(&["mailbox", "folders", folder.as_str()])?;
        add_params(&mut url, mailbox.param());
        FolderInfo::read_node(&self.get_node(url, "Folder").await?)
    }

    /// One page of `GET /vmrest/mailbox/folders/<folder>/messages`.
    pub async fn messages(
        &self,
        mailbox: &MailboxRef,
        folder: Folder,
        query: &MessageQuery,
    ) -> Result<MessagePage, CucError> {
        self.check_rows(query.rows_per_page)?;
        let mut url = self.url(&["mailbox", "folders", folder.as_str(), "messages"])?;
        add_params(&mut url, mailbox.param());
        add_params(&mut url, query.params());
        MessagePage::read_node(&self.get_node(url, "Messages").await?)
    }

    /// Every message of a folder, page by page.
    pub async fn all_messages(
        &self,
        mailbox: &MailboxRef,
        folder: Folder,
        page_size: u32,
    ) -> Result<Vec<Message>, CucError> {
        let mut out = Vec::new();
        let mut query = MessageQuery {
            rows_per_page: page_size.max(1),
            ..MessageQuery::default()
        };
        loop {
            let page = self.messages(mailbox, folder, &query).await?;
            let got = page.messages.len();
            out.extend(page.messages);
            if last_page(got, out.len(), page.total)? {
                return Ok(out);
            }
            query.page_number += 1;
        }
    }

    /// `GET /vmrest/messages/<id>`: the message with its attachments and recipients.
    pub async fn message(&self, mailbox: &MailboxRef, id: &str) -> Result<Message, CucError> {
        let mut url = self.url(&["messages", id])?;
        add_params(&mut url, mailbox.param());
        Message::read_node(&self.get_node(url, "Message").await?)
    }

    /// `GET /vmrest/messages/<id>/attachments/0`, streamed into `out` (a voice message has
    /// one attachment, index 0, notes §1.1).
    pub async fn download_audio<W: AsyncWrite + Unpin>(
        &self,
        mailbox: &MailboxRef,
        id: &str,
        out: &mut W,
    ) -> Result<AudioInfo, CucError> {
        let mut url = self.url(&["messages", id, "attachments", "0"])?;
        add_params(&mut url, mailbox.param());
        self.within(&Method::GET, &url.clone(), true, async {
            let response = self.send(Method::GET, url, None, Expect::Audio).await?;
            self.copy_audio(response, out).await
        })
        .await
    }

    /// Streams an audio body into `out`, stopping at `max_audio_bytes` (what was written
    /// so far stays in `out`; the caller discards it on the error).
    async fn copy_audio<W: AsyncWrite + Unpin>(
        &self,
        response: reqwest::Response,
        out: &mut W,
    ) -> Result<AudioInfo, CucError> {
        let limit = self.sizes.audio;
        let too_large = CucError::BodyTooLarge {
            kind: BodyKind::Audio,
            status: response.status().as_u16(),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large);
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut stream = response.bytes_stream();
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            bytes += chunk.len() as u64;
            if bytes > limit {
                return Err(too_large);
            }
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        Ok(AudioInfo {
            content_type,
            bytes,
        })
    }

    /// Mark read or unread: `PUT /vmrest/messages/<id>` with `<Message><Read>..</Read>`;
    /// only inbox messages can change (notes §0.4).
    pub async fn set_read(
        &self,
        mailbox: &MailboxRef,
        id: &str,
        read: bool,
    ) -> Result<(), CucError> {
        let mut url = self.url(&["messages", id])?;
        add_params(&mut url, mailbox.param());
        let body = match self.format {
            Format::Xml => (
                "application/xml",
                format!("<Message><Read>{read}</Read></Message>").into_bytes(),
            ),
            // CUC's JSON scalars are strings (notes §1.4).
            Format::Json => (
                "application/json",
                serde_json::json!({ "Read": read.to_string() })
                    .to_string()
                    .into_bytes(),
            ),
        };
        self.send_only(Method::PUT, url, Some(body)).await
    }

    /// `DELETE /vmrest/messages/<id>`: soft or hard per CUC's settings unless `hard` says
    /// (`harddelete=`); from `deleted` always hard (notes §0.5).
    pub async fn delete_message(
        &self,
        mailbox: &MailboxRef,
        id: &str,
        hard: Option<bool>,
    ) -> Result<(), CucError> {
        let mut url = self.url(&["messages", id])?;
        add_params(&mut url, mailbox.param());
        add_params(&mut url, hard.map(|h| ("harddelete", h.to_string())));
        self.send_only(Method::DELETE, url, None).await
    }

    /// One page of `GET /vmrest/users`.
    pub async fn users(&self, query: &UserQuery) -> Result<UserPage, CucError> {
        self.check_rows(query.rows_per_page)?;
        let mut url = self.url(&["users"])?;
        add_params(&mut url, query.params()?);
        UserPage::read_node(&self.get_node(url, "Users").await?)
    }

    /// Every user matching `query`'s filter, page by page.
    pub async fn all_users(&self, query: &UserQuery) -> Result<Vec<User>, CucError> {
        let mut q = query.clone();
        q.page_number = 1;
        q.rows_per_page = q.rows_per_page.max(1);
        let mut out = Vec::new();
        loop {
            let page = self.users(&q).await?;
            let got = page.users.len();
            out.extend(page.users);
            if last_page(got, out.len(), page.total)? {
                return Ok(out);
            }
            q.page_number += 1;
        }
    }

    /// `GET /vmrest/users/<ObjectId>`: the full object (with `SmtpAddress`).
    pub async fn user(&self, object_id: &str) -> Result<User, CucError> {
        User::read_node(
            &self
                .get_node(self.url(&["users", object_id])?, "User")
                .await?,
        )
    }

    /// The user with this alias, if any (`query=(alias is <alias>)`).
    pub async fn user_by_alias(&self, alias: &str) -> Result<Option<User>, CucError> {
        let query = UserQuery {
            filter: Some(crate::UserFilter::is(crate::UserField::Alias, alias)),
            rows_per_page: 2,
            ..UserQuery::default()
        };
        Ok(self
            .users(&query)
            .await?
            .users
            .into_iter()
            .find(|u| u.alias.eq_ignore_ascii_case(alias)))
    }
}

/// Most records one listing collects: ten times the largest CUC (20,000 users per server,
/// notes §3), so a server claiming an endless `total` cannot make a listing endless.
pub const MAX_LIST_RECORDS: usize = 200_000;

/// Whether paging is done: an empty page, or `total` reached; an error past
/// [`MAX_LIST_RECORDS`]. (A short page is not taken as the last: CUC may serve fewer rows
/// than asked for.)
fn last_page(got: usize, have: usize, total: u64) -> Result<bool, CucError> {
    if have > MAX_LIST_RECORDS {
        return Err(CucError::Protocol(format!(
            "the listing goes on past {MAX_LIST_RECORDS} records (the server claims {total})"
        )));
    }
    Ok(got == 0 || have as u64 >= total)
}

fn add_params<I: IntoIterator<Item = (&'static str, String)>>(url: &mut Url, params: I) {
    let mut pairs = url.query_pairs_mut();
    for (k, v) in params {
        pairs.append_pair(k, &v);
    }
    drop(pairs);
    if url.query() == Some("") {
        url.set_query(None);
    }
}

/// How much of an unexpected HTML page is read: enough for its `<title>`.
pub(crate) const HTML_PREFIX: usize = 64 * 1024;

pub(crate) fn looks_like_html(body: &[u8]) -> bool {
    let start: String = String::from_utf8_lossy(&body[..body.len().min(256)])
        .trim_start()
        .chars()
        .take(15)
        .collect::<String>()
        .to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html")
}

pub(crate) fn html_error(status: u16, body: &[u8]) -> CucError {
    let text = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]);
    let lower = text.to_ascii_lowercase();
    let title = lower.find("<title>").and_then(|start| {
        let from = start + "<title>".len();
        let end = lower[from..].find("</title>")? + from;
        Some(text[from..end].trim().to_owned()).filter(|t| !t.is_empty())
    });
    CucError::HtmlAnswer { status, title }
}

pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Result<CucClient, CucError> {
        CucClient::new(CucConfig::new(base, Credentials::basic("a", "b")))
    }

    #[test]
    fn urls_encode_ids_as_one_segment() {
        let c = client("https://cuc.example.com:8443/").unwrap();
        let u = c.url(&["messages", "0:ab/../c d"]).unwrap();
        assert_eq!(
            u.as_str(),
            "https://cuc.example.com:8443/vmrest/messages/0:ab%2F..%2Fc%20d"
        );
        let c = client("https://cuc.example.com/vmrest").unwrap();
        assert_eq!(
            c.url(&["users"]).unwrap().as_str(),
            "https://cuc.example.com/vmrest/users"
        );
        assert!(client("ftp://x").is_err());
        assert!(client("not a url").is_err());
    }

    #[test]
    fn html_is_recognised_with_its_title() {
        assert!(looks_like_html(b"  <!DOCTYPE html><html>"));
        assert!(looks_like_html(b"<HTML><head>"));
        assert!(!looks_like_html(b"<?xml version='1.0'?><Messages/>"));
        let e = html_error(200, b"<html><head><title> Login </title></head></html>");
        assert!(
            matches!(e, CucError::HtmlAnswer { status: 200, title: Some(ref t) } if t == "Login")
        );
    }
}
