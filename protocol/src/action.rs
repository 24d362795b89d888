use serde::{Deserialize, Serialize};

/// The DoAction types a node understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionType {
    Stats,
    Prefetch,
    Evict,
    ClusterShards,
    Health,
}

impl ActionType {
    pub const ALL: [ActionType; 5] = [
        ActionType::Stats,
        ActionType::Prefetch,
        ActionType::Evict,
        ActionType::ClusterShards,
        ActionType::Health,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ActionType::Stats => "stats",
            ActionType::Prefetch => "prefetch",
            ActionType::Evict => "evict",
            ActionType::ClusterShards => "cluster-shards",
            ActionType::Health => "health",
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
            ActionType::Health => "Liveness: {\"status\":\"ok\", ...}.",
        }
    }

    /// Actions that change what the node holds need the admin token.
    pub fn needs_admin(self) -> bool {
        matches!(self, ActionType::Prefetch | ActionType::Evict)
    }
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
    pub usage: u64,
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
    pub bytes_served: u64,
    pub rows_served: u64,
    pub presigned_urls: u64,
    pub scans: u64,
    pub active_scans: u64,
}
