//! SOAP envelopes out, streamed SOAP responses in.
//!
//! Requests are written through quick-xml's writer, so every value is escaped; nothing from
//! a user is ever spliced into XML text. Responses are read event by event from the HTTP
//! body stream: only one record (a `<user>`, a SQL `<row>`) is materialised at a time, so a
//! response of any size needs memory for one record plus the read buffer.

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use tokio::io::AsyncBufRead;

use crate::{AxlError, SchemaVersion};

const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Builds one AXL request envelope.
pub(crate) struct SoapWriter {
    writer: Writer<Vec<u8>>,
    operation: &'static str,
}

// Writing into a Vec<u8> cannot fail; quick-xml still returns io::Result.
fn infallible<T>(result: std::io::Result<T>) -> T {
    result.unwrap_or_else(|e| unreachable!("writing XML into memory failed: {e}"))
}

impl SoapWriter {
    /// Start `<soapenv:Envelope><soapenv:Body><ns:{operation}>` in `version`'s namespace.
    pub(crate) fn begin(version: SchemaVersion, operation: &'static str) -> Self {
        let mut writer = Writer::new(Vec::with_capacity(1024));
        infallible(writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None))));
        let namespace = version.namespace();
        let envelope = BytesStart::new("soapenv:Envelope").with_attributes([
            ("xmlns:soapenv", SOAP_ENV_NS),
            ("xmlns:ns", namespace.as_str()),
            ("xmlns:xsi", XSI_NS),
        ]);
        infallible(writer.write_event(Event::Start(envelope)));
        infallible(writer.write_event(Event::Empty(BytesStart::new("soapenv:Header"))));
        infallible(writer.write_event(Event::Start(BytesStart::new("soapenv:Body"))));
        let op = format!("ns:{operation}");
        infallible(writer.write_event(Event::Start(BytesStart::new(op.as_str()))));
        SoapWriter { writer, operation }
    }

    pub(crate) fn start(&mut self, name: &str) {
        infallible(self.writer.write_event(Event::Start(BytesStart::new(name))));
    }

    /// `<name attr="value">text</name>` (e.g. `startChangeId queueId="…"`), escaped.
    pub(crate) fn text_with_attr(&mut self, name: &str, attr: (&str, &str), value: &str) {
        let start = BytesStart::new(name).with_attributes([attr]);
        infallible(self.writer.write_event(Event::Start(start)));
        infallible(self.writer.write_event(Event::Text(BytesText::new(value))));
        self.end(name);
    }

    pub(crate) fn end(&mut self, name: &str) {
        infallible(self.writer.write_event(Event::End(BytesEnd::new(name))));
    }

    /// `<name/>`: an empty element, as used for returnedTags.
    pub(crate) fn empty(&mut self, name: &str) {
        infallible(self.writer.write_event(Event::Empty(BytesStart::new(name))));
    }

    /// `<name xsi:nil="true"/>`, for required nillable elements left unset.
    pub(crate) fn nil(&mut self, name: &str) {
        let e = BytesStart::new(name).with_attributes([("xsi:nil", "true")]);
        infallible(self.writer.write_event(Event::Empty(e)));
    }

    /// `<name>value</name>` with `value` escaped.
    pub(crate) fn text(&mut self, name: &str, value: &str) {
        self.start(name);
        infallible(self.writer.write_event(Event::Text(BytesText::new(value))));
        self.end(name);
    }

    /// Write the element only when there is a value.
    pub(crate) fn opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.text(name, v);
        }
    }

    /// Write the element with the value, or `xsi:nil` when there is none (required nillable).
    pub(crate) fn text_or_nil(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(v) => self.text(name, v),
            None => self.nil(name),
        }
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        let op = format!("ns:{}", self.operation);
        self.end(&op);
        self.end("soapenv:Body");
        self.end("soapenv:Envelope");
        self.writer.into_inner()
    }
}

/// A small owned XML element: local name, attributes, text and children. One record of a
/// response (a user, a phone, a SQL row) is read into one of these and then converted into
/// a typed value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XmlNode {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<XmlNode>,
}

