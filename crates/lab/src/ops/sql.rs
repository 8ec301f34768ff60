//! executeSQLQuery (read-only SQL) and executeSQLUpdate (one INSERT, UPDATE or DELETE) over
//! the CUCM-named tables.

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use super::{is_unique_violation, AxlFault, Ctx, ListOut};
use crate::xmlin::Elem;
use crate::xmlout::Xml;

/// Statements executeSQLUpdate runs; the XSD calls it "an SQL update" and CUCM sends reads
/// to executeSQLQuery. DDL and anything else are refused (stricter: CUCM's answer to them
/// is not public).
const UPDATE_VERBS: &[&str] = &["insert", "update", "delete"];

pub(super) fn execute_sql_update(
    conn: &mut Connection,
    req: &Elem,
    ctx: &Ctx<'_>,
) -> Result<Vec<u8>, AxlFault> {
    let raw = req.value("sql").ok_or_else(|| AxlFault::missing("sql"))?;
    let sql = raw.trim().trim_end_matches(';').trim_end();
    let (verb, _) = split_word(sql);
    if !UPDATE_VERBS.iter().any(|v| verb.eq_ignore_ascii_case(v)) {
        return Err(not_an_update());
    }
    // rusqlite's prepare() compiles the first statement and ignores the rest: refuse it.
    if !is_single_statement(sql) {
        return Err(several_statements());
    }
    let is_delete = verb.eq_ignore_ascii_case("delete");
    let tx = conn.transaction()?;
    let rows = {
        let mut stmt = tx.prepare(sql).map_err(sql_fault)?;
        // `RETURNING` (SQLite, not Informix) would make it a query.
        if stmt.readonly() || stmt.column_count() > 0 {
            return Err(not_an_update());
        }
        stmt.execute([]).map_err(|e| update_fault(e, is_delete))?
    };
    tx.commit()?;
    // ExecuteSQLUpdateRes: return/rowsUpdated (xsd:integer).
    let op = ctx.op.name();
    let mut x = Xml::new();
    x.start_response(op, ctx.version)?;
    x.open("return", &[])?;
    x.text("rowsUpdated", Some(&rows.to_string()))?;
    x.close("return")?;
    x.end_response(op)?;
    Ok(x.into_bytes())
}

/// One request, one statement (lab choice, stricter: what CUCM does with a second
/// statement is not public).
fn several_statements() -> AxlFault {
    AxlFault {
        client: true,
        code: 5003,
        message: "Only one SQL statement per request is accepted".to_owned(),
    }
}

/// No `;` outside string literals, quoted identifiers and comments (a trailing one is
/// trimmed by the callers).
fn is_single_statement(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                // A doubled quote inside is an escaped quote: the scan re-enters here.
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'{' => {
                // Informix comment.
                while i < bytes.len() && bytes[i] != b'}' {
                    i += 1;
                }
            }
            b';' => return false,
            _ => {}
        }
        i += 1;
    }
    true
}

fn not_an_update() -> AxlFault {
    // CUCM's exact text is not public; 5003 (invalid value) as for executeSQLQuery.
    AxlFault {
        client: true,
        code: 5003,
        message: "executeSQLUpdate accepts only one INSERT, UPDATE or DELETE statement; \
                  use executeSQLQuery for SELECT"
            .to_owned(),
    }
}

/// Constraint failures with Informix's codes (CUCM passes them through, notes §3: -239);
/// SQLite does not say which side of a foreign key failed, so a DELETE is the referenced
/// side (-692) and an INSERT/UPDATE the referencing one (-691).
fn update_fault(e: rusqlite::Error, is_delete: bool) -> AxlFault {
    if is_unique_violation(&e) {
        return AxlFault::duplicate();
    }
    let detail = e.to_string();
    let (code, text) = if detail.contains("FOREIGN KEY constraint failed") && is_delete {
        (-692, "Key value for constraint is still being referenced.")
    } else if detail.contains("FOREIGN KEY constraint failed") {
        (
            -691,
            "Missing key in referenced table for referential constraint.",
        )
    } else if detail.contains("NOT NULL constraint failed") {
        (-391, "Cannot insert a null into column.")
    } else {
        return sql_fault(e);
    };
    AxlFault {
        client: true,
        code,
        message: format!("{text} (lab SQLite: {detail})"),
    }
}

