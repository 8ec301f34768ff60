//! Lines (directory numbers, table `numplan`): addLine, getLine, listLine, removeLine.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::{
    fk, get_tags, is_unique_violation, list_tags, lookup, paging, search_where, uuid_reply, wants,
    AxlFault, Ctx, ListOut, Tags,
};
use crate::db::{axl_uuid, new_pkid, sql_pkid};
use crate::xmlin::Elem;
use crate::xmlout::Xml;

const FROM: &str = "FROM numplan np \
    JOIN typepatternusage tpu ON tpu.enum = np.tkpatternusage \
    LEFT JOIN routepartition rp ON rp.pkid = np.fkroutepartition \
    LEFT JOIN callingsearchspace css ON css.pkid = np.fkcallingsearchspace_sharedlineappearance";

const COLUMNS: &str = "SELECT np.pkid, np.dnorpattern, np.description, tpu.name, rp.pkid, \
    rp.name, np.alertingname, css.pkid, css.name";

/// searchCriteria of ListLineReq (XSD) → columns.
const SEARCH: &[(&str, &str)] = &[
    ("pattern", "np.dnorpattern"),
    ("description", "np.description"),
    ("usage", "tpu.name"),
    ("routePartitionName", "rp.name"),
];

type Ref = Option<(String, String)>;

struct LineRow {
    pkid: String,
    pattern: String,
    description: Option<String>,
    usage: String,
    partition: Ref,
    alerting_name: Option<String>,
    share_css: Ref,
}

fn reference(r: &Row<'_>, i: usize) -> rusqlite::Result<Ref> {
    let pkid: Option<String> = r.get(i)?;
    let name: Option<String> = r.get(i + 1)?;
    Ok(pkid.zip(name))
}

impl LineRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<LineRow> {
        Ok(LineRow {
            pkid: r.get(0)?,
            pattern: r.get(1)?,
            description: r.get(2)?,
            usage: r.get(3)?,
            partition: reference(r, 4)?,
            alerting_name: r.get(6)?,
            share_css: reference(r, 7)?,
        })
    }
}

/// RLine/LLine agree on the order of the modelled fields (11.5–15.0); only RLine has
/// associatedDevices.
fn write_line(
    x: &mut Xml,
    l: &LineRow,
    tags: &Tags,
    devices: Option<&[String]>,
) -> std::io::Result<()> {
    let uuid = axl_uuid(&l.pkid);
    x.open("line", &[("uuid", &uuid)])?;
    if wants(tags, "pattern") {
        x.text("pattern", Some(&l.pattern))?;
    }
    if wants(tags, "description") {
        x.text("description", l.description.as_deref())?;
    }
    if wants(tags, "usage") {
        x.text("usage", Some(&l.usage))?;
    }
    if wants(tags, "routePartitionName") {
        fk(x, "routePartitionName", &l.partition)?;
    }
    if wants(tags, "alertingName") {
        x.text("alertingName", l.alerting_name.as_deref())?;
    }
    if wants(tags, "shareLineAppearanceCssName") {
        fk(x, "shareLineAppearanceCssName", &l.share_css)?;
    }
    if let Some(devices) = devices {
        if wants(tags, "associatedDevices") {
            if devices.is_empty() {
                x.empty("associatedDevices", &[])?;
            } else {
                x.open("associatedDevices", &[])?;
                for d in devices {
                    x.text("device", Some(d))?;
                }
                x.close("associatedDevices")?;
            }
        }
    }
    x.close("line")
}

pub(super) fn add(conn: &mut Connection, req: &Elem, ctx: &Ctx<'_>) -> Result<Vec<u8>, AxlFault> {
    let line = req.child("line").ok_or_else(|| AxlFault::missing("line"))?;
    let pattern = line
        .value("pattern")
        .ok_or_else(|| AxlFault::missing("pattern"))?;
    // XLine.usage is required by the XSD; default it for hand-written requests.
    let usage = line.value("usage").unwrap_or("Device");
    let tx = conn.transaction()?;
    let tkusage: i64 = tx
        .query_row(
            "SELECT enum FROM typepatternusage WHERE name = ?1",
            [usage],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| AxlFault::invalid("usage", usage))?;
    let partition = line
        .value("routePartitionName")
        .map(|p| lookup(&tx, "routepartition", "Route Partition", p))
        .transpose()?;
    let css = line
        .value("shareLineAppearanceCssName")
        .map(|c| lookup(&tx, "callingsearchspace", "Calling Search Space", c))
        .transpose()?;
    let pkid = new_pkid();
    let inserted = tx.execute(
        "INSERT INTO numplan (pkid, dnorpattern, fkroutepartition, description, tkpatternusage, \
         alertingname, fkcallingsearchspace_sharedlineappearance) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            pkid,
            pattern,
            partition,
            line.value("description"),
            tkusage,
            line.value("alertingName"),
            css
        ],
    );
    match inserted {
        Ok(_) => {}
        // notes §3: a duplicate pattern+partition is 4052, not -239.
        Err(e) if is_unique_violation(&e) => return Err(AxlFault::dn_exists()),
        Err(e) => return Err(e.into()),
    }
    tx.commit()?;
    uuid_reply(ctx, &pkid)
}

