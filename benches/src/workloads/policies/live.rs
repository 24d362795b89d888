//! The A/B split served live: two quiver-server processes, one per
//! cohort, each with its eviction policy and its share of the capacity,
//! behind their own emulated links to one S3 server, answering the same
//! trace's requests side by side over Flight.
//!
//! The replay A/B of `policies` predicts each cohort's hit ratio from
//! foyer's policies alone; this one measures what clients see: each
//! request's latency, the node's own chunk hit ratio, and the bytes it read
//! from the origin. The trace is the synthetic Zipf one, its objects real
//! Parquet files of [`data::COLUMNS`] float columns: a read of one of an
//! object's column-chunk-sized segments is a scan of that column, a whole
//! read a scan of every column. Every answer's row count is checked.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use arrow_flight::{FlightClient, Ticket};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use quiver_protocol::{ScanRequest, StatsReport};
use quiver_server::cache::MEMORY_SHARDS;
use quiver_server::config::Eviction;
use quiver_testkit::link::LinkConfig;
use quiver_testkit::{ACCESS_KEY, SECRET_KEY};
use serde::Serialize;
use tonic::transport::Channel;

use crate::data;
use crate::error::BoxError;
use crate::flight::stats;
use crate::measure::Latency;
use crate::origin::{s3_store, NetProcess, Upstream};
use crate::server::ServerProcess;
use crate::workloads::policies::settings::PoliciesSettings;
use crate::workloads::policies::traces::{self, SEGMENTS};

const BUCKET: &str = "ab-live";
const MIB: u64 = 1 << 20;

/// A segment read is a scan of one column, so the trace's segments must be
/// the files' columns.
const _: () = assert!(SEGMENTS as usize == data::COLUMNS);

/// Chunks the smaller cohort's node holds at least: two per shard of its
/// memory tier, or a chunk would be larger than a shard and never held.
const MIN_COHORT_CHUNKS: u64 = 2 * MEMORY_SHARDS as u64;

/// Requests in flight at once, across both cohorts.
const CONCURRENCY: usize = 4;

/// How long one request may take before the run fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// The trace: the zipf trace of these arguments (its objects, requests,
    /// skew, share of scans and seed), with the A/B pair and split.
    pub trace: PoliciesSettings,
    pub server_bin: std::path::PathBuf,
}

