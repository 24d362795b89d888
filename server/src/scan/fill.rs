//! Filling the hot tier after a miss, and what may enter it.
//!
//! Admission is on the second miss: the first scan that needs a column
//! chunk the tier lacks only remembers its key (a ghost, in a bounded set of
//! keys without data); a later scan that misses on a remembered key decodes
//! it. So one cold pass over a table, read once and never again, cannot push
//! out what is re-read, and by the second scan the chunk's bytes are already
//! in the byte-range tier, so the decode reads no origin bytes of its own.
//!
//! Decoding runs in the background, after the scan that missed has been
//! answered from Parquet (its stream ended or was dropped: see [`FillGate`]),
//! one fill at a time per node, so that filling never delays a client or
//! takes more than one core. A fill started while its scan still ran would
//! decode the same row groups beside it, on the cores the cold scan needs.
//! A fill takes row groups in file order up to half the tier: more would
//! evict what it just decoded.
//! The rest stay remembered, so a later miss fills them, and meanwhile
//! scans are answered from the tier for the row groups it holds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::{new_empty_array, Array, ArrayRef};
use arrow::compute::concat;
use foyer::{Cache, CacheBuilder};
use futures::TryStreamExt;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::metadata::ParquetMetaData;
use tokio::sync::{oneshot, Semaphore};

use super::columns::chunks_of;
use super::reader::PinnedReaderFactory;
use crate::cache::{DecodedCache, DecodedKey};
use crate::metrics::Metrics;
use crate::source::ObjectId;

/// Keys of column chunks missed once and remembered for admission.
const GHOSTS: usize = 1 << 16;

/// Fills waiting for their scan to end or for the running fill, at most:
/// each holds only keys and the footer, but a node under many missing
/// scans must not queue without bound. Beyond it the keys stay ghosts, so
/// a later miss admits them.
const QUEUED_FILLS: usize = 64;

/// Held by a scan that admitted a fill; the fill starts once it is dropped,
/// which happens when the scan's stream ends or its client goes away.
#[derive(Debug)]
pub struct FillGate {
    _held_by_the_scan: oneshot::Sender<()>,
}

/// Fills the hot tier. One per scanner.
pub struct HotFill {
    tier: DecodedCache,
    ghosts: Cache<DecodedKey, ()>,
    running: Arc<Semaphore>,
    queued: Arc<Semaphore>,
    /// Set when the node stops: fills end before their next row group, so
    /// none is in a cache lookup when the cache closes.
    stopping: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for HotFill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotFill").finish_non_exhaustive()
    }
}

impl HotFill {
    pub fn new(tier: DecodedCache, metrics: Arc<Metrics>) -> Self {
        HotFill {
            tier,
            ghosts: CacheBuilder::new(GHOSTS)
                .with_weighter(|_: &DecodedKey, _: &()| 1)
                .build(),
            running: Arc::new(Semaphore::new(1)),
            queued: Arc::new(Semaphore::new(QUEUED_FILLS)),
            stopping: Arc::new(AtomicBool::new(false)),
            metrics,
        }
    }

    /// Whether no fill is queued or running.
    pub fn idle(&self) -> bool {
        self.queued.available_permits() == QUEUED_FILLS
    }

