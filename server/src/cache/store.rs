//! An `ObjectStore` over one source that answers reads from the chunk cache.
//!
//! The plain `ObjectStore` API carries no version on `get_range`, so reads
//! through the trait use the source's validated identity; Quiver's own Parquet
//! reader uses [`CachingObjectStore::read_pinned`] instead, which names the
//! exact ETag its plan was made against, so one scan never mixes two versions
//! of an object.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    Result as OsResult,
};

use super::ChunkCache;
use crate::error::QuiverError;
use crate::source::{ObjectId, Source};

#[derive(Debug)]
pub struct CachingObjectStore {
    source: Arc<Source>,
    chunks: ChunkCache,
}

impl fmt::Display for CachingObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachingObjectStore({})", self.source.name)
    }
}

/// Quiver errors travel through DataFusion inside object_store errors and
/// are recovered by downcasting when the scan fails.
fn to_store_error(err: QuiverError) -> object_store::Error {
    object_store::Error::Generic {
        store: "quiver-cache",
        source: Box::new(err),
    }
}

fn read_only(operation: &str) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("Quiver sources are read-only: {operation} is not allowed").into(),
    }
}

impl CachingObjectStore {
    pub fn new(source: Arc<Source>, chunks: ChunkCache) -> Self {
        CachingObjectStore { source, chunks }
    }

    pub fn source(&self) -> &Arc<Source> {
        &self.source
    }

    /// Whether the cache holds every byte of `ranges` of `id`.
    pub fn holds(&self, id: &ObjectId, ranges: &[Range<u64>]) -> bool {
        let (needed, cached) = self.chunks.coverage(id, ranges);
        cached >= needed
    }

    /// Reads `ranges` of exactly the version `id` names.
    pub async fn read_pinned(
        &self,
        id: &ObjectId,
        ranges: &[Range<u64>],
    ) -> crate::error::Result<Vec<Bytes>> {
        let result = self
            .chunks
            .read_ranges(id, &self.source.origin, ranges)
            .await;
        if let Err(QuiverError::Changed(_)) = &result {
            // The validated identity is stale: forget it, so the next plan
            // names the new version instead of failing the same way.
            self.source.forget(&id.path);
        }
        result
    }

    /// The version an un-pinned read sees: the one named by `If-Match`, else
    /// the validated current identity.
    async fn version(&self, location: &Path, if_match: Option<&str>) -> OsResult<ObjectId> {
        match self.source.version(location, if_match).await {
            Err(QuiverError::Changed(current)) => Err(object_store::Error::Precondition {
                path: location.to_string(),
                source: format!("the current ETag is {current}").into(),
            }),
            other => other.map_err(to_store_error),
        }
    }
}

#[async_trait]
impl ObjectStore for CachingObjectStore {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> OsResult<PutResult> {
        Err(read_only("put"))
    }

    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        Err(read_only("multipart put"))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        let uncachable = options.head
            || options.if_none_match.is_some()
            || options.if_modified_since.is_some()
            || options.if_unmodified_since.is_some()
            || options.version.is_some();
        if uncachable {
            return self.source.origin.get_opts(location, options).await;
        }
        let id = self.version(location, options.if_match.as_deref()).await?;
        let range = match options.range {
            None => 0..id.size,
            Some(GetRange::Bounded(r)) => r.start..r.end.min(id.size),
            Some(GetRange::Offset(o)) => o.min(id.size)..id.size,
            Some(GetRange::Suffix(n)) => id.size.saturating_sub(n)..id.size,
        };
        let bytes = self
            .read_pinned(&id, std::slice::from_ref(&range))
            .await
            .map_err(to_store_error)?
            .pop()
            .unwrap_or_default();
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
            meta: id.meta(),
            range,
            attributes: Default::default(),
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> OsResult<Vec<Bytes>> {
        let id = self.version(location, None).await?;
        self.read_pinned(&id, ranges).await.map_err(to_store_error)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        locations.map(|_| Err(read_only("delete"))).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.source.origin.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        self.source.origin.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> OsResult<()> {
        Err(read_only("copy"))
    }
}
