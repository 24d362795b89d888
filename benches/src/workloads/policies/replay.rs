//! The replay: each trace through foyer's memory cache, built as the
//! node's memory tier, under every eviction policy at several sizes (the
//! miss-ratio curves), and split between the A/B pair's cohorts.

use std::path::Path;

use quiver_server::cache::{eviction, MEMORY_SHARDS};
use quiver_server::config::Eviction;
use serde::Serialize;

use crate::data;
use crate::error::BoxError;
use crate::workloads::policies::settings::PoliciesSettings;
use crate::workloads::policies::traces::{chunk_len, chunked, in_first_cohort, load, Chunked};

const MIB: u64 = 1 << 20;

/// What an entry weighs beside its bytes: about what the node's weigher
/// adds for the source, path and ETag in its key, plus 64.
const BYTES_PER_KEY: usize = 128;

/// A memory tier as the node builds it, holding chunk lengths.
fn memory_tier(policy: Eviction, capacity: u64, chunk: u64) -> foyer::Cache<(u32, u64), u64> {
    foyer::CacheBuilder::new(capacity as usize)
        .with_shards(MEMORY_SHARDS)
        .with_eviction_config(eviction(policy, capacity, chunk))
        .with_weighter(|_: &(u32, u64), len: &u64| *len as usize + BYTES_PER_KEY)
        .build()
}

/// What one replay cost.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Outcome {
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub hit_bytes: u64,
    pub origin_bytes: u64,
    /// Modelled origin wait over the link, summed over requests, in ms.
    pub wait_ms: f64,
    pub wait_p99_ms: f64,
}

