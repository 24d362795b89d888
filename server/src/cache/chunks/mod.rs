//! Aligned byte-range chunks of objects in a foyer hybrid (memory + disk)
//! cache.
//!
//! Reads are cut at chunk boundaries so that any two readers of an object
//! share entries whatever ranges they ask for. Missing chunks that are
//! adjacent are fetched with one ranged GET, and a chunk being fetched is
//! awaited by every other reader instead of being fetched again.
//!
//! `ChunkCache`'s public API and its lookups are here; `disk` opens the
//! tiers, `eviction` tunes the memory tier's policy, `inflight` fetches
//! missing chunks once however many readers want them, and `origin` is the
//! ranged GET behind a miss.

mod disk;
mod eviction;
mod inflight;
mod origin;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use foyer::{HybridCache, Source as HitSource};
use futures::future::BoxFuture;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use super::catalog::Catalog;
use super::disk_budget;
use crate::config::CacheConfig;
use crate::error::{QuiverError, Result};
use crate::metrics::{Metrics, Tier};
use crate::source::ObjectId;
use inflight::Pending;

pub use eviction::{eviction, MEMORY_SHARDS};

/// Most chunks fetched by one GET: bigger runs are split and fetched in
/// parallel, since one connection to S3 is bandwidth-limited.
pub const MAX_RUN_CHUNKS: u64 = 8;

/// Ranged GETs to the origin in flight at once, across all readers: a scan of
/// a huge row group must not open hundreds of connections.
pub const MAX_ORIGIN_FETCHES: usize = 32;

// Warming must leave demand reads most of the origin budget.
const _: () = assert!(crate::config::MAX_WARM_FETCHES * 2 <= MAX_ORIGIN_FETCHES);

/// One chunk of one object version.
///
/// `chunk` is the chunk size the entry was cut with. The disk tier outlives
/// the configuration: a node restarted with another `cache.chunk` would
/// otherwise find chunk `index` of the old size and serve bytes from the
/// wrong offsets. With the size in the key, entries of another size are
/// simply never looked up, and age out as the tier fills.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct ChunkKey {
    source: String,
    path: String,
    etag: String,
    size: u64,
    chunk: u64,
    index: u64,
}

/// Another place a missing chunk may be before the origin: during a
/// hand-off, the node that owned the object's slot until now. The cache
/// asks it first and goes to the origin when it answers `None`.
pub trait PeerChunks: Send + Sync {
    /// Every chunk of `run` of `id` (cut at `chunk` bytes), in order and
    /// verified against the checksums they came with, or `None`.
    fn fetch(
        &self,
        id: ObjectId,
        chunk: u64,
        run: Range<u64>,
    ) -> BoxFuture<'static, Option<Vec<Bytes>>>;
}

struct Inner {
    cache: HybridCache<ChunkKey, Bytes>,
    chunk: u64,
    /// The object versions the cache holds chunks of, for hand-off.
    catalog: Catalog,
    inflight: Mutex<HashMap<ChunkKey, Pending>>,
    fetch_slots: tokio::sync::Semaphore,
    /// Asked for missing chunks before the origin, when the node is in a
    /// cluster; given when the cache is built.
    peers: Option<Arc<dyn PeerChunks>>,
    metrics: Arc<Metrics>,
    disk_dir: Option<PathBuf>,
    disk_capacity: u64,
    /// Why a configured disk tier is not in use.
    disk_problem: Option<String>,
    /// The locked `disk_dir/quiver.lock`, released by `close` so that the
    /// same process can reopen the directory after a shutdown.
    lock: Mutex<Option<File>>,
}

/// The byte-range tier. Cheap to clone.
#[derive(Clone)]
pub struct ChunkCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("chunk", &self.inner.chunk)
            .finish_non_exhaustive()
    }
}

/// Bytes held by the chunk tiers, as [`ChunkCache::usage`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierUsage {
    /// Bytes of chunks in the memory tier.
    pub memory: u64,
    /// Bytes of chunks in the disk tier (an upper bound).
    pub disk: u64,
    /// Space the disk tier's files take: its whole capacity from the first
    /// start, since they are allocated in full.
    pub disk_allocated: u64,
}

/// How a [`ChunkCache`] is opened: its configuration, and where its misses
/// are filled from besides the origin.
pub struct ChunkCacheBuilder<'a> {
    cfg: &'a CacheConfig,
    metrics: Arc<Metrics>,
    peers: Option<Arc<dyn PeerChunks>>,
}

