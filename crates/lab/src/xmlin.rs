//! Request parsing: the SOAP envelope into a small element tree keyed by local names.
//!
//! AXL requests are small and arbitrarily prefixed (zeep uses `soap-env`/`ns0`, Cisco's
//! samples `soapenv`/`ns`), so elements are matched by local name; only the operation
//! element's namespace matters (it carries the schema version).

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// Deeper documents are rejected: AXL payloads nest a handful of levels, and a bound keeps
/// hostile input from exhausting memory or the stack when the tree is dropped.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Default)]
pub(crate) struct Elem {
    pub name: String,
    pub ns: Option<String>,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Elem>,
    /// `xsi:nil="true"` (zeep sends it for required nillable elements left empty).
    pub nil: bool,
}

/// A request field: absent, present but empty/nil, or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field<'a> {
    Absent,
    Empty,
    Value(&'a str),
}

impl<'a> Field<'a> {
    pub fn value(self) -> Option<&'a str> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_present(self) -> bool {
        !matches!(self, Field::Absent)
    }
}

impl Elem {
    pub fn child(&self, name: &str) -> Option<&Elem> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Elem> + 's {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element's own text as a field (nil and empty are the same to AXL).
    pub fn as_field(&self) -> Field<'_> {
        let text = self.text.trim();
        if self.nil || text.is_empty() {
            Field::Empty
        } else {
            Field::Value(text)
        }
    }

    pub fn field(&self, name: &str) -> Field<'_> {
        self.child(name).map_or(Field::Absent, Elem::as_field)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.field(name).value()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("XML is not well-formed: {0}")]
    Xml(#[from] quick_xml::Error),
    #[error("XML attribute error: {0}")]
    Attr(#[from] quick_xml::events::attributes::AttrError),
    #[error("document nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("not a SOAP envelope: {0}")]
    NotSoap(&'static str),
}

/// Parse an envelope and return the operation element (first element child of `Body`).
pub(crate) fn parse_operation(body: &[u8]) -> Result<Elem, ParseError> {
    let root = parse_document(body)?;
    if root.name != "Envelope" {
        return Err(ParseError::NotSoap("root element is not Envelope"));
    }
    let body = root
        .child("Body")
        .ok_or(ParseError::NotSoap("no Body element"))?;
    body.children
        .first()
        .cloned()
        .ok_or(ParseError::NotSoap("empty Body"))
}

pub(crate) fn parse_document(bytes: &[u8]) -> Result<Elem, ParseError> {
    let mut reader = NsReader::from_reader(bytes);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Elem> = Vec::new();
    let mut root: Option<Elem> = None;
    let mut buf = Vec::new();
    loop {
        let (resolved, event) = reader.read_resolved_event_into(&mut buf)?;
        let ns = match resolved {
            ResolveResult::Bound(ns) => Some(String::from_utf8_lossy(ns.as_ref()).into_owned()),
            _ => None,
        };
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(ParseError::NotSoap("content after the root element"));
            }
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ParseError::TooDeep);
                }
                stack.push(start_elem(&e, ns)?);
            }
            Event::Empty(e) => {
                let elem = start_elem(&e, ns)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(elem),
                    None => root = Some(elem),
                }
            }
            Event::End(_) => {
                let elem = stack
                    .pop()
                    .ok_or(ParseError::NotSoap("unbalanced end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(elem),
                    None => root = Some(elem),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.unescape()?);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(ParseError::NotSoap("document ends inside an element"));
    }
    root.ok_or(ParseError::NotSoap("no root element"))
}

fn start_elem(
    e: &quick_xml::events::BytesStart<'_>,
    ns: Option<String>,
) -> Result<Elem, ParseError> {
    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
    let mut elem = Elem {
        name,
        ns,
        ..Elem::default()
    };
    for attr in e.attributes() {
        let attr = attr?;
        let key = attr.key.as_ref();
        if key.starts_with(b"xmlns") {
            continue;
        }
        let local = String::from_utf8_lossy(attr.key.local_name().as_ref()).into_owned();
        let value = attr.unescape_value()?.into_owned();
        if local == "nil" && (value == "true" || value == "1") {
            elem.nil = true;
        }
        elem.attrs.push((local, value));
    }
    Ok(elem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zeep_request_with_nil() {
        let xml = br#"<?xml version='1.0' encoding='utf-8'?>
<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body><ns0:addPhone xmlns:ns0="http://www.cisco.com/AXL/API/14.0"><phone><name>SEP001122334455</name><lines><line><index>1</index><dirn><pattern>4001</pattern><routePartitionName xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"/></dirn></line></lines><description>a &amp; b</description></phone></ns0:addPhone></soap-env:Body></soap-env:Envelope>"#;
        let op = parse_operation(xml).expect("valid envelope");
        assert_eq!(op.name, "addPhone");
        assert_eq!(op.ns.as_deref(), Some("http://www.cisco.com/AXL/API/14.0"));
        let phone = op.child("phone").expect("phone");
        assert_eq!(phone.value("name"), Some("SEP001122334455"));
        assert_eq!(phone.value("description"), Some("a & b"));
        let dirn = phone
            .child("lines")
            .and_then(|l| l.child("line"))
            .and_then(|l| l.child("dirn"))
            .expect("dirn");
        assert_eq!(dirn.field("routePartitionName"), Field::Empty);
        assert_eq!(dirn.field("nothing"), Field::Absent);
    }

    #[test]
    fn rejects_malformed_and_deep() {
        assert!(parse_operation(b"<a><b></a>").is_err());
        assert!(parse_operation(b"<Envelope><Body><x").is_err());
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(matches!(
            parse_operation(deep.as_bytes()),
            Err(ParseError::TooDeep)
        ));
    }
}
