//! Response writing: SOAP envelopes, AXL and Axis2 faults, HTML error pages.
//!
//! All user data goes through quick-xml's writer, which escapes text and attributes.

use std::io;

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

pub(crate) const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub(crate) const AXL_NS_PREFIX: &str = "http://www.cisco.com/AXL/API/";

/// The declaration exactly as CUCM writes it (single quotes; notes §1).
const XML_DECL: &[u8] = b"<?xml version='1.0' encoding='UTF-8'?>";

/// An XML document under construction.
pub(crate) struct Xml {
    w: Writer<Vec<u8>>,
}

impl Xml {
    pub fn new() -> Xml {
        Xml {
            w: Writer::new(XML_DECL.to_vec()),
        }
    }

    pub fn len(&self) -> usize {
        self.w.get_ref().len()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.w.into_inner()
    }

    pub fn open(&mut self, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
        let mut start = BytesStart::new(name);
        for (k, v) in attrs {
            start.push_attribute((*k, *v));
        }
        self.w.write_event(Event::Start(start))
    }

    pub fn close(&mut self, name: &str) -> io::Result<()> {
        self.w.write_event(Event::End(BytesEnd::new(name)))
    }

    pub fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
        let mut start = BytesStart::new(name);
        for (k, v) in attrs {
            start.push_attribute((*k, *v));
        }
        self.w.write_event(Event::Empty(start))
    }

    /// `<name>value</name>`, or `<name/>` for `None`/empty (how CUCM shows NULLs).
    pub fn text(&mut self, name: &str, value: Option<&str>) -> io::Result<()> {
        self.text_with(name, &[], value)
    }

    pub fn text_with(
        &mut self,
        name: &str,
        attrs: &[(&str, &str)],
        value: Option<&str>,
    ) -> io::Result<()> {
        match value {
            Some(v) if !v.is_empty() => {
                self.open(name, attrs)?;
                self.w.write_event(Event::Text(BytesText::new(v)))?;
                self.close(name)
            }
            _ => self.empty(name, attrs),
        }
    }

    /// Envelope, Body and `<ns:{op}Response xmlns:ns=".../AXL/API/{version}">`.
    pub fn start_response(&mut self, op: &str, version: &str) -> io::Result<()> {
        self.open("soapenv:Envelope", &[("xmlns:soapenv", SOAP_ENV_NS)])?;
        self.open("soapenv:Body", &[])?;
        let ns = format!("{AXL_NS_PREFIX}{version}");
        self.open(&format!("ns:{op}Response"), &[("xmlns:ns", &ns)])
    }

    pub fn end_response(&mut self, op: &str) -> io::Result<()> {
        self.close(&format!("ns:{op}Response"))?;
        self.close("soapenv:Body")?;
        self.close("soapenv:Envelope")
    }
}

/// Bytes [`Xml::end_response`] adds after the last row, plus slack: reserved when checking
/// the size cap so a response that passes the check stays under it once closed.
pub(crate) fn response_tail_reserve(op: &str) -> usize {
    "</return></ns:Response></soapenv:Body></soapenv:Envelope>".len() + op.len() + 16
}

/// `<return>{UUID}</return>` for add/update/remove.
pub(crate) fn uuid_response(op: &str, version: &str, uuid: &str) -> io::Result<Vec<u8>> {
    let mut x = Xml::new();
    x.start_response(op, version)?;
    x.text("return", Some(uuid))?;
    x.end_response(op)?;
    Ok(x.into_bytes())
}

