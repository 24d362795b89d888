use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::slot::SLOT_COUNT;

/// The highest epoch a topology may carry: 2^53 - 1, the largest integer
/// every JSON reader holds exactly, and far from overflow when the next
/// change adds one.
pub const MAX_EPOCH: u64 = (1 << 53) - 1;

/// One node of the cluster, as clients and peers reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInfo {
    pub id: String,
    pub url: String,
}

/// The URL a gRPC transport dials for a Flight location: `grpc://` and
/// `grpc+tcp://` become `http://`, `grpc+tls://` becomes `https://`, and
/// `http(s)://` pass through. `None` for any other scheme or no host.
pub fn dial_url(location: &str) -> Option<String> {
    let (scheme, rest) = location.split_once("://")?;
    let scheme = match scheme {
        "grpc" | "grpc+tcp" | "http" => "http",
        "grpc+tls" | "https" => "https",
        _ => return None,
    };
    (!rest.is_empty()).then(|| format!("{scheme}://{rest}"))
}

/// An inclusive range of slots and the nodes that own it, primary first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub owners: Vec<String>,
}

/// Who owns which slots, at which epoch. Nodes only ever move to a higher
/// epoch, so a stale copy can never undo a newer assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub epoch: u64,
    /// Owners per slot: the primary plus `replication - 1` replicas (fewer
    /// only while the cluster has fewer nodes).
    #[serde(default = "one")]
    pub replication: usize,
    pub nodes: Vec<NodeInfo>,
    pub slots: Vec<SlotRange>,
}

fn one() -> usize {
    1
}

/// Why a topology document cannot be used. Each message names the fault,
/// because an operator reads it in a log or a CLI error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("the topology has no nodes")]
    NoNodes,
    #[error("node {0:?} has an empty id or url")]
    EmptyNode(String),
    #[error("node id {0:?} appears twice")]
    DuplicateNode(String),
    #[error("node {id:?} has url {url:?}, which is not grpc://, grpc+tcp://, grpc+tls://, http:// or https:// with a host")]
    BadUrl { id: String, url: String },
    #[error("replication must be at least 1")]
    NoReplication,
    #[error("slot ranges must be sorted and cover 0..=16383 without gaps or overlaps: {0}")]
    Coverage(String),
    #[error("slots {start}..={end}: {reason}")]
    BadOwners {
        start: u16,
        end: u16,
        reason: String,
    },
    #[error("there is no node {0:?} in the topology")]
    UnknownNode(String),
    #[error("node {0:?} is already in the topology")]
    NodeExists(String),
    #[error("cannot remove {0:?}: it is the last node")]
    LastNode(String),
    #[error("epoch {0} is above the highest allowed, {MAX_EPOCH}")]
    EpochTooLarge(u64),
}

impl Topology {
    /// The topology of a node that runs alone: it owns every slot.
    pub fn single(id: &str, url: &str) -> Self {
        Topology {
            epoch: 1,
            replication: 1,
            nodes: vec![NodeInfo {
                id: id.to_string(),
                url: url.to_string(),
            }],
            slots: vec![SlotRange {
                start: 0,
                end: SLOT_COUNT - 1,
                owners: vec![id.to_string()],
            }],
        }
    }

