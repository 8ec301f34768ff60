//! listChange: AXL's data change notification (CUCM 10.0+, notes §6).
//!
//! CUCM keeps an in-memory cache of the last 100,000 changes, identified by a `queueId`
//! that changes when the AXL service restarts. The lab fills `changequeue` with SQLite
//! triggers on the object tables (see `db::CHANGE_TRACKING`), so every write path, present
//! or future, is recorded the way CUCM's database-driven notification would record it.

use rusqlite::{params, Connection};

use super::{AxlFault, Ctx};
use crate::db::axl_uuid;
use crate::xmlin::Elem;
use crate::xmlout::Xml;

/// The object types the lab records, as `XChangeType` names them.
const TYPES: &[&str] = &["User", "Phone", "Line"];

/// The last change id before a write operation runs.
pub(super) fn queue_mark(conn: &Connection) -> Result<i64, AxlFault> {
    Ok(
        conn.query_row("SELECT ifnull(max(id), 0) FROM changequeue", [], |r| {
            r.get(0)
        })?,
    )
}

/// One AXL write is one change per object, as CUCM reports it, however many rows the lab
/// touched: a removal absorbs the operation's earlier entries for that object, and the
/// first entry (an add, or an update) absorbs the later updates.
pub(super) fn collapse_operation(conn: &Connection, mark: i64) -> Result<(), AxlFault> {
    // The absorbed updates' changed tags move to the entry that absorbs them.
    conn.execute(
        "UPDATE changedtag SET changeid = (SELECT min(e.id) FROM changequeue e \
         JOIN changequeue u ON u.id = changedtag.changeid \
         WHERE e.id > ?1 AND e.type = u.type AND e.pkid = u.pkid) \
         WHERE changeid > ?1",
        params![mark],
    )?;
    conn.execute(
        "DELETE FROM changequeue WHERE id > ?1 AND action <> 'r' AND EXISTS          (SELECT 1 FROM changequeue r WHERE r.id > ?1 AND r.type = changequeue.type           AND r.pkid = changequeue.pkid AND r.action = 'r')",
        params![mark],
    )?;
    conn.execute(
        "DELETE FROM changequeue WHERE id > ?1 AND action = 'u' AND EXISTS          (SELECT 1 FROM changequeue e WHERE e.id > ?1 AND e.id < changequeue.id           AND e.type = changequeue.type AND e.pkid = changequeue.pkid)",
        params![mark],
    )?;
    Ok(())
}

