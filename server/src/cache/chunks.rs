//! Aligned byte-range chunks of objects in a foyer hybrid (memory + disk)
//! cache.
//!
//! Reads are cut at chunk boundaries so that any two readers of an object
//! share entries whatever ranges they ask for. Missing chunks that are
//! adjacent are fetched with one ranged GET, and a chunk being fetched is
//! awaited by every other reader instead of being fetched again.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, DeviceBuilder, EvictionConfig, FifoConfig, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder, HybridCachePolicy, LfuConfig, LruConfig, PsyncIoEngineConfig, RecoverMode,
    S3FifoConfig, SieveConfig, Source as HitSource,
};
use futures::future::{BoxFuture, FutureExt, Shared};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::catalog::Catalog;
use super::disk_budget;
use crate::config::{CacheConfig, Eviction};
use crate::error::{QuiverError, Result};
use crate::metrics::{Metrics, Tier};
use crate::source::ObjectId;

/// Most chunks fetched by one GET: bigger runs are split and fetched in
/// parallel, since one connection to S3 is bandwidth-limited.
pub const MAX_RUN_CHUNKS: u64 = 8;

/// Ranged GETs to the origin in flight at once, across all readers: a scan of
/// a huge row group must not open hundreds of connections.
pub const MAX_ORIGIN_FETCHES: usize = 32;

// Warming must leave demand reads most of the origin budget.
const _: () = assert!(crate::config::MAX_WARM_FETCHES * 2 <= MAX_ORIGIN_FETCHES);

/// Disk blocks are the unit foyer reclaims; 16 MiB unless the tier is small.
const MAX_DISK_BLOCK: u64 = 16 << 20;

/// The file in `disk_dir` that a node holds an exclusive lock on for as long
/// as its disk tier is open.
pub const LOCK_FILE: &str = "quiver.lock";

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

type Pending = Shared<BoxFuture<'static, Result<Bytes>>>;

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
    /// Asked for missing chunks before the origin; set once by the node.
    peers: OnceLock<Arc<dyn PeerChunks>>,
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

/// Shards of the memory tier; each holds an equal share of its capacity.
pub const MEMORY_SHARDS: usize = 8;

/// What a chunk's key typically adds to its weight in the memory tier,
/// for sizing S3-FIFO's small queue: the weighter counts the key's source,
/// path and ETag (an S3 key is at most 1 KiB) and 64 bytes more.
const KEY_WEIGHT_ALLOWANCE: u64 = 2048;

/// foyer's configuration of `policy` for a memory tier of `capacity` bytes
/// in [`MEMORY_SHARDS`] shards whose entries weigh about `entry` bytes
/// (`0` when they vary), as the tiers use it (and `quiver-bench policies`
/// replays traces through).
///
/// S3-FIFO's small queue is a tenth of each shard by default. In a shard of
/// less than ten entries it holds none: each new entry is evicted by the
/// next insert into its shard unless it was read again in between, and
/// only a second miss, through the ghost queue, caches it. The live A/B of
/// `quiver-bench policies` measured that, with 8 MiB shards of 1 MiB
/// chunks, as 13 points of hit ratio below LRU. The small queue is
/// therefore widened to hold two entries where a tenth holds fewer, up to
/// half the shard, which halved the gap.
pub fn eviction(policy: Eviction, capacity: u64, entry: u64) -> EvictionConfig {
    match policy {
        Eviction::Lru => LruConfig::default().into(),
        Eviction::Lfu => LfuConfig::default().into(),
        Eviction::S3fifo => S3FifoConfig {
            small_queue_capacity_ratio: small_queue_ratio(capacity, entry),
            ..S3FifoConfig::default()
        }
        .into(),
        Eviction::Fifo => FifoConfig::default().into(),
        Eviction::Sieve => SieveConfig.into(),
    }
}

