//! Many clients at once on a mixed warm and cold workload: how a node
//! behaves past its limits.
//!
//! Each level runs `requests` scans with that many in flight. Three in four
//! read a file that is already cached, one in four a file of a larger cold
//! set read from S3 through the emulated link. The report gives throughput,
//! latency of the answered requests, every error by code, and the node's
//! peak RSS against its tiers: past `max_concurrent_scans` the only
//! acceptable error is ResourceExhausted, and memory must stay within the
//! memory tier and the hot tier plus 300 MiB. The hot tier is set to the
//! memory tier's size: at its 1 GiB default it would hold the whole data
//! set, and a target that left it out would be missed by a node that keeps
//! within every limit it was given.

use std::collections::BTreeMap;
use std::time::Instant;

use arrow_flight::error::FlightError;
use arrow_flight::Ticket;
use bytes::Bytes;
use futures::StreamExt;
use quiver_protocol::ScanRequest;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::common::Common;
use crate::data;
use crate::error::BoxError;
use crate::measure::{self, Latency};
use crate::readers::{self, Pred};
use crate::report::{self, describe_link};
use crate::rig::Rig;
use crate::server::MIN_HOT_MIB;

/// The node's default `limits.max_concurrent_scans`, which this workload
/// keeps unless told otherwise, so that its larger levels meet it.
pub const NODE_MAX_SCANS: usize = 8;

/// Memory a node may use beyond its memory and hot tiers under load.
pub const RSS_HEADROOM: u64 = 300 << 20;

/// The load workload's flags.
#[derive(clap::Args)]
pub struct LoadArgs {
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
    /// Hot tier of the node, in MiB; 0 for none, else at least 64
    /// [default: the memory tier's size, none below 64].
    #[arg(long)]
    node_hot_mib: Option<u64>,
    /// The node's `limits.max_concurrent_scans` [default: the node's
    /// default, 8].
    #[arg(long)]
    max_scans: Option<usize>,
}

impl LoadArgs {
    /// The flags, or the defaults of a full or `quick` run.
    fn settings(self, quick: bool) -> Result<LoadSettings, BoxError> {
        let defaults = if quick {
            LoadSettings::quick()
        } else {
            LoadSettings::full()
        };
        let memory_mib = self.node_memory_mib.unwrap_or(defaults.memory_mib);
        let hot_mib = match self.node_hot_mib {
            Some(mib) if mib > 0 && mib < MIN_HOT_MIB => {
                return Err(format!(
                "--node-hot-mib is {mib}: the hot tier is 0 (none) or at least {MIN_HOT_MIB} MiB"
            )
                .into())
            }
            Some(mib) => mib,
            // As large as the memory tier; none below the tier's smallest
            // size.
            None if memory_mib >= MIN_HOT_MIB => memory_mib,
            None => 0,
        };
        Ok(LoadSettings {
            levels: if self.clients.is_empty() {
                defaults.levels.clone()
            } else {
                self.clients
            },
            requests: self.requests.unwrap_or(defaults.requests),
            file_mb: self.file_mb.unwrap_or(defaults.file_mb),
            memory_mib,
            hot_mib,
            max_scans: self.max_scans.unwrap_or(defaults.max_scans),
            ..defaults
        })
    }
}

/// Runs the workload on a node of its own behind the flags' link, with
/// the node's scan limit and no disk tier, and writes `load.json` and
/// `load.md`.
pub async fn main(common: &Common, args: LoadArgs, command: String) -> Result<(), BoxError> {
    common.no_remote_nodes("the load workload starts its own node")?;
    let settings = args.settings(common.quick)?;
    let opts = common
        .rig_options()?
        .memory_mib(settings.memory_mib)
        .hot_mib(settings.hot_mib)
        .disk_mib(0)
        .max_scans(settings.max_scans);
    let rig = Rig::start(&opts).await?;
    let result = run(&rig, &settings, command).await;
    rig.stop().await?;
    let mut report = result?;
    report.link = describe_link(common.link(), None);
    report::write(&common.out, "load", &report, report.markdown())
}

