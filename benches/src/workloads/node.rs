//! The single-node headline: one 100 MB Parquet file in a real S3-compatible
//! server behind an emulated S3 link, both in a process of their own.
//!
//! Measures, in one run: DataFusion reading the file directly over the link,
//! in its best configuration for that link, against Quiver warm for the same
//! 1%-selective filter on 2 of 16 columns, at the headline latency and over
//! a sweep of link latencies; Quiver cold; the bytes sent to the client as a
//! fraction of the file; and the node's peak RSS while many clients scan
//! whole files at once. Answers are compared by content before anything is
//! timed, and timed runs interleave.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::FlightClient;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use object_store::ObjectStoreExt;
use quiver_protocol::ScanRequest;
use quiver_testkit::link::LinkConfig;
use quiver_testkit::{ACCESS_KEY, SECRET_KEY};
use serde::Serialize;

use crate::baseline::{best_configuration, candidates, datafusion_rows, Candidate};
use crate::common::Common;
use crate::compare::Digest;
use crate::data;
use crate::error::BoxError;
use crate::flight::{connect, quiver_batches, stats};
use crate::origin::{s3_store, NetProcess, Upstream};
use crate::report;
use crate::server::{ensure_disk_room, ServerProcess, MIN_HOT_MIB};
use crate::timing::{median, ms};

const BUCKET: &str = "bench";
const MIB: u64 = 1 << 20;

/// The node workload's flags.
#[derive(clap::Args)]
pub struct NodeArgs {
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
}

impl NodeArgs {
    /// The flags with the links and binary of `common`; refuses values the
    /// workload cannot run with.
    fn settings(self, common: &Common) -> Result<NodeSettings, BoxError> {
        let sweep_ms = match self.sweep_ms.as_slice() {
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
        if !(self.selectivity > 0.0 && self.selectivity <= 1.0) {
            return Err("--selectivity must be in (0, 1]".into());
        }
        if self.files == 0 || self.clients == 0 || self.runs == 0 || self.file_mb == 0 {
            return Err("--files, --clients, --runs and --file-mb must be at least 1".into());
        }
        Ok(NodeSettings {
            file_mb: self.file_mb,
            files: self.files,
            clients: self.clients,
            runs: self.runs,
            selectivity: self.selectivity,
            memory_mib: self.memory_mib,
            disk_mib: common.disk_mib(),
            link: common.link(),
            sweep_ms,
            client_link: common.client_link(),
            server_bin: common.server_bin(),
        })
    }
}

/// Runs the workload on a node of its own and writes `node.json` and
/// `node.md`.
pub async fn main(common: &Common, args: NodeArgs, command: String) -> Result<(), BoxError> {
    common.no_remote_nodes("the node workload starts its own node")?;
    let settings = args.settings(common)?;
    let report = run(&settings).await?;
    report::write(&common.out, "node", &report, report.markdown(&command))
}

#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub file_mb: u64,
    pub files: usize,
    pub clients: usize,
    pub runs: usize,
    pub selectivity: f64,
    pub memory_mib: u64,
    /// The node's disk tier (`--cache-disk-mib`).
    pub disk_mib: u64,
    pub link: Option<LinkConfig>,
    /// Further S3 link latencies to compare at, in milliseconds.
    pub sweep_ms: Vec<u64>,
    /// The emulated hop from the benchmark's clients to the node.
    pub client_link: Option<LinkConfig>,
    pub server_bin: std::path::PathBuf,
}

/// DataFusion against warm Quiver over one S3 link.
#[derive(Debug, Serialize)]
pub struct SweepPoint {
    pub link_latency_ms: Option<u64>,
    /// The configuration DataFusion ran best with over this link.
    pub datafusion_best: Candidate,
    /// Each candidate's fastest trial run, in ms.
    pub datafusion_trials: Vec<(Candidate, f64)>,
    pub datafusion_direct_ms: Vec<f64>,
    /// Median DataFusion over median warm Quiver.
    pub speedup_warm_vs_datafusion: f64,
}

#[derive(Debug, Serialize)]
pub struct NodeReport {
    pub file_bytes: u64,
    pub rows_matched: usize,
    pub link_latency_ms: Option<u64>,
    pub link_bandwidth_mb_s: Option<u64>,
    pub client_link_latency_ms: Option<u64>,
    pub client_link_bandwidth_mb_s: Option<u64>,
    /// The headline link first, then the sweep's.
    pub sweep: Vec<SweepPoint>,
    pub quiver_cold_ms: f64,
    pub quiver_warm_ms: Vec<f64>,
    /// The headline link's speed-up of warm Quiver over DataFusion.
    pub speedup_warm_vs_datafusion: f64,
    pub bytes_to_client: u64,
    pub bytes_to_client_fraction: f64,
    pub concurrent_clients: usize,
    pub concurrent_files: usize,
    pub concurrent_seconds: f64,
    pub memory_tier_bytes: u64,
    /// The hot tier, as large as the memory tier.
    pub hot_tier_bytes: u64,
    pub peak_rss_bytes: u64,
    pub peak_rss_limit_bytes: u64,
}

