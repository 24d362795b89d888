//! TPC-H through SQL: Q1, Q6 and Q14 run warm by DataFusion over
//! `QuiverTable`s in the client and sent over Flight SQL to the node,
//! against DataFusion reading the same Parquet files over the emulated S3
//! link.
//!
//! With `--nodes N` (N > 1) the nodes form a local cluster with the
//! lineitem table in 4N files, and the same statements also run over Flight
//! SQL to node 1, which plans them in distributed stages
//! (`sql.distributed = on`), and to node 2, which coordinates alone
//! (`off`): their times and the bytes each moved between nodes, from the
//! nodes' `stats`. Running nodes (`--nodes URL,...`, the EC2 rig) must be
//! configured so; the first statements check it.
//!
//! The baseline gets its best honest configuration: one long-lived session
//! (so its metadata cache stays warm) configured for the link
//! (`baseline::link_datafusion`: 16 partitions, filter pushdown off). Runs of the two modes are interleaved,
//! and every answer of both modes must be identical.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use bytes::Bytes;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use quiver_client::{QuiverClient, QuiverTable};
use serde::Serialize;
use tonic::transport::Channel;

use crate::baseline::link_datafusion;
use crate::common::Common;
use crate::compare::content;
use crate::data;
use crate::error::BoxError;
use crate::report::{self, describe_link};
use crate::rig::{NodeStats, Rig};
use crate::timing::median;

/// The tables local nodes declare for Flight SQL, so the queries name them
/// unqualified: `(name, path in the source)`.
fn sql_tables() -> Vec<(String, String)> {
    TABLES
        .iter()
        .map(|t| (t.to_string(), format!("quiver-bench/tpch/{t}/")))
        .collect()
}

/// The queries this workload runs, by TPC-H number.
pub const QUERIES: [usize; 3] = [1, 6, 14];
const TABLES: [&str; 2] = ["lineitem", "part"];

/// The tpch workload's flags.
#[derive(clap::Args)]
pub struct TpchArgs {
    /// TPC-H scale factor [default: 1, quick 0.05].
    #[arg(long)]
    scale: Option<f64>,
    /// Timed runs of each query in each mode [default: 5, quick 1].
    #[arg(long)]
    runs: Option<usize>,
}

