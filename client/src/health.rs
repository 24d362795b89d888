//! What the client learns of each node from its own reads (latency and
//! failures, decayed so old faults fade) and the score that ranks a slot's
//! owners with it, so reads go to the owner likely to answer best.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::ClientConfig;

/// What the client has seen of a node, decayed so old faults fade.
#[derive(Debug, Clone, Copy, Default)]
struct Health {
    latency_ms: Option<f64>,
    ok: f64,
    failed: f64,
}

impl Health {
    const DECAY: f64 = 0.9;

    fn uptime(&self) -> f64 {
        (self.ok + 1.0) / (self.ok + self.failed + 1.0)
    }

    fn success(&mut self, ms: f64) {
        self.latency_ms = Some(match self.latency_ms {
            Some(l) => 0.8 * l + 0.2 * ms,
            None => ms,
        });
        self.ok = self.ok * Self::DECAY + 1.0;
        self.failed *= Self::DECAY;
    }

    fn failure(&mut self) {
        self.failed = self.failed * Self::DECAY + 1.0;
        self.ok *= Self::DECAY;
    }
}

/// The health of every node read from, by node id; clones of a client
/// share one.
#[derive(Debug, Default)]
pub(crate) struct NodeHealth {
    nodes: Mutex<HashMap<String, Health>>,
}

impl NodeHealth {
    /// Records a read from node `id`: `Some(ms)` for one that started
    /// streaming after `ms`, `None` for a failure.
    pub(crate) fn record(&self, id: &str, outcome: Option<f64>) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let h = nodes.entry(id.to_string()).or_default();
        match outcome {
            Some(ms) => h.success(ms),
            None => h.failure(),
        }
    }

    /// Sorts `items` by the score of the node `id_of` names, lowest first;
    /// an item without an id scores 0, and ties keep their order.
    pub(crate) fn rank<T>(
        &self,
        items: &mut [T],
        id_of: impl Fn(&T) -> Option<&str>,
        cfg: &ClientConfig,
    ) {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        items.sort_by(|a, b| {
            let sa = id_of(a).map_or(0.0, |id| score(id, &nodes, cfg));
            let sb = id_of(b).map_or(0.0, |id| score(id, &nodes, cfg));
            sa.total_cmp(&sb)
        });
    }
}

/// `latency * ms + cost * node cost + uptime * (1 - uptime)` for node `id`.
fn score(id: &str, health: &HashMap<String, Health>, cfg: &ClientConfig) -> f64 {
    let h = health.get(id).copied().unwrap_or_default();
    let w = cfg.weights;
    w.latency * h.latency_ms.unwrap_or(0.0)
        + w.cost * cfg.node_costs.get(id).copied().unwrap_or(0.0)
        + w.uptime * (1.0 - h.uptime())
}

#[cfg(test)]
mod tests {
    use super::Health;

    #[test]
    fn failures_lower_uptime_and_fade() {
        let mut h = Health::default();
        assert_eq!(h.uptime(), 1.0);
        h.failure();
        h.failure();
        let low = h.uptime();
        assert!(low < 0.5, "{low}");
        for _ in 0..30 {
            h.success(5.0);
        }
        assert!(h.uptime() > 0.9, "{}", h.uptime());
        assert_eq!(h.latency_ms, Some(5.0));
    }
}
