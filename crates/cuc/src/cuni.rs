//! CUNI, Unity Connection's notification interface: the SOAP `MessageEventService`
//! (subscribe / renew / unsubscribe) and the `<messageEvent>` bodies the Notifier POSTs to
//! the subscriber's callback URL.
//!
//! Shapes follow the WSDL served by CUC (fixture `cuni-MessageEventService.wsdl`), the
//! DevNet subscribe sample (`cuni-subscribe-request.xml`) and the CUNI guide's event example
//! (`cuni-message-event.xml`); notes §3 list the operational facts: Basic auth with an
//! administrator, `SOAPAction: ""`, a repeat subscription with the same callback URL replaces
//! the previous one, at most ~500 users per subscription, event message ids without the
//! `0:` prefix CUMI uses.

use std::time::{Duration, SystemTime};

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::Serialize;
use ucbridge_auth::Secret;

use crate::client::{html_error, looks_like_html, snippet};
use crate::limits::{read_body, BodyKind};
use crate::node::{self, Node};
use crate::{CucClient, CucError};

/// Path of the SOAP service on a CUC server (notes §3).
pub const CUNI_SERVICE_PATH: &str = "/messageeventservice/services/MessageEventService";
const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// Target namespace of the operations (WSDL `tns`).
const NS_EVENT: &str = "http://unity.cisco.com/messageeventservice/event";
/// Namespace of `CallbackServiceInfo` and `SubscriptionInfo` (WSDL `ns1`).
const NS_TYPES: &str = "http://event.messageeventservice.unity.cisco.com";

/// Largest CUNI callback body accepted. An event is one `<messageEvent>` with a
/// `<messageInfo>` of ~300 bytes per message it concerns (one, for the changes ucbridge
/// reacts to), so 256 KiB is hundreds of times a real event while keeping a flood cheap.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// Cisco's recommended ceiling of users per subscription (CUNI FAQ, notes §3).
pub const MAX_USERS_PER_SUBSCRIPTION: usize = 500;

/// Where and how the Notifier calls back.
#[derive(Debug, Clone)]
pub struct CallbackTarget {
    /// `http://host:port/path` (HTTPS callbacks only from CUC 12.5(1)SU3, notes §3).
    pub url: String,
    /// Basic credentials the Notifier sends with each callback (`CallbackServiceInfo`
    /// `username`/`password`), so the receiver can refuse forged events.
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// A subscription as CUC confirmed it (`SubscriptionInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subscription {
    pub id: String,
    /// `xsd:dateTime` as CUC returned it.
    pub expiration: Option<String>,
}

/// A CUNI event type (WSDL `ShortEventTypeEnum` plus the guide's extra names, notes §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum EventType {
    NewMessage,
    /// Marked read in the inbox.
    SavedMessage,
    /// Marked unread.
    UnreadMessage,
    DeletedMessage,
    OpenedMessage,
    MessageInfo,
    KeepAlive,
    /// The subscription ended or expired: subscribe again.
    SubscriptionEnded,
    Failover,
    Other(String),
}

impl EventType {
    pub fn parse(s: &str) -> EventType {
        match s {
            "NEW_MESSAGE" => EventType::NewMessage,
            "SAVED_MESSAGE" => EventType::SavedMessage,
            "UNREAD_MESSAGE" => EventType::UnreadMessage,
            "DELETED_MESSAGE" => EventType::DeletedMessage,
            "OPENED_MESSAGE" => EventType::OpenedMessage,
            "MESSAGE_INFO" => EventType::MessageInfo,
            "KEEP_ALIVE" => EventType::KeepAlive,
            "SUB_END" | "SUB_EXP" => EventType::SubscriptionEnded,
            "FAILOVER" => EventType::Failover,
            other => EventType::Other(other.to_owned()),
        }
    }
}

/// One `<messageInfo>` of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventMessage {
    /// As sent: a bare uuid (no `0:`).
    pub message_id: String,
    pub receive_time: Option<String>,
    pub uid: Option<u64>,
    pub msg_type: Option<String>,
    pub priority: Option<String>,
    pub sender: Option<String>,
    pub caller_ani: Option<String>,
}

