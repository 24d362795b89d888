//! The sources allowlist: which object stores a node may read, how a request's
//! `source`/`path`/`url` maps onto one of them, and object identity (ETag,
//! size) trusted for the source's `validate` interval.
//!
//! Clients never name buckets; they name a configured source, and every path
//! is checked here before any I/O happens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig,
};
use quiver_protocol::ScanRequest;
use url::Url;

use crate::config::SourceConfig;
use crate::error::{QuiverError, Result};
use crate::miss::Presigner;

/// Maps kept for validation are pruned of expired entries once this large, so
/// a long-running node that sees many paths does not grow without bound.
const PRUNE_AT: usize = 16_384;

/// What the cache keys on: an object at one version. A rewritten object gets
/// a new ETag, hence new keys, so stale bytes are never read back for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectId {
    pub source: Arc<str>,
    pub path: Path,
    pub etag: String,
    pub size: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

impl ObjectId {
    fn from_meta(source: &Arc<str>, meta: &ObjectMeta) -> Self {
        ObjectId {
            source: source.clone(),
            path: meta.location.clone(),
            etag: etag_of(meta),
            size: meta.size,
            last_modified: meta.last_modified,
        }
    }

    /// The metadata DataFusion plans a file scan with.
    pub fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            location: self.path.clone(),
            last_modified: self.last_modified,
            size: self.size,
            e_tag: Some(self.etag.clone()),
            version: None,
        }
    }
}

/// Stores without ETags still get a version token: modification time + size.
fn etag_of(meta: &ObjectMeta) -> String {
    meta.e_tag.clone().unwrap_or_else(|| {
        format!(
            "mtime-{}-{}",
            meta.last_modified.timestamp_nanos_opt().unwrap_or_default(),
            meta.size
        )
    })
}

/// A request resolved against the allowlist.
#[derive(Debug, Clone)]
pub enum Target {
    Object { source: Arc<Source>, path: Path },
    Prefix { source: Arc<Source>, prefix: Path },
}

impl Target {
    pub fn source(&self) -> &Arc<Source> {
        match self {
            Target::Object { source, .. } | Target::Prefix { source, .. } => source,
        }
    }
}

/// One configured source: an object store rooted at the source's URL.
#[derive(Debug)]
pub struct Source {
    pub name: Arc<str>,
    pub url: Url,
    pub origin: Arc<dyn ObjectStore>,
    /// Signs GET URLs for the source's objects; `None` for a local
    /// directory, whose objects only the node can read.
    pub presigner: Option<Presigner>,
    validate: Duration,
    max_objects: usize,
    identities: Mutex<HashMap<Path, (ObjectId, Instant)>>,
    listings: Mutex<HashMap<Path, (Vec<ObjectId>, Instant)>>,
}

/// An S3 client for `bucket` with a source's region, endpoint and keys,
/// falling back to the `AWS_*` environment and instance credentials.
pub fn s3_store(cfg: &SourceConfig, bucket: &str) -> Result<AmazonS3> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(region) = &cfg.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &cfg.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
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
    builder
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(cfg.connect_timeout.0)
                .with_timeout(cfg.request_timeout.0)
                .with_allow_http(
                    cfg.endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://")),
                ),
        )
        .with_retry(retry)
        .build()
        .map_err(|e| QuiverError::invalid(format!("source {}: {e}", cfg.name)))
}

