//! AXL operations over the lab database.

pub(crate) mod auth;
mod change;
mod line;
mod phone;
pub(crate) mod references;
mod sql;
mod user;

use std::collections::HashSet;
use std::io;

use rusqlite::{Connection, OptionalExtension};

use crate::xmlin::{Elem, Field};
use crate::xmlout::{self, Xml};

/// The operations the lab models; other WSDL operations get the "not emulated by the lab"
/// fault, anything else the Axis2 "operation not found" fault (`server::unknown_operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    GetCcmVersion,
    ListUser,
    GetUser,
    AddUser,
    UpdateUser,
    RemoveUser,
    ListPhone,
    GetPhone,
    AddPhone,
    UpdatePhone,
    RemovePhone,
    AddLine,
    GetLine,
    ListLine,
    RemoveLine,
    ExecuteSqlQuery,
    ExecuteSqlUpdate,
    ListChange,
    DoAuthenticateUser,
}

const OPS: &[(&str, Op)] = &[
    ("getCCMVersion", Op::GetCcmVersion),
    ("listUser", Op::ListUser),
    ("getUser", Op::GetUser),
    ("addUser", Op::AddUser),
    ("updateUser", Op::UpdateUser),
    ("removeUser", Op::RemoveUser),
    ("listPhone", Op::ListPhone),
    ("getPhone", Op::GetPhone),
    ("addPhone", Op::AddPhone),
    ("updatePhone", Op::UpdatePhone),
    ("removePhone", Op::RemovePhone),
    ("addLine", Op::AddLine),
    ("getLine", Op::GetLine),
    ("listLine", Op::ListLine),
    ("removeLine", Op::RemoveLine),
    ("executeSQLQuery", Op::ExecuteSqlQuery),
    ("executeSQLUpdate", Op::ExecuteSqlUpdate),
    ("listChange", Op::ListChange),
    ("doAuthenticateUser", Op::DoAuthenticateUser),
];

/// Names of the emulated operations, in the order above.
pub(crate) fn emulated_names() -> Vec<&'static str> {
    OPS.iter().map(|(name, _)| *name).collect()
}

impl Op {
    pub fn from_name(name: &str) -> Option<Op> {
        OPS.iter().find(|(n, _)| *n == name).map(|(_, op)| *op)
    }

    pub fn name(self) -> &'static str {
        OPS.iter()
            .find(|(_, op)| *op == self)
            .map_or("unknown", |(n, _)| n)
    }

    /// Writes are what CUCM throttles with HTTP 503 (notes §4: add/update/remove and
    /// executeSQLUpdate).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Op::AddUser
                | Op::UpdateUser
                | Op::RemoveUser
                | Op::AddPhone
                | Op::UpdatePhone
                | Op::RemovePhone
                | Op::AddLine
                | Op::RemoveLine
                | Op::ExecuteSqlUpdate
        )
    }
}

/// Per-request context.
pub(crate) struct Ctx<'a> {
    /// Applied schema, e.g. "14.0": the response namespace.
    pub version: &'a str,
    pub op: Op,
    /// CUCM's 8 MB cap on list*/executeSQLQuery responses (notes §4).
    pub max_bytes: usize,
    /// listChange page size.
    pub change_page: usize,
    pub cucm_version: &'a str,
    /// Credential policy and lab defaults for doAuthenticateUser.
    pub auth: &'a auth::AuthSettings<'a>,
}

/// An AXL fault: HTTP 500 with `detail/axlError` (notes §3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("axlcode {code}: {message}")]
pub(crate) struct AxlFault {
    /// `soapenv:Client` (the request is wrong) or `soapenv:Server`.
    pub client: bool,
    pub code: i64,
    pub message: String,
}

impl AxlFault {
    pub(crate) fn client(code: i64, message: impl Into<String>) -> AxlFault {
        AxlFault {
            client: true,
            code,
            message: message.into(),
        }
    }

    fn server(code: i64, message: impl Into<String>) -> AxlFault {
        AxlFault {
            client: false,
            code,
            message: message.into(),
        }
    }

    /// notes §3: 5007 "Item not valid: The specified <Type> was not found"; real 12.5
    /// answered get/removePhone misses with `soapenv:Server`, so all 5007s use Server.
    pub fn not_found(kind: &str) -> AxlFault {
        AxlFault::server(
            5007,
            format!("Item not valid: The specified {kind} was not found"),
        )
    }

