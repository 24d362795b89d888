//! A Delta table read through Quiver (`QuiverTable::delta`: the node reads
//! the log, the client plans the live files), against DataFusion reading
//! the same live files over the emulated S3 link in a long-lived session
//! tuned for the link; cold (evicted cache) and warm. Then what skipping
//! revalidation saves: the same warm query once the node's `validate`
//! window has passed, and the same per-file scans with and without
//! `immutable`, with the HEADs each sends to the origin.
//!
//! The table is a directory of Parquet files converted in place with
//! deltalake-core (its log holds each file's statistics), uploaded with its
//! log. Modes are rotated run by run; every answer must equal DataFusion's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use quiver_client::table::AsOf;
use quiver_client::{QuiverClient, QuiverTable};
use quiver_protocol::ScanRequest;
use serde::Serialize;

use crate::baseline::link_datafusion;
use crate::common::Common;
use crate::compare::content;
use crate::data;
use crate::error::BoxError;
use crate::report::{self, describe_link};
use crate::rig::Rig;
use crate::timing::{median, ms};

const TABLE: &str = "delta/sales/";
/// The node's `validate` window in this workload: short, so that the runs
/// can wait it out.
const VALIDATE_MS: u64 = 1000;

/// The queries: a 1% filter and a scan of two columns, each answered with
/// exact aggregates (no float sums, whose order differs between readers)
/// that no file statistics can answer (a bare `max(c2)` DataFusion reads
/// from the footers), so every reader reads the columns.
const QUERIES: [(&str, &str); 2] = [
    (
        "1% filter",
        "SELECT count(*) AS n, min(c1) AS lo, max(c1) AS hi FROM t WHERE c0 < 0.01",
    ),
    ("2-column scan", "SELECT count(*) AS n FROM t WHERE c2 > c3"),
];

/// The delta workload's flags.
#[derive(clap::Args)]
pub struct DeltaArgs {
    /// Data files in the table [default: 8, quick 4].
    #[arg(long)]
    files: Option<usize>,
    /// Size of each file, in MiB [default: 16, quick 2].
    #[arg(long)]
    file_mb: Option<u64>,
    /// Rotated runs of each mode [default: 5, quick 1].
    #[arg(long)]
    runs: Option<usize>,
}

/// Times of one mode, in ms, one per run.
#[derive(Debug, Default, Serialize)]
pub struct Series {
    pub ms: Vec<f64>,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// The median over DataFusion's (lower is better).
    pub vs_datafusion: f64,
}

impl Series {
    fn finish(&mut self, baseline: f64) {
        self.median_ms = median(&self.ms);
        self.min_ms = self.ms.iter().copied().fold(f64::INFINITY, f64::min);
        self.max_ms = self.ms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        self.vs_datafusion = self.median_ms / baseline;
    }
}

#[derive(Debug, Serialize)]
pub struct QueryReport {
    pub name: String,
    pub sql: String,
    pub datafusion: Series,
    pub quiver_cold: Series,
    pub quiver_warm: Series,
    /// Warm, once the node's `validate` window has passed.
    pub quiver_warm_after_validate: Series,
    /// HEADs the origin received during those queries, per query.
    pub heads_after_validate: Vec<u64>,
}

#[derive(Debug, Serialize)]
pub struct DeltaReport {
    pub command: String,
    pub files: usize,
    pub table_bytes: u64,
    pub runs: usize,
    pub link: String,
    pub queries: Vec<QueryReport>,
    /// The table's per-file scans (the 1% filter) past `validate`, without
    /// `immutable`: one HEAD per file.
    pub scans_revalidated: Series,
    pub heads_revalidated: Vec<u64>,
    /// The same with `immutable`: none.
    pub scans_immutable: Series,
    pub heads_immutable: Vec<u64>,
}

/// Runs the workload on the flags' rig and writes `delta.json` and
/// `delta.md`.
pub async fn main(common: &Common, args: DeltaArgs, command: String) -> Result<(), BoxError> {
    let files = args.files.unwrap_or(if common.quick { 4 } else { 8 });
    let file_mb = args.file_mb.unwrap_or(if common.quick { 2 } else { 16 });
    let runs = args.runs.unwrap_or(if common.quick { 1 } else { 5 });
    if files == 0 || file_mb == 0 || runs == 0 {
        return Err("--files, --file-mb and --runs must be at least 1".into());
    }
    let rig = Rig::start(&common.rig_options()?.validate_ms(VALIDATE_MS)).await?;
    let result = run(&rig, files, file_mb, runs, command).await;
    rig.stop().await?;
    let mut report = result?;
    report.link = describe_link(common.link(), common.s3.as_deref());
    let md = report.markdown();
    report::write(&common.out, "delta", &report, md)
}

