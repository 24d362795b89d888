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
//!
//! The run's parts: [`settings`] (what to replay), [`traces`] (making and
//! reading traces), [`replay`] (the curves and the replayed A/B) and
//! [`live`] (the A/B served by two nodes, with `--live`).

pub mod live;
pub mod replay;
pub mod settings;
pub mod traces;

use std::time::Duration;

use quiver_testkit::link::LinkConfig;
use serde::Serialize;

use crate::common::Common;
use crate::error::BoxError;
use crate::report;
use crate::workloads::policies::live::{LiveReport, LiveSettings};
use crate::workloads::policies::replay::TraceReport;
use crate::workloads::policies::settings::{PoliciesSettings, TraceSource};

const MIB: u64 = 1 << 20;

/// The policies workload's flags.
#[derive(clap::Args)]
pub struct PoliciesArgs {
    /// Traces: zipf, istziio, or JSON-lines files of
    /// {"client", "object", "size", "start", "end"}, such as a node's
    /// cache.access_log [default: zipf,istziio].
    #[arg(long, value_delimiter = ',')]
    trace: Vec<TraceSource>,
    /// Requests of the zipf trace [default: 20000, quick 2000].
    #[arg(long)]
    requests: Option<usize>,
    /// Objects of the zipf trace [default: 400, quick 100].
    #[arg(long)]
    objects: Option<usize>,
    /// Zipf skew of the zipf trace.
    #[arg(long, default_value_t = 0.9)]
    skew: f64,
    /// Share of the zipf trace's requests that scan a random object once.
    #[arg(long, default_value_t = 0.1)]
    scan_share: f64,
    /// Chunk size, in MiB (the node's `cache.chunk`).
    #[arg(long, default_value_t = 1)]
    chunk_mib: u64,
    /// Cache sizes, as percentages of each trace's footprint
    /// [default: 1,2.5,5,10,20,40; quick 2.5,10,40].
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<f64>,
    /// The A/B pair, `control,treatment` (or `none`).
    #[arg(long, default_value = "lru,s3fifo")]
    ab: String,
    /// Percentage of clients in the A/B control cohort.
    #[arg(long, default_value_t = 80)]
    split: u32,
    /// Size of the A/B caches together, as a percentage of the footprint.
    #[arg(long, default_value_t = 10.0)]
    ab_size: f64,
    /// Also serve the A/B live: two quiver-server processes, one per
    /// cohort, answering a zipf trace of real Parquet objects over
    /// Flight through the emulated link.
    #[arg(long)]
    live: bool,
    /// Objects of the live A/B's zipf trace [default: 40, quick 12].
    #[arg(long)]
    live_objects: Option<usize>,
    /// Requests of the live A/B's zipf trace [default: 1500, quick 300].
    #[arg(long)]
    live_requests: Option<usize>,
}

impl PoliciesArgs {
    /// The replay's settings: the flags, or the defaults of a full or quick
    /// run, with the A/B's origin waits modelled on the flags' S3 link.
    fn settings(&self, common: &Common) -> Result<PoliciesSettings, BoxError> {
        let defaults = if common.quick {
            PoliciesSettings::quick()
        } else {
            PoliciesSettings::full()
        };
        let ab = match self.ab.as_str() {
            "none" => None,
            pair => {
                let (a, b) = pair
                    .split_once(',')
                    .ok_or("--ab takes two policies, `control,treatment`, or `none`")?;
                Some((a.parse()?, b.parse()?))
            }
        };
        Ok(PoliciesSettings {
            traces: if self.trace.is_empty() {
                defaults.traces.clone()
            } else {
                self.trace.clone()
            },
            requests: self.requests.unwrap_or(defaults.requests),
            objects: self.objects.unwrap_or(defaults.objects).max(1),
            skew: self.skew,
            scan_share: self.scan_share,
            chunk: self.chunk_mib << 20,
            sizes_pct: if self.sizes.is_empty() {
                defaults.sizes_pct.clone()
            } else {
                self.sizes.clone()
            },
            ab,
            split_pct: self.split,
            ab_size_pct: self.ab_size,
            latency_ms: common.latency_ms as f64,
            bandwidth_mb_s: common.bandwidth_mb_s.max(1) as f64,
            ..defaults
        })
    }

    /// The live A/B's settings: the replay's, with the live trace's own
    /// (smaller) objects and requests.
    fn live_settings(&self, common: &Common, replay: PoliciesSettings) -> LiveSettings {
        let quick = common.quick;
        LiveSettings {
            trace: PoliciesSettings {
                objects: self
                    .live_objects
                    .unwrap_or(if quick { 12 } else { 40 })
                    .max(1),
                requests: self.live_requests.unwrap_or(if quick { 300 } else { 1500 }),
                ..replay
            },
            server_bin: common.server_bin(),
        }
    }
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
    pub live: Option<LiveReport>,
}

/// Replays the traces, serves the A/B live with `--live` (on nodes of its
/// own, behind a link of the flags' latency and bandwidth even with
/// `--no-emulation`), and writes `policies.json`, `policies.md` and a plot
/// per trace.
pub async fn main(common: &Common, args: PoliciesArgs, command: String) -> Result<(), BoxError> {
    let settings = args.settings(common)?;
    if args.live {
        common.no_remote_nodes("the live A/B starts its own nodes")?;
    }
    let traces = replay::run(&settings)?;
    let mut report = PoliciesReport {
        chunk_mib: settings.chunk as f64 / MIB as f64,
        best: replay::best(&traces),
        traces,
        command,
        live: None,
    };
    if args.live {
        let link = LinkConfig {
            latency: Duration::from_millis(common.latency_ms),
            bandwidth: common.bandwidth_mb_s.max(1) * 1_000_000,
        };
        let live = args.live_settings(common, settings);
        report.live = Some(live::run(&live, link).await?);
    }
    replay::plot(&common.out, &report.traces)?;
    report::write(&common.out, "policies", &report, report.markdown())
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
            md.push_str(&t.markdown());
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