    /// The owners of `slot`, primary first; empty when no range covers it.
    pub fn owners(&self, slot: u16) -> Vec<&NodeInfo> {
        self.slots
            .iter()
            .find(|r| r.start <= slot && slot <= r.end)
            .map(|r| {
                r.owners
                    .iter()
                    .filter_map(|id| self.nodes.iter().find(|n| &n.id == id))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn node(&self, id: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Checks everything a node or client relies on: known, unique nodes
    /// with usable URLs, and every slot owned exactly once by
    /// `min(replication, nodes)` distinct nodes.
    pub fn validate(&self) -> Result<(), TopologyError> {
        if self.epoch > MAX_EPOCH {
            return Err(TopologyError::EpochTooLarge(self.epoch));
        }
        if self.nodes.is_empty() {
            return Err(TopologyError::NoNodes);
        }
        if self.replication == 0 {
            return Err(TopologyError::NoReplication);
        }
        let mut ids = HashSet::new();
        for n in &self.nodes {
            if n.id.is_empty() || n.url.is_empty() {
                return Err(TopologyError::EmptyNode(n.id.clone()));
            }
            if !ids.insert(n.id.as_str()) {
                return Err(TopologyError::DuplicateNode(n.id.clone()));
            }
            if dial_url(&n.url).is_none() {
                return Err(TopologyError::BadUrl {
                    id: n.id.clone(),
                    url: n.url.clone(),
                });
            }
        }
        let last = SLOT_COUNT - 1;
        let mut next: u32 = 0;
        let want = self.replication.min(self.nodes.len());
        for r in &self.slots {
            if u32::from(r.start) != next || r.end < r.start || r.end > last {
                return Err(TopologyError::Coverage(format!(
                    "range {}..={} does not start at {next}",
                    r.start, r.end
                )));
            }
            next = u32::from(r.end) + 1;
            let bad = |reason: String| TopologyError::BadOwners {
                start: r.start,
                end: r.end,
                reason,
            };
            if r.owners.len() != want {
                return Err(bad(format!(
                    "{} owners, but replication {} over {} nodes needs {want}",
                    r.owners.len(),
                    self.replication,
                    self.nodes.len()
                )));
            }
            let mut seen = HashSet::new();
            for o in &r.owners {
                if !ids.contains(o.as_str()) {
                    return Err(bad(format!("owner {o:?} is not a node")));
                }
                if !seen.insert(o) {
                    return Err(bad(format!("owner {o:?} is listed twice")));
                }
            }
        }
        if next != u32::from(SLOT_COUNT) {
            return Err(TopologyError::Coverage(format!(
                "slots {next}..={last} have no owner"
            )));
        }
        Ok(())
    }

    /// A fresh cluster: slots split evenly into contiguous ranges, one per
    /// node, with replicas on the following nodes.
    pub fn initial(nodes: Vec<NodeInfo>, replication: usize) -> Result<Topology, TopologyError> {
        if nodes.is_empty() {
            return Err(TopologyError::NoNodes);
        }
        let n = nodes.len();
        let primaries: Vec<usize> = (0..usize::from(SLOT_COUNT))
            .map(|slot| slot * n / usize::from(SLOT_COUNT))
            .collect();
        let t = assemble(1, replication, nodes, &primaries);
        t.validate()?;
        Ok(t)
    }

    /// Adds a node that owns nothing yet; `rebalance` gives it slots. Two
    /// steps, so operators can add several nodes and move data once.
    pub fn with_node(&self, node: NodeInfo) -> Result<Topology, TopologyError> {
        self.validate()?;
        if self.node(&node.id).is_some() {
            return Err(TopologyError::NodeExists(node.id));
        }
        let mut nodes = self.nodes.clone();
        nodes.push(node);
        let primaries = self.primaries();
        // Replicas are re-derived over the larger ring only when the
        // replication factor was not yet met.
        let t = if self.nodes.len() < self.replication {
            assemble(self.epoch + 1, self.replication, nodes, &primaries)
        } else {
            Topology {
                epoch: self.epoch + 1,
                nodes,
                ..self.clone()
            }
        };
        t.validate()?;
        Ok(t)
    }

    /// Removes a node and hands its slots to the others, evenly.
    pub fn without_node(&self, id: &str) -> Result<Topology, TopologyError> {
        self.validate()?;
        let gone = self
            .nodes
            .iter()
            .position(|n| n.id == id)
            .ok_or_else(|| TopologyError::UnknownNode(id.to_string()))?;
        if self.nodes.len() == 1 {
            return Err(TopologyError::LastNode(id.to_string()));
        }
        let mut nodes = self.nodes.clone();
        nodes.remove(gone);
        let primaries: Vec<Option<usize>> = self
            .primaries()
            .into_iter()
            .map(|p| match p {
                p if p == gone => None,
                p if p > gone => Some(p - 1),
                p => Some(p),
            })
            .collect();
        let t = assemble(
            self.epoch + 1,
            self.replication,
            nodes.clone(),
            &even_out(primaries, nodes.len()),
        );
        t.validate()?;
        Ok(t)
    }

    /// Evens out the slots per node, moving as few as possible: nodes above
    /// the fair share give their highest slots to those below it.
    pub fn rebalance(&self) -> Result<Topology, TopologyError> {
        self.validate()?;
        let primaries = self.primaries().into_iter().map(Some).collect();
        let t = assemble(
            self.epoch + 1,
            self.replication,
            self.nodes.clone(),
            &even_out(primaries, self.nodes.len()),
        );
        t.validate()?;
        Ok(t)
    }

    /// The primary of every slot, as an index into `nodes`.
    fn primaries(&self) -> Vec<usize> {
        let mut out = vec![0; usize::from(SLOT_COUNT)];
        for r in &self.slots {
            let p = r
                .owners
                .first()
                .and_then(|id| self.nodes.iter().position(|n| &n.id == id))
                .unwrap_or(0);
            for slot in r.start..=r.end.min(SLOT_COUNT - 1) {
                out[usize::from(slot)] = p;
            }
        }
        out
    }
}

/// Assigns unowned slots (`None`) and moves slots off nodes above their
/// fair share, so each of `n` nodes ends with `SLOT_COUNT / n` slots (one
/// more for the first `SLOT_COUNT % n`).
fn even_out(primaries: Vec<Option<usize>>, n: usize) -> Vec<usize> {
    let total = usize::from(SLOT_COUNT);
    let target = |i: usize| total / n + usize::from(i < total % n);
    let mut counts = vec![0usize; n];
    for p in primaries.iter().flatten() {
        counts[*p] += 1;
    }
    let mut primaries = primaries;
    // Release the highest slots of nodes above target.
    for slot in (0..total).rev() {
        if let Some(p) = primaries[slot] {
            if counts[p] > target(p) {
                counts[p] -= 1;
                primaries[slot] = None;
            }
        }
    }
    // Hand free slots to nodes below target, in slot order, so each
    // receiver gets contiguous runs where it can.
    let mut receiver = 0;
    primaries
        .into_iter()
        .map(|p| match p {
            Some(p) => p,
            None => {
                while counts[receiver] >= target(receiver) {
                    receiver += 1;
                }
                counts[receiver] += 1;
                receiver
            }
        })
        .collect()
}

/// Builds the document from a primary per slot: replicas are the next
/// nodes around the ring, and equal neighbours merge into one range.
fn assemble(epoch: u64, replication: usize, nodes: Vec<NodeInfo>, primaries: &[usize]) -> Topology {
    let n = nodes.len();
    let owners_of = |p: usize| -> Vec<String> {
        (0..replication.min(n))
            .map(|k| nodes[(p + k) % n].id.clone())
            .collect()
    };
    let mut slots: Vec<SlotRange> = Vec::new();
    for (slot, &p) in primaries.iter().enumerate() {
        let owners = owners_of(p);
        match slots.last_mut() {
            Some(r) if r.owners == owners => r.end = slot as u16,
            _ => slots.push(SlotRange {
                start: slot as u16,
                end: slot as u16,
                owners,
            }),
        }
    }
    Topology {
        epoch,
        replication,
        nodes,
        slots,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_node_owns_every_slot() {
        let t = Topology::single("n1", "grpc://127.0.0.1:50051");
        for slot in [0, 1, 8191, SLOT_COUNT - 1] {
            assert_eq!(t.owners(slot)[0].id, "n1");
        }
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Topology>(&json).unwrap(), t);
        t.validate().unwrap();
    }

    fn nodes(n: usize) -> Vec<NodeInfo> {
        (1..=n)
            .map(|i| NodeInfo {
                id: format!("n{i}"),
                url: format!("grpc://127.0.0.1:{}", 50050 + i),
            })
            .collect()
    }

    fn slots_per_node(t: &Topology) -> Vec<usize> {
        t.nodes
            .iter()
            .map(|n| {
                (0..SLOT_COUNT)
                    .filter(|&s| t.owners(s)[0].id == n.id)
                    .count()
            })
            .collect()
    }

    fn moved(a: &Topology, b: &Topology) -> Vec<u16> {
        (0..SLOT_COUNT)
            .filter(|&s| a.owners(s)[0].id != b.owners(s)[0].id)
            .collect()
    }

    #[test]
    fn flight_locations_map_to_dial_urls() {
        assert_eq!(dial_url("grpc://h:1").as_deref(), Some("http://h:1"));
        assert_eq!(dial_url("grpc+tls://h:1").as_deref(), Some("https://h:1"));
        assert_eq!(dial_url("https://h:1").as_deref(), Some("https://h:1"));
        for bad in ["h:1", "ftp://h", "grpc://"] {
            assert_eq!(dial_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_document_without_replication_reads_as_one() {
        let t: Topology = serde_json::from_str(
            r#"{"epoch": 3, "nodes": [{"id": "a", "url": "grpc://h:1"}],
                "slots": [{"start": 0, "end": 16383, "owners": ["a"]}]}"#,
        )
        .unwrap();
        assert_eq!((t.epoch, t.replication), (3, 1));
        t.validate().unwrap();
    }

    #[test]
    fn initial_splits_evenly_with_distinct_replicas() {
        let t = Topology::initial(nodes(3), 2).unwrap();
        assert_eq!(t.epoch, 1);
        assert_eq!(slots_per_node(&t), vec![5462, 5461, 5461]);
        for s in [0, 5461, 5462, 16383] {
            let o = t.owners(s);
            assert_eq!(o.len(), 2);
            assert_ne!(o[0].id, o[1].id);
        }
        // More replicas than nodes: every node owns every slot.
        let t = Topology::initial(nodes(2), 3).unwrap();
        assert_eq!(t.owners(100).len(), 2);
        assert_eq!(Topology::initial(vec![], 1), Err(TopologyError::NoNodes));
    }

    #[test]
    fn adding_then_rebalancing_moves_only_the_new_nodes_share() {
        let t3 = Topology::initial(nodes(3), 2).unwrap();
        let with = t3.with_node(nodes(4).pop().unwrap()).unwrap();
        assert_eq!(with.epoch, 2);
        assert!(moved(&t3, &with).is_empty(), "adding a node moves nothing");
        let t4 = with.rebalance().unwrap();
        assert_eq!(t4.epoch, 3);
        assert_eq!(slots_per_node(&t4), vec![4096; 4]);
        let m = moved(&t3, &t4);
        assert_eq!(m.len(), 4096, "exactly the new node's fair share moves");
        assert!(m.iter().all(|&s| t4.owners(s)[0].id == "n4"));
        assert_eq!(
            t3.with_node(nodes(1).pop().unwrap()),
            Err(TopologyError::NodeExists("n1".into()))
        );
    }

    #[test]
    fn removing_moves_only_the_removed_nodes_slots() {
        let t4 = Topology::initial(nodes(4), 2).unwrap();
        let t3 = t4.without_node("n2").unwrap();
        assert_eq!(t3.nodes.len(), 3);
        let m = moved(&t4, &t3);
        assert_eq!(m.len(), 4096);
        assert!(m.iter().all(|&s| t4.owners(s)[0].id == "n2"));
        let counts = slots_per_node(&t3);
        assert!(
            counts.iter().all(|&c| (5461..=5462).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(
            t3.without_node("n9"),
            Err(TopologyError::UnknownNode("n9".into()))
        );
        let one = Topology::initial(nodes(1), 1).unwrap();
        assert_eq!(
            one.without_node("n1"),
            Err(TopologyError::LastNode("n1".into()))
        );
    }

    #[test]
    fn epochs_near_overflow_are_refused_not_wrapped() {
        let mut t = Topology::initial(nodes(2), 1).unwrap();
        t.epoch = u64::MAX;
        assert!(matches!(t.validate(), Err(TopologyError::EpochTooLarge(_))));
        assert!(t.rebalance().is_err());
        t.epoch = MAX_EPOCH;
        assert!(t.validate().is_ok());
        assert!(matches!(
            t.rebalance(),
            Err(TopologyError::EpochTooLarge(e)) if e == MAX_EPOCH + 1
        ));
    }

    #[test]
    fn validate_names_each_fault() {
        let good = Topology::initial(nodes(2), 1).unwrap();
        let mut t = good.clone();
        t.slots.pop();
        assert!(matches!(t.validate(), Err(TopologyError::Coverage(_))));
        let mut t = good.clone();
        t.slots[1].start -= 1;
        assert!(matches!(t.validate(), Err(TopologyError::Coverage(_))));
        let mut t = good.clone();
        t.slots[0].owners = vec!["zz".into()];
        assert!(matches!(t.validate(), Err(TopologyError::BadOwners { .. })));
        let mut t = good.clone();
        t.nodes[1].id = "n1".into();
        assert_eq!(t.validate(), Err(TopologyError::DuplicateNode("n1".into())));
        let mut t = good.clone();
        t.nodes[0].url = "ftp://x".into();
        assert!(matches!(t.validate(), Err(TopologyError::BadUrl { .. })));
        let mut t = good.clone();
        t.replication = 2;
        assert!(matches!(t.validate(), Err(TopologyError::BadOwners { .. })));
        let mut t = good;
        t.nodes.clear();
        assert_eq!(t.validate(), Err(TopologyError::NoNodes));
    }
}