impl XmlNode {
    pub fn child(&self, name: &str) -> Option<&XmlNode> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Text of a direct child; `None` when the child is absent *or* empty (CUCM sends
    /// `<mailid/>` for an unset value).
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name)
            .map(|c| c.text.trim())
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One piece of a successful response, as it is read.
#[derive(Debug)]
pub(crate) enum ResponsePart {
    /// A child element of `<return>` (one list item, one SQL row, `componentVersion`, ...).
    Item(XmlNode),
    /// The text of a `<return>` without children (add/update/remove answer with a UUID).
    ReturnText(String),
    /// A direct child of `<opResponse>` other than `<return>` (listChange's `queueInfo`
    /// and `changes`, which have no `<return>` wrapper).
    Other(XmlNode),
}

/// A SOAP fault read from a response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SoapFault {
    pub faultcode: String,
    pub faultstring: String,
    pub axlcode: Option<i64>,
    pub axlmessage: Option<String>,
}

impl SoapFault {
    pub(crate) fn into_error(self, operation: &str) -> AxlError {
        AxlError::Fault {
            operation: operation.to_owned(),
            axlcode: self.axlcode,
            message: self
                .axlmessage
                .filter(|m| !m.is_empty())
                .unwrap_or(self.faultstring),
            faultcode: self.faultcode,
        }
    }
}

/// What reading a response envelope found.
pub(crate) enum Envelope {
    /// A normal `<opResponse>`; its parts went to the callback.
    Response,
    Fault(SoapFault),
}

/// Text of an XML text event, tolerant of encodings: CUCM's list responses ("GAXL") are
/// labelled ISO-8859-1, so bytes that are not UTF-8 are read as Latin-1, which maps every
/// byte to the code point of the same value.
fn decode_text(raw: &[u8]) -> Result<String, String> {
    let text = match std::str::from_utf8(raw) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => std::borrow::Cow::Owned(raw.iter().map(|&b| b as char).collect::<String>()),
    };
    quick_xml::escape::unescape(&text)
        .map(|s| s.into_owned())
        .map_err(|e| format!("bad entity in text: {e}"))
}

fn local_name(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

fn node_from_start(e: &BytesStart<'_>) -> Result<XmlNode, String> {
    let mut node = XmlNode {
        name: local_name(e),
        ..XmlNode::default()
    };
    for attr in e.attributes() {
        let attr = attr.map_err(|err| format!("bad attribute: {err}"))?;
        let key = String::from_utf8_lossy(attr.key.local_name().as_ref()).into_owned();
        if attr.key.as_ref().starts_with(b"xmlns") {
            continue;
        }
        node.attributes.push((key, decode_text(&attr.value)?));
    }
    Ok(node)
}

/// Deepest element nesting read from CUCM. AXL messages are shallow: Envelope › Body ›
/// opResponse › return › record › field › item is 7 levels, a fault 6, and the deepest of
/// the 29 sample messages in `shared/fixtures/axl-samples` (real, Cisco-doc and zeep ones)
/// is 8. 64 leaves ample margin for nested XSD types while keeping every tree (and
/// quick-xml's own stack of open names, which grows with unclosed tags) small, so no
/// recursive drop or walk of an [`XmlNode`] can exhaust a stack.
pub const MAX_XML_DEPTH: usize = 64;

/// What a response reader refuses to go beyond.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadLimits {
    /// Deepest nesting of open elements in the whole document.
    pub max_depth: usize,
    /// Memory one materialised part (a record) may take, estimated from its nodes: a body
    /// within the size cap can still be millions of `<a/>`, each costing ~100 bytes as a node.
    pub max_part_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_depth: MAX_XML_DEPTH,
            max_part_bytes: 64 << 20,
        }
    }
}

/// Marks a body stream cut off at its size cap; the reader turns it into
/// [`ReadError::TooLarge`].
#[derive(Debug)]
pub(crate) struct BodyLimit {
    pub limit: u64,
}