pub(super) fn get(conn: &mut Connection, req: &Elem, ctx: &Ctx<'_>) -> Result<Vec<u8>, AxlFault> {
    let tags = get_tags(req);
    let row = if let Some(uuid) = req.value("uuid") {
        conn.query_row(
            &format!("{COLUMNS} {FROM} WHERE np.pkid = ?1"),
            [sql_pkid(uuid)],
            LineRow::from_row,
        )
        .optional()?
    } else {
        let pattern = req
            .value("pattern")
            .ok_or_else(|| AxlFault::missing("pattern or uuid"))?;
        let partition = req.value("routePartitionName").unwrap_or("");
        conn.query_row(
            &format!("{COLUMNS} {FROM} WHERE np.dnorpattern = ?1 AND ifnull(rp.name, '') = ?2"),
            [pattern, partition],
            LineRow::from_row,
        )
        .optional()?
    };
    let line = row.ok_or_else(|| AxlFault::not_found("Line"))?;
    let devices: Vec<String> = {
        let mut stmt = conn.prepare(
            "SELECT d.name FROM devicenumplanmap m JOIN device d ON d.pkid = m.fkdevice \
             WHERE m.fknumplan = ?1 ORDER BY d.name",
        )?;
        let rows = stmt.query_map([&line.pkid], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let op = ctx.op.name();
    let mut x = Xml::new();
    x.start_response(op, ctx.version)?;
    x.open("return", &[])?;
    write_line(&mut x, &line, &tags, Some(&devices))?;
    x.close("return")?;
    x.end_response(op)?;
    Ok(x.into_bytes())
}

pub(super) fn list(conn: &mut Connection, req: &Elem, ctx: &Ctx<'_>) -> Result<Vec<u8>, AxlFault> {
    let tags = list_tags(req);
    let page = paging(req)?;
    let (cond, values) = search_where(req, SEARCH);
    let n = values.len();
    let sql = format!(
        "{COLUMNS} {FROM} WHERE {cond} ORDER BY np.rowid LIMIT ?{} OFFSET ?{}",
        n + 1,
        n + 2
    );
    let mut out = ListOut::new(ctx)?;
    let mut stmt = conn.prepare(&sql)?;
    let mut bind: Vec<rusqlite::types::Value> = values.iter().cloned().map(Into::into).collect();
    bind.push(page.limit.into());
    bind.push(page.offset.into());
    let mut rows = stmt.query(params_from_iter(bind))?;
    while let Some(r) = rows.next()? {
        let l = LineRow::from_row(r)?;
        write_line(out.row_writer()?, &l, &tags, None)?;
        if !out.row_done() {
            let fit = out.fit();
            drop(rows);
            let matched: i64 = conn.query_row(
                &format!("SELECT count(*) {FROM} WHERE {cond}"),
                params_from_iter(values.iter()),
                |r| r.get(0),
            )?;
            return Err(AxlFault::too_large(page.rows_of(matched), fit));
        }
    }
    drop(rows);
    out.finish()
}

/// removeLine by uuid or pattern + partition (`RemoveLineReq`). The DN's appearances on
/// devices and its primary-extension links go with it (foreign keys cascade); CUCM's exact
/// behaviour for a DN still on a device is not documented, this lab does not refuse it.
pub(super) fn remove(
    conn: &mut Connection,
    req: &Elem,
    ctx: &Ctx<'_>,
) -> Result<Vec<u8>, AxlFault> {
    let tx = conn.transaction()?;
    let pkid: Option<String> = if let Some(uuid) = req.value("uuid") {
        tx.query_row(
            "SELECT pkid FROM numplan WHERE pkid = ?1",
            [sql_pkid(uuid)],
            |r| r.get(0),
        )
        .optional()?
    } else {
        let pattern = req
            .value("pattern")
            .ok_or_else(|| AxlFault::missing("pattern or uuid"))?;
        super::find_dn(&tx, pattern, req.value("routePartitionName"))?
    };
    let pkid = pkid.ok_or_else(|| AxlFault::not_found("Line"))?;
    tx.execute("DELETE FROM numplan WHERE pkid = ?1", params![pkid])?;
    tx.commit()?;
    uuid_reply(ctx, &pkid)
}
