use serde::{Deserialize, Serialize};

/// The DoAction types a node understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionType {
    Stats,
    Prefetch,
    Evict,
    ClusterShards,
    ClusterUpdate,
    HandoffList,
    HandoffRead,
    HandoffDone,
    Health,
    RefreshCatalog,
    Warm,
    Tables,
    TableSnapshot,
}

impl ActionType {
    pub const ALL: [ActionType; 13] = [
        ActionType::Stats,
        ActionType::Prefetch,
        ActionType::Evict,
        ActionType::ClusterShards,
        ActionType::ClusterUpdate,
        ActionType::HandoffList,
        ActionType::HandoffRead,
        ActionType::HandoffDone,
        ActionType::Health,
        ActionType::RefreshCatalog,
        ActionType::Warm,
        ActionType::Tables,
        ActionType::TableSnapshot,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ActionType::Stats => "stats",
            ActionType::Prefetch => "prefetch",
            ActionType::Evict => "evict",
            ActionType::ClusterShards => "cluster-shards",
            ActionType::ClusterUpdate => "cluster-update",
            ActionType::HandoffList => "handoff-list",
            ActionType::HandoffRead => "handoff-read",
            ActionType::HandoffDone => "handoff-done",
            ActionType::Health => "health",
            ActionType::RefreshCatalog => "refresh-catalog",
            ActionType::Warm => "warm",
            ActionType::Tables => "tables",
            ActionType::TableSnapshot => "table-snapshot",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// What `ListActions` says about the action.
    pub fn description(self) -> &'static str {
        match self {
            ActionType::Stats => "Cache capacity, usage, hits and misses per tier, origin traffic and bytes served, as JSON.",
            ActionType::Prefetch => "Body: a ScanRequest. Loads the named objects into the cache; streams progress, then {objects, bytes}. Admin token required when auth is on.",
            ActionType::Evict => "Body: {\"source\", \"path\"}. Drops the named objects from the cache; returns {objects, bytes}. Admin token required when auth is on.",
            ActionType::ClusterShards => "The cluster topology: epoch, nodes and slot ranges with their owners.",
            ActionType::ClusterUpdate => "Body: {\"expected_epoch\", \"topology\"}. Replaces the stored topology if it is still at expected_epoch (compare-and-swap); returns the new topology. Admin token required when auth is on.",
            ActionType::HandoffList => "Node to node. Body: {\"slots\": [[start, end], ...], \"after\": [source, path], \"limit\": n}. One page of the cached objects in those slots with their cached chunks, as JSON. Peer token required when auth is on.",
            ActionType::HandoffRead => "Node to node. Body: {\"object\", \"chunks\", \"checksum\": bool}. Streams the listed chunks that are cached (8-byte big-endian index, with checksum the 4-byte big-endian CRC-32C of the bytes, then the bytes); never reads the origin. Peer token required when auth is on.",
            ActionType::HandoffDone => "Node to node. Body: {\"epoch\", \"node\", \"slots\": [[start, end], ...]}. The new owner of those slots at that epoch has finished importing them, so this node stops serving them before its grace period ends. Peer token required when auth is on.",
            ActionType::Health => "Liveness: {\"status\":\"ok\", ...}.",
            ActionType::RefreshCatalog => "Lists the lake again for Flight SQL's catalog now, instead of at the next refresh interval; returns {\"tables\", \"errors\"}.",
            ActionType::Tables => "Body: {\"source\", \"path\"}. The tables with a log (Delta Lake) under a prefix of the source: {\"tables\": [{\"path\", \"format\"}]}.",
            ActionType::TableSnapshot => "Body: {\"source\", \"path\", \"version\"?, \"timestamp\"?}. One version of a Delta table: its schema, partition columns and live files, read from its log.",
            ActionType::Warm => "Node to node. Body: a ScanRequest for one object with its etag. Queues a background warm-up of the columns it needs (dropped when the queue is full); returns {\"queued\": bool}. Peer token required when auth is on.",
        }
    }

    /// Who may call the action when auth is on.
    pub fn caller(self) -> Caller {
        match self {
            ActionType::Prefetch | ActionType::Evict | ActionType::ClusterUpdate => Caller::Admin,
            ActionType::HandoffList
            | ActionType::HandoffRead
            | ActionType::HandoffDone
            | ActionType::Warm => Caller::Peer,
            ActionType::Stats
            | ActionType::ClusterShards
            | ActionType::Health
            | ActionType::RefreshCatalog
            | ActionType::Tables
            | ActionType::TableSnapshot => Caller::Reader,
        }
    }
}

/// The credential an action needs when auth is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Any valid token.
    Reader,
    /// The admin token: the action changes what the node holds or the
    /// cluster's membership.
    Admin,
    /// Another node of the cluster: the peer token (or the admin token).
    /// Reader tokens never qualify, so a reader cannot pull a slot's cache
    /// or queue work on a node.
    Peer,
}

/// Body of `evict`, and the criteria of `ListFlights`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvictRequest {
    pub source: String,
    pub path: String,
}

/// `ListFlights` criteria: which source and path (key or `/`-ended prefix).
pub type ListCriteria = EvictRequest;

/// Result of `prefetch` and `evict`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefetchSummary {
    pub objects: u64,
    pub bytes: u64,
}

