//! One record shape, two wire formats: CUC's XML, and its JSON with the quirks clients
//! depend on (notes §1.4): every scalar a string, the list count as `"@total"`, a list of
//! one as an object rather than an array, no key at all for an empty list.

use std::io;

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

/// A value in a record.
pub(crate) enum Val {
    Text(String),
    Obj(Obj),
}

/// An element with attributes and ordered children (names may repeat: a list).
pub(crate) struct Obj {
    pub(crate) name: &'static str,
    attrs: Vec<(&'static str, String)>,
    fields: Vec<(&'static str, Val)>,
}

impl Obj {
    pub(crate) fn new(name: &'static str) -> Obj {
        Obj {
            name,
            attrs: Vec::new(),
            fields: Vec::new(),
        }
    }

    pub(crate) fn attr(mut self, name: &'static str, value: impl ToString) -> Obj {
        self.attrs.push((name, value.to_string()));
        self
    }

    pub(crate) fn text(mut self, name: &'static str, value: impl ToString) -> Obj {
        self.fields.push((name, Val::Text(value.to_string())));
        self
    }

    pub(crate) fn opt(self, name: &'static str, value: Option<impl ToString>) -> Obj {
        match value {
            Some(v) => self.text(name, v),
            None => self,
        }
    }

    pub(crate) fn child(mut self, obj: Obj) -> Obj {
        self.fields.push((obj.name, Val::Obj(obj)));
        self
    }

    pub(crate) fn push(&mut self, obj: Obj) {
        self.fields.push((obj.name, Val::Obj(obj)));
    }
}

/// What the client asked for with `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Xml,
    Json,
}

impl Format {
    /// JSON only when asked for explicitly; XML is CUC's default (notes §1.4).
    pub(crate) fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.to_ascii_lowercase().contains("application/json") => Format::Json,
            _ => Format::Xml,
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Xml => "application/xml",
            Format::Json => "application/json",
        }
    }
}

pub(crate) fn render(obj: &Obj, format: Format) -> Vec<u8> {
    match format {
        Format::Xml => xml(obj).unwrap_or_default(),
        Format::Json => json(obj).to_string().into_bytes(),
    }
}

fn xml(obj: &Obj) -> io::Result<Vec<u8>> {
    let mut w = Writer::new(Vec::new());
    w.write_event(Event::Decl(BytesDecl::new(
        "1.0",
        Some("UTF-8"),
        Some("yes"),
    )))?;
    write_obj(&mut w, obj)?;
    Ok(w.into_inner())
}

fn write_obj(w: &mut Writer<Vec<u8>>, obj: &Obj) -> io::Result<()> {
    let mut start = BytesStart::new(obj.name);
    for (k, v) in &obj.attrs {
        start.push_attribute((*k, v.as_str()));
    }
    if obj.fields.is_empty() {
        return w.write_event(Event::Empty(start));
    }
    w.write_event(Event::Start(start))?;
    for (name, val) in &obj.fields {
        match val {
            Val::Text(t) if t.is_empty() => w.write_event(Event::Empty(BytesStart::new(*name)))?,
            Val::Text(t) => {
                w.write_event(Event::Start(BytesStart::new(*name)))?;
                w.write_event(Event::Text(BytesText::new(t)))?;
                w.write_event(Event::End(BytesEnd::new(*name)))?;
            }
            Val::Obj(o) => write_obj(w, o)?,
        }
    }
    w.write_event(Event::End(BytesEnd::new(obj.name)))
}

/// The object's members (not wrapped in its name: CUC's JSON drops the root element).
fn json(obj: &Obj) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, v) in &obj.attrs {
        map.insert(format!("@{k}"), serde_json::Value::String(v.clone()));
    }
    for (name, val) in &obj.fields {
        let value = match val {
            Val::Text(t) => serde_json::Value::String(t.clone()),
            Val::Obj(o) => json(o),
        };
        match map.get_mut(*name) {
            None => {
                map.insert((*name).to_owned(), value);
            }
            // Values are only strings and objects, so an array here is a repetition.
            Some(serde_json::Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = serde_json::Value::Array(vec![first, value]);
            }
        }
    }
    serde_json::Value::Object(map)
}

/// CUC's error body (`ErrorDetails`, fixtures `cupi-error-details-*.xml`); JSON clients
/// read `errors.code` (notes §1.4).
pub(crate) fn error_details(code: &str, message: &str) -> Obj {
    Obj::new("ErrorDetails").child(
        Obj::new("errors")
            .text("code", code)
            .text("message", message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> Obj {
        let mut o = Obj::new("Messages").attr("total", n);
        for i in 0..n {
            o.push(
                Obj::new("Message")
                    .text("Read", i % 2 == 0)
                    .text("Subject", "a<b"),
            );
        }
        o
    }

    #[test]
    fn json_keeps_cucs_quirks() {
        assert_eq!(json(&list(0)).to_string(), r#"{"@total":"0"}"#);
        let one = json(&list(1));
        assert!(one["Message"].is_object(), "{one}");
        assert_eq!(one["Message"]["Read"], "true");
        let three = json(&list(3));
        assert_eq!(three["Message"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn xml_escapes() {
        let x = String::from_utf8(render(&list(1), Format::Xml)).unwrap();
        assert!(
            x.contains("<Messages total=\"1\"><Message><Read>true</Read><Subject>a&lt;b</Subject>"),
            "{x}"
        );
        assert!(String::from_utf8(render(&list(0), Format::Xml))
            .unwrap()
            .ends_with("<Messages total=\"0\"/>"));
    }
}