    /// Ends every fill before its next row group and starts no more.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn tier(&self) -> &DecodedCache {
        &self.tier
    }

    /// Called when a scan missed on `missing` (row group, column) pairs:
    /// remembers first misses and, if any pair missed before, queues a
    /// background decode of those pairs that starts when the returned gate
    /// is dropped.
    pub fn missed(
        &self,
        object: &Arc<ObjectId>,
        metadata: &Arc<ParquetMetaData>,
        missing: &[(usize, usize)],
        factory: PinnedReaderFactory,
    ) -> Option<FillGate> {
        let mut admitted: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &(row_group, column) in missing {
            let key = DecodedKey {
                object: object.clone(),
                row_group,
                column,
            };
            if self.ghosts.contains(&key) {
                admitted.entry(row_group).or_default().push(column);
            } else {
                self.ghosts.insert(key, ());
            }
        }
        let budget = self.tier.capacity() / 2;
        let mut total = 0u64;
        admitted.retain(|&row_group, columns| {
            let estimate = decoded_estimate(metadata, row_group, columns);
            match total.checked_add(estimate).filter(|&t| t <= budget) {
                Some(t) => {
                    total = t;
                    true
                }
                None => false,
            }
        });
        if admitted.is_empty() {
            return None;
        }
        let Ok(queued) = self.queued.clone().try_acquire_owned() else {
            return None;
        };
        for (&row_group, columns) in &admitted {
            for &column in columns {
                self.ghosts.remove(&DecodedKey {
                    object: object.clone(),
                    row_group,
                    column,
                });
            }
        }
        let tier = self.tier.clone();
        let metrics = self.metrics.clone();
        let object = object.clone();
        let metadata = metadata.clone();
        let running = self.running.clone();
        let stopping = self.stopping.clone();
        let (gate, scan_ended) = oneshot::channel();
        tokio::spawn(async move {
            let _queued = queued;
            // The sender is only ever dropped: both outcomes mean the scan ended.
            let _ = scan_ended.await;
            let Ok(_running) = running.acquire_owned().await else {
                return;
            };
            for (row_group, mut columns) in admitted {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                columns.sort_unstable();
                columns.dedup();
                // Another fill, queued while this one waited, may have
                // decoded some of them already.
                let columns = match tier.row_group(&object, row_group, &columns) {
                    Ok(_) => continue,
                    Err(absent) => absent,
                };
                match decode(&factory, &object, &metadata, row_group, &columns).await {
                    Ok(arrays) => {
                        for (column, array) in columns.into_iter().zip(arrays) {
                            tier.insert(&object, row_group, column, array);
                        }
                        metrics.hot_fills.inc();
                    }
                    Err(e) => {
                        tracing::warn!(
                            object = %object.path,
                            row_group,
                            error = %e,
                            "filling the hot tier failed"
                        );
                        return;
                    }
                }
            }
        });
        Some(FillGate {
            _held_by_the_scan: gate,
        })
    }
}

/// The uncompressed bytes of `columns`' chunks in one row group, from the
/// footer: close to what they take decoded.
fn decoded_estimate(metadata: &ParquetMetaData, row_group: usize, columns: &[usize]) -> u64 {
    chunks_of(metadata, &[row_group], columns)
        .map(|c| u64::try_from(c.uncompressed_size()).unwrap_or(0))
        .fold(0, u64::saturating_add)
}

/// One array per column of `columns` (ascending) in one row group.
async fn decode(
    factory: &PinnedReaderFactory,
    object: &ObjectId,
    metadata: &Arc<ParquetMetaData>,
    row_group: usize,
    columns: &[usize],
) -> Result<Vec<ArrayRef>, Box<dyn std::error::Error + Send + Sync>> {
    let reader = factory.reader(object);
    let arrow = ArrowReaderMetadata::try_new(metadata.clone(), ArrowReaderOptions::new())?;
    if columns.iter().any(|&c| c >= arrow.schema().fields().len()) {
        return Err("a column is not in the file's schema".into());
    }
    let rows = metadata
        .row_groups()
        .get(row_group)
        .and_then(|g| usize::try_from(g.num_rows()).ok())
        .ok_or("the row group is not in the footer")?;
    let mask = ProjectionMask::roots(
        metadata.file_metadata().schema_descr(),
        columns.iter().copied(),
    );
    let batches: Vec<_> = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, arrow.clone())
        .with_row_groups(vec![row_group])
        .with_projection(mask)
        .with_batch_size(rows.max(1))
        .build()?
        .try_collect()
        .await?;
    let mut arrays = Vec::with_capacity(columns.len());
    for (i, &column) in columns.iter().enumerate() {
        arrays.push(match batches.as_slice() {
            [] => new_empty_array(arrow.schema().field(column).data_type()),
            [one] => one.column(i).clone(),
            many => {
                let parts: Vec<&dyn Array> = many.iter().map(|b| b.column(i).as_ref()).collect();
                concat(&parts)?
            }
        });
    }
    Ok(arrays)
}