/// An AXL fault (notes §3): `faultcode`, `faultstring`, `detail/axlError/{axlcode,
/// axlmessage, request}` with `axlError` unqualified as in the real 12.5 recordings.
pub(crate) fn axl_fault(
    client: bool,
    code: i64,
    message: &str,
    request: &str,
) -> io::Result<Vec<u8>> {
    let mut x = Xml::new();
    x.open("soapenv:Envelope", &[("xmlns:soapenv", SOAP_ENV_NS)])?;
    x.open("soapenv:Body", &[])?;
    x.open("soapenv:Fault", &[])?;
    let faultcode = if client {
        "soapenv:Client"
    } else {
        "soapenv:Server"
    };
    x.text("faultcode", Some(faultcode))?;
    x.text("faultstring", Some(message))?;
    x.open("detail", &[])?;
    x.open("axlError", &[])?;
    x.text("axlcode", Some(&code.to_string()))?;
    x.text("axlmessage", Some(message))?;
    x.text("request", Some(request))?;
    x.close("axlError")?;
    x.close("detail")?;
    x.close("soapenv:Fault")?;
    x.close("soapenv:Body")?;
    x.close("soapenv:Envelope")?;
    Ok(x.into_bytes())
}

/// The fault Axis2 gives when no operation matches the action (notes §1, real 12.5
/// recording): `axis2ns2:Client` with its prefix declared, empty `detail`, no axlError.
/// `origin` is the lab's own `scheme://host:port`, where CUCM names its own
/// `https://host:8443`.
pub(crate) fn axis2_fault(origin: &str, action: &str) -> io::Result<Vec<u8>> {
    let message = format!(
        "The endpoint reference (EPR) for the Operation not found is \
         {origin}/axl/services/AXLAPIService and the WSA Action = {action}"
    );
    let mut x = Xml::new();
    x.open("soapenv:Envelope", &[("xmlns:soapenv", SOAP_ENV_NS)])?;
    x.open("soapenv:Body", &[])?;
    x.open("soapenv:Fault", &[])?;
    x.text_with(
        "faultcode",
        &[("xmlns:axis2ns2", SOAP_ENV_NS)],
        Some("axis2ns2:Client"),
    )?;
    x.text("faultstring", Some(&message))?;
    x.empty("detail", &[])?;
    x.close("soapenv:Fault")?;
    x.close("soapenv:Body")?;
    x.close("soapenv:Envelope")?;
    Ok(x.into_bytes())
}

/// A Tomcat-style HTML error page ("HTTP Status 599" etc.). Only fixed texts go in here.
pub(crate) fn html_status_page(status: u16, reason: &str) -> String {
    format!(
        "<html><head><title>Cisco Systems, Inc. - Error report</title></head>\
         <body><h1>HTTP Status {status} - {reason}</h1><hr/>\
         <p><b>type</b> Status report</p><p><b>message</b> {reason}</p><hr/>\
         <h3>Cisco Systems, Inc.</h3></body></html>"
    )
}

/// `GET /axl/` with valid credentials (notes §1: real CUCM 12.5 recording).
pub(crate) const AXL_GET_PAGE: &str =
    "<html><head><title>Cisco CallManager: AXL Web Service</title></head>\
<body><h1>Cisco CallManager: AXL Web Service</h1>\
<p>The AXL Web Service is working and accepting requests. Use HTTP POST to send a request.</p>\
</body></html>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_user_data() -> io::Result<()> {
        let mut x = Xml::new();
        x.text("userid", Some("a<b&\"c"))?;
        let s = String::from_utf8_lossy(&x.into_bytes()).into_owned();
        assert!(s.starts_with("<?xml version='1.0' encoding='UTF-8'?>"));
        assert!(s.contains("<userid>a&lt;b&amp;&quot;c</userid>"), "{s}");
        Ok(())
    }

    #[test]
    fn axis2_fault_declares_prefix() -> io::Result<()> {
        let s =
            String::from_utf8_lossy(&axis2_fault("https://127.0.0.1:8443", "x#y")?).into_owned();
        assert!(s.contains(r#"<faultcode xmlns:axis2ns2="http://schemas.xmlsoap.org/soap/envelope/">axis2ns2:Client</faultcode>"#), "{s}");
        assert!(s.contains("<detail/>"));
        Ok(())
    }
}
