//! ISTZIIO-style trace replay: whole-file reads of random float64 Parquet
//! files, as the ISTZIIO rig measured them, so the figures are comparable
//! with ISTZIIO's.
//!
//! Four traces, each replayed identically in every mode:
//! - `zipf-small`: Zipf (skew 1.5) over the small files, one at a time;
//! - `zipf-large`: Zipf over the large files, one at a time;
//! - `parallel`: 160 Zipf requests over the small files, all in flight;
//! - `serial`: repeated passes in a fixed order over one large and four
//!   small files.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data;
use crate::error::BoxError;
use crate::measure::{self, Measurement};
use crate::readers::{Mode, Query, Readers};
use crate::rig::Rig;

#[derive(Debug, Clone)]
pub struct TraceSettings {
    pub small_files: usize,
    pub small_mb: u64,
    pub large_files: usize,
    pub large_mb: u64,
    pub zipf_small_requests: usize,
    pub zipf_large_requests: usize,
    pub parallel_requests: usize,
    pub serial_passes: usize,
    pub skew: f64,
    pub seed: u64,
}

impl TraceSettings {
    /// The ISTZIIO workload: 10 files of 1 MB and 10 of 100 MB.
    pub fn full() -> TraceSettings {
        TraceSettings {
            small_files: 10,
            small_mb: 1,
            large_files: 10,
            large_mb: 100,
            zipf_small_requests: 100,
            zipf_large_requests: 20,
            parallel_requests: 160,
            serial_passes: 5,
            skew: 1.5,
            seed: 42,
        }
    }

    /// Small enough for CI and a first look on a laptop.
    pub fn quick() -> TraceSettings {
        TraceSettings {
            large_files: 4,
            large_mb: 8,
            zipf_small_requests: 30,
            zipf_large_requests: 8,
            serial_passes: 2,
            ..TraceSettings::full()
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "trace: {} files of {} MiB and {} of {} MiB, 16 random float64 columns each, read whole; \
             zipf-small {} and zipf-large {} sequential requests (skew {}), parallel {} requests in flight at once \
             over the small files, serial {} passes over one large and four small files",
            self.small_files,
            self.small_mb,
            self.large_files,
            self.large_mb,
            self.zipf_small_requests,
            self.zipf_large_requests,
            self.skew,
            self.parallel_requests,
            self.serial_passes,
        )
    }
}

/// Draws ranks 0..n with probability proportional to 1 / (rank + 1)^skew.
pub(crate) struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub(crate) fn new(n: usize, skew: f64) -> Zipf {
        let mut total = 0.0;
        let mut cumulative: Vec<f64> = (1..=n)
            .map(|k| {
                total += 1.0 / (k as f64).powf(skew);
                total
            })
            .collect();
        for c in &mut cumulative {
            *c /= total;
        }
        Zipf { cumulative }
    }

    pub(crate) fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        self.cumulative
            .partition_point(|&c| c < u)
            .min(self.cumulative.len() - 1)
    }
}

fn small(i: usize) -> String {
    format!("istziio/small-{i}.parquet")
}

fn large(i: usize) -> String {
    format!("istziio/large-{i}.parquet")
}

fn whole(name: String) -> Query {
    Query {
        name,
        columns: None,
        filter: None,
    }
}

/// The traces as (case, queries, requests in flight).
fn traces(args: &TraceSettings) -> Vec<(&'static str, Vec<Query>, usize)> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let zs = Zipf::new(args.small_files, args.skew);
    let zl = Zipf::new(args.large_files, args.skew);
    let zipf_small = (0..args.zipf_small_requests)
        .map(|_| whole(small(zs.sample(&mut rng))))
        .collect();
    let zipf_large = (0..args.zipf_large_requests)
        .map(|_| whole(large(zl.sample(&mut rng))))
        .collect();
    let parallel = (0..args.parallel_requests)
        .map(|_| whole(small(zs.sample(&mut rng))))
        .collect();
    let pass: Vec<String> = std::iter::once(large(0))
        .chain((0..args.small_files.min(4)).map(small))
        .collect();
    let serial = (0..args.serial_passes)
        .flat_map(|_| pass.iter().cloned().map(whole))
        .collect();
    vec![
        ("zipf-small", zipf_small, 1),
        ("zipf-large", zipf_large, 1),
        ("parallel", parallel, args.parallel_requests),
        ("serial", serial, 1),
    ]
}