impl TpchArgs {
    /// The flags, or the defaults of a full or `quick` run.
    fn settings(&self, quick: bool) -> TpchSettings {
        TpchSettings {
            scale: self.scale.unwrap_or(if quick { 0.05 } else { 1.0 }),
            runs: self.runs.unwrap_or(if quick { 1 } else { 5 }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TpchSettings {
    pub scale: f64,
    /// Timed runs of each query in each mode, interleaved.
    pub runs: usize,
}

/// Runs the workload on the flags' rig, with the tables declared for
/// Flight SQL, and writes `tpch.json` and `tpch.md`.
pub async fn main(common: &Common, args: TpchArgs, command: String) -> Result<(), BoxError> {
    let settings = args.settings(common.quick);
    let rig = Rig::start(
        &common
            .rig_options()?
            .sql_tables(sql_tables())
            .sql_distributed(&["on", "off"]),
    )
    .await?;
    let result = run(&rig, &settings, command).await;
    rig.stop().await?;
    let mut report = result?;
    report.link = describe_link(common.link(), common.s3.as_deref());
    report::write(&common.out, "tpch", &report, report.markdown())
}

#[derive(Debug, Serialize)]
pub struct QueryResult {
    pub query: String,
    pub rows: usize,
    pub datafusion_s3_ms: Vec<f64>,
    /// The first run over Quiver, from an empty cache.
    pub quiver_cold_ms: f64,
    pub quiver_warm_ms: Vec<f64>,
    /// The statement sent over Flight SQL to the node, warm.
    pub flight_sql_ms: Vec<f64>,
    /// Median DataFusion-over-S3 time divided by median warm Quiver time.
    pub speedup_warm: f64,
    /// The same for Flight SQL.
    pub speedup_flight_sql: f64,
}

/// One query over Flight SQL in a local cluster: node 1 running it in
/// distributed stages against node 2 coordinating it alone. Bytes are per
/// statement, averaged over the runs.
#[derive(Debug, Serialize)]
pub struct DistributedResult {
    pub query: String,
    pub single_ms: Vec<f64>,
    pub distributed_ms: Vec<f64>,
    /// Median single-coordinator time divided by median distributed time.
    pub speedup: f64,
    /// What the scans streamed to the single coordinator.
    pub single_coordinator_bytes: u64,
    /// What the distributed coordinator received from workers.
    pub distributed_coordinator_bytes: u64,
    /// What workers received from the stages below theirs.
    pub distributed_worker_bytes: u64,
    /// Stage tasks run, and those that read only their node's slots.
    pub tasks: u64,
    pub local_leaf_tasks: u64,
}

#[derive(Debug, Serialize)]
pub struct TpchReport {
    pub command: String,
    pub scale: f64,
    pub runs: usize,
    /// Local nodes (1, or a cluster with `--nodes N`).
    pub nodes: usize,
    /// lineitem's files.
    pub lineitem_files: usize,
    pub lineitem_rows: u64,
    pub data_bytes: u64,
    pub link: String,
    pub queries: Vec<QueryResult>,
    /// Distributed against single-coordinator statements; empty on one
    /// node.
    pub distributed: Vec<DistributedResult>,
}

async fn timed(ctx: &SessionContext, sql: &str) -> Result<(f64, Vec<RecordBatch>), BoxError> {
    let started = Instant::now();
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok((started.elapsed().as_secs_f64() * 1000.0, batches))
}

/// A Flight SQL client of node `index` (from 0).
async fn flight_sql(rig: &Rig, index: usize) -> Result<FlightSqlServiceClient<Channel>, BoxError> {
    let (channel, token) = rig.channel(index)?;
    let mut client = FlightSqlServiceClient::new(channel);
    if let Some(token) = token {
        client.set_token(token);
    }
    Ok(client)
}

/// Runs `sql` over Flight SQL and reads every endpoint.
async fn timed_flight_sql(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<(f64, Vec<RecordBatch>), BoxError> {
    let started = Instant::now();
    let info = client.execute(sql.to_string(), None).await?;
    let mut batches = Vec::new();
    for e in info.endpoint {
        let ticket = e.ticket.ok_or("a Flight SQL endpoint has no ticket")?;
        let stream = client.do_get(ticket).await?;
        batches.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok((started.elapsed().as_secs_f64() * 1000.0, batches))
}

/// Generates and uploads the two tables, lineitem in `files` files;
/// returns lineitem's rows and the bytes uploaded.
async fn upload(rig: &Rig, scale: f64, files: usize) -> Result<(u64, u64), BoxError> {
    let mut rows = 0;
    let mut bytes = 0;
    let parts = i32::try_from(files)?;
    for table in TABLES {
        let expected = match table {
            "lineitem" => 6_000_000.0 * scale,
            _ => 200_000.0 * scale,
        };
        let bar = data::rows_bar(expected as u64, table);
        let count = if table == "lineitem" { parts } else { 1 };
        for part in 1..=count {
            let name = format!("tpch/{table}/part-{}.parquet", part - 1);
            let path = rig.scratch().join(&name);
            let n = tokio::task::block_in_place(|| match table {
                "lineitem" => data::lineitem_part(&path, scale, part, parts, &bar),
                _ => data::part(&path, scale, &bar),
            })?;
            if table == "lineitem" {
                rows += n;
            }
            let file = std::fs::read(&path)?;
            bytes += file.len() as u64;
            rig.upload(&name, Bytes::from(file)).await?;
            std::fs::remove_file(&path)?;
        }
        bar.finish_and_clear();
    }
    Ok((rows, bytes))
}

/// The baseline: one session reading the files over the (emulated) S3 link,
/// configured as is fastest over such a link.
async fn datafusion_s3(rig: &Rig) -> Result<SessionContext, BoxError> {
    let ctx = SessionContext::new_with_config(link_datafusion());
    ctx.register_object_store(rig.bucket_url(), rig.baseline().clone());
    for table in TABLES {
        let url = format!(
            "{}/{}/",
            rig.bucket_url().as_str().trim_end_matches('/'),
            rig.object_path(&format!("tpch/{table}"))
        );
        ctx.register_parquet(table, url, ParquetReadOptions::default())
            .await?;
    }
    Ok(ctx)
}

/// The same queries over `QuiverTable`s served by the rig's nodes.
async fn over_quiver(rig: &Rig) -> Result<SessionContext, BoxError> {
    let client = QuiverClient::connect(rig.client_config()).await?;
    let ctx = SessionContext::new();
    for table in TABLES {
        let path = format!("{}/", rig.quiver_path(&format!("tpch/{table}")));
        let t = QuiverTable::try_new(client.clone(), rig.source(), path).await?;
        ctx.register_table(table, Arc::new(t))?;
    }
    Ok(ctx)
}

pub async fn run(rig: &Rig, args: &TpchSettings, command: String) -> Result<TpchReport, BoxError> {
    if !(args.scale > 0.0 && args.scale <= 100.0) {
        return Err("--scale must be in (0, 100]".into());
    }
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let nodes = rig.urls().len();
    let lineitem_files = if nodes > 1 { 4 * nodes } else { 1 };
    let (lineitem_rows, data_bytes) = upload(rig, args.scale, lineitem_files).await?;
    rig.evict_all().await?;
    let direct = datafusion_s3(rig).await?;
    // Flight SQL reads `100.00` in SQL text as an exact decimal where plain
    // DataFusion reads a double (docs/protocol.md, "Semantics"), so its
    // answers are checked against an untimed DataFusion with those semantics.
    let exact = quiver_sql::session::with_exact_numbers(datafusion_s3(rig).await?);
    let quiver = over_quiver(rig).await?;
    let mut sql_client = flight_sql(rig, 0).await?;
    let mut queries = Vec::new();
    for n in QUERIES {
        let sql = quiver_testkit::tpch::query(n);
        // The baseline's first run warms its metadata cache and is not
        // timed; Quiver's first run is its cold run.
        let (_, expected) = timed(&direct, sql).await?;
        let expected = content(&expected)?;
        let (cold, first) = timed(&quiver, sql).await?;
        if content(&first)? != expected {
            return Err(format!("Q{n} over Quiver differs from DataFusion over S3").into());
        }
        let (_, expected_exact) = timed(&exact, sql).await?;
        let expected_exact = content(&expected_exact)?;
        // Flight SQL's first statement lists the lake for its catalog; that
        // run is not timed either.
        let (_, first) = timed_flight_sql(&mut sql_client, sql).await?;
        if content(&first)? != expected_exact {
            return Err(format!("Q{n} over Flight SQL differs from DataFusion over S3").into());
        }
        let mut result = QueryResult {
            query: format!("Q{n}"),
            rows: expected.len(),
            datafusion_s3_ms: Vec::new(),
            quiver_cold_ms: cold,
            quiver_warm_ms: Vec::new(),
            flight_sql_ms: Vec::new(),
            speedup_warm: f64::NAN,
            speedup_flight_sql: f64::NAN,
        };
        for _ in 0..args.runs {
            let (ms, got) = timed(&direct, sql).await?;
            result.datafusion_s3_ms.push(ms);
            if content(&got)? != expected {
                return Err(format!("Q{n} over S3 changed between runs").into());
            }
            let (ms, got) = timed(&quiver, sql).await?;
            result.quiver_warm_ms.push(ms);
            if content(&got)? != expected {
                return Err(format!("Q{n} over Quiver differs from DataFusion over S3").into());
            }
            let (ms, got) = timed_flight_sql(&mut sql_client, sql).await?;
            result.flight_sql_ms.push(ms);
            if content(&got)? != expected_exact {
                return Err(format!("Q{n} over Flight SQL differs from DataFusion over S3").into());
            }
        }
        let direct_ms = median(&result.datafusion_s3_ms);
        result.speedup_warm = direct_ms / median(&result.quiver_warm_ms);
        result.speedup_flight_sql = direct_ms / median(&result.flight_sql_ms);
        queries.push(result);
    }
    let distributed = if nodes > 1 {
        distributed(rig, args.runs, &exact).await?
    } else {
        Vec::new()
    };
    Ok(TpchReport {
        command,
        scale: args.scale,
        runs: args.runs,
        nodes,
        lineitem_files,
        lineitem_rows,
        data_bytes,
        link: String::new(),
        queries,
        distributed,
    })
}

/// Each query over Flight SQL to node 1 (distributed stages) and node 2
/// (one coordinator), `runs` times each in alternating order after an
/// untimed first run of each, every answer checked against `exact`.
async fn distributed(
    rig: &Rig,
    runs: usize,
    exact: &SessionContext,
) -> Result<Vec<DistributedResult>, BoxError> {
    let mut staged = flight_sql(rig, 0).await?;
    let mut alone = flight_sql(rig, 1).await?;
    let mut results = Vec::new();
    for n in QUERIES {
        let sql = quiver_testkit::tpch::query(n);
        let (_, expected) = timed(exact, sql).await?;
        let expected = content(&expected)?;
        let mut result = DistributedResult {
            query: format!("Q{n}"),
            single_ms: Vec::new(),
            distributed_ms: Vec::new(),
            speedup: f64::NAN,
            single_coordinator_bytes: 0,
            distributed_coordinator_bytes: 0,
            distributed_worker_bytes: 0,
            tasks: 0,
            local_leaf_tasks: 0,
        };
        for (client, node, staged) in [(&mut staged, 1, true), (&mut alone, 2, false)] {
            let before = rig.stats().await?;
            let (_, got) = timed_flight_sql(client, sql).await?;
            let moved = rig.stats().await? - before;
            if content(&got)? != expected {
                return Err(format!("Q{n} on node {node} differs from DataFusion over S3").into());
            }
            if (moved.sql_coordinator_bytes > 0) != staged {
                let mode = if staged { "on" } else { "off" };
                return Err(format!(
                    "Q{n} on node {node} {} in distributed stages: the comparison needs sql.distributed = {mode} there",
                    if staged { "did not run" } else { "ran" }
                )
                .into());
            }
        }
        let mut single_bytes = 0u64;
        let mut stages: Vec<NodeStats> = Vec::new();
        for run in 0..runs {
            for distributed in [run % 2 == 0, run % 2 == 1] {
                let client = if distributed { &mut staged } else { &mut alone };
                let before = rig.stats().await?;
                let (ms, got) = timed_flight_sql(client, sql).await?;
                let moved = rig.stats().await? - before;
                if content(&got)? != expected {
                    return Err(
                        format!("Q{n} over the cluster differs from DataFusion over S3").into(),
                    );
                }
                if distributed {
                    result.distributed_ms.push(ms);
                    stages.push(moved);
                } else {
                    result.single_ms.push(ms);
                    single_bytes = single_bytes.saturating_add(moved.bytes_served);
                }
            }
        }
        let per_run = |total: u64| total / runs as u64;
        let sum = |f: fn(&NodeStats) -> u64| per_run(stages.iter().map(f).sum());
        result.single_coordinator_bytes = per_run(single_bytes);
        result.distributed_coordinator_bytes = sum(|s| s.sql_coordinator_bytes);
        result.distributed_worker_bytes = sum(|s| s.sql_worker_bytes);
        result.tasks = sum(|s| s.sql_tasks);
        result.local_leaf_tasks = sum(|s| s.sql_local_leaf_tasks);
        result.speedup = median(&result.single_ms) / median(&result.distributed_ms);
        results.push(result);
    }
    Ok(results)
}

impl TpchReport {
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "## TPC-H through QuiverTable and Flight SQL\n\n`{}`\n\nScale {} ({} lineitem rows, {:.1} MiB of Parquet), {}; {} interleaved run(s) per query and mode, medians.\n\n\
             | query | rows | DataFusion over S3 ms | QuiverTable cold ms | QuiverTable warm ms | warm speedup | Flight SQL ms | Flight SQL speedup |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
            self.command,
            self.scale,
            self.lineitem_rows,
            self.data_bytes as f64 / (1u64 << 20) as f64,
            self.link,
            self.runs
        );
        for q in &self.queries {
            out.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.2}x | {:.1} | {:.2}x |\n",
                q.query,
                q.rows,
                median(&q.datafusion_s3_ms),
                q.quiver_cold_ms,
                median(&q.quiver_warm_ms),
                q.speedup_warm,
                median(&q.flight_sql_ms),
                q.speedup_flight_sql
            ));
        }
        if !self.distributed.is_empty() {
            out.push_str(&format!(
                "\n### Distributed stages against one coordinator ({} local nodes, lineitem in {} files)\n\n\
                 Flight SQL to node 1 (`sql.distributed = on`) and to node 2 (`off`), alternating, medians; bytes per statement from the nodes' `stats`: what reached the coordinator (the scans' streams for one coordinator, the workers' stage output for stages) and what workers sent each other.\n\n\
                 | query | one coordinator ms | distributed ms | speedup | bytes to one coordinator | bytes to distributed coordinator | ratio | bytes between workers | tasks (local leaves) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
                self.nodes, self.lineitem_files
            ));
            for d in &self.distributed {
                out.push_str(&format!(
                    "| {} | {:.1} | {:.1} | {:.2}x | {} | {} | {:.2}% | {} | {} ({}) |\n",
                    d.query,
                    median(&d.single_ms),
                    median(&d.distributed_ms),
                    d.speedup,
                    d.single_coordinator_bytes,
                    d.distributed_coordinator_bytes,
                    100.0 * d.distributed_coordinator_bytes as f64
                        / d.single_coordinator_bytes.max(1) as f64,
                    d.distributed_worker_bytes,
                    d.tasks,
                    d.local_leaf_tasks
                ));
            }
        }
        out
    }
}
