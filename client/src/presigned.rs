//! Following a pre-signed endpoint: the node sent a GET URL for a cold
//! object instead of batches, and the client reads the object from the
//! store itself.
//!
//! Only the footer and the byte ranges the projection and filter need are
//! read, with HTTP Range requests (object_store's HTTP store), and DataFusion
//! applies the same projection, filter and limit the node would. Every
//! request names the planned ETag with `If-Match`, and every answer's ETag is
//! checked too (not every store honours `If-Match`), so a rewritten object is
//! reported as changed rather than read at the wrong version.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::http::{HttpBuilder, HttpStore};
use object_store::path::Path;
use object_store::{
    ClientOptions, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result as OsResult, RetryConfig,
};
use quiver_protocol::{PresignedEndpoint, ScanRequest};
use url::Url;

use crate::direct::read_object;
use crate::error::ClientError;

/// The name the object is registered under in the reading session.
const OBJECT: &str = "object.parquet";

/// A pre-signed endpoint of a plan: the URL and what it reads.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Presigned {
    pub url: String,
    pub object: PresignedEndpoint,
}

/// The object behind `presigned`, read with `req`'s projection, filter and
/// limit. `timeout` bounds each HTTP request.
pub async fn read_presigned(
    presigned: &Presigned,
    req: &ScanRequest,
    timeout: Duration,
) -> Result<Vec<RecordBatch>, ClientError> {
    let what = format!("{}/{}", presigned.object.source, presigned.object.path);
    let url = Url::parse(&presigned.url).map_err(|e| ClientError::BadUrl {
        url: what.clone(),
        reason: format!("the pre-signed URL is not valid: {e}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::BadUrl {
            url: what,
            reason: format!("a pre-signed URL must be http(s), not {}", url.scheme()),
        });
    }
    let options = ClientOptions::new()
        .with_allow_http(url.scheme() == "http")
        .with_timeout(timeout)
        .with_connect_timeout(timeout.min(Duration::from_secs(10)));
    let retry = RetryConfig {
        max_retries: 3,
        retry_timeout: timeout,
        ..Default::default()
    };
    let http = HttpBuilder::new()
        .with_url(url.as_str())
        .with_client_options(options)
        .with_retry(retry)
        .build()
        .map_err(|e| ClientError::Origin {
            what: what.clone(),
            reason: e.to_string(),
        })?;
    let store = Arc::new(PinnedUrl {
        http,
        etag: presigned.object.etag.clone(),
        size: presigned.object.size,
    });
    let object_url = Url::parse(&format!("quiver-presigned://object/{OBJECT}")).map_err(|e| {
        ClientError::BadUrl {
            url: what.clone(),
            reason: e.to_string(),
        }
    })?;
    read_object(store, &object_url, req)
        .await
        .map_err(|e| classify(e, &what))
}

/// Turns a failed read into what the caller acts on: a refused URL or a
/// changed object means planning again; anything else is reported.
fn classify(e: datafusion::error::DataFusionError, what: &str) -> ClientError {
    use object_store::Error as E;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(store) = err.downcast_ref::<object_store::Error>() {
            return match store {
                E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
                    ClientError::UrlRefused(what.to_string())
                }
                E::Precondition { .. } => ClientError::ObjectChanged(what.to_string()),
                other => ClientError::Origin {
                    what: what.to_string(),
                    reason: other.to_string(),
                },
            };
        }
        source = err.source();
    }
    ClientError::DataFusion(format!("reading {what} failed: {}", e.message()))
}

/// The one object a pre-signed URL reads, as an `ObjectStore`: metadata from
/// the plan (the URL allows no HEAD), bytes by ranged GETs of the URL.
#[derive(Debug)]
struct PinnedUrl {
    http: HttpStore,
    etag: String,
    size: u64,
}

impl fmt::Display for PinnedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinnedUrl(etag {})", self.etag)
    }
}

fn not_supported(operation: &str) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("a pre-signed URL only reads: {operation} is not possible").into(),
    }
}

impl PinnedUrl {
    fn meta(&self, location: &Path) -> ObjectMeta {
        ObjectMeta {
            location: location.clone(),
            last_modified: Default::default(),
            size: self.size,
            e_tag: Some(self.etag.clone()),
            version: None,
        }
    }
}

#[async_trait]
impl ObjectStore for PinnedUrl {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> OsResult<PutResult> {
        Err(not_supported("put"))
    }

    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        Err(not_supported("multipart put"))
    }

    async fn get_opts(&self, location: &Path, mut options: GetOptions) -> OsResult<GetResult> {
        if location.as_ref() != OBJECT {
            return Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: "a pre-signed URL reads one object".into(),
            });
        }
        if options.head {
            return Ok(GetResult {
                payload: GetResultPayload::Stream(futures::stream::empty().boxed()),
                meta: self.meta(location),
                range: 0..self.size,
                attributes: Default::default(),
            });
        }
        options.if_match = Some(self.etag.clone());
        let mut result = self.http.get_opts(&Path::default(), options).await?;
        if let Some(etag) = &result.meta.e_tag {
            if etag.trim_matches('"') != self.etag.trim_matches('"') {
                return Err(object_store::Error::Precondition {
                    path: location.to_string(),
                    source: format!("the store answered ETag {etag}, not {}", self.etag).into(),
                });
            }
        }
        result.meta.location = location.clone();
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> OsResult<Vec<Bytes>> {
        // One request per range, all at once: the ranges are column chunks
        // of one row group, which a store serves best in parallel.
        let reads = ranges.iter().map(|r| async move {
            let options = GetOptions {
                range: Some(r.clone().into()),
                ..Default::default()
            };
            self.get_opts(location, options).await?.bytes().await
        });
        futures::future::try_join_all(reads).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        locations.map(|_| Err(not_supported("delete"))).boxed()
    }

    fn list(&self, _: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        futures::stream::once(async { Err(not_supported("list")) }).boxed()
    }

    async fn list_with_delimiter(&self, _: Option<&Path>) -> OsResult<ListResult> {
        Err(not_supported("list"))
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> OsResult<()> {
        Err(not_supported("copy"))
    }
}
