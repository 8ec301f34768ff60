//! One IMAP session on a user's mailbox (async-imap over tokio, TLS by tokio-rustls), and
//! the few operations voicemail sync needs.
//!
//! Extensions used when the server offers them: CONDSTORE (RFC 7162: HIGHESTMODSEQ tells
//! "nothing changed" without fetching), LIST-STATUS (RFC 5819: one command for every
//! folder's identity), UIDPLUS (RFC 4315: `UID EXPUNGE` removes only our messages), MOVE
//! (RFC 6851), LITERAL+ (RFC 7888), OBJECTID (RFC 8474, detected; see [`Caps::objectid`]),
//! IDLE (RFC 2177: [`ImapConn::idle`] and [`Idling`], async-imap's IDLE handle on a
//! read-only EXAMINEd folder).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::imap_proto::{MailboxDatum, Response, ResponseCode, Status, StatusAttribute};
use async_imap::types::Flag;
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::config::{ImapLogin, ImapSecurity, ImapSettings};
use crate::VoicemailError;

/// The header that ties an IMAP message to its CUC message (`0:<uuid>`).
pub const CUC_ID_HEADER: &str = "X-Ucbridge-Cuc-Id";

/// Plain TCP or TLS, behind one type for async-imap.
#[derive(Debug)]
pub(crate) enum ImapStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type Session = async_imap::Session<ImapStream>;

/// What the server offers, from CAPABILITY after login.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Caps {
    pub(crate) condstore: bool,
    pub(crate) list_status: bool,
    pub(crate) uidplus: bool,
    pub(crate) moves: bool,
    /// RFC 8474. Detected and reported, but mailbox ids cannot be read yet: async-imap's
    /// parser (imap-proto 0.16) rejects the `MAILBOXID` status item, so identity falls
    /// back to UIDVALIDITY (Dovecot 2.3 does not offer OBJECTID anyway).
    pub(crate) objectid: bool,
    /// RFC 2177 IDLE.
    pub(crate) idle: bool,
}

/// A folder's identity and change counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FolderState {
    pub(crate) name: String,
    pub(crate) uid_validity: u32,
    pub(crate) highest_modseq: Option<u64>,
    /// In the user's subscription list (LSUB). Only [`ImapConn::folders`] reads it;
    /// `false` from [`ImapConn::status`] means "not known".
    pub(crate) subscribed: bool,
}

/// A message as the sync sees it on IMAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImapMessage {
    pub(crate) uid: u32,
    pub(crate) seen: bool,
    pub(crate) deleted: bool,
    /// From [`CUC_ID_HEADER`]; `None` = not ours (left alone).
    pub(crate) cuc_id: Option<String>,
}

fn imap_err(context: &str) -> impl Fn(async_imap::error::Error) -> VoicemailError + '_ {
    move |e| VoicemailError::Imap(format!("{context}: {e}"))
}

/// Mailbox names go into commands as quoted strings; refuse those that async-imap's APPEND
/// would not quote safely.
fn check_name(name: &str) -> Result<(), VoicemailError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return Err(VoicemailError::Imap(format!(
            "unsupported IMAP folder name {name:?} (quotes, backslashes and control characters are not handled)"
        )));
    }
    Ok(())
}

/// IMAP `quoted` string (RFC 3501 §4.3) for names already checked by [`check_name`].
fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn tls_wrap(
    settings: &ImapSettings,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, VoicemailError> {
    let name = rustls::pki_types::ServerName::try_from(settings.host.clone())
        .map_err(|e| VoicemailError::Config(format!("bad IMAP host name: {e}")))?;
    let config = ucbridge_auth::rustls_client_config(&settings.tls)
        .map_err(|e| VoicemailError::Config(format!("IMAP TLS: {e}")))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| VoicemailError::Imap(format!("TLS handshake with the IMAP server: {e}")))
}

/// SASL PLAIN with an authorization identity (RFC 4616 §2).
struct PlainAuthzid {
    response: Vec<u8>,
}

