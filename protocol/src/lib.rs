//! Quiver's wire contract, shared by the server, the clients and the tools.
//!
//! Everything here is plain data plus the slot function: no I/O, so any crate
//! (including ones built for other runtimes) can depend on it cheaply. The
//! normative description is `docs/protocol.md`; these types are its Rust form.

mod action;
mod compression;
mod error;
mod filter;
mod handoff;
mod scan;
mod slot;
mod table;
mod topology;

pub use action::{
    ActionType, CacheTierStats, Caller, ClusterUpdate, EvictRequest, HandoffDone, HandoffList,
    HandoffObject, HandoffRead, HotStats, ListCriteria, ObjectListing, PrefetchProgress,
    PrefetchSummary, SqlStats, StatsReport, WarmAnswer, WarmStats, HANDOFF_PAGE,
};
pub use compression::{IpcCompression, COMPRESSION_HEADER};
pub use error::{Changed, ErrorCode, Moved, REQUEST_ID_HEADER};
pub use filter::{FILTER_FUNCTIONS, MAX_FILTER_DEPTH, MAX_FILTER_OPERATORS};
pub use handoff::{
    frame_chunk, frame_part, handoff_checksum, unframe_chunk, unframe_part, FrameError,
};
pub use scan::{Accept, PresignedEndpoint, ScanRequest, ScanRequestError};
pub use slot::{hash_tag, key_slot, slot_of, SLOT_COUNT};
pub use table::{
    DeletionVector, DeletionVectorStorage, SnapshotRequest, TableFile, TableFormat, TableList,
    TableRoot, TableSnapshot, TablesRequest,
};
pub use topology::{dial_url, NodeInfo, SlotRange, Topology, TopologyError, MAX_EPOCH};
