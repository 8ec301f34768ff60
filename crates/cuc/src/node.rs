//! A small element tree both wire formats are read into, so one set of model readers
//! serves XML and JSON (whose CUC quirks — string scalars, `@total`, a lone object for a
//! one-element list, no key for an empty list — are absorbed here; notes §1.4).

use quick_xml::events::Event;
use quick_xml::Reader;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) text: String,
    pub(crate) children: Vec<Node>,
}

impl Node {
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

pub(crate) fn from_xml(bytes: &[u8]) -> Result<Node, String> {
    let mut reader = Reader::from_reader(bytes);
    let mut stack: Vec<Node> = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => stack.push(start(&e)?),
            Ok(Event::Empty(e)) => {
                let node = start(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Ok(Event::Text(t)) => {
                let text = t.unescape().map_err(|e| format!("bad XML text: {e}"))?;
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&text);
                }
            }
            Ok(Event::CData(c)) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Ok(Event::End(_)) => {
                let Some(node) = stack.pop() else {
                    return Err("unbalanced XML".into());
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Ok(Event::Eof) => return Err("the XML document ended early (or is empty)".into()),
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "malformed XML at byte {}: {e}",
                    reader.buffer_position()
                ))
            }
        }
    }
}

fn start(e: &quick_xml::events::BytesStart<'_>) -> Result<Node, String> {
    let mut node = Node {
        name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
        ..Node::default()
    };
    for a in e.attributes() {
        let a = a.map_err(|e| format!("bad XML attribute: {e}"))?;
        let value = a
            .unescape_value()
            .map_err(|e| format!("bad XML attribute: {e}"))?;
        node.attrs.push((
            String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(node)
}

/// JSON drops the root element's name; `root` puts it back.
pub(crate) fn from_json(bytes: &[u8], root: &str) -> Result<Node, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("malformed JSON: {e}"))?;
    if !value.is_object() {
        return Err("the JSON answer is not an object".into());
    }
    Ok(json_node(root, &value))
}

fn json_node(name: &str, value: &serde_json::Value) -> Node {
    let mut node = Node {
        name: name.to_owned(),
        ..Node::default()
    };
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if let Some(attr) = k.strip_prefix('@') {
                    node.attrs.push((attr.to_owned(), scalar(v)));
                    continue;
                }
                match v {
                    serde_json::Value::Array(items) => {
                        node.children.extend(items.iter().map(|i| json_node(k, i)));
                    }
                    other => node.children.push(json_node(k, other)),
                }
            }
        }
        other => node.text = scalar(other),
    }
    node
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