#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub levels: Vec<usize>,
    pub requests: usize,
    pub warm_files: usize,
    pub cold_files: usize,
    pub file_mb: u64,
    pub memory_mib: u64,
    pub hot_mib: u64,
    /// The node's scan limit.
    pub max_scans: usize,
}

impl LoadSettings {
    pub fn full() -> LoadSettings {
        LoadSettings {
            levels: vec![64, 256],
            requests: 2048,
            warm_files: 8,
            cold_files: 24,
            file_mb: 16,
            memory_mib: 256,
            hot_mib: 256,
            max_scans: NODE_MAX_SCANS,
        }
    }

    pub fn quick() -> LoadSettings {
        LoadSettings {
            levels: vec![64, 256],
            requests: 512,
            warm_files: 4,
            cold_files: 8,
            file_mb: 2,
            memory_mib: 64,
            hot_mib: 64,
            max_scans: NODE_MAX_SCANS,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub command: String,
    pub link: String,
    pub setup: String,
    pub memory_tier_bytes: u64,
    pub hot_tier_bytes: u64,
    pub max_scans: usize,
    pub levels: Vec<LoadLevel>,
}

#[derive(Debug, Serialize)]
pub struct LoadLevel {
    pub clients: usize,
    pub requests: usize,
    pub answered: usize,
    pub wall_s: f64,
    pub answered_per_s: f64,
    pub mb_per_s_to_clients: f64,
    pub latency_ms: Latency,
    /// gRPC code name to count; empty when every request was answered.
    pub errors: BTreeMap<String, usize>,
    pub peak_rss_bytes: Option<u64>,
    pub within_memory_target: Option<bool>,
}

fn name(cold: bool, i: usize) -> String {
    format!("load/{}{i:03}.parquet", if cold { "cold" } else { "warm" })
}

/// One file with all columns and a 10% filter: enough rows to move data,
/// few enough that the node, not the client, does the work.
fn request(rig: &Rig, name: &str) -> ScanRequest {
    ScanRequest {
        source: Some(rig.source().to_string()),
        path: Some(rig.quiver_path(name)),
        filter: Some(Pred::float_below("c0", 0.1).sql()),
        ..Default::default()
    }
}

async fn scan(rig: &Rig, name: &str) -> Result<readers::Reply, String> {
    let mut client = rig.client_for(name);
    let code = |e: FlightError| match e {
        FlightError::Tonic(s) => format!("{:?}", s.code()),
        other => format!("client: {other}"),
    };
    let stream = client
        .do_get(Ticket::new(request(rig, name).to_bytes()))
        .await
        .map_err(code)?;
    readers::drain(stream).await.map_err(code)
}

pub async fn run(rig: &Rig, args: &LoadSettings, command: String) -> Result<LoadReport, BoxError> {
    if args.levels.is_empty() || args.levels.contains(&0) || args.requests == 0 {
        return Err("--clients levels and --requests must be at least 1".into());
    }
    if args.warm_files == 0 || args.cold_files == 0 || args.file_mb == 0 {
        return Err("--warm-files, --cold-files and --file-mb must be at least 1".into());
    }
    let staging = tempfile::tempdir()?;
    let files: Vec<String> = (0..args.warm_files)
        .map(|i| name(false, i))
        .chain((0..args.cold_files).map(|i| name(true, i)))
        .collect();
    let total = files.len() as u64 * (args.file_mb << 20);
    let bar = data::bytes_bar(total, "load data");
    for (i, f) in files.iter().enumerate() {
        let path = staging.path().join(f.replace('/', "_"));
        tokio::task::block_in_place(|| {
            data::random_floats(&path, args.file_mb << 20, 300 + i as u64, &bar)
        })?;
        rig.upload(f, Bytes::from(std::fs::read(&path)?)).await?;
    }
    bar.finish_and_clear();
    let mut levels = Vec::new();
    for &clients in &args.levels {
        // Every level starts from the same state: the warm set cached, the
        // cold set not.
        rig.evict_all().await?;
        for i in 0..args.warm_files {
            scan(rig, &name(false, i))
                .await
                .map_err(|e| format!("warming {}: {e}", name(false, i)))?;
        }
        let mut rng = StdRng::seed_from_u64(clients as u64);
        let names: Vec<String> = (0..args.requests)
            .map(|_| {
                if rng.random_bool(0.75) {
                    name(false, rng.random_range(0..args.warm_files))
                } else {
                    name(true, rng.random_range(0..args.cold_files))
                }
            })
            .collect();
        let progress = measure::bar(names.len() as u64, format!("load: {clients} clients"));
        rig.reset_peak_rss();
        let started = Instant::now();
        let outcomes: Vec<(f64, Result<readers::Reply, String>)> =
            futures::stream::iter(names.iter().map(|n| {
                let progress = progress.clone();
                async move {
                    let t = Instant::now();
                    let outcome = scan(rig, n).await;
                    progress.inc(1);
                    (t.elapsed().as_secs_f64() * 1000.0, outcome)
                }
            }))
            .buffer_unordered(clients)
            .collect()
            .await;
        let wall_s = started.elapsed().as_secs_f64();
        progress.finish_and_clear();
        let mut errors = BTreeMap::new();
        let mut latencies = Vec::new();
        let mut bytes = 0;
        for (ms, outcome) in &outcomes {
            match outcome {
                Ok(reply) => {
                    latencies.push(*ms);
                    bytes += reply.arrow_bytes;
                }
                Err(code) => *errors.entry(code.clone()).or_insert(0) += 1,
            }
        }
        let peak = rig.peak_rss();
        let target = args
            .memory_mib
            .saturating_add(args.hot_mib)
            .saturating_mul(1 << 20)
            .saturating_add(RSS_HEADROOM);
        levels.push(LoadLevel {
            clients,
            requests: names.len(),
            answered: latencies.len(),
            wall_s,
            answered_per_s: latencies.len() as f64 / wall_s,
            mb_per_s_to_clients: bytes as f64 / 1e6 / wall_s,
            latency_ms: if latencies.is_empty() {
                Latency::default()
            } else {
                Latency::of(&latencies)
            },
            errors,
            peak_rss_bytes: peak,
            within_memory_target: peak.map(|p| p <= target),
        });
    }
    Ok(LoadReport {
        command,
        link: String::new(),
        setup: format!(
            "{} warm and {} cold files of {} MiB (16 float64 columns); {} requests per level, 3 in 4 on the warm set, \
             each one file with all columns and `c0 < 0.1`; one node with {} MiB of memory, {} MiB of hot tier, no disk \
             tier and a limit of {} scans at once",
            args.warm_files, args.cold_files, args.file_mb, args.requests, args.memory_mib, args.hot_mib, args.max_scans
        ),
        memory_tier_bytes: args.memory_mib << 20,
        hot_tier_bytes: args.hot_mib << 20,
        max_scans: args.max_scans,
        levels,
    })
}

impl LoadReport {
    pub fn markdown(&self) -> String {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let mut md = format!(
            "### Load: many clients on one node\n\n{}; {}.\n\n\
             | clients | answered | answered/s | MB/s to clients | p50 ms | p99 ms | errors by code | peak RSS MiB | within tiers + 300 MiB |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |\n",
            self.setup, self.link
        );
        for l in &self.levels {
            let errors = if l.errors.is_empty() {
                "none".to_string()
            } else {
                l.errors
                    .iter()
                    .map(|(c, n)| format!("{c}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            md.push_str(&format!(
                "| {} | {}/{} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} |\n",
                l.clients,
                l.answered,
                l.requests,
                l.answered_per_s,
                l.mb_per_s_to_clients,
                l.latency_ms.p50,
                l.latency_ms.p99,
                errors,
                l.peak_rss_bytes
                    .map(|b| format!("{:.0}", mib(b)))
                    .unwrap_or_else(|| "–".into()),
                match l.within_memory_target {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "–",
                },
            ));
        }
        md.push_str(&format!(
            "\nMemory tier: {:.0} MiB; hot tier: {:.0} MiB.\n\nReproduce: `{}`\n",
            mib(self.memory_tier_bytes),
            mib(self.hot_tier_bytes),
            self.command
        ));
        md
    }
}
