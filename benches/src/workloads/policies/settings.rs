//! What a policies run replays: its traces, the cache sizes, the A/B pair
//! and split, and the link the A/B's origin waits are modelled on.

use std::path::{Path, PathBuf};

use quiver_server::config::Eviction;

const MIB: u64 = 1 << 20;

/// A trace to replay, as `--trace` names it.
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
pub struct PoliciesSettings {
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

impl PoliciesSettings {
    pub fn full() -> PoliciesSettings {
        PoliciesSettings {
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

    pub fn quick() -> PoliciesSettings {
        PoliciesSettings {
            requests: 2_000,
            objects: 100,
            sizes_pct: vec![2.5, 10.0, 40.0],
            ..PoliciesSettings::full()
        }
    }
}
