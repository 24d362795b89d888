//! The single-node headline: one 100 MB Parquet file in a real S3-compatible
//! server behind an emulated S3 link.
//!
//! Measures, in one run: DataFusion reading the file directly over the link,
//! Quiver cold and warm for the same 1%-selective filter on 2 of 16 columns,
//! the bytes sent to the client as a fraction of the file, and the node's
//! peak RSS while many clients scan whole files at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::{Action, FlightClient, Ticket};
use bytes::Bytes;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::ObjectStoreExt;
use quiver_protocol::{ScanRequest, StatsReport};
use quiver_testkit::{S3Server, ACCESS_KEY, SECRET_KEY};
use serde::Serialize;

use crate::data;
use crate::server::ServerProcess;
use crate::BoxError;
use quiver_testkit::link::{Link, LinkConfig};

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
    pub server_bin: std::path::PathBuf,
}

#[derive(Debug, Serialize)]
pub struct NodeReport {
    pub file_bytes: u64,
    pub rows_matched: usize,
    pub link_latency_ms: Option<u64>,
    pub link_bandwidth_mb_s: Option<u64>,
    pub datafusion_direct_ms: Vec<f64>,
    pub quiver_cold_ms: f64,
    pub quiver_warm_ms: Vec<f64>,
    pub speedup_warm_vs_direct: f64,
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

async fn quiver_scan(client: &mut FlightClient, req: &ScanRequest) -> Result<usize, BoxError> {
    let batches: Vec<_> = client
        .do_get(Ticket::new(req.to_bytes()))
        .await?
        .try_collect()
        .await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

fn s3_store(endpoint: &str) -> Result<object_store::aws::AmazonS3, BoxError> {
    Ok(AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()?)
}

/// What a user who tunes DataFusion does without Quiver: one long-lived
/// session reading the object from S3 (its footer cache warm after the first
/// run), with filter pushdown and filter reordering on and one partition per
/// core.
async fn datafusion_session(endpoint: &str) -> Result<SessionContext, BoxError> {
    let s3 = s3_store(endpoint)?;
    let ctx = SessionContext::new_with_config(tuned_datafusion());
    ctx.register_object_store(&url::Url::parse(&format!("s3://{BUCKET}"))?, Arc::new(s3));
    ctx.register_parquet(
        "t",
        format!("s3://{BUCKET}/{}", key(0)),
        ParquetReadOptions::default(),
    )
    .await?;
    Ok(ctx)
}

/// DataFusion as a skeptic would tune it for these scans: filter pushdown
/// and filter reordering on, one partition per core.
pub(crate) fn tuned_datafusion() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    config
}

async fn datafusion_direct(ctx: &SessionContext, sql: &str) -> Result<usize, BoxError> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(args: &NodeArgs) -> Result<NodeReport, BoxError> {
    let work = tempfile::tempdir()?;
    let s3 = S3Server::start(&work.path().join("s3"), &[BUCKET]).await?;
    let link = match args.link {
        Some(cfg) => Some(Link::start(s3.addr, cfg).await?),
        None => None,
    };
    let endpoint = link
        .as_ref()
        .map(|l| format!("http://{}", l.addr))
        .unwrap_or_else(|| s3.endpoint());

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
    let direct = s3_store(&s3.endpoint())?;
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
    let mut client = server.client().await?;

    let threshold = args.selectivity;
    let req = ScanRequest {
        source: Some(BUCKET.into()),
        path: Some(key(0)),
        columns: Some(vec!["c0".into(), "c1".into()]),
        filter: Some(format!("c0 < {threshold}")),
        ..Default::default()
    };
    let sql = format!("SELECT c0, c1 FROM t WHERE c0 < {threshold}");

    let steps = (2 * args.runs + 2) as u64;
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_message("measuring");
    let mut direct = Vec::new();
    let mut expected = None;
    let ctx = datafusion_session(&endpoint).await?;
    for _ in 0..args.runs {
        let t = Instant::now();
        let rows = datafusion_direct(&ctx, &sql).await?;
        direct.push(ms(t.elapsed()));
        expected = Some(rows);
        bar.inc(1);
    }
    let expected = expected.ok_or("no baseline runs")?;

    let t = Instant::now();
    let cold_rows = quiver_scan(&mut client, &req).await?;
    let cold = ms(t.elapsed());
    bar.inc(1);
    if cold_rows != expected {
        return Err(format!("Quiver returned {cold_rows} rows, DataFusion {expected}").into());
    }
    let mut warm = Vec::new();
    for _ in 0..args.runs {
        let t = Instant::now();
        let rows = quiver_scan(&mut client, &req).await?;
        warm.push(ms(t.elapsed()));
        if rows != expected {
            return Err(format!("warm Quiver returned {rows} rows, DataFusion {expected}").into());
        }
        bar.inc(1);
    }
    let before = stats(&mut client).await?;
    quiver_scan(&mut client, &req).await?;
    let after = stats(&mut client).await?;
    let bytes_to_client = after.bytes_served - before.bytes_served;
    bar.inc(1);
    bar.finish_and_clear();

    // Many clients scanning whole files at once: memory must stay bounded
    // by the memory tier plus per-stream buffers, whatever the data size.
    let bar = indicatif::ProgressBar::new(args.clients as u64);
    bar.set_message("concurrent scans");
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let mut client = server.client().await?;
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

    let memory_tier = args.memory_mib * MIB;
    Ok(NodeReport {
        file_bytes: file_size,
        rows_matched: expected,
        link_latency_ms: args.link.map(|l| l.latency.as_millis() as u64),
        link_bandwidth_mb_s: args.link.map(|l| l.bandwidth / 1_000_000),
        speedup_warm_vs_direct: median(&direct) / median(&warm),
        datafusion_direct_ms: direct,
        quiver_cold_ms: cold,
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
        let mib = |b: u64| b as f64 / MIB as f64;
        format!(
            "### Single node: warm Quiver vs DataFusion direct\n\n\
             One {:.0} MiB Parquet file of 16 float64 columns in s3s-fs behind an emulated S3 link \
             ({link}); filter `c0 < selectivity` on columns c0, c1 ({} rows matched).\n\n\
             | measure | value | target |\n| --- | --- | --- |\n\
             | DataFusion direct (one session, pushdown on), median of {} | {:.1} ms | baseline |\n\
             | Quiver cold (first scan) | {:.1} ms | |\n\
             | Quiver warm, median of {} | {:.1} ms | |\n\
             | **warm speed-up vs DataFusion direct** | **{:.1}x** | at least 5x |\n\
             | bytes to client / file size | {:.3}% | under 5% |\n\
             | node peak RSS, {} clients scanning {} whole files at once ({:.1} s) | {:.0} MiB | under {:.0} MiB (memory tier {:.0} MiB + hot tier {:.0} MiB + 300 MiB) |\n\n\
             Reproduce: `{command}`\n",
            mib(self.file_bytes),
            self.rows_matched,
            self.datafusion_direct_ms.len(),
            median(&self.datafusion_direct_ms),
            self.quiver_cold_ms,
            self.quiver_warm_ms.len(),
            median(&self.quiver_warm_ms),
            self.speedup_warm_vs_direct,
            self.bytes_to_client_fraction * 100.0,
            self.concurrent_clients,
            self.concurrent_files,
            self.concurrent_seconds,
            mib(self.peak_rss_bytes),
            mib(self.peak_rss_limit_bytes),
            mib(self.memory_tier_bytes),
            mib(self.hot_tier_bytes),
        )
    }
}
