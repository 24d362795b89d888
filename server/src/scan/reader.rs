//! The Parquet reader DataFusion uses for Quiver scans: every byte comes
//! through the caching store, pinned to the version the plan was made
//! against, and the footer comes parsed from the footer cache.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{ParquetFileMetrics, ParquetFileReaderFactory};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::future::{BoxFuture, FutureExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::access_log::AccessLog;
use crate::cache::footers::to_parquet_error;
use crate::cache::{CachingObjectStore, FooterCache};
use crate::source::ObjectId;

/// Bytes that read-ahead may have in flight across the whole node, so that
/// many concurrent scans cannot multiply it beyond a fixed amount of memory.
pub const READ_AHEAD_BUDGET_KIB: usize = 64 * 1024;

#[derive(Debug)]
pub struct PinnedReaderFactory {
    store: Arc<CachingObjectStore>,
    footers: FooterCache,
    budget: Arc<Semaphore>,
    /// Where this scan's reads are recorded, and under which client.
    access: Option<(Arc<AccessLog>, Arc<str>)>,
}

impl PinnedReaderFactory {
    pub fn new(
        store: Arc<CachingObjectStore>,
        footers: FooterCache,
        budget: Arc<Semaphore>,
        access: Option<(Arc<AccessLog>, Arc<str>)>,
    ) -> Self {
        PinnedReaderFactory {
            access,
            store,
            footers,
            budget,
        }
    }
}

impl ParquetFileReaderFactory for PinnedReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        _metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::common::Result<Box<dyn AsyncFileReader + Send>> {
        let meta = &file.object_meta;
        let etag = meta.e_tag.clone().ok_or_else(|| {
            DataFusionError::Internal(format!(
                "scan of {} was planned without an ETag",
                meta.location
            ))
        })?;
        let id = ObjectId {
            source: self.store.source().name.clone(),
            path: meta.location.clone(),
            etag,
            size: meta.size,
            last_modified: meta.last_modified,
        };
        let metrics = ParquetFileMetrics::new(partition_index, meta.location.as_ref(), metrics);
        Ok(Box::new(self.pinned(id, metrics)))
    }
}

impl PinnedReaderFactory {
    /// A reader of `id` outside any DataFusion plan (hot-tier fills).
    pub fn reader(&self, id: &ObjectId) -> PinnedReader {
        let metrics = ParquetFileMetrics::new(0, id.path.as_ref(), &ExecutionPlanMetricsSet::new());
        self.pinned(id.clone(), metrics)
    }

    fn pinned(&self, id: ObjectId, metrics: ParquetFileMetrics) -> PinnedReader {
        PinnedReader {
            metrics,
            store: self.store.clone(),
            footers: self.footers.clone(),
            id,
            layout: None,
            ahead: BTreeSet::new(),
            budget: self.budget.clone(),
            access: self.access.clone(),
        }
    }
}

/// Row groups read ahead of the one being decoded, at most. Each is fetched
/// on connections of its own, so a window of several keeps as many byte
/// ranges in flight as a tuned engine's partitions do: the origin's
/// per-connection bandwidth, not its latency, then bounds a cold scan.
const READ_AHEAD_ROW_GROUPS: usize = 16;

/// Bytes one scan reads ahead at once, at most: a window of narrow column
/// chunks spans many row groups, one of wide row groups fewer (always at
/// least the next).
const READ_AHEAD_WINDOW: u64 = 32 << 20;

pub struct PinnedReader {
    store: Arc<CachingObjectStore>,
    footers: FooterCache,
    id: ObjectId,
    metrics: ParquetFileMetrics,
    /// Byte range of each column chunk, by row group; known once the footer is.
    layout: Option<Vec<Vec<Option<Range<u64>>>>>,
    /// (row group, column) pairs already read ahead.
    ahead: BTreeSet<(usize, usize)>,
    budget: Arc<Semaphore>,
    access: Option<(Arc<AccessLog>, Arc<str>)>,
}

/// Where a column chunk's bytes are; `None` for what a corrupt footer claims
/// (negative offsets, ranges past the end of the object).
pub fn column_chunk_range(col: &ColumnChunkMetaData, size: u64) -> Option<Range<u64>> {
    let start = u64::try_from(
        col.dictionary_page_offset()
            .unwrap_or_else(|| col.data_page_offset()),
    )
    .ok()?;
    let len = u64::try_from(col.compressed_size()).ok()?;
    let end = start.checked_add(len).filter(|&e| e <= size)?;
    Some(start..end)
}

