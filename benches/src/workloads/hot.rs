//! Warm hits against the strongest baseline: one local Parquet file (ints,
//! floats and strings, 16 columns, 16 row groups, the filtered column
//! uniform so that statistics prune nothing), read by a Quiver node in its
//! own process over Flight and by DataFusion in this process.
//!
//! DataFusion gets its best honest configuration: a long-lived session (so
//! its footer cache stays warm), the file in the page cache, and for the
//! query and for the scan apart, whichever candidate configuration ran it
//! fastest in trials (partitions, pushdown on or off). Quiver is warm:
//! its hot tier holds the file's decoded arrays, and it is read as a client
//! reads it (GetFlightInfo, then the endpoints in parallel). Runs interleave
//! in an order that rotates each round, both answers are compared by
//! content before anything is timed, and timed runs consume their streams
//! batch by batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::TryStreamExt;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use quiver_client::{ClientConfig, QuiverClient};
use quiver_protocol::{HotStats, ScanRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::baseline::{
    best_configuration, candidates, datafusion_rows, tuned_datafusion, Candidate,
};
use crate::common::Common;
use crate::compare::Digest;
use crate::data;
use crate::error::BoxError;
use crate::flight::{quiver_batches, stats};
use crate::readers::arrow_bytes;
use crate::report;
use crate::server::{ServerProcess, MIN_HOT_MIB};
use crate::timing::median;

const MIB: u64 = 1 << 20;
/// Filtered queries run back to back to measure the node's CPU per query.
const CPU_QUERIES: usize = 200;
/// Values of the filtered column `k` are uniform in `0..K_RANGE`.
const K_RANGE: i64 = 1_000_000_000;
const INTS: usize = 5;
const FLOATS: usize = 5;
const STRINGS: usize = 5;

/// The hot workload's flags.
#[derive(clap::Args)]
pub struct HotArgs {
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
}

impl HotArgs {
    /// The flags, or the defaults of a full or `quick` run; refuses values
    /// the workload cannot run with.
    fn settings(&self, quick: bool, server_bin: PathBuf) -> Result<HotSettings, BoxError> {
        if !(self.selectivity > 0.0 && self.selectivity <= 1.0) {
            return Err("--selectivity must be in (0, 1]".into());
        }
        let settings = HotSettings {
            rows: self.rows.unwrap_or(if quick { 200_000 } else { 2_000_000 }),
            row_groups: self.row_groups,
            runs: self.runs.unwrap_or(if quick { 3 } else { 9 }),
            selectivity: self.selectivity,
            hot_mib: self.hot_mib,
            server_bin,
        };
        if settings.rows == 0
            || settings.row_groups == 0
            || settings.runs == 0
            || settings.hot_mib < MIN_HOT_MIB
        {
            return Err(
                "--rows, --row-groups and --runs must be at least 1, --hot-mib at least 64".into(),
            );
        }
        Ok(settings)
    }
}

/// Runs the workload on a node of its own and writes `hot.json` and
/// `hot.md`.
pub async fn main(common: &Common, args: HotArgs, command: String) -> Result<(), BoxError> {
    common.no_remote_nodes("the hot workload starts its own node")?;
    let settings = args.settings(common.quick, common.server_bin())?;
    let report = run(&settings, command).await?;
    report::write(&common.out, "hot", &report, report.markdown())
}

#[derive(Debug, Clone)]
pub struct HotSettings {
    pub rows: usize,
    pub row_groups: usize,
    pub runs: usize,
    pub selectivity: f64,
    pub hot_mib: u64,
    pub server_bin: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct HotReport {
    pub command: String,
    pub file_bytes: u64,
    pub rows: usize,
    pub row_groups: usize,
    pub rows_matched: u64,
    /// DataFusion's configuration for the query and for the scan: the
    /// fastest of each in trials, with every candidate's fastest trial.
    pub datafusion_query_best: Candidate,
    pub datafusion_query_trials: Vec<(Candidate, f64)>,
    pub datafusion_scan_best: Candidate,
    pub datafusion_scan_trials: Vec<(Candidate, f64)>,
    /// Arrow bytes of one full scan (the buffers clients receive).
    pub scan_arrow_bytes: u64,
    pub datafusion_query_ms: Vec<f64>,
    pub quiver_query_ms: Vec<f64>,
    /// The node's CPU time per filtered query (GetFlightInfo and its
    /// DoGets), the mean of [`CPU_QUERIES`] run back to back after the
    /// timed rounds; `None` where `/proc` cannot say.
    pub quiver_query_node_cpu_ms: Option<f64>,
    /// Median DataFusion over median Quiver, for the filtered query.
    pub speedup_query: f64,
    pub datafusion_scan_ms: Vec<f64>,
    pub quiver_scan_1_client_ms: Vec<f64>,
    pub quiver_scan_2_clients_ms: Vec<f64>,
    pub datafusion_scan_gb_s: f64,
    pub quiver_scan_1_client_gb_s: f64,
    pub quiver_scan_2_clients_gb_s: f64,
    pub hot: HotStats,
    pub peak_rss_bytes: u64,
}

fn column_names() -> Vec<String> {
    let mut names = vec!["k".to_string()];
    names.extend((1..=INTS).map(|i| format!("i{i}")));
    names.extend((1..=FLOATS).map(|i| format!("f{i}")));
    names.extend((1..=STRINGS).map(|i| format!("s{i}")));
    names
}

/// Writes the file: `k` uniform, five more int64, five float64 and five
/// string columns of 8 to 24 characters, in `row_groups` row groups.
fn write_file(path: &Path, rows: usize, row_groups: usize) -> Result<u64, BoxError> {
    let names = column_names();
    let fields: Vec<Field> = names
        .iter()
        .map(|n| {
            let ty = match n.as_bytes()[0] {
                b'k' | b'i' => DataType::Int64,
                b'f' => DataType::Float64,
                _ => DataType::Utf8,
            };
            Field::new(n, ty, false)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let group_rows = rows.div_ceil(row_groups.max(1)).max(1);
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group_rows))
        .set_dictionary_enabled(false)
        .build();
    let file = std::fs::File::create(path)?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
    let mut rng = StdRng::seed_from_u64(7);
    let bar = data::rows_bar(rows as u64, "generating");
    let batch_rows = 64 * 1024;
    let mut written = 0;
    while written < rows {
        let n = batch_rows.min(rows - written);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(names.len());
        columns.push(Arc::new(Int64Array::from_iter_values(
            (0..n).map(|_| rng.random_range(0..K_RANGE)),
        )));
        for _ in 0..INTS {
            columns.push(Arc::new(Int64Array::from_iter_values(
                (0..n).map(|_| rng.random_range(0..1_000_000)),
            )));
        }
        for _ in 0..FLOATS {
            columns.push(Arc::new(Float64Array::from_iter_values(
                (0..n).map(|_| rng.random::<f64>()),
            )));
        }
        for _ in 0..STRINGS {
            columns.push(Arc::new(StringArray::from_iter_values((0..n).map(|_| {
                let len = rng.random_range(8..=24);
                (0..len)
                    .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                    .collect::<String>()
            }))));
        }
        writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
        written += n;
        bar.inc(n as u64);
    }
    writer.close()?;
    bar.finish_and_clear();
    Ok(std::fs::metadata(path)?.len())
}

async fn datafusion(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, BoxError> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Rows of a timed Quiver run, read as a client reads: GetFlightInfo,
/// then its endpoints in parallel, batch by batch and dropped, as a
/// streaming consumer would (collecting hundreds of MiB would time the
/// benchmark's allocator, not the reader).
async fn quiver_rows(client: &QuiverClient, req: &ScanRequest) -> Result<u64, BoxError> {
    let (_, mut stream) = client.read(req).await?;
    let mut rows = 0;
    while let Some(batch) = stream.try_next().await? {
        rows += batch.num_rows() as u64;
    }
    Ok(rows)
}

/// The five timed measures of a round, run in an order that rotates from
/// one round to the next, so none always follows the same one (DataFusion's
/// query right after two full scans, say).
#[derive(Clone, Copy)]
enum Measure {
    DataFusionQuery,
    QuiverQuery,
    DataFusionScan,
    QuiverScan,
    QuiverScanTwice,
}

const MEASURES: [Measure; 5] = [
    Measure::DataFusionQuery,
    Measure::QuiverQuery,
    Measure::DataFusionScan,
    Measure::QuiverScan,
    Measure::QuiverScanTwice,
];

/// Fails the run when a timed run returned another number of rows than
/// the answer compared by content before timing.
fn check_rows(what: &str, got: u64, want: u64) -> Result<(), BoxError> {
    if got != want {
        return Err(format!("{what} returned {got} rows in a timed run, not {want}").into());
    }
    Ok(())
}

/// A session over the local file as table `t`.
async fn local_session(path: &str, config: SessionConfig) -> Result<SessionContext, BoxError> {
    let ctx = SessionContext::new_with_config(config);
    ctx.register_parquet("t", path, ParquetReadOptions::default())
        .await?;
    Ok(ctx)
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn gb_s(bytes: u64, ms: f64) -> f64 {
    bytes as f64 / 1e9 / (ms / 1000.0)
}

pub async fn run(args: &HotSettings, command: String) -> Result<HotReport, BoxError> {
    let work = tempfile::tempdir()?;
    let dir = work.path().join("lake");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("wide.parquet");
    let file_bytes = tokio::task::block_in_place(|| write_file(&file, args.rows, args.row_groups))?;

    let url = url::Url::from_directory_path(&dir).map_err(|_| "the lake path is not absolute")?;
    let config = format!(
        "[cache]\nmemory = \"1GiB\"\ndisk = \"0\"\nhot = \"{}MiB\"\n\n\
         [[source]]\nname = \"lake\"\nurl = \"{url}\"\n",
        args.hot_mib,
    );
    let server = ServerProcess::start(&args.server_bin, work.path(), &config)?;
    let mut a = server.client().await?;

    let path = file.to_str().ok_or("the lake path is not UTF-8")?;
    let ctx = local_session(path, tuned_datafusion()).await?;

    let width = (K_RANGE as f64 * args.selectivity) as i64;
    let lo = K_RANGE / 3;
    let hi = lo + width;
    let query = ScanRequest {
        source: Some("lake".into()),
        path: Some("wide.parquet".into()),
        columns: Some(vec!["i1".into(), "s1".into()]),
        filter: Some(format!("k BETWEEN {lo} AND {hi}")),
        ..Default::default()
    };
    let query_sql = format!("SELECT i1, s1 FROM t WHERE k BETWEEN {lo} AND {hi}");
    let scan = ScanRequest {
        source: Some("lake".into()),
        path: Some("wide.parquet".into()),
        ..Default::default()
    };
    let scan_sql = format!("SELECT {} FROM t", column_names().join(", "));

    // Warm both: DataFusion's footer cache and the page cache, Quiver's
    // tiers (the first full scan remembers the column chunks, the second
    // decodes them into the hot tier).
    let bar = data::count_bar(args.row_groups as u64, "warming");
    let started = Instant::now();
    let first = stats(&mut a).await?.hot.fills;
    loop {
        let before = stats(&mut a).await?.hot.hits;
        quiver_batches(&mut a, &scan).await?;
        let now = stats(&mut a).await?.hot;
        bar.set_position(now.fills.saturating_sub(first).min(args.row_groups as u64));
        if now.hits > before {
            break;
        }
        if started.elapsed().as_secs() > 600 {
            return Err(format!(
                "the hot tier could not answer a full scan after 10 minutes ({} of {} row groups \
                 filled); is --hot-mib large enough?",
                now.fills.saturating_sub(first),
                args.row_groups
            )
            .into());
        }
    }
    bar.finish_and_clear();

    let want = datafusion(&ctx, &query_sql).await?;
    let got = quiver_batches(&mut a, &query).await?;
    let rows_matched = Digest::of(&want)?.rows;
    if Digest::of(&want)? != Digest::of(&got)? {
        return Err("Quiver's answer to the filtered query differs from DataFusion's".into());
    }
    let full_df = datafusion(&ctx, &scan_sql).await?;
    let full_q = quiver_batches(&mut a, &scan).await?;
    if Digest::of(&full_df)? != Digest::of(&full_q)? {
        return Err("Quiver's full scan differs from DataFusion's".into());
    }
    let scan_arrow_bytes = arrow_bytes(&full_q);
    drop((want, got, full_df, full_q));

    // DataFusion's best configuration for each measure, chosen in trials.
    let bar = data::count_bar(
        2 * candidates().len() as u64,
        "choosing DataFusion's configuration",
    );
    let session = async |c: Candidate| local_session(path, c.config()).await;
    let (query_ctx, query_best, query_trials) =
        best_configuration(&session, &query_sql, rows_matched, &bar).await?;
    let (scan_ctx, scan_best, scan_trials) =
        best_configuration(&session, &scan_sql, args.rows as u64, &bar).await?;
    bar.finish_and_clear();
    drop(ctx);

    let mut report = HotReport {
        command,
        file_bytes,
        rows: args.rows,
        row_groups: args.row_groups,
        rows_matched,
        scan_arrow_bytes,
        datafusion_query_best: query_best,
        datafusion_query_trials: query_trials,
        datafusion_scan_best: scan_best,
        datafusion_scan_trials: scan_trials,
        datafusion_query_ms: Vec::new(),
        quiver_query_ms: Vec::new(),
        quiver_query_node_cpu_ms: None,
        speedup_query: 0.0,
        datafusion_scan_ms: Vec::new(),
        quiver_scan_1_client_ms: Vec::new(),
        quiver_scan_2_clients_ms: Vec::new(),
        datafusion_scan_gb_s: 0.0,
        quiver_scan_1_client_gb_s: 0.0,
        quiver_scan_2_clients_gb_s: 0.0,
        hot: HotStats::default(),
        peak_rss_bytes: 0,
    };
    server.reset_peak_rss();
    let bar = data::count_bar(args.runs as u64, "measuring");
    let all = args.rows as u64;
    let url = format!("grpc://{}", server.flight);
    let qa = QuiverClient::connect(ClientConfig::new(vec![url.clone()])).await?;
    let qb = QuiverClient::connect(ClientConfig::new(vec![url])).await?;
    for round in 0..args.runs {
        for k in 0..MEASURES.len() {
            let t = Instant::now();
            match MEASURES[(round + k) % MEASURES.len()] {
                Measure::DataFusionQuery => {
                    let n = datafusion_rows(&query_ctx, &query_sql).await?;
                    report.datafusion_query_ms.push(ms_since(t));
                    check_rows("DataFusion's filtered query", n, rows_matched)?;
                }
                Measure::QuiverQuery => {
                    let n = quiver_rows(&qa, &query).await?;
                    report.quiver_query_ms.push(ms_since(t));
                    check_rows("Quiver's filtered query", n, rows_matched)?;
                }
                Measure::DataFusionScan => {
                    let n = datafusion_rows(&scan_ctx, &scan_sql).await?;
                    report.datafusion_scan_ms.push(ms_since(t));
                    check_rows("DataFusion's full scan", n, all)?;
                }
                Measure::QuiverScan => {
                    let n = quiver_rows(&qa, &scan).await?;
                    report.quiver_scan_1_client_ms.push(ms_since(t));
                    check_rows("Quiver's full scan", n, all)?;
                }
                Measure::QuiverScanTwice => {
                    let (x, y) = tokio::join!(quiver_rows(&qa, &scan), quiver_rows(&qb, &scan));
                    report.quiver_scan_2_clients_ms.push(ms_since(t));
                    check_rows("Quiver's full scan (client 1 of 2)", x?, all)?;
                    check_rows("Quiver's full scan (client 2 of 2)", y?, all)?;
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    // The node's CPU per query, over queries run back to back: the kernel
    // counts a process's time in 10 ms ticks, too coarse for one query.
    let cpu_before = server.cpu_seconds();
    for _ in 0..CPU_QUERIES {
        let n = quiver_rows(&qa, &query).await?;
        check_rows("Quiver's filtered query", n, rows_matched)?;
    }
    report.quiver_query_node_cpu_ms = cpu_before
        .zip(server.cpu_seconds())
        .map(|(before, after)| (after - before).max(0.0) * 1000.0 / CPU_QUERIES as f64);
    let end = stats(&mut a).await?;
    report.hot = end.hot;
    report.peak_rss_bytes = server.peak_rss().unwrap_or(0);
    report.speedup_query = median(&report.datafusion_query_ms) / median(&report.quiver_query_ms);
    report.datafusion_scan_gb_s = gb_s(scan_arrow_bytes, median(&report.datafusion_scan_ms));
    report.quiver_scan_1_client_gb_s =
        gb_s(scan_arrow_bytes, median(&report.quiver_scan_1_client_ms));
    report.quiver_scan_2_clients_gb_s = gb_s(
        2 * scan_arrow_bytes,
        median(&report.quiver_scan_2_clients_ms),
    );
    server.stop()?;
    Ok(report)
}

impl HotReport {
    /// The Markdown summary, also printed to the terminal.
    pub fn markdown(&self) -> String {
        let mib = |b: u64| b as f64 / MIB as f64;
        let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
        format!(
            "### Warm hits: Quiver's hot tier vs DataFusion in-process\n\n\
             One {:.0} MiB local Parquet file, {} rows in {} row groups, 16 columns (6 int64, \
             5 float64, 5 strings); the filtered column is uniform, so statistics prune nothing. \
             DataFusion: one long-lived session in the benchmark's process, page cache warm, for \
             each measure in the configuration that ran it fastest in trials (query: {}; scan: \
             {}). Quiver: a node in its \
             own process, hot tier warm, read over Flight on loopback by Quiver's client \
             (GetFlightInfo, then the endpoints in parallel). Runs interleave in an order that \
             rotates each round and consume their streams batch by batch; answers were compared \
             by content first.\n\n\
             | measure | DataFusion in-process | Quiver warm | ratio | target |\n\
             | --- | --- | --- | --- | --- |\n\
             | 1% filter, 2 of 16 columns ({} rows), median of {} | {:.1} ms | {:.1} ms | **{:.1}x** | at least 10x: {} |\n\
             | full scan, 1 client ({:.0} MiB of Arrow) | {:.2} GB/s | {:.2} GB/s | {:.1}x | at least DataFusion's: {} |\n\
             | full scan, 2 clients at once | | {:.2} GB/s | | |\n\n\
             Node CPU per filtered query (GetFlightInfo and its DoGets, mean of {} run back \
             to back): {}.\n\n\
             Hot tier after the runs: {:.0} of {:.0} MiB used, {} hits, {} misses, {} evictions. \
             Node peak RSS while measuring: {:.0} MiB.\n\n\
             Reproduce: `{}`\n",
            mib(self.file_bytes),
            self.rows,
            self.row_groups,
            self.datafusion_query_best,
            self.datafusion_scan_best,
            self.rows_matched,
            self.quiver_query_ms.len(),
            median(&self.datafusion_query_ms),
            median(&self.quiver_query_ms),
            self.speedup_query,
            verdict(self.speedup_query >= 10.0),
            mib(self.scan_arrow_bytes),
            self.datafusion_scan_gb_s,
            self.quiver_scan_1_client_gb_s,
            self.quiver_scan_1_client_gb_s / self.datafusion_scan_gb_s,
            verdict(self.quiver_scan_1_client_gb_s >= self.datafusion_scan_gb_s),
            self.quiver_scan_2_clients_gb_s,
            CPU_QUERIES,
            self.quiver_query_node_cpu_ms
                .map(|ms| format!("{ms:.1} ms"))
                .unwrap_or_else(|| "not measured".into()),
            mib(self.hot.usage),
            mib(self.hot.capacity),
            self.hot.hits,
            self.hot.misses,
            self.hot.evictions,
            mib(self.peak_rss_bytes),
            self.command,
        )
    }
}
