//! `quiver-bench`: Quiver's benchmarks, each measured against its baselines
//! in the same run, since these machines are too noisy for absolute numbers
//! to mean much.
//!
//! This file only parses the command line and hands it to a workload: each
//! workload in [`workloads`] owns its flags and its run, from starting its
//! rig to writing its report.

mod baseline;
mod common;
mod compare;
mod counting;
mod data;
mod error;
mod flight;
mod measure;
mod origin;
mod plot;
mod readers;
mod report;
mod rig;
mod server;
mod timing;
mod workloads;

use clap::{Parser, Subcommand};

use crate::common::Common;
use crate::error::BoxError;
use crate::origin::ServeLinkArgs;
use crate::workloads::cluster::ClusterArgs;
use crate::workloads::delta::DeltaArgs;
use crate::workloads::hot::HotArgs;
use crate::workloads::load::LoadArgs;
use crate::workloads::node::NodeArgs;
use crate::workloads::policies::PoliciesArgs;
use crate::workloads::presign::PresignArgs;
use crate::workloads::suite::{Parts, SuiteArgs};
use crate::workloads::tpch::TpchArgs;

#[derive(Parser)]
#[command(
    name = "quiver-bench",
    about = "Quiver benchmarks with same-run baselines",
    long_about = "Quiver benchmarks with same-run baselines. With no workload named, runs the \
                  suite (trace and pushdown) and writes results.json, results.md and PNG plots."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: Common,
}

#[derive(Subcommand)]
enum Command {
    /// The benchmark's network process (S3 server and links), started by the
    /// benchmark itself; not a workload.
    #[command(hide = true)]
    ServeLink(ServeLinkArgs),
    #[command(flatten)]
    Workload(Workload),
}

/// The workloads, each with its own flags.
#[derive(Subcommand)]
enum Workload {
    /// The suite: trace and pushdown (the default).
    All(SuiteArgs),
    /// ISTZIIO-style traces over 1 MB and 100 MB files.
    Trace,
    /// TPC-H lineitem at 0.1% to 100% selectivity.
    Pushdown(SuiteArgs),
    /// One node against a 3-node cluster: aggregate throughput and origin
    /// bytes of the same workload (writes cluster.json and cluster.md).
    Cluster(ClusterArgs),
    /// TPC-H Q1, Q6 and Q14 through DataFusion over QuiverTable (warm),
    /// against DataFusion reading the files over S3 (writes tpch.json and
    /// tpch.md).
    Tpch(TpchArgs),
    /// A cold object at 1% selectivity: DataFusion direct over S3, Quiver
    /// read-through and Quiver pre-signed, then warm after background
    /// warming (writes presign.json and presign.md).
    Presign(PresignArgs),
    /// Many clients on one node, three in four on cached files: throughput,
    /// p50/p99, errors by code and peak RSS at each level (writes load.json
    /// and load.md).
    Load(LoadArgs),
    /// One access trace through every eviction policy at several cache
    /// sizes (miss-ratio curves), and an A/B split of its clients between
    /// two policies (writes policies.json, policies.md and a PNG per trace).
    Policies(PoliciesArgs),
    /// Warm hits from the hot tier against DataFusion in-process on the
    /// same local file: a 1% filter and full-scan GB/s with 1 and 2 clients
    /// (writes hot.json and hot.md).
    Hot(HotArgs),
    /// Single node: warm Quiver vs DataFusion direct on one file, bytes to
    /// the client, and peak RSS under concurrent whole-file scans.
    Node(NodeArgs),
    /// A Delta table through QuiverTable::delta, cold and warm, against
    /// DataFusion over its live files, and what skipping revalidation saves
    /// (writes delta.json and delta.md).
    Delta(DeltaArgs),
}

/// Runs the workload; a failure is printed as one readable line (a gRPC
/// status as its code and message, not its debug form) with exit code 1.
#[tokio::main]
async fn main() {
    quiver_client::tls::use_ring_provider();
    if let Err(e) = run(Cli::parse()).await {
        let status = e.downcast_ref::<tonic::Status>().or_else(|| {
            match e.downcast_ref::<arrow_flight::error::FlightError>() {
                Some(arrow_flight::error::FlightError::Tonic(s)) => Some(s.as_ref()),
                _ => None,
            }
        });
        let message = match status {
            Some(s) if s.code() == tonic::Code::PermissionDenied => format!(
                "PermissionDenied: {} (--token-file must hold the admin token: the benchmark evicts between runs)",
                s.message()
            ),
            Some(s) => format!("{:?}: {}", s.code(), s.message()),
            None => e.to_string(),
        };
        eprintln!("quiver-bench: {message}");
        std::process::exit(1);
    }
}

/// Serves the network process, or hands the command line to its workload
/// (the suite when none is named).
async fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Some(Command::ServeLink(args)) => origin::serve(args).await,
        Some(Command::Workload(workload)) => run_workload(&cli.common, workload).await,
        None => run_workload(&cli.common, Workload::All(SuiteArgs::default())).await,
    }
}

/// Runs `workload`, with the command that reproduces the run for its
/// report, into `--out`.
async fn run_workload(common: &Common, workload: Workload) -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = format!(
        "cargo build --release --workspace && target/release/quiver-bench {}",
        args.join(" ")
    )
    .trim_end()
    .to_string();
    std::fs::create_dir_all(&common.out)?;
    match workload {
        Workload::All(args) => workloads::suite::main(common, Parts::All(args), command).await,
        Workload::Trace => workloads::suite::main(common, Parts::Trace, command).await,
        Workload::Pushdown(args) => {
            workloads::suite::main(common, Parts::Pushdown(args), command).await
        }
        Workload::Cluster(args) => workloads::cluster::main(common, args, command).await,
        Workload::Tpch(args) => workloads::tpch::main(common, args, command).await,
        Workload::Presign(args) => workloads::presign::main(common, args, command).await,
        Workload::Load(args) => workloads::load::main(common, args, command).await,
        Workload::Policies(args) => workloads::policies::main(common, args, command).await,
        Workload::Hot(args) => workloads::hot::main(common, args, command).await,
        Workload::Node(args) => workloads::node::main(common, args, command).await,
        Workload::Delta(args) => workloads::delta::main(common, args, command).await,
    }
}
