//! The status page's data: one typed snapshot of the node (its tiers and
//! their hit ratios), the cluster as this node sees it (nodes, the slot
//! ranges each owns, their health), the hand-off in progress, the most
//! requested objects and the last errors. `/status.json` serialises it;
//! the page only renders what is here.

use std::sync::atomic::Ordering;

use chrono::SecondsFormat;
use quiver_protocol::Topology;
use serde::Serialize;

use super::nodes::{NodeHealth, NodeProbes};
use crate::activity::{HotObject, RecentError, TRACKED_OBJECTS};
use crate::cache::DiskState;
use crate::cluster::handoff::HandoffStatus;
use crate::metrics::Tier;
use crate::node_core::NodeCore;

/// Objects listed as the hottest.
const HOT_OBJECTS_SHOWN: usize = 10;

/// Hand-off errors shown, the latest.
const HANDOFF_ERRORS_SHOWN: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// When the snapshot was taken: RFC 3339, UTC.
    pub generated_at: String,
    pub node: NodeStatus,
    pub tiers: Tiers,
    pub cluster: ClusterView,
    pub handoff: HandoffStatus,
    pub hot_objects: HotObjects,
    /// The last requests that failed, newest first.
    pub errors: Vec<RecentError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub id: String,
    pub url: String,
    pub version: &'static str,
    pub ready: bool,
    pub uptime_seconds: u64,
    /// `ok`, or `degraded` while the disk tier fails or an origin's
    /// circuit is open, as the `health` action says.
    pub health: NodeHealth,
    pub disk: DiskState,
    pub origins: Vec<OriginStatus>,
    pub scans: u64,
    pub active_scans: i64,
    pub served_bytes: u64,
    pub served_rows: u64,
    pub origin_bytes: u64,
    pub origin_requests: u64,
    pub warm_queue: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct OriginStatus {
    pub source: String,
    /// `open` while the source's misses fail fast, else `closed`.
    pub circuit: &'static str,
}

/// One tier's size and how often it answered. `hit_ratio` is `hits /
/// lookups`, `null` before the first lookup.
#[derive(Debug, Clone, Serialize)]
pub struct TierStatus {
    pub usage: u64,
    pub capacity: u64,
    pub hits: u64,
    pub lookups: u64,
    pub hit_ratio: Option<f64>,
}

