//! CUNI emulator: the SOAP `MessageEventService` (subscribe, renew, unsubscribe, getVersion)
//! and the Notifier that POSTs `<messageEvent>` bodies to subscribers' callback URLs.
//!
//! Shapes: WSDL (fixture `cuni-MessageEventService.wsdl`), DevNet subscribe sample
//! (`cuni-subscribe-request.xml`), CUNI guide event (`cuni-message-event.xml`). Behaviour
//! (notes §3): administrator Basic auth; a subscription with the same callback URL replaces
//! the previous one; an empty event list or `ALL_EVENTS` means every event; events are
//! not replayed when a callback fails (lab choice matching "events will be lost").

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};
use tokio::sync::mpsc;

use super::store::Msg;
use super::{lock, CucState};
use crate::rest::Identity;

const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const NS_EVENT: &str = "http://unity.cisco.com/messageeventservice/event";
const NS_TYPES: &str = "http://event.messageeventservice.unity.cisco.com";

/// A subscription as tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSubscription {
    pub id: String,
    pub callback_url: String,
    pub aliases: Vec<String>,
    /// Milliseconds since the epoch.
    pub expires_at_ms: i64,
    pub keep_alive: bool,
}

struct Sub {
    info: LabSubscription,
    aliases: HashSet<String>,
    /// Event types asked for; empty = all.
    events: HashSet<String>,
    tx: mpsc::UnboundedSender<String>,
}

/// Subscriptions and the Notifier's counters.
#[derive(Default)]
pub(crate) struct Notifier {
    subs: std::sync::Mutex<HashMap<String, Sub>>,
    pub(crate) sent: Arc<AtomicU64>,
    pub(crate) failed: Arc<AtomicU64>,
}

/// What happened to a message, in CUNI's words (WSDL `ShortEventTypeEnum`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum EventKind {
    New,
    /// Marked read in the inbox.
    Saved,
    Unread,
    Deleted,
}

impl EventKind {
    fn name(self) -> &'static str {
        match self {
            EventKind::New => "NEW_MESSAGE",
            EventKind::Saved => "SAVED_MESSAGE",
            EventKind::Unread => "UNREAD_MESSAGE",
            EventKind::Deleted => "DELETED_MESSAGE",
        }
    }
}

/// `hh:mm:ss AM MM/dd/yyyy`, the CUNI guide's time format (fixture `cuni-message-event.xml`).
fn cuni_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%I:%M:%S %p %m/%d/%Y").to_string())
        .unwrap_or_default()
}

/// The event body (attributes in the order of the CUNI guide's example).
pub(crate) fn event_body(
    subscription_id: &str,
    kind: &str,
    alias: &str,
    display: &str,
    usn: u64,
    msg: Option<&Msg>,
) -> String {
    let mut w = Writer::new(Vec::new());
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", None, None)));
    let mut root = BytesStart::new("messageEvent");
    root.push_attribute(("subscriptionId", subscription_id));
    root.push_attribute(("eventType", kind));
    root.push_attribute(("eventTime", cuni_time(super::store::now_ms()).as_str()));
    root.push_attribute(("mailboxId", alias));
    root.push_attribute(("displayName", display));
    root.push_attribute(("USN", usn.to_string().as_str()));
    match msg {
        Some(m) => {
            let _ = w.write_event(Event::Start(root));
            let mut info = BytesStart::new("messageInfo");
            // CUNI ids are CUMI's without the `0:` prefix (notes §0.2).
            info.push_attribute(("messageId", m.id.trim_start_matches("0:")));
            info.push_attribute(("receiveTime", cuni_time(m.arrival_ms).as_str()));
            info.push_attribute(("uid", m.imap_uid.to_string().as_str()));
            info.push_attribute(("msgType", "Voice"));
            let priority = if m.priority == "Urgent" {
                "Urgent"
            } else {
                "Normal-Priority"
            };
            info.push_attribute(("priority", priority));
            let sender = if m.from_sub {
                m.from_smtp.as_str()
            } else {
                "null"
            };
            info.push_attribute(("sender", sender));
            let ani = if m.caller_number.is_empty() {
                "null"
            } else {
                m.caller_number.as_str()
            };
            info.push_attribute(("callerAni", ani));
            let _ = w.write_event(Event::Empty(info));
            let _ = w.write_event(Event::End(BytesEnd::new("messageEvent")));
        }
        None => {
            let _ = w.write_event(Event::Empty(root));
        }
    }
    String::from_utf8_lossy(&w.into_inner()).into_owned()
}