    /// A reference by name that does not resolve. CUCM's exact text is unknown; this lab
    /// extends the 5007 wording with the reference type and value so callers can tell
    /// which one was wrong.
    pub fn unknown_reference(kind: &str, value: &str) -> AxlFault {
        AxlFault::server(
            5007,
            format!("Item not valid: The specified {kind} '{value}' was not found"),
        )
    }

    /// notes §3: -239, the Informix unique-index error passed through, faultcode Client.
    pub fn duplicate() -> AxlFault {
        AxlFault::client(
            -239,
            "Could not insert new row - duplicate value in a UNIQUE INDEX column (Unique Index:).",
        )
    }

    /// notes §3: 4052 on a duplicate pattern in one partition, faultcode Client.
    pub fn dn_exists() -> AxlFault {
        AxlFault::client(
            4052,
            "Cannot insert or update pattern. A DN exists with the same pattern and partition.",
        )
    }

    /// 5003 is CUCM's "invalid value" code (notes §3); the texts are the lab's own.
    pub fn missing(field: &str) -> AxlFault {
        AxlFault::client(5003, format!("{field} is required and was not provided"))
    }

    pub fn invalid(field: &str, value: &str) -> AxlFault {
        AxlFault::client(5003, format!("Invalid value for {field}: '{value}'"))
    }

    /// notes §4, G "Data Throttling" Scenario 2 (sample `fault.max-axl-memory`): more
    /// than 16 MB of concurrent responses, axlcode -1, faultcode Server.
    pub fn memory_throttle() -> AxlFault {
        AxlFault::server(
            -1,
            "Maximum AXL Memory Allocation Consumed. Please retry once requests in progress \
             have completed",
        )
    }

    /// notes §4: the size cap fault, axlcode -1, faultcode Server, text from the
    /// Developer Guide example (matched case-insensitively by clients).
    pub fn too_large(total: u64, fit: u64) -> AxlFault {
        AxlFault::server(
            -1,
            format!(
                "Query request too large. Total rows matched: {total} rows. \
                 Suggestive Row Fetch: less than {fit} rows"
            ),
        )
    }
}

impl From<rusqlite::Error> for AxlFault {
    fn from(e: rusqlite::Error) -> AxlFault {
        if is_unique_violation(&e) {
            return AxlFault::duplicate();
        }
        AxlFault::server(-1, format!("lab database error: {e}"))
    }
}

impl From<io::Error> for AxlFault {
    fn from(e: io::Error) -> AxlFault {
        AxlFault::server(-1, format!("lab response writer error: {e}"))
    }
}

pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Run one operation; the response body on success.
pub(crate) fn execute(
    conn: &mut Connection,
    req: &Elem,
    ctx: &Ctx<'_>,
) -> Result<Vec<u8>, AxlFault> {
    let queue_mark = if ctx.op.is_write() {
        Some(change::queue_mark(conn)?)
    } else {
        None
    };
    let result = dispatch(conn, req, ctx);
    if let (Ok(_), Some(mark)) = (&result, queue_mark) {
        change::collapse_operation(conn, mark)?;
    }
    result
}

fn dispatch(conn: &mut Connection, req: &Elem, ctx: &Ctx<'_>) -> Result<Vec<u8>, AxlFault> {
    match ctx.op {
        Op::GetCcmVersion => get_ccm_version(ctx),
        Op::ListUser => user::list(conn, req, ctx),
        Op::GetUser => user::get(conn, req, ctx),
        Op::AddUser => user::add(conn, req, ctx),
        Op::UpdateUser => user::update(conn, req, ctx),
        Op::RemoveUser => user::remove(conn, req, ctx),
        Op::ListPhone => phone::list(conn, req, ctx),
        Op::GetPhone => phone::get(conn, req, ctx),
        Op::AddPhone => phone::add(conn, req, ctx),
        Op::UpdatePhone => phone::update(conn, req, ctx),
        Op::RemovePhone => phone::remove(conn, req, ctx),
        Op::AddLine => line::add(conn, req, ctx),
        Op::GetLine => line::get(conn, req, ctx),
        Op::ListLine => line::list(conn, req, ctx),
        Op::RemoveLine => line::remove(conn, req, ctx),
        Op::ExecuteSqlQuery => sql::execute_sql_query(conn, req, ctx),
        Op::ExecuteSqlUpdate => sql::execute_sql_update(conn, req, ctx),
        Op::ListChange => change::list(conn, req, ctx),
        Op::DoAuthenticateUser => auth::authenticate(conn, req, ctx),
    }
}

