//! `quiver-bench`: Quiver's benchmarks, each measured against its baselines
//! in the same run, since these machines are too noisy for absolute numbers
//! to mean much.

mod counting;
mod data;
mod measure;
mod origin;
mod plot;
mod readers;
mod report;
mod rig;
mod server;
mod workloads;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::report::{LinkSummary, Suite};
use crate::rig::{Rig, RigOptions, BENCH_MAX_SCANS};
use crate::workloads::cluster::ClusterArgs;
use crate::workloads::pushdown::PushdownArgs;
use crate::workloads::trace::TraceArgs;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(
    name = "quiver-bench",
    about = "Quiver benchmarks with same-run baselines",
    long_about = "Quiver benchmarks with same-run baselines. With no workload named, runs the \
                  suite (trace and pushdown) and writes results.json, results.md and PNG plots."
)]
struct Cli {
    #[command(subcommand)]
    workload: Option<Workload>,
    /// A small run (minutes, not tens of minutes) with the same shape.
    #[arg(long, global = true)]
    quick: bool,
    /// Where JSON, Markdown and PNG results are written.
    #[arg(long, global = true, default_value = "bench-results")]
    out: PathBuf,
    /// Run without the emulated S3 link (raw loopback, or real S3).
    #[arg(long, global = true)]
    no_emulation: bool,
    /// First-byte latency of the emulated S3 link, in milliseconds.
    #[arg(long, global = true, default_value_t = 30)]
    latency_ms: u64,
    /// Per-connection bandwidth of the emulated S3 link, in MB/s.
    #[arg(long, global = true, default_value_t = 100)]
    bandwidth_mb_s: u64,
    /// First-byte latency of an emulated hop from the benchmark's clients to
    /// each local node, in milliseconds; 0 connects them on raw loopback.
    #[arg(long, global = true, default_value_t = 0)]
    client_latency_ms: u64,
    /// Per-connection bandwidth of the client hop, in MB/s; 0 for no cap.
    #[arg(long, global = true, default_value_t = 0)]
    client_bandwidth_mb_s: u64,
    /// The quiver-server binary to run (default: next to this binary).
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
    /// Flight URLs of running Quiver nodes to measure instead of starting
    /// one (comma-separated); needs --s3.
    #[arg(long, global = true, value_delimiter = ',')]
    nodes: Vec<String>,
    /// Root URL (s3://bucket/prefix/) of the source the running nodes serve;
    /// credentials come from the AWS environment or instance profile.
    #[arg(long, global = true)]
    s3: Option<String>,
    /// PEM CA certificates to trust for grpc+tls:// --nodes.
    #[arg(long, global = true)]
    tls_ca: Option<PathBuf>,
    /// File holding the bearer token for --nodes that require one. Use the
    /// admin token: the suite evicts between runs.
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// The source name under which the nodes serve --s3.
    #[arg(long, global = true, default_value = "bench")]
    source: String,
    /// Memory tier of the local node, in MiB (1 GiB, like the ISTZIIO rig).
    #[arg(long, global = true, default_value_t = 1024)]
    cache_memory_mib: u64,
    /// Disk tier of the local node, in MiB.
    #[arg(long, global = true, default_value_t = 4096)]
    cache_disk_mib: u64,
}

#[derive(Args, Clone, Default)]
struct SuiteArgs {
    /// TPC-H scale factor of the pushdown workload [default: 1, quick 0.05].
    #[arg(long)]
    scale: Option<f64>,
    /// Timed runs of each pushdown case and mode [default: 3, quick 1].
    #[arg(long)]
    runs: Option<usize>,
}