pub(super) fn execute_sql_query(
    conn: &mut Connection,
    req: &Elem,
    ctx: &Ctx<'_>,
) -> Result<Vec<u8>, AxlFault> {
    let raw = req.value("sql").ok_or_else(|| AxlFault::missing("sql"))?;
    let sql = translate_informix(raw)?;
    // rusqlite's prepare() compiles the first statement and ignores the rest: refuse it.
    if !is_single_statement(&sql) {
        return Err(several_statements());
    }
    let mut stmt = conn.prepare(&sql).map_err(sql_fault)?;
    // readonly() catches writes hidden behind SELECT syntax tricks. CUCM sends writes to
    // executeSQLUpdate.
    if !stmt.readonly() {
        return Err(not_a_select());
    }
    let names: Vec<String> = stmt
        .column_names()
        .iter()
        .map(|n| column_element(n))
        .collect();
    let mut out = ListOut::new(ctx)?;
    let mut rows = stmt.query([]).map_err(sql_fault)?;
    let mut hex = String::new();
    while let Some(row) = rows.next().map_err(sql_fault)? {
        let x = out.row_writer()?;
        x.open("row", &[])?;
        for (i, name) in names.iter().enumerate() {
            let value = row.get_ref(i).map_err(sql_fault)?;
            let text: Option<std::borrow::Cow<'_, str>> = match value {
                ValueRef::Null => None,
                ValueRef::Integer(n) => Some(n.to_string().into()),
                ValueRef::Real(f) => Some(f.to_string().into()),
                ValueRef::Text(t) => Some(String::from_utf8_lossy(t)),
                ValueRef::Blob(b) => {
                    hex.clear();
                    for byte in b {
                        hex.push_str(&format!("{byte:02x}"));
                    }
                    Some(hex.clone().into())
                }
            };
            x.text(name, text.as_deref())?;
        }
        x.close("row")?;
        if !out.row_done() {
            let fit = out.fit();
            // Count the rest without serialising it (memory stays bounded by the cap).
            let mut total = fit + 1;
            while rows.next().map_err(sql_fault)?.is_some() {
                total += 1;
            }
            return Err(AxlFault::too_large(total, fit));
        }
    }
    drop(rows);
    out.finish()
}

fn not_a_select() -> AxlFault {
    // CUCM's exact text for a non-SELECT here is unknown; the lab uses 5003 (invalid value).
    AxlFault {
        client: true,
        code: 5003,
        message: "executeSQLQuery accepts only SELECT statements; use executeSQLUpdate".to_owned(),
    }
}

/// Map a SQLite error to an Informix-like code (CUCM passes Informix codes through, e.g.
/// -239; notes §3) with the Informix text and SQLite's detail. The codes are Informix's
/// (-201 syntax, -206 table, -217 column); CUCM's exact fault for them is not recorded.
fn sql_fault(e: rusqlite::Error) -> AxlFault {
    let detail = e.to_string();
    let (code, text) = if detail.contains("no such table") {
        (-206, "The specified table is not in the database.")
    } else if detail.contains("no such column") {
        (
            -217,
            "Column not found in any table in the query (or SLV is undefined).",
        )
    } else if detail.contains("syntax error") || detail.contains("incomplete input") {
        (-201, "A syntax error has occurred.")
    } else {
        (-1, "SQL error.")
    };
    AxlFault {
        client: true,
        code,
        message: format!("{text} (lab SQLite: {detail})"),
    }
}

