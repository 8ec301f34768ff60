//! Phones: listPhone, getPhone, addPhone, updatePhone, removePhone.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::{
    enduser_pkid, find_dn, fk, get_tags, key, list_tags, lookup, lookup_field, paging,
    search_where, uuid_reply, wants, AxlFault, Ctx, Key, ListOut, Tags,
};
use crate::db::{axl_uuid, new_pkid, ASSOC_DIGEST_IN, USAGE_DEVICE};
use crate::xmlin::{Elem, Field};
use crate::xmlout::Xml;

const SELECT: &str = "SELECT d.pkid, d.name, d.description, tp.name, tm.name, tc.name, tdp.name, \
    css.pkid, css.name, dp.pkid, dp.name, cpc.pkid, cpc.name, loc.pkid, loc.name, \
    sec.pkid, sec.name, sip.pkid, sip.name, eu.pkid, eu.userid, \
    (SELECT u.userid FROM enduserdevicemap m JOIN enduser u ON u.pkid = m.fkenduser \
     WHERE m.fkdevice = d.pkid AND m.tkuserassociation = 3 ORDER BY m.rowid LIMIT 1) \
    FROM device d \
    JOIN typeproduct tp ON tp.enum = d.tkproduct \
    JOIN typemodel tm ON tm.enum = d.tkmodel \
    JOIN typeclass tc ON tc.enum = d.tkclass \
    JOIN typedeviceprotocol tdp ON tdp.enum = d.tkdeviceprotocol \
    LEFT JOIN callingsearchspace css ON css.pkid = d.fkcallingsearchspace \
    LEFT JOIN devicepool dp ON dp.pkid = d.fkdevicepool \
    LEFT JOIN commonphoneconfig cpc ON cpc.pkid = d.fkcommonphoneconfig \
    LEFT JOIN location loc ON loc.pkid = d.fklocation \
    LEFT JOIN securityprofile sec ON sec.pkid = d.fksecurityprofile \
    LEFT JOIN sipprofile sip ON sip.pkid = d.fksipprofile \
    LEFT JOIN enduser eu ON eu.pkid = d.fkenduser";

const FROM_FOR_COUNT: &str = "FROM device d \
    JOIN typedeviceprotocol tdp ON tdp.enum = d.tkdeviceprotocol \
    LEFT JOIN callingsearchspace css ON css.pkid = d.fkcallingsearchspace \
    LEFT JOIN devicepool dp ON dp.pkid = d.fkdevicepool \
    LEFT JOIN securityprofile sec ON sec.pkid = d.fksecurityprofile";

/// searchCriteria of ListPhoneReq (XSD) → columns.
const SEARCH: &[(&str, &str)] = &[
    ("name", "d.name"),
    ("description", "d.description"),
    ("protocol", "tdp.name"),
    ("callingSearchSpaceName", "css.name"),
    ("devicePoolName", "dp.name"),
    ("securityProfileName", "sec.name"),
];

/// Reference fields: (AXL tag, device column, referenced table, name used in 5007 texts).
const REFERENCES: &[(&str, &str, &str, &str)] = &[
    (
        "callingSearchSpaceName",
        "fkcallingsearchspace",
        "callingsearchspace",
        "Calling Search Space",
    ),
    (
        "devicePoolName",
        "fkdevicepool",
        "devicepool",
        "Device Pool",
    ),
    (
        "commonPhoneConfigName",
        "fkcommonphoneconfig",
        "commonphoneconfig",
        "Common Phone Config",
    ),
    ("locationName", "fklocation", "location", "Location"),
    (
        "securityProfileName",
        "fksecurityprofile",
        "securityprofile",
        "Security Profile",
    ),
    (
        "sipProfileName",
        "fksipprofile",
        "sipprofile",
        "SIP Profile",
    ),
];

type Ref = Option<(String, String)>;

