//! `ucbridge-bench` (the default scenario): list every user of a seeded lab and report
//! throughput and memory. The lab runs as a child process so that the peak memory reported
//! is the client's alone, and the client talks to it over real HTTPS as it would to a CUCM.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use ucbridge_axl::{AxlError, ListOptions, UserSearch, UserTag};

use crate::args::BenchArgs;
use crate::common::{connect, peak_rss_mib, print_json, start_lab};

#[derive(Serialize)]
struct Report {
    users_seeded: usize,
    users_listed: u64,
    pages: u64,
    final_page_size: u32,
    axl_requests: u64,
    page_shrinks: u64,
    lab_start_seconds: f64,
    list_seconds: f64,
    users_per_second: f64,
    client_peak_rss_mib: Option<f64>,
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let lab = start_lab(&args).await?;
    let lab_start = lab.started;
    let client = connect(&lab).await?;
    let tags = [
        UserTag::Userid,
        UserTag::FirstName,
        UserTag::LastName,
        UserTag::Mailid,
        UserTag::Department,
        UserTag::TelephoneNumber,
        UserTag::PrimaryExtension,
    ];
    let progress = indicatif::ProgressBar::new(args.users as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} users ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let list_started = Instant::now();
    let mut checksum = 0usize;
    let summary = client
        .for_each_user_page(
            &UserSearch::all(),
            &tags,
            ListOptions {
                page_size: args.page_size,
                ..ListOptions::default()
            },
            async |page| {
                // Touch the data so nothing is optimised away; pages are dropped at once.
                checksum += page.iter().filter(|u| u.mailid.is_some()).count();
                progress.inc(page.len() as u64);
                Ok::<_, AxlError>(())
            },
        )
        .await?;
    let list_time = list_started.elapsed();
    progress.finish_and_clear();
    drop(lab);
    tracing::debug!(checksum, "users with mail");

    let stats = client.stats();
    let report = Report {
        users_seeded: args.users,
        users_listed: summary.items,
        pages: summary.pages,
        final_page_size: summary.final_page_size,
        axl_requests: stats.requests,
        page_shrinks: stats.page_shrinks,
        lab_start_seconds: lab_start.as_secs_f64(),
        list_seconds: list_time.as_secs_f64(),
        users_per_second: summary.items as f64 / list_time.as_secs_f64().max(1e-9),
        client_peak_rss_mib: peak_rss_mib(),
    };
    if args.json {
        return print_json(&report);
    }
    println!("listUser benchmark against the lab over HTTPS");
    println!(
        "  users seeded / listed : {} / {}",
        report.users_seeded, report.users_listed
    );
    println!(
        "  pages                 : {} (final page size {}, {} shrinks)",
        report.pages, report.final_page_size, report.page_shrinks
    );
    println!("  AXL requests          : {}", report.axl_requests);
    println!(
        "  lab start (seeding)   : {:.2} s",
        report.lab_start_seconds
    );
    println!("  list time             : {:.2} s", report.list_seconds);
    println!(
        "  throughput            : {:.0} users/s",
        report.users_per_second
    );
    match report.client_peak_rss_mib {
        Some(m) => println!("  client peak RSS       : {m:.1} MiB"),
        None => println!("  client peak RSS       : unknown (no /proc)"),
    }
    Ok(())
}