#[derive(Subcommand)]
enum Workload {
    /// The benchmark's network process (S3 server and links), started by the
    /// benchmark itself; not a workload.
    #[command(hide = true)]
    ServeLink {
        /// Serve S3 (s3s-fs) over this directory.
        #[arg(long)]
        s3_dir: Option<PathBuf>,
        /// Buckets the S3 server creates.
        #[arg(long)]
        bucket: Vec<String>,
        /// Put the links in front of this address instead.
        #[arg(long)]
        upstream: Option<std::net::SocketAddr>,
        /// A link to start, as LATENCY_MS:BYTES_PER_S; repeatable.
        #[arg(long, value_parser = origin::parse_link)]
        link: Vec<quiver_testkit::link::LinkConfig>,
    },
    /// The suite: trace and pushdown (the default).
    All(SuiteArgs),
    /// ISTZIIO-style traces over 1 MB and 100 MB files.
    Trace,
    /// TPC-H lineitem at 0.1% to 100% selectivity.
    Pushdown(SuiteArgs),
    /// One node against a 3-node cluster: aggregate throughput and origin
    /// bytes of the same workload (writes cluster.json and cluster.md).
    Cluster {
        /// Files in the data set.
        #[arg(long)]
        files: Option<usize>,
        /// Size of each file, in MiB.
        #[arg(long)]
        file_mb: Option<u64>,
        /// Requests per pass.
        #[arg(long)]
        requests: Option<usize>,
        /// Memory tier of each node, in MiB [default: 192, quick 24].
        #[arg(long)]
        node_memory_mib: Option<u64>,
    },
    /// TPC-H Q1, Q6 and Q14 through DataFusion over QuiverTable (warm),
    /// against DataFusion reading the files over S3 (writes tpch.json and
    /// tpch.md).
    Tpch {
        /// TPC-H scale factor [default: 1, quick 0.05].
        #[arg(long)]
        scale: Option<f64>,
        /// Timed runs of each query in each mode [default: 5, quick 1].
        #[arg(long)]
        runs: Option<usize>,
    },
    /// A cold object at 1% selectivity: DataFusion direct over S3, Quiver
    /// read-through and Quiver pre-signed, then warm after background
    /// warming (writes presign.json and presign.md).
    Presign {
        /// Size of the object, in MiB [default: 100, quick 16].
        #[arg(long)]
        file_mb: Option<u64>,
        /// Interleaved runs of each mode [default: 5, quick 1].
        #[arg(long)]
        runs: Option<usize>,
    },
    /// Many clients on one node, three in four on cached files: throughput,
    /// p50/p99, errors by code and peak RSS at each level (writes load.json
    /// and load.md).
    Load {
        /// Clients in flight at each level [default: 64,256].
        #[arg(long, value_delimiter = ',')]
        clients: Vec<usize>,
        /// Requests per level [default: 2048, quick 512].
        #[arg(long)]
        requests: Option<usize>,
        /// Size of each file, in MiB [default: 16, quick 2].
        #[arg(long)]
        file_mb: Option<u64>,
        /// Memory tier of the node, in MiB [default: 256, quick 64].
        #[arg(long)]
        node_memory_mib: Option<u64>,
        /// The node's `limits.max_concurrent_scans` [default: the node's
        /// default, 8].
        #[arg(long)]
        max_scans: Option<usize>,
    },
    /// One access trace through every eviction policy at several cache
    /// sizes (miss-ratio curves), and an A/B split of its clients between
    /// two policies (writes policies.json, policies.md and a PNG per trace).
    Policies {
        /// Traces: zipf, istziio, or JSON-lines files of
        /// {"client", "object", "size", "start", "end"}, such as a node's
        /// cache.access_log [default: zipf,istziio].
        #[arg(long, value_delimiter = ',')]
        trace: Vec<workloads::policies::TraceSource>,
        /// Requests of the zipf trace [default: 20000, quick 2000].
        #[arg(long)]
        requests: Option<usize>,
        /// Objects of the zipf trace [default: 400, quick 100].
        #[arg(long)]
        objects: Option<usize>,
        /// Zipf skew of the zipf trace.
        #[arg(long, default_value_t = 0.9)]
        skew: f64,
        /// Share of the zipf trace's requests that scan a random object once.
        #[arg(long, default_value_t = 0.1)]
        scan_share: f64,
        /// Chunk size, in MiB (the node's `cache.chunk`).
        #[arg(long, default_value_t = 1)]
        chunk_mib: u64,
        /// Cache sizes, as percentages of each trace's footprint
        /// [default: 1,2.5,5,10,20,40; quick 2.5,10,40].
        #[arg(long, value_delimiter = ',')]
        sizes: Vec<f64>,
        /// The A/B pair, `control,treatment` (or `none`).
        #[arg(long, default_value = "lru,s3fifo")]
        ab: String,
        /// Percentage of clients in the A/B control cohort.
        #[arg(long, default_value_t = 80)]
        split: u32,
        /// Size of the A/B caches together, as a percentage of the footprint.
        #[arg(long, default_value_t = 10.0)]
        ab_size: f64,
        /// Also serve the A/B live: two quiver-server processes, one per
        /// cohort, answering a zipf trace of real Parquet objects over
        /// Flight through the emulated link.
        #[arg(long)]
        live: bool,
        /// Objects of the live A/B's zipf trace [default: 40, quick 12].
        #[arg(long)]
        live_objects: Option<usize>,
        /// Requests of the live A/B's zipf trace [default: 1500, quick 300].
        #[arg(long)]
        live_requests: Option<usize>,
    },
    /// Warm hits from the hot tier against DataFusion in-process on the
    /// same local file: a 1% filter and full-scan GB/s with 1 and 2 clients
    /// (writes hot.json and hot.md).
    Hot {
        /// Rows of the file [default: 2000000, quick 200000].
        #[arg(long)]
        rows: Option<usize>,
        /// Row groups of the file.
        #[arg(long, default_value_t = 16)]
        row_groups: usize,
        /// Interleaved timed runs of each measure [default: 9, quick 3].
        #[arg(long)]
        runs: Option<usize>,
        /// Fraction of rows the filter selects.
        #[arg(long, default_value_t = 0.01)]
        selectivity: f64,
        /// The node's hot tier, in MiB.
        #[arg(long, default_value_t = 2048)]
        hot_mib: u64,
    },
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
        /// Further S3 link latencies to compare DataFusion and warm Quiver
        /// at, in milliseconds; `none` for only --latency-ms.
        #[arg(long, value_delimiter = ',', default_value = "5,15,30")]
        sweep_ms: Vec<String>,
    },
}