/// `GetCCMVersionRes`: return/componentVersion/version (XSD).
fn get_ccm_version(ctx: &Ctx<'_>) -> Result<Vec<u8>, AxlFault> {
    let op = ctx.op.name();
    let mut x = Xml::new();
    x.start_response(op, ctx.version)?;
    x.open("return", &[])?;
    x.open("componentVersion", &[])?;
    x.text("version", Some(ctx.cucm_version))?;
    x.close("componentVersion")?;
    x.close("return")?;
    x.end_response(op)?;
    Ok(x.into_bytes())
}

// ---------------------------------------------------------------------------------------
// Helpers shared by the object modules.

/// Which tags to return: `None` = all modelled ones.
pub(crate) type Tags = Option<HashSet<String>>;

/// For get*: the children of `returnedTags`, or all when it is absent or empty.
fn get_tags(req: &Elem) -> Tags {
    let rt = req.child("returnedTags")?;
    if rt.children.is_empty() {
        return None;
    }
    Some(rt.children.iter().map(|c| c.name.clone()).collect())
}

/// For list*: exactly the children of `returnedTags` (none → only the uuid attribute).
fn list_tags(req: &Elem) -> Tags {
    let rt = req.child("returnedTags")?;
    Some(rt.children.iter().map(|c| c.name.clone()).collect())
}

fn wants(tags: &Tags, name: &str) -> bool {
    tags.as_ref().is_none_or(|t| t.contains(name))
}

/// Paging from `skip`/`first`; skip counts only with first (notes §4, ListUserReq).
#[derive(Debug, Clone, Copy)]
struct Paging {
    limit: i64,
    offset: i64,
}

fn paging(req: &Elem) -> Result<Paging, AxlFault> {
    let parse = |name: &str| -> Result<Option<i64>, AxlFault> {
        match req.value(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .and_then(|n| i64::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| AxlFault::invalid(name, v)),
        }
    };
    let first = parse("first")?;
    let skip = parse("skip")?;
    Ok(match first {
        Some(first) => Paging {
            limit: first,
            offset: skip.unwrap_or(0),
        },
        None => Paging {
            limit: -1,
            offset: 0,
        },
    })
}

impl Paging {
    /// Rows this page returns out of `matched`.
    fn rows_of(self, matched: i64) -> u64 {
        let after_skip = (matched - self.offset).max(0);
        let n = if self.limit < 0 {
            after_skip
        } else {
            after_skip.min(self.limit)
        };
        u64::try_from(n).unwrap_or(0)
    }
}

/// `WHERE` clause from `searchCriteria`: SQL LIKE (`%` wildcard, case-insensitive for
/// ASCII in SQLite), NULL compared as empty. Columns come from a fixed table, never from
/// the request.
fn search_where(req: &Elem, columns: &[(&str, &str)]) -> (String, Vec<String>) {
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    if let Some(sc) = req.child("searchCriteria") {
        for (tag, column) in columns {
            if let Some(c) = sc.child(tag) {
                let v = match c.as_field() {
                    Field::Value(v) => v.to_owned(),
                    _ => String::new(),
                };
                values.push(v);
                clauses.push(format!("ifnull({column}, '') LIKE ?{}", values.len()));
            }
        }
    }
    if clauses.is_empty() {
        ("1 = 1".to_owned(), values)
    } else {
        (clauses.join(" AND "), values)
    }
}

/// A list response under the size cap: rows are written one by one and the build stops
/// as soon as the cap is exceeded, so memory stays bounded by the cap.
struct ListOut {
    x: Xml,
    op: &'static str,
    cap: usize,
    reserve: usize,
    rows: u64,
    opened: bool,
}

impl ListOut {
    fn new(ctx: &Ctx<'_>) -> Result<ListOut, AxlFault> {
        let op = ctx.op.name();
        let mut x = Xml::new();
        x.start_response(op, ctx.version)?;
        Ok(ListOut {
            x,
            op,
            cap: ctx.max_bytes,
            reserve: xmlout::response_tail_reserve(op),
            rows: 0,
            opened: false,
        })
    }

