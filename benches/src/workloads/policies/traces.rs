//! The traces a policies run replays, and what replaying needs of them:
//! the synthetic Zipf trace, the ISTZIIO traces, a JSON-lines file of
//! reads; each cut into the node's chunks, and its clients split into the
//! A/B's cohorts.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::BoxError;
use crate::workloads::policies::settings::{PoliciesSettings, TraceSource};
use crate::workloads::trace::{self, TraceSettings, Zipf};

const MIB: u64 = 1 << 20;

/// Column chunks a synthetic object is cut into; a projected read takes a
/// few of them.
pub const SEGMENTS: u64 = 16;

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

pub fn zipf_trace(args: &PoliciesSettings) -> Trace {
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
    let accesses = trace::requests(&TraceSettings::full())
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
pub struct Chunked {
    pub reads: Vec<(u32, u32, std::ops::Range<u64>)>,
    pub sizes: Vec<u64>,
    pub clients: Vec<String>,
    pub footprint: u64,
}

pub fn chunked(trace: &Trace, chunk: u64) -> Chunked {
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

/// The bytes of chunk `index` of an object of `size` bytes: the last one
/// may be short.
pub fn chunk_len(size: u64, chunk: u64, index: u64) -> u64 {
    let start = index * chunk;
    (start + chunk).min(size).saturating_sub(start)
}

/// A stable cohort for a client: the first for `split_pct` percent of
/// client ids (FNV-1a, so the split is the same in every run and release).
pub fn in_first_cohort(client: &str, split_pct: u32) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in client.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % 100 < u64::from(split_pct)
}

/// The trace `source` names.
pub fn load(source: &TraceSource, args: &PoliciesSettings) -> Result<Trace, BoxError> {
    Ok(match source {
        TraceSource::Zipf => zipf_trace(args),
        TraceSource::Istziio => istziio_trace(),
        TraceSource::File(p) => file_trace(p)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