/// One progress message of `prefetch`, sent after each object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefetchProgress {
    pub path: String,
    pub done: u64,
    pub total: u64,
    pub bytes: u64,
}

/// What `ListFlights` says about each object, in the FlightInfo app_metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectListing {
    pub source: String,
    pub path: String,
    pub size: u64,
    pub etag: String,
    /// Bytes of this object held in the cache (memory or disk).
    pub cached_bytes: u64,
}

/// Usage and hit counters of one cache tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheTierStats {
    pub capacity: u64,
    /// Bytes of cached data the tier holds.
    pub usage: u64,
    /// The disk tier only: the space its files take, allocated in full when
    /// it opens, so `capacity` from the first start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<u64>,
    pub hits: u64,
}

/// The `stats` action's answer. Counters are cumulative since start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    pub node_id: String,
    pub memory: CacheTierStats,
    pub disk: CacheTierStats,
    /// Chunk lookups that neither tier could answer.
    pub misses: u64,
    pub origin_bytes: u64,
    pub origin_requests: u64,
    /// HEAD requests that asked the origin what an object is now.
    #[serde(default)]
    pub origin_heads: u64,
    pub bytes_served: u64,
    pub rows_served: u64,
    pub presigned_urls: u64,
    pub scans: u64,
    pub active_scans: u64,
    /// The background warming that follows pre-signed URLs.
    #[serde(default)]
    pub warm: WarmStats,
    /// The hot tier of decoded Arrow arrays.
    #[serde(default)]
    pub hot: HotStats,
    /// Flight SQL's distributed statements on this node.
    #[serde(default)]
    pub sql: SqlStats,
}

/// A node's part in distributed Flight SQL statements, since start-up. A
/// task is one stage of one statement run on this node as a worker; a leaf
/// task is one that reads Quiver endpoints, a local one reads only
/// endpoints whose slots this node owns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlStats {
    /// Statements this node coordinated in distributed stages.
    pub distributed_statements: u64,
    /// Stage tasks this node ran as a worker.
    pub tasks: u64,
    /// Of `tasks`, those that read Quiver endpoints.
    pub leaf_tasks: u64,
    /// Of `leaf_tasks`, those that read only endpoints this node owns.
    pub local_leaf_tasks: u64,
    /// Bytes of stage output this node received as a coordinator.
    pub coordinator_bytes: u64,
    /// Bytes of stage output this node received as a worker, from the
    /// tasks of the stage below.
    pub worker_bytes: u64,
}

/// The hot tier of a node. Hits, partial hits and misses count scans: a hit
/// is a scan answered from decoded arrays alone, a partial hit one that read
/// some row groups from them and the rest from Parquet, a miss one that read
/// Parquet only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotStats {
    pub capacity: u64,
    pub usage: u64,
    pub hits: u64,
    pub misses: u64,
    #[serde(default)]
    pub partial: u64,
    /// Decoded column chunks dropped to make room.
    pub evictions: u64,
    /// Row groups decoded into the tier after misses.
    pub fills: u64,
}

/// The warming queue of a node: what waits, and what happened to the rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmStats {
    /// Warm-ups waiting or running now.
    pub queued: u64,
    /// Warm-ups finished since start-up.
    pub done: u64,
    /// Warm-ups dropped because the queue was full.
    pub dropped: u64,
    /// Warm-ups that failed (the origin refused, the object changed).
    pub failed: u64,
    /// Bytes the finished warm-ups loaded.
    pub bytes: u64,
}

/// Answer of `warm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmAnswer {
    /// False when the queue was full and the warm-up was dropped.
    pub queued: bool,
}

/// Body of `cluster-update`: the new topology, written only if the stored
/// one is still at `expected_epoch` (0 when there is none yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterUpdate {
    pub expected_epoch: u64,
    pub topology: crate::Topology,
}

/// Most objects one `handoff-list` answer holds, so a donor caching many
/// objects answers in pages of bounded size.
pub const HANDOFF_PAGE: usize = 1000;

/// Body of `handoff-list`: inclusive slot ranges, and where the page starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffList {
    pub slots: Vec<(u16, u16)>,
    /// Only objects after this `[source, path]`, in that order: the last
    /// object of the previous page. Absent: from the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<(String, String)>,
    /// Objects in this page, at most (and by default) [`HANDOFF_PAGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// One cached object offered in a hand-off: the version its chunks belong
/// to, and which chunks (of `chunk_size` bytes) the donor holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffObject {
    pub source: String,
    pub path: String,
    pub etag: String,
    pub size: u64,
    pub last_modified_ms: i64,
    pub chunk_size: u64,
    pub chunks: Vec<u64>,
}

/// Body of `handoff-read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffRead {
    pub object: HandoffObject,
    pub chunks: Vec<u64>,
    /// Frame each chunk with the CRC-32C of its bytes after its index, so
    /// the importer can verify it before it enters the cache.
    #[serde(default)]
    pub checksum: bool,
    /// Send every part of a chunk the donor holds, each framed with its
    /// offset in the chunk (`frame_part`), instead of whole chunks only: a
    /// node caches the parts of a chunk that reads asked for.
    #[serde(default)]
    pub parts: bool,
}

/// Body of `handoff-done`: `node` owns `slots` (inclusive ranges) at
/// `epoch` and has imported what their previous owners cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffDone {
    pub epoch: u64,
    pub node: String,
    pub slots: Vec<(u16, u16)>,
}
