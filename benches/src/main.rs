//! `quiver-bench`: Quiver's benchmarks, each measured against its baselines
//! in the same run, since these machines are too noisy for absolute numbers
//! to mean much.

mod data;
mod link;
mod server;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(
    name = "quiver-bench",
    about = "Quiver benchmarks with same-run baselines"
)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
    /// Where JSON and Markdown results are written.
    #[arg(long, global = true, default_value = "bench-results")]
    out: PathBuf,
    /// Run without the emulated S3 link (raw loopback).
    #[arg(long, global = true)]
    no_emulation: bool,
    /// First-byte latency of the emulated S3 link, in milliseconds.
    #[arg(long, global = true, default_value_t = 30)]
    latency_ms: u64,
    /// Per-connection bandwidth of the emulated S3 link, in MB/s.
    #[arg(long, global = true, default_value_t = 100)]
    bandwidth_mb_s: u64,
    /// The quiver-server binary to run (default: next to this binary).
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Workload {
    /// Single node: warm Quiver vs DataFusion direct on one file, bytes to
    /// the client, and peak RSS under concurrent whole-file scans.
    Node {
        /// Size of each generated file, in MiB.
        #[arg(long, default_value_t = 100)]
        file_mb: u64,
        /// Distinct files scanned by the concurrent clients.
        #[arg(long, default_value_t = 4)]
        files: usize,
        /// Clients scanning at once in the memory phase.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Timed repetitions of each measured scan.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Fraction of rows the filter selects.
        #[arg(long, default_value_t = 0.01)]
        selectivity: f64,
        /// Memory tier of the node, in MiB.
        #[arg(long, default_value_t = 256)]
        memory_mib: u64,
    },
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let command: Vec<String> = std::env::args().collect();
    let command = format!(
        "cargo build --release -p quiver-server -p quiver-bench && target/release/quiver-bench {}",
        command[1..].join(" ")
    );
    let link = (!cli.no_emulation).then(|| link::LinkConfig {
        latency: Duration::from_millis(cli.latency_ms),
        bandwidth: cli.bandwidth_mb_s * 1_000_000,
    });
    let server_bin = cli
        .server_bin
        .clone()
        .unwrap_or_else(server::default_binary);
    std::fs::create_dir_all(&cli.out)?;
    match cli.workload {
        Workload::Node {
            file_mb,
            files,
            clients,
            runs,
            selectivity,
            memory_mib,
        } => {
            if !(selectivity > 0.0 && selectivity <= 1.0) {
                return Err("--selectivity must be in (0, 1]".into());
            }
            if files == 0 || clients == 0 || runs == 0 || file_mb == 0 {
                return Err("--files, --clients, --runs and --file-mb must be at least 1".into());
            }
            let args = workloads::node::NodeArgs {
                file_mb,
                files,
                clients,
                runs,
                selectivity,
                memory_mib,
                link,
                server_bin,
            };
            let report = workloads::node::run(&args).await?;
            let md = report.markdown(&command);
            println!("{md}");
            std::fs::write(
                cli.out.join("node.json"),
                serde_json::to_vec_pretty(&report)?,
            )?;
            std::fs::write(cli.out.join("node.md"), md)?;
        }
    }
    Ok(())
}