/// S3-FIFO's small-queue share of a shard: foyer's tenth, or enough for two
/// entries of `entry` bytes with their keys, at most half. Entries of no
/// fixed size (`entry == 0`) keep foyer's tenth.
fn small_queue_ratio(capacity: u64, entry: u64) -> f64 {
    let default = S3FifoConfig::default().small_queue_capacity_ratio;
    let shard = capacity / MEMORY_SHARDS as u64;
    if shard == 0 || entry == 0 {
        return default;
    }
    let two = entry.saturating_add(KEY_WEIGHT_ALLOWANCE).saturating_mul(2) as f64 / shard as f64;
    default.max(two).min(0.5)
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

impl ChunkCache {
    /// Opens the cache, recovering the disk tier left by a previous run.
    /// The tier's size is `cache.disk`, or, when no setting gave one, what
    /// its disk can spare (`disk_budget`).
    ///
    /// The disk tier's files are allocated in full before it is used, so a
    /// disk that fills up later cannot fail the tier's writes (foyer panics
    /// in its flusher when a write meets ENOSPC). A disk without room for
    /// the whole tier is a warning and a memory-only node, not a failed
    /// start: the node serves from memory and the origin, and `health` says
    /// why.
    pub async fn open(cfg: &CacheConfig, metrics: Arc<Metrics>) -> Result<Self> {
        let chunk = cfg.chunk.0;
        let disk = disk_budget::decide(cfg);
        let block = (disk / 16).clamp(chunk * 2, MAX_DISK_BLOCK.max(chunk * 2));
        let mut disk_problem = None;
        let (cache, disk_dir, lock_file) = if disk == 0 {
            (memory_builder(cfg).build().await, None, None)
        } else {
            std::fs::create_dir_all(&cfg.disk_dir).map_err(|e| {
                QuiverError::Internal(format!(
                    "cannot create the disk cache directory {}: {e}",
                    cfg.disk_dir.display()
                ))
            })?;
            // Before foyer touches a file: two nodes writing the same block
            // files would corrupt each other's entries.
            let lock_file = lock_dir(&cfg.disk_dir)?;
            let device = FsDeviceBuilder::new(&cfg.disk_dir)
                .with_capacity(disk as usize)
                .build()
                .map_err(|e| QuiverError::Internal(format!("cannot open the disk tier: {e}")))?;
            // The tombstone log records removals on disk: without it an
            // evicted chunk is recovered from its block after a restart.
            let engine = BlockEngineConfig::new(device)
                .with_tombstone_log(true)
                .with_block_size(block as usize)
                .with_flushers(2)
                .with_buffer_pool_size((2 * block) as usize)
                .with_submit_queue_size_threshold((2 * block) as usize);
            let cache = memory_builder(cfg)
                .with_io_engine_config(PsyncIoEngineConfig::new())
                .with_engine_config(engine)
                .with_recover_mode(RecoverMode::Quiet)
                .build()
                .await;
            match (cache, reserve(&cfg.disk_dir)) {
                (Ok(cache), Ok(())) => (Ok(cache), Some(cfg.disk_dir.clone()), Some(lock_file)),
                (Ok(cache), Err(e)) => {
                    let problem = format!(
                        "the disk tier's {} MiB cannot be reserved in {} ({e}); the node runs memory-only",
                        disk >> 20,
                        cfg.disk_dir.display()
                    );
                    tracing::warn!(problem = %problem, "the disk tier is degraded");
                    let _ = cache.close().await;
                    drop(lock_file);
                    disk_problem = Some(problem);
                    (memory_builder(cfg).build().await, None, None)
                }
                (Err(e), _) => (Err(e), None, None),
            }
        };
        let cache =
            cache.map_err(|e| QuiverError::Internal(format!("cannot open the cache: {e}")))?;
        let catalog = match &disk_dir {
            Some(dir) => Catalog::open(dir, |id| holds_any(&cache, chunk, id)),
            None => Catalog::memory(),
        };
        metrics.memory_capacity.set(cfg.memory.0 as i64);
        metrics
            .disk_capacity
            .set(if disk_dir.is_some() { disk as i64 } else { 0 });
        Ok(ChunkCache {
            inner: Arc::new(Inner {
                cache,
                chunk,
                catalog,
                inflight: Mutex::default(),
                fetch_slots: tokio::sync::Semaphore::new(MAX_ORIGIN_FETCHES),
                peers: OnceLock::new(),
                metrics,
                disk_dir,
                disk_capacity: disk,
                disk_problem,
                lock: Mutex::new(lock_file),
            }),
        })
    }

    pub fn chunk_size(&self) -> u64 {
        self.inner.chunk
    }

    /// Makes misses ask `peers` before the origin. Only the first call
    /// counts: the node sets it once while it starts.
    pub fn set_peers(&self, peers: Arc<dyn PeerChunks>) {
        // A second call is a wiring mistake with no effect on reads.
        let _ = self.inner.peers.set(peers);
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

    /// For each missing chunk: join the fetch already in flight, or start one
    /// for each run of adjacent chunks nobody is fetching yet. With
    /// `trust_cache`, chunks that a fetch filled since the caller's lookup
    /// are returned apart, to be looked up again: a fill inserts its chunks
    /// and leaves the in-flight map under the same lock, so a chunk is
    /// always either in flight or in the cache by the time it is claimed.
    fn claim(
        &self,
        id: &ObjectId,
        origin: &Arc<dyn ObjectStore>,
        missing: &[u64],
        trust_cache: bool,
    ) -> (Vec<(u64, Pending)>, Vec<u64>) {
        let mut inflight = lock(&self.inner.inflight);
        let mut out = Vec::with_capacity(missing.len());
        let mut mine: Vec<u64> = Vec::new();
        let mut filled: Vec<u64> = Vec::new();
        for &index in missing {
            let key = self.key(id, index);
            match inflight.get(&key) {
                Some(p) => out.push((index, p.clone())),
                None if trust_cache && self.inner.cache.contains(&key) => filled.push(index),
                None => mine.push(index),
            }
        }
        for run in runs(&mine) {
            let fetch = self.spawn_fetch(id, origin, run.clone());
            for index in run {
                let offset = ((index - run_start(&fetch.1)) * self.inner.chunk) as usize;
                let len = self.chunk_len(id, index) as usize;
                let part: Pending = fetch
                    .0
                    .clone()
                    .map(move |r| r.map(|b| b.slice(offset..offset + len)))
                    .boxed()
                    .shared();
                inflight.insert(self.key(id, index), part.clone());
                out.push((index, part));
            }
        }
        (out, filled)
    }

    /// Fetches chunks `run` with one GET in a task of its own, so that the
    /// fetch completes (and the in-flight entries are cleared) even if every
    /// reader that wanted it has gone away.
    fn spawn_fetch(
        &self,
        id: &ObjectId,
        origin: &Arc<dyn ObjectStore>,
        run: Range<u64>,
    ) -> (Pending, Range<u64>) {
        let this = self.clone();
        let id = id.clone();
        let origin = origin.clone();
        let r = run.clone();
        let task = tokio::spawn(
            async move {
                let chunk = this.inner.chunk;
                if let Some(parts) = this.peer_chunks(&id, r.clone()).await {
                    let mut inflight = lock(&this.inner.inflight);
                    this.inner.metrics.miss(r.end - r.start);
                    let mut run = BytesMut::new();
                    for (index, part) in r.clone().zip(parts) {
                        run.extend_from_slice(&part);
                        this.store(&id, index, part);
                        inflight.remove(&this.key(&id, index));
                    }
                    return Ok(run.freeze());
                }
                let bytes_range = r.start * chunk..(r.end * chunk).min(id.size);
                let result = match this.inner.fetch_slots.acquire().await {
                    Ok(_slot) => fetch_origin(&origin, &id, bytes_range, &this.inner.metrics).await,
                    Err(_) => Err(QuiverError::Internal(
                        "the origin fetch limiter was closed".into(),
                    )),
                };
                let mut inflight = lock(&this.inner.inflight);
                if let Ok(bytes) = &result {
                    this.inner.metrics.miss(r.end - r.start);
                    for index in r.clone() {
                        let start = ((index - r.start) * chunk) as usize;
                        let len = this.chunk_len(&id, index) as usize;
                        // Copy so that each entry owns exactly its bytes, not the
                        // whole run's buffer.
                        let value = Bytes::copy_from_slice(&bytes[start..start + len]);
                        this.store(&id, index, value);
                    }
                }
                for index in r {
                    inflight.remove(&this.key(&id, index));
                }
                result
            }
            // Within the lookup that started it: its peer fill or origin GET
            // shows up in that request's trace.
            .in_current_span(),
        );
        let fut: Pending = async move {
            task.await.unwrap_or_else(|e| {
                Err(QuiverError::Internal(format!(
                    "a cache fill task failed: {e}"
                )))
            })
        }
        .boxed()
        .shared();
        (fut, run)
    }

    /// Chunks `run` from a peer, when one is set and has every one of them
    /// at its right length; anything less and the origin is read instead.
    async fn peer_chunks(&self, id: &ObjectId, run: Range<u64>) -> Option<Vec<Bytes>> {
        let peers = self.inner.peers.get()?;
        let parts = peers
            .fetch(id.clone(), self.inner.chunk, run.clone())
            .await?;
        let complete = parts.len() as u64 == run.end - run.start
            && run
                .clone()
                .zip(&parts)
                .all(|(index, part)| part.len() as u64 == self.chunk_len(id, index));
        if !complete {
            tracing::warn!(
                source = %id.source, path = %id.path,
                "a peer sent chunks of the wrong number or length; reading the origin"
            );
            return None;
        }
        let bytes: u64 = parts.iter().map(|p| p.len() as u64).sum();
        self.inner.metrics.peer_fill_bytes.inc_by(bytes);
        Some(parts)
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

/// The memory tier, as every cache starts.
fn memory_builder(
    cfg: &CacheConfig,
) -> foyer::HybridCacheBuilderPhaseStorage<ChunkKey, Bytes, foyer::DefaultHasher> {
    // Every insert is also queued to disk, so that what was cached survives
    // a restart or a crash without a big flush at shutdown.
    HybridCacheBuilder::new()
        .with_name("quiver-chunks")
        .with_policy(HybridCachePolicy::WriteOnInsertion)
        .memory(cfg.memory.0 as usize)
        .with_shards(MEMORY_SHARDS)
        .with_eviction_config(eviction(cfg.eviction, cfg.memory.0, cfg.chunk.0))
        .with_weighter(|k: &ChunkKey, v: &Bytes| {
            v.len() + k.source.len() + k.path.len() + k.etag.len() + 64
        })
        .storage()
}

/// Allocates every block file of the disk tier in `dir` in full, so that
/// writes into them never need space the file system no longer has.
fn reserve(dir: &Path) -> std::io::Result<()> {
    use fs4::fs_std::FileExt;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_block = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("foyer-storage"));
        if !is_block {
            continue;
        }
        let file = OpenOptions::new().write(true).open(&path)?;
        let len = file.metadata()?.len();
        FileExt::allocate(&file, len)?;
    }
    Ok(())
}

/// Takes the exclusive lock on `dir/quiver.lock`, held until the cache is
/// closed (or the process exits, when the OS releases it), and records this
/// process's id in it for whoever finds the directory busy.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let cannot = |e: std::io::Error| {
        QuiverError::Internal(format!(
            "cannot lock the disk cache directory {}: {e}",
            dir.display()
        ))
    };
    // Not truncated on open: the file may hold the pid of the node that
    // owns the directory.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(cannot)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(QuiverError::FailedPrecondition(format!(
                "the disk cache directory {} is already in use by another Quiver node",
                dir.display()
            )))
        }
        Err(TryLockError::Error(e)) => return Err(cannot(e)),
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(cannot)?;
    Ok(file)
}