/// Writes `files` Parquet files, converts their directory into a Delta
/// table, uploads it with its log, and returns the live files' keys
/// (relative to the table) and the bytes of data.
async fn write_table(
    rig: &Rig,
    files: usize,
    file_mb: u64,
) -> Result<(Vec<String>, u64), BoxError> {
    let dir = rig.scratch().join(TABLE);
    let bar = data::bytes_bar(files as u64 * (file_mb << 20), "Delta table");
    for i in 0..files {
        let path = dir.join(format!("part-{i:03}.parquet"));
        tokio::task::block_in_place(|| {
            data::random_floats(&path, file_mb << 20, 100 + i as u64, &bar)
        })?;
    }
    bar.finish_and_clear();
    let url =
        url::Url::from_directory_path(&dir).map_err(|_| "the scratch path is not absolute")?;
    let table = deltalake_core::operations::convert_to_delta::ConvertToDeltaBuilder::new()
        .with_location(url.as_str())
        .await?;
    let live: Vec<String> = table
        .snapshot()?
        .log_data()
        .iter()
        .map(|f| f.path().into_owned())
        .collect();
    let mut bytes = 0;
    let mut upload = vec![dir.clone()];
    while let Some(d) = upload.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                upload.push(path);
                continue;
            }
            let relative = path.strip_prefix(&dir)?.to_string_lossy().into_owned();
            let content = std::fs::read(&path)?;
            if relative.ends_with(".parquet") {
                bytes += content.len() as u64;
            }
            rig.upload(&format!("{TABLE}{relative}"), Bytes::from(content))
                .await?;
        }
    }
    Ok((live, bytes))
}

