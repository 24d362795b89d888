//! Aligned byte-range chunks of objects in a foyer hybrid (memory + disk)
//! cache.
//!
//! Entries are cut at chunk boundaries so that any two readers of an object
//! share them whatever ranges they ask for. A chunk is the unit stored, not
//! the unit read: an entry holds the parts of its chunk that reads asked
//! for, a miss fetches only the missing parts (parts close together with
//! one ranged GET), and a chunk being filled is awaited by every other
//! reader instead of being fetched again.
//!
//! `ChunkCache`'s public API and its lookups are here; `disk` opens the
//! tiers, `eviction` tunes the memory tier's policy, `piece` is what an
//! entry holds and which bytes a read wants, `inflight` fetches missing
//! parts once however many readers want them, and `origin` is the ranged
//! GET behind a miss.

mod disk;
mod eviction;
mod inflight;
mod origin;
mod piece;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
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
use inflight::{InFlight, Need};
use piece::Piece;

pub use eviction::{eviction, MEMORY_SHARDS};

/// Most chunks' worth of bytes fetched by one GET: bigger runs are split
/// and fetched in parallel, since one connection to S3 is bandwidth-limited.
pub const MAX_RUN_CHUNKS: u64 = 8;

/// A read fills holes of at most this fraction of a chunk (between the
/// parts it wants, or at a chunk's ends, so also across a chunk boundary)
/// rather than leave them: a few KiB more cost less than another request,
/// or an entry split in two.
const HOLE_FRACTION: u64 = 16;

/// Parts an entry may hold before a read that would add more fetches the
/// rest of its chunk instead: scattered small reads would otherwise leave
/// entries of thousands of parts, each weighed at its bytes but costing an
/// allocation, and every join and lookup walks them all.
const MAX_PARTS: usize = 16;

/// Memory a part costs beyond its bytes (its place in the entry and its
/// allocation), in the memory tier's weight.
pub(super) const PART_WEIGHT: usize = 64;

/// What a chunk's entry is. Entries of format 1 were whole chunks as plain
/// bytes; a disk tier written by such a node is never read as pieces,
/// since the format is part of the key.
const ENTRY_FORMAT: u16 = 2;

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
    format: u16,
    source: String,
    path: String,
    etag: String,
    size: u64,
    chunk: u64,
    index: u64,
}

/// Bytes of chunk `index` from `offset` in it, as a peer sent them:
/// `(index, offset, bytes)`.
pub type PeerPart = (u64, u64, Bytes);

/// Another place missing bytes may be before the origin: during a
/// hand-off, the node that owned the object's slot until now. The cache
/// asks it first and reads from the origin what it does not answer.
pub trait PeerChunks: Send + Sync {
    /// The parts of chunks `run` of `id` (cut at `chunk` bytes) the peer
    /// holds, verified against the checksums they came with, or `None`.
    fn fetch(
        &self,
        id: ObjectId,
        chunk: u64,
        run: Range<u64>,
    ) -> BoxFuture<'static, Option<Vec<PeerPart>>>;
}