fn run_start(run: &Range<u64>) -> u64 {
    run.start
}

/// Groups sorted chunk indices into runs of adjacent indices, at most
/// `MAX_RUN_CHUNKS` long.
fn runs(sorted: &[u64]) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for &i in sorted {
        match out.last_mut() {
            Some(r) if r.end == i && r.end - r.start < MAX_RUN_CHUNKS => r.end += 1,
            _ => out.push(i..i + 1),
        }
    }
    out
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

/// One ranged GET, pinned to the ETag the cache key names. Stores that
/// ignore `If-Match` are caught by comparing the ETag they answer with.
#[tracing::instrument(
    name = "origin_get",
    skip_all,
    fields(source = %id.source, path = %id.path, start = range.start, end = range.end, otel.kind = "client")
)]
async fn fetch_origin(
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_s3fifo_small_queue_holds_two_chunks() {
        let two = |shard: u64| 2.0 * (MIB + KEY_WEIGHT_ALLOWANCE) as f64 / shard as f64;
        // 1 GiB: 128 MiB shards, a tenth holds 12 chunks.
        assert_eq!(small_queue_ratio(1 << 30, MIB), 0.1);
        // 64 MiB: 8 MiB shards, a tenth holds none; two chunks are a quarter.
        assert_eq!(small_queue_ratio(64 * MIB, MIB), two(8 * MIB));
        // Never more than half the shard, nor changed for entries of no size.
        assert_eq!(small_queue_ratio(16 * MIB, MIB), 0.5);
        assert_eq!(small_queue_ratio(64 * MIB, 0), 0.1);
        assert_eq!(small_queue_ratio(0, MIB), 0.1);
    }

    /// A chunk read again after two other chunks entered its shard is still
    /// held, in a shard of a few chunks whose main queue is full of chunks
    /// read often. With foyer's tenth the small queue held less than one
    /// chunk, so the next insert evicted it (this test failed).
    #[test]
    fn a_chunk_survives_two_inserts_into_a_small_s3fifo_shard() {
        // One shard of a 64 MiB memory tier: 8 MiB, seven weighed chunks.
        let tier = 64 * MIB;
        let shard = tier / MEMORY_SHARDS as u64;
        let cache: foyer::Cache<u64, Bytes> = foyer::CacheBuilder::new(shard as usize)
            .with_shards(1)
            .with_eviction_config(eviction(Eviction::S3fifo, tier, MIB))
            .with_weighter(|_: &u64, v: &Bytes| v.len() + 200)
            .build();
        let chunk = Bytes::from(vec![0u8; MIB as usize]);
        // Six chunks read often, then two read once: the next inserts move
        // the six to the main queue and leave the small queue to new chunks.
        for hot in 0..6 {
            cache.insert(hot, chunk.clone());
            for _ in 0..3 {
                assert!(cache.get(&hot).is_some());
            }
        }
        cache.insert(100, chunk.clone());
        cache.insert(101, chunk.clone());
        cache.insert(200, chunk.clone());
        cache.insert(201, chunk.clone());
        cache.insert(202, chunk.clone());
        assert!(
            cache.get(&200).is_some(),
            "a chunk was evicted by the next two inserts"
        );
    }

    #[test]
    fn runs_group_adjacent_and_cap_length() {
        assert_eq!(runs(&[1, 2, 3, 7, 9, 10]), vec![1..4, 7..8, 9..11]);
        let long: Vec<u64> = (0..20).collect();
        assert_eq!(runs(&long), vec![0..8, 8..16, 16..20]);
        assert!(runs(&[]).is_empty());
    }

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