/// The smallest hot tier a node accepts (`cache.hot`), in MiB.
const MIN_HOT_MIB: u64 = 64;

/// A rig of the flags' S3 and nodes, or of one local node.
fn one_node(
    cli: &Cli,
    link: Option<quiver_testkit::link::LinkConfig>,
    server_bin: std::path::PathBuf,
    sql_tables: Vec<(String, String)>,
) -> Result<RigOptions, BoxError> {
    Ok(RigOptions {
        link,
        client_link: client_link(cli),
        server_bin,
        nodes: cli.nodes.clone(),
        s3: cli.s3.clone(),
        source: cli.source.clone(),
        memory_mib: cli.cache_memory_mib,
        disk_mib: cli.cache_disk_mib,
        hot_mib: None,
        local_nodes: 1,
        max_scans: BENCH_MAX_SCANS,
        sql_tables,
        connector: connector(cli)?,
    })
}

/// The emulated hop from clients to local nodes, when `--client-latency-ms`
/// or `--client-bandwidth-mb-s` asks for one.
fn client_link(cli: &Cli) -> Option<quiver_testkit::link::LinkConfig> {
    (cli.client_latency_ms > 0 || cli.client_bandwidth_mb_s > 0).then(|| {
        quiver_testkit::link::LinkConfig {
            latency: Duration::from_millis(cli.client_latency_ms),
            bandwidth: cli.client_bandwidth_mb_s * 1_000_000,
        }
    })
}

/// TLS trust and credentials for `--nodes`, from `--tls-ca` and
/// `--token-file`.
fn connector(cli: &Cli) -> Result<quiver_client::Connector, BoxError> {
    let credentials = match &cli.token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --token-file {}: {e}", path.display()))?;
            let token = token.trim();
            if token.is_empty() {
                return Err(format!("--token-file {} is empty", path.display()).into());
            }
            quiver_client::Credentials::Bearer(token.to_string())
        }
        None => quiver_client::Credentials::None,
    };
    Ok(quiver_client::Connector {
        tls: quiver_client::Tls {
            ca_file: cli.tls_ca.clone(),
        },
        credentials,
    })
}

/// Prints a workload's Markdown and writes `NAME.json` and `NAME.md`.
fn write_report<T: serde::Serialize>(
    out: &std::path::Path,
    name: &str,
    report: &T,
    md: String,
) -> Result<(), BoxError> {
    println!("{md}");
    std::fs::write(
        out.join(format!("{name}.json")),
        serde_json::to_vec_pretty(report)?,
    )?;
    std::fs::write(out.join(format!("{name}.md")), md)?;
    Ok(())
}

