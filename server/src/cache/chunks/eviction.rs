//! Eviction tuning of the memory tier: the policy foyer runs in each
//! shard, S3-FIFO's small queue sized for the chunk size, and the builder
//! every cache starts from with that policy and the weight of each entry.

use foyer::{
    EvictionConfig, FifoConfig, HybridCacheBuilder, HybridCachePolicy, LfuConfig, LruConfig,
    S3FifoConfig, SieveConfig,
};

use super::piece::Piece;
use super::{ChunkKey, PART_WEIGHT};
use crate::config::{CacheConfig, Eviction};

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
/// only a second miss, through the ghost queue, caches it. With 8 MiB
/// shards of 1 MiB chunks that costs S3-FIFO much of its hit ratio against
/// LRU (docs/benchmarks.md, "Eviction policies"). The small queue is
/// therefore widened to hold two entries where a tenth holds fewer, up to
/// half the shard.
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

/// The memory tier, as every cache starts.
pub(super) fn memory_builder(
    cfg: &CacheConfig,
) -> foyer::HybridCacheBuilderPhaseStorage<ChunkKey, Piece, foyer::DefaultHasher> {
    // Every insert is also queued to disk, so that what was cached survives
    // a restart or a crash without a big flush at shutdown.
    HybridCacheBuilder::new()
        .with_name("quiver-chunks")
        .with_policy(HybridCachePolicy::WriteOnInsertion)
        .memory(cfg.memory.0 as usize)
        .with_shards(MEMORY_SHARDS)
        .with_eviction_config(eviction(cfg.eviction, cfg.memory.0, cfg.chunk.0))
        .with_weighter(|k: &ChunkKey, v: &Piece| {
            (v.held() as usize)
                + v.part_count() * PART_WEIGHT
                + k.source.len()
                + k.path.len()
                + k.etag.len()
                + 64
        })
        .storage()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

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
}
