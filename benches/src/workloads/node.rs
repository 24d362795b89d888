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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::{Action, FlightClient, Ticket};
use bytes::Bytes;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::ObjectStoreExt;
use quiver_protocol::{ScanRequest, StatsReport};
use quiver_testkit::{ACCESS_KEY, SECRET_KEY};
use serde::Serialize;
use tonic::transport::Channel;

use crate::data;
use crate::origin::{NetProcess, Upstream};
use crate::readers::Digest;
use crate::server::ServerProcess;
use crate::BoxError;
use quiver_testkit::link::LinkConfig;

const BUCKET: &str = "bench";
const MIB: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub struct NodeArgs {
    pub file_mb: u64,
    pub files: usize,
    pub clients: usize,
    pub runs: usize,
    pub selectivity: f64,
    pub memory_mib: u64,
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

/// The smallest of `values`.
pub(crate) fn fastest(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn key(i: usize) -> String {
    format!("random/f{i}.parquet")
}

/// The node's `stats` answer.
pub(crate) async fn stats(client: &mut FlightClient) -> Result<StatsReport, BoxError> {
    let out: Vec<Bytes> = client
        .do_action(Action::new("stats", Bytes::new()))
        .await?
        .try_collect()
        .await?;
    Ok(serde_json::from_slice(
        out.first().ok_or("stats returned nothing")?,
    )?)
}

pub(crate) async fn quiver_batches(
    client: &mut FlightClient,
    req: &ScanRequest,
) -> Result<Vec<RecordBatch>, BoxError> {
    Ok(client
        .do_get(Ticket::new(req.to_bytes()))
        .await?
        .try_collect()
        .await?)
}

async fn quiver_scan(client: &mut FlightClient, req: &ScanRequest) -> Result<usize, BoxError> {
    let batches = quiver_batches(client, req).await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

pub(crate) fn digest(batches: &[RecordBatch]) -> Result<Digest, BoxError> {
    let mut d = Digest::default();
    for b in batches {
        d.add(b)?;
    }
    Ok(d)
}

/// A Flight client of the node at `addr` (the node, or its client hop).
async fn connect(addr: SocketAddr) -> Result<FlightClient, BoxError> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    Ok(FlightClient::new(channel))
}

pub(crate) fn s3_store(
    endpoint: &str,
    bucket: &str,
) -> Result<object_store::aws::AmazonS3, BoxError> {
    Ok(AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()?)
}

/// A DataFusion configuration the baseline tries on each link.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Candidate {
    pub partitions: usize,
    /// `pushdown_filters` (and `reorder_filters`): fewer bytes, but over a
    /// slow link each row group costs a round trip more.
    pub pushdown: bool,
}

impl Candidate {
    /// `tuned_datafusion` with this candidate's partitions and pushdown.
    pub fn config(self) -> SessionConfig {
        let mut config = tuned_datafusion().with_target_partitions(self.partitions);
        let parquet = &mut config.options_mut().execution.parquet;
        parquet.pushdown_filters = self.pushdown;
        parquet.reorder_filters = self.pushdown;
        config
    }
}

impl std::fmt::Display for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pushdown = if self.pushdown { "on" } else { "off" };
        write!(f, "{} partitions, pushdown {pushdown}", self.partitions)
    }
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

/// The configurations DataFusion is tried with on each link: more
/// partitions hide more of a slow link's latency, pushdown saves bytes.
pub(crate) fn candidates() -> Vec<Candidate> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    [cores, 4 * cores, 8 * cores, 16 * cores]
        .into_iter()
        .flat_map(|partitions| {
            [true, false].map(|pushdown| Candidate {
                partitions,
                pushdown,
            })
        })
        .collect()
}

/// Trial runs of each candidate before the timed runs; the fastest counts,
/// so that the first, which lists the file and reads its footer, does not.
pub(crate) const TRIALS: usize = 2;

/// DataFusion as a skeptic would tune it for scans of local files: filter
/// pushdown and filter reordering on, one partition per core.
pub(crate) fn tuned_datafusion() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    config
}

/// DataFusion as a skeptic would tune it to read S3 over a link: the
/// configuration this workload's trials found fastest at every latency of
/// its sweep (5 to 30 ms, on 2 cores), 16 partitions with filter pushdown
/// off. Many byte ranges in flight hide the link's latency, and that count
/// is of requests, not cores; pushdown would add a round trip per row group.
/// The other workloads' S3 baselines use it, as the pre-signed client reads.
pub(crate) fn link_datafusion() -> SessionConfig {
    let mut config = tuned_datafusion().with_target_partitions(16);
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = false;
    parquet.reorder_filters = false;
    config
}

/// Rows `sql` returns, read batch by batch and dropped, as a streaming
/// consumer would.
pub(crate) async fn datafusion_rows(ctx: &SessionContext, sql: &str) -> Result<u64, BoxError> {
    let mut stream = ctx.sql(sql).await?.execute_stream().await?;
    let mut rows = 0;
    while let Some(batch) = stream.try_next().await? {
        rows += batch.num_rows() as u64;
    }
    Ok(rows)
}

/// Of every candidate configuration, the session `session` makes that ran
/// `sql` fastest in [`TRIALS`] runs, its configuration, and each
/// candidate's fastest run; a run that returns other than `expected` rows
/// fails the benchmark.
pub(crate) async fn best_configuration(
    session: impl AsyncFn(Candidate) -> Result<SessionContext, BoxError>,
    sql: &str,
    expected: u64,
    bar: &indicatif::ProgressBar,
) -> Result<(SessionContext, Candidate, Vec<(Candidate, f64)>), BoxError> {
    let mut best: Option<(SessionContext, Candidate, f64)> = None;
    let mut trials = Vec::new();
    for candidate in candidates() {
        let ctx = session(candidate).await?;
        let mut times = Vec::new();
        for _ in 0..TRIALS {
            let t = Instant::now();
            let rows = datafusion_rows(&ctx, sql).await?;
            times.push(ms(t.elapsed()));
            if rows != expected {
                return Err(format!(
                    "DataFusion with {candidate} returned {rows} rows, not {expected}"
                )
                .into());
            }
        }
        let m = fastest(&times);
        trials.push((candidate, m));
        if best.as_ref().is_none_or(|(_, _, b)| m < *b) {
            best = Some((ctx, candidate, m));
        }
        bar.inc(1);
    }
    let (ctx, candidate, _) = best.ok_or("no DataFusion candidates")?;
    Ok((ctx, candidate, trials))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(args: &NodeArgs) -> Result<NodeReport, BoxError> {
    let work = tempfile::tempdir()?;
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
        "[cache]\nmemory = \"{}MiB\"\nhot = \"{}MiB\"\ndisk = \"2GiB\"\ndisk_dir = \"{}\"\n\n\
         [[source]]\nname = \"{BUCKET}\"\nurl = \"s3://{BUCKET}/\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
         access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n\n\
         [limits]\nmax_concurrent_scans = {}\n",
        args.memory_mib,
        args.memory_mib.max(64),
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
    if digest(&cold)? != digest(&want)? {
        return Err("Quiver's cold answer differs from DataFusion's".into());
    }
    let warm = quiver_batches(&mut client, &req).await?;
    if digest(&warm)? != digest(&want)? {
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
        hot_tier_bytes: args.memory_mib.max(64) * MIB,
        peak_rss_bytes: peak_rss,
        peak_rss_limit_bytes: memory_tier + args.memory_mib.max(64) * MIB + 300 * MIB,
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
