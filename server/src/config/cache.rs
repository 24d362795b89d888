//! The `[cache]` section: sizes and policy of the memory, disk and hot
//! tiers, and the checks that keep them workable.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::{invalid, ConfigError};
use super::values::{ByteSize, Eviction};

/// The largest `cache.chunk`: disk entries must fit in one 16 MiB block of
/// the disk tier, and peers size their messages by it.
pub const MAX_CHUNK: u64 = 8 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub memory: ByteSize,
    /// Disk tier capacity; `0` runs memory-only. With `disk_auto`, the
    /// most the automatic size may take.
    pub disk: ByteSize,
    pub disk_dir: PathBuf,
    /// No file, flag or variable gave `disk`: the node sizes its disk tier
    /// at start-up to a quarter of the space its disk can spare, at most
    /// `disk` (`cache::disk_budget`). Set by [`super::Config::load`] and
    /// [`super::Config::from_toml`]; a configuration built in code keeps
    /// `disk`.
    #[serde(skip)]
    pub disk_auto: bool,
    pub chunk: ByteSize,
    pub eviction: Eviction,
    /// Memory kept for parsed Parquet footers and page indexes.
    pub metadata: ByteSize,
    /// Capacity of the hot tier of decoded Arrow arrays, above the memory
    /// tier; `0` turns it off.
    pub hot: ByteSize,
    /// Where to append one JSON line per read scans make (the trace
    /// `quiver-bench policies` replays); absent: no log.
    pub access_log: Option<PathBuf>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory: ByteSize(1 << 30),
            disk: ByteSize(10 << 30),
            disk_dir: PathBuf::from("./.quiver-cache"),
            disk_auto: false,
            chunk: ByteSize(1 << 20),
            // The fewest origin bytes and the lowest latency of the live
            // A/B of `quiver-bench policies` (docs/benchmarks.md,
            // "Eviction policies").
            eviction: Eviction::Lru,
            metadata: ByteSize(128 << 20),
            hot: ByteSize(1 << 30),
            access_log: None,
        }
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