/// DataFusion over the live files, read over the link.
async fn datafusion_session(rig: &Rig, live: &[String]) -> Result<SessionContext, BoxError> {
    let ctx = SessionContext::new_with_config(link_datafusion());
    ctx.register_object_store(rig.bucket_url(), rig.baseline().clone());
    let bucket = rig.bucket_url().as_str().trim_end_matches('/').to_string();
    let urls = live
        .iter()
        .map(|f| {
            ListingTableUrl::parse(format!(
                "{bucket}/{}",
                rig.object_path(&format!("{TABLE}{f}"))
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()));
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .infer_schema(&ctx.state())
        .await?;
    ctx.register_table("t", Arc::new(ListingTable::try_new(config)?))?;
    Ok(ctx)
}

async fn answer(ctx: &SessionContext, sql: &str) -> Result<(f64, Vec<String>), BoxError> {
    let started = Instant::now();
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok((ms(started.elapsed()), content(&batches)?))
}

pub async fn run(
    rig: &Rig,
    files: usize,
    file_mb: u64,
    runs: usize,
    command: String,
) -> Result<DeltaReport, BoxError> {
    let (live, table_bytes) = write_table(rig, files, file_mb).await?;
    let direct = datafusion_session(rig, &live).await?;
    let client = QuiverClient::connect(rig.client_config()).await?;
    let quiver = SessionContext::new();
    let table = QuiverTable::delta(
        client.clone(),
        rig.source(),
        &rig.quiver_path(TABLE),
        AsOf::Latest,
    )
    .await?;
    quiver.register_table("t", table)?;
    let wait = Duration::from_millis(VALIDATE_MS + 300);

    let mut queries = Vec::new();
    for (name, sql) in QUERIES {
        // Untimed: DataFusion's listing and footers, Quiver's first fill.
        let (_, expected) = answer(&direct, sql).await?;
        let check = |mode: &str, got: &[String]| -> Result<(), BoxError> {
            if got != expected.as_slice() {
                return Err(format!("{name}: {mode} differs from DataFusion").into());
            }
            Ok(())
        };
        check("Quiver", &answer(&quiver, sql).await?.1)?;
        let mut report = QueryReport {
            name: name.into(),
            sql: sql.into(),
            datafusion: Series::default(),
            quiver_cold: Series::default(),
            quiver_warm: Series::default(),
            quiver_warm_after_validate: Series::default(),
            heads_after_validate: Vec::new(),
        };
        for run in 0..runs {
            for mode in 0..3 {
                match (mode + run) % 3 {
                    0 => {
                        let (t, got) = answer(&direct, sql).await?;
                        check("DataFusion", &got)?;
                        report.datafusion.ms.push(t);
                    }
                    1 => {
                        let (t, got) = answer(&quiver, sql).await?;
                        check("Quiver warm", &got)?;
                        report.quiver_warm.ms.push(t);
                    }
                    _ => {
                        rig.evict_all().await?;
                        let (t, got) = answer(&quiver, sql).await?;
                        check("Quiver cold", &got)?;
                        report.quiver_cold.ms.push(t);
                        // Warm again for the next warm run.
                        answer(&quiver, sql).await?;
                    }
                }
            }
            tokio::time::sleep(wait).await;
            let before = rig.stats().await?;
            let (t, got) = answer(&quiver, sql).await?;
            check("Quiver warm past validate", &got)?;
            report.quiver_warm_after_validate.ms.push(t);
            report
                .heads_after_validate
                .push((rig.stats().await? - before).origin_heads);
        }
        let baseline = median(&report.datafusion.ms);
        for series in [
            &mut report.datafusion,
            &mut report.quiver_cold,
            &mut report.quiver_warm,
            &mut report.quiver_warm_after_validate,
        ] {
            series.finish(baseline);
        }
        queries.push(report);
    }

    let mut scans = [
        (Series::default(), Vec::new()),
        (Series::default(), Vec::new()),
    ];
    for _ in 0..runs {
        for (immutable, (series, heads)) in [false, true].into_iter().zip(scans.iter_mut()) {
            tokio::time::sleep(wait).await;
            let before = rig.stats().await?;
            let started = Instant::now();
            per_file_scans(rig, &client, &live, immutable).await?;
            series.ms.push(ms(started.elapsed()));
            heads.push((rig.stats().await? - before).origin_heads);
        }
    }
    let [(mut scans_revalidated, heads_revalidated), (mut scans_immutable, heads_immutable)] =
        scans;
    let baseline = median(&scans_revalidated.ms);
    scans_revalidated.finish(baseline);
    scans_immutable.finish(baseline);
    Ok(DeltaReport {
        command,
        files,
        table_bytes,
        runs,
        link: String::new(),
        queries,
        scans_revalidated,
        heads_revalidated,
        scans_immutable,
        heads_immutable,
    })
}

/// The table's scans for the 1% filter, one per file and 16 at once, as
/// `QuiverTable` plans them.
async fn per_file_scans(
    rig: &Rig,
    client: &QuiverClient,
    live: &[String],
    immutable: bool,
) -> Result<(), BoxError> {
    futures::stream::iter(live)
        .map(|f| {
            let req = ScanRequest {
                source: Some(rig.source().to_string()),
                path: Some(rig.quiver_path(&format!("{TABLE}{f}"))),
                columns: Some(vec!["c0".into(), "c1".into()]),
                filter: Some("c0 < 0.01".into()),
                immutable,
                ..Default::default()
            };
            async move { client.collect(&req).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

impl DeltaReport {
    pub fn markdown(&self) -> String {
        let row = |mode: &str, s: &Series| {
            format!(
                "| {mode} | {:.1} | {:.1}–{:.1} | {:.2}x |\n",
                s.median_ms, s.min_ms, s.max_ms, s.vs_datafusion
            )
        };
        let mut out = format!(
            "## A Delta table: QuiverTable::delta against DataFusion over the live files\n\n`{}`\n\n\
             {} files, {:.1} MiB of Parquet (16 float64 columns), {}; {} rotated run(s) per mode, \
             medians and min–max; the node's `validate` is {VALIDATE_MS} ms.\n",
            self.command,
            self.files,
            self.table_bytes as f64 / (1u64 << 20) as f64,
            self.link,
            self.runs,
        );
        for q in &self.queries {
            out.push_str(&format!(
                "\n### {}\n\n`{}`\n\n| mode | ms | min–max | time / DataFusion |\n| --- | ---: | ---: | ---: |\n",
                q.name, q.sql
            ));
            out.push_str(&row(
                "DataFusion over S3 (long-lived, tuned)",
                &q.datafusion,
            ));
            out.push_str(&row("Quiver cold (evicted)", &q.quiver_cold));
            out.push_str(&row("Quiver warm", &q.quiver_warm));
            out.push_str(&row(
                "Quiver warm, past `validate`",
                &q.quiver_warm_after_validate,
            ));
            out.push_str(&format!(
                "\nHEADs to the origin per warm query past `validate`: {:?}.\n",
                q.heads_after_validate
            ));
        }
        out.push_str(&format!(
            "\n### Skipping revalidation\n\nThe table's {} per-file scans (1% filter, 16 at once) once `validate` has passed:\n\n\
             | scans | ms | min–max | time / without |\n| --- | ---: | ---: | ---: |\n",
            self.files
        ));
        let scan_row = |mode: &str, s: &Series, heads: &[u64]| {
            format!(
                "| {mode} (HEADs {heads:?}) | {:.1} | {:.1}–{:.1} | {:.2}x |\n",
                s.median_ms, s.min_ms, s.max_ms, s.vs_datafusion
            )
        };
        out.push_str(&scan_row(
            "without `immutable`",
            &self.scans_revalidated,
            &self.heads_revalidated,
        ));
        out.push_str(&scan_row(
            "with `immutable`",
            &self.scans_immutable,
            &self.heads_immutable,
        ));
        out
    }
}