impl EventMessage {
    /// The id as CUMI spells it (`0:<uuid>`, notes §0.2).
    pub fn cumi_id(&self) -> String {
        if self.message_id.starts_with("0:") {
            self.message_id.clone()
        } else {
            format!("0:{}", self.message_id)
        }
    }
}

/// A `<messageEvent>` callback body (fixture `cuni-message-event.xml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageEvent {
    pub subscription_id: Option<String>,
    pub event_type: EventType,
    /// CUC's `hh:mm:ss AM MM/dd/yyyy` text, kept as sent.
    pub event_time: Option<String>,
    /// The mailbox owner's alias.
    pub mailbox_id: Option<String>,
    pub display_name: Option<String>,
    pub usn: Option<u64>,
    pub messages: Vec<EventMessage>,
}

impl MessageEvent {
    /// Read a callback body. CUC prints `"null"` for absent sender/ANI; those become `None`.
    /// Bodies above [`MAX_EVENT_BYTES`] and documents deeper than [`crate::MAX_DEPTH`]
    /// are refused.
    pub fn parse(body: &[u8]) -> Result<MessageEvent, CucError> {
        if body.len() > MAX_EVENT_BYTES {
            return Err(CucError::Protocol(format!(
                "a CUNI event of {} bytes, above the {} limit",
                body.len(),
                ucbridge_auth::net::format_bytes(MAX_EVENT_BYTES as u64)
            )));
        }
        let root = node::from_xml(body)?;
        if root.name != "messageEvent" {
            return Err(CucError::Protocol(format!(
                "expected <messageEvent>, got <{}>",
                root.name
            )));
        }
        let attr = |n: &Node, name: &str| {
            n.attr(name)
                .map(str::trim)
                .filter(|v| !v.is_empty() && *v != "null")
                .map(str::to_owned)
        };
        let number = |n: &Node, name: &str| -> Result<Option<u64>, CucError> {
            attr(n, name)
                .map(|v| {
                    v.parse()
                        .map_err(|_| CucError::Protocol(format!("{name} is {v:?}, not a number")))
                })
                .transpose()
        };
        let event_type = attr(&root, "eventType")
            .ok_or_else(|| CucError::Protocol("a messageEvent without eventType".into()))?;
        let messages = root
            .children_named("messageInfo")
            .map(|m| {
                Ok(EventMessage {
                    message_id: attr(m, "messageId").ok_or_else(|| {
                        CucError::Protocol("a messageInfo without messageId".into())
                    })?,
                    receive_time: attr(m, "receiveTime"),
                    uid: number(m, "uid")?,
                    msg_type: attr(m, "msgType"),
                    priority: attr(m, "priority"),
                    sender: attr(m, "sender"),
                    caller_ani: attr(m, "callerAni"),
                })
            })
            .collect::<Result<_, CucError>>()?;
        Ok(MessageEvent {
            subscription_id: attr(&root, "subscriptionId"),
            event_type: EventType::parse(&event_type),
            event_time: attr(&root, "eventTime"),
            mailbox_id: attr(&root, "mailboxId"),
            display_name: attr(&root, "displayName"),
            usn: number(&root, "USN")?,
            messages,
        })
    }
}

/// `xsd:dateTime` in UTC for `at`.
fn xsd_datetime(at: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = at.into();
    dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Builds one SOAP request; every value goes through quick-xml, which escapes it.
struct Soap {
    w: Writer<Vec<u8>>,
}

impl Soap {
    fn new(operation: &str) -> Soap {
        let mut w = Writer::new(Vec::new());
        let mut envelope = BytesStart::new("soapenv:Envelope");
        envelope.push_attribute(("xmlns:soapenv", NS_SOAP));
        envelope.push_attribute(("xmlns:even", NS_EVENT));
        envelope.push_attribute(("xmlns:even1", NS_TYPES));
        // Writing into a Vec cannot fail.
        let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        let _ = w.write_event(Event::Start(envelope));
        let _ = w.write_event(Event::Empty(BytesStart::new("soapenv:Header")));
        let _ = w.write_event(Event::Start(BytesStart::new("soapenv:Body")));
        let _ = w.write_event(Event::Start(BytesStart::new(format!("even:{operation}"))));
        Soap { w }
    }

    fn open(&mut self, name: &str) {
        let _ = self.w.write_event(Event::Start(BytesStart::new(name)));
    }

    fn close(&mut self, name: &str) {
        let _ = self.w.write_event(Event::End(BytesEnd::new(name)));
    }

    fn text(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            let _ = self.w.write_event(Event::Empty(BytesStart::new(name)));
            return;
        }
        self.open(name);
        let _ = self.w.write_event(Event::Text(BytesText::new(value)));
        self.close(name);
    }

    fn finish(mut self, operation: &str) -> Vec<u8> {
        self.close(&format!("even:{operation}"));
        self.close("soapenv:Body");
        self.close("soapenv:Envelope");
        self.w.into_inner()
    }
}

