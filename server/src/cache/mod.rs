//! The byte-range cache and what reads through it.
//!
//! `chunks` holds aligned chunks of object bytes in foyer; `store` is the
//! `ObjectStore` wrapper that every read of a source goes through; `footers`
//! keeps parsed Parquet metadata so a warm scan does no footer decoding.

mod chunks;
pub(crate) mod footers;
mod store;

pub use chunks::{ChunkCache, MAX_ORIGIN_FETCHES, MAX_RUN_CHUNKS};
pub use footers::FooterCache;
pub use store::CachingObjectStore;
