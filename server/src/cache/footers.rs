//! Parsed Parquet footers and page indexes, kept in memory by object version.
//!
//! Decoding a footer and its page index costs more than reading it from the
//! chunk cache, and every scan of a file needs them, so a warm scan should
//! not decode them again.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use foyer::{Cache, CacheBuilder};
use futures::future::{BoxFuture, FutureExt};
use parquet::arrow::async_reader::MetadataFetch;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

use super::CachingObjectStore;
use crate::error::{QuiverError, Result};
use crate::source::ObjectId;

/// Read with the footer in one request: most footers and page indexes fit.
const FOOTER_PREFETCH: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FooterKey {
    source: Arc<str>,
    path: String,
    etag: String,
}

impl From<&ObjectId> for FooterKey {
    fn from(id: &ObjectId) -> Self {
        FooterKey {
            source: id.source.clone(),
            path: id.path.to_string(),
            etag: id.etag.clone(),
        }
    }
}

#[derive(Clone)]
pub struct FooterCache {
    cache: Cache<FooterKey, Arc<ParquetMetaData>>,
}

impl std::fmt::Debug for FooterCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FooterCache")
            .field("usage", &self.cache.usage())
            .finish()
    }
}

/// Wraps an error of ours so it survives the trip through the parquet crate.
pub(crate) fn to_parquet_error(err: QuiverError) -> ParquetError {
    ParquetError::External(Box::new(err))
}

struct PinnedFetch<'a> {
    store: &'a CachingObjectStore,
    id: &'a ObjectId,
}

impl MetadataFetch for PinnedFetch<'_> {
    fn fetch(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let mut parts = self
                .store
                .read_pinned(self.id, std::slice::from_ref(&range))
                .await
                .map_err(to_parquet_error)?;
            Ok(parts.pop().unwrap_or_default())
        }
        .boxed()
    }
}

impl FooterCache {
    pub fn new(capacity: u64) -> Self {
        let cache = CacheBuilder::new(capacity as usize)
            .with_shards(4)
            .with_weighter(|k: &FooterKey, v: &Arc<ParquetMetaData>| {
                v.memory_size() + k.path.len() + k.etag.len()
            })
            .build();
        FooterCache { cache }
    }

    /// The footer (with page index where the file has one) of version `id`.
    pub async fn get(
        &self,
        store: &CachingObjectStore,
        id: &ObjectId,
    ) -> Result<Arc<ParquetMetaData>> {
        let key = FooterKey::from(id);
        if let Some(entry) = self.cache.get(&key) {
            return Ok(entry.value().clone());
        }
        let fetch = PinnedFetch { store, id };
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .with_prefetch_hint(Some(FOOTER_PREFETCH))
            .load_and_finish(fetch, id.size)
            .await
            .map_err(|e| from_parquet_error(e, id))?;
        let metadata = Arc::new(metadata);
        self.cache.insert(key, metadata.clone());
        Ok(metadata)
    }

    pub fn forget(&self, id: &ObjectId) {
        self.cache.remove(&FooterKey::from(id));
    }
}

/// Our own errors come back out unchanged; anything the parquet crate found
/// wrong with the bytes means the object is not (intact) Parquet.
pub(crate) fn from_parquet_error(err: ParquetError, id: &ObjectId) -> QuiverError {
    match err {
        ParquetError::External(inner) => match inner.downcast::<QuiverError>() {
            Ok(q) => *q,
            Err(other) => QuiverError::DataLoss(format!(
                "object {}/{} could not be read as Parquet: {other}",
                id.source, id.path
            )),
        },
        other => QuiverError::DataLoss(format!(
            "object {}/{} is not a valid Parquet file: {other}",
            id.source, id.path
        )),
    }
}