struct PhoneRow {
    pkid: String,
    name: String,
    description: Option<String>,
    product: String,
    model: String,
    class: String,
    protocol: String,
    css: Ref,
    device_pool: Ref,
    common_phone_config: Ref,
    location: Ref,
    security_profile: Ref,
    sip_profile: Ref,
    owner: Ref,
    digest_user: Option<String>,
}

fn reference(r: &Row<'_>, i: usize) -> rusqlite::Result<Ref> {
    let pkid: Option<String> = r.get(i)?;
    let name: Option<String> = r.get(i + 1)?;
    Ok(pkid.zip(name))
}

impl PhoneRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<PhoneRow> {
        Ok(PhoneRow {
            pkid: r.get(0)?,
            name: r.get(1)?,
            description: r.get(2)?,
            product: r.get(3)?,
            model: r.get(4)?,
            class: r.get(5)?,
            protocol: r.get(6)?,
            css: reference(r, 7)?,
            device_pool: reference(r, 9)?,
            common_phone_config: reference(r, 11)?,
            location: reference(r, 13)?,
            security_profile: reference(r, 15)?,
            sip_profile: reference(r, 17)?,
            owner: reference(r, 19)?,
            digest_user: r.get(21)?,
        })
    }
}

struct LineRow {
    pkid: String,
    index: i64,
    label: Option<String>,
    display: Option<String>,
    dn_pkid: String,
    pattern: String,
    partition: Ref,
}

/// Write one `<phone>` in XSD order (RPhone/LPhone agree on the modelled fields in
/// 11.5–15.0; only RPhone has `lines`).
fn write_phone(
    x: &mut Xml,
    p: &PhoneRow,
    tags: &Tags,
    lines: Option<&[LineRow]>,
) -> std::io::Result<()> {
    let uuid = axl_uuid(&p.pkid);
    x.open("phone", &[("uuid", &uuid)])?;
    let text = |x: &mut Xml, tag: &str, v: Option<&str>| -> std::io::Result<()> {
        if wants(tags, tag) {
            x.text(tag, v)?;
        }
        Ok(())
    };
    let reference = |x: &mut Xml, tag: &str, v: &Ref| -> std::io::Result<()> {
        if wants(tags, tag) {
            fk(x, tag, v)?;
        }
        Ok(())
    };
    text(x, "name", Some(&p.name))?;
    text(x, "description", p.description.as_deref())?;
    text(x, "product", Some(&p.product))?;
    text(x, "model", Some(&p.model))?;
    text(x, "class", Some(&p.class))?;
    text(x, "protocol", Some(&p.protocol))?;
    // Every lab device is an end-user phone, so protocolSide is always "User".
    text(x, "protocolSide", Some("User"))?;
    reference(x, "callingSearchSpaceName", &p.css)?;
    reference(x, "devicePoolName", &p.device_pool)?;
    reference(x, "commonPhoneConfigName", &p.common_phone_config)?;
    reference(x, "locationName", &p.location)?;
    reference(x, "securityProfileName", &p.security_profile)?;
    reference(x, "sipProfileName", &p.sip_profile)?;
    if let Some(lines) = lines {
        if wants(tags, "lines") {
            if lines.is_empty() {
                x.empty("lines", &[])?;
            } else {
                x.open("lines", &[])?;
                for l in lines {
                    let uuid = axl_uuid(&l.pkid);
                    x.open("line", &[("uuid", &uuid)])?;
                    x.text("index", Some(&l.index.to_string()))?;
                    x.text("label", l.label.as_deref())?;
                    x.text("display", l.display.as_deref())?;
                    let dn_uuid = axl_uuid(&l.dn_pkid);
                    x.open("dirn", &[("uuid", &dn_uuid)])?;
                    x.text("pattern", Some(&l.pattern))?;
                    fk(x, "routePartitionName", &l.partition)?;
                    x.close("dirn")?;
                    x.close("line")?;
                }
                x.close("lines")?;
            }
        }
    }
    reference(x, "ownerUserName", &p.owner)?;
    // String255, not XFkType; real getPhone shows <digestUser/> when unset (notes §5).
    text(x, "digestUser", p.digest_user.as_deref())?;
    x.close("phone")
}

