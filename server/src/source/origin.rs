//! Building a source's origin store: a local directory or an S3 bucket with
//! the source's credentials, timeouts and retry policy.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientConfigKey, ClientOptions, ObjectStore, RetryConfig};
use url::Url;

use super::local::LocalOrigin;
use super::presign::Presigner;
use crate::config::SourceConfig;
use crate::error::{QuiverError, Result};

/// An S3 client for `bucket` with a source's region, endpoint and keys,
/// falling back to the `AWS_*` environment and instance credentials.
pub fn s3_store(cfg: &SourceConfig, bucket: &str) -> Result<AmazonS3> {
    quiver_client::tls::use_ring_provider();
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(region) = &cfg.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &cfg.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    if let (Some(key), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        builder = builder
            .with_access_key_id(key)
            .with_secret_access_key(secret);
    }
    // Explicit timeouts and retries: a stalled origin must fail a miss in
    // bounded time, not hang it on library defaults.
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: cfg.retries,
        retry_timeout: cfg.request_timeout.0.saturating_mul(cfg.retries as u32 + 1),
    };
    let allow_http = allows_http(&builder);
    builder
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(cfg.connect_timeout.0)
                .with_timeout(cfg.request_timeout.0)
                .with_allow_http(allow_http),
        )
        .with_retry(retry)
        .build()
        .map_err(|e| QuiverError::invalid(format!("source {}: {e}", cfg.name)))
}

/// Whether plain HTTP is allowed to the builder's endpoint: when the
/// endpoint (from the source's settings or `AWS_ENDPOINT_URL`) is `http://`,
/// or `AWS_ALLOW_HTTP` says so. Read from the builder because the client
/// options set after it replace the ones `from_env` gathered.
fn allows_http(builder: &AmazonS3Builder) -> bool {
    let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
    let allowed = builder.get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp));
    endpoint.is_some_and(|e| e.starts_with("http://"))
        || allowed.is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The store rooted at `url` (which ends in `/`), and its URL signer where
/// the store can sign (S3).
pub fn open(cfg: &SourceConfig, url: &Url) -> Result<(Arc<dyn ObjectStore>, Option<Presigner>)> {
    match url.scheme() {
        "file" => {
            let dir = url.to_file_path().map_err(|_| {
                QuiverError::invalid(format!(
                    "source {}: {} is not a local directory",
                    cfg.name, cfg.url
                ))
            })?;
            std::fs::create_dir_all(&dir).map_err(|e| {
                QuiverError::invalid(format!(
                    "source {}: cannot create {}: {e}",
                    cfg.name,
                    dir.display()
                ))
            })?;
            let fs = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| QuiverError::invalid(format!("source {}: {e}", cfg.name)))?;
            // object_store's local ETag survives a same-size rewrite whose
            // mtime is put back; `LocalOrigin`'s does not.
            Ok((Arc::new(LocalOrigin::new(fs)), None))
        }
        "s3" => {
            let s3 = s3_store(cfg, url.host_str().unwrap_or_default())?;
            let prefix = url.path().trim_matches('/');
            let presigner = Some(Presigner::new(s3.clone(), prefix));
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            };
            Ok((store, presigner))
        }
        other => Err(QuiverError::invalid(format!(
            "source {}: scheme {other} is not supported",
            cfg.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_follows_the_endpoint_or_allow_http() {
        let http = AmazonS3Builder::new()
            .with_config(AmazonS3ConfigKey::Endpoint, "http://127.0.0.1:9000");
        assert!(allows_http(&http));
        let https = AmazonS3Builder::new()
            .with_config(AmazonS3ConfigKey::Endpoint, "https://s3.example.com");
        assert!(!allows_http(&https));
        assert!(!allows_http(&AmazonS3Builder::new()));
        let allowed = AmazonS3Builder::new().with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp),
            "true",
        );
        assert!(allows_http(&allowed));
    }
}
