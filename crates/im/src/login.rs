//! One connection attempt, step by step: TCP to the configured address, stream header
//! (the server must serve the configured domain), STARTTLS (RFC 6120 §5) unless plain
//! mode, SASL (RFC 6120 §6, the mechanisms tokio-xmpp offers: SCRAM-SHA-256, SCRAM-SHA-1,
//! PLAIN, in that order of preference), resource binding (RFC 6120 §7). Every failure is
//! mapped to the [`ImError`] an admin can act on.

use std::borrow::Cow;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use sasl::common::{ChannelBinding, Credentials};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_xmpp::jid::{BareJid, FullJid};
use tokio_xmpp::parsers::bind::{BindQuery, BindResponse};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::starttls;
use tokio_xmpp::parsers::stream_error::{DefinedCondition, ReceivedStreamError};
use tokio_xmpp::parsers::stream_features::StreamFeatures;
use tokio_xmpp::xmlstream::{
    initiate_stream, PendingFeaturesRecv, ReadError, RecvFeaturesError, StreamHeader, Timeouts,
    XmppStream, XmppStreamElement,
};
use tokio_xmpp::Stanza;

use crate::transport::{Limited, StanzaTooLarge, Transport};
use crate::{ImError, ImSettings, ImTls};

/// The stream type of an established session.
pub(crate) type Stream = XmppStream<BufStream<Limited<Transport>>>;

/// What one successful login yields.
pub(crate) struct LoggedIn {
    pub stream: Stream,
    pub jid: FullJid,
}

/// The parts of the settings a connection attempt needs, prepared once per session.
#[derive(Clone)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    pub domain: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub max_stanza_bytes: usize,
    pub timeouts: Timeouts,
}

impl Target {
    pub(crate) fn new(settings: &ImSettings) -> Result<Target, ImError> {
        settings.validate()?;
        let tls = match settings.tls {
            ImTls::StartTls => Some(crate::transport::tls_config(settings.ca_file.as_deref())?),
            ImTls::Plain => None,
        };
        Ok(Target {
            host: settings.host.clone(),
            port: settings.port,
            domain: crate::jid::parse_domain(&settings.domain)?,
            tls,
            max_stanza_bytes: settings.max_stanza_bytes,
            // Soft timeout after 60 s of silence: the session then pings (XEP-0199); a
            // further 30 s of silence is a dead connection.
            timeouts: Timeouts {
                read_timeout: std::time::Duration::from_secs(60),
                response_timeout: std::time::Duration::from_secs(30),
            },
        })
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Connect, secure, authenticate and bind `localpart`/`resource`.
pub(crate) async fn login(
    target: &Target,
    localpart: &str,
    password: &str,
    resource: &str,
) -> Result<LoggedIn, ImError> {
    let (stream, features) = connect(target).await?;
    let user = format!("{localpart}@{}", target.domain);
    let bare = BareJid::new(&user).map_err(|e| ImError::InvalidJid(format!("{user:?}: {e}")))?;
    // Channel binding is left out: tokio-xmpp offers no -PLUS mechanism to use it with.
    let creds = Credentials::default()
        .with_username(localpart)
        .with_password(password)
        .with_channel_binding(ChannelBinding::None);
    let offered = features.sasl_mechanisms.clone();
    let initiating = tokio_xmpp::client_login(stream, features.sasl_mechanisms, creds)
        .await
        .map_err(|e| sasl_error(e, &offered))?;
    let pending = initiating
        .send_header(header(&target.domain))
        .await
        .map_err(|e| io_error(e, "restarting the stream after SASL"))?;
    let (features, stream) = pending
        .recv_features()
        .await
        .map_err(|e| features_error(e, target))?;
    if !features.can_bind() {
        return Err(ImError::Protocol(
            "IM&P offers no resource binding after authentication".into(),
        ));
    }
    let (stream, jid) = bind(stream, &bare, resource).await?;
    Ok(LoggedIn { stream, jid })
}

fn header(domain: &str) -> StreamHeader<'_> {
    StreamHeader {
        to: Some(Cow::Borrowed(domain)),
        from: None,
        id: None,
    }
}

/// TCP, stream header and features, STARTTLS when configured.
async fn connect(target: &Target) -> Result<(Stream, StreamFeatures), ImError> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| ImError::Connect(format!("{}: {e}", target.address())))?;
    let _ = tcp.set_nodelay(true);
    let io = BufStream::new(Limited::new(Transport::Plain(tcp), target.max_stanza_bytes));
    let (features, stream) = open_stream(io, target).await?;
    let Some(tls) = &target.tls else {
        if features.starttls.as_ref().is_some_and(|s| s.required) {
            return Err(ImError::Tls(format!(
                "IM&P at {} requires STARTTLS but plain mode is configured (set TLS to starttls)",
                target.address()
            )));
        }
        return Ok((stream, features));
    };
    if !features.can_starttls() {
        return Err(ImError::Tls(format!(
            "IM&P at {} does not offer STARTTLS (plain mode would send the password in clear)",
            target.address()
        )));
    }
    let tcp = starttls(stream).await?;
    let name = rustls::pki_types::ServerName::try_from(target.domain.clone())
        .map_err(|e| ImError::Tls(format!("domain {:?} as TLS name: {e}", target.domain)))?;
    // RFC 6120 §13.7.2.1 / RFC 7590: the certificate must name the XMPP domain (IM&P's
    // cup-xmpp certificate carries it), not the address we connected to.
    let tls_stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| {
            ImError::Tls(format!(
                "handshake with {}: {}",
                target.address(),
                tls_reason(&e)
            ))
        })?;
    let io = BufStream::new(Limited::new(
        Transport::Tls(Box::new(tls_stream)),
        target.max_stanza_bytes,
    ));
    let (features, stream) = open_stream(io, target).await?;
    Ok((stream, features))
}

