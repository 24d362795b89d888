//! DataFusion as the baseline: the configurations a user who tunes it
//! without Quiver would run, and the trials that pick the fastest of them.
//! Every workload that puts Quiver beside DataFusion takes its baseline from
//! here, so they all give it the same best honest chance.

use std::time::Instant;

use datafusion::prelude::{SessionConfig, SessionContext};
use futures::TryStreamExt;
use serde::Serialize;

use crate::error::BoxError;
use crate::timing::{fastest, ms};

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

/// The configurations DataFusion is tried with on each link: more
/// partitions hide more of a slow link's latency, pushdown saves bytes.
pub fn candidates() -> Vec<Candidate> {
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
const TRIALS: usize = 2;

/// DataFusion as a skeptic would tune it for scans of local files: filter
/// pushdown and filter reordering on, one partition per core.
pub fn tuned_datafusion() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    config
}

/// DataFusion as a skeptic would tune it to read S3 over a link: 16
/// partitions with filter pushdown off, the configuration the `node`
/// workload's trials pick over its sweep of link latencies
/// (docs/benchmarks.md, "Single node"). Many byte ranges in flight hide
/// the link's latency, and that count is of requests, not cores; pushdown
/// would add a round trip per row group.
/// The other workloads' S3 baselines use it, as the pre-signed client reads.
pub fn link_datafusion() -> SessionConfig {
    let mut config = tuned_datafusion().with_target_partitions(16);
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = false;
    parquet.reorder_filters = false;
    config
}

/// Rows `sql` returns, read batch by batch and dropped, as a streaming
/// consumer would.
pub async fn datafusion_rows(ctx: &SessionContext, sql: &str) -> Result<u64, BoxError> {
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
pub async fn best_configuration(
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
