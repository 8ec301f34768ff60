//! A small element tree both wire formats are read into, so one set of model readers
//! serves XML and JSON (whose CUC quirks — string scalars, `@total`, a lone object for a
//! one-element list, no key for an empty list — are absorbed here; notes §1.4).
//!
//! Trees are bounded in depth ([`MAX_DEPTH`]) while they are built, and freed without
//! recursion, so no document can exhaust the stack.

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::limits::MAX_DEPTH;
use crate::CucError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) text: String,
    pub(crate) children: Vec<Node>,
}

impl Drop for Node {
    /// Frees the subtree with an explicit stack: the derived drop would recurse once per
    /// level. The depth cap already bounds that; this keeps it safe for any tree.
    fn drop(&mut self) {
        let mut pending = std::mem::take(&mut self.children);
        while let Some(mut node) = pending.pop() {
            pending.append(&mut node.children);
        }
    }
}

impl Node {
    fn named(name: String) -> Node {
        Node {
            name,
            attrs: Vec::new(),
            text: String::new(),
            children: Vec::new(),
        }
    }

    pub(crate) fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub(crate) fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text of a child, `None` when absent or empty (Cisco prints empty elements).
    pub(crate) fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name)
            .map(|c| c.text.trim())
            .filter(|t| !t.is_empty())
    }

    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn malformed(message: String) -> CucError {
    CucError::Protocol(message)
}

/// Reads an XML document into a tree, iteratively, refusing it at the first element
/// deeper than [`MAX_DEPTH`].
pub(crate) fn from_xml(bytes: &[u8]) -> Result<Node, CucError> {
    let mut reader = Reader::from_reader(bytes);
    let mut stack: Vec<Node> = Vec::new();
    loop {
        let event = reader.read_event().map_err(|e| {
            malformed(format!(
                "malformed XML at byte {}: {e}",
                reader.buffer_position()
            ))
        })?;
        match event {
            Event::Start(_) | Event::Empty(_) if stack.len() >= MAX_DEPTH => {
                return Err(CucError::TooDeep { limit: MAX_DEPTH });
            }
            Event::Start(e) => stack.push(start(&e)?),
            Event::Empty(e) => {
                let node = start(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map_err(|e| malformed(format!("bad XML text: {e}")))?;
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&text);
                }
            }
            Event::CData(c) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::End(_) => {
                let Some(node) = stack.pop() else {
                    return Err(malformed("unbalanced XML".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Eof => {
                return Err(malformed(
                    "the XML document ended early (or is empty)".into(),
                ))
            }
            _ => {}
        }
    }
}

fn start(e: &quick_xml::events::BytesStart<'_>) -> Result<Node, CucError> {
    let mut node = Node::named(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
    for a in e.attributes() {
        let a = a.map_err(|e| malformed(format!("bad XML attribute: {e}")))?;
        let value = a
            .unescape_value()
            .map_err(|e| malformed(format!("bad XML attribute: {e}")))?;
        node.attrs.push((
            String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(node)
}

/// JSON drops the root element's name; `root` puts it back. serde_json refuses nesting
/// beyond 128 levels while parsing; the tree built from it is held to [`MAX_DEPTH`].
pub(crate) fn from_json(bytes: &[u8], root: &str) -> Result<Node, CucError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            CucError::TooDeep { limit: MAX_DEPTH }
        } else {
            malformed(format!("malformed JSON: {e}"))
        }
    })?;
    if !value.is_object() {
        return Err(malformed("the JSON answer is not an object".into()));
    }
    json_node(root, &value, 1)
}

/// Recursive, but only to `MAX_DEPTH` levels: deeper input is an error before the next call.
fn json_node(name: &str, value: &serde_json::Value, depth: usize) -> Result<Node, CucError> {
    if depth > MAX_DEPTH {
        return Err(CucError::TooDeep { limit: MAX_DEPTH });
    }
    let mut node = Node::named(name.to_owned());
    let serde_json::Value::Object(map) = value else {
        node.text = scalar(value);
        return Ok(node);
    };
    for (k, v) in map {
        if let Some(attr) = k.strip_prefix('@') {
            node.attrs.push((attr.to_owned(), scalar(v)));
            continue;
        }
        match v {
            serde_json::Value::Array(items) => {
                for item in items {
                    node.children.push(json_node(k, item, depth + 1)?);
                }
            }
            other => node.children.push(json_node(k, other, depth + 1)?),
        }
    }
    Ok(node)
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_and_json_give_the_same_tree() {
        let x = from_xml(br#"<?xml version="1.0"?><Messages total="1"><Message><Read>true</Read><Subject>a &amp; b</Subject><Empty/></Message></Messages>"#).unwrap();
        let j = from_json(
            br#"{"@total":"1","Message":{"Read":"true","Subject":"a & b","Empty":""}}"#,
            "Messages",
        )
        .unwrap();
        // serde_json orders keys alphabetically; element order carries no meaning here.
        let sorted = |n: &Node| {
            let mut n = n.clone();
            for c in &mut n.children {
                c.children.sort_by(|a, b| a.name.cmp(&b.name));
            }
            n
        };
        assert_eq!(sorted(&x), sorted(&j));
        assert_eq!(x.attr("total"), Some("1"));
        let m = x.child("Message").unwrap();
        assert_eq!(m.text_of("Subject"), Some("a & b"));
        assert_eq!(m.text_of("Empty"), None);
    }

    #[test]
    fn bad_documents_are_errors_not_panics() {
        assert!(from_xml(b"").is_err());
        assert!(from_xml(b"<a><b></a>").is_err());
        assert!(from_xml(b"<a>").is_err());
        assert!(from_json(b"[1]", "x").is_err());
        assert!(from_json(b"{", "x").is_err());
    }
}
