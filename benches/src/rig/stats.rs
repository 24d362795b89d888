//! What the rig's nodes report, summed over the nodes.

use quiver_protocol::StatsReport;

/// The sum of `stats` over every node.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeStats {
    pub hits: u64,
    pub misses: u64,
    pub origin_bytes: u64,
    pub origin_requests: u64,
    /// HEADs asking the origin what an object is now.
    pub origin_heads: u64,
    pub bytes_served: u64,
    /// Stage output received from workers by distributed statements'
    /// coordinators.
    pub sql_coordinator_bytes: u64,
    /// Stage output received by workers from the stage below.
    pub sql_worker_bytes: u64,
    /// Stage tasks run, and of them those reading only the node's slots.
    pub sql_tasks: u64,
    pub sql_local_leaf_tasks: u64,
    /// Scans the hot tier answered from decoded arrays, without lookups.
    pub hot_hits: u64,
    /// Scans the hot tier answered in part or not at all.
    pub hot_short: u64,
}

impl std::ops::Sub for NodeStats {
    type Output = NodeStats;
    fn sub(self, rhs: NodeStats) -> NodeStats {
        NodeStats {
            hits: self.hits.saturating_sub(rhs.hits),
            misses: self.misses.saturating_sub(rhs.misses),
            origin_bytes: self.origin_bytes.saturating_sub(rhs.origin_bytes),
            origin_requests: self.origin_requests.saturating_sub(rhs.origin_requests),
            origin_heads: self.origin_heads.saturating_sub(rhs.origin_heads),
            bytes_served: self.bytes_served.saturating_sub(rhs.bytes_served),
            sql_coordinator_bytes: self
                .sql_coordinator_bytes
                .saturating_sub(rhs.sql_coordinator_bytes),
            sql_worker_bytes: self.sql_worker_bytes.saturating_sub(rhs.sql_worker_bytes),
            sql_tasks: self.sql_tasks.saturating_sub(rhs.sql_tasks),
            sql_local_leaf_tasks: self
                .sql_local_leaf_tasks
                .saturating_sub(rhs.sql_local_leaf_tasks),
            hot_hits: self.hot_hits.saturating_sub(rhs.hot_hits),
            hot_short: self.hot_short.saturating_sub(rhs.hot_short),
        }
    }
}

impl NodeStats {
    /// Adds one node's `stats` answer.
    pub fn add(&mut self, report: &StatsReport) {
        self.hits += report.memory.hits + report.disk.hits;
        self.misses += report.misses;
        self.origin_bytes += report.origin_bytes;
        self.origin_requests += report.origin_requests;
        self.origin_heads += report.origin_heads;
        self.bytes_served += report.bytes_served;
        self.sql_coordinator_bytes += report.sql.coordinator_bytes;
        self.sql_worker_bytes += report.sql.worker_bytes;
        self.sql_tasks += report.sql.tasks;
        self.sql_local_leaf_tasks += report.sql.local_leaf_tasks;
        self.hot_hits += report.hot.hits;
        self.hot_short += report.hot.partial + report.hot.misses;
    }

    /// Chunk lookups answered by the memory or disk tier. Scans the hot
    /// tier answers make no lookups: a run answered by it alone counts as
    /// 1. `None` when nothing was read at all.
    pub fn hit_ratio(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        if total == 0 {
            return (self.hot_hits > 0).then_some(1.0);
        }
        Some(self.hits as f64 / total as f64)
    }
}