impl async_imap::Authenticator for PlainAuthzid {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        std::mem::take(&mut self.response)
    }
}

/// A logged-in session on one user's mailbox.
pub(crate) struct ImapConn {
    session: Session,
    pub(crate) caps: Caps,
    timeout: Duration,
    delimiter: Option<String>,
}

impl ImapConn {
    /// Connect and log in as `user` through the admin/master login.
    pub(crate) async fn open(
        settings: &ImapSettings,
        user: &str,
    ) -> Result<ImapConn, VoicemailError> {
        if settings.security == ImapSecurity::Plain
            && !settings.allow_plaintext
            && !is_loopback(&settings.host)
        {
            return Err(VoicemailError::Config(format!(
                "plain IMAP to {} would send the master password in clear; use tls/starttls or set allow_plaintext",
                settings.host
            )));
        }
        let tcp = tokio::time::timeout(
            settings.connect_timeout,
            TcpStream::connect((settings.host.as_str(), settings.port)),
        )
        .await
        .map_err(|_| {
            VoicemailError::Imap(format!(
                "connecting to {}:{} timed out",
                settings.host, settings.port
            ))
        })?
        .map_err(|e| {
            VoicemailError::Imap(format!(
                "cannot connect to {}:{}: {e}",
                settings.host, settings.port
            ))
        })?;
        let _ = tcp.set_nodelay(true);
        let timeout = settings.command_timeout;
        let stream = match settings.security {
            ImapSecurity::Tls => ImapStream::Tls(Box::new(tls_wrap(settings, tcp).await?)),
            ImapSecurity::Plain => ImapStream::Plain(tcp),
            ImapSecurity::Starttls => {
                let mut client = async_imap::Client::new(tcp);
                greeting(&mut client, timeout).await?;
                with_timeout(timeout, client.run_command_and_check_ok("STARTTLS", None))
                    .await?
                    .map_err(imap_err("STARTTLS"))?;
                ImapStream::Tls(Box::new(tls_wrap(settings, client.into_inner()).await?))
            }
        };
        let mut client = async_imap::Client::new(stream);
        if settings.security != ImapSecurity::Starttls {
            greeting(&mut client, timeout).await?;
        }
        let login = match &settings.login {
            ImapLogin::MasterUser {
                master_user,
                password,
                separator,
            } => {
                with_timeout(
                    timeout,
                    client.login(format!("{user}{separator}{master_user}"), password.expose()),
                )
                .await?
            }
            ImapLogin::SaslAuthzid {
                admin_user,
                password,
            } => {
                let response = format!("{user}\0{admin_user}\0{}", password.expose()).into_bytes();
                with_timeout(
                    timeout,
                    client.authenticate("PLAIN", PlainAuthzid { response }),
                )
                .await?
            }
        };
        let mut session = login.map_err(|(e, _)| {
            VoicemailError::ImapLogin(format!("IMAP login for {user:?} refused: {e}"))
        })?;
        let capabilities = with_timeout(timeout, session.capabilities())
            .await?
            .map_err(imap_err("CAPABILITY"))?;
        let caps = Caps {
            condstore: capabilities.has_str("CONDSTORE"),
            list_status: capabilities.has_str("LIST-STATUS"),
            uidplus: capabilities.has_str("UIDPLUS"),
            moves: capabilities.has_str("MOVE"),
            objectid: capabilities.has_str("OBJECTID"),
            idle: capabilities.has_str("IDLE"),
        };
        if caps.objectid {
            tracing::debug!("the IMAP server offers OBJECTID (RFC 8474); folders are still tracked by UIDVALIDITY");
        }
        Ok(ImapConn {
            session,
            caps,
            timeout,
            delimiter: None,
        })
    }