pub(super) fn list(conn: &mut Connection, req: &Elem, ctx: &Ctx<'_>) -> Result<Vec<u8>, AxlFault> {
    let tags = list_tags(req);
    let page = paging(req)?;
    let (cond, values) = search_where(req, SEARCH);
    let n = values.len();
    let sql = format!(
        // Page with the lighter join set first: OFFSET then skips rows cheaply.
        "{SELECT} WHERE d.rowid IN (SELECT d.rowid {FROM_FOR_COUNT} WHERE {cond} \
         ORDER BY d.rowid LIMIT ?{} OFFSET ?{}) ORDER BY d.rowid",
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
        let p = PhoneRow::from_row(r)?;
        write_phone(out.row_writer()?, &p, &tags, None)?;
        if !out.row_done() {
            let fit = out.fit();
            drop(rows);
            let matched: i64 = conn.query_row(
                &format!("SELECT count(*) {FROM_FOR_COUNT} WHERE {cond}"),
                params_from_iter(values.iter()),
                |r| r.get(0),
            )?;
            return Err(AxlFault::too_large(page.rows_of(matched), fit));
        }
    }
    drop(rows);
    out.finish()
}

fn pkid_of(conn: &Connection, k: &Key<'_>) -> Result<String, AxlFault> {
    let (cond, value) = match k {
        Key::Uuid(u) => ("pkid = ?1", u.as_str()),
        Key::Name(n) => ("name = ?1", *n),
    };
    conn.query_row(
        &format!("SELECT pkid FROM device WHERE {cond}"),
        [value],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| AxlFault::not_found("Phone"))
}

