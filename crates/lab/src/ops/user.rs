//! End users: listUser, getUser, addUser, updateUser, removeUser.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::{
    find_dn, get_tags, key, list_tags, paging, parse_bool, search_where, tf_to_bool, uuid_reply,
    wants, AxlFault, Ctx, Key, ListOut, Tags,
};
use crate::db::{
    bool_tf, new_pkid, ASSOC_CONTROLLED, CREDENTIAL_PASSWORD, CREDENTIAL_PIN, DN_USAGE_PRIMARY,
};
use crate::version::schema_major;
use crate::xmlin::{Elem, Field};
use crate::xmlout::Xml;

const SELECT: &str = "SELECT eu.pkid, eu.firstname, eu.displayname, eu.middlename, eu.lastname, \
    eu.userid, eu.mailid, eu.department, eu.manager, eu.enablecti, eu.status, eu.directoryuri, \
    eu.telephonenumber, eu.title, eu.mobile, eu.homephone, eu.pager, np.dnorpattern, rp.name \
    FROM enduser eu \
    LEFT JOIN endusernumplanmap enm ON enm.fkenduser = eu.pkid AND enm.tkdnusage = 1 \
    LEFT JOIN numplan np ON np.pkid = enm.fknumplan \
    LEFT JOIN routepartition rp ON rp.pkid = np.fkroutepartition";

/// searchCriteria of ListUserReq (XSD) → columns.
const SEARCH: &[(&str, &str)] = &[
    ("firstName", "eu.firstname"),
    ("lastName", "eu.lastname"),
    ("userid", "eu.userid"),
    ("department", "eu.department"),
];

/// Plain text fields: (AXL tag, enduser column). Order irrelevant (writes only).
const TEXT_FIELDS: &[(&str, &str)] = &[
    ("firstName", "firstname"),
    ("displayName", "displayname"),
    ("middleName", "middlename"),
    ("lastName", "lastname"),
    ("mailid", "mailid"),
    ("department", "department"),
    ("manager", "manager"),
    ("telephoneNumber", "telephonenumber"),
    ("mobileNumber", "mobile"),
    ("homeNumber", "homephone"),
    ("pagerNumber", "pager"),
    ("title", "title"),
    ("directoryUri", "directoryuri"),
    ("digestCredentials", "digestcredentials"),
];

struct UserRow {
    pkid: String,
    firstname: Option<String>,
    displayname: Option<String>,
    middlename: Option<String>,
    lastname: Option<String>,
    userid: String,
    mailid: Option<String>,
    department: Option<String>,
    manager: Option<String>,
    enablecti: Option<String>,
    status: i64,
    directoryuri: Option<String>,
    telephonenumber: Option<String>,
    title: Option<String>,
    mobile: Option<String>,
    homephone: Option<String>,
    pager: Option<String>,
    ext_pattern: Option<String>,
    ext_partition: Option<String>,
}

impl UserRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
        Ok(UserRow {
            pkid: r.get(0)?,
            firstname: r.get(1)?,
            displayname: r.get(2)?,
            middlename: r.get(3)?,
            lastname: r.get(4)?,
            userid: r.get(5)?,
            mailid: r.get(6)?,
            department: r.get(7)?,
            manager: r.get(8)?,
            enablecti: r.get(9)?,
            status: r.get(10)?,
            directoryuri: r.get(11)?,
            telephonenumber: r.get(12)?,
            title: r.get(13)?,
            mobile: r.get(14)?,
            homephone: r.get(15)?,
            pager: r.get(16)?,
            ext_pattern: r.get(17)?,
            ext_partition: r.get(18)?,
        })
    }
}

