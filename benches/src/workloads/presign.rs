//! A cold object at 1% selectivity: DataFusion reading it directly over the
//! emulated S3 link, Quiver reading it through (the node fetches, fills its
//! cache and streams), and Quiver handing the client a pre-signed URL (the
//! client reads the store itself over the same link while the owner warms
//! its cache); then the same scan once the background warming is done.
//!
//! Each run starts the Quiver modes from an evicted cache; the modes are
//! interleaved run by run (the DataFusion modes first in even runs, last in
//! odd ones) and every answer must equal the baseline's. The baseline is
//! DataFusion configured as is fastest over the link (16 partitions,
//! pushdown off: `baseline::link_datafusion`), as the pre-signed client
//! reads, in one long-lived session whose metadata cache holds the footer:
//! every ratio is against it. The same in a new session per run is
//! reported too.

use std::time::{Duration, Instant};

use bytes::Bytes;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use quiver_client::QuiverClient;
use quiver_protocol::{ScanRequest, StatsReport};
use serde::Serialize;

use crate::baseline::link_datafusion;
use crate::common::Common;
use crate::compare::content;
use crate::data;
use crate::error::BoxError;
use crate::report::{self, describe_link};
use crate::rig::Rig;
use crate::timing::median;

const OBJECT: &str = "presign/cold.parquet";
const COLUMNS: [&str; 2] = ["c0", "c1"];
const FILTER: &str = "c0 < 0.01";

/// The presign workload's flags.
#[derive(clap::Args)]
pub struct PresignArgs {
    /// Size of the object, in MiB [default: 100, quick 16].
    #[arg(long)]
    file_mb: Option<u64>,
    /// Interleaved runs of each mode [default: 5, quick 1].
    #[arg(long)]
    runs: Option<usize>,
}

