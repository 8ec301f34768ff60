//! CUPI users, read from the lab's CUCM tables: every CUCM end user is a Connection user
//! whose alias is the CUCM userid and whose extension (DtmfAccessId) is the primary
//! extension — what an AXL/LDAP import produces on a real system.
//!
//! Query syntax (notes §2): `query=(column is value)`, `(column startswith value)`,
//! `(column isnull)`, `(column isnotnull)`; `sort=(column asc|desc)`. Matching is
//! case-insensitive in the lab (CUC's behaviour is not documented).

use rusqlite::{params_from_iter, Connection};

use super::render::Obj;
use super::store::{stable_hash, Owner};

/// A user row in CUPI terms.
#[derive(Debug, Clone)]
pub(crate) struct CuUser {
    pub(crate) object_id: String,
    pub(crate) pkid: String,
    pub(crate) alias: String,
    pub(crate) first_name: Option<String>,
    pub(crate) last_name: Option<String>,
    pub(crate) display_name: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) department: Option<String>,
    pub(crate) extension: Option<String>,
}

impl CuUser {
    pub(crate) fn owner(&self) -> Owner {
        Owner {
            pkid: self.pkid.clone(),
            alias: self.alias.clone(),
            display: self
                .display_name
                .clone()
                .unwrap_or_else(|| self.alias.clone()),
            extension: self.extension.clone(),
        }
    }
}

/// CUC ObjectIds differ from CUCM pkids; the lab derives one from the other with a
/// seed-dependent mask (an involution: the same function maps back).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdMask([u8; 16]);

impl IdMask {
    pub(crate) fn new(seed: u64) -> IdMask {
        let mut mask = [0u8; 16];
        let a = stable_hash(&format!("cuc-objectid-{seed}")).to_le_bytes();
        let b = stable_hash(&format!("cuc-objectid-{seed}-2")).to_le_bytes();
        mask[..8].copy_from_slice(&a);
        mask[8..].copy_from_slice(&b);
        // Keep the UUID version and variant bits, so ObjectIds still read as v4 UUIDs.
        mask[6] &= 0x0F;
        mask[8] &= 0x3F;
        IdMask(mask)
    }

    /// The ObjectId of a system-wide object every lab user points at (its class of service,
    /// location, phone system, partition): one per seed, like one default of each on a
    /// fresh CUC.
    pub(crate) fn system_id(&self, kind: &str) -> String {
        derived_id(&format!("cuc-{kind}-{:?}", self.0))
    }

    pub(crate) fn apply(&self, id: &str) -> Option<String> {
        let parsed = uuid::Uuid::parse_str(id.trim()).ok()?;
        let mut bytes = *parsed.as_bytes();
        for (b, m) in bytes.iter_mut().zip(self.0) {
            *b ^= m;
        }
        Some(uuid::Uuid::from_bytes(bytes).to_string())
    }
}