/// Every request of the four traces in order, as (object, its size in
/// bytes): the ISTZIIO trace that `quiver-bench policies` replays.
pub fn requests(args: &TraceSettings) -> Vec<(String, u64)> {
    const MIB: u64 = 1 << 20;
    traces(args)
        .into_iter()
        .flat_map(|(_, queries, _)| queries)
        .map(|q| {
            let mib = if q.name.starts_with("istziio/large-") {
                args.large_mb
            } else {
                args.small_mb
            };
            (q.name, mib * MIB)
        })
        .collect()
}

async fn upload_data(rig: &Rig, args: &TraceSettings) -> Result<(), BoxError> {
    const MIB: u64 = 1 << 20;
    let files: Vec<(String, u64)> = (0..args.small_files)
        .map(|i| (small(i), args.small_mb * MIB))
        .chain((0..args.large_files).map(|i| (large(i), args.large_mb * MIB)))
        .collect();
    let total = files.iter().map(|(_, b)| b).sum();
    let bar = data::bytes_bar(total, "trace data");
    let staging = rig.scratch();
    for (seed, (name, bytes)) in files.iter().enumerate() {
        let path = staging.join(name);
        tokio::task::block_in_place(|| data::random_floats(&path, *bytes, seed as u64, &bar))?;
        rig.upload(name, Bytes::from(std::fs::read(&path)?)).await?;
        std::fs::remove_file(&path)?;
    }
    bar.finish_and_clear();
    Ok(())
}

pub async fn run(rig: &Rig, args: &TraceSettings) -> Result<Vec<Measurement>, BoxError> {
    if args.small_files == 0 || args.large_files == 0 || args.small_mb == 0 || args.large_mb == 0 {
        return Err("the trace workload needs at least one small and one large file".into());
    }
    upload_data(rig, args).await?;
    let readers = Readers::new(rig);
    let mut out = Vec::new();
    for (case, queries, concurrency) in traces(args) {
        let measured = if concurrency == 1 {
            // A sequential trace: each request in both baselines and cold
            // Quiver in turn (the cold cache warming as the trace goes),
            // then the whole trace again, warm.
            let cold = [Mode::Direct, Mode::Datafusion, Mode::QuiverCold];
            let mut m =
                measure::interleaved(&readers, "trace", case, &cold, &queries, false).await?;
            m.push(measure::run(&readers, "trace", case, Mode::QuiverWarm, &queries, 1).await?);
            m
        } else {
            // Requests all in flight at once: one mode at a time.
            let mut m = Vec::new();
            for mode in Mode::ALL {
                if mode == Mode::QuiverCold {
                    rig.evict_all().await?;
                }
                m.push(measure::run(&readers, "trace", case, mode, &queries, concurrency).await?);
            }
            m
        };
        let mut expected = None;
        for (mode, (m, replies)) in Mode::ALL.into_iter().zip(measured) {
            match &expected {
                None => expected = Some(replies),
                Some(e) => measure::check_same(case, mode, e, &replies, &queries)?,
            }
            out.push(m);
        }
        measure::check_content(&readers, case, &queries).await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks_with_the_right_weights() {
        let z = Zipf::new(10, 1.5);
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = [0usize; 10];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        let h: f64 = (1..=10).map(|k| 1.0 / (k as f64).powf(1.5)).sum();
        for (k, &c) in counts.iter().enumerate() {
            let p = 1.0 / ((k + 1) as f64).powf(1.5) / h;
            let seen = c as f64 / 100_000.0;
            assert!((seen - p).abs() < 0.01, "rank {k}: {seen} vs {p}");
        }
    }

    #[test]
    fn traces_are_deterministic_and_sized() {
        let args = TraceSettings::quick();
        let names = |t: Vec<(&'static str, Vec<Query>, usize)>| {
            t.into_iter()
                .map(|(c, q, n)| (c, q.into_iter().map(|q| q.name).collect::<Vec<_>>(), n))
                .collect::<Vec<_>>()
        };
        let a = names(traces(&args));
        assert_eq!(a, names(traces(&args)));
        assert_eq!(a[0].1.len(), args.zipf_small_requests);
        assert_eq!(a[2].1.len(), args.parallel_requests);
        assert_eq!(a[2].2, args.parallel_requests);
        assert_eq!(a[3].1.len(), args.serial_passes * 5);
        assert!(a[1].1.iter().all(|n| n.starts_with("istziio/large-")));
    }
}