    /// The hierarchy delimiter (`LIST "" ""`, RFC 3501 §6.3.8).
    pub(crate) async fn delimiter(&mut self) -> Result<String, VoicemailError> {
        if let Some(d) = &self.delimiter {
            return Ok(d.clone());
        }
        let found = with_timeout(self.timeout, async {
            let tag = self.session.run_command("LIST \"\" \"\"").await?;
            let mut found = None;
            loop {
                let Some(response) = self.session.read_response().await else {
                    return Err(async_imap::error::Error::ConnectionLost);
                };
                let response = response?;
                match response.parsed() {
                    Response::MailboxData(MailboxDatum::List { delimiter, .. }) => {
                        found = delimiter.as_deref().map(str::to_owned);
                    }
                    Response::Done { tag: done, .. } if *done == tag => return Ok(found),
                    _ => {}
                }
            }
        })
        .await?
        .map_err(imap_err("LIST"))?;
        // NIL = a flat namespace: nothing separates levels; "/" in names is then literal.
        let d = found.unwrap_or_else(|| "/".into());
        self.delimiter = Some(d.clone());
        Ok(d)
    }

    /// Every folder with its UIDVALIDITY (and HIGHESTMODSEQ with CONDSTORE).
    pub(crate) async fn folders(&mut self) -> Result<Vec<FolderState>, VoicemailError> {
        let items = if self.caps.condstore {
            "UIDVALIDITY HIGHESTMODSEQ"
        } else {
            "UIDVALIDITY"
        };
        if !self.caps.list_status {
            let names: Vec<String> = with_timeout(self.timeout, async {
                let list: Vec<_> = self
                    .session
                    .list(Some(""), Some("*"))
                    .await?
                    .try_collect()
                    .await?;
                Ok::<_, async_imap::error::Error>(
                    list.iter()
                        .filter(|n| {
                            !n.attributes()
                                .iter()
                                .any(|a| matches!(a, async_imap::types::NameAttribute::NoSelect))
                        })
                        .map(|n| n.name().to_owned())
                        .collect(),
                )
            })
            .await?
            .map_err(imap_err("LIST"))?;
            let subscribed = self.subscribed_names().await?;
            let mut out = Vec::new();
            for name in names {
                if let Some(mut state) = self.status(&name).await? {
                    state.subscribed = subscribed.contains(&state.name);
                    out.push(state);
                }
            }
            return Ok(out);
        }
        // RFC 5819: the STATUS of each listed mailbox comes in the same answer, and the
        // SUBSCRIBED return option (RFC 5258 §3.2, implied by LIST-STATUS) marks the
        // subscribed ones, so one command tells identity, changes and subscription.
        let command = format!("LIST \"\" \"*\" RETURN (SUBSCRIBED STATUS ({items}))");
        with_timeout(self.timeout, async {
            let tag = self.session.run_command(&command).await?;
            let mut out: Vec<FolderState> = Vec::new();
            let mut subscribed = std::collections::HashSet::new();
            loop {
                let Some(response) = self.session.read_response().await else {
                    return Err(async_imap::error::Error::ConnectionLost);
                };
                let response = response?;
                match response.parsed() {
                    Response::MailboxData(MailboxDatum::List {
                        name_attributes,
                        name,
                        ..
                    }) if name_attributes.iter().any(is_subscribed_attribute) => {
                        subscribed.insert(name.to_string());
                    }
                    Response::MailboxData(MailboxDatum::Status { mailbox, status }) => {
                        if let Some(state) = folder_state(mailbox, status) {
                            out.push(state);
                        }
                    }
                    Response::Done {
                        tag: done,
                        status,
                        information,
                        ..
                    } if *done == tag => {
                        for state in out.iter_mut() {
                            state.subscribed = subscribed.contains(&state.name);
                        }
                        return match status {
                            Status::Ok => Ok(out),
                            _ => Err(async_imap::error::Error::No(
                                information.as_deref().unwrap_or_default().to_owned(),
                            )),
                        };
                    }
                    _ => {}
                }
            }
        })
        .await?
        .map_err(imap_err("LIST-STATUS"))
    }

