//! `ucbridge bench`: list every user of a seeded lab and report throughput and memory.
//!
//! The lab runs as a child process (`ucbridge lab`) so that the peak memory reported is the
//! client's alone, and the client talks to it over real HTTPS as it would to a CUCM.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use ucbridge_axl::{AxlClient, AxlConfig, ListOptions, UserSearch, UserTag};

#[derive(Args)]
pub struct BenchArgs {
    /// Users seeded in the lab and listed.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Rows per listUser request.
    #[arg(long, default_value_t = 1000)]
    page_size: u32,
    /// Lab response-size cap; lower it to exercise page shrinking.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    max_response_bytes: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

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

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let ca_path = dir.path().join("lab-ca.pem");
    let exe = std::env::current_exe().context("cannot find the ucbridge binary")?;
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args(["lab", "--bind", "127.0.0.1:0", "--users"])
        .arg(args.users.to_string())
        .arg("--max-response-bytes")
        .arg(args.max_response_bytes.to_string())
        .arg("--ca-out")
        .arg(&ca_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the lab process")?;
    let stdout = child.stdout.take().context("lab has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.trim().strip_prefix("AXL endpoint:") {
                return Ok::<_, std::io::Error>(Some(url.trim().to_owned()));
            }
        }
        Ok(None)
    })
    .await
    .context("the lab did not start within 5 minutes")??;
    let Some(url) = url else {
        bail!("the lab exited before announcing its endpoint");
    };
    let lab_start = started.elapsed();

    let mut config = AxlConfig::new(url, "administrator", "ucbridge-lab");
    config.ca_file = Some(ca_path);
    let client = AxlClient::connect(config).await?;
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
            |page| {
                // Touch the data so nothing is optimised away; pages are dropped at once.
                checksum += page.iter().filter(|u| u.mailid.is_some()).count();
                progress.inc(page.len() as u64);
                Ok(())
            },
        )
        .await?;
    let list_time = list_started.elapsed();
    progress.finish_and_clear();
    child.kill().await.ok();
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
        return crate::output::json(&report);
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
