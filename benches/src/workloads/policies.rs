//! Eviction on evidence: one access trace replayed through every eviction
//! policy the node's configuration offers, at several memory-tier sizes,
//! giving each policy's miss-ratio curve and the origin bytes it costs.
//!
//! The replay uses foyer's own policies in a memory cache built like the
//! node's memory tier (`quiver_server::cache`: its shard count, its
//! per-policy configuration, chunks weighed by their bytes), so the curves
//! are those of the code that serves reads, not of a model of it. Requests
//! are cut into aligned chunks as the node cuts them.
//!
//! Traces:
//! - `zipf`: a lake read by many clients: objects of 4 to 64 MiB picked by
//!   Zipf, most requests reading a few column-chunk-sized ranges of them,
//!   some whole, and a share of one-off scans of random cold objects (the
//!   traffic a scan-resistant policy is for);
//! - `istziio`: the four ISTZIIO traces of the `trace` workload, in order;
//! - a JSON-lines file: `{"client", "object", "size", "start", "end"}` per
//!   read, such as a node's access log (`cache.access_log`).
//!
//! The A/B mode splits clients into two cohorts by a stable hash of their
//! id (80/20 by default); each cohort is served by its own cache, of its
//! share of the capacity, with its own policy, on the same trace. Latency
//! there is the origin wait the misses cost over the emulated link (its
//! first-byte latency once per request that misses, plus the missed bytes
//! at its bandwidth), since hits cost the same under every policy.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use quiver_server::cache::{eviction, MEMORY_SHARDS};
use quiver_server::config::Eviction;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::workloads::trace::{self, TraceArgs, Zipf};
use crate::BoxError;

const MIB: u64 = 1 << 20;

/// Column chunks a synthetic object is cut into; a projected read takes a
/// few of them.
pub(crate) const SEGMENTS: u64 = 16;

/// What an entry weighs beside its bytes: about what the node's weigher
/// adds for the source, path and ETag in its key, plus 64.
const BYTES_PER_KEY: usize = 128;

#[derive(Debug, Clone)]
pub enum TraceSource {
    Zipf,
    Istziio,
    File(PathBuf),
}