/// Write one `<user>` in XSD order. RUser and LUser share the order of the fields modelled
/// here (checked against the 11.5/12.5/14.0/15.0 XSDs); LUser lacks associatedDevices, and
/// lacks displayName from 12.5 on (present in 11.5; 12.0 unknown, treated like 12.5).
fn write_user(
    x: &mut Xml,
    u: &UserRow,
    tags: &Tags,
    devices: Option<&[String]>,
    with_display_name: bool,
) -> std::io::Result<()> {
    let uuid = crate::db::axl_uuid(&u.pkid);
    x.open("user", &[("uuid", &uuid)])?;
    let text = |x: &mut Xml, tag: &str, v: Option<&str>| -> std::io::Result<()> {
        if wants(tags, tag) {
            x.text(tag, v)?;
        }
        Ok(())
    };
    text(x, "firstName", u.firstname.as_deref())?;
    if with_display_name {
        text(x, "displayName", u.displayname.as_deref())?;
    }
    text(x, "middleName", u.middlename.as_deref())?;
    text(x, "lastName", u.lastname.as_deref())?;
    text(x, "userid", Some(&u.userid))?;
    text(x, "mailid", u.mailid.as_deref())?;
    text(x, "department", u.department.as_deref())?;
    text(x, "manager", u.manager.as_deref())?;
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
    if wants(tags, "primaryExtension") {
        match &u.ext_pattern {
            Some(pattern) => {
                x.open("primaryExtension", &[])?;
                x.text("pattern", Some(pattern))?;
                // String50 in the XSD (not XFkType): no uuid attribute.
                x.text("routePartitionName", u.ext_partition.as_deref())?;
                x.close("primaryExtension")?;
            }
            None => x.empty("primaryExtension", &[])?,
        }
    }
    text(x, "enableCti", Some(tf_to_bool(u.enablecti.as_deref())))?;
    text(x, "status", Some(&u.status.to_string()))?;
    text(x, "directoryUri", u.directoryuri.as_deref())?;
    text(x, "telephoneNumber", u.telephonenumber.as_deref())?;
    text(x, "title", u.title.as_deref())?;
    text(x, "mobileNumber", u.mobile.as_deref())?;
    text(x, "homeNumber", u.homephone.as_deref())?;
    text(x, "pagerNumber", u.pager.as_deref())?;
    x.close("user")
}

pub(super) fn list(conn: &mut Connection, req: &Elem, ctx: &Ctx<'_>) -> Result<Vec<u8>, AxlFault> {
    let tags = list_tags(req);
    let page = paging(req)?;
    let (cond, values) = search_where(req, SEARCH);
    let n = values.len();
    let sql = format!(
        // Page on the bare table first: OFFSET then skips rows without computing the joins.
        "{SELECT} WHERE eu.rowid IN (SELECT eu.rowid FROM enduser eu WHERE {cond} \
         ORDER BY eu.rowid LIMIT ?{} OFFSET ?{}) ORDER BY eu.rowid",
        n + 1,
        n + 2
    );
    let with_display_name = schema_major(ctx.version) < 12;
    let mut out = ListOut::new(ctx)?;
    let mut stmt = conn.prepare(&sql)?;
    let mut bind: Vec<rusqlite::types::Value> = values.iter().cloned().map(Into::into).collect();
    bind.push(page.limit.into());
    bind.push(page.offset.into());
    let mut rows = stmt.query(params_from_iter(bind))?;
    while let Some(r) = rows.next()? {
        let u = UserRow::from_row(r)?;
        write_user(out.row_writer()?, &u, &tags, None, with_display_name)?;
        if !out.row_done() {
            let fit = out.fit();
            drop(rows);
            let matched: i64 = conn.query_row(
                &format!("SELECT count(*) FROM enduser eu WHERE {cond}"),
                params_from_iter(values.iter()),
                |r| r.get(0),
            )?;
            return Err(AxlFault::too_large(page.rows_of(matched), fit));
        }
    }
    drop(rows);
    out.finish()
}

