//! Pre-signed GET URLs for one S3 source, signed with the source's own
//! credentials.
//!
//! A URL signs only the `host` header (SigV4 query authentication), so the
//! client may add `Range` and `If-Match`: it reads just the byte ranges it
//! needs and names the ETag the plan saw, and a store that honours
//! `If-Match` (S3 does) refuses a rewritten object outright.

use std::time::Duration;

use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::signer::Signer;
use url::Url;

use crate::error::{QuiverError, Result};

/// Signs GET URLs for the objects of one source.
#[derive(Debug, Clone)]
pub struct Presigner {
    s3: AmazonS3,
    /// The source's key prefix inside its bucket, without slashes at
    /// either end; empty for a whole bucket.
    prefix: String,
}

impl Presigner {
    pub fn new(s3: AmazonS3, prefix: &str) -> Self {
        Presigner {
            s3,
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// A URL that GETs `path` (relative to the source root) for `expiry`.
    /// Only GET is ever signed: a URL can never write or delete.
    pub async fn get_url(&self, path: &Path, expiry: Duration) -> Result<Url> {
        let key = if self.prefix.is_empty() {
            path.clone()
        } else {
            Path::parse(format!("{}/{}", self.prefix, path.as_ref())).map_err(|e| {
                QuiverError::Internal(format!("cannot name {path} inside the bucket: {e}"))
            })?
        };
        self.s3
            .signed_url(http::Method::GET, &key, expiry)
            .await
            .map_err(|e| QuiverError::from_store(path.as_ref(), &e))
    }
}