fn load_lines(conn: &Connection, device: &str) -> Result<Vec<LineRow>, AxlFault> {
    let mut stmt = conn.prepare(
        "SELECT m.pkid, m.numplanindex, m.label, m.display, np.pkid, np.dnorpattern, rp.pkid, rp.name \
         FROM devicenumplanmap m JOIN numplan np ON np.pkid = m.fknumplan \
         LEFT JOIN routepartition rp ON rp.pkid = np.fkroutepartition \
         WHERE m.fkdevice = ?1 ORDER BY m.numplanindex",
    )?;
    let rows = stmt.query_map([device], |r| {
        Ok(LineRow {
            pkid: r.get(0)?,
            index: r.get(1)?,
            label: r.get(2)?,
            display: r.get(3)?,
            dn_pkid: r.get(4)?,
            pattern: r.get(5)?,
            partition: reference(r, 6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn get(conn: &mut Connection, req: &Elem, ctx: &Ctx<'_>) -> Result<Vec<u8>, AxlFault> {
    let k = key(req, "name")?;
    let tags = get_tags(req);
    let pkid = pkid_of(conn, &k)?;
    let phone = conn.query_row(
        &format!("{SELECT} WHERE d.pkid = ?1"),
        [&pkid],
        PhoneRow::from_row,
    )?;
    let lines = load_lines(conn, &pkid)?;
    let op = ctx.op.name();
    let mut x = Xml::new();
    x.start_response(op, ctx.version)?;
    x.open("return", &[])?;
    write_phone(&mut x, &phone, &tags, Some(&lines))?;
    x.close("return")?;
    x.end_response(op)?;
    Ok(x.into_bytes())
}

fn type_enum(conn: &Connection, table: &str, field: &str, value: &str) -> Result<i64, AxlFault> {
    conn.query_row(
        &format!("SELECT enum FROM {table} WHERE name = ?1"),
        [value],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| AxlFault::invalid(field, value))
}

pub(super) fn add(conn: &mut Connection, req: &Elem, ctx: &Ctx<'_>) -> Result<Vec<u8>, AxlFault> {
    // `newPhone` is the AXL 7.x wrapper name SOAP::Lite sent in seed 001; accept both.
    let phone = req
        .child("phone")
        .or_else(|| req.child("newPhone"))
        .ok_or_else(|| AxlFault::missing("phone"))?;
    let required = |tag: &str| phone.value(tag).ok_or_else(|| AxlFault::missing(tag));
    let name = required("name")?;
    let product = required("product")?;
    let class = required("class")?;
    let protocol = required("protocol")?;
    required("devicePoolName")?;
    let model = phone.value("model").unwrap_or(product);

    let tx = conn.transaction()?;
    let tkproduct = type_enum(&tx, "typeproduct", "product", product)?;
    let tkmodel = type_enum(&tx, "typemodel", "model", model)?;
    let tkclass = type_enum(&tx, "typeclass", "class", class)?;
    let tkprotocol = type_enum(&tx, "typedeviceprotocol", "protocol", protocol)?;
    let pkid = new_pkid();
    tx.execute(
        "INSERT INTO device (pkid, name, tkmodel, tkproduct, tkclass, tkdeviceprotocol) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![pkid, name, tkmodel, tkproduct, tkclass, tkprotocol],
    )?;
    apply_fields(&tx, &pkid, phone)?;
    if let Some(lines) = phone.child("lines") {
        add_lines(&tx, &pkid, lines)?;
    }
    tx.commit()?;
    uuid_reply(ctx, &pkid)
}

pub(super) fn update(
    conn: &mut Connection,
    req: &Elem,
    ctx: &Ctx<'_>,
) -> Result<Vec<u8>, AxlFault> {
    let k = key(req, "name")?;
    let tx = conn.transaction()?;
    let pkid = pkid_of(&tx, &k)?;
    match req.field("newName") {
        Field::Value(v) => {
            tx.execute(
                "UPDATE device SET name = ?1 WHERE pkid = ?2",
                params![v, pkid],
            )?;
        }
        Field::Empty => return Err(AxlFault::invalid("newName", "")),
        Field::Absent => {}
    }
    if req.field("devicePoolName") == Field::Empty {
        return Err(AxlFault::missing("devicePoolName"));
    }
    apply_fields(&tx, &pkid, req)?;
    // UpdatePhoneReq has a choice of removeLines | addLines | lines (XSD).
    if let Some(lines) = req.child("lines") {
        tx.execute("DELETE FROM devicenumplanmap WHERE fkdevice = ?1", [&pkid])?;
        add_lines(&tx, &pkid, lines)?;
    }
    if let Some(lines) = req.child("removeLines") {
        remove_lines(&tx, &pkid, lines)?;
    }
    if let Some(lines) = req.child("addLines") {
        add_lines(&tx, &pkid, lines)?;
    }
    tx.commit()?;
    uuid_reply(ctx, &pkid)
}

pub(super) fn remove(
    conn: &mut Connection,
    req: &Elem,
    ctx: &Ctx<'_>,
) -> Result<Vec<u8>, AxlFault> {
    let k = key(req, "name")?;
    let tx = conn.transaction()?;
    let pkid = pkid_of(&tx, &k)?;
    // Line appearances and user associations cascade; the DNs stay, as on CUCM.
    tx.execute("DELETE FROM device WHERE pkid = ?1", [&pkid])?;
    tx.commit()?;
    uuid_reply(ctx, &pkid)
}

/// Description, references, owner and digest user present in `src`.
fn apply_fields(tx: &Connection, pkid: &str, src: &Elem) -> Result<(), AxlFault> {
    match src.field("description") {
        Field::Absent => {}
        f => {
            tx.execute(
                "UPDATE device SET description = ?1 WHERE pkid = ?2",
                params![f.value(), pkid],
            )?;
        }
    }
    for (tag, column, table, kind) in REFERENCES {
        if let Some(value) = lookup_field(tx, src.field(tag), table, kind)? {
            // `column` is a constant from REFERENCES.
            tx.execute(
                &format!("UPDATE device SET {column} = ?1 WHERE pkid = ?2"),
                params![value, pkid],
            )?;
        }
    }
    match src.field("ownerUserName") {
        Field::Absent => {}
        Field::Empty => {
            tx.execute("UPDATE device SET fkenduser = NULL WHERE pkid = ?1", [pkid])?;
        }
        Field::Value(userid) => {
            let owner = enduser_pkid(tx, userid)?;
            tx.execute(
                "UPDATE device SET fkenduser = ?1 WHERE pkid = ?2",
                params![owner, pkid],
            )?;
        }
    }
    // digestUser is stored as an enduserdevicemap row with tkuserassociation 3 "Digest In"
    // (notes §5, seed 001), which is where executeSQLQuery finds it.
    let digest = src.field("digestUser");
    if digest.is_present() {
        tx.execute(
            "DELETE FROM enduserdevicemap WHERE fkdevice = ?1 AND tkuserassociation = ?2",
            params![pkid, ASSOC_DIGEST_IN],
        )?;
        if let Some(userid) = digest.value() {
            let user = enduser_pkid(tx, userid)?;
            tx.execute(
                "INSERT INTO enduserdevicemap (pkid, fkenduser, fkdevice, tkuserassociation) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![new_pkid(), user, pkid, ASSOC_DIGEST_IN],
            )?;
        }
    }
    Ok(())
}

/// Add `line` children: the DN is looked up by pattern and partition and created (usage
/// Device) when missing, as addPhone does on CUCM.
fn add_lines(tx: &Connection, device: &str, lines: &Elem) -> Result<(), AxlFault> {
    for line in lines.children_named("line") {
        let index_text = line
            .value("index")
            .ok_or_else(|| AxlFault::missing("line index"))?;
        let index: i64 = index_text
            .parse()
            .ok()
            .filter(|i| *i >= 1)
            .ok_or_else(|| AxlFault::invalid("index", index_text))?;
        let dirn = line
            .child("dirn")
            .ok_or_else(|| AxlFault::missing("dirn"))?;
        let pattern = dirn
            .value("pattern")
            .ok_or_else(|| AxlFault::missing("dirn pattern"))?;
        let partition = dirn.value("routePartitionName");
        let dn = match find_dn(tx, pattern, partition)? {
            Some(dn) => dn,
            None => {
                let partition_pkid = partition
                    .map(|p| lookup(tx, "routepartition", "Route Partition", p))
                    .transpose()?;
                let dn = new_pkid();
                tx.execute(
                    "INSERT INTO numplan (pkid, dnorpattern, fkroutepartition, tkpatternusage) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![dn, pattern, partition_pkid, USAGE_DEVICE],
                )?;
                dn
            }
        };
        tx.execute(
            "INSERT INTO devicenumplanmap (pkid, fkdevice, fknumplan, numplanindex, display, label) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![new_pkid(), device, dn, index, line.value("display"), line.value("label")],
        )?;
    }
    Ok(())
}

/// Remove the appearances named by `line` (index or dirn) children.
fn remove_lines(tx: &Connection, device: &str, lines: &Elem) -> Result<(), AxlFault> {
    for line in lines.children_named("line") {
        if let Some(index) = line.value("index") {
            tx.execute(
                "DELETE FROM devicenumplanmap WHERE fkdevice = ?1 AND numplanindex = ?2",
                params![device, index],
            )?;
        } else if let Some(dirn) = line.child("dirn") {
            let pattern = dirn
                .value("pattern")
                .ok_or_else(|| AxlFault::missing("dirn pattern"))?;
            if let Some(dn) = find_dn(tx, pattern, dirn.value("routePartitionName"))? {
                tx.execute(
                    "DELETE FROM devicenumplanmap WHERE fkdevice = ?1 AND fknumplan = ?2",
                    params![device, dn],
                )?;
            }
        }
    }
    Ok(())
}