impl PresignArgs {
    /// The flags, or the defaults of a full or `quick` run.
    fn settings(&self, quick: bool) -> PresignSettings {
        PresignSettings {
            file_mb: self.file_mb.unwrap_or(if quick { 16 } else { 100 }),
            runs: self.runs.unwrap_or(if quick { 1 } else { 5 }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PresignSettings {
    pub file_mb: u64,
    pub runs: usize,
}

/// Runs the workload on the flags' rig and writes `presign.json` and
/// `presign.md`.
pub async fn main(common: &Common, args: PresignArgs, command: String) -> Result<(), BoxError> {
    let settings = args.settings(common.quick);
    let rig = Rig::start(&common.rig_options()?).await?;
    let result = run(&rig, &settings, command).await;
    rig.stop().await?;
    let mut report = result?;
    report.link = describe_link(common.link(), common.s3.as_deref());
    report::write(&common.out, "presign", &report, report.markdown())
}

#[derive(Debug, Serialize)]
pub struct PresignReport {
    pub command: String,
    pub object_bytes: u64,
    pub rows: usize,
    pub runs: usize,
    pub link: String,
    /// DataFusion in a new session per run (the footer read too).
    pub direct_ms: Vec<f64>,
    /// The same in one long-lived session whose metadata cache holds the
    /// footer: the reference of the ratios, the strongest baseline.
    pub direct_cached_ms: Vec<f64>,
    pub read_through_ms: Vec<f64>,
    pub presigned_ms: Vec<f64>,
    /// From handing out the URL to the warm-up having loaded the columns.
    pub warming_ms: Vec<f64>,
    /// The same scan after warming, through the node.
    pub warm_ms: Vec<f64>,
    /// Origin bytes of each warm scan: 0 when warming covered it.
    pub warm_origin_bytes: Vec<u64>,
    /// Medians as ratios to the long-lived session's median (lower is
    /// better).
    pub direct_vs_tuned: f64,
    pub read_through_vs_tuned: f64,
    pub presigned_vs_tuned: f64,
    pub warm_vs_tuned: f64,
}

async fn stats(client: &QuiverClient, url: &str) -> Result<StatsReport, BoxError> {
    let answer = client.action_on(url, "stats", Bytes::new()).await?;
    Ok(serde_json::from_slice(
        answer.first().ok_or("stats returned nothing")?,
    )?)
}

/// Waits until the node's warming queue is empty.
async fn warmed(client: &QuiverClient, url: &str) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while stats(client, url).await?.warm.queued > 0 {
        if Instant::now() > deadline {
            return Err("background warming did not finish in 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A DataFusion session over the object through the link, configured as is
/// fastest over such a link (as many byte ranges at once as the pre-signed
/// client reads).
async fn direct_session(rig: &Rig) -> Result<SessionContext, BoxError> {
    let config = link_datafusion().with_repartition_file_min_size(0);
    let ctx = SessionContext::new_with_config(config);
    ctx.register_object_store(rig.bucket_url(), rig.baseline().clone());
    let url = format!(
        "{}/{}",
        rig.bucket_url().as_str().trim_end_matches('/'),
        rig.object_path(OBJECT)
    );
    ctx.register_parquet("cold", url, ParquetReadOptions::default())
        .await?;
    Ok(ctx)
}

pub async fn run(
    rig: &Rig,
    args: &PresignSettings,
    command: String,
) -> Result<PresignReport, BoxError> {
    if args.file_mb < 16 || args.runs == 0 {
        return Err(
            "--file-mb must be at least 16 (above presign_min_bytes) and --runs at least 1".into(),
        );
    }
    let path = rig.scratch().join(OBJECT);
    let bar = data::bytes_bar(args.file_mb << 20, "cold object");
    tokio::task::block_in_place(|| data::random_floats(&path, args.file_mb << 20, 11, &bar))?;
    bar.finish_and_clear();
    let file = std::fs::read(&path)?;
    let object_bytes = file.len() as u64;
    rig.upload(OBJECT, Bytes::from(file)).await?;
    std::fs::remove_file(&path)?;

    let direct = direct_session(rig).await?;
    let sql = format!("SELECT {} FROM cold WHERE {FILTER}", COLUMNS.join(", "));

    let node = rig.urls().first().ok_or("the rig has no node")?.clone();
    let plain = QuiverClient::connect(rig.client_config()).await?;
    let mut cfg = rig.client_config();
    cfg.accept_presigned = true;
    let opted = QuiverClient::connect(cfg).await?;
    let req = ScanRequest {
        source: Some(rig.source().to_string()),
        path: Some(rig.quiver_path(OBJECT)),
        columns: Some(COLUMNS.iter().map(|c| c.to_string()).collect()),
        filter: Some(FILTER.into()),
        ..Default::default()
    };

    // The baseline's first run fills its metadata cache and is not timed.
    let expected = content(&direct.sql(&sql).await?.collect().await?)?;
    let mut report = PresignReport {
        command,
        object_bytes,
        rows: expected.len(),
        runs: args.runs,
        link: String::new(),
        direct_ms: Vec::new(),
        direct_cached_ms: Vec::new(),
        read_through_ms: Vec::new(),
        presigned_ms: Vec::new(),
        warming_ms: Vec::new(),
        warm_ms: Vec::new(),
        warm_origin_bytes: Vec::new(),
        direct_vs_tuned: f64::NAN,
        read_through_vs_tuned: f64::NAN,
        presigned_vs_tuned: f64::NAN,
        warm_vs_tuned: f64::NAN,
    };
    let check = |mode: &str, got: Vec<String>| -> Result<(), BoxError> {
        if got != expected {
            return Err(
                format!("{mode} differs from DataFusion reading the object directly").into(),
            );
        }
        Ok(())
    };
    for run in 0..args.runs {
        let direct_first = run % 2 == 0;
        if direct_first {
            time_direct(rig, &direct, &sql, &mut report, &check).await?;
        }
        rig.evict_all().await?;
        let started = Instant::now();
        let got = plain.collect(&req).await?;
        report
            .read_through_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        check("Quiver read-through", content(&got.batches)?)?;

        rig.evict_all().await?;
        let urls_before = stats(&opted, &node).await?.presigned_urls;
        let started = Instant::now();
        let got = opted.collect(&req).await?;
        report
            .presigned_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        check("Quiver pre-signed", content(&got.batches)?)?;
        if stats(&opted, &node).await?.presigned_urls <= urls_before {
            return Err("the cold object was not handed out as a pre-signed URL".into());
        }
        warmed(&opted, &node).await?;
        report
            .warming_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);

        let before = stats(&plain, &node).await?.origin_bytes;
        let started = Instant::now();
        let got = plain.collect(&req).await?;
        report
            .warm_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        check("Quiver after warming", content(&got.batches)?)?;
        report
            .warm_origin_bytes
            .push(stats(&plain, &node).await?.origin_bytes - before);
        if !direct_first {
            time_direct(rig, &direct, &sql, &mut report, &check).await?;
        }
    }
    let tuned_ms = median(&report.direct_cached_ms);
    report.direct_vs_tuned = median(&report.direct_ms) / tuned_ms;
    report.read_through_vs_tuned = median(&report.read_through_ms) / tuned_ms;
    report.presigned_vs_tuned = median(&report.presigned_ms) / tuned_ms;
    report.warm_vs_tuned = median(&report.warm_ms) / tuned_ms;
    Ok(report)
}

/// One run of each DataFusion mode: a reader meeting the object for the
/// first time (a new session, so it reads the footer too, as the cold
/// Quiver modes do), and the long-lived session.
async fn time_direct(
    rig: &Rig,
    direct: &SessionContext,
    sql: &str,
    report: &mut PresignReport,
    check: &impl Fn(&str, Vec<String>) -> Result<(), BoxError>,
) -> Result<(), BoxError> {
    let started = Instant::now();
    let fresh = direct_session(rig).await?;
    let got = fresh.sql(sql).await?.collect().await?;
    report
        .direct_ms
        .push(started.elapsed().as_secs_f64() * 1000.0);
    check("direct", content(&got)?)?;

    let started = Instant::now();
    let got = direct.sql(sql).await?.collect().await?;
    report
        .direct_cached_ms
        .push(started.elapsed().as_secs_f64() * 1000.0);
    check("direct with its metadata cached", content(&got)?)
}

impl PresignReport {
    pub fn markdown(&self) -> String {
        let row = |mode: &str, ms: &[f64], ratio: f64| {
            format!("| {mode} | {:.1} | {ratio:.2}x |\n", median(ms))
        };
        let mut out = format!(
            "## A cold object: direct, read-through and pre-signed\n\n`{}`\n\n\
             One {:.1} MiB object of 16 float64 columns, `{}` on `{FILTER}` ({} rows, 1%), {}; \
             {} interleaved run(s), medians; the Quiver modes start from an evicted cache.\n\n\
             | mode | ms | time / long-lived DataFusion |\n| --- | ---: | ---: |\n",
            self.command,
            self.object_bytes as f64 / (1u64 << 20) as f64,
            COLUMNS.join(", "),
            self.rows,
            self.link,
            self.runs,
        );
        out.push_str(&row(
            "DataFusion direct (S3), long-lived session, footer cached",
            &self.direct_cached_ms,
            1.0,
        ));
        out.push_str(&row(
            "DataFusion direct (S3), new session",
            &self.direct_ms,
            self.direct_vs_tuned,
        ));
        out.push_str(&row(
            "Quiver read-through (cold)",
            &self.read_through_ms,
            self.read_through_vs_tuned,
        ));
        out.push_str(&row(
            "Quiver pre-signed (cold)",
            &self.presigned_ms,
            self.presigned_vs_tuned,
        ));
        out.push_str(&row(
            "Quiver after background warming",
            &self.warm_ms,
            self.warm_vs_tuned,
        ));
        out.push_str(&format!(
            "\nBackground warming finished {:.0} ms (median) after the pre-signed plan; the warm scans read {:?} bytes from S3.\n",
            median(&self.warming_ms),
            self.warm_origin_bytes
        ));
        out
    }
}