impl std::fmt::Display for BodyLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "response body over {} bytes", self.limit)
    }
}

impl std::error::Error for BodyLimit {}

/// Estimated memory of a node without its children.
fn node_cost(node: &XmlNode) -> usize {
    std::mem::size_of::<XmlNode>()
        + node.name.len()
        + node.text.len()
        + node
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + std::mem::size_of::<(String, String)>())
            .sum::<usize>()
}

/// Streaming reader of one SOAP response envelope.
pub(crate) struct ResponseReader<R> {
    reader: quick_xml::Reader<R>,
    buf: Vec<u8>,
    limits: ReadLimits,
    /// Elements open right now, over the whole document.
    depth: usize,
}

impl<R: AsyncBufRead + Unpin> ResponseReader<R> {
    pub(crate) fn new(source: R) -> Self {
        Self::with_limits(source, ReadLimits::default())
    }

    pub(crate) fn with_limits(source: R, limits: ReadLimits) -> Self {
        let mut reader = quick_xml::Reader::from_reader(source);
        reader.config_mut().trim_text(false);
        ResponseReader {
            reader,
            buf: Vec::with_capacity(16 * 1024),
            limits,
            depth: 0,
        }
    }

    /// The next event, counting depth for every caller so no path (skipping to Body,
    /// draining the tail) can be led into unbounded nesting.
    async fn next(&mut self) -> Result<Event<'static>, ReadError> {
        self.buf.clear();
        let event = self
            .reader
            .read_event_into_async(&mut self.buf)
            .await
            .map(|e| e.into_owned())
            .map_err(read_error)?;
        match &event {
            Event::Start(_) => {
                self.depth += 1;
                if self.depth > self.limits.max_depth {
                    return Err(ReadError::TooDeep {
                        limit: self.limits.max_depth,
                    });
                }
            }
            Event::End(_) => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        Ok(event)
    }