    /// STATUS of one folder; `None` when it does not exist.
    pub(crate) async fn status(
        &mut self,
        name: &str,
    ) -> Result<Option<FolderState>, VoicemailError> {
        check_name(name)?;
        let items = if self.caps.condstore {
            "(UIDVALIDITY HIGHESTMODSEQ)"
        } else {
            "(UIDVALIDITY)"
        };
        let command = format!("STATUS {} {items}", quoted(name));
        with_timeout(self.timeout, async {
            let tag = self.session.run_command(&command).await?;
            let mut found = None;
            loop {
                let Some(response) = self.session.read_response().await else {
                    return Err(async_imap::error::Error::ConnectionLost);
                };
                let response = response?;
                match response.parsed() {
                    Response::MailboxData(MailboxDatum::Status { mailbox, status }) => {
                        found = folder_state(mailbox, status);
                    }
                    Response::Done {
                        tag: done, status, ..
                    } if *done == tag => {
                        // NO = no such mailbox.
                        return Ok(if *status == Status::Ok { found } else { None });
                    }
                    _ => {}
                }
            }
        })
        .await?
        .map_err(imap_err("STATUS"))
    }

    /// Names in the user's subscription list (LSUB, RFC 3501 §6.3.9).
    async fn subscribed_names(
        &mut self,
    ) -> Result<std::collections::HashSet<String>, VoicemailError> {
        with_timeout(self.timeout, async {
            let names: Vec<_> = self
                .session
                .lsub(Some(""), Some("*"))
                .await?
                .try_collect()
                .await?;
            Ok::<_, async_imap::error::Error>(names.iter().map(|n| n.name().to_owned()).collect())
        })
        .await?
        .map_err(imap_err("LSUB"))
    }

    /// Add a folder to the user's subscription list: clients such as Thunderbird and
    /// Roundcube show subscribed folders only. Subscribing twice is harmless (RFC 3501
    /// §6.3.6 keeps one entry per name).
    pub(crate) async fn subscribe(&mut self, name: &str) -> Result<(), VoicemailError> {
        check_name(name)?;
        with_timeout(self.timeout, self.session.subscribe(name))
            .await?
            .map_err(imap_err("SUBSCRIBE"))
    }

    pub(crate) async fn create(&mut self, name: &str) -> Result<(), VoicemailError> {
        check_name(name)?;
        with_timeout(self.timeout, self.session.create(name))
            .await?
            .map_err(imap_err("CREATE"))
    }

    /// SELECT (with CONDSTORE when offered); the folder's UIDVALIDITY.
    pub(crate) async fn select(&mut self, name: &str) -> Result<u32, VoicemailError> {
        check_name(name)?;
        let mailbox = if self.caps.condstore {
            with_timeout(self.timeout, self.session.select_condstore(name)).await?
        } else {
            with_timeout(self.timeout, self.session.select(name)).await?
        }
        .map_err(imap_err("SELECT"))?;
        Ok(mailbox.uid_validity.unwrap_or_default())
    }

