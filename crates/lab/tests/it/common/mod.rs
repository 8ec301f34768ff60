//! Helpers shared by the lab's integration tests: a lab, an HTTPS client trusting its CA,
//! AXL envelopes and tiny response readers.
#![allow(dead_code)]

use quick_xml::events::Event;
use quick_xml::Reader;
use ucbridge_lab::{LabConfig, RunningLab};

pub const USER: &str = "administrator";
pub const PASSWORD: &str = "ucbridge-lab";

pub async fn start(config: LabConfig) -> (RunningLab, reqwest::Client) {
    let lab = RunningLab::start(config).await.expect("lab starts");
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = lab.ca_certificate_pem() {
        let ca = reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA PEM parses");
        builder = builder.add_root_certificate(ca);
    }
    (lab, builder.build().expect("client builds"))
}

pub async fn start_default() -> (RunningLab, reqwest::Client) {
    start(LabConfig::default()).await
}

/// `<soapenv:Envelope>…<ns:{op} xmlns:ns=".../{version}">{inner}</ns:{op}>…`
pub fn envelope(op: &str, version: &str, inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:ns=\"http://www.cisco.com/AXL/API/{version}\"><soapenv:Header/><soapenv:Body>\
         <ns:{op}>{inner}</ns:{op}></soapenv:Body></soapenv:Envelope>"
    )
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn bytes(&self) -> Vec<u8> {
        self.body.as_bytes().to_vec()
    }

    /// Text of every element with this local name, in document order.
    pub fn texts(&self, name: &str) -> Vec<String> {
        texts(&self.body, name)
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.texts(name).into_iter().next()
    }

    pub fn axlcode(&self) -> Option<i64> {
        self.text("axlcode").and_then(|c| c.parse().ok())
    }
}

pub fn texts(xml: &str, name: &str) -> Vec<String> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    loop {
        match reader.read_event().expect("response is well-formed XML") {
            Event::Start(e) if e.local_name().as_ref() == name.as_bytes() => {
                current = Some(String::new());
            }
            Event::Empty(e) if e.local_name().as_ref() == name.as_bytes() => {
                out.push(String::new());
            }
            Event::Text(t) => {
                if let Some(c) = current.as_mut() {
                    c.push_str(&t.unescape().expect("text unescapes"));
                }
            }
            Event::End(e) if e.local_name().as_ref() == name.as_bytes() => {
                if let Some(c) = current.take() {
                    out.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// POST with Basic auth and `SOAPAction: "CUCM:DB ver={version} {op}"`.
pub async fn call(
    lab: &RunningLab,
    client: &reqwest::Client,
    op: &str,
    version: &str,
    inner: &str,
) -> Answer {
    let action = format!("\"CUCM:DB ver={version} {op}\"");
    post(
        lab,
        client,
        Some(&action),
        envelope(op, version, inner),
        true,
    )
    .await
}

pub async fn post(
    lab: &RunningLab,
    client: &reqwest::Client,
    action: Option<&str>,
    body: String,
    auth: bool,
) -> Answer {
    let mut req = client
        .post(lab.axl_url())
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(body);
    if let Some(action) = action {
        req = req.header("SOAPAction", action);
    }
    if auth {
        req = req.basic_auth(USER, Some(PASSWORD));
    }
    let resp = req.send().await.expect("request is answered");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.expect("body is readable");
    Answer {
        status,
        headers,
        body,
    }
}

/// Call and require HTTP 200.
pub async fn ok(lab: &RunningLab, client: &reqwest::Client, op: &str, inner: &str) -> Answer {
    let a = call(lab, client, op, "14.0", inner).await;
    assert_eq!(a.status, 200, "{op} failed: {}", a.body);
    a
}

pub fn add_user_xml(userid: &str, extra: &str) -> String {
    format!(
        "<user><firstName>Test</firstName><lastName>User</lastName><userid>{userid}</userid>{extra}\
         <presenceGroupName>Standard Presence group</presenceGroupName></user>"
    )
}

pub fn add_phone_xml(name: &str, extra: &str) -> String {
    format!(
        "<phone><name>{name}</name><description>lab phone</description>\
         <product>Third-party SIP Device (Advanced)</product><class>Phone</class>\
         <protocol>SIP</protocol><protocolSide>User</protocolSide>\
         <devicePoolName>Default</devicePoolName>\
         <commonPhoneConfigName>Standard Common Phone Profile</commonPhoneConfigName>\
         <locationName>Hub_None</locationName>\
         <securityProfileName>Third-party SIP Device Advanced - Standard SIP Secure Profile</securityProfileName>\
         <sipProfileName>Standard SIP Profile</sipProfileName>{extra}</phone>"
    )
}