/// One cohort, as its node served it.
#[derive(Debug, Clone, Serialize)]
pub struct LiveCohort {
    pub policy: &'static str,
    pub clients_pct: u32,
    pub clients: usize,
    pub capacity_mib: f64,
    pub requests: usize,
    pub latency_ms: Latency,
    /// Chunk lookups answered by the memory tier, of all lookups.
    pub hit_ratio: f64,
    pub origin_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveReport {
    pub objects: usize,
    pub data_mib: f64,
    pub requests: usize,
    pub footprint_mib: f64,
    /// Both nodes' capacity together, as a percentage of the footprint.
    pub capacity_pct: f64,
    pub link: String,
    /// The A/B: each cohort under its own policy.
    pub ab: Vec<LiveCohort>,
    /// The same cohorts with the policies swapped, so that each policy is
    /// also seen serving the other cohort.
    pub swapped: Vec<LiveCohort>,
    /// Each policy over both passes.
    pub totals: Vec<LiveTotal>,
}

fn key(object: &str) -> String {
    format!("{object}.parquet")
}

/// The node config of one cohort: memory only, no hot tier, so that the
/// policy under test decides every hit.
fn node_config(policy: Eviction, memory: u64, chunk: u64, endpoint: &str) -> String {
    format!(
        "[cache]\nmemory = \"{}KiB\"\nhot = \"0B\"\ndisk = \"0B\"\nchunk = \"{}KiB\"\neviction = \"{}\"\n\n\
         [[source]]\nname = \"{BUCKET}\"\nurl = \"s3://{BUCKET}/\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n\
         access_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n",
        memory / 1024,
        chunk / 1024,
        policy.name()
    )
}

/// One request of the trace, as a scan: the object, and the column its
/// segment is (`None`: every column).
struct Request {
    first: bool,
    object: String,
    column: Option<usize>,
}

async fn scan(channel: Channel, req: &Request) -> Result<u64, BoxError> {
    let scan = ScanRequest {
        source: Some(BUCKET.into()),
        path: Some(key(&req.object)),
        columns: req.column.map(|c| vec![format!("c{c}")]),
        ..Default::default()
    };
    let mut client = FlightClient::new(channel);
    let read = async {
        client
            .do_get(Ticket::new(scan.to_bytes()))
            .await?
            .try_fold(0u64, |n, b| async move { Ok(n + b.num_rows() as u64) })
            .await
    };
    Ok(tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .map_err(|_| format!("a scan of {} took over {REQUEST_TIMEOUT:?}", req.object))??)
}

fn hit_ratio(before: &StatsReport, after: &StatsReport) -> f64 {
    let hits = after.memory.hits - before.memory.hits;
    let lookups = hits + (after.misses - before.misses);
    if lookups == 0 {
        0.0
    } else {
        hits as f64 / lookups as f64
    }
}

pub async fn run(args: &LiveSettings, link: LinkConfig) -> Result<LiveReport, BoxError> {
    let t = &args.trace;
    let (control, treatment) =
        t.ab.ok_or("the live A/B needs two policies; --ab none runs none")?;
    if control == treatment {
        return Err(format!(
            "the live A/B needs two different policies, not {} twice",
            control.name()
        )
        .into());
    }
    let trace = traces::zipf_trace(t);
    let chunked = traces::chunked(&trace, t.chunk);
    let first: Vec<bool> = chunked
        .clients
        .iter()
        .map(|c| traces::in_first_cohort(c, t.split_pct))
        .collect();
    let smaller = f64::from(t.split_pct.min(100 - t.split_pct)) / 100.0;
    // Raised, if need be, until the smaller cohort's node holds enough
    // chunks; the report gives the capacity actually used.
    let capacity = (chunked.footprint as f64 * t.ab_size_pct / 100.0)
        .max((MIN_COHORT_CHUNKS * t.chunk) as f64 / smaller);
    let capacity_pct = capacity / chunked.footprint.max(1) as f64 * 100.0;

    let work = tempfile::tempdir()?;
    let origin = NetProcess::start(
        &Upstream::S3 {
            dir: work.path().join("s3"),
            buckets: vec![BUCKET.to_string()],
        },
        &[link, link],
    )?;
    let store = s3_store(&origin.s3_endpoint()?, BUCKET)?;

    // Each object the trace reads, generated and uploaded once.
    let mut sizes: HashMap<&str, u64> = HashMap::new();
    for a in &trace.accesses {
        sizes.insert(a.object.as_str(), a.size);
    }
    let mut objects: Vec<(&str, u64)> = sizes.into_iter().collect();
    objects.sort_unstable();
    let total: u64 = objects.iter().map(|(_, s)| s).sum();
    let bar = data::bytes_bar(total, "trace objects");
    let staging = work.path().join("staging");
    let mut rows: HashMap<String, u64> = HashMap::new();
    for (seed, (object, size)) in objects.iter().enumerate() {
        let path = staging.join(key(object));
        let n =
            tokio::task::block_in_place(|| data::random_floats(&path, *size, seed as u64, &bar))?;
        store
            .put(
                &object_store::path::Path::from(key(object)),
                std::fs::read(&path)?.into(),
            )
            .await?;
        std::fs::remove_file(&path)?;
        rows.insert(object.to_string(), n as u64);
    }
    bar.finish_and_clear();

    let requests: Vec<Request> = trace
        .accesses
        .iter()
        .map(|a| {
            let segment = a.size / SEGMENTS;
            Request {
                first: traces::in_first_cohort(&a.client, t.split_pct),
                object: a.object.clone(),
                column: (a.end - a.start < a.size).then(|| (a.start / segment.max(1)) as usize),
            }
        })
        .collect();
    let clients = |mine: bool| first.iter().filter(|&&f| f == mine).count();
    let cohorts = [
        (t.split_pct, clients(true)),
        (100 - t.split_pct, clients(false)),
    ];
    let pass = Pass {
        args,
        origin: &origin,
        requests: &requests,
        rows: &rows,
        capacity,
        cohorts,
    };
    let ab = pass.serve([control, treatment], work.path()).await?;
    let swapped = pass.serve([treatment, control], work.path()).await?;
    let totals = totals(&ab, &swapped);
    Ok(LiveReport {
        objects: objects.len(),
        data_mib: total as f64 / MIB as f64,
        requests: requests.len(),
        footprint_mib: chunked.footprint as f64 / MIB as f64,
        capacity_pct,
        link: format!(
            "{} ms, {} MB/s per node",
            link.latency.as_millis(),
            link.bandwidth / 1_000_000
        ),
        ab,
        swapped,
        totals,
    })
}

/// What every pass over the trace shares.
struct Pass<'a> {
    args: &'a LiveSettings,
    origin: &'a NetProcess,
    requests: &'a [Request],
    rows: &'a HashMap<String, u64>,
    capacity: f64,
    /// Each cohort's share of the clients, in percent, and its clients.
    cohorts: [(u32, usize); 2],
}

