//! Object identity: which version of an object a read means, and what the
//! node remembers about it so that clients cannot drive its origin request
//! rate.
//!
//! Three things are remembered per source:
//! - the identity (ETag, size) of each object the origin described, trusted
//!   for `validate`;
//! - objects the origin said do not exist, for `missing_ttl`, so that a
//!   client asking for a missing name again and again costs one HEAD per
//!   interval, not one per request;
//! - listings of prefixes, for `validate`.
//!
//! A client can also force a fresh look (a ticket naming an ETag the node has
//! not seen); such rechecks of one object reach the origin at most once per
//! `revalidate_interval`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object_store::path::Path;
use object_store::ObjectMeta;

/// Maps are pruned once this large, so a long-running node that sees many
/// paths does not grow without bound.
const PRUNE_AT: usize = 16_384;

/// What the cache keys on: an object at one version. A rewritten object gets
/// a new ETag, hence new keys, so stale bytes are never read back for it (a
/// local file's ETag is the node's own, which every write changes: see
/// `source::local`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectId {
    pub source: Arc<str>,
    pub path: Path,
    pub etag: String,
    pub size: u64,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

impl ObjectId {
    pub fn from_meta(source: &Arc<str>, meta: &ObjectMeta) -> Self {
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

/// What the node knows about one path without asking the origin.
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    Found(ObjectId),
    Missing,
    /// Ask the origin.
    Unknown,
}

/// How long each kind of answer is trusted.
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    pub validate: Duration,
    pub missing: Duration,
    pub revalidate: Duration,
}

#[derive(Debug)]
pub struct Identities {
    ttls: Ttls,
    /// Each identity with when the origin last described it.
    found: Mutex<HashMap<Path, (ObjectId, Instant)>>,
    missing: Mutex<HashMap<Path, Instant>>,
    listings: Mutex<HashMap<Path, (Listing, Instant)>>,
}

/// One listing of a prefix: its Parquet objects, sorted by path, and the
/// roots of the Delta tables under it (directories holding `_delta_log/`),
/// which the same walk of the keys finds.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub objects: Vec<ObjectId>,
    pub delta_roots: Vec<String>,
}

impl Identities {
    pub fn new(ttls: Ttls) -> Self {
        Identities {
            ttls,
            found: Mutex::default(),
            missing: Mutex::default(),
            listings: Mutex::default(),
        }
    }

    /// The answer for a plain read: trusted for `validate`.
    pub fn lookup(&self, path: &Path) -> Known {
        self.known(path, self.ttls.validate)
    }

    /// What the node knows of an object that is never rewritten: an
    /// identity of any age stands.
    pub fn lookup_immutable(&self, path: &Path) -> Known {
        self.known(path, Duration::MAX)
    }

    /// The answer for a read that asks the origin to look again: only an
    /// answer younger than `revalidate` stands in for a new HEAD.
    pub fn recheck(&self, path: &Path) -> Known {
        self.known(path, self.ttls.revalidate.min(self.ttls.validate))
    }

    fn known(&self, path: &Path, ttl: Duration) -> Known {
        if let Some(at) = lock(&self.missing).get(path) {
            if at.elapsed() < self.ttls.missing {
                return Known::Missing;
            }
        }
        match lock(&self.found).get(path) {
            Some((id, at)) if at.elapsed() < ttl => Known::Found(id.clone()),
            _ => Known::Unknown,
        }
    }

    /// The origin described `id` just now.
    pub fn found(&self, id: ObjectId) {
        lock(&self.missing).remove(&id.path);
        insert(&self.found, id.path.clone(), (id, Instant::now()));
    }

    /// The origin said `path` does not exist just now.
    pub fn not_found(&self, path: &Path) {
        lock(&self.found).remove(path);
        lock(&self.listings).clear();
        insert(&self.missing, path.clone(), Instant::now());
    }

    pub fn listing(&self, prefix: &Path) -> Option<Listing> {
        let listings = lock(&self.listings);
        let (listing, at) = listings.get(prefix)?;
        (at.elapsed() < self.ttls.validate).then(|| listing.clone())
    }

    pub fn listed(&self, prefix: &Path, listing: Listing) {
        insert(&self.listings, prefix.clone(), (listing, Instant::now()));
    }

    /// Every identity remembered, fresh or not.
    pub fn all(&self) -> Vec<ObjectId> {
        lock(&self.found)
            .values()
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Forgets what is known about `path` and every listing, which may
    /// contain it.
    pub fn forget(&self, path: &Path) {
        lock(&self.found).remove(path);
        lock(&self.missing).remove(path);
        lock(&self.listings).clear();
    }

    pub fn forget_listings(&self) {
        lock(&self.listings).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave a map half-updated in a
    // way that matters (entries are replaced whole), so keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn insert<V>(map: &Mutex<HashMap<Path, V>>, key: Path, value: V) {
    let mut map = lock(map);
    if map.len() >= PRUNE_AT {
        map.clear();
    }
    map.insert(key, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(path: &str, etag: &str) -> ObjectId {
        ObjectId {
            source: Arc::from("s"),
            path: Path::from(path),
            etag: etag.into(),
            size: 10,
            last_modified: chrono::Utc::now(),
        }
    }

    fn ttls(validate: u64, missing: u64, revalidate: u64) -> Ttls {
        Ttls {
            validate: Duration::from_millis(validate),
            missing: Duration::from_millis(missing),
            revalidate: Duration::from_millis(revalidate),
        }
    }

    #[test]
    fn missing_objects_are_remembered_for_their_ttl() {
        let ids = Identities::new(ttls(10_000, 50, 10));
        let p = Path::from("t/gone.parquet");
        assert_eq!(ids.lookup(&p), Known::Unknown);
        ids.not_found(&p);
        assert_eq!(ids.lookup(&p), Known::Missing);
        assert_eq!(ids.recheck(&p), Known::Missing);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(ids.lookup(&p), Known::Unknown);
        // An object that appears replaces the negative entry at once.
        ids.not_found(&p);
        let appeared = id("t/gone.parquet", "e1");
        ids.found(appeared.clone());
        assert_eq!(ids.lookup(&p), Known::Found(appeared));
    }

    #[test]
    fn rechecks_are_answered_from_a_recent_look() {
        let ids = Identities::new(ttls(10_000, 50, 40));
        let p = Path::from("t/a.parquet");
        ids.found(id("t/a.parquet", "e1"));
        assert!(matches!(ids.recheck(&p), Known::Found(_)));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ids.recheck(&p), Known::Unknown);
        assert!(matches!(ids.lookup(&p), Known::Found(_)));
    }

    #[test]
    fn maps_stay_bounded() {
        let ids = Identities::new(ttls(10_000, 10_000, 10));
        for i in 0..PRUNE_AT * 2 {
            ids.not_found(&Path::from(format!("p{i}")));
        }
        assert!(lock(&ids.missing).len() <= PRUNE_AT);
    }
}