    /// UID, flags and our header of every message of the selected folder.
    pub(crate) async fn scan(&mut self) -> Result<Vec<ImapMessage>, VoicemailError> {
        let fetches: Vec<_> = with_timeout(self.timeout, async {
            self.session
                .uid_fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER])")
                .await?
                .try_collect()
                .await
        })
        .await?
        .map_err(imap_err("UID FETCH"))?;
        let parser = mail_parser::MessageParser::default();
        Ok(fetches
            .iter()
            .filter_map(|f| {
                let uid = f.uid?;
                let flags: Vec<Flag<'_>> = f.flags().collect();
                let cuc_id = f.header().and_then(|h| {
                    parser
                        .parse_headers(h)
                        .and_then(|m| m.header_raw(CUC_ID_HEADER).map(|v| v.trim().to_owned()))
                });
                Some(ImapMessage {
                    uid,
                    seen: flags.contains(&Flag::Seen),
                    deleted: flags.contains(&Flag::Deleted),
                    cuc_id,
                })
            })
            .collect())
    }

    fn uid_set(uids: &[u32]) -> String {
        uids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Set or clear `\Seen` on messages of the selected folder.
    pub(crate) async fn set_seen(
        &mut self,
        uids: &[u32],
        seen: bool,
    ) -> Result<(), VoicemailError> {
        if uids.is_empty() {
            return Ok(());
        }
        let op = if seen {
            "+FLAGS.SILENT"
        } else {
            "-FLAGS.SILENT"
        };
        let set = Self::uid_set(uids);
        with_timeout(self.timeout, async {
            let _: Vec<_> = self
                .session
                .uid_store(&set, format!("{op} (\\Seen)"))
                .await?
                .try_collect()
                .await?;
            Ok(())
        })
        .await?
        .map_err(imap_err("UID STORE"))
    }

    /// Remove messages of the selected folder: `\Deleted`, then `UID EXPUNGE` (UIDPLUS), so
    /// messages the user flagged but did not expunge stay; plain EXPUNGE otherwise.
    pub(crate) async fn remove(&mut self, uids: &[u32]) -> Result<(), VoicemailError> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = Self::uid_set(uids);
        let uidplus = self.caps.uidplus;
        with_timeout(self.timeout, async {
            let _: Vec<_> = self
                .session
                .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                .await?
                .try_collect()
                .await?;
            if uidplus {
                let _: Vec<_> = self.session.uid_expunge(&set).await?.try_collect().await?;
            } else {
                let _: Vec<_> = self.session.expunge().await?.try_collect().await?;
            }
            Ok(())
        })
        .await?
        .map_err(imap_err("expunge"))
    }

    /// Move messages of the selected folder to `dest` (MOVE, else COPY + remove).
    pub(crate) async fn move_to(&mut self, uids: &[u32], dest: &str) -> Result<(), VoicemailError> {
        if uids.is_empty() {
            return Ok(());
        }
        check_name(dest)?;
        let set = Self::uid_set(uids);
        if self.caps.moves {
            return with_timeout(self.timeout, self.session.uid_mv(&set, dest))
                .await?
                .map_err(imap_err("UID MOVE"));
        }
        with_timeout(self.timeout, self.session.uid_copy(&set, dest))
            .await?
            .map_err(imap_err("UID COPY"))?;
        self.remove(uids).await
    }

    /// APPEND a message with its flags and internal date (RFC 3501 §6.3.11).
    pub(crate) async fn append(
        &mut self,
        folder: &str,
        seen: bool,
        internal_date: Option<&str>,
        message: &[u8],
    ) -> Result<(), VoicemailError> {
        check_name(folder)?;
        let flags = if seen { "(\\Seen)" } else { "()" };
        let date = internal_date.map(|d| format!("\"{d}\""));
        with_timeout(
            self.timeout,
            self.session
                .append(folder, Some(flags), date.as_deref(), message),
        )
        .await?
        .map_err(imap_err("APPEND"))
    }

    /// EXAMINE (read-only SELECT, RFC 3501 §6.3.2) with CONDSTORE when offered: the
    /// folder's UIDVALIDITY and HIGHESTMODSEQ. Read-only, so watching a folder neither
    /// changes flags nor takes `\Recent` away from the user's own client, and a later CLOSE
    /// expunges nothing.
    pub(crate) async fn examine(
        &mut self,
        name: &str,
    ) -> Result<(u32, Option<u64>), VoicemailError> {
        check_name(name)?;
        let command = if self.caps.condstore {
            format!("EXAMINE {} (CONDSTORE)", quoted(name))
        } else {
            format!("EXAMINE {}", quoted(name))
        };
        with_timeout(self.timeout, async {
            let tag = self.session.run_command(&command).await?;
            let (mut uid_validity, mut modseq) = (None, None);
            loop {
                let Some(response) = self.session.read_response().await else {
                    return Err(async_imap::error::Error::ConnectionLost);
                };
                let response = response?;
                match response.parsed() {
                    Response::Data {
                        code: Some(ResponseCode::UidValidity(v)),
                        ..
                    } => uid_validity = Some(*v),
                    Response::Data {
                        code: Some(ResponseCode::HighestModSeq(m)),
                        ..
                    } => modseq = Some(*m),
                    Response::Done {
                        tag: done,
                        status,
                        information,
                        ..
                    } if *done == tag => {
                        return match status {
                            Status::Ok => Ok((uid_validity.unwrap_or_default(), modseq)),
                            _ => Err(async_imap::error::Error::No(
                                information.as_deref().unwrap_or_default().to_owned(),
                            )),
                        };
                    }
                    _ => {}
                }
            }
        })
        .await?
        .map_err(imap_err("EXAMINE"))
    }

    /// CLOSE: leave the selected folder (an EXAMINEd one: nothing is expunged, RFC 3501
    /// §6.4.2).
    pub(crate) async fn close(&mut self) -> Result<(), VoicemailError> {
        with_timeout(self.timeout, self.session.close())
            .await?
            .map_err(imap_err("CLOSE"))
    }

    /// Whether the server reported a change of the selected folder (EXISTS, EXPUNGE,
    /// FETCH, ...) beside an answer since the last call; async-imap keeps such unsolicited
    /// responses in a bounded queue (100, the rest dropped), emptied here.
    pub(crate) fn take_unsolicited(&mut self) -> bool {
        use async_imap::types::UnsolicitedResponse;
        let mut any = false;
        while let Ok(response) = self.session.unsolicited_responses.try_recv() {
            any |= match &response {
                UnsolicitedResponse::Exists(_)
                | UnsolicitedResponse::Recent(_)
                | UnsolicitedResponse::Expunge(_) => true,
                UnsolicitedResponse::Other(data) => reports_change(data.parsed()),
                UnsolicitedResponse::Status { .. } => false,
            };
        }
        any
    }

    /// Start IDLE on the selected folder (RFC 2177); the server must offer it
    /// ([`Caps::idle`]). [`Idling::done`] gives the session back.
    pub(crate) async fn idle(self) -> Result<Idling, VoicemailError> {
        let ImapConn {
            session,
            caps,
            timeout,
            delimiter,
        } = self;
        let mut handle = session.idle();
        with_timeout(timeout, handle.init())
            .await?
            .map_err(imap_err("IDLE"))?;
        Ok(Idling {
            handle,
            caps,
            timeout,
            delimiter,
        })
    }

    pub(crate) async fn logout(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.session.logout()).await;
    }
}

