//! The sources allowlist: which object stores a node may read, how a request's
//! `source`/`path`/`url` maps onto one of them, and what the node knows about
//! each object's identity.
//!
//! Clients never name buckets; they name a configured source, and every path
//! is checked here before any I/O happens. An S3 source also signs URLs to
//! its objects (`presign`) for clients sent to read a cold object directly.

mod breaker;
mod identity;
mod local;
mod origin;
mod paths;
mod presign;

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use quiver_protocol::ScanRequest;
use tracing::Instrument;
use url::Url;

use crate::config::SourceConfig;
use crate::error::{QuiverError, Result};
use crate::metrics::Metrics;

pub use breaker::Breaker;
pub use identity::ObjectId;
pub use origin::s3_store;
pub use presign::Presigner;

use breaker::{BreakerMetrics, Guarded};
use identity::{Identities, Known, Listing, Ttls};
use paths::{checked_path, delta_root, is_data_file, percent_decode};

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
    /// The origin behind the source's circuit breaker.
    pub origin: Arc<dyn ObjectStore>,
    /// Signs GET URLs for the source's objects; `None` for a local
    /// directory, whose objects only the node can read.
    pub presigner: Option<Presigner>,
    pub breaker: Arc<Breaker>,
    max_objects: usize,
    ids: Identities,
    /// Counts the HEADs that learn an object's identity.
    heads: prometheus::IntCounter,
}

impl Source {
    /// `max_objects` caps what one listing may return, so a request naming a
    /// huge prefix is refused instead of listing and planning without bound.
    pub fn new(cfg: &SourceConfig, max_objects: usize, metrics: &Metrics) -> Result<Self> {
        let mut url = Url::parse(&cfg.url).map_err(|e| {
            QuiverError::invalid(format!(
                "source {} has a bad url {}: {e}",
                cfg.name, cfg.url
            ))
        })?;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let (store, presigner) = origin::open(cfg, &url)?;
        let name: Arc<str> = Arc::from(cfg.name.as_str());
        let breaker = Arc::new(Breaker::new(
            name.clone(),
            cfg.breaker_failures,
            cfg.breaker_cooldown.0,
            BreakerMetrics {
                open: metrics.origin_circuit_open.with_label_values(&[&cfg.name]),
                refused: metrics.origin_fast_failures.with_label_values(&[&cfg.name]),
            },
        ));
        Ok(Source {
            name,
            url,
            origin: Arc::new(Guarded::new(store, breaker.clone())),
            presigner,
            breaker,
            max_objects,
            heads: metrics.origin_heads.clone(),
            ids: Identities::new(Ttls {
                validate: cfg.validate.0,
                missing: cfg.missing_ttl.0,
                revalidate: cfg.revalidate_interval.0,
            }),
        })
    }

    /// The current identity of one object, from what the node knows while it
    /// is fresh, else from the origin.
    pub async fn identity(&self, path: &Path) -> Result<ObjectId> {
        let known = self.ids.lookup(path);
        self.answer(path, known).await
    }

    /// [`Source::identity`], or for an object that is never rewritten (a
    /// data file a table's log names: the log, not the origin, says what
    /// it is) whatever identity the node has, however old. Such a read
    /// asks the origin only the first time.
    pub async fn identity_for(&self, path: &Path, immutable: bool) -> Result<ObjectId> {
        if !immutable {
            return self.identity(path).await;
        }
        let known = self.ids.lookup_immutable(path);
        self.answer(path, known).await
    }

    /// Asks the origin again, unless it was asked about `path` within
    /// `revalidate_interval`: used when a client's ticket names an ETag the
    /// node has not seen, which a client could otherwise repeat at will.
    pub async fn revalidate(&self, path: &Path) -> Result<ObjectId> {
        let known = self.ids.recheck(path);
        self.answer(path, known).await
    }

    /// The version of `path` a read may use: its validated identity, or,
    /// when the reader expects `etag` and the node knows another, the
    /// origin's answer once revalidated; [`QuiverError::Changed`] with the
    /// current ETag if that is not `etag` either. The one place a
    /// planned version is checked, for tickets and for pinned store reads.
    pub async fn version(&self, path: &Path, etag: Option<&str>) -> Result<ObjectId> {
        self.version_for(path, etag, false).await
    }

    /// [`Source::version`] of an object that may be `immutable` (see
    /// [`Source::identity_for`]).
    pub async fn version_for(
        &self,
        path: &Path,
        etag: Option<&str>,
        immutable: bool,
    ) -> Result<ObjectId> {
        let id = self.identity_for(path, immutable).await?;
        match etag {
            Some(expected) if expected != id.etag => {
                let fresh = self.revalidate(path).await?;
                if fresh.etag == expected {
                    Ok(fresh)
                } else {
                    Err(QuiverError::Changed(fresh.etag))
                }
            }
            _ => Ok(id),
        }
    }

