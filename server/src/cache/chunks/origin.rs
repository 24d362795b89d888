//! The origin read behind a miss: one ranged GET pinned to the object
//! version the cache key names, and the error that says which version the
//! origin has instead.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use crate::error::{QuiverError, Result};
use crate::metrics::Metrics;
use crate::source::ObjectId;

/// One ranged GET, pinned to the ETag the cache key names. Stores that
/// ignore `If-Match` are caught by comparing the ETag they answer with.
#[tracing::instrument(
    name = "origin_get",
    skip_all,
    fields(source = %id.source, path = %id.path, start = range.start, end = range.end, otel.kind = "client")
)]
pub(super) async fn fetch_origin(
    origin: &Arc<dyn ObjectStore>,
    id: &ObjectId,
    range: Range<u64>,
    metrics: &Metrics,
) -> Result<Bytes> {
    let what = format!("{}/{}", id.source, id.path);
    let has_etag = !id.etag.starts_with("mtime-");
    let options = GetOptions {
        if_match: has_etag.then(|| id.etag.clone()),
        range: Some(GetRange::Bounded(range.clone())),
        ..Default::default()
    };
    metrics.origin_requests.inc();
    let _timer = metrics.origin_request_seconds.start_timer();
    let result = match origin.get_opts(&id.path, options).await {
        Ok(r) => r,
        Err(object_store::Error::Precondition { .. }) => {
            return Err(changed(origin, id).await);
        }
        Err(e) => return Err(QuiverError::from_store(&what, &e)),
    };
    let other_version = if has_etag {
        result.meta.e_tag.as_ref().is_some_and(|e| e != &id.etag)
    } else {
        result.meta.last_modified != id.last_modified || result.meta.size != id.size
    };
    if other_version {
        return Err(changed(origin, id).await);
    }
    let bytes = result
        .bytes()
        .await
        .map_err(|e| QuiverError::from_store(&what, &e))?;
    metrics.origin_bytes.inc_by(bytes.len() as u64);
    if bytes.len() as u64 != range.end - range.start {
        return Err(changed(origin, id).await);
    }
    Ok(bytes)
}

/// The error for an object that no longer is the version being read.
async fn changed(origin: &Arc<dyn ObjectStore>, id: &ObjectId) -> QuiverError {
    match origin.head(&id.path).await {
        Ok(meta) => QuiverError::Changed(meta.e_tag.unwrap_or_else(|| "unknown".into())),
        Err(e) => QuiverError::from_store(&format!("{}/{}", id.source, id.path), &e),
    }
}
