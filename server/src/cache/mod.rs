//! The byte-range cache and what reads through it.
//!
//! `chunks` holds aligned chunks of object bytes in foyer; `store` is the
//! `ObjectStore` wrapper that every read of a source goes through; `footers`
//! keeps parsed Parquet metadata so a warm scan does no footer decoding;
//! `decoded` is the hot tier of decoded Arrow arrays above them;
//! `disk_budget` sizes the disk tier when no setting does;
//! `disk_health` probes whether the disk tier can still be written;
//! `catalog` records which object versions the cache holds, for hand-off;
//! `PeerChunks` is how a miss asks a peer before the origin.

mod catalog;
mod chunks;
mod decoded;
mod disk_budget;
mod disk_health;
pub(crate) mod footers;
mod store;

pub use catalog::CATALOG_FILE;
pub use chunks::{
    eviction, ChunkCache, ChunkCacheBuilder, PeerChunks, PeerPart, TierUsage, MAX_ORIGIN_FETCHES,
    MAX_RUN_CHUNKS, MEMORY_SHARDS,
};
pub use decoded::{DecodedCache, DecodedKey, Lookup};
pub use disk_health::{DiskHealth, DiskState, PROBE_EVERY};
pub use footers::FooterCache;
pub use store::CachingObjectStore;
