//! CUNI emulator: the SOAP `MessageEventService` (subscribe, renew, unsubscribe,
//! getSubscriptionStatus, getSubscribedResourceIdList, add/remove resource id/list,
//! getVersion; subscribeForAllResources answers CUC's "not supported") and the Notifier that POSTs `<messageEvent>` bodies to subscribers' callback URLs.
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
use chrono::{FixedOffset, TimeZone};
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
        "getSubscriptionStatus" => subscription_status(&st, &request),
        "getSubscribedResourceIdList" => subscribed_resources(&st, &request),
        "addResourceIdToSubscription" => change_resources(&st, &request, Change::AddOne),
        "addResourceListToSubscription" => change_resources(&st, &request, Change::AddList),
        "removeResourceIdFromSubscription" => change_resources(&st, &request, Change::RemoveOne),
        "removeResourceListFromSubscription" => change_resources(&st, &request, Change::RemoveList),
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

/// `expiration` of subscribe/renew, in ms since the epoch. `local` is the zone a value
/// without one is read in (see [`parse_xsd_datetime`]).
fn parse_expiration(text: Option<String>, local: FixedOffset) -> Result<i64, String> {
    let text = text.ok_or("expiration is required")?;
    parse_xsd_datetime(&text, local).map_err(|e| format!("bad expiration {text:?}: {e}"))
}

/// An `xsd:dateTime` (XML Schema 1.0 Part 2 §3.2.7): `YYYY-MM-DDThh:mm:ss[.s+]` then `Z`,
/// `±hh:mm` or nothing; `24:00:00` is midnight of the next day. The zone is optional in
/// the schema type the WSDL uses; a value without one is read in the server's zone
/// (`local`), as the Java SOAP stack behind CUNI does with the JVM's default zone
/// (inferred, not documented by Cisco). Lab choice, stricter than XSD: years of four
/// digits only (no sign, no expanded years).
pub(crate) fn parse_xsd_datetime(text: &str, local: FixedOffset) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_ascii() {
        return Err("not an xsd:dateTime".into());
    }
    let (body, zone) = split_zone(text)?;
    let b = body.as_bytes();
    let shape_ok = b.len() >= 19
        && b.iter().take(19).enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
        && match &body[19..] {
            "" => true,
            fraction => {
                fraction.len() > 1
                    && fraction.starts_with('.')
                    && fraction[1..].bytes().all(|c| c.is_ascii_digit())
            }
        };
    if !shape_ok {
        return Err("expected YYYY-MM-DDThh:mm:ss[.fff][Z|+hh:mm|-hh:mm]".into());
    }
    // 24:00:00 (fraction all zeros) is the first instant of the next day.
    let end_of_day = &body[11..19] == "24:00:00" && body[19..].trim_matches(['.', '0']).is_empty();
    let parsed = if end_of_day {
        chrono::NaiveDate::parse_from_str(&body[..10], "%Y-%m-%d")
            .ok()
            .and_then(|d| d.succ_opt())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    } else {
        chrono::NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S%.f").ok()
    };
    let naive = parsed.ok_or("no such date or time")?;
    zone.unwrap_or(local)
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| "no such instant".into())
}