impl Notifier {
    /// Queue an event for every live subscription watching `alias`.
    pub(crate) fn emit(&self, kind: EventKind, alias: &str, display: &str, usn: u64, msg: &Msg) {
        let now = super::store::now_ms();
        let subs = lock(&self.subs);
        for sub in subs.values() {
            if sub.info.expires_at_ms < now || !sub.aliases.contains(&alias.to_lowercase()) {
                continue;
            }
            if !sub.events.is_empty()
                && !sub.events.contains(kind.name())
                && !sub.events.contains("ALL_EVENTS")
            {
                continue;
            }
            let body = event_body(&sub.info.id, kind.name(), alias, display, usn, Some(msg));
            let _ = sub.tx.send(body);
        }
    }

    /// Forget every subscription without a word to the subscribers (their Notifier tasks
    /// end with their queues).
    pub(crate) fn forget_all(&self) {
        lock(&self.subs).clear();
    }

    pub(crate) fn subscriptions(&self) -> Vec<LabSubscription> {
        let mut v: Vec<_> = lock(&self.subs).values().map(|s| s.info.clone()).collect();
        v.sort_by(|a, b| a.callback_url.cmp(&b.callback_url));
        v
    }
}

/// What a SOAP request carried: the operation and each element's text by its path of
/// local names below the operation (`resourceIdList/string`, ...).
struct SoapRequest {
    operation: String,
    values: Vec<(String, String)>,
}

impl SoapRequest {
    fn parse(body: &[u8]) -> Result<SoapRequest, String> {
        let mut reader = Reader::from_reader(body);
        let mut path: Vec<String> = Vec::new();
        let mut operation = None;
        let mut values = Vec::new();
        let below_op = |path: &[String]| -> Option<String> {
            // Envelope/Body/<operation>/...
            (path.len() > 3).then(|| path[3..].join("/"))
        };
        loop {
            match reader.read_event() {
                Ok(Event::Start(e)) => {
                    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                    path.push(name);
                    if path.len() == 3 && path[1] == "Body" {
                        operation = Some(path[2].clone());
                    }
                }
                Ok(Event::Empty(e)) => {
                    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                    if path.len() == 2 && path[1] == "Body" {
                        operation = Some(name.clone());
                    }
                    path.push(name);
                    if let Some(p) = below_op(&path) {
                        values.push((p, String::new()));
                    }
                    path.pop();
                }
                Ok(Event::Text(t)) => {
                    let text = t.unescape().map_err(|e| e.to_string())?;
                    if let Some(p) = below_op(&path) {
                        if !text.trim().is_empty() {
                            values.push((p, text.trim().to_owned()));
                        }
                    }
                }
                Ok(Event::End(_)) => {
                    path.pop();
                }
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(e) => return Err(format!("malformed XML: {e}")),
            }
        }
        let operation = operation.ok_or("no operation in the SOAP Body")?;
        Ok(SoapRequest { operation, values })
    }

    fn all(&self, path: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(p, v)| p == path && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn one(&self, path: &str) -> Option<String> {
        self.all(path).into_iter().next()
    }
}

fn soap_response(operation: &str, fill: impl FnOnce(&mut Writer<Vec<u8>>)) -> Response {
    let mut w = Writer::new(Vec::new());
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    let mut env = BytesStart::new("soap:Envelope");
    env.push_attribute(("xmlns:soap", NS_SOAP));
    let _ = w.write_event(Event::Start(env));
    let _ = w.write_event(Event::Start(BytesStart::new("soap:Body")));
    let mut op = BytesStart::new(format!("ns1:{operation}Response"));
    op.push_attribute(("xmlns:ns1", NS_EVENT));
    op.push_attribute(("xmlns:ns2", NS_TYPES));
    let _ = w.write_event(Event::Start(op));
    fill(&mut w);
    let _ = w.write_event(Event::End(BytesEnd::new(format!(
        "ns1:{operation}Response"
    ))));
    let _ = w.write_event(Event::End(BytesEnd::new("soap:Body")));
    let _ = w.write_event(Event::End(BytesEnd::new("soap:Envelope")));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        w.into_inner(),
    )
        .into_response()
}

