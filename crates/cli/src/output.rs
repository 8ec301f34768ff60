//! What the CLI prints on standard output: tables, JSON, and lists streamed as they arrive.
//!
//! - **Write errors are returned, never a panic.** `println!` panics when standard output is
//!   gone (`ucbridge sync status | head -5`); [`outln!`] and everything here return the
//!   error instead, and a closed pipe becomes [`StdoutClosed`], which `main` turns into a
//!   quiet exit with status 0, as ripgrep does. `clippy::print_stdout` is denied in this
//!   crate so no `println!` slips back in.
//! - **Lists are streamed.** [`ListWriter`] writes a JSON array element by element (the
//!   same bytes `serde_json::to_string_pretty` gives for the whole array) and passes them on
//!   at every [`ListWriter::flush`] (the end of each page fetched), so memory holds one page
//!   whatever the length of the list. Tables buffer at most [`TABLE_CHUNK_ROWS`] rows: the
//!   first chunk decides the column widths, later chunks are drawn with the same widths and
//!   without their top border, so the chunks read as one table (a later cell wider than
//!   its column wraps inside it).

use std::fmt;
use std::io::{self, BufWriter, Write};

use anyhow::Result;
use comfy_table::{
    presets::UTF8_FULL_CONDENSED, ColumnConstraint, ContentArrangement, Table, Width,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use ucbridge_axl::{Phone, SqlRow, User};

/// Rows a streamed table holds before drawing them.
pub const TABLE_CHUNK_ROWS: usize = 1000;

/// Standard output went away (the reader closed the pipe): the command ends quietly.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// Whether `error` is (or was caused by) standard output going away.
pub fn is_stdout_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<StdoutClosed>())
}

/// A write to standard output as the command's result: [`StdoutClosed`] for a closed pipe.
/// Only for writes to standard output: a broken pipe elsewhere (a socket to CUCM) is a
/// real failure and must not end the command quietly.
pub fn checked<T>(result: io::Result<T>) -> Result<T> {
    result.map_err(|e| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            anyhow::Error::new(StdoutClosed)
        } else {
            anyhow::Error::new(e).context("cannot write to standard output")
        }
    })
}

/// One line on standard output; what [`outln!`] calls.
pub fn line(args: fmt::Arguments<'_>) -> Result<()> {
    let mut out = io::stdout().lock();
    checked(out.write_fmt(args).and_then(|()| out.write_all(b"\n")))
}

/// `println!` that returns the write error (`outln!(...)?`) instead of panicking.
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// One value as pretty JSON.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    line(format_args!("{text}"))
}

/// A table in the CLI's style.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    t
}

/// A whole table on standard output (for short, bounded ones; lists use [`ListWriter`]).
pub fn print_table(t: &Table) -> Result<()> {
    line(format_args!("{t}"))
}

