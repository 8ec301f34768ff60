//! `ucbridge-bench lab-child`: the lab the AXL scenarios measure against, in its own process
//! so the peak memory reported is the client's alone. Configured as `ucbridge lab` with its
//! defaults (seed 1 unless `--seed`, HTTPS on 127.0.0.1, an ephemeral port).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tokio::io::AsyncReadExt;
use ucbridge_lab::{LabConfig, RunningLab};

#[derive(Args, Debug)]
pub struct LabChildArgs {
    #[arg(long)]
    users: usize,
    /// Seed of the generated users (another seed: another cluster's users).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    max_response_bytes: usize,
    /// Where to write the lab's CA certificate (PEM).
    #[arg(long)]
    ca_out: PathBuf,
}

pub async fn run(args: LabChildArgs) -> Result<()> {
    let lab = RunningLab::start(LabConfig {
        users: args.users,
        seed: args.seed,
        max_response_bytes: args.max_response_bytes,
        ..LabConfig::default()
    })
    .await
    .context("cannot start the lab")?;
    let pem = lab
        .ca_certificate_pem()
        .context("the lab serves no TLS certificate")?;
    std::fs::write(&args.ca_out, pem)
        .with_context(|| format!("cannot write the CA to {}", args.ca_out.display()))?;
    println!("  AXL endpoint: {}", lab.axl_url());
    // Until the benchmark ends: it kills this process, or its end closes our stdin.
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while stdin.read(&mut buf).await.unwrap_or(0) > 0 {}
    lab.shutdown().await;
    Ok(())
}