fn text_el(w: &mut Writer<Vec<u8>>, name: &str, value: &str) {
    let _ = w.write_event(Event::Start(BytesStart::new(name)));
    let _ = w.write_event(Event::Text(BytesText::new(value)));
    let _ = w.write_event(Event::End(BytesEnd::new(name)));
}

/// A SOAP 1.1 fault with the WSDL's `FaultDetail`.
fn fault(status: StatusCode, code: &str, message: &str) -> Response {
    let mut w = Writer::new(Vec::new());
    let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    let mut env = BytesStart::new("soap:Envelope");
    env.push_attribute(("xmlns:soap", NS_SOAP));
    let _ = w.write_event(Event::Start(env));
    let _ = w.write_event(Event::Start(BytesStart::new("soap:Body")));
    let _ = w.write_event(Event::Start(BytesStart::new("soap:Fault")));
    text_el(&mut w, "faultcode", "soap:Client");
    text_el(&mut w, "faultstring", message);
    let _ = w.write_event(Event::Start(BytesStart::new("detail")));
    let mut detail = BytesStart::new("FaultDetail");
    detail.push_attribute(("xmlns", NS_EVENT));
    let _ = w.write_event(Event::Start(detail));
    text_el(&mut w, "detailMessage", message);
    text_el(&mut w, "errorCode", code);
    let _ = w.write_event(Event::End(BytesEnd::new("FaultDetail")));
    let _ = w.write_event(Event::End(BytesEnd::new("detail")));
    let _ = w.write_event(Event::End(BytesEnd::new("soap:Fault")));
    let _ = w.write_event(Event::End(BytesEnd::new("soap:Body")));
    let _ = w.write_event(Event::End(BytesEnd::new("soap:Envelope")));
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        w.into_inner(),
    )
        .into_response()
}

/// `POST /messageeventservice/services/MessageEventService`.
pub(crate) async fn service(
    State(st): State<Arc<CucState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = super::unavailable_answer(&st) {
        return r;
    }
    match st.auth.authenticate(&headers) {
        Ok(Identity::Admin) => {}
        // Lab choice: CUNI is for administrators (notes §3); end users get a fault.
        Ok(Identity::User { .. }) => {
            return fault(
                StatusCode::INTERNAL_SERVER_ERROR,
                "AUTHORIZATION_FAILED",
                "CUNI requires an administrator account",
            )
        }
        Err(reject) => return reject.into_response(),
    }
    let request = match SoapRequest::parse(&body) {
        Ok(r) => r,
        Err(e) => return fault(StatusCode::INTERNAL_SERVER_ERROR, "INVALID_REQUEST", &e),
    };
    match request.operation.as_str() {
        "subscribe" => subscribe(&st, &request),
        "renew" => renew(&st, &request),
        "unsubscribe" => {
            let id = request.one("subscriptionId").unwrap_or_default();
            match lock(&st.notifier.subs).remove(&id) {
                Some(_) => soap_response("unsubscribe", |_| {}),
                None => fault(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "SUBSCRIPTION_NOT_FOUND",
                    &format!("no subscription {id}"),
                ),
            }
        }
        "getVersion" => soap_response("getVersion", |w| {
            text_el(w, "ns1:out", &st.config.version);
        }),
        "subscribeForAllResources" => fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "NOT_SUPPORTED",
            // CUNI FAQ: not supported (notes §3).
            "subscribeForAllResources is not supported",
        ),
        other => fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INVALID_REQUEST",
            &format!("unknown operation {other}"),
        ),
    }
}

fn parse_expiration(text: Option<String>) -> Result<i64, String> {
    let text = text.ok_or("expiration is required")?;
    chrono::DateTime::parse_from_rfc3339(&text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("bad expiration {text:?}: {e}"))
}

