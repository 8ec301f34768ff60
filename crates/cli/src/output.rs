//! Human tables and JSON for the CLI.

use anyhow::Result;
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use ucbridge_axl::{Phone, SqlRow, User};

pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    t
}

fn cell(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
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

pub fn users(users: &[User], as_json: bool) -> Result<()> {
    if as_json {
        return json(users);
    }
    let mut t = table(&[
        "userid",
        "first name",
        "last name",
        "mail",
        "department",
        "telephone",
        "primary extension",
    ]);
    for u in users {
        let ext = u
            .primary_extension
            .as_ref()
            .map(|d| match &d.route_partition {
                Some(p) => format!("{} ({p})", d.pattern),
                None => d.pattern.clone(),
            })
            .unwrap_or_default();
        t.add_row(vec![
            cell(&u.userid),
            cell(&u.first_name),
            cell(&u.last_name),
            cell(&u.mailid),
            cell(&u.department),
            cell(&u.telephone_number),
            &ext,
        ]);
    }
    println!("{t}");
    Ok(())
}

fn detail(rows: Vec<(&str, String)>) {
    let mut t = table(&["field", "value"]);
    for (k, v) in rows {
        if !v.is_empty() {
            t.add_row(vec![k, &v]);
        }
    }
    println!("{t}");
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
    ]);
    Ok(())
}

pub fn phones(phones: &[Phone], as_json: bool) -> Result<()> {
    if as_json {
        return json(phones);
    }
    let mut t = table(&[
        "name",
        "description",
        "product",
        "protocol",
        "device pool",
        "owner",
    ]);
    for p in phones {
        t.add_row(vec![
            cell(&p.name),
            cell(&p.description),
            cell(&p.product),
            cell(&p.protocol),
            cell(&p.device_pool),
            cell(&p.owner_user_name),
        ]);
    }
    println!("{t}");
    Ok(())
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
    ]);
    Ok(())
}

pub fn sql_rows(rows: &[SqlRow], as_json: bool) -> Result<()> {
    if as_json {
        return json(rows);
    }
    let Some(first) = rows.first() else {
        println!("(no rows)");
        return Ok(());
    };
    let header: Vec<&str> = first.columns.iter().map(|(k, _)| k.as_str()).collect();
    let mut t = table(&header);
    for r in rows {
        t.add_row(
            r.columns
                .iter()
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>(),
        );
    }
    println!("{t}");
    eprintln!("{} rows", rows.len());
    Ok(())
}