/// What ended one [`Idling::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleEvent {
    /// The server reported a change of the watched folder (EXISTS, EXPUNGE, FETCH, ...).
    Changed,
    /// Nothing within the time given.
    Quiet,
}

/// A session in IDLE (async-imap's [`async_imap::extensions::idle::Handle`]).
pub(crate) struct Idling {
    handle: async_imap::extensions::idle::Handle<ImapStream>,
    caps: Caps,
    timeout: Duration,
    delimiter: Option<String>,
}

impl Idling {
    /// Wait for the server to report a change, for at most `max` in all (async-imap's own
    /// timeout restarts on every "OK Still here", so it alone would never end with
    /// Dovecot). Dropping this future mid-wait is safe: async-imap buffers what it read.
    pub(crate) async fn wait(&mut self, max: Duration) -> Result<IdleEvent, VoicemailError> {
        use async_imap::extensions::idle::IdleResponse;
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // Dropping the stop source would interrupt the wait at once: keep it to the end.
            let (wait, _interrupt) = self.handle.wait_with_timeout(left);
            let data = match tokio::time::timeout(left, wait).await {
                Err(_) | Ok(Ok(IdleResponse::Timeout)) => return Ok(IdleEvent::Quiet),
                // The stream ended: only the server can have done that here.
                Ok(Ok(IdleResponse::ManualInterrupt)) => {
                    return Err(VoicemailError::Imap(
                        "the IMAP server closed the IDLE connection".into(),
                    ))
                }
                Ok(Ok(IdleResponse::NewData(data))) => data,
                Ok(Err(e)) => return Err(imap_err("IDLE")(e)),
            };
            match data.parsed() {
                Response::Data {
                    status: Status::Bye,
                    ..
                } => {
                    return Err(VoicemailError::Imap(
                        "the IMAP server ended the IDLE connection (BYE)".into(),
                    ))
                }
                parsed if reports_change(parsed) => return Ok(IdleEvent::Changed),
                _ => {}
            }
        }
    }

    /// End IDLE (DONE); the session back.
    pub(crate) async fn done(self) -> Result<ImapConn, VoicemailError> {
        let session = with_timeout(self.timeout, self.handle.done())
            .await?
            .map_err(imap_err("DONE"))?;
        Ok(ImapConn {
            session,
            caps: self.caps,
            timeout: self.timeout,
            delimiter: self.delimiter,
        })
    }
}