pub(super) fn list(conn: &mut Connection, req: &Elem, ctx: &Ctx<'_>) -> Result<Vec<u8>, AxlFault> {
    let queue_id: String =
        conn.query_row("SELECT queueid FROM changequeueinfo", [], |r| r.get(0))?;
    let (first, last): (Option<i64>, Option<i64>) =
        conn.query_row("SELECT min(id), max(id) FROM changequeue", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let start = match req.child("startChangeId") {
        None => None,
        Some(s) => {
            let asked_queue = s
                .attrs
                .iter()
                .find(|(k, _)| k == "queueId")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            if asked_queue != queue_id {
                // notes §6, AXL Developer Guide: a stale or wrong queueId.
                return Err(AxlFault::server(
                    5007,
                    "The queueId value does not match the server. This indicates that it is \
                     either incorrect or the server restarted and a full sync is needed.",
                ));
            }
            let id: i64 = s
                .text
                .trim()
                .parse()
                .map_err(|_| AxlFault::invalid("startChangeId", s.text.trim()))?;
            // A change already dropped from the 100,000-entry cache cannot be served
            // (notes §6 "asking for a change no longer cached is an error"; the code and
            // text are the lab's own).
            if let Some(first) = first {
                if id < first {
                    return Err(AxlFault::server(
                        5007,
                        format!(
                            "Item not valid: startChangeId {id} is no longer in the change \
                             cache (first cached change is {first}); a full sync is needed."
                        ),
                    ));
                }
            }
            Some(id)
        }
    };
    let wanted: Vec<String> = req
        .child("objectList")
        .map(|l| {
            l.children_named("object")
                .map(|o| o.text.trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let type_filter: Vec<&str> = if wanted.is_empty() {
        TYPES.to_vec()
    } else {
        TYPES
            .iter()
            .copied()
            .filter(|t| wanted.iter().any(|w| w.eq_ignore_ascii_case(t)))
            .collect()
    };
    let from = start.unwrap_or(i64::MIN);
    let mut stmt = conn.prepare(
        "SELECT id, type, pkid, action FROM changequeue WHERE id >= ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(
            params![from, i64::try_from(ctx.change_page).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    let next_start = match rows.last() {
        Some((id, ..)) => id + 1,
        None => start.unwrap_or_else(|| last.map_or(1, |l| l + 1)),
    };

    let op = ctx.op.name();
    let mut x = Xml::new();
    x.start_response(op, ctx.version)?;
    x.open("queueInfo", &[])?;
    x.text(
        "firstChangeId",
        Some(&first.unwrap_or(next_start).to_string()),
    )?;
    x.text(
        "lastChangeId",
        Some(&last.unwrap_or(next_start - 1).to_string()),
    )?;
    x.text("nextStartChangeId", Some(&next_start.to_string()))?;
    x.text("queueId", Some(&queue_id))?;
    x.close("queueInfo")?;
    x.open("changes", &[])?;
    let mut tags_stmt =
        conn.prepare("SELECT name, value FROM changedtag WHERE changeid = ?1 ORDER BY rowid")?;
    for (id, kind, pkid, action) in &rows {
        // Filtered after paging so nextStartChangeId still moves past skipped types.
        if !type_filter.contains(&kind.as_str()) {
            continue;
        }
        let uuid = axl_uuid(pkid);
        x.open(
            "change",
            &[("type", kind.as_str()), ("uuid", uuid.as_str())],
        )?;
        x.text("id", Some(&id.to_string()))?;
        x.text("action", Some(action))?;
        let tags = if action == "u" {
            changed_tags(&mut tags_stmt, *id)?
        } else {
            Vec::new()
        };
        x.text("doGet", Some(do_get(action, &tags)))?;
        write_changed_tags(&mut x, &tags)?;
        x.close("change")?;
    }
    x.close("changes")?;
    x.end_response(op)?;
    Ok(x.into_bytes())
}

/// The tags an update changed, latest value per tag, in first-change order; `None` names
/// a change the lab cannot express as a tag.
type ChangedTags = Vec<(Option<String>, Option<String>)>;

fn changed_tags(stmt: &mut rusqlite::Statement<'_>, id: i64) -> Result<ChangedTags, AxlFault> {
    let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut tags: ChangedTags = Vec::new();
    for row in rows {
        let (name, value): (Option<String>, Option<String>) = row?;
        match tags.iter_mut().find(|(n, _)| n.is_some() && *n == name) {
            Some(existing) => existing.1 = value,
            None => tags.push((name, value)),
        }
    }
    Ok(tags)
}

/// G (listChange): `doGet` true = fetch the object with get<Type>. An update whose every
/// change is in changedTags needs no get (as in the guide's example); adds do, removals
/// cannot.
fn do_get(action: &str, tags: &ChangedTags) -> &'static str {
    let complete = !tags.is_empty() && tags.iter().all(|(name, _)| name.is_some());
    match action {
        "r" => "false",
        "u" if complete => "false",
        _ => "true",
    }
}

/// `changedTags/changedTag[@name]` with the new value (XSD `Change`, G's example).
fn write_changed_tags(x: &mut Xml, tags: &ChangedTags) -> std::io::Result<()> {
    let named: Vec<(&str, Option<&str>)> = tags
        .iter()
        .filter_map(|(n, v)| n.as_deref().map(|n| (n, v.as_deref())))
        .collect();
    if named.is_empty() {
        return x.empty("changedTags", &[]);
    }
    x.open("changedTags", &[])?;
    for (name, value) in named {
        x.text_with("changedTag", &[("name", name)], value)?;
    }
    x.close("changedTags")
}
