//! executeSQLQuery: read-only SQL against CUCM's Informix database.
//!
//! AXL takes SQL as text, so values must be quoted into it. [`SqlQuery`] does that with
//! `?` placeholders and Informix quoting (a single quote doubled), so user data is never
//! pasted into a statement by hand; the statement then travels inside escaped XML.

use serde::ser::SerializeMap;
use serde::Serialize;

use crate::client::Access;
use crate::xml::{ResponsePart, XmlNode};
use crate::{AxlClient, AxlError};

/// One result row: column names (lower case, as CUCM returns them) and values in column
/// order. NULL and empty both read as `""` (CUCM sends `<col/>` for either).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqlRow {
    pub columns: Vec<(String, String)>,
}

impl SqlRow {
    pub fn get(&self, column: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(column))
            .map(|(_, v)| v.as_str())
    }

    fn from_node(node: &XmlNode) -> SqlRow {
        SqlRow {
            columns: node
                .children
                .iter()
                .map(|c| (c.name.clone(), c.text.clone()))
                .collect(),
        }
    }
}

impl Serialize for SqlRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.columns.len()))?;
        for (k, v) in &self.columns {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A value bound to a `?` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Text(String),
    Int(i64),
    Null,
}

/// A SQL statement with `?` placeholders, rendered with every value quoted.
#[derive(Debug, Clone)]
pub struct SqlQuery {
    template: String,
    values: Vec<SqlValue>,
    /// Taken as written: no placeholder processing (a statement typed by an operator).
    raw: bool,
}

impl SqlQuery {
    pub fn new(template: impl Into<String>) -> Self {
        SqlQuery {
            template: template.into(),
            values: Vec::new(),
            raw: false,
        }
    }

    /// A complete statement, sent as written (`?` is not a placeholder).
    pub fn raw(sql: impl Into<String>) -> Self {
        SqlQuery {
            template: sql.into(),
            values: Vec::new(),
            raw: true,
        }
    }

    pub fn bind(mut self, value: impl Into<String>) -> Self {
        self.values.push(SqlValue::Text(value.into()));
        self
    }

    pub fn bind_int(mut self, value: i64) -> Self {
        self.values.push(SqlValue::Int(value));
        self
    }

    pub fn bind_null(mut self) -> Self {
        self.values.push(SqlValue::Null);
        self
    }

    /// The statement text. `?` inside quoted literals is left alone; a count mismatch
    /// between placeholders and values is an error, not a silent truncation.
    pub fn render(&self) -> Result<String, AxlError> {
        if self.raw {
            return Ok(self.template.clone());
        }
        let mut out = String::with_capacity(self.template.len() + 16 * self.values.len());
        let mut values = self.values.iter();
        let mut quote: Option<char> = None;
        for c in self.template.chars() {
            match (quote, c) {
                (None, '\'' | '"') => {
                    quote = Some(c);
                    out.push(c);
                }
                (Some(q), c) if c == q => {
                    quote = None;
                    out.push(c);
                }
                (None, '?') => match values.next() {
                    Some(SqlValue::Text(t)) => {
                        if t.contains('\0') {
                            return Err(AxlError::Config("SQL value contains a NUL byte".into()));
                        }
                        out.push('\'');
                        out.push_str(&t.replace('\'', "''"));
                        out.push('\'');
                    }
                    Some(SqlValue::Int(i)) => out.push_str(&i.to_string()),
                    Some(SqlValue::Null) => out.push_str("NULL"),
                    None => {
                        return Err(AxlError::Config(
                            "SQL has more ? placeholders than bound values".into(),
                        ))
                    }
                },
                _ => out.push(c),
            }
        }
        if values.next().is_some() {
            return Err(AxlError::Config(
                "SQL has fewer ? placeholders than bound values".into(),
            ));
        }
        Ok(out)
    }
}

impl From<&str> for SqlQuery {
    fn from(sql: &str) -> Self {
        SqlQuery::new(sql)
    }
}

impl AxlClient {
    /// Run a SELECT and collect its rows. CUCM caps a response at 8 MB and answers larger
    /// ones with "Query request too large" (see [`AxlError::query_too_large`]); page with
    /// Informix `SELECT SKIP n FIRST m` when a result may be big.
    pub async fn execute_sql_query(
        &self,
        query: impl Into<SqlQuery>,
    ) -> Result<Vec<SqlRow>, AxlError> {
        let mut rows = Vec::new();
        self.execute_sql_query_each(query, |row| {
            rows.push(row);
            Ok(())
        })
        .await?;
        Ok(rows)
    }

    /// Run a SELECT and hand each row to `on_row` as it is parsed, so memory holds one row
    /// at a time whatever the response size.
    pub async fn execute_sql_query_each(
        &self,
        query: impl Into<SqlQuery>,
        mut on_row: impl FnMut(SqlRow) -> Result<(), AxlError>,
    ) -> Result<u64, AxlError> {
        const OP: &str = "executeSQLQuery";
        let sql = query.into().render()?;
        let mut w = self.writer(OP);
        w.text("sql", &sql);
        let mut count = 0u64;
        self.call(OP, w.finish(), Access::Read, |part| {
            if let ResponsePart::Item(node) = part {
                if node.name == "row" {
                    count += 1;
                    on_row(SqlRow::from_node(&node))?;
                }
            }
            Ok(())
        })
        .await?;
        Ok(count)
    }
}

impl AxlClient {
    /// Page through a SELECT with Informix `SELECT SKIP n FIRST m`, shrinking the page when
    /// CUCM answers "Query request too large". `select_list_and_rest` is everything after
    /// `SELECT` (columns, FROM, WHERE, and an ORDER BY that makes paging stable).
    pub fn sql_pager(
        &self,
        select_list_and_rest: &str,
        options: crate::ListOptions,
    ) -> crate::Pager<SqlRow> {
        crate::Pager::sql(self, select_list_and_rest.to_owned(), |row| row, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn binds_and_quotes() {
        let q = SqlQuery::new("select * from enduser where userid = ? and status = ? and x = '?'")
            .bind("o'brien")
            .bind_int(1);
        assert_eq!(
            q.render().unwrap(),
            "select * from enduser where userid = 'o''brien' and status = 1 and x = '?'"
        );
        assert!(SqlQuery::new("select ?").render().is_err());
        assert!(SqlQuery::new("select 1").bind("x").render().is_err());
    }

    proptest! {
        /// Whatever the value, the rendered literal is one quoted token: quotes inside are
        /// doubled, so the statement cannot be broken out of.
        #[test]
        fn bound_text_stays_inside_one_literal(value in "[^\u{0}]{0,40}") {
            let sql = SqlQuery::new("select 1 from t where a = ?").bind(value.clone()).render().unwrap();
            let literal = sql.strip_prefix("select 1 from t where a = ").unwrap();
            prop_assert!(literal.starts_with('\'') && literal.ends_with('\''));
            let inner = &literal[1..literal.len() - 1];
            prop_assert_eq!(inner.replace("''", "'"), value);
            prop_assert!(!inner.replace("''", "").contains('\''));
        }
    }
}
