//! One node against three: the same workload replayed against a single
//! node and a 3-node cluster, reporting aggregate throughput and the bytes
//! each took from S3.
//!
//! The data is sized to exceed one node's memory tier but fit in three, so
//! the cluster's added capacity shows as origin bytes: the single node
//! re-reads what it evicted, the cluster reads each object once. (On this
//! 2-core machine all nodes share the same CPUs, so throughput cannot grow
//! with the node count here; on the EC2 rig each node brings its own.)

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::common::Common;
use crate::data;
use crate::error::BoxError;
use crate::measure::{self, Measurement};
use crate::readers::{Mode, Pred, Query, Readers};
use crate::report;
use crate::rig::{Rig, RigOptions};
use crate::server::MIN_HOT_MIB;

/// The cluster workload's flags.
#[derive(clap::Args)]
pub struct ClusterArgs {
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
}

impl ClusterArgs {
    /// The flags, or the defaults of a full or `quick` run.
    fn settings(&self, quick: bool) -> ClusterSettings {
        let defaults = if quick {
            ClusterSettings::quick()
        } else {
            ClusterSettings::full()
        };
        let memory_mib = self.node_memory_mib.unwrap_or(defaults.memory_mib);
        ClusterSettings {
            files: self.files.unwrap_or(defaults.files),
            file_mb: self.file_mb.unwrap_or(defaults.file_mb),
            requests: self.requests.unwrap_or(defaults.requests),
            memory_mib,
            // As large as the memory tier, so the data set stays larger
            // than one node's tiers and smaller than three nodes'; off
            // below the tier's smallest size.
            hot_mib: if memory_mib >= MIN_HOT_MIB {
                memory_mib
            } else {
                0
            },
            ..defaults
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub files: usize,
    pub file_mb: u64,
    pub requests: usize,
    pub concurrency: usize,
    pub seed: u64,
    /// Each node's memory tier, in MiB.
    pub memory_mib: u64,
    /// Each node's hot tier, in MiB; 0 for none.
    pub hot_mib: u64,
}

impl ClusterSettings {
    pub fn full() -> ClusterSettings {
        ClusterSettings {
            files: 8,
            file_mb: 64,
            requests: 96,
            concurrency: 4,
            seed: 5,
            memory_mib: 192,
            hot_mib: 192,
        }
    }

    pub fn quick() -> ClusterSettings {
        ClusterSettings {
            files: 6,
            file_mb: 8,
            requests: 24,
            memory_mib: 24,
            hot_mib: 0,
            ..ClusterSettings::full()
        }
    }
}

/// Runs the workload on nodes of its own behind the flags' links and
/// writes `cluster.json` and `cluster.md`.
pub async fn main(common: &Common, args: ClusterArgs, command: String) -> Result<(), BoxError> {
    common.no_remote_nodes("the cluster workload starts its own nodes")?;
    let settings = args.settings(common.quick);
    let opts = RigOptions::default()
        .link(common.link())
        .client_link(common.client_link())
        .server_bin(common.server_bin())
        .source(common.source.clone())
        .memory_mib(settings.memory_mib)
        .disk_mib(0)
        .hot_mib(settings.hot_mib);
    let report = run(&opts, &settings, command).await?;
    report::write(&common.out, "cluster", &report, report.markdown())
}

#[derive(Debug, Serialize)]
pub struct ClusterReport {
    pub command: String,
    pub setup: String,
    pub memory_mib_per_node: u64,
    /// 0: no hot tier.
    pub hot_mib_per_node: u64,
    pub data_bytes: u64,
    pub runs: Vec<ClusterRun>,
}

#[derive(Debug, Serialize)]
pub struct ClusterRun {
    pub nodes: usize,
    pub pass: Measurement,
}

fn name(i: usize) -> String {
    format!("cluster/f{i}.parquet")
}

/// Every file read with all columns and a 5% filter on `c0`: the nodes read
/// (and cache) nearly every page, the client receives 5% of the rows.
fn queries(args: &ClusterSettings) -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    (0..args.requests)
        .map(|_| Query {
            name: name(rng.random_range(0..args.files)),
            columns: None,
            filter: Some(Pred::float_below("c0", 0.05)),
        })
        .collect()
}

pub async fn run(
    opts: &RigOptions,
    args: &ClusterSettings,
    command: String,
) -> Result<ClusterReport, BoxError> {
    if args.files == 0 || args.file_mb == 0 || args.requests == 0 || args.concurrency == 0 {
        return Err("--files, --file-mb, --requests and --concurrency must be at least 1".into());
    }
    let staging = tempfile::tempdir()?;
    let total = (args.files as u64 * args.file_mb) << 20;
    let bar = data::bytes_bar(total, "cluster data");
    for i in 0..args.files {
        let path = staging.path().join(name(i));
        tokio::task::block_in_place(|| {
            data::random_floats(&path, args.file_mb << 20, 100 + i as u64, &bar)
        })?;
    }
    bar.finish_and_clear();
    let queries = queries(args);
    let mut runs = Vec::new();
    for nodes in [1, 3] {
        let rig = Rig::start(&opts.clone().local_nodes(nodes)).await?;
        for i in 0..args.files {
            let bytes = std::fs::read(staging.path().join(name(i)))?;
            rig.upload(&name(i), Bytes::from(bytes)).await?;
        }
        let readers = Readers::new(&rig);
        // A first pass fills the caches; the second is the steady state
        // this benchmark is about.
        let case = format!("{nodes} node(s)");
        measure::run(
            &readers,
            "cluster",
            &case,
            Mode::QuiverCold,
            &queries,
            args.concurrency,
        )
        .await?;
        let (pass, _) = measure::run(
            &readers,
            "cluster",
            &case,
            Mode::QuiverWarm,
            &queries,
            args.concurrency,
        )
        .await?;
        runs.push(ClusterRun { nodes, pass });
        rig.stop().await?;
    }
    Ok(ClusterReport {
        command,
        setup: format!(
            "{} files of {} MiB (16 float64 columns) in s3s-fs behind the emulated link; {} requests, {} in flight, \
             each reading one file with all columns and `c0 < 0.05`; nodes have {} MiB of memory, {} and no disk tier",
            args.files, args.file_mb, args.requests, args.concurrency, args.memory_mib, hot(args.hot_mib)
        ),
        memory_mib_per_node: args.memory_mib,
        hot_mib_per_node: args.hot_mib,
        data_bytes: total,
        runs,
    })
}

/// A node's hot tier, in words.
fn hot(mib: u64) -> String {
    match mib {
        0 => "no hot tier".into(),
        m => format!("a hot tier of {m} MiB"),
    }
}

impl ClusterReport {
    pub fn markdown(&self) -> String {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let mut md = format!(
            "### One node against three\n\n{}. The table is the second pass over the same requests (the first fills the caches).\n\n\
             | nodes | aggregate req/s | aggregate MB/s to clients | hit ratio | origin MiB | S3 requests | p50 ms | p99 ms | largest node peak RSS MiB |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
            self.setup
        );
        for r in &self.runs {
            let m = &r.pass;
            md.push_str(&format!(
                "| {} | {:.1} | {:.1} | {} | {:.1} | {} | {:.1} | {:.1} | {} |\n",
                r.nodes,
                m.requests_per_s,
                m.bytes_to_client as f64 / 1e6 / m.wall_s,
                m.hit_ratio
                    .map(|h| format!("{:.1}%", h * 100.0))
                    .unwrap_or_else(|| "–".into()),
                mib(m.origin_bytes),
                m.s3_requests,
                m.latency_ms.p50,
                m.latency_ms.p99,
                m.peak_rss_bytes
                    .map(|b| format!("{:.0}", mib(b)))
                    .unwrap_or_else(|| "–".into()),
            ));
        }
        md.push_str(&format!(
            "\nData: {:.0} MiB in total, {} MiB of memory and {} per node.\n\nReproduce: `{}`\n",
            mib(self.data_bytes),
            self.memory_mib_per_node,
            hot(self.hot_mib_per_node),
            self.command
        ));
        md
    }
}