/// Accept only SELECT and rewrite Informix's `SELECT [SKIP n] [FIRST m | LIMIT m] …` (used
/// for paging, notes §4) into SQLite's trailing `LIMIT m OFFSET n`.
fn translate_informix(raw: &str) -> Result<String, AxlFault> {
    let sql = raw.trim().trim_end_matches(';').trim_end();
    let (head, mut rest) = split_word(sql);
    if !head.eq_ignore_ascii_case("select") {
        return Err(not_a_select());
    }
    let mut skip: Option<u64> = None;
    let mut first: Option<u64> = None;
    loop {
        let (word, after) = split_word(rest);
        let is_skip = word.eq_ignore_ascii_case("skip");
        let is_first = word.eq_ignore_ascii_case("first") || word.eq_ignore_ascii_case("limit");
        if !(is_skip || is_first) {
            break;
        }
        let (number, after_number) = split_word(after);
        let Ok(n) = number.parse::<u64>() else {
            break;
        };
        if is_skip {
            skip = Some(n);
        } else {
            first = Some(n);
        }
        rest = after_number;
    }
    if skip.is_none() && first.is_none() {
        return Ok(sql.to_owned());
    }
    let limit = first.map_or_else(|| "-1".to_owned(), |f| f.to_string());
    let offset = skip.unwrap_or(0);
    Ok(format!("SELECT {rest} LIMIT {limit} OFFSET {offset}"))
}

/// First whitespace-delimited word and the remainder (left-trimmed).
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Row element name for a column: lower-case (notes §4); names that are not XML names
/// (expressions like `count(*)`) keep their leading identifier (`count`), else become
/// `expression`. What CUCM emits for unnamed expressions is unverified; use aliases.
fn column_element(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    let mut chars = lower.chars();
    if chars.next().is_some_and(is_start) && chars.all(is_part) {
        return lower;
    }
    let lead: String = lower
        .trim_start_matches('(')
        .chars()
        .take_while(|c| is_part(*c))
        .collect();
    if lead.chars().next().is_some_and(is_start) {
        lead
    } else {
        "expression".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn informix_paging() {
        assert_eq!(
            translate_informix("select skip 10 first 5 userid from enduser order by userid;").ok(),
            Some("SELECT userid from enduser order by userid LIMIT 5 OFFSET 10".to_owned())
        );
        assert_eq!(
            translate_informix("SELECT FIRST 3 * FROM device").ok(),
            Some("SELECT * FROM device LIMIT 3 OFFSET 0".to_owned())
        );
        assert_eq!(
            translate_informix("select name from device").ok(),
            Some("select name from device".to_owned())
        );
        assert!(translate_informix("delete from device").is_err());
        assert!(translate_informix("  update enduser set x=1").is_err());
    }

    #[test]
    fn update_faults_carry_informix_codes() {
        let conn = Connection::open_in_memory().expect("sqlite");
        conn.execute_batch(
            "PRAGMA foreign_keys = ON; CREATE TABLE p (id INTEGER PRIMARY KEY); \
             CREATE TABLE c (id INTEGER PRIMARY KEY, fk INTEGER NOT NULL REFERENCES p(id)); \
             INSERT INTO p VALUES (1); INSERT INTO c VALUES (1, 1);",
        )
        .expect("schema");
        let code = |sql: &str, delete: bool| {
            conn.execute(sql, [])
                .map_err(|e| update_fault(e, delete).code)
                .err()
        };
        assert_eq!(code("INSERT INTO p VALUES (1)", false), Some(-239));
        assert_eq!(code("INSERT INTO c VALUES (2, 9)", false), Some(-691));
        assert_eq!(code("DELETE FROM p", true), Some(-692));
        assert_eq!(code("INSERT INTO c (id) VALUES (3)", false), Some(-391));
        assert_eq!(code("UPDATE nowhere SET x = 1", false), Some(-206));
    }

    #[test]
    fn one_statement_only() {
        assert!(is_single_statement("select ';' from enduser"));
        assert!(is_single_statement("update enduser set x = 'a'';b' -- c;d"));
        assert!(is_single_statement("select \"a;b\" /* ; */ from t {;}"));
        assert!(!is_single_statement("select 1; delete from enduser"));
        assert!(!is_single_statement(
            "delete from t where x = 'a' ;delete from u"
        ));
    }

    #[test]
    fn column_names() {
        assert_eq!(column_element("UserID"), "userid");
        assert_eq!(column_element("count(*)"), "count");
        assert_eq!(column_element("(count(*))"), "count");
        assert_eq!(column_element("1+1"), "expression");
    }
}