fn load(conn: &Connection, k: &Key<'_>) -> Result<UserRow, AxlFault> {
    let (cond, value) = match k {
        Key::Uuid(u) => ("eu.pkid = ?1", u.as_str()),
        Key::Name(n) => ("eu.userid = ?1", *n),
    };
    conn.query_row(
        &format!("{SELECT} WHERE {cond}"),
        [value],
        UserRow::from_row,
    )
    .optional()?
    .ok_or_else(|| AxlFault::not_found("User"))
}

fn pkid_of(conn: &Connection, k: &Key<'_>) -> Result<String, AxlFault> {
    let (cond, value) = match k {
        Key::Uuid(u) => ("pkid = ?1", u.as_str()),
        Key::Name(n) => ("userid = ?1", *n),
    };
    conn.query_row(
        &format!("SELECT pkid FROM enduser WHERE {cond}"),
        [value],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| AxlFault::not_found("User"))
}

pub(super) fn get(conn: &mut Connection, req: &Elem, ctx: &Ctx<'_>) -> Result<Vec<u8>, AxlFault> {
    let k = key(req, "userid")?;
    let tags = get_tags(req);
    let u = load(conn, &k)?;
    let devices: Vec<String> = {
        let mut stmt = conn.prepare(
            "SELECT d.name FROM enduserdevicemap m JOIN device d ON d.pkid = m.fkdevice \
             WHERE m.fkenduser = ?1 AND m.tkuserassociation = ?2 ORDER BY m.rowid",
        )?;
        let rows = stmt.query_map(params![u.pkid, ASSOC_CONTROLLED], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let op = ctx.op.name();
    let mut x = Xml::new();
    x.start_response(op, ctx.version)?;
    x.open("return", &[])?;
    write_user(&mut x, &u, &tags, Some(&devices), true)?;
    x.close("return")?;
    x.end_response(op)?;
    Ok(x.into_bytes())
}

pub(super) fn add(conn: &mut Connection, req: &Elem, ctx: &Ctx<'_>) -> Result<Vec<u8>, AxlFault> {
    let user = req.child("user").ok_or_else(|| AxlFault::missing("user"))?;
    let userid = user
        .value("userid")
        .ok_or_else(|| AxlFault::missing("userid"))?;
    // XUser.lastName is required (minOccurs 1 in every fixture XSD).
    if user.value("lastName").is_none() {
        return Err(AxlFault::missing("lastName"));
    }
    let tx = conn.transaction()?;
    let pkid = new_pkid();
    tx.execute(
        "INSERT INTO enduser (pkid, userid) VALUES (?1, ?2)",
        params![pkid, userid],
    )?;
    apply_fields(&tx, &pkid, user)?;
    tx.commit()?;
    uuid_reply(ctx, &pkid)
}

pub(super) fn update(
    conn: &mut Connection,
    req: &Elem,
    ctx: &Ctx<'_>,
) -> Result<Vec<u8>, AxlFault> {
    let k = key(req, "userid")?;
    let tx = conn.transaction()?;
    let pkid = pkid_of(&tx, &k)?;
    match req.field("newUserid") {
        Field::Value(v) => {
            tx.execute(
                "UPDATE enduser SET userid = ?1 WHERE pkid = ?2",
                params![v, pkid],
            )?;
        }
        Field::Empty => return Err(AxlFault::invalid("newUserid", "")),
        Field::Absent => {}
    }
    if req.field("lastName") == Field::Empty {
        return Err(AxlFault::missing("lastName"));
    }
    apply_fields(&tx, &pkid, req)?;
    tx.commit()?;
    uuid_reply(ctx, &pkid)
}

/// Apply the modelled XUser/UpdateUserReq fields present in `src` to user `pkid`.
fn apply_fields(tx: &Connection, pkid: &str, src: &Elem) -> Result<(), AxlFault> {
    for (tag, column) in TEXT_FIELDS {
        let value = match src.field(tag) {
            Field::Absent => continue,
            Field::Empty => None,
            Field::Value(v) => Some(v),
        };
        // `column` is a constant from TEXT_FIELDS.
        tx.execute(
            &format!("UPDATE enduser SET {column} = ?1 WHERE pkid = ?2"),
            params![value, pkid],
        )?;
    }
    if let Some(v) = src.value("enableCti") {
        let b = parse_bool("enableCti", v)?;
        tx.execute(
            "UPDATE enduser SET enablecti = ?1 WHERE pkid = ?2",
            params![bool_tf(b), pkid],
        )?;
    }
    if let Some(v) = src.value("status") {
        let s: i64 = v.parse().map_err(|_| AxlFault::invalid("status", v))?;
        tx.execute(
            "UPDATE enduser SET status = ?1 WHERE pkid = ?2",
            params![s, pkid],
        )?;
    }
    for (tag, tk) in [("password", CREDENTIAL_PASSWORD), ("pin", CREDENTIAL_PIN)] {
        // The raw text, as doAuthenticateUser compares it (an xsd:string keeps its spaces).
        // A change restarts the expiry clock; failed logons and lockouts stay (CUCM's
        // "Reset Hack Count" is a separate action), the stricter choice.
        if let Some(v) = src.child(tag).filter(|c| c.as_field().value().is_some()) {
            tx.execute(
                "INSERT INTO credential (pkid, fkenduser, tkcredential, credentials, timechanged) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (fkenduser, tkcredential) DO UPDATE \
                 SET credentials = excluded.credentials, timechanged = excluded.timechanged",
                params![new_pkid(), pkid, tk, v.text, super::auth::now_ms()],
            )?;
        }
    }
    if let Some(devices) = src.child("associatedDevices") {
        // The list replaces the user's controlled devices (tkuserassociation 1).
        tx.execute(
            "DELETE FROM enduserdevicemap WHERE fkenduser = ?1 AND tkuserassociation = ?2",
            params![pkid, ASSOC_CONTROLLED],
        )?;
        for d in devices.children_named("device") {
            let Some(name) = d.as_field().value() else {
                continue;
            };
            let device: String = tx
                .query_row("SELECT pkid FROM device WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()?
                .ok_or_else(|| AxlFault::unknown_reference("Device", name))?;
            tx.execute(
                "INSERT OR IGNORE INTO enduserdevicemap (pkid, fkenduser, fkdevice, tkuserassociation) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![new_pkid(), pkid, device, ASSOC_CONTROLLED],
            )?;
        }
    }
    if let Some(ext) = src.child("primaryExtension") {
        tx.execute(
            "DELETE FROM endusernumplanmap WHERE fkenduser = ?1 AND tkdnusage = ?2",
            params![pkid, DN_USAGE_PRIMARY],
        )?;
        if let Some(pattern) = ext.value("pattern") {
            let partition = ext.value("routePartitionName");
            let dn = find_dn(tx, pattern, partition)?.ok_or_else(|| {
                AxlFault::unknown_reference(
                    "Line",
                    &format!("{pattern} in {}", partition.unwrap_or("<None>")),
                )
            })?;
            tx.execute(
                "INSERT INTO endusernumplanmap (pkid, fkenduser, fknumplan, tkdnusage) VALUES (?1, ?2, ?3, ?4)",
                params![new_pkid(), pkid, dn, DN_USAGE_PRIMARY],
            )?;
        }
    }
    Ok(())
}

pub(super) fn remove(
    conn: &mut Connection,
    req: &Elem,
    ctx: &Ctx<'_>,
) -> Result<Vec<u8>, AxlFault> {
    let k = key(req, "userid")?;
    let tx = conn.transaction()?;
    let pkid = pkid_of(&tx, &k)?;
    // Maps and credentials cascade; owned devices lose their owner (ON DELETE SET NULL).
    tx.execute("DELETE FROM enduser WHERE pkid = ?1", [&pkid])?;
    tx.commit()?;
    uuid_reply(ctx, &pkid)
}
