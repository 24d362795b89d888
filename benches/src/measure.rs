//! Runs one workload case in one mode and turns what happened into a
//! [`Measurement`]: latencies, throughput, and the traffic counters read
//! before and after from the baseline store or the nodes' `stats`.

use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::error::BoxError;
use crate::readers::{Mode, Query, Readers, Reply};

/// Latency distribution of one case, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Latency {
    /// The fastest request: with `max`, the spread of the runs.
    #[serde(default)]
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// Nearest-rank percentiles: with few samples the higher ones are the
    /// slowest request, never an interpolation that no request took.
    pub fn of(samples: &[f64]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        let mut v = samples.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let rank = |p: f64| {
            let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
            v[i.clamp(1, v.len()) - 1]
        };
        Latency {
            min: v[0],
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
            max: v[v.len() - 1],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub workload: String,
    pub case: String,
    pub mode: Mode,
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub latency_ms: Latency,
    pub latencies_ms: Vec<f64>,
    pub wall_s: f64,
    pub requests_per_s: f64,
    /// Arrow data delivered into client memory per second of wall time.
    pub throughput_mb_s: f64,
    pub rows: u64,
    pub arrow_bytes: u64,
    /// Chunk hits over lookups on the nodes; `None` for the baselines.
    pub hit_ratio: Option<f64>,
    pub chunk_hits: u64,
    pub chunk_misses: u64,
    pub origin_bytes: u64,
    pub s3_requests: u64,
    /// Bytes that crossed the network to the client: Flight IPC for Quiver,
    /// the S3 responses for the baselines.
    pub bytes_to_client: u64,
    /// The node's peak RSS during this case; `None` for baselines or remote
    /// nodes.
    pub peak_rss_bytes: Option<u64>,
    /// DataFusion over S3's mean latency over this mode's: the strongest
    /// baseline, so every ratio the suite reports is against it.
    pub speedup_vs_datafusion: Option<f64>,
}

pub fn bar(len: u64, message: String) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>40} [{bar:30}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// Runs `queries` in `mode` with up to `concurrency` in flight and returns
/// the measurement plus every reply in query order, which callers compare
/// across modes.
pub async fn run(
    readers: &Readers<'_>,
    workload: &str,
    case: &str,
    mode: Mode,
    queries: &[Query],
    concurrency: usize,
) -> Result<(Measurement, Vec<Reply>), BoxError> {
    let rig = readers.rig();
    let progress = bar(
        queries.len() as u64,
        format!("{workload} {case}: {}", mode.label()),
    );
    let store_before = rig.baseline().traffic();
    let node_before = rig.stats().await?;
    rig.reset_peak_rss();
    let started = Instant::now();
    let results: Vec<(f64, Reply)> = futures::stream::iter(queries.iter().map(|q| {
        let progress = progress.clone();
        async move {
            let t = Instant::now();
            let reply = readers
                .read(mode, q)
                .await
                .map_err(|e| format!("{} of {} failed: {e}", mode.label(), q.name))?;
            progress.inc(1);
            Ok::<_, BoxError>((t.elapsed().as_secs_f64() * 1000.0, reply))
        }
    }))
    .buffered(concurrency.max(1))
    .try_collect()
    .await?;
    let wall_s = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    let store = rig.baseline().traffic() - store_before;
    let node = rig.stats().await? - node_before;

    let latencies: Vec<f64> = results.iter().map(|(ms, _)| *ms).collect();
    let replies: Vec<Reply> = results.iter().map(|(_, r)| *r).collect();
    let rows = replies.iter().map(|r| r.rows).sum();
    let arrow_bytes = replies.iter().map(|r| r.arrow_bytes).sum();
    let (hit_ratio, origin_bytes, s3_requests, bytes_to_client, peak_rss_bytes) =
        if mode.is_quiver() {
            (
                node.hit_ratio(),
                node.origin_bytes,
                node.origin_requests,
                node.bytes_served,
                rig.peak_rss(),
            )
        } else {
            (None, store.bytes, store.requests, store.bytes, None)
        };
    Ok((
        Measurement {
            workload: workload.into(),
            case: case.into(),
            mode,
            requests: queries.len(),
            concurrency,
            latency_ms: Latency::of(&latencies),
            latencies_ms: latencies,
            wall_s,
            requests_per_s: queries.len() as f64 / wall_s,
            throughput_mb_s: arrow_bytes as f64 / 1e6 / wall_s,
            rows,
            arrow_bytes,
            hit_ratio,
            chunk_hits: if mode.is_quiver() { node.hits } else { 0 },
            chunk_misses: if mode.is_quiver() { node.misses } else { 0 },
            origin_bytes,
            s3_requests,
            bytes_to_client,
            peak_rss_bytes,
            speedup_vs_datafusion: None,
        },
        replies,
    ))
}

/// Runs `queries` one at a time, each in every mode of `modes` in turn, so
/// that no mode is timed in a quieter or a busier stretch of the run than
/// another; the order of the modes rotates from one query to the next, so
/// none always follows the same one (Quiver cold still comes before warm,
/// which it may warm). Cold runs start from an evicted cache: before each of them with
/// `evict_each_cold` (and each warm run then follows untimed reads that
/// bring its query into the hot tier, as re-reading it would), otherwise
/// once, before the first, so that they warm the cache as the queries go,
/// as a cold trace does. Returns one measurement per mode, in `modes`
/// order.
pub async fn interleaved(
    readers: &Readers<'_>,
    workload: &str,
    case: &str,
    modes: &[Mode],
    queries: &[Query],
    evict_each_cold: bool,
) -> Result<Vec<(Measurement, Vec<Reply>)>, BoxError> {
    let rig = readers.rig();
    if modes.contains(&Mode::QuiverCold) && !evict_each_cold {
        rig.evict_all().await?;
    }
    let mut runs: Vec<Vec<(Measurement, Vec<Reply>)>> = modes.iter().map(|_| Vec::new()).collect();
    for (round, q) in queries.iter().enumerate() {
        for i in rotation(modes, round) {
            let mode = modes[i];
            if mode == Mode::QuiverCold && evict_each_cold {
                rig.evict_all().await?;
            }
            if mode == Mode::QuiverWarm && evict_each_cold {
                warm_up(readers, q).await?;
            }
            runs[i].push(run(readers, workload, case, mode, std::slice::from_ref(q), 1).await?);
        }
    }
    runs.into_iter().map(merge).collect()
}

/// The indices of `modes` in the order round `round` runs them: rotated by
/// the round, with Quiver cold moved before Quiver warm when the rotation
/// put it after.
fn rotation(modes: &[Mode], round: usize) -> Vec<usize> {
    let n = modes.len();
    let mut order: Vec<usize> = (0..n).map(|k| (k + round) % n.max(1)).collect();
    let at = |order: &[usize], mode| order.iter().position(|&i| modes[i] == mode);
    if let (Some(cold), Some(warm)) = (at(&order, Mode::QuiverCold), at(&order, Mode::QuiverWarm)) {
        if warm < cold {
            order.swap(warm, cold);
        }
    }
    order
}

/// Untimed reads of `q` that may bring it into the hot tier: the first
/// miss only remembers its column chunks, the second fills them in the
/// background.
const WARM_UP_READS: usize = 5;

/// Reads `q` through Quiver, untimed, until the hot tier answers all of it
/// (every endpoint's scan a whole hit) or
/// [`WARM_UP_READS`] reads were not enough (as when the tier cannot hold
/// what the query reads).
async fn warm_up(readers: &Readers<'_>, q: &Query) -> Result<(), BoxError> {
    let rig = readers.rig();
    for _ in 0..WARM_UP_READS {
        let before = rig.stats().await?;
        readers.read(Mode::QuiverWarm, q).await?;
        let read = rig.stats().await? - before;
        // Every scan of the read (one per endpoint) answered from the tier.
        if read.hot_hits > 0 && read.hot_short == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Joins runs of one case and mode measured separately (cold runs, each
/// after an eviction) into one measurement.
pub fn merge(runs: Vec<(Measurement, Vec<Reply>)>) -> Result<(Measurement, Vec<Reply>), BoxError> {
    // Runs the hot tier answered alone make no chunk lookups and count as
    // all hits, as `NodeStats::hit_ratio` counts them.
    let hot_only = runs
        .iter()
        .all(|(r, _)| r.chunk_hits + r.chunk_misses == 0 && r.hit_ratio == Some(1.0));
    let mut runs = runs.into_iter();
    let (mut m, mut replies) = runs.next().ok_or("no runs to merge")?;
    for (r, more) in runs {
        m.requests += r.requests;
        m.latencies_ms.extend(r.latencies_ms);
        m.wall_s += r.wall_s;
        m.rows += r.rows;
        m.arrow_bytes += r.arrow_bytes;
        m.chunk_hits += r.chunk_hits;
        m.chunk_misses += r.chunk_misses;
        m.origin_bytes += r.origin_bytes;
        m.s3_requests += r.s3_requests;
        m.bytes_to_client += r.bytes_to_client;
        m.peak_rss_bytes = m.peak_rss_bytes.max(r.peak_rss_bytes);
        replies.extend(more);
    }
    m.latency_ms = Latency::of(&m.latencies_ms);
    m.requests_per_s = m.requests as f64 / m.wall_s;
    m.throughput_mb_s = m.arrow_bytes as f64 / 1e6 / m.wall_s;
    let lookups = m.chunk_hits + m.chunk_misses;
    m.hit_ratio = if !m.mode.is_quiver() {
        None
    } else if lookups > 0 {
        Some(m.chunk_hits as f64 / lookups as f64)
    } else {
        hot_only.then_some(1.0)
    };
    Ok((m, replies))
}

/// Every mode must return the same rows for the same request; a benchmark
/// of a wrong answer is worthless.
pub fn check_same(
    case: &str,
    mode: Mode,
    expected: &[Reply],
    got: &[Reply],
    queries: &[Query],
) -> Result<(), BoxError> {
    for ((e, g), q) in expected.iter().zip(got).zip(queries) {
        if e.rows != g.rows {
            return Err(format!(
                "{case}: {} returned {} rows for {}, the direct reader {}",
                mode.label(),
                g.rows,
                q.name,
                e.rows
            )
            .into());
        }
    }
    Ok(())
}

/// Every mode must return the same content, not just as many rows: each
/// distinct query of a case is read once more in every mode, untimed, and
/// its [`Digest`](crate::compare::Digest) compared with the direct
/// reader's. Quiver cold and warm share one code path, so warm stands for
/// both.
pub async fn check_content(
    readers: &Readers<'_>,
    case: &str,
    queries: &[Query],
) -> Result<(), BoxError> {
    let mut seen = std::collections::HashSet::new();
    for q in queries {
        if !seen.insert(format!(
            "{}|{:?}|{:?}",
            q.name,
            q.columns,
            q.filter.as_ref().map(|p| p.sql())
        )) {
            continue;
        }
        let want = readers.digest(Mode::Direct, q).await?;
        for mode in [Mode::Datafusion, Mode::QuiverWarm] {
            let got = readers.digest(mode, q).await?;
            if got != want {
                return Err(format!(
                    "{case}: {} returned other content than the direct reader for {} ({} rows, digest {:x}; direct {} rows, {:x})",
                    mode.label(),
                    q.name,
                    got.rows,
                    got.sum,
                    want.rows,
                    want.sum
                )
                .into());
            }
        }
    }
    Ok(())
}

/// Fills in each measurement's speed-up against DataFusion over S3 in the
/// same case, by median latency: one slow request on a noisy machine moves
/// a mean, not a median.
pub fn fill_speedups(measurements: &mut [Measurement]) {
    let baseline: Vec<(String, String, f64)> = measurements
        .iter()
        .filter(|m| m.mode == Mode::Datafusion)
        .map(|m| (m.workload.clone(), m.case.clone(), m.latency_ms.p50))
        .collect();
    for m in measurements.iter_mut() {
        m.speedup_vs_datafusion = baseline
            .iter()
            .find(|(w, c, _)| *w == m.workload && *c == m.case)
            .map(|(_, _, d)| d / m.latency_ms.p50);
    }
}

#[cfg(test)]
mod tests {
    use super::{rotation, Latency, Mode};

    /// Every round runs each mode once; over as many rounds as modes, each
    /// mode runs first once; cold always precedes warm.
    #[test]
    fn modes_rotate_and_cold_precedes_warm() {
        let modes = Mode::ALL;
        let mut first = Vec::new();
        for round in 0..modes.len() {
            let order = rotation(&modes, round);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2, 3]);
            let pos = |m| order.iter().position(|&i| modes[i] == m).unwrap();
            assert!(pos(Mode::QuiverCold) < pos(Mode::QuiverWarm), "{order:?}");
            first.push(order[0]);
        }
        first.sort_unstable();
        first.dedup();
        assert!(first.len() >= 3, "{first:?}");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = Latency::of(&samples);
        assert_eq!(
            (l.min, l.p50, l.p95, l.p99, l.max),
            (1.0, 50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(l.mean, 50.5);
        let l = Latency::of(&[3.0, 1.0, 2.0]);
        assert_eq!((l.p50, l.p99), (2.0, 3.0));
        assert_eq!(Latency::of(&[]).p50, 0.0);
    }
}