    /// Start `<return>` before the first row (an empty list is `<return/>`).
    fn row_writer(&mut self) -> Result<&mut Xml, AxlFault> {
        if !self.opened {
            self.x.open("return", &[])?;
            self.opened = true;
        }
        Ok(&mut self.x)
    }

    /// Call after each row; `false` = over the cap, stop and report.
    fn row_done(&mut self) -> bool {
        if self.x.len() + self.reserve > self.cap {
            return false;
        }
        self.rows += 1;
        true
    }

    /// Rows that fit: a page smaller than this succeeds ("Suggestive Row Fetch").
    fn fit(&self) -> u64 {
        self.rows
    }

    fn finish(mut self) -> Result<Vec<u8>, AxlFault> {
        if self.opened {
            self.x.close("return")?;
        } else {
            self.x.empty("return", &[])?;
        }
        self.x.end_response(self.op)?;
        Ok(self.x.into_bytes())
    }
}

/// `<name uuid="{…}">value</name>` for XFkType references, `<name/>` when unset.
fn fk(x: &mut Xml, name: &str, value: &Option<(String, String)>) -> io::Result<()> {
    match value {
        Some((pkid, label)) => {
            let uuid = crate::db::axl_uuid(pkid);
            x.text_with(name, &[("uuid", &uuid)], Some(label))
        }
        None => x.empty(name, &[]),
    }
}

/// pkid of a named configuration object, 5007 naming it when unknown. `table` is always a
/// constant from the caller.
fn lookup(conn: &Connection, table: &str, kind: &str, name: &str) -> Result<String, AxlFault> {
    conn.query_row(
        &format!("SELECT pkid FROM {table} WHERE name = ?1"),
        [name],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| AxlFault::unknown_reference(kind, name))
}

/// Resolve an optional reference field: absent → keep (`None`), empty/nil → clear
/// (`Some(None)`), value → its pkid.
fn lookup_field(
    conn: &Connection,
    field: Field<'_>,
    table: &str,
    kind: &str,
) -> Result<Option<Option<String>>, AxlFault> {
    Ok(match field {
        Field::Absent => None,
        Field::Empty => Some(None),
        Field::Value(v) => Some(Some(lookup(conn, table, kind, v)?)),
    })
}

fn enduser_pkid(conn: &Connection, userid: &str) -> Result<String, AxlFault> {
    conn.query_row(
        "SELECT pkid FROM enduser WHERE userid = ?1",
        [userid],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| AxlFault::unknown_reference("User", userid))
}

/// pkid of the DN `pattern` in `partition` (None = no partition).
fn find_dn(
    conn: &Connection,
    pattern: &str,
    partition: Option<&str>,
) -> Result<Option<String>, AxlFault> {
    Ok(conn
        .query_row(
            "SELECT np.pkid FROM numplan np LEFT JOIN routepartition rp ON rp.pkid = np.fkroutepartition \
             WHERE np.dnorpattern = ?1 AND ifnull(rp.name, '') = ?2",
            [pattern, partition.unwrap_or("")],
            |r| r.get(0),
        )
        .optional()?)
}

fn parse_bool(field: &str, v: &str) -> Result<bool, AxlFault> {
    match v {
        "true" | "t" | "1" => Ok(true),
        "false" | "f" | "0" => Ok(false),
        _ => Err(AxlFault::invalid(field, v)),
    }
}

fn tf_to_bool(v: Option<&str>) -> &'static str {
    if v == Some("t") {
        "true"
    } else {
        "false"
    }
}

/// Identify the object of a get/update/remove by `uuid` or a name field.
enum Key<'a> {
    Uuid(String),
    Name(&'a str),
}

fn key<'a>(req: &'a Elem, name_field: &str) -> Result<Key<'a>, AxlFault> {
    if let Some(uuid) = req.value("uuid") {
        return Ok(Key::Uuid(crate::db::sql_pkid(uuid)));
    }
    req.value(name_field)
        .map(Key::Name)
        .ok_or_else(|| AxlFault::missing(&format!("{name_field} or uuid")))
}

fn uuid_reply(ctx: &Ctx<'_>, pkid: &str) -> Result<Vec<u8>, AxlFault> {
    Ok(xmlout::uuid_response(
        ctx.op.name(),
        ctx.version,
        &crate::db::axl_uuid(pkid),
    )?)
}