/// Whether an untagged response reports a change of the selected folder: a new message
/// (EXISTS, RECENT), a removed one (EXPUNGE, VANISHED) or changed flags (FETCH).
fn reports_change(response: &Response<'_>) -> bool {
    matches!(
        response,
        Response::MailboxData(MailboxDatum::Exists(_) | MailboxDatum::Recent(_))
            | Response::Expunge(_)
            | Response::Vanished { .. }
            | Response::Fetch(..)
    )
}

fn folder_state(mailbox: &str, status: &[StatusAttribute]) -> Option<FolderState> {
    let mut uid_validity = None;
    let mut highest_modseq = None;
    for s in status {
        match s {
            StatusAttribute::UidValidity(v) => uid_validity = Some(*v),
            StatusAttribute::HighestModSeq(m) => highest_modseq = Some(*m),
            _ => {}
        }
    }
    Some(FolderState {
        name: mailbox.to_owned(),
        uid_validity: uid_validity?,
        highest_modseq,
        subscribed: false,
    })
}

/// `\Subscribed` (RFC 5258 §3.2); imap-proto reads it as an extension attribute.
fn is_subscribed_attribute(attribute: &async_imap::imap_proto::NameAttribute<'_>) -> bool {
    matches!(attribute, async_imap::imap_proto::NameAttribute::Extension(x) if x.eq_ignore_ascii_case("\\Subscribed"))
}

async fn greeting(
    client: &mut async_imap::Client<
        impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
    >,
    timeout: Duration,
) -> Result<(), VoicemailError> {
    match tokio::time::timeout(timeout, client.read_response()).await {
        Ok(Some(Ok(_))) => Ok(()),
        Ok(Some(Err(e))) => Err(VoicemailError::Imap(format!("IMAP greeting: {e}"))),
        Ok(None) => Err(VoicemailError::Imap(
            "the IMAP server closed the connection".into(),
        )),
        Err(_) => Err(VoicemailError::Imap("no IMAP greeting".into())),
    }
}

async fn with_timeout<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = T>,
) -> Result<T, VoicemailError> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| VoicemailError::Imap(format!("IMAP command timed out after {timeout:?}")))
}

/// RFC 3501 `date-time` for APPEND: `"05-Jan-2026 09:00:00 +0000"`.
pub(crate) fn internal_date(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%d-%b-%Y %H:%M:%S +0000").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dates() {
        assert!(check_name("Voicemail.Sent").is_ok());
        assert!(check_name("a\"b").is_err());
        assert!(check_name("").is_err());
        assert_eq!(
            internal_date(1_767_603_600_000).as_deref(),
            Some("05-Jan-2026 09:00:00 +0000")
        );
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("localhost"));
        assert!(!is_loopback("mail.example.com"));
    }

    #[test]
    fn idle_takes_message_changes_only() {
        use async_imap::imap_proto::parser::parse_response;
        for (line, change) in [
            ("* 4 EXISTS\r\n", true),
            ("* 1 RECENT\r\n", true),
            ("* 2 EXPUNGE\r\n", true),
            ("* 3 FETCH (FLAGS (\\Seen))\r\n", true),
            ("* OK Still here\r\n", false),
            ("* FLAGS (\\Seen \\Deleted)\r\n", false),
        ] {
            let (_, response) = parse_response(line.as_bytes()).expect(line);
            assert_eq!(reports_change(&response), change, "{line}");
        }
    }
}
