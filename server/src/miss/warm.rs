//! Background warming: once a client has been sent to the origin with a
//! pre-signed URL, the owner loads the byte ranges that scan needs, so the
//! next scan of the object is a hit.
//!
//! The queue is bounded and deduplicated: a warm-up already waiting is not
//! queued twice, and a full queue drops the new one (counted) rather than
//! grow or push back on planning. Demand reads keep priority in the origin
//! budget because warming runs at most `warm_fetches` workers, each with one
//! ranged GET of at most one coalesced run in flight, out of the node's
//! [`MAX_ORIGIN_FETCHES`](crate::cache::MAX_ORIGIN_FETCHES). A chunk that a
//! demand read is already fetching is joined, never fetched again.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use crate::cache::{CachingObjectStore, FooterCache, MAX_RUN_CHUNKS};
use crate::error::{QuiverError, Result};
use crate::metrics::Metrics;
use crate::scan::column_ranges;
use crate::source::ObjectId;

/// One warm-up: the columns of one object version a scan needs.
#[derive(Debug, Clone)]
pub struct WarmJob {
    pub id: ObjectId,
    /// Top-level columns.
    pub columns: Vec<String>,
}

impl WarmJob {
    fn key(&self) -> WarmKey {
        let mut columns = self.columns.clone();
        columns.sort();
        (
            self.id.source.to_string(),
            self.id.path.to_string(),
            self.id.etag.clone(),
            columns,
        )
    }
}

type WarmKey = (String, String, String, Vec<String>);

/// The queue side, held by the node and offered jobs by planning.
pub struct Warmer {
    tx: mpsc::Sender<WarmJob>,
    /// Jobs waiting or running, for deduplication and the gauge.
    queued: Mutex<HashSet<WarmKey>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Warmer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warmer")
            .field("queued", &lock(&self.queued).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Entries are inserted and removed whole; a poisoned set is still valid.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Warmer {
    /// A queue of `capacity` jobs, and the receiver its workers take.
    pub fn new(capacity: usize, metrics: Arc<Metrics>) -> (Warmer, mpsc::Receiver<WarmJob>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Warmer {
                tx,
                queued: Mutex::default(),
                metrics,
            },
            rx,
        )
    }

    /// Queues `job`. True when it is queued now or was already waiting;
    /// false when the queue is full and the warm-up is dropped.
    pub fn offer(&self, job: WarmJob) -> bool {
        let key = job.key();
        let mut queued = lock(&self.queued);
        if queued.contains(&key) {
            return true;
        }
        match self.tx.try_send(job) {
            Ok(()) => {
                queued.insert(key);
                self.metrics.warm_queued.set(queued.len() as i64);
                true
            }
            Err(_) => {
                self.metrics.warm_dropped.inc();
                false
            }
        }
    }

    fn finish(&self, job: &WarmJob) {
        let mut queued = lock(&self.queued);
        queued.remove(&job.key());
        self.metrics.warm_queued.set(queued.len() as i64);
    }

    /// Warm-ups waiting or running.
    pub fn len(&self) -> usize {
        lock(&self.queued).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the workers read with: each source's caching store and the footer
/// cache, so warming fills exactly the entries a scan will look up.
#[derive(Clone)]
pub struct WarmContext {
    pub warmer: Arc<Warmer>,
    pub stores: HashMap<Arc<str>, Arc<CachingObjectStore>>,
    pub footers: FooterCache,
    pub chunk: u64,
}

/// Runs `workers` warming workers until `stop` turns true. A job being
/// loaded when the node stops is left half-done: what it loaded is cached,
/// the rest is read on demand.
pub async fn run(
    ctx: WarmContext,
    rx: mpsc::Receiver<WarmJob>,
    workers: usize,
    stop: watch::Receiver<bool>,
) {
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let tasks: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let ctx = ctx.clone();
            let rx = rx.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    let job = tokio::select! {
                        _ = stop.wait_for(|s| *s) => break,
                        job = async { rx.lock().await.recv().await } => match job {
                            Some(job) => job,
                            None => break,
                        },
                    };
                    let outcome = tokio::select! {
                        _ = stop.wait_for(|s| *s) => {
                            ctx.warmer.finish(&job);
                            break;
                        }
                        outcome = warm(&ctx, &job) => outcome,
                    };
                    match outcome {
                        Ok(bytes) => {
                            ctx.warmer.metrics.warm_done.inc();
                            ctx.warmer.metrics.warm_bytes.inc_by(bytes);
                        }
                        Err(e) => {
                            ctx.warmer.metrics.warm_failed.inc();
                            tracing::debug!(source = %job.id.source, path = %job.id.path, error = %e, "a warm-up failed");
                        }
                    }
                    ctx.warmer.finish(&job);
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

/// Loads the job's ranges one coalesced run at a time; returns the bytes
/// they span.
async fn warm(ctx: &WarmContext, job: &WarmJob) -> Result<u64> {
    let store = ctx.stores.get(&job.id.source).ok_or_else(|| {
        QuiverError::NotFound(format!("there is no source named `{}`", job.id.source))
    })?;
    let metadata = ctx.footers.get(store, &job.id).await?;
    let ranges = column_ranges(&metadata, &job.id, &job.columns)?;
    let run = MAX_RUN_CHUNKS * ctx.chunk;
    for piece in ranges.iter().flat_map(|r| pieces(r.clone(), run)) {
        store
            .read_pinned(&job.id, std::slice::from_ref(&piece))
            .await?;
    }
    Ok(ranges.iter().map(|r| r.end - r.start).sum())
}

/// `range` cut at multiples of `size`, so each piece is at most one
/// coalesced origin GET.
fn pieces(range: Range<u64>, size: u64) -> impl Iterator<Item = Range<u64>> {
    let size = size.max(1);
    let mut start = range.start;
    std::iter::from_fn(move || {
        if start >= range.end {
            return None;
        }
        let end = ((start / size + 1) * size).min(range.end);
        let piece = start..end;
        start = end;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_align_to_runs() {
        assert_eq!(
            pieces(0..10, 4).collect::<Vec<_>>(),
            vec![0..4, 4..8, 8..10]
        );
        assert_eq!(pieces(3..9, 4).collect::<Vec<_>>(), vec![3..4, 4..8, 8..9]);
        assert_eq!(pieces(5..5, 4).count(), 0);
    }

    fn job(path: &str, columns: &[&str]) -> WarmJob {
        WarmJob {
            id: ObjectId {
                source: Arc::from("lake"),
                path: object_store::path::Path::from(path),
                etag: "e1".into(),
                size: 10,
                last_modified: chrono::DateTime::default(),
            },
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn the_queue_deduplicates_and_drops_when_full() {
        let metrics = Arc::new(Metrics::new());
        let (warmer, _rx) = Warmer::new(2, metrics.clone());
        assert!(warmer.offer(job("a", &["x", "y"])));
        // The same columns in another order are the same warm-up.
        assert!(warmer.offer(job("a", &["y", "x"])));
        assert_eq!(warmer.len(), 1);
        assert!(warmer.offer(job("b", &[])));
        assert!(!warmer.offer(job("c", &[])));
        assert_eq!(metrics.warm_dropped.get(), 1);
        assert_eq!(metrics.warm_queued.get(), 2);
        warmer.finish(&job("a", &["x", "y"]));
        assert_eq!(warmer.len(), 1);
    }
}