/// Send our stream header, check the server's, receive its features.
async fn open_stream(
    io: BufStream<Limited<Transport>>,
    target: &Target,
) -> Result<(StreamFeatures, Stream), ImError> {
    let pending: PendingFeaturesRecv<_> = initiate_stream(
        io,
        tokio_xmpp::parsers::ns::JABBER_CLIENT,
        header(&target.domain),
        target.timeouts,
    )
    .await
    .map_err(|e| io_error(e, "opening the XMPP stream"))?;
    if let Some(from) = pending.header().from.as_deref() {
        if !from.eq_ignore_ascii_case(&target.domain) {
            return Err(wrong_domain(target, &format!("it answers as '{from}'")));
        }
    }
    pending
        .recv_features()
        .await
        .map_err(|e| features_error(e, target))
}

/// `<starttls/>`, wait for `<proceed/>`, hand back the raw TCP stream.
async fn starttls(mut stream: Stream) -> Result<TcpStream, ImError> {
    stream
        .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
            starttls::Request,
        )))
        .await
        .map_err(|e| io_error(e, "sending STARTTLS"))?;
    loop {
        match stream
            .next()
            .await
            .map(|r| r.and_then(|e| e.into_read_error()))
        {
            Some(Ok(XmppStreamElement::Starttls(starttls::Nonza::Proceed(_)))) => break,
            Some(Ok(XmppStreamElement::StreamError(e))) => {
                return Err(ImError::Tls(format!("IM&P refused STARTTLS: {e}")))
            }
            Some(Ok(other)) => {
                return Err(ImError::Tls(format!(
                    "IM&P answered STARTTLS with {}",
                    element_name(&other)
                )))
            }
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(e)) => return Err(read_error(e, "waiting for STARTTLS to proceed")),
            None => {
                return Err(ImError::Tls(
                    "IM&P closed the connection at STARTTLS".into(),
                ))
            }
        }
    }
    // Nothing may follow <proceed/> before the TLS handshake (RFC 6120 §5.4.3.3), so the
    // read buffer is empty and can be dropped with the parser.
    match stream.into_inner().into_inner().into_inner() {
        Transport::Plain(tcp) => Ok(tcp),
        Transport::Tls(_) => Err(ImError::Tls("STARTTLS inside TLS".into())),
    }
}

/// Resource binding (RFC 6120 §7): request `resource`, accept what the server assigns.
async fn bind(
    mut stream: Stream,
    bare: &BareJid,
    resource: &str,
) -> Result<(Stream, FullJid), ImError> {
    let id = "bind-1";
    let iq = Iq::from_set(id, BindQuery::new(Some(resource.to_owned())));
    stream
        .send(&XmppStreamElement::Stanza(Stanza::Iq(iq)))
        .await
        .map_err(|e| io_error(e, "binding a resource"))?;
    loop {
        match stream
            .next()
            .await
            .map(|r| r.and_then(|e| e.into_read_error()))
        {
            Some(Ok(XmppStreamElement::Stanza(Stanza::Iq(Iq::Result {
                id: rid,
                payload,
                ..
            }))))
                if rid == id =>
            {
                let payload = payload
                    .ok_or_else(|| ImError::Protocol("empty resource binding answer".into()))?;
                let bound = BindResponse::try_from(payload)
                    .map_err(|e| ImError::Protocol(format!("resource binding answer: {e}")))?;
                let jid: FullJid = bound.jid;
                if jid.to_bare() != *bare {
                    return Err(ImError::Protocol(format!(
                        "IM&P bound {jid}, not a resource of {bare}"
                    )));
                }
                return Ok((stream, jid));
            }
            Some(Ok(XmppStreamElement::Stanza(Stanza::Iq(Iq::Error {
                id: rid, error, ..
            }))))
                if rid == id =>
            {
                return Err(ImError::Protocol(format!(
                    "IM&P refused resource binding: {:?}",
                    error.defined_condition
                )))
            }
            Some(Ok(XmppStreamElement::StreamError(e))) => return Err(stream_error(e)),
            Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(e)) => return Err(read_error(e, "binding a resource")),
            None => {
                return Err(ImError::Connect(
                    "IM&P closed the stream at resource binding".into(),
                ))
            }
        }
    }
}