    /// Read the rest of an element whose start tag was just read, into a node. Iterative,
    /// and bounded in depth (by `next`) and in estimated memory.
    async fn read_subtree(&mut self, root: XmlNode) -> Result<XmlNode, ReadError> {
        let mut cost = node_cost(&root);
        let mut stack = vec![root];
        loop {
            if cost > self.limits.max_part_bytes {
                return Err(ReadError::PartTooLarge {
                    limit: self.limits.max_part_bytes,
                });
            }
            match self.next().await? {
                Event::Start(e) => {
                    let node = node_from_start(&e)?;
                    cost += node_cost(&node);
                    stack.push(node);
                }
                Event::Empty(e) => {
                    let node = node_from_start(&e)?;
                    cost += node_cost(&node);
                    if let Some(parent) = stack.last_mut() {
                        parent.children.push(node);
                    }
                }
                Event::Text(t) => {
                    if let Some(top) = stack.last_mut() {
                        let text = decode_text(&t)?;
                        cost += text.len();
                        top.text.push_str(&text);
                    }
                }
                Event::CData(t) => {
                    if let Some(top) = stack.last_mut() {
                        cost += t.len();
                        top.text.push_str(&String::from_utf8_lossy(&t));
                    }
                }
                Event::End(_) => {
                    let done = stack.pop().ok_or("unbalanced end tag")?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => return Ok(done),
                    }
                }
                Event::Eof => return Err("response ended inside an element".into()),
                _ => {}
            }
        }
    }

    /// Walk `Envelope/Body/<first element>`: a `Fault` is returned, a response has each
    /// part handed to `on_part` as soon as it is complete.
    pub(crate) async fn read_envelope(
        &mut self,
        mut on_part: impl FnMut(ResponsePart) -> Result<(), AxlError>,
    ) -> Result<Envelope, ReadError> {
        // Find Body.
        loop {
            match self.next().await? {
                Event::Start(e) if e.local_name().as_ref() == b"Body" => break,
                Event::Empty(e) if e.local_name().as_ref() == b"Body" => {
                    return Err(ReadError::Malformed("empty SOAP Body".into()))
                }
                Event::Eof => return Err(ReadError::Malformed("no SOAP Body".into())),
                _ => {}
            }
        }
        // The operation response (or Fault).
        let response = loop {
            match self.next().await? {
                Event::Start(e) => break node_from_start(&e)?,
                Event::Empty(e) => {
                    let node = node_from_start(&e)?;
                    if node.name == "Fault" {
                        return Err(ReadError::Malformed("empty SOAP Fault".into()));
                    }
                    return Ok(Envelope::Response);
                }
                Event::End(_) | Event::Eof => {
                    return Err(ReadError::Malformed("SOAP Body has no element".into()))
                }
                _ => {}
            }
        };
        if response.name == "Fault" {
            let node = self.read_subtree(response).await?;
            return Ok(Envelope::Fault(fault_from_node(&node)));
        }
        // Children of <opResponse>.
        loop {
            match self.next().await? {
                Event::Start(e) if e.local_name().as_ref() == b"return" => {
                    self.read_return(&mut on_part).await?;
                }
                Event::Start(e) => {
                    let node = self.read_subtree(node_from_start(&e)?).await?;
                    on_part(ResponsePart::Other(node)).map_err(ReadError::Consumer)?;
                }
                Event::Empty(e) => {
                    let node = node_from_start(&e)?;
                    if node.name != "return" {
                        on_part(ResponsePart::Other(node)).map_err(ReadError::Consumer)?;
                    }
                }
                Event::End(_) => break,
                Event::Eof => {
                    return Err(ReadError::Malformed(
                        "response ended before the operation element closed".into(),
                    ))
                }
                _ => {}
            }
        }
        // Drain to the end so a connection cut after the payload is still noticed, and
        // the connection can be reused.
        loop {
            match self.next().await? {
                Event::Eof => return Ok(Envelope::Response),
                _ => continue,
            }
        }
    }

    async fn read_return(
        &mut self,
        on_part: &mut impl FnMut(ResponsePart) -> Result<(), AxlError>,
    ) -> Result<(), ReadError> {
        let mut text = String::new();
        let mut had_children = false;
        loop {
            match self.next().await? {
                Event::Start(e) => {
                    had_children = true;
                    let node = self.read_subtree(node_from_start(&e)?).await?;
                    on_part(ResponsePart::Item(node)).map_err(ReadError::Consumer)?;
                }
                Event::Empty(e) => {
                    had_children = true;
                    on_part(ResponsePart::Item(node_from_start(&e)?))
                        .map_err(ReadError::Consumer)?;
                }
                Event::Text(t) => text.push_str(&decode_text(&t)?),
                Event::End(_) => break,
                Event::Eof => {
                    return Err(ReadError::Malformed("response ended in <return>".into()))
                }
                _ => {}
            }
        }
        let text = text.trim();
        if !had_children && !text.is_empty() {
            on_part(ResponsePart::ReturnText(text.to_owned())).map_err(ReadError::Consumer)?;
        }
        Ok(())
    }
}

/// Failure while reading a response.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Broken stream or XML: the response is unusable (may be retried for reads).
    Malformed(String),
    /// Elements nested deeper than the limit.
    TooDeep { limit: usize },
    /// The body went past its size cap (see [`BodyLimit`]).
    TooLarge { limit: u64 },
    /// One record would need more memory than the limit.
    PartTooLarge { limit: usize },
    /// The consumer callback refused a record.
    Consumer(AxlError),
}

impl ReadError {
    /// The typed error for `operation`, and whether another attempt could go differently.
    pub(crate) fn into_axl(self, operation: &str, status: u16) -> (AxlError, bool) {
        let operation = operation.to_owned();
        match self {
            ReadError::Malformed(detail) => (AxlError::Protocol { operation, detail }, true),
            ReadError::TooDeep { limit } => (AxlError::TooDeep { operation, limit }, false),
            ReadError::TooLarge { limit } => (
                AxlError::ResponseTooLarge {
                    operation,
                    status,
                    limit,
                    setting: if status == 200 {
                        "max_response_bytes"
                    } else {
                        "max_error_body_bytes"
                    },
                },
                false,
            ),
            ReadError::PartTooLarge { limit } => {
                (AxlError::RecordTooLarge { operation, limit }, false)
            }
            ReadError::Consumer(e) => (e, false),
        }
    }
}