/// A v4-shaped UUID derived from `key`, the same on every run.
fn derived_id(key: &str) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&stable_hash(key).to_le_bytes());
    bytes[8..].copy_from_slice(&stable_hash(&format!("{key}/2")).to_le_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// `CreationTime` of a user: a fixed second in 2020-2022 derived from its ObjectId, in
/// CUPI's `2015-06-01T05:03:15Z` form (fixture `cupi-users-list.xml`).
fn creation_time(object_id: &str) -> String {
    const JAN_2020: i64 = 1_577_836_800;
    let offset = i64::try_from(stable_hash(object_id) % (3 * 365 * 86_400)).unwrap_or(0);
    chrono::DateTime::from_timestamp(JAN_2020 + offset, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// A CUPI user record: every element of the ordinary user in `cupi-users-list.xml` plus
/// `PhoneNumber` of `cupi-users-query-single.json`, in the XML sample's order; `full`
/// (GET of one user) adds `SmtpAddress` (notes §2). `TenantObjectId` is left out: it is
/// set only on tenant-partitioned systems (notes §1.3), which the lab does not emulate.
/// The URI links are rendered as CUC spells them; the lab serves none of their targets.
pub(crate) fn user_obj(u: &CuUser, mask: IdMask, full: bool, domain: &str) -> Obj {
    let id = &u.object_id;
    let me = format!("/vmrest/users/{id}");
    let (cos, location) = (mask.system_id("cos"), mask.system_id("location"));
    let (switch, partition) = (mask.system_id("phonesystem"), mask.system_id("partition"));
    // Each user has its own call handler (the greeting/transfer rules behind the mailbox).
    let handler = derived_id(&format!("cuc-callhandler-{id}"));
    let o = Obj::new("User")
        .text("URI", &me)
        .text("ObjectId", id)
        .opt("FirstName", u.first_name.as_deref())
        .opt("LastName", u.last_name.as_deref())
        .text("Alias", &u.alias)
        .text("City", "")
        .text("Department", u.department.as_deref().unwrap_or_default())
        .text("EmployeeId", "")
        .text("DisplayName", u.display_name.as_deref().unwrap_or(&u.alias))
        .opt("EmailAddress", u.email.as_deref())
        // CUC's time zone codes are not documented; 0 as on Cisco's system-user sample.
        .text("TimeZone", 0)
        .text("CreationTime", creation_time(id))
        .text("CosObjectId", &cos)
        .text("CosURI", format!("/vmrest/coses/{cos}"))
        // A Windows LCID: 1033 = en-US, as in both Cisco samples.
        .text("Language", 1033)
        .text("LocationObjectId", &location)
        .text(
            "LocationURI",
            format!("/vmrest/locations/connectionlocations/{location}"),
        )
        .text("ListInDirectory", true)
        .text("IsVmEnrolled", true)
        .text("MediaSwitchObjectId", &switch)
        .text("PhoneSystemURI", format!("/vmrest/phonesystems/{switch}"))
        .text("CallHandlerObjectId", &handler)
        // Sic: lower-case "h" in Cisco's samples.
        .text(
            "CallhandlerURI",
            format!("/vmrest/handlers/callhandlers/{handler}"),
        )
        .opt("DtmfAccessId", u.extension.as_deref())
        .text("VoiceNameRequired", false)
        .text("PartitionObjectId", &partition)
        .text("PartitionURI", format!("/vmrest/partitions/{partition}"))
        .text("Inactive", false)
        .text("PhoneNumber", "");
    let o = user_links(o, &me).text("MailboxStoreName", "Unity Messaging Database -1");
    let o = o
        .text("UserVoicePinURI", format!("{me}/credential/pin"))
        .text("UserRoleURI", format!("{me}/userroles"))
        .text(
            "SmtpProxyAddressesURI",
            format!("/vmrest/smtpproxyaddresses?query=(ObjectGlobalUserObjectId%20is%20{id})"),
        )
        .text(
            "AlternateNamesURI",
            format!("/vmrest/alternatenames?query=(GlobalUserObjectId%20is%20{id})"),
        );
    if full {
        o.text("SmtpAddress", format!("{}@{domain}", u.alias))
    } else {
        o
    }
}

/// The per-user sub-resource links between `Inactive` and `MailboxStoreName`.
fn user_links(o: Obj, me: &str) -> Obj {
    o.text("MwisURI", format!("{me}/mwis"))
        .text(
            "NotificationDevicesURI",
            format!("{me}/notificationdevices"),
        )
        .text("MessageHandlersURI", format!("{me}/messagehandlers"))
        .text(
            "ExternalServiceAccountsURI",
            format!("{me}/externalserviceaccounts"),
        )
        .text(
            "AlternateExtensionsURI",
            format!("{me}/alternateextensions"),
        )
        .text("PrivateListsURI", format!("{me}/privatelists"))
        .text(
            "VideoServiceAccountsURI",
            format!("{me}/videoserviceaccounts"),
        )
        .text("UserWebPasswordURI", format!("{me}/credential/password"))
        .text("UserMailboxURI", format!("{me}/mailboxattributes"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    ObjectId,
    Alias,
    FirstName,
    LastName,
    DisplayName,
    EmailAddress,
    SmtpAddress,
    DtmfAccessId,
}

impl Column {
    fn parse(name: &str) -> Option<Column> {
        Some(match name.to_ascii_lowercase().as_str() {
            "objectid" => Column::ObjectId,
            "alias" => Column::Alias,
            "firstname" => Column::FirstName,
            "lastname" => Column::LastName,
            "displayname" => Column::DisplayName,
            "emailaddress" => Column::EmailAddress,
            "smtpaddress" => Column::SmtpAddress,
            "dtmfaccessid" => Column::DtmfAccessId,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            Column::ObjectId => "e.pkid",
            Column::Alias | Column::SmtpAddress => "e.userid",
            Column::FirstName => "e.firstname",
            Column::LastName => "e.lastname",
            Column::DisplayName => "e.displayname",
            Column::EmailAddress => "e.mailid",
            Column::DtmfAccessId => "n.dnorpattern",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Is(String),
    StartsWith(String),
    IsNull,
    IsNotNull,
}

/// A parsed `query=(...)`.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    column: Column,
    op: Op,
}

pub(crate) fn parse_query(text: &str) -> Result<Filter, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("Invalid query {text:?}: expected (column operator value)"))?
        .trim();
    let mut parts = inner.splitn(3, ' ');
    let column_name = parts.next().unwrap_or_default();
    let column = Column::parse(column_name)
        .ok_or_else(|| format!("Invalid query column {column_name:?}"))?;
    let op_name = parts.next().unwrap_or_default().to_ascii_lowercase();
    let value = parts.next().map(str::trim).unwrap_or_default().to_owned();
    let op = match (op_name.as_str(), value.is_empty()) {
        ("is", false) => Op::Is(value),
        ("startswith", false) => Op::StartsWith(value),
        ("isnull", true) => Op::IsNull,
        ("isnotnull", true) => Op::IsNotNull,
        _ => return Err(format!("Invalid query operator in {text:?}")),
    };
    Ok(Filter { column, op })
}

/// `sort=(column asc|desc)`.
pub(crate) fn parse_sort(text: &str) -> Result<(&'static str, bool), String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("Invalid sort {text:?}"))?;
    let mut parts = inner.split_whitespace();
    let column = parts
        .next()
        .and_then(Column::parse)
        .ok_or_else(|| format!("Invalid sort column in {text:?}"))?;
    let descending = match parts.next().map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(format!("Invalid sort order {other:?}")),
    };
    Ok((column.sql(), descending))
}

const SELECT: &str = "SELECT e.pkid, e.userid, e.firstname, e.lastname, e.displayname, e.mailid, \
     e.department, n.dnorpattern \
     FROM enduser e \
     LEFT JOIN endusernumplanmap m ON m.fkenduser = e.pkid AND m.tkdnusage = 1 \
     LEFT JOIN numplan n ON n.pkid = m.fknumplan";

/// SQL condition and parameters for a filter; `None` when it can match nothing.
fn condition(
    filter: Option<&Filter>,
    mask: IdMask,
    smtp_domain: &str,
) -> Option<(String, Vec<String>)> {
    let Some(f) = filter else {
        return Some(("1 = 1".into(), Vec::new()));
    };
    let column = f.column.sql();
    let value = |v: &str| -> Option<String> {
        match f.column {
            Column::ObjectId => mask.apply(v),
            // The SMTP address is alias@domain (notes §2): match on the alias part.
            Column::SmtpAddress => {
                let (alias, domain) = v.rsplit_once('@')?;
                domain
                    .eq_ignore_ascii_case(smtp_domain)
                    .then(|| alias.to_owned())
            }
            _ => Some(v.to_owned()),
        }
    };
    Some(match &f.op {
        Op::Is(v) => (format!("{column} = ?1 COLLATE NOCASE"), vec![value(v)?]),
        Op::StartsWith(v) => {
            let prefix = match f.column {
                Column::SmtpAddress => v.split('@').next().unwrap_or_default().to_owned(),
                Column::ObjectId => v.to_owned(),
                _ => value(v)?,
            };
            let escaped = prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            (
                format!("{column} LIKE ?1 ESCAPE '\\'"),
                vec![format!("{escaped}%")],
            )
        }
        Op::IsNull => (format!("({column} IS NULL OR {column} = '')"), Vec::new()),
        Op::IsNotNull => (
            format!("({column} IS NOT NULL AND {column} <> '')"),
            Vec::new(),
        ),
    })
}

pub(crate) struct Page {
    pub(crate) total: u64,
    pub(crate) users: Vec<CuUser>,
}

/// Users matching `filter`, `rows` from `offset`, plus the total count.
#[allow(clippy::too_many_arguments)]
pub(crate) fn list(
    conn: &Connection,
    mask: IdMask,
    smtp_domain: &str,
    filter: Option<&Filter>,
    sort: Option<(&'static str, bool)>,
    offset: u64,
    rows: u64,
) -> rusqlite::Result<Page> {
    let Some((cond, params)) = condition(filter, mask, smtp_domain) else {
        return Ok(Page {
            total: 0,
            users: Vec::new(),
        });
    };
    let from = SELECT
        .split_once(" FROM ")
        .map(|(_, f)| f)
        .unwrap_or_default();
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM {from} WHERE {cond}"),
        params_from_iter(params.iter()),
        |r| r.get(0),
    )?;
    let order = match sort {
        Some((col, true)) => format!("{col} DESC, e.userid"),
        Some((col, false)) => format!("{col}, e.userid"),
        None => "e.userid".into(),
    };
    let users = if rows == 0 {
        Vec::new()
    } else {
        let sql = format!(
            "{SELECT} WHERE {cond} ORDER BY {order} LIMIT {} OFFSET {}",
            i64::try_from(rows).unwrap_or(i64::MAX),
            i64::try_from(offset).unwrap_or(i64::MAX)
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(params.iter()), |r| row(r, mask))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    Ok(Page {
        total: u64::try_from(total).unwrap_or(0),
        users,
    })
}

fn row(r: &rusqlite::Row<'_>, mask: IdMask) -> rusqlite::Result<CuUser> {
    let pkid: String = r.get(0)?;
    Ok(CuUser {
        object_id: mask.apply(&pkid).unwrap_or_else(|| pkid.clone()),
        pkid,
        alias: r.get(1)?,
        first_name: r.get(2)?,
        last_name: r.get(3)?,
        display_name: r.get(4)?,
        email: r.get(5)?,
        department: r.get(6)?,
        extension: r.get(7)?,
    })
}

/// One user by ObjectId.
pub(crate) fn by_object_id(
    conn: &Connection,
    mask: IdMask,
    object_id: &str,
) -> rusqlite::Result<Option<CuUser>> {
    let Some(pkid) = mask.apply(object_id) else {
        return Ok(None);
    };
    by_pkid(conn, mask, &pkid)
}

pub(crate) fn by_pkid(
    conn: &Connection,
    mask: IdMask,
    pkid: &str,
) -> rusqlite::Result<Option<CuUser>> {
    let mut stmt = conn.prepare(&format!("{SELECT} WHERE e.pkid = ?1"))?;
    let mut rows = stmt.query_map([pkid], |r| row(r, mask))?;
    rows.next().transpose()
}

pub(crate) fn by_alias(
    conn: &Connection,
    mask: IdMask,
    alias: &str,
) -> rusqlite::Result<Option<CuUser>> {
    let mut stmt = conn.prepare(&format!("{SELECT} WHERE e.userid = ?1"))?;
    let mut rows = stmt.query_map([alias], |r| row(r, mask))?;
    rows.next().transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_like_cupi() {
        let f = parse_query("(alias is jdoe)").unwrap();
        assert_eq!(f.column, Column::Alias);
        assert_eq!(f.op, Op::Is("jdoe".into()));
        let f = parse_query("(DisplayName startswith John Sm)").unwrap();
        assert_eq!(f.op, Op::StartsWith("John Sm".into()));
        assert_eq!(parse_query("(emailaddress isnull)").unwrap().op, Op::IsNull);
        assert!(parse_query("alias is jdoe").is_err());
        assert!(parse_query("(password is x)").is_err());
        assert!(parse_query("(alias contains x)").is_err());
        assert!(parse_query("(alias is)").is_err());
        assert_eq!(parse_sort("(alias desc)").unwrap(), ("e.userid", true));
    }

    #[test]
    fn object_ids_map_back_to_pkids() {
        let mask = IdMask::new(7);
        let pkid = "3867fd84-9eda-4658-b6fa-97e52e0b02e7";
        let oid = mask.apply(pkid).unwrap();
        assert_ne!(oid, pkid);
        assert_eq!(mask.apply(&oid).unwrap(), pkid);
        assert_eq!(uuid::Uuid::parse_str(&oid).unwrap().get_version_num(), 4);
        assert!(mask.apply("not-a-uuid").is_none());
    }
}