impl std::str::FromStr for TraceSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zipf" => Ok(TraceSource::Zipf),
            "istziio" => Ok(TraceSource::Istziio),
            path if Path::new(path).is_file() => Ok(TraceSource::File(path.into())),
            other => Err(format!(
                "`{other}` is neither zipf, istziio nor a trace file that exists"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PoliciesArgs {
    pub traces: Vec<TraceSource>,
    /// Requests of the synthetic Zipf trace.
    pub requests: usize,
    /// Objects of the synthetic Zipf trace.
    pub objects: usize,
    pub skew: f64,
    /// Share of Zipf requests that are one-off scans of a random object.
    pub scan_share: f64,
    pub chunk: u64,
    /// Cache sizes as percentages of the trace's footprint (the bytes of
    /// every distinct chunk it reads).
    pub sizes_pct: Vec<f64>,
    /// A/B: the two policies, and the percentage of clients in the first.
    pub ab: Option<(Eviction, Eviction)>,
    pub split_pct: u32,
    /// The size of the A/B caches together, as a percentage of the
    /// footprint.
    pub ab_size_pct: f64,
    pub latency_ms: f64,
    pub bandwidth_mb_s: f64,
    pub seed: u64,
}

impl PoliciesArgs {
    pub fn full() -> PoliciesArgs {
        PoliciesArgs {
            traces: vec![TraceSource::Zipf, TraceSource::Istziio],
            requests: 20_000,
            objects: 400,
            skew: 0.9,
            scan_share: 0.1,
            chunk: MIB,
            sizes_pct: vec![1.0, 2.5, 5.0, 10.0, 20.0, 40.0],
            ab: Some((Eviction::Lru, Eviction::S3fifo)),
            split_pct: 80,
            ab_size_pct: 10.0,
            latency_ms: 30.0,
            bandwidth_mb_s: 100.0,
            seed: 42,
        }
    }

    pub fn quick() -> PoliciesArgs {
        PoliciesArgs {
            requests: 2_000,
            objects: 100,
            sizes_pct: vec![2.5, 10.0, 40.0],
            ..PoliciesArgs::full()
        }
    }
}

/// One read of a trace: bytes `start..end` of `object`, by `client`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Access {
    pub client: String,
    pub object: String,
    pub size: u64,
    pub start: u64,
    pub end: u64,
}

#[derive(Debug)]
pub struct Trace {
    pub name: String,
    pub accesses: Vec<Access>,
}

pub(crate) fn zipf_trace(args: &PoliciesArgs) -> Trace {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let sizes: Vec<u64> = (0..args.objects)
        .map(|_| {
            // Log-uniform between 4 and 64 MiB.
            let mib = 4f64 * 16f64.powf(rng.random::<f64>());
            (mib * MIB as f64) as u64
        })
        .collect();
    let zipf = Zipf::new(args.objects, args.skew);
    let mut accesses = Vec::with_capacity(args.requests);
    while accesses.len() < args.requests {
        if rng.random::<f64>() < args.scan_share {
            let object = rng.random_range(0..args.objects);
            accesses.push(Access {
                client: format!("scan-{}", rng.random_range(0..4)),
                object: format!("zipf/object-{object}"),
                size: sizes[object],
                start: 0,
                end: sizes[object],
            });
            continue;
        }
        let object = zipf.sample(&mut rng);
        let size = sizes[object];
        let client = format!("client-{}", rng.random_range(0..64));
        let name = format!("zipf/object-{object}");
        if rng.random::<f64>() < 0.3 {
            accesses.push(Access {
                client,
                object: name,
                size,
                start: 0,
                end: size,
            });
            continue;
        }
        let segment = size / SEGMENTS;
        for _ in 0..rng.random_range(1..=3) {
            let s = rng.random_range(0..SEGMENTS);
            accesses.push(Access {
                client: client.clone(),
                object: name.clone(),
                size,
                start: s * segment,
                end: ((s + 1) * segment).min(size),
            });
        }
    }
    Trace {
        name: "zipf".into(),
        accesses,
    }
}

fn istziio_trace() -> Trace {
    // ISTZIIO ran its traces from one client machine; numbering the
    // requests' clients 0..16 lets the A/B mode split them.
    let accesses = trace::requests(&TraceArgs::full())
        .into_iter()
        .enumerate()
        .map(|(i, (object, size))| Access {
            client: format!("istziio-{}", i % 16),
            object,
            size,
            start: 0,
            end: size,
        })
        .collect();
    Trace {
        name: "istziio".into(),
        accesses,
    }
}

fn file_trace(path: &Path) -> Result<Trace, BoxError> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot open the trace {}: {e}", path.display()))?;
    let mut accesses = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let a: Access = serde_json::from_str(&line).map_err(|e| {
            format!(
                "{} line {}: not a trace record {{\"client\", \"object\", \"size\", \"start\", \"end\"}}: {e}",
                path.display(),
                n + 1
            )
        })?;
        if a.start > a.end || a.end > a.size {
            return Err(format!(
                "{} line {}: bytes {}..{} are not within the object's {} bytes",
                path.display(),
                n + 1,
                a.start,
                a.end,
                a.size
            )
            .into());
        }
        accesses.push(a);
    }
    if accesses.is_empty() {
        return Err(format!("the trace {} holds no reads", path.display()).into());
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    Ok(Trace { name, accesses })
}

/// A trace with every object numbered, and each read as its chunk range.
pub(crate) struct Chunked {
    pub(crate) reads: Vec<(u32, u32, std::ops::Range<u64>)>,
    pub(crate) sizes: Vec<u64>,
    pub(crate) clients: Vec<String>,
    pub(crate) footprint: u64,
}

pub(crate) fn chunked(trace: &Trace, chunk: u64) -> Chunked {
    let mut objects: HashMap<&str, u32> = HashMap::new();
    let mut clients: HashMap<&str, u32> = HashMap::new();
    let mut sizes = Vec::new();
    let mut client_names = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut footprint = 0;
    let mut reads = Vec::with_capacity(trace.accesses.len());
    for a in &trace.accesses {
        if a.start >= a.end {
            continue;
        }
        let next = objects.len() as u32;
        let object = *objects.entry(a.object.as_str()).or_insert_with(|| {
            sizes.push(a.size);
            next
        });
        let next = clients.len() as u32;
        let client = *clients.entry(a.client.as_str()).or_insert_with(|| {
            client_names.push(a.client.clone());
            next
        });
        let range = a.start / chunk..a.end.div_ceil(chunk);
        for index in range.clone() {
            if seen.insert((object, index)) {
                footprint += chunk_len(a.size, chunk, index);
            }
        }
        reads.push((client, object, range));
    }
    Chunked {
        reads,
        sizes,
        clients: client_names,
        footprint,
    }
}

fn chunk_len(size: u64, chunk: u64, index: u64) -> u64 {
    let start = index * chunk;
    (start + chunk).min(size).saturating_sub(start)
}

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
    args: &PoliciesArgs,
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