fn key(i: usize) -> String {
    format!("random/f{i}.parquet")
}

async fn quiver_scan(client: &mut FlightClient, req: &ScanRequest) -> Result<usize, BoxError> {
    let batches = quiver_batches(client, req).await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

/// What a user who tunes DataFusion does without Quiver: one long-lived
/// session reading the object from S3 (its footer cache warm after the first
/// run), configured as `candidate` says.
async fn datafusion_session(
    endpoint: &str,
    candidate: Candidate,
) -> Result<SessionContext, BoxError> {
    let s3 = s3_store(endpoint, BUCKET)?;
    let ctx = SessionContext::new_with_config(candidate.config());
    ctx.register_object_store(&url::Url::parse(&format!("s3://{BUCKET}"))?, Arc::new(s3));
    ctx.register_parquet(
        "t",
        format!("s3://{BUCKET}/{}", key(0)),
        ParquetReadOptions::default(),
    )
    .await?;
    Ok(ctx)
}

pub async fn run(args: &NodeSettings) -> Result<NodeReport, BoxError> {
    let work = tempfile::tempdir()?;
    ensure_disk_room(work.path(), args.disk_mib.saturating_mul(MIB))?;
    // The headline link first, then the sweep's other latencies.
    let mut links: Vec<LinkConfig> = args.link.into_iter().collect();
    if let Some(headline) = args.link {
        for &ms in &args.sweep_ms {
            let latency = Duration::from_millis(ms);
            if links.iter().all(|l| l.latency != latency) {
                links.push(LinkConfig {
                    latency,
                    ..headline
                });
            }
        }
    }
    let origin = NetProcess::start(
        &Upstream::S3 {
            dir: work.path().join("s3"),
            buckets: vec![BUCKET.to_string()],
        },
        &links,
    )?;
    let raw = origin.s3_endpoint()?;
    // Each link's endpoint, or raw loopback when nothing is emulated.
    let endpoints: Vec<(Option<LinkConfig>, String)> = if links.is_empty() {
        vec![(None, raw.clone())]
    } else {
        links
            .iter()
            .zip(&origin.links)
            .map(|(cfg, addr)| (Some(*cfg), format!("http://{addr}")))
            .collect()
    };
    let endpoint = endpoints[0].1.clone();

    // Files are generated locally, then uploaded with PUT as a lake's would
    // be: s3s-fs then keeps their ETags instead of hashing the whole object
    // on every GET, which would slow every reader down.
    let file_bytes = args.file_mb * MIB;
    let staging = work.path().join("staging");
    let bar = data::bytes_bar(file_bytes * args.files as u64, "generating");
    for i in 0..args.files {
        let path = staging.join(format!("f{i}.parquet"));
        tokio::task::block_in_place(|| data::random_floats(&path, file_bytes, i as u64, &bar))?;
    }
    bar.finish_and_clear();
    let direct = s3_store(&raw, BUCKET)?;
    let bar = data::bytes_bar(file_bytes * args.files as u64, "uploading");
    for i in 0..args.files {
        let bytes = std::fs::read(staging.join(format!("f{i}.parquet")))?;
        bar.inc(bytes.len() as u64);
        direct
            .put(&object_store::path::Path::from(key(i)), bytes.into())
            .await?;
    }
    bar.finish_and_clear();
    let file_size = std::fs::metadata(staging.join("f0.parquet"))?.len();
    std::fs::remove_dir_all(&staging)?;

    let config = format!(
        "[cache]\nmemory = \"{}MiB\"\nhot = \"{}MiB\"\ndisk = \"{}MiB\"\ndisk_dir = \"{}\"\n\n\
         [[source]]\nname = \"{BUCKET}\"\nurl = \"s3://{BUCKET}/\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
         access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n\n\
         [limits]\nmax_concurrent_scans = {}\n",
        args.memory_mib,
        args.memory_mib.max(MIN_HOT_MIB),
        args.disk_mib,
        work.path().join("cache").display(),
        args.clients.max(64),
    );
    let server = ServerProcess::start(&args.server_bin, work.path(), &config)?;
    let hop = match args.client_link {
        Some(cfg) => Some(NetProcess::start(&Upstream::Addr(server.flight), &[cfg])?),
        None => None,
    };
    let node = match &hop {
        Some(h) => *h.links.first().ok_or("the client hop did not start")?,
        None => server.flight,
    };
    let mut client = connect(node).await?;

    let threshold = args.selectivity;
    let req = ScanRequest {
        source: Some(BUCKET.into()),
        path: Some(key(0)),
        columns: Some(vec!["c0".into(), "c1".into()]),
        filter: Some(format!("c0 < {threshold}")),
        ..Default::default()
    };
    let sql = format!("SELECT c0, c1 FROM t WHERE c0 < {threshold}");

    // Cold first, while nothing is cached; then the answers are compared by
    // content with DataFusion's.
    let t = Instant::now();
    let cold = quiver_batches(&mut client, &req).await?;
    let cold_ms = ms(t.elapsed());
    let reference = datafusion_session(
        &endpoint,
        Candidate {
            partitions: 2,
            pushdown: true,
        },
    )
    .await?;
    let want = reference.sql(&sql).await?.collect().await?;
    if Digest::of(&cold)? != Digest::of(&want)? {
        return Err("Quiver's cold answer differs from DataFusion's".into());
    }
    let warm = quiver_batches(&mut client, &req).await?;
    if Digest::of(&warm)? != Digest::of(&want)? {
        return Err("Quiver's warm answer differs from DataFusion's".into());
    }
    let expected: usize = want.iter().map(|b| b.num_rows()).sum();
    drop((reference, want, cold, warm));

    let bar = indicatif::ProgressBar::new((endpoints.len() * candidates().len()) as u64);
    bar.set_message("choosing DataFusion's configuration per link");
    let mut sessions = Vec::new();
    let mut sweep = Vec::new();
    for (cfg, url) in &endpoints {
        let session = async |c| datafusion_session(url, c).await;
        let (ctx, best, trials) = best_configuration(session, &sql, expected as u64, &bar).await?;
        sessions.push(ctx);
        sweep.push(SweepPoint {
            link_latency_ms: cfg.map(|l| l.latency.as_millis() as u64),
            datafusion_best: best,
            datafusion_trials: trials,
            datafusion_direct_ms: Vec::new(),
            speedup_warm_vs_datafusion: 0.0,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();

    let bar = indicatif::ProgressBar::new(args.runs as u64);
    bar.set_message("measuring");
    let mut warm = Vec::new();
    for _ in 0..args.runs {
        for (ctx, point) in sessions.iter().zip(sweep.iter_mut()) {
            let t = Instant::now();
            let rows = datafusion_rows(ctx, &sql).await?;
            point.datafusion_direct_ms.push(ms(t.elapsed()));
            if rows != expected as u64 {
                return Err(format!("DataFusion returned {rows} rows, not {expected}").into());
            }
        }
        let t = Instant::now();
        let rows = quiver_scan(&mut client, &req).await?;
        warm.push(ms(t.elapsed()));
        if rows != expected {
            return Err(format!("warm Quiver returned {rows} rows, DataFusion {expected}").into());
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    for point in &mut sweep {
        point.speedup_warm_vs_datafusion = median(&point.datafusion_direct_ms) / median(&warm);
    }
    drop(sessions);
    let before = stats(&mut client).await?;
    quiver_scan(&mut client, &req).await?;
    let after = stats(&mut client).await?;
    let bytes_to_client = after.bytes_served - before.bytes_served;

    // Many clients scanning whole files at once: memory must stay bounded
    // by the memory tier plus per-stream buffers, whatever the data size.
    let bar = indicatif::ProgressBar::new(args.clients as u64);
    bar.set_message("concurrent scans");
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let mut client = connect(node).await?;
        let req = ScanRequest {
            source: Some(BUCKET.into()),
            path: Some(key(c % args.files)),
            ..Default::default()
        };
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            let r = quiver_scan(&mut client, &req).await;
            bar.inc(1);
            r
        }));
    }
    for t in tasks {
        t.await??;
    }
    let concurrent_seconds = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let peak_rss = server.peak_rss().unwrap_or(0);
    server.stop()?;
    drop(hop);
    drop(origin);

    let memory_tier = args.memory_mib * MIB;
    Ok(NodeReport {
        file_bytes: file_size,
        rows_matched: expected,
        link_latency_ms: args.link.map(|l| l.latency.as_millis() as u64),
        link_bandwidth_mb_s: args.link.map(|l| l.bandwidth / 1_000_000),
        client_link_latency_ms: args.client_link.map(|l| l.latency.as_millis() as u64),
        client_link_bandwidth_mb_s: args.client_link.map(|l| l.bandwidth / 1_000_000),
        speedup_warm_vs_datafusion: sweep.first().map_or(0.0, |p| p.speedup_warm_vs_datafusion),
        sweep,
        quiver_cold_ms: cold_ms,
        quiver_warm_ms: warm,
        bytes_to_client,
        bytes_to_client_fraction: bytes_to_client as f64 / file_size as f64,
        concurrent_clients: args.clients,
        concurrent_files: args.files,
        concurrent_seconds,
        memory_tier_bytes: memory_tier,
        hot_tier_bytes: args.memory_mib.max(MIN_HOT_MIB) * MIB,
        peak_rss_bytes: peak_rss,
        peak_rss_limit_bytes: memory_tier + args.memory_mib.max(MIN_HOT_MIB) * MIB + 300 * MIB,
    })
}

impl NodeReport {
    /// The Markdown summary, also printed to the terminal.
    pub fn markdown(&self, command: &str) -> String {
        let link = match (self.link_latency_ms, self.link_bandwidth_mb_s) {
            (Some(l), Some(b)) => format!("{l} ms first-byte latency, {b} MB/s per connection"),
            _ => "no link emulation (raw loopback)".into(),
        };
        let hop = match (self.client_link_latency_ms, self.client_link_bandwidth_mb_s) {
            (Some(l), Some(0)) => format!("an emulated hop of {l} ms first-byte latency"),
            (Some(l), Some(b)) => {
                format!("an emulated hop of {l} ms first-byte latency and {b} MB/s")
            }
            _ => "raw loopback".into(),
        };
        let mib = |b: u64| b as f64 / MIB as f64;
        let head = self.sweep.first();
        let trials = |p: &SweepPoint| {
            p.datafusion_trials
                .iter()
                .map(|(c, ms)| format!("{c}: {ms:.0} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut md = format!(
            "### Single node: warm Quiver vs DataFusion direct\n\n\
             One {:.0} MiB Parquet file of 16 float64 columns in s3s-fs behind an emulated S3 link \
             ({link}), both in a process apart from the one that times; filter `c0 < selectivity` \
             on columns c0, c1 ({} rows matched). DataFusion: one long-lived session per link, \
             in the configuration (partitions; pushdown_filters and reorder_filters on or off) \
             that ran best on that link in trials. Quiver's client reaches the node over {hop}. Answers were \
             compared by content first; timed runs interleave.\n\n\
             | measure | value | target |\n| --- | --- | --- |\n\
             | DataFusion direct, {} (trials: {}), median of {} | {:.1} ms | baseline |\n\
             | Quiver cold (first scan) | {:.1} ms | |\n\
             | Quiver warm, median of {} | {:.1} ms | |\n\
             | **warm speed-up vs DataFusion direct** | **{:.1}x** | at least 5x |\n\
             | bytes to client / file size | {:.3}% | under 5% |\n\
             | node peak RSS, {} clients scanning {} whole files at once ({:.1} s) | {:.0} MiB | under {:.0} MiB (memory tier {:.0} MiB + hot tier {:.0} MiB + 300 MiB) |\n",
            mib(self.file_bytes),
            self.rows_matched,
            head.map_or(String::new(), |p| p.datafusion_best.to_string()),
            head.map(trials).unwrap_or_default(),
            head.map_or(0, |p| p.datafusion_direct_ms.len()),
            head.map_or(f64::NAN, |p| median(&p.datafusion_direct_ms)),
            self.quiver_cold_ms,
            self.quiver_warm_ms.len(),
            median(&self.quiver_warm_ms),
            self.speedup_warm_vs_datafusion,
            self.bytes_to_client_fraction * 100.0,
            self.concurrent_clients,
            self.concurrent_files,
            self.concurrent_seconds,
            mib(self.peak_rss_bytes),
            mib(self.peak_rss_limit_bytes),
            mib(self.memory_tier_bytes),
            mib(self.hot_tier_bytes),
        );
        if self.sweep.len() > 1 {
            md.push_str(
                "\nLatency sweep (same runs, interleaved; Quiver is warm, so its S3 link is \
                 idle):\n\n\
                 | S3 link latency | DataFusion's best configuration | DataFusion ms | Quiver warm ms | speed-up |\n\
                 | ---: | ---: | ---: | ---: | ---: |\n",
            );
            let mut points: Vec<&SweepPoint> = self.sweep.iter().collect();
            points.sort_by_key(|p| p.link_latency_ms);
            for p in points {
                md.push_str(&format!(
                    "| {} ms | {} | {:.1} | {:.1} | {:.1}x |\n",
                    p.link_latency_ms.unwrap_or(0),
                    p.datafusion_best,
                    median(&p.datafusion_direct_ms),
                    median(&self.quiver_warm_ms),
                    p.speedup_warm_vs_datafusion,
                ));
            }
        }
        md.push_str(&format!("\nReproduce: `{command}`\n"));
        md
    }
}