impl ChunkCacheBuilder<'_> {
    /// Misses ask `peers` before the origin (during a hand-off, the
    /// previous owner of a slot).
    pub fn with_peers(mut self, peers: Arc<dyn PeerChunks>) -> Self {
        self.peers = Some(peers);
        self
    }

    pub async fn open(self) -> Result<ChunkCache> {
        ChunkCache::open_with(self.cfg, self.metrics, self.peers).await
    }
}

impl ChunkCache {
    pub fn chunk_size(&self) -> u64 {
        self.inner.chunk
    }

    /// Opens the cache of `cfg` with no peers: every miss goes to the
    /// origin. [`ChunkCache::builder`] gives the other choices.
    pub async fn open(cfg: &CacheConfig, metrics: Arc<Metrics>) -> Result<Self> {
        ChunkCache::builder(cfg, metrics).open().await
    }

    pub fn builder(cfg: &CacheConfig, metrics: Arc<Metrics>) -> ChunkCacheBuilder<'_> {
        ChunkCacheBuilder {
            cfg,
            metrics,
            peers: None,
        }
    }

    /// The disk tier's directory; `None` when memory only.
    pub fn disk_dir(&self) -> Option<PathBuf> {
        self.inner.disk_dir.clone()
    }

    /// Why the configured disk tier could not be opened, if it could not.
    pub fn disk_problem(&self) -> Option<String> {
        self.inner.disk_problem.clone()
    }

    /// The bytes of `ranges` of object `id`, from the cache where possible and
    /// from `origin` for the rest. Ranges past the end of the object are
    /// refused rather than truncated.
    pub async fn read_ranges(
        &self,
        id: &ObjectId,
        origin: &Arc<dyn ObjectStore>,
        ranges: &[Range<u64>],
    ) -> Result<Vec<Bytes>> {
        for r in ranges {
            if r.start > r.end || r.end > id.size {
                return Err(QuiverError::DataLoss(format!(
                    "a read of bytes {}..{} of {}/{} is past its end ({} bytes): the object is corrupt or truncated",
                    r.start, r.end, id.source, id.path, id.size
                )));
            }
        }
        let chunk = self.inner.chunk;
        let mut wanted: Vec<u64> = ranges
            .iter()
            .filter(|r| r.start < r.end)
            .flat_map(|r| r.start / chunk..r.end.div_ceil(chunk))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let chunks = self.chunks(id, origin, &wanted).await?;
        Ok(ranges
            .iter()
            .map(|r| assemble(&chunks, chunk, r.clone()))
            .collect())
    }

    /// Looks every chunk up, then fetches the missing ones in coalesced runs.
    #[tracing::instrument(
        name = "cache_lookup",
        skip_all,
        fields(source = %id.source, path = %id.path, chunks = indices.len(), missed = tracing::field::Empty)
    )]
    async fn chunks(
        &self,
        id: &ObjectId,
        origin: &Arc<dyn ObjectStore>,
        indices: &[u64],
    ) -> Result<BTreeMap<u64, Bytes>> {
        let inner = &self.inner;
        let lookups = indices.iter().map(|&index| {
            let key = self.key(id, index);
            let len = self.chunk_len(id, index);
            async move {
                match inner.cache.get(&key).await {
                    // foyer checks each disk entry's checksum and key, so a
                    // damaged entry is already a miss; the length check is
                    // the last guard between a bad entry and wrong rows.
                    Ok(Some(entry)) if entry.value().len() as u64 != len => {
                        tracing::warn!(
                            source = %id.source, path = %id.path, index,
                            "a cached chunk has the wrong length; it is dropped and read again"
                        );
                        inner.metrics.disk_errors.inc();
                        inner.cache.remove(&key);
                        (index, None)
                    }
                    Ok(Some(entry)) => {
                        let tier = match entry.source() {
                            HitSource::Disk => Tier::Disk,
                            _ => Tier::Memory,
                        };
                        inner.metrics.hit(tier);
                        (index, Some(entry.value().clone()))
                    }
                    Ok(None) => (index, None),
                    // A disk read error is a miss, not a failed request: the
                    // origin still has the bytes.
                    Err(e) => {
                        tracing::debug!(error = %e, "a disk-tier read failed; reading the origin");
                        inner.metrics.disk_errors.inc();
                        (index, None)
                    }
                }
            }
        });
        let mut found = BTreeMap::new();
        let mut missing = Vec::new();
        for (index, bytes) in futures::future::join_all(lookups).await {
            match bytes {
                Some(b) => {
                    found.insert(index, b);
                }
                None => missing.push(index),
            }
        }
        tracing::Span::current().record("missed", missing.len());
        // A chunk that missed may have been filled by a fetch that finished
        // between the lookup and the claim: `claim` then says so, and it is
        // looked up again rather than fetched twice. The last round fetches
        // whatever is still missing (an entry evicted in between).
        for round in 0..3 {
            if missing.is_empty() {
                break;
            }
            let (pending, filled) = self.claim(id, origin, &missing, round < 2);
            let results = futures::future::join_all(
                pending
                    .into_iter()
                    .map(|(index, fut)| async move { (index, fut.await) }),
            )
            .await;
            for (index, bytes) in results {
                found.insert(index, bytes?);
            }
            missing.clear();
            for index in filled {
                match inner.cache.get(&self.key(id, index)).await {
                    Ok(Some(entry)) if entry.value().len() as u64 == self.chunk_len(id, index) => {
                        inner.metrics.hit(Tier::Memory);
                        found.insert(index, entry.value().clone());
                    }
                    _ => missing.push(index),
                }
            }
        }
        Ok(found)
    }

    fn chunk_len(&self, id: &ObjectId, index: u64) -> u64 {
        let start = index * self.inner.chunk;
        (start + self.inner.chunk).min(id.size) - start
    }

    fn key(&self, id: &ObjectId, index: u64) -> ChunkKey {
        chunk_key(self.inner.chunk, id, index)
    }

    /// Stores a chunk and records its object version in the catalog.
    fn store(&self, id: &ObjectId, index: u64, bytes: Bytes) {
        self.inner.cache.insert(self.key(id, index), bytes);
        let cache = &self.inner.cache;
        let chunk = self.inner.chunk;
        self.inner
            .catalog
            .record(id, |id| holds_any(cache, chunk, id));
    }

    /// The object versions this cache holds (or recently held) chunks of,
    /// sorted by source and path; [`ChunkCache::cached_indices`] says which.
    pub fn objects(&self) -> Vec<ObjectId> {
        self.inner.catalog.objects()
    }

    /// How many chunks `id` is cut into; bounds every chunk index of it.
    pub fn chunk_count(&self, id: &ObjectId) -> u64 {
        id.size.div_ceil(self.inner.chunk)
    }

    /// Bytes of `id` held in either tier. The disk index may over-report a
    /// chunk that was just reclaimed, so this is an upper bound.
    pub fn cached_bytes(&self, id: &ObjectId) -> u64 {
        (0..self.chunk_count(id))
            .filter(|&i| self.inner.cache.contains(&self.key(id, i)))
            .map(|i| self.chunk_len(id, i))
            .sum()
    }

    /// Of the chunks that `ranges` of `id` touch: the bytes they span, and
    /// how many of those bytes either tier holds (an upper bound, as for
    /// [`ChunkCache::cached_bytes`]).
    pub fn coverage(&self, id: &ObjectId, ranges: &[Range<u64>]) -> (u64, u64) {
        let chunk = self.inner.chunk;
        let mut indices: Vec<u64> = ranges
            .iter()
            .filter(|r| r.start < r.end && r.end <= id.size)
            .flat_map(|r| r.start / chunk..r.end.div_ceil(chunk))
            .collect();
        indices.sort_unstable();
        indices.dedup();
        let mut needed = 0;
        let mut cached = 0;
        for i in indices {
            let len = self.chunk_len(id, i);
            needed += len;
            if self.inner.cache.contains(&self.key(id, i)) {
                cached += len;
            }
        }
        (needed, cached)
    }

    /// Indices of the chunks of `id` held in either tier.
    pub fn cached_indices(&self, id: &ObjectId) -> Vec<u64> {
        (0..self.chunk_count(id))
            .filter(|&i| self.inner.cache.contains(&self.key(id, i)))
            .collect()
    }

    /// One chunk if it is cached; never reads the origin. Used to hand a
    /// slot's data to its new owner, so it is not counted as a hit.
    pub async fn cached_chunk(&self, id: &ObjectId, index: u64) -> Option<Bytes> {
        match self.inner.cache.get(&self.key(id, index)).await {
            Ok(Some(entry)) => Some(entry.value().clone()),
            _ => None,
        }
    }

    /// Stores a chunk received from a peer, after checking it has exactly
    /// the length that chunk of `id` must have.
    pub fn insert_chunk(&self, id: &ObjectId, index: u64, bytes: Bytes) -> Result<()> {
        if index >= self.chunk_count(id) || bytes.len() as u64 != self.chunk_len(id, index) {
            return Err(QuiverError::DataLoss(format!(
                "a peer sent {} bytes as chunk {index} of {}/{}, which does not fit its {} bytes",
                bytes.len(),
                id.source,
                id.path,
                id.size
            )));
        }
        self.store(id, index, bytes);
        Ok(())
    }

    /// Drops every chunk of `id`; returns the bytes that were cached.
    pub fn evict(&self, id: &ObjectId) -> u64 {
        let mut bytes = 0;
        for i in 0..self.chunk_count(id) {
            let key = self.key(id, i);
            if self.inner.cache.contains(&key) {
                bytes += self.chunk_len(id, i);
                self.inner.cache.remove(&key);
            }
        }
        bytes
    }

    /// Bytes of chunks the disk tier holds, found by probing its index for
    /// every chunk of the objects in the catalog (one lookup each, no disk
    /// read). An upper bound, as for [`ChunkCache::cached_bytes`].
    fn disk_cached_bytes(&self) -> u64 {
        if self.inner.disk_dir.is_none() {
            return 0;
        }
        let storage = self.inner.cache.storage();
        let mut total = 0u64;
        for id in self.objects() {
            let mut key = self.key(&id, 0);
            for index in 0..self.chunk_count(&id) {
                key.index = index;
                if storage.may_contains(&key) {
                    total = total.saturating_add(self.chunk_len(&id, index));
                }
            }
        }
        total
    }

    /// What each tier holds, and the space the disk tier's files take, also
    /// set into the node's gauges.
    pub fn usage(&self) -> TierUsage {
        let usage = TierUsage {
            memory: self.inner.cache.memory().usage() as u64,
            disk: self.disk_cached_bytes(),
            disk_allocated: self
                .inner
                .disk_dir
                .as_ref()
                .map(|d| disk_budget::allocated_bytes(d).min(self.inner.disk_capacity))
                .unwrap_or(0),
        };
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let m = &self.inner.metrics;
        m.memory_usage.set(gauge(usage.memory));
        m.disk_usage.set(gauge(usage.disk));
        m.disk_allocated.set(gauge(usage.disk_allocated));
        usage
    }

    /// Waits for queued disk writes and closes the cache, so that a restart
    /// finds everything that was inserted.
    pub async fn close(&self) -> Result<()> {
        self.inner.cache.storage().wait().await;
        let closed = self
            .inner
            .cache
            .close()
            .await
            .map_err(|e| QuiverError::Internal(format!("closing the cache failed: {e}")));
        // Dropping the file releases the lock.
        drop(lock(&self.inner.lock).take());
        closed
    }
}