/// A stable cohort for a client: the first for `split_pct` percent of
/// client ids (FNV-1a, so the split is the same in every run and release).
pub(crate) fn in_first_cohort(client: &str, split_pct: u32) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in client.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % 100 < u64::from(split_pct)
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

#[derive(Debug, Clone, Serialize)]
pub struct PoliciesReport {
    pub chunk_mib: f64,
    pub traces: Vec<TraceReport>,
    /// The policy with the lowest mean byte miss ratio over every trace
    /// and size.
    pub best: &'static str,
    pub command: String,
    /// The A/B served by two running nodes, with `--live`.
    pub live: Option<crate::workloads::ab_live::LiveReport>,
}

fn load(source: &TraceSource, args: &PoliciesArgs) -> Result<Trace, BoxError> {
    Ok(match source {
        TraceSource::Zipf => zipf_trace(args),
        TraceSource::Istziio => istziio_trace(),
        TraceSource::File(p) => file_trace(p)?,
    })
}

pub fn run(args: &PoliciesArgs, command: String) -> Result<PoliciesReport, BoxError> {
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
        let bar = crate::data::count_bar(steps, &format!("replaying {}", trace.name));
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
    let best = Eviction::ALL
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
        .unwrap_or("lru");
    Ok(PoliciesReport {
        chunk_mib: args.chunk as f64 / MIB as f64,
        traces,
        best,
        command,
        live: None,
    })
}

impl PoliciesReport {
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "# Eviction policies\n\nCommand: `{}`\n\nEach trace is replayed through foyer's memory cache, built as the node's memory tier, \
             with {} MiB chunks. Sizes are percentages of the trace's footprint (every distinct chunk it reads). \
             Byte miss ratio = origin bytes / bytes read.\n\n",
            self.command, self.chunk_mib
        );
        for t in &self.traces {
            md.push_str(&format!(
                "## Trace `{}`: {} reads of {} objects, footprint {:.0} MiB\n\n| size | capacity MiB |",
                t.trace, t.reads, t.objects, t.footprint_mib
            ));
            for p in Eviction::ALL {
                md.push_str(&format!(" {} |", p.name()));
            }
            md.push_str("\n| --- | --- |");
            md.push_str(&" --- |".repeat(Eviction::ALL.len()));
            md.push('\n');
            let mut sizes: Vec<f64> = t.points.iter().map(|p| p.size_pct).collect();
            sizes.dedup();
            for size in sizes {
                let row: Vec<&Point> = t.points.iter().filter(|p| p.size_pct == size).collect();
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
            if !t.ab.is_empty() {
                md.push_str(
                    "A/B, clients split by a stable hash of their id, each cohort with its share of the capacity; \
                     the last column is the same cohort and capacity under the other policy:\n\n\
                     | cohort | policy | clients | capacity MiB | requests | hit ratio | byte miss ratio | origin MiB | origin wait mean ms | p99 ms | other policy's byte miss ratio |\n\
                     | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
                );
                for c in &t.ab {
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
        }
        md.push_str(&format!(
            "Lowest mean byte miss ratio over every trace and size: **{}**.\n",
            self.best
        ));
        if let Some(live) = &self.live {
            md.push('\n');
            md.push_str(&live.markdown());
        }
        md
    }
}

/// One miss-ratio curve plot per trace: `policies-<trace>.png`.
pub fn plot(dir: &Path, report: &PoliciesReport) -> Result<(), BoxError> {
    for t in &report.traces {
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

    fn quick() -> PoliciesArgs {
        PoliciesArgs {
            requests: 400,
            objects: 20,
            sizes_pct: vec![5.0, 100.0],
            ..PoliciesArgs::quick()
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
        let report = run(&args, "test".into()).unwrap();
        let zipf = &report.traces[0];
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

    #[test]
    fn a_trace_file_is_read_and_bad_lines_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.jsonl");
        std::fs::write(
            &good,
            "{\"t_ms\":1,\"client\":\"a\",\"object\":\"s/x\",\"size\":10,\"start\":0,\"end\":10}\n\n",
        )
        .unwrap();
        assert_eq!(file_trace(&good).unwrap().accesses.len(), 1);
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(
            &bad,
            "{\"client\":\"a\",\"object\":\"s/x\",\"size\":10,\"start\":0,\"end\":11}\n",
        )
        .unwrap();
        let e = file_trace(&bad).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        std::fs::write(&bad, "not json\n").unwrap();
        assert!(file_trace(&bad).is_err());
    }
}