/// quick-xml's error as a [`ReadError`]: the size cap and transport failures arrive as I/O
/// errors from the body stream and are told apart by their payload.
fn read_error(e: quick_xml::Error) -> ReadError {
    let quick_xml::Error::Io(io) = e else {
        return ReadError::Malformed(format!("malformed XML: {e}"));
    };
    let payload = io.get_ref();
    if let Some(limit) = payload.and_then(|p| p.downcast_ref::<BodyLimit>()) {
        return ReadError::TooLarge { limit: limit.limit };
    }
    let cause = match payload.and_then(|p| p.downcast_ref::<reqwest::Error>()) {
        Some(transport) => ucbridge_auth::net::classify(transport).to_string(),
        None => io.to_string(),
    };
    ReadError::Malformed(format!("response body broke off: {cause}"))
}

impl From<String> for ReadError {
    fn from(s: String) -> Self {
        ReadError::Malformed(s)
    }
}

impl From<&str> for ReadError {
    fn from(s: &str) -> Self {
        ReadError::Malformed(s.to_owned())
    }
}

fn fault_from_node(fault: &XmlNode) -> SoapFault {
    let axl_error = fault.child("detail").and_then(|d| d.child("axlError"));
    SoapFault {
        faultcode: fault.child_text("faultcode").unwrap_or_default(),
        faultstring: fault.child_text("faultstring").unwrap_or_default(),
        axlcode: axl_error
            .and_then(|e| e.child_text("axlcode"))
            .and_then(|c| c.parse().ok()),
        axlmessage: axl_error.and_then(|e| e.child_text("axlmessage")),
    }
}

