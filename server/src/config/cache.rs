//! The `[cache]` section: sizes and policy of the memory, disk and hot
//! tiers, and the checks that keep them workable.

use std::path::PathBuf;

use super::error::{invalid, ConfigError};
use super::section::section;
use super::values::{ByteSize, Eviction};

/// The largest `cache.chunk`: disk entries must fit in one 16 MiB block of
/// the disk tier, and peers size their messages by it.
pub const MAX_CHUNK: u64 = 8 << 20;

section! {
    /// Sizes and policy of the memory, disk and hot tiers.
    pub struct CacheConfig / CacheFlags {
        /// Memory tier capacity, e.g. 1GiB.
        memory: ByteSize = ByteSize(1 << 30),
            [long = "cache-memory", env = "QUIVER_CACHE_MEMORY"];
        /// Disk tier capacity, e.g. 10GiB; 0 for memory only (default: a
        /// quarter of the disk's free space, at most 10GiB).
        ///
        /// When the size is automatic, the most it may take.
        disk: ByteSize = ByteSize(10 << 30),
            [long = "cache-disk", env = "QUIVER_CACHE_DISK"];
        /// Directory of the disk tier.
        disk_dir: PathBuf = PathBuf::from("./.quiver-cache"),
            [long = "cache-disk-dir", env = "QUIVER_CACHE_DISK_DIR"];
        /// No file, flag or variable gave `disk`: the node sizes its disk
        /// tier at start-up to a quarter of the space its disk can spare,
        /// at most `disk` (`cache::disk_budget`). Set by
        /// [`super::Config::load`] and [`super::Config::from_toml`]; a
        /// configuration built in code keeps `disk`.
        #[serde(skip)]
        disk_auto: bool = false, [skip];
        /// Chunk size of cached byte ranges, e.g. 1MiB: the unit entries
        /// are stored, evicted and handed off in; reads fetch only the
        /// bytes asked for.
        chunk: ByteSize = ByteSize(1 << 20),
            [long = "cache-chunk", env = "QUIVER_CACHE_CHUNK"];
        /// Eviction policy: lru, lfu, s3fifo, fifo or sieve.
        ///
        /// LRU by default: the fewest origin bytes and the lowest latency
        /// of the live A/B of `quiver-bench policies` (docs/benchmarks.md,
        /// "Eviction policies").
        eviction: Eviction = Eviction::Lru,
            [long = "cache-eviction", env = "QUIVER_CACHE_EVICTION"];
        /// Memory for parsed Parquet footers and page indexes.
        metadata: ByteSize = ByteSize(128 << 20),
            [long = "cache-metadata", env = "QUIVER_CACHE_METADATA"];
        /// Hot tier of decoded Arrow arrays, e.g. 1GiB; 0 turns it off.
        hot: ByteSize = ByteSize(1 << 30),
            [long = "cache-hot", env = "QUIVER_CACHE_HOT"];
        /// Append one JSON line per scan read to this file (a trace for
        /// `quiver-bench policies`).
        access_log: Option<PathBuf> = None,
            [long = "cache-access-log", env = "QUIVER_CACHE_ACCESS_LOG"];
    }
}

impl CacheConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let chunk = self.chunk.0;
        // Disk entries must fit in one 16 MiB block of the disk tier.
        if !(4096..=MAX_CHUNK).contains(&chunk) || !chunk.is_power_of_two() {
            return Err(invalid(
                "cache.chunk",
                "must be a power of two between 4KiB and 8MiB",
            ));
        }
        // The memory tier is split into 8 shards; a shard smaller than a
        // chunk would evict every entry the moment it is inserted.
        if self.memory.0 < 8 * chunk {
            return Err(invalid("cache.memory", "must hold at least 8 chunks"));
        }
        // Each of the hot tier's 8 shards must hold a typical column chunk.
        if self.hot.0 != 0 && self.hot.0 < (64 << 20) {
            return Err(invalid("cache.hot", "must be 0 (off) or at least 64MiB"));
        }
        if self.disk.0 != 0 && self.disk.0 < (64 << 20) {
            return Err(invalid(
                "cache.disk",
                "must be 0 (memory only) or at least 64MiB",
            ));
        }
        Ok(())
    }
}