    async fn answer(&self, path: &Path, known: Known) -> Result<ObjectId> {
        match known {
            Known::Found(id) => Ok(id),
            Known::Missing => Err(QuiverError::NotFound(format!(
                "object {} does not exist",
                self.describe(path)
            ))),
            Known::Unknown => self.head(path).await,
        }
    }

    /// Asks the origin what `path` is now, and remembers the answer.
    async fn head(&self, path: &Path) -> Result<ObjectId> {
        self.heads.inc();
        match self
            .origin
            .head(path)
            .instrument(tracing::info_span!(
                "origin_head",
                source = %self.name,
                path = %path,
                otel.kind = "client"
            ))
            .await
        {
            Ok(meta) => {
                // The id names the path asked for: object_store's
                // `PrefixStore` answers `head` with the location under
                // its prefix, which a later read would prefix again.
                let meta = ObjectMeta {
                    location: path.clone(),
                    ..meta
                };
                let id = ObjectId::from_meta(&self.name, &meta);
                self.ids.found(id.clone());
                Ok(id)
            }
            Err(e) => {
                if let object_store::Error::NotFound { .. } = e {
                    self.ids.not_found(path);
                }
                Err(QuiverError::from_store(&self.describe(path), &e))
            }
        }
    }

    /// Every Parquet object under `prefix`, sorted by path. Files whose name
    /// starts with `.` or `_` are markers (`_SUCCESS`, `.quiver/`), not data.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectId>> {
        Ok(self.listing(prefix).await?.objects)
    }

    /// The roots of the Delta tables under `prefix` (directories holding a
    /// `_delta_log/`, each ending in `/`), from the same listing as
    /// [`Source::list`], so discovering tables costs no second LIST.
    pub async fn delta_roots(&self, prefix: &Path) -> Result<Vec<String>> {
        Ok(self.listing(prefix).await?.delta_roots)
    }

    async fn listing(&self, prefix: &Path) -> Result<Listing> {
        if let Some(listing) = self.ids.listing(prefix) {
            return Ok(listing);
        }
        let prefix_opt = (!prefix.as_ref().is_empty()).then_some(prefix);
        let mut roots = std::collections::BTreeSet::new();
        let metas: Vec<ObjectMeta> = self
            .origin
            .list(prefix_opt)
            .try_filter(|m| {
                if let Some(root) = delta_root(&m.location) {
                    roots.insert(root);
                }
                futures::future::ready(is_data_file(&m.location))
            })
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
                    self.ids.found(id.clone());
                    Ok(id)
                } else {
                    self.identity(&m.location).await
                }
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        ids.sort_by(|a, b| a.path.cmp(&b.path));
        let listing = Listing {
            objects: ids,
            delta_roots: roots.into_iter().collect(),
        };
        self.ids.listed(prefix, listing.clone());
        Ok(listing)
    }

    /// Objects whose identity this source has validated recently (up to
    /// the identity cache's bound): the candidates a hand-off offers.
    pub fn known(&self) -> Vec<ObjectId> {
        self.ids.all()
    }

    /// Forgets what validation cached about `path` (and listings that may
    /// contain it), so the next request asks the origin.
    pub fn forget(&self, path: &Path) {
        self.ids.forget(path);
    }

    /// Forgets every listing, so the next one asks the origin: a catalog
    /// refreshed on demand must see objects added a moment ago.
    pub fn forget_listings(&self) {
        self.ids.forget_listings();
    }

    /// `source/path`, as users write it in messages.
    pub fn describe(&self, path: &Path) -> String {
        format!("{}/{}", self.name, path)
    }
}

/// The configured sources, in configuration order (the first is the default
/// catalog for SQL).
#[derive(Debug, Default)]
pub struct Sources {
    sources: Vec<Arc<Source>>,
}

impl Sources {
    pub fn new(configs: &[SourceConfig], max_objects: usize, metrics: &Metrics) -> Result<Self> {
        let sources = configs
            .iter()
            .map(|c| Source::new(c, max_objects, metrics).map(Arc::new))
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
        let target = self.resolve_request(req)?;
        // A deletion vector names rows of one file; only one file is known
        // never to be rewritten.
        if let Target::Prefix { .. } = target {
            if req.deletion_vector.is_some() {
                return Err(QuiverError::invalid(
                    "a deletion vector deletes rows of one object; `path` names a prefix",
                ));
            }
            if req.immutable {
                return Err(QuiverError::invalid(
                    "`immutable` says one object is never rewritten; `path` names a prefix",
                ));
            }
        }
        Ok(target)
    }

    fn resolve_request(&self, req: &ScanRequest) -> Result<Target> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &std::path::Path) -> Sources {
        let url = Url::from_directory_path(dir).unwrap();
        Sources::new(
            &[SourceConfig::new("local", url.as_str())],
            100,
            &Metrics::new(),
        )
        .unwrap()
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
        let source = Source::new(&cfg, 10, &Metrics::new()).unwrap();
        let shown = format!("{source:?}");
        assert!(shown.contains("lake"), "{shown}");
        assert!(!shown.contains("very-secret"), "{shown}");
    }
}
