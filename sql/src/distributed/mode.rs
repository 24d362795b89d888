//! `sql.distributed`: whether the node plans Flight SQL statements in
//! distributed stages.

use std::str::FromStr;

use serde::Deserialize;

/// When statements are planned in stages that run on the cluster's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistributedMode {
    /// In a cluster of more than one reachable node, a scan is split among
    /// the nodes that hold its objects' slots (each object read by its
    /// first reachable owner), and the stages above it follow; a statement
    /// whose scans all live on one node runs as before.
    #[default]
    Auto,
    /// As `auto`, and a scan's objects are also spread over their slots'
    /// replicas, so a table held by one primary is still read by several
    /// nodes.
    On,
    /// Every statement this node receives runs on it; its scans still read
    /// from the owning nodes, and the node still runs other nodes' tasks.
    Off,
}

impl DistributedMode {
    pub const ALL: [DistributedMode; 3] = [
        DistributedMode::Auto,
        DistributedMode::On,
        DistributedMode::Off,
    ];

    /// The name the configuration spells it with.
    pub fn name(self) -> &'static str {
        match self {
            DistributedMode::Auto => "auto",
            DistributedMode::On => "on",
            DistributedMode::Off => "off",
        }
    }
}

impl FromStr for DistributedMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DistributedMode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("`{s}` is not one of auto, on, off"))
    }
}

impl std::fmt::Display for DistributedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_refused() {
        for m in DistributedMode::ALL {
            assert_eq!(m.name().parse::<DistributedMode>(), Ok(m));
        }
        assert_eq!(" ON ".parse::<DistributedMode>(), Ok(DistributedMode::On));
        let err = "always".parse::<DistributedMode>().unwrap_err();
        assert!(err.contains("auto, on, off"), "{err}");
    }
}