impl Pass<'_> {
    /// Serves the trace with the first cohort's node under `policies[0]` and
    /// the second's under `policies[1]`, both starting empty.
    async fn serve(
        &self,
        policies: [Eviction; 2],
        work: &Path,
    ) -> Result<Vec<LiveCohort>, BoxError> {
        let chunk = self.args.trace.chunk;
        let mut nodes = Vec::new();
        for (i, policy) in policies.into_iter().enumerate() {
            let share = (self.capacity * f64::from(self.cohorts[i].0) / 100.0) as u64;
            let dir = work.join(format!("node-{}-{i}", policy.name()));
            std::fs::create_dir_all(&dir)?;
            let endpoint = format!("http://{}", self.origin.links[i]);
            let server = ServerProcess::start(
                &self.args.server_bin,
                &dir,
                &node_config(policy, share, chunk, &endpoint),
            )?;
            let channel = Channel::from_shared(format!("http://{}", server.flight))?
                .connect_timeout(Duration::from_secs(10))
                .connect()
                .await?;
            let before = stats(&mut FlightClient::new(channel.clone())).await?;
            nodes.push((policy, share, server, channel, before));
        }
        let label = format!("live {} / {}", policies[0].name(), policies[1].name());
        let bar = data::count_bar(self.requests.len() as u64, &label);
        let channels: Vec<Channel> = nodes.iter().map(|n| n.3.clone()).collect();
        let rows = self.rows;
        let timed: Vec<(bool, f64)> = futures::stream::iter(self.requests.iter().map(|req| {
            let channel = channels[usize::from(!req.first)].clone();
            let bar = bar.clone();
            async move {
                let started = Instant::now();
                let got = scan(channel, req).await?;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                let want = rows.get(&req.object).copied().unwrap_or(0);
                if got != want {
                    return Err(format!(
                        "a scan of {} returned {got} rows, not {want}",
                        req.object
                    )
                    .into());
                }
                bar.inc(1);
                Ok::<_, BoxError>((req.first, ms))
            }
        }))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
        bar.finish_and_clear();

        let mut out = Vec::new();
        for (i, (policy, share, server, channel, before)) in nodes.into_iter().enumerate() {
            let after = stats(&mut FlightClient::new(channel)).await?;
            let mine = i == 0;
            let latencies: Vec<f64> = timed
                .iter()
                .filter(|(f, _)| *f == mine)
                .map(|(_, ms)| *ms)
                .collect();
            out.push(LiveCohort {
                policy: policy.name(),
                clients_pct: self.cohorts[i].0,
                clients: self.cohorts[i].1,
                capacity_mib: share as f64 / MIB as f64,
                requests: latencies.len(),
                latency_ms: Latency::of(&latencies),
                hit_ratio: hit_ratio(&before, &after),
                origin_mib: (after.origin_bytes - before.origin_bytes) as f64 / MIB as f64,
            });
            server.stop()?;
        }
        Ok(out)
    }
}

