//! The `[cluster]` section: this node's id, where the topology document
//! lives and how often it is re-read, and the hand-off grace.

use std::time::Duration;

use super::error::{invalid, ConfigError};
use super::section::section;
use super::sources::SourceConfig;
use super::values::Span;

section! {
    /// This node's place in a cluster.
    pub struct ClusterConfig / ClusterFlags {
        /// This node's id in the cluster topology.
        node_id: Option<String> = None,
            [long = "node-id", env = "QUIVER_NODE_ID"];
        /// The topology document: s3://bucket/key or a local path.
        ///
        /// Absent: the node runs alone and owns every slot.
        topology: Option<String> = None,
            [long = "topology", env = "QUIVER_TOPOLOGY"];
        /// The source whose endpoint, region and keys reach an `s3://`
        /// topology; default: a source in the same bucket, else the AWS
        /// environment.
        topology_source: Option<String> = None, [skip];
        /// How often the topology is re-read (e.g. 2s).
        reload: Span = Span(Duration::from_secs(2)),
            [long = "topology-reload", env = "QUIVER_TOPOLOGY_RELOAD"];
        /// How long a node keeps serving slots it gave up, while their new
        /// owner warms from its cache.
        handoff_grace: Span = Span(Duration::from_secs(60)), [skip];
    }
}

impl ClusterConfig {
    /// `sources` are the configured ones `topology_source` must name.
    pub(super) fn validate(&self, sources: &[SourceConfig]) -> Result<(), ConfigError> {
        if self.reload.0 < Duration::from_millis(100) {
            return Err(invalid("cluster.reload", "must be at least 100ms"));
        }
        if let Some(t) = &self.topology {
            if t.is_empty() {
                return Err(invalid("cluster.topology", "must not be empty"));
            }
            if let Some(name) = &self.topology_source {
                if !sources.iter().any(|s| &s.name == name) {
                    return Err(invalid(
                        "cluster.topology_source",
                        format!("`{name}` is not a configured source"),
                    ));
                }
            }
        }
        Ok(())
    }
}