impl Source {
    /// `max_objects` caps what one listing may return, so a request naming a
    /// huge prefix is refused instead of listing and planning without bound.
    pub fn new(cfg: &SourceConfig, max_objects: usize) -> Result<Self> {
        let mut url = Url::parse(&cfg.url).map_err(|e| {
            QuiverError::invalid(format!(
                "source {} has a bad url {}: {e}",
                cfg.name, cfg.url
            ))
        })?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let mut presigner = None;
        let origin: Arc<dyn ObjectStore> = match url.scheme() {
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
                Arc::new(fs)
            }
            "s3" => {
                let s3 = s3_store(cfg, url.host_str().unwrap_or_default())?;
                let prefix = url.path().trim_matches('/');
                presigner = Some(Presigner::new(s3.clone(), prefix));
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix))
                }
            }
            other => {
                return Err(QuiverError::invalid(format!(
                    "source {}: scheme {other} is not supported",
                    cfg.name
                )))
            }
        };
        Ok(Source {
            name: Arc::from(cfg.name.as_str()),
            url,
            origin,
            presigner,
            validate: cfg.validate.0,
            max_objects,
            identities: Mutex::default(),
            listings: Mutex::default(),
        })
    }

    /// The current identity of one object, from the validation cache while it
    /// is fresh, else from the origin.
    pub async fn identity(&self, path: &Path) -> Result<ObjectId> {
        if let Some(id) = fresh(&self.identities, path, self.validate) {
            return Ok(id);
        }
        self.revalidate(path).await
    }

    /// Asks the origin, bypassing the validation cache: used when a client's
    /// ticket names an ETag the cache has not seen yet.
    pub async fn revalidate(&self, path: &Path) -> Result<ObjectId> {
        let meta = self
            .origin
            .head(path)
            .await
            .map_err(|e| QuiverError::from_store(&self.describe(path), &e))?;
        let id = ObjectId::from_meta(&self.name, &meta);
        remember(&self.identities, path.clone(), id.clone());
        Ok(id)
    }

    /// Every Parquet object under `prefix`, sorted by path. Files whose name
    /// starts with `.` or `_` are markers (`_SUCCESS`, `.quiver/`), not data.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectId>> {
        if let Some(ids) = fresh(&self.listings, prefix, self.validate) {
            return Ok(ids);
        }
        let prefix_opt = (!prefix.as_ref().is_empty()).then_some(prefix);
        let metas: Vec<ObjectMeta> = self
            .origin
            .list(prefix_opt)
            .try_filter(|m| futures::future::ready(is_data_file(&m.location)))
            .take(self.max_objects + 1)
            .try_collect()
            .await
            .map_err(|e| QuiverError::from_store(&self.describe(prefix), &e))?;
        if metas.len() > self.max_objects {
            return Err(QuiverError::ResourceExhausted(format!(
                "{} holds more than {} Parquet objects, the most one request may name; use a longer prefix",
                self.describe(prefix),
                self.max_objects
            )));
        }
        // Some stores (s3s-fs among them) list without ETags while HEAD has
        // them: ask HEAD so that an object has one identity however found.
        let mut ids: Vec<ObjectId> = futures::stream::iter(metas)
            .map(|m| async move {
                if m.e_tag.is_some() {
                    let id = ObjectId::from_meta(&self.name, &m);
                    remember(&self.identities, id.path.clone(), id.clone());
                    Ok(id)
                } else {
                    self.identity(&m.location).await
                }
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        ids.sort_by(|a, b| a.path.cmp(&b.path));
        remember(&self.listings, prefix.clone(), ids.clone());
        Ok(ids)
    }

    /// Objects whose identity this source has validated recently (up to
    /// the identity cache's bound): the candidates a hand-off offers.
    pub fn known(&self) -> Vec<ObjectId> {
        lock(&self.identities)
            .values()
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Forgets what validation cached about `path` (and listings that may
    /// contain it), so the next request asks the origin.
    pub fn forget(&self, path: &Path) {
        lock(&self.identities).remove(path);
        lock(&self.listings).clear();
    }

    /// Forgets every listing, so the next one asks the origin: a catalog
    /// refreshed on demand must see objects added a moment ago.
    pub fn forget_listings(&self) {
        lock(&self.listings).clear();
    }

    /// `source/path`, as users write it in messages.
    pub fn describe(&self, path: &Path) -> String {
        format!("{}/{}", self.name, path)
    }
}

fn is_data_file(path: &Path) -> bool {
    let hidden = path
        .parts()
        .any(|p| p.as_ref().starts_with('.') || p.as_ref().starts_with('_'));
    !hidden && path.as_ref().ends_with(".parquet")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave a map half-updated in a
    // way that matters (entries are replaced whole), so keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fresh<V: Clone>(
    map: &Mutex<HashMap<Path, (V, Instant)>>,
    key: &Path,
    ttl: Duration,
) -> Option<V> {
    let map = lock(map);
    let (value, at) = map.get(key)?;
    (at.elapsed() < ttl).then(|| value.clone())
}

fn remember<V>(map: &Mutex<HashMap<Path, (V, Instant)>>, key: Path, value: V) {
    let mut map = lock(map);
    if map.len() >= PRUNE_AT {
        map.clear();
    }
    map.insert(key, (value, Instant::now()));
}

/// The configured sources, in configuration order (the first is the default
/// catalog for SQL).
#[derive(Debug, Default)]
pub struct Sources {
    sources: Vec<Arc<Source>>,
}

impl Sources {
    pub fn new(configs: &[SourceConfig], max_objects: usize) -> Result<Self> {
        let sources = configs
            .iter()
            .map(|c| Source::new(c, max_objects).map(Arc::new))
            .collect::<Result<_>>()?;
        Ok(Sources { sources })
    }

    pub fn all(&self) -> &[Arc<Source>] {
        &self.sources
    }

    pub fn get(&self, name: &str) -> Result<&Arc<Source>> {
        self.sources
            .iter()
            .find(|s| &*s.name == name)
            .ok_or_else(|| QuiverError::NotFound(format!("there is no source named `{name}`")))
    }

    /// Resolves `source` + `path`, or `url`, to an object or a prefix inside
    /// a configured source.
    pub fn resolve(&self, req: &ScanRequest) -> Result<Target> {
        match (&req.source, &req.path, &req.url) {
            (Some(source), Some(path), None) => self.target(self.get(source)?, path),
            (Some(source), None, None) => self.target(self.get(source)?, ""),
            (None, None, Some(url)) => self.resolve_url(url),
            (None, _, None) => Err(QuiverError::invalid(
                "the request names no source: give `source` and `path`, or `url`",
            )),
            _ => Err(QuiverError::invalid(
                "give either `url` or `source` with `path`, not both",
            )),
        }
    }

    pub fn resolve_named(&self, source: &str, path: &str) -> Result<Target> {
        self.target(self.get(source)?, path)
    }

    fn resolve_url(&self, raw: &str) -> Result<Target> {
        let url = Url::parse(raw)
            .map_err(|e| QuiverError::invalid(format!("`{raw}` is not a valid URL: {e}")))?;
        let text = url.as_str();
        let source = self
            .sources
            .iter()
            .find(|s| text.starts_with(s.url.as_str()))
            .ok_or_else(|| {
                QuiverError::invalid(format!("`{raw}` is not inside any configured source"))
            })?;
        let rest = &text[source.url.as_str().len()..];
        let decoded = percent_decode(rest)?;
        self.target(source, &decoded)
    }

    fn target(&self, source: &Arc<Source>, raw: &str) -> Result<Target> {
        let trimmed = raw.trim_start_matches('/');
        let is_prefix = trimmed.is_empty() || trimmed.ends_with('/');
        let path = checked_path(trimmed)?;
        Ok(if is_prefix {
            Target::Prefix {
                source: source.clone(),
                prefix: path,
            }
        } else {
            Target::Object {
                source: source.clone(),
                path,
            }
        })
    }
}

/// Refuses anything that could step outside the source root or that the
/// store would silently rewrite into another key.
fn checked_path(raw: &str) -> Result<Path> {
    for part in raw.split('/').filter(|p| !p.is_empty()) {
        if part == ".." || part == "." {
            return Err(QuiverError::invalid(format!(
                "path `{raw}` contains `{part}`; paths are relative to the source root"
            )));
        }
    }
    if raw.contains('\\') || raw.chars().any(char::is_control) {
        return Err(QuiverError::invalid(format!(
            "path `{}` contains a backslash or a control character",
            raw.escape_default()
        )));
    }
    if raw.contains("//") {
        return Err(QuiverError::invalid(format!(
            "path `{raw}` has an empty segment"
        )));
    }
    Path::parse(raw).map_err(|e| QuiverError::invalid(format!("path `{raw}` is not valid: {e}")))
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| QuiverError::invalid(format!("`{s}` has a bad % escape")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| QuiverError::invalid(format!("`{s}` is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &std::path::Path) -> Sources {
        let url = Url::from_directory_path(dir).unwrap();
        Sources::new(&[SourceConfig::new("local", url.as_str())], 100).unwrap()
    }

    fn req(source: &str, path: &str) -> ScanRequest {
        ScanRequest {
            source: Some(source.into()),
            path: Some(path.into()),
            ..Default::default()
        }
    }

    #[test]
    fn resolves_objects_prefixes_and_urls() {
        let dir = tempfile::tempdir().unwrap();
        let s = sources(dir.path());
        assert!(
            matches!(s.resolve(&req("local", "t/a.parquet")).unwrap(), Target::Object { path, .. } if path.as_ref() == "t/a.parquet")
        );
        assert!(
            matches!(s.resolve(&req("local", "t/")).unwrap(), Target::Prefix { prefix, .. } if prefix.as_ref() == "t")
        );
        let url = format!(
            "{}t/my%20file.parquet",
            Url::from_directory_path(dir.path()).unwrap()
        );
        let by_url = ScanRequest {
            url: Some(url),
            ..Default::default()
        };
        assert!(
            matches!(s.resolve(&by_url).unwrap(), Target::Object { path, .. } if path.as_ref() == "t/my file.parquet")
        );
    }

    #[test]
    fn refuses_escapes_and_unknown_sources() {
        let dir = tempfile::tempdir().unwrap();
        let s = sources(dir.path());
        for bad in [
            "../etc/passwd",
            "t/../../x.parquet",
            "./a",
            "a\\b",
            "a//b",
            "a\nb",
        ] {
            let err = s.resolve(&req("local", bad)).unwrap_err();
            assert!(
                matches!(err, QuiverError::InvalidArgument(_)),
                "{bad}: {err:?}"
            );
        }
        assert!(matches!(
            s.resolve(&req("nope", "a")),
            Err(QuiverError::NotFound(_))
        ));
        let outside = ScanRequest {
            url: Some("file:///etc/passwd".into()),
            ..Default::default()
        };
        assert!(matches!(
            s.resolve(&outside),
            Err(QuiverError::InvalidArgument(_))
        ));
        let both = ScanRequest {
            url: Some("file:///x".into()),
            source: Some("local".into()),
            ..Default::default()
        };
        assert!(matches!(
            s.resolve(&both),
            Err(QuiverError::InvalidArgument(_))
        ));
    }

    #[test]
    fn debug_output_hides_credentials() {
        let mut cfg = SourceConfig::new("lake", "s3://bucket/prefix/");
        cfg.region = Some("us-east-1".into());
        cfg.access_key_id = Some("AKIDEXAMPLE".into());
        cfg.secret_access_key = Some("wJalrXUtnFEMI-very-secret".into());
        let source = Source::new(&cfg, 10).unwrap();
        let shown = format!("{source:?}");
        assert!(shown.contains("lake"), "{shown}");
        assert!(!shown.contains("very-secret"), "{shown}");
    }

    #[test]
    fn data_files_skip_markers() {
        assert!(is_data_file(&Path::from("t/a.parquet")));
        assert!(!is_data_file(&Path::from("t/_SUCCESS")));
        assert!(!is_data_file(&Path::from(".quiver/topology.json")));
        assert!(!is_data_file(&Path::from("t/_tmp/a.parquet")));
        assert!(!is_data_file(&Path::from("t/a.csv")));
    }
}
