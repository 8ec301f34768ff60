//! listChange: CUCM's data change notification (CUCM 10.0 and later, so every schema this
//! client speaks). Poll it with the cursor of the previous answer to learn, within
//! seconds, what was added, updated or removed (AXL Developer Guide, "Data Change
//! Notification"; notes §6).

use serde::Serialize;

use crate::client::Access;
use crate::xml::{ResponsePart, XmlNode};
use crate::{AxlClient, AxlError};

/// Where to continue reading the change queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChangeCursor {
    /// Identifies the AXL service instance; it changes when the service restarts, and then
    /// CUCM answers 5007 and a full resynchronisation is needed.
    pub queue_id: String,
    pub next_start_change_id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ChangeAction {
    Added,
    Updated,
    Removed,
}

/// One entry of the change queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub id: i64,
    /// `XChangeType`, e.g. "User", "Phone", "Line".
    pub object_type: String,
    pub uuid: String,
    pub action: ChangeAction,
    /// True when the change must be fetched with get<Type>; false when `changed_tags`
    /// carries the new values (or for removals).
    pub do_get: bool,
    pub changed_tags: Vec<(String, String)>,
}

/// One listChange answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeBatch {
    pub first_change_id: Option<i64>,
    pub last_change_id: Option<i64>,
    pub cursor: ChangeCursor,
    pub changes: Vec<Change>,
}

impl ChangeBatch {
    /// CUCM pages the queue: more is waiting while the last id is at or past the next start.
    pub fn has_more(&self) -> bool {
        self.last_change_id
            .is_some_and(|last| last >= self.cursor.next_start_change_id)
    }
}

fn parse_change(node: &XmlNode) -> Result<Change, AxlError> {
    let bad = |detail: String| AxlError::Protocol {
        operation: "listChange".into(),
        detail,
    };
    let action = match node.child_text("action").as_deref() {
        Some("a") => ChangeAction::Added,
        Some("u") => ChangeAction::Updated,
        Some("r") => ChangeAction::Removed,
        other => return Err(bad(format!("unknown change action {other:?}"))),
    };
    Ok(Change {
        id: node
            .child_text("id")
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| bad("change without id".into()))?,
        object_type: node.attribute("type").unwrap_or_default().to_owned(),
        uuid: node
            .attribute("uuid")
            .ok_or_else(|| bad("change without uuid".into()))?
            .to_owned(),
        action,
        do_get: node
            .child_text("doGet")
            .is_some_and(|d| d.eq_ignore_ascii_case("true") || d == "t"),
        changed_tags: node
            .child("changedTags")
            .map(|t| {
                t.children
                    .iter()
                    .map(|c| {
                        (
                            c.attribute("name").unwrap_or_default().to_owned(),
                            c.text.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

impl AxlClient {
    /// One listChange call. `start: None` asks from the beginning of CUCM's cache (the
    /// first call of a consumer); afterwards pass the cursor of the previous batch.
    /// `objects` restricts the types (e.g. `["User"]`); empty means all.
    pub async fn list_change(
        &self,
        start: Option<&ChangeCursor>,
        objects: &[&str],
    ) -> Result<ChangeBatch, AxlError> {
        const OP: &str = "listChange";
        let mut w = self.writer(OP);
        if let Some(cursor) = start {
            w.text_with_attr(
                "startChangeId",
                ("queueId", &cursor.queue_id),
                &cursor.next_start_change_id.to_string(),
            );
        }
        if !objects.is_empty() {
            w.start("objectList");
            for o in objects {
                w.text("object", o);
            }
            w.end("objectList");
        }
        let mut queue = None;
        let mut changes = Vec::new();
        self.call(OP, w.finish(), Access::Read, |part| {
            // listChangeResponse has no <return> wrapper (XSD ListChangeRes).
            if let ResponsePart::Other(node) = part {
                match node.name.as_str() {
                    "queueInfo" => queue = Some(node),
                    "changes" => {
                        for c in node.children.iter().filter(|c| c.name == "change") {
                            changes.push(parse_change(c)?);
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        })
        .await?;
        let queue = queue.ok_or_else(|| AxlError::Protocol {
            operation: OP.into(),
            detail: "listChange answer has no queueInfo".into(),
        })?;
        let num = |name: &str| queue.child_text(name).and_then(|v| v.parse::<i64>().ok());
        Ok(ChangeBatch {
            first_change_id: num("firstChangeId"),
            last_change_id: num("lastChangeId"),
            cursor: ChangeCursor {
                queue_id: queue.child_text("queueId").unwrap_or_default(),
                next_start_change_id: num("nextStartChangeId").ok_or_else(|| {
                    AxlError::Protocol {
                        operation: OP.into(),
                        detail: "queueInfo has no nextStartChangeId".into(),
                    }
                })?,
            },
            changes,
        })
    }

    /// The cursor at the end of the queue, reading past (and dropping) what CUCM still has
    /// cached: where a consumer starts after taking a full copy of the data.
    pub async fn change_queue_end(&self, objects: &[&str]) -> Result<ChangeCursor, AxlError> {
        let mut batch = self.list_change(None, objects).await?;
        while batch.has_more() {
            let cursor = batch.cursor.clone();
            batch = self.list_change(Some(&cursor), objects).await?;
            if batch.changes.is_empty() && batch.cursor == cursor {
                break; // no progress: never spin
            }
        }
        Ok(batch.cursor)
    }

    /// Read the queue from `start` to its end, following CUCM's paging.
    pub async fn list_change_all(
        &self,
        start: Option<&ChangeCursor>,
        objects: &[&str],
    ) -> Result<(Vec<Change>, ChangeCursor), AxlError> {
        let mut batch = self.list_change(start, objects).await?;
        let mut all = std::mem::take(&mut batch.changes);
        while batch.has_more() {
            let cursor = batch.cursor.clone();
            batch = self.list_change(Some(&cursor), objects).await?;
            if batch.changes.is_empty() && batch.cursor == cursor {
                break; // no progress: never spin
            }
            all.append(&mut batch.changes);
        }
        Ok((all, batch.cursor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_cisco_example_change() {
        let Some(xml) = ucbridge_testkit::fixture_bytes(
            "axl-samples/listChange.response-next.cisco-devguide.xml",
        ) else {
            return;
        };
        let mut reader = crate::xml::ResponseReader::new(&xml[..]);
        let mut changes = Vec::new();
        reader
            .read_envelope(|p| {
                if let ResponsePart::Other(n) = p {
                    if n.name == "changes" {
                        for c in &n.children {
                            changes.push(parse_change(c)?);
                        }
                    }
                }
                Ok(())
            })
            .await
            .map_err(|e| format!("{e:?}"))
            .unwrap();
        assert_eq!(changes.len(), 4);
        assert_eq!(changes[0].action, ChangeAction::Added);
        assert!(changes[0].do_get);
        assert_eq!(changes[2].action, ChangeAction::Removed);
        assert_eq!(
            changes[3].changed_tags[0],
            ("name".into(), "SEP00000001".into())
        );
    }
}