fn info_out(w: &mut Writer<Vec<u8>>, sub: &LabSubscription) {
    let _ = w.write_event(Event::Start(BytesStart::new("ns1:out")));
    let expiration = chrono::DateTime::from_timestamp_millis(sub.expires_at_ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default();
    text_el(w, "ns2:expiration", &expiration);
    text_el(w, "ns2:subscriptionId", &sub.id);
    let _ = w.write_event(Event::End(BytesEnd::new("ns1:out")));
}

fn subscribe(st: &Arc<CucState>, req: &SoapRequest) -> Response {
    let bad = |m: &str| fault(StatusCode::INTERNAL_SERVER_ERROR, "INVALID_PARAMETER", m);
    let Some(url) = req.one("callbackServiceInfo/callbackServiceUrl") else {
        return bad("callbackServiceUrl is required");
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return bad("callbackServiceUrl must be an http(s) URL");
    }
    let expires_at_ms = match parse_expiration(req.one("expiration")) {
        Ok(t) if t > super::store::now_ms() => t,
        Ok(_) => return bad("expiration is in the past"),
        Err(e) => return bad(&e),
    };
    let aliases = req.all("resourceIdList/string");
    if aliases.is_empty() {
        return bad("resourceIdList is empty");
    }
    let unknown: Vec<&String> = aliases
        .iter()
        .filter(|a| st.user_by_alias(a).is_none())
        .collect();
    if !unknown.is_empty() {
        return bad(&format!("unknown resource ids: {unknown:?}"));
    }
    let keep_alive = req
        .one("keepAliveInterval")
        .and_then(|v| v.parse::<i64>().ok())
        .is_some_and(|v| v > 0);
    let username = req.one("callbackServiceInfo/username");
    let password = req.one("callbackServiceInfo/password");
    let info = LabSubscription {
        id: uuid::Uuid::new_v4().to_string(),
        callback_url: url.clone(),
        aliases: aliases.clone(),
        expires_at_ms,
        keep_alive,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let auth = username.map(|u| {
        let pair = format!("{u}:{}", password.unwrap_or_default());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    });
    let keep_alive_every = keep_alive.then_some(st.config.cuni_keep_alive_every);
    tokio::spawn(deliver(
        rx,
        DeliveryTarget {
            url: url.clone(),
            auth,
            subscription_id: info.id.clone(),
            keep_alive_every,
            sent: st.notifier.sent.clone(),
            failed: st.notifier.failed.clone(),
        },
    ));
    let sub = Sub {
        aliases: aliases.iter().map(|a| a.to_lowercase()).collect(),
        events: req
            .all("eventTypeList/string")
            .into_iter()
            .chain(req.all("eventTypeList/ShortEventTypeEnum"))
            .collect(),
        info: info.clone(),
        tx,
    };
    {
        let mut subs = lock(&st.notifier.subs);
        // "A repeat subscription with the same callback URL deletes the previous one"
        // (CUNI FAQ, notes §3). Dropping its sender ends its delivery task.
        subs.retain(|_, s| s.info.callback_url != url);
        subs.insert(info.id.clone(), sub);
    }
    soap_response("subscribe", |w| info_out(w, &info))
}

fn renew(st: &Arc<CucState>, req: &SoapRequest) -> Response {
    let id = req.one("subscriptionId").unwrap_or_default();
    let expires_at_ms = match parse_expiration(req.one("expiration")) {
        Ok(t) => t,
        Err(e) => return fault(StatusCode::INTERNAL_SERVER_ERROR, "INVALID_PARAMETER", &e),
    };
    let mut subs = lock(&st.notifier.subs);
    let Some(sub) = subs.get_mut(&id) else {
        return fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SUBSCRIPTION_NOT_FOUND",
            &format!("no subscription {id}"),
        );
    };
    sub.info.expires_at_ms = expires_at_ms;
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let expiration = chrono::DateTime::from_timestamp_millis(expires_at_ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default();
    let id = sub.info.id.clone();
    drop(subs);
    soap_response("renew", |w| {
        let _ = w.write_event(Event::Start(BytesStart::new("ns1:out")));
        text_el(w, "ns2:expirationTime", &expiration);
        text_el(w, "ns2:subscriptionId", &id);
        text_el(w, "ns2:subscriptionTime", &now);
        let _ = w.write_event(Event::End(BytesEnd::new("ns1:out")));
    })
}

struct DeliveryTarget {
    url: String,
    auth: Option<String>,
    subscription_id: String,
    keep_alive_every: Option<Duration>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

/// One subscription's Notifier: POSTs events in order; KEEP_ALIVE when idle, if asked.
async fn deliver(mut rx: mpsc::UnboundedReceiver<String>, target: DeliveryTarget) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "CUNI lab: cannot build the callback client");
            return;
        }
    };
    let idle = target
        .keep_alive_every
        .unwrap_or(Duration::from_secs(24 * 3600));
    loop {
        let body = match tokio::time::timeout(idle, rx.recv()).await {
            Ok(Some(body)) => body,
            // The subscription was replaced or removed.
            Ok(None) => return,
            Err(_) if target.keep_alive_every.is_some() => {
                event_body(&target.subscription_id, "KEEP_ALIVE", "", "", 0, None)
            }
            Err(_) => continue,
        };
        let mut request = http
            .post(&target.url)
            .header(header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body);
        if let Some(auth) = &target.auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => {
                target.sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                target.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(status = %r.status(), url = %target.url, "CUNI lab: callback refused");
            }
            Err(e) => {
                target.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, url = %target.url, "CUNI lab: callback failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_devnet_subscribe_sample_parses() {
        let Some(body) = ucbridge_testkit::fixture_bytes("cuc-samples/cuni-subscribe-request.xml")
        else {
            return;
        };
        let r = SoapRequest::parse(&body).unwrap();
        assert_eq!(r.operation, "subscribe");
        assert_eq!(
            r.all("resourceIdList/string"),
            ["VM_USER_1_ALIAS", "VM_USER_2_ALIAS"]
        );
        assert_eq!(r.all("eventTypeList/string"), ["ALL_EVENTS"]);
        assert_eq!(
            r.one("callbackServiceInfo/callbackServiceUrl").as_deref(),
            Some("http://APP_HOST:5000/incomingMessages")
        );
        assert!(parse_expiration(r.one("expiration")).is_ok());
    }

    /// The lab's events carry exactly the attributes of the CUNI guide's example.
    #[test]
    fn events_have_the_guides_shape() {
        let Some(sample) = ucbridge_testkit::fixture_bytes("cuc-samples/cuni-message-event.xml")
        else {
            return;
        };
        fn attrs(xml: &[u8]) -> Vec<(String, Vec<String>)> {
            let mut reader = Reader::from_reader(xml);
            let mut out = Vec::new();
            loop {
                match reader.read_event() {
                    Ok(Event::Start(e) | Event::Empty(e)) => out.push((
                        String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                        e.attributes()
                            .flatten()
                            .map(|a| String::from_utf8_lossy(a.key.as_ref()).into_owned())
                            .collect(),
                    )),
                    Ok(Event::Eof) => return out,
                    Ok(_) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }
        let msg = Msg {
            id: "0:72204bd7-e5c3-446e-adb6-ae5f80db26fb".into(),
            folder: super::super::store::Folder::Inbox,
            subject: "s".into(),
            read: false,
            priority: "Normal",
            from_display: "x".into(),
            from_smtp: "connectionserver".into(),
            from_dtmf: None,
            from_sub: false,
            caller_number: "".into(),
            caller_name: "".into(),
            to_dtmf: None,
            arrival_ms: 1_225_408_540_000,
            modification_ms: 0,
            duration_ms: 1000,
            imap_uid: 543,
            tone_hz: 400,
            format: Default::default(),
            audio: None,
        };
        let ours = event_body(
            "s-1",
            "SAVED_MESSAGE",
            "abell",
            "Alexander Bell",
            2265,
            Some(&msg),
        );
        assert_eq!(attrs(ours.as_bytes()), attrs(&sample));
        assert!(ours.contains("messageId=\"72204bd7-e5c3-446e-adb6-ae5f80db26fb\""));
        assert!(ours.contains("callerAni=\"null\""));
        // 2008-10-30 23:15:40 UTC in the guide's format.
        assert_eq!(cuni_time(1_225_408_540_000), "11:15:40 PM 10/30/2008");
    }
}