/// The link a report's numbers were measured over, in words.
fn describe_link(link: Option<quiver_testkit::link::LinkConfig>, s3: Option<&str>) -> String {
    match (link, s3) {
        (Some(l), _) => format!(
            "emulated S3 link: {} ms first byte, {} MB/s per connection",
            l.latency.as_millis(),
            l.bandwidth / 1_000_000
        ),
        (None, Some(s3)) => format!("S3 at {s3}"),
        (None, None) => "loopback S3 without emulation".into(),
    }
}

/// Runs the workload; a failure is printed as one readable line (a gRPC
/// status as its code and message, not its debug form) with exit code 1.
#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
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

async fn run() -> Result<(), BoxError> {
    let mut cli = Cli::parse();
    if let Some(Workload::ServeLink {
        s3_dir,
        bucket,
        upstream,
        link,
    }) = &cli.workload
    {
        return origin::serve(s3_dir.as_deref(), bucket, *upstream, link).await;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = format!(
        "cargo build --release -p quiver-server -p quiver-bench && target/release/quiver-bench {}",
        args.join(" ")
    )
    .trim_end()
    .to_string();
    let link = (!cli.no_emulation && cli.s3.is_none()).then(|| quiver_testkit::link::LinkConfig {
        latency: Duration::from_millis(cli.latency_ms),
        bandwidth: cli.bandwidth_mb_s * 1_000_000,
    });
    let server_bin = cli
        .server_bin
        .clone()
        .unwrap_or_else(server::default_binary);
    std::fs::create_dir_all(&cli.out)?;
    let workload = cli
        .workload
        .take()
        .unwrap_or(Workload::All(SuiteArgs::default()));
    let (trace, pushdown) = match workload {
        Workload::ServeLink { .. } => return Err("serve-link is started by the benchmark".into()),
        Workload::All(s) => (true, Some(s)),
        Workload::Trace => (true, None),
        Workload::Pushdown(s) => (false, Some(s)),
        Workload::Cluster {
            files,
            file_mb,
            requests,
            node_memory_mib,
        } => {
            if !cli.nodes.is_empty() || cli.s3.is_some() {
                return Err(
                    "the cluster workload starts its own nodes; it takes no --nodes or --s3".into(),
                );
            }
            let defaults = if cli.quick {
                ClusterArgs::quick()
            } else {
                ClusterArgs::full()
            };
            let args = ClusterArgs {
                files: files.unwrap_or(defaults.files),
                file_mb: file_mb.unwrap_or(defaults.file_mb),
                requests: requests.unwrap_or(defaults.requests),
                ..defaults
            };
            let memory_mib = node_memory_mib.unwrap_or(if cli.quick { 24 } else { 192 });
            let opts = RigOptions {
                link,
                client_link: client_link(&cli),
                server_bin,
                nodes: Vec::new(),
                s3: None,
                source: cli.source.clone(),
                memory_mib,
                disk_mib: 0,
                // As large as the memory tier, so the data set stays larger
                // than one node's tiers and smaller than three nodes'; off
                // below the tier's smallest size.
                hot_mib: Some(if memory_mib >= MIN_HOT_MIB {
                    memory_mib
                } else {
                    0
                }),
                local_nodes: 1,
                max_scans: BENCH_MAX_SCANS,
                sql_tables: Vec::new(),
                connector: quiver_client::Connector::default(),
            };
            let report = workloads::cluster::run(&opts, &args, command).await?;
            let md = report.markdown();
            println!("{md}");
            std::fs::write(
                cli.out.join("cluster.json"),
                serde_json::to_vec_pretty(&report)?,
            )?;
            std::fs::write(cli.out.join("cluster.md"), md)?;
            return Ok(());
        }
        Workload::Tpch { scale, runs } => {
            let args = workloads::tpch::TpchArgs {
                scale: scale.unwrap_or(if cli.quick { 0.05 } else { 1.0 }),
                runs: runs.unwrap_or(if cli.quick { 1 } else { 5 }),
            };
            let rig = Rig::start(&one_node(
                &cli,
                link,
                server_bin,
                workloads::tpch::sql_tables(),
            )?)
            .await?;
            let result = workloads::tpch::run(&rig, &args, command).await;
            rig.stop().await?;
            let mut report = result?;
            report.link = describe_link(link, cli.s3.as_deref());
            return write_report(&cli.out, "tpch", &report, report.markdown());
        }
        Workload::Load {
            clients,
            requests,
            file_mb,
            node_memory_mib,
            max_scans,
        } => {
            if !cli.nodes.is_empty() || cli.s3.is_some() {
                return Err(
                    "the load workload starts its own node; it takes no --nodes or --s3".into(),
                );
            }
            let defaults = if cli.quick {
                workloads::load::LoadArgs::quick()
            } else {
                workloads::load::LoadArgs::full()
            };
            let args = workloads::load::LoadArgs {
                levels: if clients.is_empty() {
                    defaults.levels.clone()
                } else {
                    clients
                },
                requests: requests.unwrap_or(defaults.requests),
                file_mb: file_mb.unwrap_or(defaults.file_mb),
                memory_mib: node_memory_mib.unwrap_or(defaults.memory_mib),
                max_scans: max_scans.unwrap_or(defaults.max_scans),
                ..defaults
            };
            let opts = RigOptions {
                memory_mib: args.memory_mib,
                disk_mib: 0,
                max_scans: args.max_scans,
                ..one_node(&cli, link, server_bin, Vec::new())?
            };
            let rig = Rig::start(&opts).await?;
            let result = workloads::load::run(&rig, &args, command).await;
            rig.stop().await?;
            let mut report = result?;
            report.link = describe_link(link, None);
            return write_report(&cli.out, "load", &report, report.markdown());
        }
        Workload::Policies {
            trace,
            requests,
            objects,
            skew,
            scan_share,
            chunk_mib,
            sizes,
            ab,
            split,
            ab_size,
            live,
            live_objects,
            live_requests,
        } => {
            let defaults = if cli.quick {
                workloads::policies::PoliciesArgs::quick()
            } else {
                workloads::policies::PoliciesArgs::full()
            };
            let ab = match ab.as_str() {
                "none" => None,
                pair => {
                    let (a, b) = pair
                        .split_once(',')
                        .ok_or("--ab takes two policies, `control,treatment`, or `none`")?;
                    Some((a.parse()?, b.parse()?))
                }
            };
            let args = workloads::policies::PoliciesArgs {
                traces: if trace.is_empty() {
                    defaults.traces.clone()
                } else {
                    trace
                },
                requests: requests.unwrap_or(defaults.requests),
                objects: objects.unwrap_or(defaults.objects).max(1),
                skew,
                scan_share,
                chunk: chunk_mib << 20,
                sizes_pct: if sizes.is_empty() {
                    defaults.sizes_pct.clone()
                } else {
                    sizes
                },
                ab,
                split_pct: split,
                ab_size_pct: ab_size,
                latency_ms: cli.latency_ms as f64,
                bandwidth_mb_s: cli.bandwidth_mb_s.max(1) as f64,
                ..defaults
            };
            if live && (!cli.nodes.is_empty() || cli.s3.is_some()) {
                return Err(
                    "the live A/B starts its own nodes; it takes no --nodes or --s3".into(),
                );
            }
            let mut report = workloads::policies::run(&args, command)?;
            if live {
                let link = quiver_testkit::link::LinkConfig {
                    latency: Duration::from_millis(cli.latency_ms),
                    bandwidth: cli.bandwidth_mb_s.max(1) * 1_000_000,
                };
                let live = workloads::ab_live::LiveArgs {
                    trace: workloads::policies::PoliciesArgs {
                        objects: live_objects
                            .unwrap_or(if cli.quick { 12 } else { 40 })
                            .max(1),
                        requests: live_requests.unwrap_or(if cli.quick { 300 } else { 1500 }),
                        ..args
                    },
                    server_bin,
                };
                report.live = Some(workloads::ab_live::run(&live, link).await?);
            }
            workloads::policies::plot(&cli.out, &report)?;
            return write_report(&cli.out, "policies", &report, report.markdown());
        }
        Workload::Presign { file_mb, runs } => {
            let args = workloads::presign::PresignArgs {
                file_mb: file_mb.unwrap_or(if cli.quick { 16 } else { 100 }),
                runs: runs.unwrap_or(if cli.quick { 1 } else { 5 }),
            };
            let rig = Rig::start(&one_node(&cli, link, server_bin, Vec::new())?).await?;
            let result = workloads::presign::run(&rig, &args, command).await;
            rig.stop().await?;
            let mut report = result?;
            report.link = describe_link(link, cli.s3.as_deref());
            return write_report(&cli.out, "presign", &report, report.markdown());
        }
        Workload::Hot {
            rows,
            row_groups,
            runs,
            selectivity,
            hot_mib,
        } => {
            if !cli.nodes.is_empty() || cli.s3.is_some() {
                return Err(
                    "the hot workload starts its own node; it takes no --nodes or --s3".into(),
                );
            }
            if !(selectivity > 0.0 && selectivity <= 1.0) {
                return Err("--selectivity must be in (0, 1]".into());
            }
            let args = workloads::hot::HotArgs {
                rows: rows.unwrap_or(if cli.quick { 200_000 } else { 2_000_000 }),
                row_groups,
                runs: runs.unwrap_or(if cli.quick { 3 } else { 9 }),
                selectivity,
                hot_mib,
                server_bin,
            };
            if args.rows == 0 || args.row_groups == 0 || args.runs == 0 || args.hot_mib < 64 {
                return Err(
                    "--rows, --row-groups and --runs must be at least 1, --hot-mib at least 64"
                        .into(),
                );
            }
            let report = workloads::hot::run(&args, command).await?;
            return write_report(&cli.out, "hot", &report, report.markdown());
        }
        Workload::Node {
            file_mb,
            files,
            clients,
            runs,
            selectivity,
            memory_mib,
            sweep_ms,
        } => {
            if !cli.nodes.is_empty() || cli.s3.is_some() {
                return Err(
                    "the node workload starts its own node; it takes no --nodes or --s3".into(),
                );
            }
            let sweep_ms = match sweep_ms.as_slice() {
                [none] if none == "none" => Vec::new(),
                list => list
                    .iter()
                    .map(|ms| {
                        ms.trim()
                            .parse::<u64>()
                            .map_err(|e| format!("bad --sweep-ms entry {ms:?}: {e}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
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
                sweep_ms,
                client_link: client_link(&cli),
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
            return Ok(());
        }
    };

    let rig = Rig::start(&RigOptions {
        link,
        client_link: client_link(&cli),
        server_bin,
        nodes: cli.nodes.clone(),
        s3: cli.s3.clone(),
        source: cli.source.clone(),
        memory_mib: cli.cache_memory_mib,
        disk_mib: cli.cache_disk_mib,
        hot_mib: None,
        local_nodes: 1,
        max_scans: BENCH_MAX_SCANS,
        sql_tables: Vec::new(),
        connector: connector(&cli)?,
    })
    .await?;
    let mut suite = Suite {
        command,
        quick: cli.quick,
        link: link.map(|l| LinkSummary {
            latency_ms: l.latency.as_millis() as u64,
            bandwidth_mb_s: l.bandwidth / 1_000_000,
        }),
        target: match &cli.s3 {
            Some(s3) => format!("{s3} served by {}", cli.nodes.join(", ")),
            None => "s3s-fs and one quiver-server process on this machine".into(),
        },
        setup: Vec::new(),
        measurements: Vec::new(),
    };
    let result = run_suite(&rig, &mut suite, cli.quick, trace, pushdown).await;
    rig.stop().await?;
    result?;
    measure::fill_speedups(&mut suite.measurements);
    write_suite(&cli.out, &suite)
}

async fn run_suite(
    rig: &Rig,
    suite: &mut Suite,
    quick: bool,
    trace: bool,
    pushdown: Option<SuiteArgs>,
) -> Result<(), BoxError> {
    if trace {
        let args = if quick {
            TraceArgs::quick()
        } else {
            TraceArgs::full()
        };
        suite.setup.push(args.describe());
        suite
            .measurements
            .extend(workloads::trace::run(rig, &args).await?);
    }
    if let Some(s) = pushdown {
        let args = PushdownArgs {
            scale: s.scale.unwrap_or(if quick { 0.05 } else { 1.0 }),
            runs: s.runs.unwrap_or(if quick { 1 } else { 3 }),
        };
        let (setup, measurements) = workloads::pushdown::run(rig, &args).await?;
        suite.setup.push(setup);
        suite.measurements.extend(measurements);
    }
    Ok(())
}

fn write_suite(out: &Path, suite: &Suite) -> Result<(), BoxError> {
    let plots = plot::suite(out, suite)?;
    let md = suite.markdown(&plots);
    println!("{md}");
    std::fs::write(out.join("results.json"), serde_json::to_vec_pretty(suite)?)?;
    std::fs::write(out.join("results.md"), md)?;
    Ok(())
}