fn wrong_domain(target: &Target, detail: &str) -> ImError {
    ImError::WrongDomain {
        expected: target.domain.clone(),
        detail: format!(
            "IM&P at {} does not serve '{}': {detail} (check the XMPP domain setting)",
            target.address(),
            target.domain
        ),
    }
}

fn features_error(e: RecvFeaturesError, target: &Target) -> ImError {
    match e {
        RecvFeaturesError::Io(e) => io_error(e, "reading the stream features"),
        RecvFeaturesError::StreamError(e) if e.0.condition == DefinedCondition::HostUnknown => {
            let text = e.0.get_best_text(vec!["en"]).map(|(_, t)| t.clone());
            wrong_domain(
                target,
                &format!(
                    "host-unknown{}",
                    text.map(|t| format!(" ({t})")).unwrap_or_default()
                ),
            )
        }
        RecvFeaturesError::StreamError(e) => stream_error(e),
    }
}

/// A stream error from the server as the error that fits.
pub(crate) fn stream_error(e: ReceivedStreamError) -> ImError {
    let text =
        e.0.get_best_text(vec!["en"])
            .map(|(_, t)| format!(": {t}"))
            .unwrap_or_default();
    let condition = format!("{:?}", e.0.condition);
    match e.0.condition {
        DefinedCondition::NotWellFormed
        | DefinedCondition::InvalidXml
        | DefinedCondition::PolicyViolation => {
            ImError::Protocol(format!("IM&P closed the stream: {condition}{text}"))
        }
        _ => ImError::Connect(format!("IM&P closed the stream: {condition}{text}")),
    }
}

fn sasl_error(e: tokio_xmpp::Error, offered: &std::collections::BTreeSet<String>) -> ImError {
    use tokio_xmpp::error::AuthError;
    match e {
        tokio_xmpp::Error::Auth(AuthError::Fail(_)) => ImError::AuthFailed,
        tokio_xmpp::Error::Auth(AuthError::NoMechanism) => ImError::Protocol(format!(
            "no SASL mechanism in common with IM&P (it offers {offered:?}; ucbridge supports \
             SCRAM-SHA-256, SCRAM-SHA-1, PLAIN)"
        )),
        tokio_xmpp::Error::Auth(e) => ImError::Protocol(format!("SASL: {e}")),
        tokio_xmpp::Error::Io(e) => io_error(e, "authenticating"),
        tokio_xmpp::Error::StreamError(e) => stream_error(e),
        other => ImError::Connect(format!("authenticating: {other}")),
    }
}

/// An io error, telling hostile input (too large, malformed, invalid UTF-8) from a
/// broken connection.
pub(crate) fn io_error(e: std::io::Error, step: &str) -> ImError {
    if let Some(limit) = e.get_ref().and_then(|r| r.downcast_ref::<StanzaTooLarge>()) {
        return ImError::Hostile(limit.to_string());
    }
    // The parser reports a connection cut mid-stream (a restarting IM&P, a network
    // failure) as invalid data; it is a lost connection, not hostile input.
    if let Some(rxml::Error::InvalidEof(_)) =
        e.get_ref().and_then(|r| r.downcast_ref::<rxml::Error>())
    {
        return ImError::Connect(format!("{step}: IM&P closed the connection mid-stream"));
    }
    match e.kind() {
        std::io::ErrorKind::InvalidData => ImError::Hostile(format!("{step}: {e}")),
        std::io::ErrorKind::TimedOut => ImError::Timeout("the server went silent"),
        _ => ImError::Connect(format!("{step}: {e}")),
    }
}

pub(crate) fn read_error(e: ReadError, step: &str) -> ImError {
    match e {
        ReadError::HardError(e) => io_error(e, step),
        ReadError::ParseError(e) => ImError::Hostile(format!("{step}: malformed XML: {e}")),
        ReadError::StreamFooterReceived => {
            ImError::Connect(format!("{step}: IM&P closed the stream"))
        }
        ReadError::SoftTimeout => ImError::Timeout("the server went silent"),
    }
}

fn tls_reason(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|r| r.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => format!(
            "the server's certificate is not trusted ({c:?}); configure the CA that signed \
             IM&P's cup-xmpp certificate"
        ),
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}

pub(crate) fn element_name(e: &XmppStreamElement) -> &'static str {
    match e {
        XmppStreamElement::Stanza(_) => "a stanza",
        XmppStreamElement::Sasl(_) => "a SASL element",
        XmppStreamElement::Starttls(_) => "a STARTTLS element",
        XmppStreamElement::ComponentHandshake(_) => "a component handshake",
        XmppStreamElement::StreamError(_) => "a stream error",
        XmppStreamElement::SM(_) => "a stream-management element",
    }
}
