use serde::{Deserialize, Serialize};

use crate::slot::SLOT_COUNT;

/// One node of the cluster, as clients and peers reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInfo {
    pub id: String,
    pub url: String,
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
    pub nodes: Vec<NodeInfo>,
    pub slots: Vec<SlotRange>,
}

impl Topology {
    /// The topology of a node that runs alone: it owns every slot.
    pub fn single(id: &str, url: &str) -> Self {
        Topology {
            epoch: 1,
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
    }
}