/// The time zone suffix of an xsd:dateTime, if any: `Z` or `±hh:mm` (hh ≤ 14, ±14:00 at most).
fn split_zone(text: &str) -> Result<(&str, Option<FixedOffset>), String> {
    if let Some(body) = text.strip_suffix('Z') {
        return Ok((body, FixedOffset::east_opt(0)));
    }
    let n = text.len();
    let b = text.as_bytes();
    if n < 6 || !matches!(b[n - 6], b'+' | b'-') || b[n - 3] != b':' {
        return Ok((text, None));
    }
    let bad = || format!("bad time zone {:?}", &text[n - 6..]);
    let hours: i32 = text[n - 5..n - 3].parse().map_err(|_| bad())?;
    let minutes: i32 = text[n - 2..].parse().map_err(|_| bad())?;
    if hours > 14 || minutes > 59 || (hours == 14 && minutes > 0) {
        return Err(bad());
    }
    let seconds = (hours * 60 + minutes) * 60;
    let offset = if b[n - 6] == b'-' {
        FixedOffset::west_opt(seconds)
    } else {
        FixedOffset::east_opt(seconds)
    };
    Ok((&text[..n - 6], Some(offset.ok_or_else(bad)?)))
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
    let expires_at_ms =
        match parse_expiration(req.one("expiration"), st.config.cuni_server_utc_offset) {
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
    let expires_at_ms =
        match parse_expiration(req.one("expiration"), st.config.cuni_server_utc_offset) {
            Ok(t) => t,
            Err(e) => return fault(StatusCode::INTERNAL_SERVER_ERROR, "INVALID_PARAMETER", &e),
        };
    let mut subs = lock(&st.notifier.subs);
    let sub = match live(&mut subs, &id) {
        Ok(s) => s,
        Err(r) => return r,
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

/// The live subscription `id`, or the fault for an unknown one. An expired subscription
/// counts as gone and is dropped: whether CUC still answers for it after `expiration` is
/// not public, and "gone" is the stricter option (the subscriber must subscribe again).
fn live<'a>(subs: &'a mut HashMap<String, Sub>, id: &str) -> Result<&'a mut Sub, Response> {
    let now = super::store::now_ms();
    if subs.get(id).is_some_and(|s| s.info.expires_at_ms < now) {
        subs.remove(id);
    }
    subs.get_mut(id).ok_or_else(|| {
        fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SUBSCRIPTION_NOT_FOUND",
            &format!("no subscription {id}"),
        )
    })
}

fn subscription_id(req: &SoapRequest) -> Result<String, Response> {
    req.one("subscriptionId").ok_or_else(|| {
        fault(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INVALID_PARAMETER",
            "subscriptionId is required",
        )
    })
}

/// `getSubscriptionStatus(subscriptionId)`: the WSDL types its `out` as `SubscriptionInfo`
/// (`expiration`, `subscriptionId`), the same as `subscribe` returns. The WSDL also declares
/// a richer `SubscriptionStatusResponse` type, but no operation uses it.
fn subscription_status(st: &CucState, req: &SoapRequest) -> Response {
    let id = match subscription_id(req) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let mut subs = lock(&st.notifier.subs);
    let info = match live(&mut subs, &id) {
        Ok(sub) => sub.info.clone(),
        Err(r) => return r,
    };
    drop(subs);
    soap_response("getSubscriptionStatus", |w| info_out(w, &info))
}

/// `getSubscribedResourceIdList(subscriptionId)` → `out` of type `ArrayOfString`: the
/// aliases in the order they were subscribed, as they were spelled.
fn subscribed_resources(st: &CucState, req: &SoapRequest) -> Response {
    let id = match subscription_id(req) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let mut subs = lock(&st.notifier.subs);
    let aliases = match live(&mut subs, &id) {
        Ok(sub) => sub.info.aliases.clone(),
        Err(r) => return r,
    };
    drop(subs);
    soap_response("getSubscribedResourceIdList", |w| {
        let _ = w.write_event(Event::Start(BytesStart::new("ns1:out")));
        for alias in &aliases {
            text_el(w, "ns1:string", alias);
        }
        let _ = w.write_event(Event::End(BytesEnd::new("ns1:out")));
    })
}

/// The four operations that edit a subscription's resources (WSDL element names).
#[derive(Debug, Clone, Copy)]
enum Change {
    /// `addResourceIdToSubscription(subscriptionId, resourceId)`.
    AddOne,
    /// `addResourceListToSubscription(subscriptionId, resourceIdList/string*)`.
    AddList,
    /// `removeResourceIdFromSubscription(subscriptionId, resourceIdList)`: one id, in an
    /// element the WSDL names `resourceIdList` but types `xsd:string`.
    RemoveOne,
    /// `removeResourceListFromSubscription(subscriptionId, resourceIdList/string*)`.
    RemoveList,
}