fn chunk_key(chunk: u64, id: &ObjectId, index: u64) -> ChunkKey {
    ChunkKey {
        source: id.source.to_string(),
        path: id.path.to_string(),
        etag: id.etag.clone(),
        size: id.size,
        chunk,
        index,
    }
}

/// Whether `cache` holds any chunk of `id` at chunk size `chunk`.
fn holds_any(cache: &HybridCache<ChunkKey, Bytes>, chunk: u64, id: &ObjectId) -> bool {
    (0..id.size.div_ceil(chunk)).any(|i| cache.contains(&chunk_key(chunk, id, i)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Cuts `range` out of the chunks that cover it, without copying when it
/// lies inside one chunk.
fn assemble(chunks: &BTreeMap<u64, Bytes>, chunk: u64, range: Range<u64>) -> Bytes {
    if range.start >= range.end {
        return Bytes::new();
    }
    let first = range.start / chunk;
    let last = (range.end - 1) / chunk;
    let piece = |i: u64| {
        let c = &chunks[&i];
        let base = i * chunk;
        let from = range.start.max(base) - base;
        let to = range.end.min(base + c.len() as u64) - base;
        c.slice(from as usize..to as usize)
    };
    if first == last {
        return piece(first);
    }
    let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
    for i in first..=last {
        out.extend_from_slice(&piece(i));
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assemble_spans_chunks() {
        let mut chunks = BTreeMap::new();
        chunks.insert(0, Bytes::from_static(b"abcd"));
        chunks.insert(1, Bytes::from_static(b"efgh"));
        chunks.insert(2, Bytes::from_static(b"ij"));
        assert_eq!(&assemble(&chunks, 4, 1..3)[..], b"bc");
        assert_eq!(&assemble(&chunks, 4, 3..9)[..], b"defghi");
        assert_eq!(&assemble(&chunks, 4, 0..10)[..], b"abcdefghij");
        assert!(assemble(&chunks, 4, 5..5).is_empty());
    }
}