/// Each column chunk's byte range, by row group.
fn layout(metadata: &ParquetMetaData, size: u64) -> Vec<Vec<Option<Range<u64>>>> {
    metadata
        .row_groups()
        .iter()
        .map(|rg| {
            rg.columns()
                .iter()
                .map(|c| column_chunk_range(c, size))
                .collect()
        })
        .collect()
}

impl PinnedReader {
    /// Records the decoder's reads (not the read-ahead's) when the node
    /// keeps an access log.
    fn log(&self, ranges: &[Range<u64>]) {
        if let Some((log, client)) = &self.access {
            log.record(client, &self.id, ranges);
        }
    }

    /// A cold scan reads row groups one after another, paying the origin's
    /// latency twice per row group. When the decoder reads some columns of
    /// a row group, fetch the same columns of the next few row groups in the
    /// background; the decoder's own reads then join those fetches (single
    /// flight) or hit the cache. Bounded to a small window, so it never runs
    /// far ahead of a slow reader.
    async fn read_ahead(&mut self, ranges: &[Range<u64>]) {
        if self.layout.is_none() {
            match self.footers.get(&self.store, &self.id).await {
                Ok(m) => self.layout = Some(layout(&m, self.id.size)),
                Err(_) => return,
            }
        }
        let Some(layout) = &self.layout else { return };
        let mut last_group = None;
        let mut columns = BTreeSet::new();
        for (g, group) in layout.iter().enumerate() {
            for (c, chunk) in group.iter().enumerate() {
                let Some(chunk) = chunk else { continue };
                if ranges
                    .iter()
                    .any(|r| r.start < chunk.end && chunk.start < r.end)
                {
                    last_group = Some(last_group.map_or(g, |l: usize| l.max(g)));
                    columns.insert(c);
                }
            }
        }
        let Some(last) = last_group else { return };
        let mut wanted = Vec::new();
        let mut pairs = Vec::new();
        let mut bytes = 0u64;
        for g in last + 1..=last.saturating_add(READ_AHEAD_ROW_GROUPS) {
            if bytes >= READ_AHEAD_WINDOW {
                break;
            }
            for &c in &columns {
                if let Some(Some(range)) = layout.get(g).and_then(|group| group.get(c)) {
                    if !self.ahead.contains(&(g, c)) {
                        bytes = bytes.saturating_add(range.end - range.start);
                        wanted.push(range.clone());
                        pairs.push((g, c));
                    }
                }
            }
        }
        if wanted.is_empty() {
            return;
        }
        let kib: u64 = wanted
            .iter()
            .map(|r| (r.end - r.start).div_ceil(1024))
            .sum();
        // Out of budget: nothing is marked as read ahead, so a later read
        // tries again; until then the decoder reads these itself.
        let Ok(permit) = self
            .budget
            .clone()
            .try_acquire_many_owned(u32::try_from(kib).unwrap_or(u32::MAX))
        else {
            return;
        };
        self.ahead.extend(pairs);
        let (store, id) = (self.store.clone(), self.id.clone());
        // Errors are left for the decoder's own read to report; the read
        // stays in the scan's trace.
        tokio::spawn(
            async move {
                let _ = store.read_pinned(&id, &wanted).await;
                drop(permit);
            }
            .in_current_span(),
        );
    }
}

impl AsyncFileReader for PinnedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.metrics
            .bytes_scanned
            .add(range.end.saturating_sub(range.start) as usize);
        self.log(std::slice::from_ref(&range));
        async move {
            self.read_ahead(std::slice::from_ref(&range)).await;
            let mut parts = self
                .store
                .read_pinned(&self.id, std::slice::from_ref(&range))
                .await
                .map_err(to_parquet_error)?;
            Ok(parts.pop().unwrap_or_default())
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        let total: u64 = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
        self.metrics.bytes_scanned.add(total as usize);
        self.log(&ranges);
        async move {
            self.read_ahead(&ranges).await;
            self.store
                .read_pinned(&self.id, &ranges)
                .await
                .map_err(to_parquet_error)
        }
        .boxed()
    }

    /// The cached footer already holds the page index, so the options'
    /// page-index policy needs no extra I/O whichever it is.
    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            self.footers
                .get(&self.store, &self.id)
                .await
                .map_err(to_parquet_error)
        }
        .boxed()
    }
}
