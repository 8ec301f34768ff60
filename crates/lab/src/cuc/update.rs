//! The body of a CUMI message PUT (`PUT /vmrest/messages/<id>`), XML or JSON.
//!
//! CUMI's `Message` schema marks `Subject` and `Read` as the "fields that can be modified by
//! the client at any time"; the rest are send-time flags or the envelope CUC fills in
//! (fixture `cumi-schema-fragments.xsd.txt`; notes §0.4, §1.1). What CUC does with another
//! field in a PUT is not public: the lab refuses the whole request (the stricter option),
//! 403 as CUC answers a forbidden PUT (capture `cupi-http-capture-configurationvalues.txt`),
//! and 400 `DATA_EXCEPTION` for names that are not in the schema at all or bad values.

use quick_xml::events::Event;

/// Every element of CUMI's `Message` (schema fragments, plus `InvestigativeHold` of guide
/// ch. 01001 and `SessionId`, which real responses carry, fixture `cumi-message-detail.xml`).
const MESSAGE_FIELDS: &[&str] = &[
    "Subject",
    "Read",
    "Dispatch",
    "Secure",
    "Priority",
    "Sensitivity",
    "ReadReceiptRequested",
    "FutureDelivery",
    "DeliveryReceiptRequested",
    "Attachments",
    "Recipients",
    "SessionId",
    "URI",
    "MsgId",
    "From",
    "CallerId",
    "ArrivalTime",
    "Size",
    "Duration",
    "IMAPUid",
    "FromSub",
    "FromVmIntSub",
    "Flagged",
    "MsgType",
    "ModificationTime",
    "IsDraft",
    "IsDeleted",
    "IsSent",
    "IsFuture",
    "FolderURI",
    "InvestigativeHold",
];

/// What a PUT asks to change.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Update {
    pub(crate) subject: Option<String>,
    pub(crate) read: Option<bool>,
}

/// Why a PUT body is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UpdateError {
    /// Malformed body, unknown element, bad value: 400 `DATA_EXCEPTION`.
    #[error("{0}")]
    Invalid(String),
    /// A `Message` field the client may not change: 403.
    #[error("{0} is read-only: only Subject and Read can be changed")]
    ReadOnly(String),
}

/// One top-level member of the body: its text, or `None` for a structure (an element
/// with children, a JSON object or array).
type Field = (String, Option<String>);

pub(crate) fn parse(json: bool, body: &[u8]) -> Result<Update, UpdateError> {
    let fields = if json {
        json_fields(body)?
    } else {
        xml_fields(body)?
    };
    let mut update = Update::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &fields {
        if seen.contains(&name.as_str()) {
            return Err(UpdateError::Invalid(format!("{name} is given twice")));
        }
        seen.push(name);
        match (name.as_str(), value) {
            ("Subject", Some(v)) => update.subject = Some(v.clone()),
            ("Read", Some(v)) => {
                update.read = Some(match v.trim() {
                    "true" => true,
                    "false" => false,
                    other => {
                        return Err(UpdateError::Invalid(format!(
                            "Invalid value {other:?} for Read"
                        )))
                    }
                })
            }
            ("Subject" | "Read", None) => {
                return Err(UpdateError::Invalid(format!("{name} must be a value")))
            }
            (n, _) if MESSAGE_FIELDS.contains(&n) => {
                return Err(UpdateError::ReadOnly(n.to_owned()))
            }
            (n, _) => {
                return Err(UpdateError::Invalid(format!(
                    "Unknown field {n:?} in Message"
                )))
            }
        }
    }
    Ok(update)
}

fn json_fields(body: &[u8]) -> Result<Vec<Field>, UpdateError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| UpdateError::Invalid(format!("Invalid JSON body: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(UpdateError::Invalid(
            "The body must be a Message object".into(),
        ));
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                // CUC's JSON scalars are strings (notes §1.4); a bare boolean is accepted.
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Null => Some(String::new()),
                serde_json::Value::Object(_) | serde_json::Value::Array(_) => None,
            };
            (k, text)
        })
        .collect())
}

/// The children of the root `<Message>`, in order.
fn xml_fields(body: &[u8]) -> Result<Vec<Field>, UpdateError> {
    let invalid =
        |e: &dyn std::fmt::Display| UpdateError::Invalid(format!("Invalid XML body: {e}"));
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut depth = 0usize;
    let mut root = None;
    let mut fields = Vec::new();
    // The member being read: its name, its text so far, whether it has children.
    let mut current: Option<(String, String, bool)> = None;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match depth {
                    0 => root = Some(name),
                    1 => current = Some((name, String::new(), false)),
                    _ => {
                        if let Some(c) = current.as_mut() {
                            c.2 = true;
                        }
                    }
                }
                depth += 1;
            }
            Ok(Event::Empty(e)) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match depth {
                    0 => root = Some(name),
                    1 => fields.push((name, Some(String::new()))),
                    _ => {
                        if let Some(c) = current.as_mut() {
                            c.2 = true;
                        }
                    }
                }
            }
            Ok(Event::Text(t)) => {
                let text = t.unescape().map_err(|e| invalid(&e))?;
                if let Some(c) = current.as_mut().filter(|_| depth == 2) {
                    c.1.push_str(&text);
                }
            }
            Ok(Event::CData(t)) => {
                if let Some(c) = current.as_mut().filter(|_| depth == 2) {
                    c.1.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Ok(Event::End(_)) => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    if let Some((name, text, nested)) = current.take() {
                        fields.push((name, (!nested).then_some(text)));
                    }
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(invalid(&e)),
        }
    }
    if root.as_deref() != Some("Message") {
        return Err(UpdateError::Invalid("The body must be a Message".into()));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_and_read_are_writable() {
        let xml = parse(
            false,
            b"<Message><Read>true</Read><Subject>a &amp; b</Subject></Message>",
        );
        assert_eq!(
            xml,
            Ok(Update {
                subject: Some("a & b".into()),
                read: Some(true)
            })
        );
        let json = parse(true, br#"{"Read":"false"}"#);
        assert_eq!(
            json,
            Ok(Update {
                subject: None,
                read: Some(false)
            })
        );
        assert_eq!(parse(false, b"<Message/>"), Ok(Update::default()));
    }

    #[test]
    fn everything_else_is_refused() {
        for body in [
            &b"<Message><Read>true</Read><Priority>Urgent</Priority></Message>"[..],
            b"<Message><From><DisplayName>x</DisplayName></From></Message>",
            b"<Message><Flagged/></Message>",
        ] {
            assert!(
                matches!(parse(false, body), Err(UpdateError::ReadOnly(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            parse(true, br#"{"Read":"true","MsgId":"0:x"}"#),
            Err(UpdateError::ReadOnly("MsgId".into()))
        );
        for (json, body) in [
            (false, &b"<Message><Colour>red</Colour></Message>"[..]),
            (false, b"<Msg><Read>true</Read></Msg>"),
            (false, b"<Message><Read>yes</Read></Message>"),
            (
                false,
                b"<Message><Read>true</Read><Read>false</Read></Message>",
            ),
            (false, b"<Message><Subject><b>x</b></Subject></Message>"),
            (false, b"<Message><Read>true</Message>"),
            (true, br#"["Read"]"#),
            (true, br#"{"Subject":{"x":"y"}}"#),
        ] {
            assert!(
                matches!(parse(json, body), Err(UpdateError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