/// The `subscribe` request body (exposed for tests and the lab's shape checks).
pub fn subscribe_request(
    aliases: &[String],
    callback: &CallbackTarget,
    expiration: SystemTime,
    keep_alive: bool,
) -> Vec<u8> {
    let mut s = Soap::new("subscribe");
    s.text("even:resourceType", "");
    // An empty list means every event type, as Cisco recommends (notes §3).
    s.text("even:eventTypeList", "");
    s.open("even:resourceIdList");
    for alias in aliases {
        s.text("even:string", alias);
    }
    s.close("even:resourceIdList");
    s.open("even:callbackServiceInfo");
    // CallbackServiceInfo's sequence order in the WSDL: url, hostname, password, port,
    // protocol, sslCertificates, sslValidateCertificate, sslValidateHostname, username.
    s.text("even1:callbackServiceUrl", &callback.url);
    if let Some(p) = &callback.password {
        s.text("even1:password", p.expose());
    }
    if let Some(u) = &callback.username {
        s.text("even1:username", u);
    }
    s.close("even:callbackServiceInfo");
    s.text("even:expiration", &xsd_datetime(expiration));
    // "0 or 1 to disable or enable" (DevNet sample comment, notes §3).
    s.text("even:keepAliveInterval", if keep_alive { "1" } else { "0" });
    s.finish("subscribe")
}

impl CucClient {
    fn cuni_url(&self) -> Result<reqwest::Url, CucError> {
        let mut url = self.base.clone();
        url.set_path(CUNI_SERVICE_PATH);
        url.set_query(None);
        Ok(url)
    }

    /// POST one SOAP request to the MessageEventService, within the client's deadline;
    /// the answer's Body child.
    async fn cuni_call(&self, body: Vec<u8>) -> Result<Node, CucError> {
        let url = self.cuni_url()?;
        self.within(&reqwest::Method::POST, &url, false, async {
            let response = self.cuni_send(&url, body).await?;
            let status = response.status();
            let (kind, limit) = if status.is_success() {
                (BodyKind::Document, self.sizes.document)
            } else {
                (BodyKind::ErrorBody, self.sizes.error)
            };
            let bytes = read_body(response, kind, limit).await?;
            cuni_answer(status, &bytes)
        })
        .await
    }

    /// Send with auth, refreshing an SSO token once after a 401.
    async fn cuni_send(
        &self,
        url: &reqwest::Url,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, CucError> {
        let auth = self.credentials.authorization().await?;
        let send = |auth: &ucbridge_auth::Authorization| {
            self.http
                .post(url.clone())
                .header(AUTHORIZATION, auth.header_value())
                .header(CONTENT_TYPE, "text/xml; charset=utf-8")
                // CUNI's operations have an empty SOAPAction (notes §3).
                .header("SOAPAction", "\"\"")
                .body(body.clone())
                .send()
        };
        let mut response = send(&auth).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            if let Some(fresh) = self.credentials.retry_after_unauthorized(&auth).await? {
                response = send(&fresh).await?;
            }
        }
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok());
            return Err(self.credentials.rejection(challenge).into());
        }
        Ok(response)
    }

    /// Subscribe `aliases` (at most [`MAX_USERS_PER_SUBSCRIPTION`]) to every event type,
    /// delivered to `callback` until `lifetime` from now. A subscription with the same
    /// callback URL replaces the previous one (notes §3), so callers that need more users
    /// use one URL per group.
    pub async fn cuni_subscribe(
        &self,
        aliases: &[String],
        callback: &CallbackTarget,
        lifetime: Duration,
        keep_alive: bool,
    ) -> Result<Subscription, CucError> {
        if aliases.len() > MAX_USERS_PER_SUBSCRIPTION {
            return Err(CucError::InvalidInput(format!(
                "{} users in one CUNI subscription; Cisco recommends at most {MAX_USERS_PER_SUBSCRIPTION}",
                aliases.len()
            )));
        }
        let body = subscribe_request(aliases, callback, SystemTime::now() + lifetime, keep_alive);
        let answer = self.cuni_call(body).await?;
        let out = answer
            .child("out")
            .ok_or_else(|| CucError::Protocol("subscribeResponse without <out>".into()))?;
        Ok(Subscription {
            id: out
                .text_of("subscriptionId")
                .ok_or_else(|| CucError::Protocol("SubscriptionInfo without an id".into()))?
                .to_owned(),
            expiration: out.text_of("expiration").map(str::to_owned),
        })
    }

    /// End a subscription.
    pub async fn cuni_unsubscribe(&self, subscription_id: &str) -> Result<(), CucError> {
        let mut s = Soap::new("unsubscribe");
        s.text("even:subscriptionId", subscription_id);
        self.cuni_call(s.finish("unsubscribe")).await?;
        Ok(())
    }
}