impl LiveReport {
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "## Live A/B\n\nTwo quiver-server processes, one per cohort, each with its share of the capacity \
             ({:.0}% of the footprint in all), memory only and no hot tier, each behind its own link to S3 ({}), \
             answered the zipf trace's {} requests over {} objects ({:.0} MiB of Parquet, footprint {:.0} MiB) \
             side by side, {CONCURRENCY} in flight; a read of a segment is a scan of one column, so its bytes \
             are that column's chunks in every row group, not the replay's one range. Then both nodes started \
             again, empty, with the policies swapped. Hit ratio is the node's own chunk hit ratio.\n\n\
             | pass | cohort | clients | capacity MiB | policy | requests | mean ms | p50 ms | p95 ms | p99 ms | hit ratio | origin MiB |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
            self.capacity_pct,
            self.link,
            self.requests,
            self.objects,
            self.data_mib,
            self.footprint_mib,
        );
        for (pass, cohorts) in [("A/B", &self.ab), ("swapped", &self.swapped)] {
            for c in cohorts {
                let l = &c.latency_ms;
                md.push_str(&format!(
                    "| {pass} | {}% | {} | {:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3} | {:.0} |\n",
                    c.clients_pct,
                    c.clients,
                    c.capacity_mib,
                    c.policy,
                    c.requests,
                    l.mean,
                    l.p50,
                    l.p95,
                    l.p99,
                    c.hit_ratio,
                    c.origin_mib,
                ));
            }
        }
        md.push('\n');
        let parts: Vec<String> = self
            .totals
            .iter()
            .map(|t| {
                format!(
                    "{} read {:.0} MiB from the origin, mean {:.1} ms",
                    t.policy, t.origin_mib, t.mean_ms
                )
            })
            .collect();
        if let Some(best) = self
            .totals
            .iter()
            .min_by(|a, b| a.origin_mib.total_cmp(&b.origin_mib))
        {
            md.push_str(&format!(
                "Over both passes each policy served every request once: {}. Fewest origin bytes: **{}**.\n\n",
                parts.join("; "),
                best.policy
            ));
        }
        md
    }
}

/// Each policy of the A/B over both passes, in which it served each cohort
/// once and so every request of the trace once.
fn totals(ab: &[LiveCohort], swapped: &[LiveCohort]) -> Vec<LiveTotal> {
    ab.iter()
        .map(|first| {
            let mine: Vec<&LiveCohort> = ab
                .iter()
                .chain(swapped)
                .filter(|c| c.policy == first.policy)
                .collect();
            let requests: usize = mine.iter().map(|c| c.requests).sum();
            let total_ms: f64 = mine
                .iter()
                .map(|c| c.latency_ms.mean * c.requests as f64)
                .sum();
            LiveTotal {
                policy: first.policy,
                origin_mib: mine.iter().map(|c| c.origin_mib).sum(),
                requests,
                mean_ms: total_ms / requests.max(1) as f64,
            }
        })
        .collect()
}

/// One policy's cost over both passes of the live A/B.
#[derive(Debug, Clone, Serialize)]
pub struct LiveTotal {
    pub policy: &'static str,
    pub origin_mib: f64,
    pub requests: usize,
    /// Mean latency over every request the policy served.
    pub mean_ms: f64,
}
