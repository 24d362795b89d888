//! The `[cluster]` section: this node's id, where the topology document
//! lives and how often it is re-read, and the hand-off grace.

use std::time::Duration;

use serde::Deserialize;

use super::error::{invalid, ConfigError};
use super::sources::SourceConfig;
use super::values::Span;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub node_id: Option<String>,
    /// Where the topology document lives: `s3://bucket/key` or a local
    /// path. Absent: the node runs alone and owns every slot.
    pub topology: Option<String>,
    /// The source whose endpoint, region and keys reach an `s3://`
    /// topology; default: a source in the same bucket, else the AWS
    /// environment.
    pub topology_source: Option<String>,
    /// How often the topology is re-read.
    pub reload: Span,
    /// How long a node keeps serving slots it gave up, while their new
    /// owner warms from its cache.
    pub handoff_grace: Span,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: None,
            topology: None,
            topology_source: None,
            reload: Span(Duration::from_secs(2)),
            handoff_grace: Span(Duration::from_secs(60)),
        }
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