impl Outcome {
    pub fn byte_miss_ratio(&self) -> f64 {
        let total = self.hit_bytes + self.origin_bytes;
        if total == 0 {
            0.0
        } else {
            self.origin_bytes as f64 / total as f64
        }
    }

    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// Replays the reads `include` selects through `cache`.
fn replay(
    t: &Chunked,
    chunk: u64,
    cache: &foyer::Cache<(u32, u64), u64>,
    include: impl Fn(u32) -> bool,
    args: &PoliciesSettings,
) -> Outcome {
    let mut out = Outcome::default();
    let mut waits = Vec::new();
    let per_byte_ms = 1000.0 / (args.bandwidth_mb_s * 1e6);
    for (client, object, range) in &t.reads {
        if !include(*client) {
            continue;
        }
        let size = t.sizes[*object as usize];
        let mut missed = 0;
        for index in range.clone() {
            let len = chunk_len(size, chunk, index);
            if cache.get(&(*object, index)).is_some() {
                out.hits += 1;
                out.hit_bytes += len;
            } else {
                out.misses += 1;
                missed += len;
                cache.insert((*object, index), len);
            }
        }
        out.requests += 1;
        out.origin_bytes += missed;
        let wait = if missed > 0 {
            args.latency_ms + missed as f64 * per_byte_ms
        } else {
            0.0
        };
        out.wait_ms += wait;
        waits.push(wait);
    }
    waits.sort_by(f64::total_cmp);
    if let Some(&p) = waits.get((waits.len() * 99 / 100).min(waits.len().saturating_sub(1))) {
        out.wait_p99_ms = p;
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub policy: &'static str,
    pub size_pct: f64,
    pub capacity_mib: f64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cohort {
    pub policy: &'static str,
    pub clients_pct: u32,
    pub clients: usize,
    pub capacity_mib: f64,
    pub outcome: Outcome,
    /// The same cohort and capacity under the other policy: what the
    /// split would have shown had both cohorts run it.
    pub other_policy: &'static str,
    pub other: Outcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct TraceReport {
    pub trace: String,
    pub reads: usize,
    pub objects: usize,
    pub footprint_mib: f64,
    pub points: Vec<Point>,
    pub ab: Vec<Cohort>,
}

/// Replays each trace of `args` through every policy at every size, and
/// through the A/B pair if there is one.
pub fn run(args: &PoliciesSettings) -> Result<Vec<TraceReport>, BoxError> {
    if args.chunk == 0 || args.sizes_pct.iter().any(|p| !(*p > 0.0 && *p <= 100.0)) {
        return Err("cache sizes must be percentages in (0, 100] and the chunk above 0".into());
    }
    if args.split_pct == 0 || args.split_pct >= 100 {
        return Err("--split must leave both cohorts some clients (1 to 99)".into());
    }
    let mut traces = Vec::new();
    for source in &args.traces {
        let trace = load(source, args)?;
        let t = chunked(&trace, args.chunk);
        let steps = (Eviction::ALL.len() * args.sizes_pct.len()) as u64;
        let bar = data::count_bar(steps, &format!("replaying {}", trace.name));
        let mut points = Vec::new();
        for &pct in &args.sizes_pct {
            let capacity = (t.footprint as f64 * pct / 100.0) as u64;
            for policy in Eviction::ALL {
                let cache = memory_tier(policy, capacity, args.chunk);
                let outcome = replay(&t, args.chunk, &cache, |_| true, args);
                points.push(Point {
                    policy: policy.name(),
                    size_pct: pct,
                    capacity_mib: capacity as f64 / MIB as f64,
                    outcome,
                });
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        let mut ab = Vec::new();
        if let Some((first, second)) = args.ab {
            let capacity = t.footprint as f64 * args.ab_size_pct / 100.0;
            let first_clients: Vec<bool> = t
                .clients
                .iter()
                .map(|c| in_first_cohort(c, args.split_pct))
                .collect();
            for (policy, other, mine, pct) in [
                (first, second, true, args.split_pct),
                (second, first, false, 100 - args.split_pct),
            ] {
                let share = (capacity * f64::from(pct) / 100.0) as u64;
                let cohort = |p: Eviction| {
                    replay(
                        &t,
                        args.chunk,
                        &memory_tier(p, share, args.chunk),
                        |c| first_clients[c as usize] == mine,
                        args,
                    )
                };
                ab.push(Cohort {
                    policy: policy.name(),
                    clients_pct: pct,
                    clients: first_clients.iter().filter(|&&f| f == mine).count(),
                    capacity_mib: share as f64 / MIB as f64,
                    outcome: cohort(policy),
                    other_policy: other.name(),
                    other: cohort(other),
                });
            }
        }
        traces.push(TraceReport {
            trace: trace.name,
            reads: t.reads.len(),
            objects: t.sizes.len(),
            footprint_mib: t.footprint as f64 / MIB as f64,
            points,
            ab,
        });
    }
    Ok(traces)
}

/// The policy with the lowest mean byte miss ratio over every trace and
/// size.
pub fn best(traces: &[TraceReport]) -> &'static str {
    Eviction::ALL
        .into_iter()
        .map(|p| {
            let ratios: Vec<f64> = traces
                .iter()
                .flat_map(|t| &t.points)
                .filter(|pt| pt.policy == p.name())
                .map(|pt| pt.outcome.byte_miss_ratio())
                .collect();
            (
                p.name(),
                ratios.iter().sum::<f64>() / ratios.len().max(1) as f64,
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(name, _)| name)
        .unwrap_or("lru")
}

impl TraceReport {
    /// This trace's section of the report: the miss-ratio table, and the
    /// A/B's if there is one.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "## Trace `{}`: {} reads of {} objects, footprint {:.0} MiB\n\n| size | capacity MiB |",
            self.trace, self.reads, self.objects, self.footprint_mib
        );
        for p in Eviction::ALL {
            md.push_str(&format!(" {} |", p.name()));
        }
        md.push_str("\n| --- | --- |");
        md.push_str(&" --- |".repeat(Eviction::ALL.len()));
        md.push('\n');
        let mut sizes: Vec<f64> = self.points.iter().map(|p| p.size_pct).collect();
        sizes.dedup();
        for size in sizes {
            let row: Vec<&Point> = self.points.iter().filter(|p| p.size_pct == size).collect();
            let capacity = row.first().map(|p| p.capacity_mib).unwrap_or(0.0);
            md.push_str(&format!("| {size}% | {capacity:.0} |"));
            let best = row
                .iter()
                .map(|p| p.outcome.byte_miss_ratio())
                .fold(f64::MAX, f64::min);
            for p in &row {
                let r = p.outcome.byte_miss_ratio();
                if r == best {
                    md.push_str(&format!(" **{r:.3}** |"));
                } else {
                    md.push_str(&format!(" {r:.3} |"));
                }
            }
            md.push('\n');
        }
        md.push('\n');
        if !self.ab.is_empty() {
            md.push_str(
                "A/B, clients split by a stable hash of their id, each cohort with its share of the capacity; \
                 the last column is the same cohort and capacity under the other policy:\n\n\
                 | cohort | policy | clients | capacity MiB | requests | hit ratio | byte miss ratio | origin MiB | origin wait mean ms | p99 ms | other policy's byte miss ratio |\n\
                 | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
            );
            for c in &self.ab {
                let o = &c.outcome;
                md.push_str(&format!(
                    "| {}% | {} | {} | {:.0} | {} | {:.3} | {:.3} | {:.0} | {:.1} | {:.1} | {} {:.3} |\n",
                    c.clients_pct,
                    c.policy,
                    c.clients,
                    c.capacity_mib,
                    o.requests,
                    o.hit_ratio(),
                    o.byte_miss_ratio(),
                    o.origin_bytes as f64 / MIB as f64,
                    o.wait_ms / o.requests.max(1) as f64,
                    o.wait_p99_ms,
                    c.other_policy,
                    c.other.byte_miss_ratio(),
                ));
            }
            md.push('\n');
        }
        md
    }
}

/// One miss-ratio curve plot per trace: `policies-<trace>.png`.
pub fn plot(dir: &Path, traces: &[TraceReport]) -> Result<(), BoxError> {
    for t in traces {
        let series: Vec<(String, Vec<(f64, f64)>)> = Eviction::ALL
            .iter()
            .map(|p| {
                let points = t
                    .points
                    .iter()
                    .filter(|pt| pt.policy == p.name())
                    .map(|pt| (pt.capacity_mib, pt.outcome.byte_miss_ratio()))
                    .collect();
                (p.name().to_string(), points)
            })
            .collect();
        let name: String = t
            .trace
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        crate::plot::lines(
            &dir.join(format!("policies-{name}.png")),
            &format!("Trace {}: byte miss ratio by cache size", t.trace),
            "memory tier (MiB, log)",
            "origin bytes / bytes read",
            &series,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::policies::traces::zipf_trace;

    fn quick() -> PoliciesSettings {
        PoliciesSettings {
            requests: 400,
            objects: 20,
            sizes_pct: vec![5.0, 100.0],
            ..PoliciesSettings::quick()
        }
    }

    #[test]
    fn a_cache_as_large_as_the_footprint_misses_each_chunk_once() {
        let args = quick();
        let trace = zipf_trace(&args);
        let t = chunked(&trace, args.chunk);
        // Room for every chunk with its key overhead, in every shard.
        let cache = memory_tier(Eviction::Lru, t.footprint * 4, args.chunk);
        let o = replay(&t, args.chunk, &cache, |_| true, &args);
        assert_eq!(o.origin_bytes, t.footprint);
        let distinct: std::collections::HashSet<(u32, u64)> = t
            .reads
            .iter()
            .flat_map(|(_, o, r)| r.clone().map(move |i| (*o, i)))
            .collect();
        assert_eq!(o.misses, distinct.len() as u64);
    }

    #[test]
    fn smaller_caches_miss_more_and_the_split_is_stable() {
        let args = quick();
        let traces = run(&args).unwrap();
        let zipf = &traces[0];
        for policy in Eviction::ALL {
            let ratios: Vec<f64> = zipf
                .points
                .iter()
                .filter(|p| p.policy == policy.name())
                .map(|p| p.outcome.byte_miss_ratio())
                .collect();
            assert!(ratios[0] > ratios[1], "{policy:?}: {ratios:?}");
        }
        let total: u64 = zipf.ab.iter().map(|c| c.outcome.requests).sum();
        assert_eq!(total as usize, zipf.reads);
        assert_eq!(
            in_first_cohort("client-7", 80),
            in_first_cohort("client-7", 80)
        );
        let first = (0..1000)
            .filter(|i| in_first_cohort(&format!("client-{i}"), 80))
            .count();
        assert!(
            (750..850).contains(&first),
            "{first} of 1000 in the 80% cohort"
        );
    }
}
