//! What the scenarios share: the lab in a child process, the AXL client for it, and the
//! process's own memory and CPU figures.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use ucbridge_axl::{AxlClient, AxlConfig};

use crate::args::BenchArgs;

/// The benchmark's database: `--database-url`, else SQLite in a temp dir that lives as
/// long as the returned guard.
pub async fn open_store(args: &BenchArgs) -> Result<(tempfile::TempDir, ucbridge_store::Store)> {
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let store = ucbridge_store::Store::open(&url)
        .await
        .context("cannot open the benchmark database")?;
    Ok((dir, store))
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

/// Resident memory of this process now (Linux `VmRSS`), in MiB.
pub fn rss_mib() -> Option<f64> {
    status_mib("VmRSS:")
}

fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Reset this process's peak resident memory (`VmHWM`) to its current RSS, so the next
/// [`peak_rss_mib`] is the peak of what ran in between: writing "5" to
/// `/proc/self/clear_refs` (Linux 4.0+, proc(5)). False where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`): 100 on every Linux
/// architecture ucbridge runs on (x86-64, arm64), whatever the kernel's own `HZ`.
const USER_HZ: f64 = 100.0;

/// CPU time this process has used, user + system, all threads (Linux
/// `/proc/self/stat` utime + stime), in seconds; 10 ms resolution.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A lab in a child process (this binary again, `lab-child`): its AXL URL and the path of
/// its CA. The child ends when this is dropped (killed) or when this process dies (its
/// standard input closes).
pub struct ChildLab {
    _child: tokio::process::Child,
    pub url: String,
    pub ca_path: std::path::PathBuf,
    pub started: Duration,
    _dir: tempfile::TempDir,
}

pub async fn start_lab(args: &BenchArgs) -> Result<ChildLab> {
    start_lab_with(args.users, 1, args.max_response_bytes).await
}

/// [`start_lab`] with `users` users generated from `seed` (another seed gives other pkids
/// and mostly other userids: a second cluster).
pub async fn start_lab_with(
    users: usize,
    seed: u64,
    max_response_bytes: usize,
) -> Result<ChildLab> {
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let ca_path = dir.path().join("lab-ca.pem");
    let exe = std::env::current_exe().context("cannot find the ucbridge-bench binary")?;
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args(["lab-child", "--users"])
        .arg(users.to_string())
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--max-response-bytes")
        .arg(max_response_bytes.to_string())
        .arg("--ca-out")
        .arg(&ca_path)
        .stdin(Stdio::piped())
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
    // Keep reading what the lab prints so it never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(ChildLab {
        _child: child,
        url,
        ca_path,
        started: started.elapsed(),
        _dir: dir,
    })
}

pub async fn connect(lab: &ChildLab) -> Result<AxlClient> {
    let mut config = AxlConfig::new(lab.url.clone(), "administrator", "ucbridge-lab");
    config.ca_file = Some(lab.ca_path.clone());
    Ok(AxlClient::connect(config).await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_is_read_and_grows() {
        let before = super::cpu_seconds().expect("/proc/self/stat");
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = super::cpu_seconds().unwrap();
        assert!(after >= before, "{before} -> {after}");
    }
}