/// Parse a complete (small, already capped) body that should hold a SOAP fault. `Err`
/// only when a limit was broken; anything else that is not a fault is `Ok(None)`.
pub(crate) async fn parse_fault(body: &[u8]) -> Result<Option<SoapFault>, ReadError> {
    let mut reader = ResponseReader::new(body);
    match reader.read_envelope(|_| Ok(())).await {
        Ok(Envelope::Fault(f)) => Ok(Some(f)),
        Err(e @ (ReadError::TooDeep { .. } | ReadError::PartTooLarge { .. })) => Err(e),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(xml: &[u8]) -> (Vec<ResponsePart>, Option<SoapFault>) {
        let mut out = Vec::new();
        let mut reader = ResponseReader::new(xml);
        let env = reader
            .read_envelope(|p| {
                out.push(p);
                Ok(())
            })
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        match env {
            Envelope::Response => (out, None),
            Envelope::Fault(f) => (out, Some(f)),
        }
    }

    #[test]
    fn writer_escapes_user_data() {
        let mut w = SoapWriter::begin(SchemaVersion::V14_0, "getUser");
        w.text("userid", "a<b&\"c");
        let xml = String::from_utf8(w.finish()).unwrap();
        assert!(xml.contains("<userid>a&lt;b&amp;&quot;c</userid>"), "{xml}");
        assert!(xml.contains("xmlns:ns=\"http://www.cisco.com/AXL/API/14.0\""));
        assert!(xml.ends_with("</ns:getUser></soapenv:Body></soapenv:Envelope>"));
    }

    #[tokio::test]
    async fn reads_items_latin1_and_trailing_comment() {
        let mut xml = b"<?xml version='1.0' encoding='UTF-8'?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:ns=\"http://www.cisco.com/AXL/API/12.5\"><soapenv:Body><ns:listUserResponse><return><user uuid=\"{AB}\"><lastName>M".to_vec();
        xml.push(0xfc); // u-umlaut in ISO-8859-1
        xml.extend_from_slice(b"ller &amp; Co</lastName><mailid/></user><user uuid=\"{CD}\"><lastName>X</lastName></user></return></ns:listUserResponse></soapenv:Body></soapenv:Envelope><!--This API has been processed by GAXL not AXL-->");
        let (parts, fault) = parts(&xml).await;
        assert!(fault.is_none());
        assert_eq!(parts.len(), 2);
        let ResponsePart::Item(first) = &parts[0] else {
            panic!("{parts:?}")
        };
        assert_eq!(first.attribute("uuid"), Some("{AB}"));
        assert_eq!(first.child_text("lastName").as_deref(), Some("Müller & Co"));
        assert_eq!(first.child_text("mailid"), None);
    }

    #[tokio::test]
    async fn reads_return_text_and_faults() {
        let ok = br#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><ns:addUserResponse xmlns:ns="http://www.cisco.com/AXL/API/14.0"><return>{1234}</return></ns:addUserResponse></e:Body></e:Envelope>"#;
        let (parts, _) = parts(ok).await;
        assert!(matches!(&parts[0], ResponsePart::ReturnText(t) if t == "{1234}"));

        let fault = br#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>x</faultstring><detail><ns2:axlError xmlns:ns2="http://www.cisco.com/AXL/API/11.5"><axlcode>5007</axlcode><axlmessage>The queueId value does not match</axlmessage><request>listChange</request></ns2:axlError></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        let f = parse_fault(fault).await.unwrap().unwrap();
        assert_eq!(f.axlcode, Some(5007));
        assert_eq!(f.faultcode, "soapenv:Server");
        let err = f.into_error("listChange");
        assert_eq!(err.axlcode(), Some(5007));
        assert!(err.to_string().contains("queueId"));
    }

    #[tokio::test]
    async fn truncated_body_is_an_error() {
        let cut = br#"<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><ns:listUserResponse xmlns:ns="x"><return><user><userid>a</userid></user><user><use"#;
        let mut reader = ResponseReader::new(&cut[..]);
        let result = reader.read_envelope(|_| Ok(())).await;
        assert!(matches!(result, Err(ReadError::Malformed(_))));
    }
}

/// Property tests of the response reader: arbitrary and mutated bytes never panic, and
/// nothing it hands out is deeper or bigger than its limits. 256 cases by default
/// (proptest's default); `PROPTEST_CASES=100000 cargo test -p ucbridge-axl reader_props`
/// runs longer.
#[cfg(test)]
mod reader_props {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &[u8] = br#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><ns:listUserResponse xmlns:ns="http://www.cisco.com/AXL/API/14.0"><return><user uuid="{A}"><userid>a&amp;b</userid><associatedDevices><device>SEP1</device></associatedDevices></user><row><c/></row></return></ns:listUserResponse></soapenv:Body></soapenv:Envelope>"#;
    const FAULT: &[u8] = br#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><soapenv:Fault><faultcode>soapenv:Server</faultcode><faultstring>x</faultstring><detail><axlError><axlcode>-1</axlcode><axlmessage>m</axlmessage></axlError></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;

    /// Depth of a node tree, counted without recursion.
    fn depth(node: &XmlNode) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(node, 1)];
        while let Some((n, d)) = stack.pop() {
            deepest = deepest.max(d);
            stack.extend(n.children.iter().map(|c| (c, d + 1)));
        }
        deepest
    }

    /// Read `body` with `limits`; the deepest part handed out, and the outcome.
    fn read(body: &[u8], limits: ReadLimits) -> (usize, Result<(), ReadError>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut reader = ResponseReader::with_limits(body, limits);
            let mut deepest = 0;
            let result = reader
                .read_envelope(|part| {
                    if let ResponsePart::Item(n) | ResponsePart::Other(n) = &part {
                        deepest = deepest.max(depth(n));
                    }
                    Ok(())
                })
                .await
                .map(|_| ());
            (deepest, result)
        })
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(usize, u8),
        Insert(usize, Vec<u8>),
        Delete(usize, usize),
        Truncate(usize),
        Nest(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let fragment = prop_oneof![
            Just(b"<a>".to_vec()),
            Just(b"</a>".to_vec()),
            Just(b"<return>".to_vec()),
            Just(b"&amp;".to_vec()),
            Just(b"&bogus;".to_vec()),
            Just(b"<![CDATA[x]]>".to_vec()),
            Just(vec![0xff, 0xfe]),
            proptest::collection::vec(any::<u8>(), 0..8),
        ];
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
            (any::<usize>(), fragment).prop_map(|(i, f)| Mutation::Insert(i, f)),
            (any::<usize>(), 0usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), 0usize..300).prop_map(|(i, n)| Mutation::Nest(i, n)),
        ]
    }

    fn apply(body: &mut Vec<u8>, m: &Mutation) {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match m {
            Mutation::Flip(i, b) if !body.is_empty() => {
                let i = i % body.len();
                body[i] ^= b;
            }
            Mutation::Flip(..) => {}
            Mutation::Insert(i, f) => {
                let i = at(*i, body.len());
                body.splice(i..i, f.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = at(*i, body.len());
                let end = (i + n).min(body.len());
                body.drain(i..end);
            }
            Mutation::Truncate(i) => body.truncate(at(*i, body.len())),
            Mutation::Nest(i, n) => {
                let i = at(*i, body.len());
                body.splice(i..i, b"<a>".repeat(*n));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::default())]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let (deepest, _) = read(&body, ReadLimits::default());
            prop_assert!(deepest <= MAX_XML_DEPTH);
        }

        #[test]
        fn mutated_answers_stay_within_the_limits(
            fault in any::<bool>(),
            mutations in proptest::collection::vec(mutation(), 1..6),
            max_depth in 3usize..80,
        ) {
            let mut body = if fault { FAULT.to_vec() } else { SAMPLE.to_vec() };
            for m in &mutations {
                apply(&mut body, m);
            }
            let limits = ReadLimits { max_depth, max_part_bytes: 64 << 10 };
            let (deepest, result) = read(&body, limits);
            // A part starts at document depth 3 at the least (Body › op › part, when
            // mutations dropped the Envelope), so it can be at most `max_depth - 2` deep.
            prop_assert!(deepest + 2 <= max_depth, "part of depth {} under limit {}", deepest, max_depth);
            if let Err(ReadError::TooDeep { limit }) = result {
                prop_assert_eq!(limit, max_depth);
            }
            // Faults parse from the same bytes without panicking either.
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let _ = runtime.block_on(parse_fault(&body));
        }

        #[test]
        fn nesting_is_refused_exactly_past_the_limit(extra in 0usize..200) {
            let mut body = b"<e:Envelope xmlns:e=\"s\"><e:Body><r><return>".to_vec();
            body.extend(b"<a>".repeat(extra));
            body.extend(b"</a>".repeat(extra));
            body.extend_from_slice(b"</return></r></e:Body></e:Envelope>");
            let (_, result) = read(&body, ReadLimits::default());
            // Envelope, Body, r and return are 4 levels.
            if extra + 4 > MAX_XML_DEPTH {
                prop_assert!(matches!(result, Err(ReadError::TooDeep { .. })), "{:?}", result);
            } else {
                prop_assert!(result.is_ok(), "{:?}", result);
            }
        }

        #[test]
        fn a_part_never_outgrows_its_memory_budget(items in 0usize..5000) {
            let mut body = b"<e:Envelope xmlns:e=\"s\"><e:Body><r><return><user>".to_vec();
            body.extend(b"<a/>".repeat(items));
            body.extend_from_slice(b"</user></return></r></e:Body></e:Envelope>");
            let limits = ReadLimits { max_part_bytes: 64 << 10, ..ReadLimits::default() };
            let (_, result) = read(&body, limits);
            let cost = std::mem::size_of::<XmlNode>() * (items + 1) + 4 + items;
            if cost > 64 << 10 {
                prop_assert!(matches!(result, Err(ReadError::PartTooLarge { .. })), "{:?}", result);
            } else {
                prop_assert!(result.is_ok(), "{:?}", result);
            }
        }
    }
}