impl Change {
    fn operation(self) -> &'static str {
        match self {
            Change::AddOne => "addResourceIdToSubscription",
            Change::AddList => "addResourceListToSubscription",
            Change::RemoveOne => "removeResourceIdFromSubscription",
            Change::RemoveList => "removeResourceListFromSubscription",
        }
    }

    fn ids(self, req: &SoapRequest) -> Vec<String> {
        match self {
            Change::AddOne => req.all("resourceId"),
            Change::RemoveOne => req.all("resourceIdList"),
            Change::AddList | Change::RemoveList => req.all("resourceIdList/string"),
        }
    }
}

/// Add or remove aliases, all or nothing. Faults (stricter options, CUC's answers are not
/// public): an unknown alias on add, as `subscribe` refuses one; an alias the subscription
/// does not hold on remove; an empty list. Adding an alias already held changes nothing.
fn change_resources(st: &CucState, req: &SoapRequest, change: Change) -> Response {
    let bad = |m: &str| fault(StatusCode::INTERNAL_SERVER_ERROR, "INVALID_PARAMETER", m);
    let id = match subscription_id(req) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let ids = change.ids(req);
    if ids.is_empty() {
        return bad("no resource id given");
    }
    let adding = matches!(change, Change::AddOne | Change::AddList);
    if adding {
        // Looked up before the subscriptions are locked (the user table has its own lock).
        let unknown: Vec<&String> = ids
            .iter()
            .filter(|a| st.user_by_alias(a).is_none())
            .collect();
        if !unknown.is_empty() {
            return bad(&format!("unknown resource ids: {unknown:?}"));
        }
    }
    let mut subs = lock(&st.notifier.subs);
    let sub = match live(&mut subs, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let mut aliases = sub.info.aliases.clone();
    for alias in &ids {
        let held = aliases.iter().position(|a| a.eq_ignore_ascii_case(alias));
        match (adding, held) {
            (true, Some(_)) => {}
            (true, None) => aliases.push(alias.clone()),
            (false, Some(i)) => {
                aliases.remove(i);
            }
            (false, None) => return bad(&format!("{alias} is not in subscription {id}")),
        }
    }
    sub.aliases = aliases.iter().map(|a| a.to_lowercase()).collect();
    sub.info.aliases = aliases;
    drop(subs);
    soap_response(change.operation(), |_| {})
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
        assert!(parse_expiration(r.one("expiration"), FixedOffset::east_opt(0).unwrap()).is_ok());
    }

    /// xsd:dateTime with and without a zone; the zone-less form is read in the server's.
    #[test]
    fn expirations_are_xsd_datetimes() {
        let utc = FixedOffset::east_opt(0).unwrap();
        let cet = FixedOffset::east_opt(3600).unwrap();
        // 2020-05-02T18:04:00Z, the DevNet sample's value.
        let at = 1_588_442_640_000;
        assert_eq!(parse_xsd_datetime("2020-05-02T18:04:00Z", cet), Ok(at));
        assert_eq!(parse_xsd_datetime("2020-05-02T20:04:00+02:00", utc), Ok(at));
        assert_eq!(
            parse_xsd_datetime("2020-05-02T13:04:00.000-05:00", utc),
            Ok(at)
        );
        // No zone: the server's zone.
        assert_eq!(parse_xsd_datetime("2020-05-02T18:04:00", utc), Ok(at));
        assert_eq!(
            parse_xsd_datetime(" 2020-05-02T19:04:00.5 ", cet),
            Ok(at + 500)
        );
        assert_eq!(
            parse_xsd_datetime("2020-05-01T24:00:00", utc),
            parse_xsd_datetime("2020-05-02T00:00:00Z", cet)
        );
        for bad in [
            "2020-05-02 18:04:00Z",
            "2020-05-02t18:04:00Z",
            "2020-5-2T18:04:00Z",
            "2020-05-02T18:04Z",
            "2020-05-02T18:04:00.Z",
            "2020-05-02T18:04:00+15:00",
            "2020-05-02T18:04:00+0200",
            "2020-02-30T18:04:00Z",
            "2020-05-02T24:00:01",
            "1588442640",
            "",
        ] {
            assert!(parse_xsd_datetime(bad, utc).is_err(), "{bad}");
        }
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