/// The cache tiers. Chunk lookups go to memory first, then to disk, then
/// to the origin (a miss), so the memory tier sees every chunk lookup and
/// the disk tier those the memory tier missed. The hot tier counts scans.
#[derive(Debug, Clone, Serialize)]
pub struct Tiers {
    pub memory: TierStatus,
    pub disk: TierStatus,
    /// Both chunk tiers together: `hits` is memory plus disk hits.
    pub chunks: ChunkTotals,
    pub hot: HotTier,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChunkTotals {
    pub hits: u64,
    pub misses: u64,
    pub lookups: u64,
    pub hit_ratio: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HotTier {
    pub enabled: bool,
    #[serde(flatten)]
    pub tier: TierStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub epoch: u64,
    pub replication: usize,
    /// Where the topology document lives; `null` for a node running alone.
    pub document: Option<String>,
    /// Why the last reload of the document was not adopted.
    pub error: Option<String>,
    pub in_topology: bool,
    pub nodes: Vec<ClusterNode>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterNode {
    pub id: String,
    pub url: String,
    /// This node, the one serving the page.
    pub this_node: bool,
    /// Inclusive slot ranges the node is the primary owner of.
    pub primary: Vec<(u16, u16)>,
    /// Inclusive slot ranges the node holds as a replica.
    pub replica: Vec<(u16, u16)>,
    pub primary_slots: u32,
    pub health: NodeHealth,
}

#[derive(Debug, Clone, Serialize)]
pub struct HotObjects {
    /// Objects counted at once; see `activity::objects` for the estimate.
    pub tracked: usize,
    pub top: Vec<HotObject>,
}

/// `part / whole`, or `None` when nothing was counted yet.
fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn tier(usage: u64, capacity: i64, hits: u64, lookups: u64) -> TierStatus {
    TierStatus {
        usage,
        capacity: u64::try_from(capacity).unwrap_or(0),
        hits,
        lookups,
        hit_ratio: ratio(hits, lookups),
    }
}

fn tiers(core: &NodeCore) -> Tiers {
    let m = &core.metrics;
    let usage = core.chunks.usage();
    let (memory_hits, disk_hits, misses) = (m.hits(Tier::Memory), m.hits(Tier::Disk), m.misses());
    let hits = memory_hits.saturating_add(disk_hits);
    let lookups = hits.saturating_add(misses);
    let hot = core.scanner.hot();
    let (hot_hits, hot_misses) = (m.hot_hits.get(), m.hot_misses.get());
    let hot_lookups = hot_hits
        .saturating_add(m.hot_partial.get())
        .saturating_add(hot_misses);
    Tiers {
        memory: tier(usage.memory, m.memory_capacity.get(), memory_hits, lookups),
        disk: tier(
            usage.disk,
            m.disk_capacity.get(),
            disk_hits,
            disk_hits.saturating_add(misses),
        ),
        chunks: ChunkTotals {
            hits,
            misses,
            lookups,
            hit_ratio: ratio(hits, lookups),
        },
        hot: HotTier {
            enabled: hot.is_enabled(),
            tier: TierStatus {
                usage: hot.usage(),
                capacity: hot.capacity(),
                hits: hot_hits,
                lookups: hot_lookups,
                hit_ratio: ratio(hot_hits, hot_lookups),
            },
        },
    }
}

/// Adds `start..=end` to `ranges`, joining it to the last range when they
/// touch.
fn push_range(ranges: &mut Vec<(u16, u16)>, start: u16, end: u16) {
    match ranges.last_mut() {
        Some((_, last)) if last.checked_add(1) == Some(start) => *last = end,
        _ => ranges.push((start, end)),
    }
}

/// Inclusive slot ranges, `(first, last)`.
type SlotRanges = Vec<(u16, u16)>;

/// Each node's primary and replica slot ranges, in node order, adjacent
/// ranges joined.
fn slot_ranges(topology: &Topology, id: &str) -> (SlotRanges, SlotRanges) {
    let (mut primary, mut replica) = (Vec::new(), Vec::new());
    for range in &topology.slots {
        match range.owners.iter().position(|o| o == id) {
            Some(0) => push_range(&mut primary, range.start, range.end),
            Some(_) => push_range(&mut replica, range.start, range.end),
            None => {}
        }
    }
    (primary, replica)
}

fn cluster(core: &NodeCore, topology: &Topology, health: &[(String, NodeHealth)]) -> ClusterView {
    let status = core.cluster.status();
    let nodes = topology
        .nodes
        .iter()
        .map(|n| {
            let (primary, replica) = slot_ranges(topology, &n.id);
            let primary_slots = primary
                .iter()
                .map(|&(s, e)| (u32::from(e) + 1).saturating_sub(u32::from(s)))
                .sum();
            ClusterNode {
                id: n.id.clone(),
                url: n.url.clone(),
                this_node: n.id == core.node_id,
                primary,
                replica,
                primary_slots,
                health: health
                    .iter()
                    .find(|(id, _)| *id == n.id)
                    .map(|(_, h)| h.clone())
                    .unwrap_or_else(NodeHealth::unknown),
            }
        })
        .collect();
    ClusterView {
        epoch: topology.epoch,
        replication: topology.replication,
        document: status.topology,
        error: status.error,
        in_topology: status.in_topology,
        nodes,
    }
}

fn handoff(core: &NodeCore) -> HandoffStatus {
    let mut h = core.handoff.get();
    let keep = h.errors.len().saturating_sub(HANDOFF_ERRORS_SHOWN);
    h.errors.drain(..keep);
    h
}

/// Takes the snapshot. Other nodes' health comes from `probes`, which asks
/// them at most every few seconds.
pub async fn gather(core: &NodeCore, probes: &NodeProbes) -> Status {
    let topology = core.topology();
    let health = probes.health(core, &topology).await;
    let own = health
        .iter()
        .find(|(id, _)| *id == core.node_id)
        .map(|(_, h)| h.clone())
        .unwrap_or_else(|| NodeHealth::of_node(core));
    let m = &core.metrics;
    Status {
        generated_at: chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        node: NodeStatus {
            id: core.node_id.clone(),
            url: core.advertise.clone(),
            version: env!("CARGO_PKG_VERSION"),
            ready: core.ready.load(Ordering::SeqCst),
            uptime_seconds: core.activity.started.elapsed().as_secs(),
            health: own,
            disk: core.disk_health.state(),
            origins: core
                .sources
                .all()
                .iter()
                .map(|s| OriginStatus {
                    source: s.name.to_string(),
                    circuit: if s.breaker.is_open() {
                        "open"
                    } else {
                        "closed"
                    },
                })
                .collect(),
            scans: m.scans.get(),
            active_scans: m.active_scans.get(),
            served_bytes: m.bytes_served.get(),
            served_rows: m.rows_served.get(),
            origin_bytes: m.origin_bytes.get(),
            origin_requests: m.origin_requests.get(),
            warm_queue: core.warmer.len(),
        },
        tiers: tiers(core),
        cluster: cluster(core, &topology, &health),
        handoff: handoff(core),
        hot_objects: HotObjects {
            tracked: TRACKED_OBJECTS,
            top: core.activity.objects.top(HOT_OBJECTS_SHOWN),
        },
        errors: core.activity.errors.newest_first(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_protocol::{NodeInfo, SlotRange};

    fn range(start: u16, end: u16, owners: &[&str]) -> SlotRange {
        SlotRange {
            start,
            end,
            owners: owners.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn slot_ranges_are_split_by_role_and_joined() {
        let t = Topology {
            epoch: 3,
            replication: 2,
            nodes: ["a", "b"]
                .iter()
                .map(|id| NodeInfo {
                    id: id.to_string(),
                    url: format!("grpc://{id}:1"),
                })
                .collect(),
            slots: vec![
                range(0, 99, &["a", "b"]),
                range(100, 199, &["a", "b"]),
                range(200, 16383, &["b", "a"]),
            ],
        };
        assert_eq!(slot_ranges(&t, "a"), (vec![(0, 199)], vec![(200, 16383)]));
        assert_eq!(slot_ranges(&t, "b"), (vec![(200, 16383)], vec![(0, 199)]));
        assert_eq!(slot_ranges(&t, "c"), (vec![], vec![]));
    }

    #[test]
    fn ratios_wait_for_the_first_lookup() {
        assert_eq!(ratio(0, 0), None);
        assert_eq!(ratio(3, 4), Some(0.75));
        let t = tier(1, -1, 0, 0);
        assert_eq!((t.capacity, t.hit_ratio), (0, None));
    }
}