fn cell(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// A spinner with a running count on stderr (hidden when stderr is not a terminal).
pub fn counter(what: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} {msg} ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// A list written as it arrives: a JSON array or a table (see the module docs).
pub struct ListWriter<W: Write = BufWriter<io::Stdout>> {
    form: Form<W>,
    count: u64,
}

enum Form<W: Write> {
    Json(JsonArray<W>),
    Table(TableStream<W>),
}

impl ListWriter {
    /// A list on standard output: a JSON array with `json`, else a table under `header`.
    pub fn stdout(json: bool, header: &[&str]) -> ListWriter {
        ListWriter::new(BufWriter::new(io::stdout()), json, header, TABLE_CHUNK_ROWS)
    }
}

impl<W: Write> ListWriter<W> {
    pub fn new(out: W, json: bool, header: &[&str], chunk_rows: usize) -> ListWriter<W> {
        let form = if json {
            Form::Json(JsonArray {
                out,
                count: 0,
                scratch: Vec::new(),
            })
        } else {
            Form::Table(TableStream {
                out,
                header: header.iter().map(|h| (*h).to_owned()).collect(),
                rows: Vec::new(),
                chunk_rows: chunk_rows.max(1),
                widths: None,
                bottom: None,
            })
        };
        ListWriter { form, count: 0 }
    }

    /// One item: serialized as it is for JSON, else the table row `row` makes of it.
    pub fn push<T: Serialize + ?Sized>(
        &mut self,
        item: &T,
        row: impl FnOnce(&T) -> Vec<String>,
    ) -> Result<()> {
        match &mut self.form {
            Form::Json(a) => a.push(item)?,
            Form::Table(t) => t.push(row(item))?,
        }
        self.count += 1;
        Ok(())
    }

    /// Hand what is written so far to the reader (at the end of each page fetched).
    pub fn flush(&mut self) -> Result<()> {
        checked(match &mut self.form {
            Form::Json(a) => a.out.flush(),
            Form::Table(t) => t.out.flush(),
        })
    }

    /// Close the array or draw the rest of the table; how many items were written.
    pub fn finish(self) -> Result<u64> {
        match self.form {
            Form::Json(a) => a.finish()?,
            Form::Table(t) => t.finish()?,
        }
        Ok(self.count)
    }
}

/// A JSON array written element by element, byte for byte what `to_string_pretty` of the
/// whole array followed by a newline would be.
struct JsonArray<W> {
    out: W,
    count: u64,
    scratch: Vec<u8>,
}

impl<W: Write> JsonArray<W> {
    fn push<T: Serialize + ?Sized>(&mut self, item: &T) -> Result<()> {
        // Serialized apart first: serde_json keeps an io::Error's kind but not the error,
        // so a closed pipe would not be recognisable through it.
        self.scratch.clear();
        serde_json::to_writer_pretty(&mut self.scratch, item)?;
        let open: &[u8] = if self.count == 0 { b"[\n  " } else { b",\n  " };
        checked(self.out.write_all(open))?;
        // One level deeper than on its own: every line break gains an indent. (JSON strings
        // carry line breaks escaped, so every raw `\n` is the formatter's.)
        for (i, piece) in self.scratch.split(|b| *b == b'\n').enumerate() {
            if i > 0 {
                checked(self.out.write_all(b"\n  "))?;
            }
            checked(self.out.write_all(piece))?;
        }
        self.count += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        let close: &[u8] = if self.count == 0 { b"[]\n" } else { b"\n]\n" };
        checked(self.out.write_all(close))?;
        checked(self.out.flush())
    }
}

/// A table drawn [`TABLE_CHUNK_ROWS`] rows at a time as one table.
struct TableStream<W> {
    out: W,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    chunk_rows: usize,
    /// Column widths (padding included) the first chunk was drawn with.
    widths: Option<Vec<u16>>,
    /// The bottom border of the last chunk drawn, written when the table ends.
    bottom: Option<String>,
}

impl<W: Write> TableStream<W> {
    fn push(&mut self, row: Vec<String>) -> Result<()> {
        self.rows.push(row);
        if self.rows.len() >= self.chunk_rows {
            self.draw()?;
        }
        Ok(())
    }

    fn draw(&mut self) -> Result<()> {
        let rows = std::mem::take(&mut self.rows);
        let lines: Vec<String> = match &self.widths {
            None => {
                let header: Vec<&str> = self.header.iter().map(String::as_str).collect();
                let mut t = table(&header);
                for r in rows {
                    t.add_row(r);
                }
                let lines: Vec<String> = t.lines().collect();
                let widths = lines
                    .first()
                    .and_then(|top| border_widths(top, self.header.len()))
                    .unwrap_or_else(|| {
                        t.column_max_content_widths()
                            .iter()
                            .map(|w| w.saturating_add(2))
                            .collect()
                    });
                self.widths = Some(widths);
                lines
            }
            Some(widths) => {
                let mut t = Table::new();
                t.load_preset(UTF8_FULL_CONDENSED)
                    .set_content_arrangement(ContentArrangement::Dynamic);
                for r in rows {
                    t.add_row(r);
                }
                t.set_constraints(
                    widths
                        .iter()
                        .map(|w| ColumnConstraint::Absolute(Width::Fixed(*w))),
                );
                // Its top border would close the table drawn so far and open a new one.
                t.lines().skip(1).collect()
            }
        };
        let Some((bottom, body)) = lines.split_last() else {
            return Ok(());
        };
        for l in body {
            checked(writeln!(self.out, "{l}"))?;
        }
        self.bottom = Some(bottom.clone());
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        // A table without rows still shows its header.
        if !self.rows.is_empty() || self.widths.is_none() {
            self.draw()?;
        }
        if let Some(bottom) = self.bottom.take() {
            checked(writeln!(self.out, "{bottom}"))?;
        }
        checked(self.out.flush())
    }
}

/// The widths of the columns (padding included) in a table's top border: `┌──┬───┐` is
/// `[2, 3]`.
fn border_widths(top: &str, columns: usize) -> Option<Vec<u16>> {
    let inner = top.strip_prefix('┌')?.strip_suffix('┐')?;
    let widths: Vec<u16> = inner
        .split('┬')
        .map(|s| u16::try_from(s.chars().count()).ok())
        .collect::<Option<_>>()?;
    (widths.len() == columns).then_some(widths)
}

pub const USER_HEADER: &[&str] = &[
    "userid",
    "first name",
    "last name",
    "mail",
    "department",
    "telephone",
    "primary extension",
];

pub fn user_row(u: &User) -> Vec<String> {
    let ext = u
        .primary_extension
        .as_ref()
        .map(|d| match &d.route_partition {
            Some(p) => format!("{} ({p})", d.pattern),
            None => d.pattern.clone(),
        })
        .unwrap_or_default();
    vec![
        cell(&u.userid),
        cell(&u.first_name),
        cell(&u.last_name),
        cell(&u.mailid),
        cell(&u.department),
        cell(&u.telephone_number),
        ext,
    ]
}

fn detail(rows: Vec<(&str, String)>) -> Result<()> {
    let mut t = table(&["field", "value"]);
    for (k, v) in rows {
        if !v.is_empty() {
            t.add_row(vec![k, &v]);
        }
    }
    print_table(&t)
}

pub fn user_detail(u: &User, as_json: bool) -> Result<()> {
    if as_json {
        return json(u);
    }
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    detail(vec![
        ("uuid", o(&u.uuid)),
        ("userid", o(&u.userid)),
        ("first name", o(&u.first_name)),
        ("middle name", o(&u.middle_name)),
        ("last name", o(&u.last_name)),
        ("display name", o(&u.display_name)),
        ("mail", o(&u.mailid)),
        ("department", o(&u.department)),
        ("manager", o(&u.manager)),
        ("title", o(&u.title)),
        ("telephone", o(&u.telephone_number)),
        ("mobile", o(&u.mobile_number)),
        ("home", o(&u.home_number)),
        ("pager", o(&u.pager_number)),
        ("directory URI", o(&u.directory_uri)),
        (
            "primary extension",
            u.primary_extension
                .as_ref()
                .map(|d| {
                    format!(
                        "{} {}",
                        d.pattern,
                        d.route_partition.as_deref().unwrap_or("")
                    )
                })
                .unwrap_or_default(),
        ),
        (
            "status",
            u.status.map(|s| s.to_string()).unwrap_or_default(),
        ),
        ("associated devices", u.associated_devices.join(", ")),
    ])
}

pub const PHONE_HEADER: &[&str] = &[
    "name",
    "description",
    "product",
    "protocol",
    "device pool",
    "owner",
];

pub fn phone_row(p: &Phone) -> Vec<String> {
    vec![
        cell(&p.name),
        cell(&p.description),
        cell(&p.product),
        cell(&p.protocol),
        cell(&p.device_pool),
        cell(&p.owner_user_name),
    ]
}

pub fn phone_detail(p: &Phone, as_json: bool) -> Result<()> {
    if as_json {
        return json(p);
    }
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let lines: Vec<String> = p
        .lines
        .iter()
        .map(|l| {
            format!(
                "{}: {} {}",
                l.index,
                l.dirn.pattern,
                l.dirn.route_partition.as_deref().unwrap_or("")
            )
        })
        .collect();
    detail(vec![
        ("uuid", o(&p.uuid)),
        ("name", o(&p.name)),
        ("description", o(&p.description)),
        ("product", o(&p.product)),
        ("class", o(&p.class)),
        ("protocol", o(&p.protocol)),
        ("device pool", o(&p.device_pool)),
        ("calling search space", o(&p.calling_search_space)),
        ("security profile", o(&p.security_profile)),
        ("SIP profile", o(&p.sip_profile)),
        ("owner", o(&p.owner_user_name)),
        ("digest user", o(&p.digest_user)),
        ("lines", lines.join("; ")),
    ])
}

/// The rows of one executeSQLQuery answer (one AXL response, so bounded by its size cap);
/// written row by row all the same.
pub fn sql_rows(rows: &[SqlRow], as_json: bool) -> Result<()> {
    let header: Vec<&str> = rows
        .first()
        .map(|r| r.columns.iter().map(|(k, _)| k.as_str()).collect())
        .unwrap_or_default();
    if rows.is_empty() && !as_json {
        return outln!("(no rows)");
    }
    let mut list = ListWriter::stdout(as_json, &header);
    for r in rows {
        list.push(r, |r| r.columns.iter().map(|(_, v)| v.clone()).collect())?;
    }
    list.finish()?;
    if !as_json {
        eprintln!("{} rows", rows.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(json: bool, chunk: usize, items: &[(&str, &str)]) -> String {
        let mut out = Vec::new();
        let mut list = ListWriter::new(&mut out, json, &["key", "value"], chunk);
        for (k, v) in items {
            let item = serde_json::json!({ "key": k, "value": v, "nested": { "list": [1, 2] } });
            list.push(&item, |_| vec![k.to_string(), v.to_string()])
                .unwrap();
        }
        assert_eq!(list.finish().unwrap(), items.len() as u64);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_streamed_array_is_what_the_whole_array_prints() {
        for items in [
            &[][..],
            &[("a", "1")][..],
            &[("a", "1"), ("b", "line\nbreak"), ("c", "")][..],
        ] {
            let whole: Vec<serde_json::Value> = items
                .iter()
                .map(|(k, v)| serde_json::json!({ "key": k, "value": v, "nested": { "list": [1, 2] } }))
                .collect();
            let expected = format!("{}\n", serde_json::to_string_pretty(&whole).unwrap());
            assert_eq!(written(true, 2, items), expected);
        }
    }

    #[test]
    fn a_table_drawn_in_chunks_reads_as_one_table() {
        let items = [
            ("alpha", "1"),
            ("b", "22"),
            ("c", "333"),
            ("delta", "4"),
            ("e", "5"),
        ];
        let mut whole = table(&["key", "value"]);
        for (k, v) in items {
            whole.add_row(vec![k, v]);
        }
        let expected = format!("{whole}\n");
        assert_eq!(written(false, 1000, &items), expected, "one chunk");
        // Chunks of two rows: the widths come from the first chunk, which has the widest
        // cells here, so the result is the same table.
        assert_eq!(written(false, 2, &items), expected, "three chunks");
        assert_eq!(
            written(false, 5, &items),
            expected,
            "exactly one full chunk"
        );
    }

    #[test]
    fn a_later_wider_cell_wraps_inside_its_column() {
        let text = written(false, 1, &[("a", "1"), ("much wider", "2")]);
        let widths: Vec<usize> = text.lines().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with('┌')).count(), 1);
        assert_eq!(text.lines().filter(|l| l.starts_with('└')).count(), 1);
    }

    #[test]
    fn an_empty_table_shows_its_header() {
        let expected = format!("{}\n", table(&["key", "value"]));
        assert_eq!(written(false, 3, &[]), expected);
    }

    /// A reader that went away: every write fails with EPIPE.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_closed_pipe_is_told_apart_from_other_failures() {
        for json in [true, false] {
            let mut list = ListWriter::new(Closed, json, &["key"], 1);
            let err = list.push("x", |_| vec!["x".into()]).unwrap_err();
            assert!(is_stdout_closed(&err), "{err:#}");
        }
        let other = checked::<()>(Err(io::ErrorKind::StorageFull.into())).unwrap_err();
        assert!(!is_stdout_closed(&other));
        assert!(
            format!("{other:#}").contains("standard output"),
            "{other:#}"
        );
        // A broken pipe on a socket (a CUCM connection) is a failure like any other.
        let socket = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!is_stdout_closed(&socket));
    }
}
