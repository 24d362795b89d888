//! The Parquet reader DataFusion uses for Quiver scans: every byte comes
//! through the caching store, pinned to the version the plan was made
//! against, and the footer comes parsed from the footer cache.

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
use parquet::file::metadata::ParquetMetaData;

use crate::cache::footers::to_parquet_error;
use crate::cache::{CachingObjectStore, FooterCache};
use crate::source::ObjectId;

#[derive(Debug)]
pub struct PinnedReaderFactory {
    store: Arc<CachingObjectStore>,
    footers: FooterCache,
}

impl PinnedReaderFactory {
    pub fn new(store: Arc<CachingObjectStore>, footers: FooterCache) -> Self {
        PinnedReaderFactory { store, footers }
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
        Ok(Box::new(PinnedReader {
            metrics: ParquetFileMetrics::new(partition_index, meta.location.as_ref(), metrics),
            store: self.store.clone(),
            footers: self.footers.clone(),
            id,
        }))
    }
}

struct PinnedReader {
    store: Arc<CachingObjectStore>,
    footers: FooterCache,
    id: ObjectId,
    metrics: ParquetFileMetrics,
}

impl AsyncFileReader for PinnedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.metrics
            .bytes_scanned
            .add((range.end - range.start) as usize);
        async move {
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
        let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        self.metrics.bytes_scanned.add(total as usize);
        async move {
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