/// A SOAP answer read: its Body child, or the fault / status as a typed error.
fn cuni_answer(status: StatusCode, bytes: &[u8]) -> Result<Node, CucError> {
    if looks_like_html(bytes) {
        return Err(html_error(status.as_u16(), bytes));
    }
    let mut envelope = match node::from_xml(bytes) {
        Ok(n) => n,
        Err(_) if !status.is_success() => {
            return Err(CucError::Http {
                status: status.as_u16(),
                body: snippet(bytes),
            })
        }
        Err(e) => return Err(e),
    };
    let Some(body) = envelope.children.iter_mut().find(|c| c.name == "Body") else {
        return Err(CucError::Protocol("a SOAP answer without a Body".into()));
    };
    if body.children.is_empty() {
        return Err(CucError::Protocol(
            "a SOAP answer with an empty Body".into(),
        ));
    }
    let answer = body.children.swap_remove(0);
    if answer.name == "Fault" {
        // FaultDetail{detailMessage, errorCode} in the detail (WSDL), else faultstring.
        let detail = answer.child("detail").and_then(|d| d.child("FaultDetail"));
        let code = detail
            .and_then(|d| d.text_of("errorCode"))
            .or_else(|| answer.text_of("faultcode"))
            .unwrap_or("SOAP_FAULT")
            .to_owned();
        let message = detail
            .and_then(|d| d.text_of("detailMessage"))
            .or_else(|| answer.text_of("faultstring"))
            .unwrap_or_default()
            .to_owned();
        return Err(CucError::Api {
            status: status.as_u16(),
            code,
            message,
        });
    }
    if !status.is_success() {
        return Err(CucError::Http {
            status: status.as_u16(),
            body: snippet(bytes),
        });
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_with_null_values_dropped() {
        let body =
            br#"<?xml version="1.0" ?><messageEvent subscriptionId="s1" eventType="NEW_MESSAGE"
            eventTime="11:15:40 PM 10/30/2008" mailboxId="abell" displayName="A &amp; B" USN="7">
            <messageInfo messageId="72204bd7" receiveTime="04:15:40 PM 10/30/2008" uid="543"
             msgType="Voice" priority="Urgent" sender="null" callerAni="+1408"/></messageEvent>"#;
        let e = MessageEvent::parse(body).unwrap();
        assert_eq!(e.event_type, EventType::NewMessage);
        assert_eq!(e.display_name.as_deref(), Some("A & B"));
        assert_eq!(e.usn, Some(7));
        assert_eq!(e.messages[0].cumi_id(), "0:72204bd7");
        assert_eq!(e.messages[0].sender, None);
        assert_eq!(e.messages[0].caller_ani.as_deref(), Some("+1408"));
        assert!(MessageEvent::parse(b"<other/>").is_err());
        assert!(MessageEvent::parse(b"<messageEvent/>").is_err());
    }

    /// 100,000 nested elements (0.7 MB) aborted the callback route through a recursive
    /// drop; now the size and then the depth refuse them.
    #[test]
    fn deeply_nested_events_are_refused() {
        let nested = |levels: usize| {
            [
                b"<messageEvent eventType=\"NEW_MESSAGE\">".as_slice(),
                &b"<a>".repeat(levels),
                &b"</a>".repeat(levels),
                b"</messageEvent>",
            ]
            .concat()
        };
        let huge = nested(100_000);
        let err = MessageEvent::parse(&huge).unwrap_err();
        assert!(err.to_string().contains("256 KiB"), "{err}");
        // Under the size limit (30,000 levels, 210 kB), too deep.
        let deep = nested(30_000);
        assert!(deep.len() <= MAX_EVENT_BYTES);
        let err = MessageEvent::parse(&deep).unwrap_err();
        assert!(matches!(err, CucError::TooDeep { .. }), "{err:?}");
        // Without the size check the depth check alone holds too.
        let err = node::from_xml(&huge).unwrap_err();
        assert!(matches!(err, CucError::TooDeep { .. }), "{err:?}");
    }

    #[test]
    fn subscribe_escapes_values() {
        let body = subscribe_request(
            &["a<b".to_owned()],
            &CallbackTarget {
                url: "http://h/cb?x=1&y=2".into(),
                username: Some("n".into()),
                password: Some(Secret::new("p&w")),
            },
            SystemTime::UNIX_EPOCH,
            true,
        );
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("<even:string>a&lt;b</even:string>"), "{text}");
        assert!(text.contains("http://h/cb?x=1&amp;y=2"), "{text}");
        assert!(text.contains("<even:expiration>1970-01-01T00:00:00Z</even:expiration>"));
        let parsed = node::from_xml(text.as_bytes()).unwrap();
        let sub = parsed
            .child("Body")
            .and_then(|b| b.child("subscribe"))
            .unwrap();
        assert_eq!(
            sub.children
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            [
                "resourceType",
                "eventTypeList",
                "resourceIdList",
                "callbackServiceInfo",
                "expiration",
                "keepAliveInterval"
            ],
            "the WSDL's sequence order"
        );
    }

    #[test]
    fn the_cuni_guide_event_reads() {
        let Some(body) = ucbridge_testkit::fixture_bytes("cuc-samples/cuni-message-event.xml")
        else {
            return;
        };
        let e = MessageEvent::parse(&body).unwrap();
        assert_eq!(e.event_type, EventType::SavedMessage);
        assert_eq!(e.mailbox_id.as_deref(), Some("abell"));
        assert_eq!(e.usn, Some(2265));
        assert_eq!(e.messages.len(), 1);
        assert_eq!(
            e.messages[0].cumi_id(),
            "0:72204bd7-e5c3-446e-adb6-ae5f80db26fb"
        );
        assert_eq!(e.messages[0].uid, Some(543));
    }

    /// Our subscribe has the element names and namespaces of the DevNet sample that works
    /// against real CUC (fixture `cuni-subscribe-request.xml`).
    #[test]
    fn subscribe_matches_the_devnet_sample() {
        let Some(sample) =
            ucbridge_testkit::fixture_bytes("cuc-samples/cuni-subscribe-request.xml")
        else {
            return;
        };
        fn shape(xml: &[u8]) -> Vec<String> {
            let mut reader = quick_xml::NsReader::from_reader(xml);
            let mut out = Vec::new();
            loop {
                match reader.read_resolved_event() {
                    Ok((ns, Event::Start(e) | Event::Empty(e))) => {
                        let ns = match ns {
                            quick_xml::name::ResolveResult::Bound(n) => {
                                String::from_utf8_lossy(n.as_ref()).into_owned()
                            }
                            _ => String::new(),
                        };
                        out.push(format!(
                            "{{{ns}}}{}",
                            String::from_utf8_lossy(e.local_name().as_ref())
                        ));
                    }
                    Ok((_, Event::Eof)) => return out,
                    Ok(_) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        }
        let ours = subscribe_request(
            &["VM_USER_1_ALIAS".into(), "VM_USER_2_ALIAS".into()],
            &CallbackTarget {
                url: "http://APP_HOST:5000/incomingMessages".into(),
                username: None,
                password: None,
            },
            SystemTime::now(),
            true,
        );
        let mut theirs = shape(&sample);
        // The sample lists ALL_EVENTS; we send the empty list Cisco recommends.
        let all_events = theirs.iter().position(|n| n.ends_with("}string")).unwrap();
        theirs.remove(all_events);
        assert_eq!(shape(&ours), theirs);
    }
}