struct Inner {
    cache: HybridCache<ChunkKey, Piece>,
    chunk: u64,
    /// The object versions the cache holds chunks of, for hand-off.
    catalog: Catalog,
    inflight: Mutex<HashMap<ChunkKey, Vec<InFlight>>>,
    /// Numbers each claim of missing parts (`inflight`).
    next_claim: AtomicU64,
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
        let wants = piece::wants(ranges, chunk, id.size, self.hole());
        let pieces = self.pieces(id, origin, wants).await?;
        ranges
            .iter()
            .map(|r| {
                assemble(&pieces, chunk, r.clone()).ok_or_else(|| {
                    QuiverError::Internal(format!(
                        "a cache fill left bytes {}..{} of {}/{} unread",
                        r.start, r.end, id.source, id.path
                    ))
                })
            })
            .collect()
    }

    /// Looks every wanted chunk up, then fills the parts that are missing.
    #[tracing::instrument(
        name = "cache_lookup",
        skip_all,
        fields(source = %id.source, path = %id.path, chunks = wants.len(), missed = tracing::field::Empty)
    )]
    async fn pieces(
        &self,
        id: &ObjectId,
        origin: &Arc<dyn ObjectStore>,
        wants: BTreeMap<u64, Vec<Range<u64>>>,
    ) -> Result<BTreeMap<u64, Piece>> {
        let inner = &self.inner;
        let lookups = wants.keys().map(|&index| {
            let key = self.key(id, index);
            let len = self.chunk_len(id, index);
            async move {
                match inner.cache.get(&key).await {
                    // foyer checks each disk entry's checksum and key, so a
                    // damaged entry is already a miss; the shape check is
                    // the last guard between a bad entry and wrong rows.
                    Ok(Some(entry)) if !entry.value().fits(len) => {
                        tracing::warn!(
                            source = %id.source, path = %id.path, index,
                            "a cached chunk does not fit its place; it is dropped and read again"
                        );
                        inner.metrics.disk_errors.inc();
                        inner.cache.remove(&key);
                        None
                    }
                    Ok(Some(entry)) => {
                        let tier = match entry.source() {
                            HitSource::Disk => Tier::Disk,
                            _ => Tier::Memory,
                        };
                        Some((entry.value().clone(), tier))
                    }
                    Ok(None) => None,
                    // A disk read error is a miss, not a failed request: the
                    // origin still has the bytes.
                    Err(e) => {
                        tracing::debug!(error = %e, "a disk-tier read failed; reading the origin");
                        inner.metrics.disk_errors.inc();
                        None
                    }
                }
            }
        });
        let found = futures::future::join_all(lookups).await;
        let mut done = BTreeMap::new();
        let mut needs = Vec::new();
        for ((index, want), found) in wants.into_iter().zip(found) {
            let (have, tier) = found.map_or((Piece::default(), None), |(p, t)| (p, Some(t)));
            let want = if have.part_count() + want.len() > MAX_PARTS {
                let whole = 0..self.chunk_len(id, index);
                vec![whole]
            } else {
                want
            };
            let need = Need { index, want, have };
            match tier {
                Some(tier) if need.met() => {
                    inner.metrics.hit(tier);
                    done.insert(index, need.have);
                }
                _ => needs.push(need),
            }
        }
        tracing::Span::current().record("missed", needs.len());
        // Bytes in flight are awaited rather than fetched again, and the
        // rest is fetched by this read, so one round meets every need; a
        // second is there should a fill come back short all the same.
        for _ in 0..2 {
            if needs.is_empty() {
                break;
            }
            let pending = self.claim(id, origin, &mut needs);
            let results = futures::future::join_all(
                pending
                    .into_iter()
                    .map(|(i, fut)| async move { (i, fut.await) }),
            )
            .await;
            for (i, piece) in results {
                needs[i].have = needs[i].have.join(&piece?);
            }
            let (met, unmet): (Vec<Need>, Vec<Need>) = needs.into_iter().partition(Need::met);
            done.extend(met.into_iter().map(|n| (n.index, n.have)));
            needs = unmet;
        }
        done.extend(needs.into_iter().map(|n| (n.index, n.have)));
        Ok(done)
    }

    /// The widest hole a read fills rather than leave.
    fn hole(&self) -> u64 {
        self.inner.chunk / HOLE_FRACTION
    }

    /// Chunk `index`'s entry in the memory tier, without a disk read.
    fn peek(&self, id: &ObjectId, index: u64) -> Option<Piece> {
        let entry = self.inner.cache.memory().get(&self.key(id, index))?;
        let piece = entry.value();
        piece.fits(self.chunk_len(id, index)).then(|| piece.clone())
    }

    /// Bytes of chunk `index` held: exact in memory, the whole chunk when
    /// only the disk tier's index says it holds some (an upper bound).
    fn held(&self, id: &ObjectId, index: u64) -> u64 {
        match self.peek(id, index) {
            Some(p) => p.held(),
            None if self.inner.cache.contains(&self.key(id, index)) => self.chunk_len(id, index),
            None => 0,
        }
    }

    fn chunk_len(&self, id: &ObjectId, index: u64) -> u64 {
        let start = index * self.inner.chunk;
        (start + self.inner.chunk).min(id.size) - start
    }

    fn key(&self, id: &ObjectId, index: u64) -> ChunkKey {
        chunk_key(self.inner.chunk, id, index)
    }

    /// Stores a chunk's entry and records its object version in the
    /// catalog.
    fn store(&self, id: &ObjectId, index: u64, piece: Piece) {
        self.inner.cache.insert(self.key(id, index), piece);
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
        (0..self.chunk_count(id)).map(|i| self.held(id, i)).sum()
    }

    /// Of `ranges` of `id`: the bytes they span, and how many of those
    /// bytes the cache holds (exactly for the memory tier; a chunk only the
    /// disk tier has is counted as held, an upper bound as for
    /// [`ChunkCache::cached_bytes`]).
    pub fn coverage(&self, id: &ObjectId, ranges: &[Range<u64>]) -> (u64, u64) {
        let within: Vec<Range<u64>> = ranges
            .iter()
            .filter(|r| r.start < r.end && r.end <= id.size)
            .cloned()
            .collect();
        let mut needed = 0;
        let mut cached = 0;
        for (index, want) in piece::wants(&within, self.inner.chunk, id.size, 0) {
            let bytes = |rs: &[Range<u64>]| rs.iter().map(|r| r.end - r.start).sum::<u64>();
            let wanted = bytes(&want);
            needed += wanted;
            cached += match self.peek(id, index) {
                Some(p) => wanted - bytes(&p.missing(&want)),
                None if self.inner.cache.contains(&self.key(id, index)) => wanted,
                None => 0,
            };
        }
        (needed, cached)
    }

    /// Indices of the chunks of `id` of which either tier holds some part.
    pub fn cached_indices(&self, id: &ObjectId) -> Vec<u64> {
        (0..self.chunk_count(id))
            .filter(|&i| self.inner.cache.contains(&self.key(id, i)))
            .collect()
    }

    /// One chunk if it is cached whole; never reads the origin. Used to
    /// hand a slot's data to its new owner, so it is not counted as a hit.
    /// A chunk held in part is not handed off: the new owner reads the
    /// parts it needs itself.
    pub async fn cached_chunk(&self, id: &ObjectId, index: u64) -> Option<Bytes> {
        match self.inner.cache.get(&self.key(id, index)).await {
            Ok(Some(entry)) => entry
                .value()
                .whole_bytes(self.chunk_len(id, index))
                .cloned(),
            _ => None,
        }
    }

    /// Every part of chunk `index` that is cached, as offsets in the chunk
    /// and bytes; never reads the origin. Used to hand a slot's data to its
    /// new owner, so it is not counted as a hit.
    pub async fn cached_parts(&self, id: &ObjectId, index: u64) -> Vec<(u64, Bytes)> {
        match self.inner.cache.get(&self.key(id, index)).await {
            Ok(Some(entry)) if entry.value().fits(self.chunk_len(id, index)) => entry
                .value()
                .parts()
                .map(|(offset, bytes)| (offset, bytes.clone()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Adds bytes of chunk `index` from `offset` received from a peer to
    /// what the cache holds of it, after checking they lie within that
    /// chunk of `id`.
    pub fn insert_part(&self, id: &ObjectId, index: u64, offset: u64, bytes: Bytes) -> Result<()> {
        let mut entry = self.peer_piece(id, index, offset, bytes)?;
        // Under the fills' lock, so a fill of the same chunk finishing now
        // and this insert cannot each store an entry without the other's
        // bytes.
        let _fills = lock(&self.inner.inflight);
        if let Some(now) = self.peek(id, index) {
            entry = now.join(&entry);
        }
        self.store(id, index, entry);
        Ok(())
    }

    /// A part a peer sent as a piece of chunk `index`, if it lies within it.
    fn peer_piece(&self, id: &ObjectId, index: u64, offset: u64, bytes: Bytes) -> Result<Piece> {
        let fits = index < self.chunk_count(id)
            && !bytes.is_empty()
            && offset
                .checked_add(bytes.len() as u64)
                .is_some_and(|end| end <= self.chunk_len(id, index));
        if !fits {
            return Err(QuiverError::DataLoss(format!(
                "a peer sent {} bytes at offset {offset} of chunk {index} of {}/{}, which do not fit its {} bytes",
                bytes.len(),
                id.source,
                id.path,
                id.size
            )));
        }
        // A copy: the bytes arrived as a slice of a whole gRPC message,
        // which the entry must not keep alive.
        Ok(Piece::part(offset, Bytes::copy_from_slice(&bytes)))
    }

    /// Drops every chunk of `id`; returns the bytes that were cached.
    pub fn evict(&self, id: &ObjectId) -> u64 {
        let mut bytes = 0;
        for i in 0..self.chunk_count(id) {
            let key = self.key(id, i);
            if self.inner.cache.contains(&key) {
                bytes += self.held(id, i);
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
        format: ENTRY_FORMAT,
        source: id.source.to_string(),
        path: id.path.to_string(),
        etag: id.etag.clone(),
        size: id.size,
        chunk,
        index,
    }
}

/// Whether `cache` holds any chunk of `id` at chunk size `chunk`.
fn holds_any(cache: &HybridCache<ChunkKey, Piece>, chunk: u64, id: &ObjectId) -> bool {
    (0..id.size.div_ceil(chunk)).any(|i| cache.contains(&chunk_key(chunk, id, i)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Cuts `range` out of the chunks' entries that hold it, without copying
/// when it lies inside one chunk; `None` when an entry lacks some of it.
fn assemble(pieces: &BTreeMap<u64, Piece>, chunk: u64, range: Range<u64>) -> Option<Bytes> {
    if range.start >= range.end {
        return Some(Bytes::new());
    }
    let first = range.start / chunk;
    let last = (range.end - 1) / chunk;
    let piece = |i: u64| {
        let base = i * chunk;
        pieces
            .get(&i)?
            .slice(range.start.max(base) - base..range.end.min(base + chunk) - base)
    };
    if first == last {
        return piece(first);
    }
    let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
    for i in first..=last {
        out.extend_from_slice(&piece(i)?);
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assemble_spans_chunks() {
        let mut chunks = BTreeMap::new();
        chunks.insert(0, Piece::part(0, Bytes::from_static(b"abcd")));
        chunks.insert(1, Piece::part(0, Bytes::from_static(b"efgh")));
        chunks.insert(2, Piece::part(0, Bytes::from_static(b"ij")));
        let cut = |r: Range<u64>| assemble(&chunks, 4, r).map(|b| b.to_vec());
        assert_eq!(cut(1..3).as_deref(), Some(&b"bc"[..]));
        assert_eq!(cut(3..9).as_deref(), Some(&b"defghi"[..]));
        assert_eq!(cut(0..10).as_deref(), Some(&b"abcdefghij"[..]));
        assert_eq!(cut(5..5).as_deref(), Some(&b""[..]));
    }

    #[test]
    fn assemble_refuses_what_a_piece_lacks() {
        let mut chunks = BTreeMap::new();
        chunks.insert(0, Piece::part(1, Bytes::from_static(b"bc")));
        assert_eq!(assemble(&chunks, 4, 1..3).as_deref(), Some(&b"bc"[..]));
        assert_eq!(assemble(&chunks, 4, 0..3), None);
        assert_eq!(assemble(&chunks, 4, 2..6), None, "chunk 1 is absent");
    }
}
