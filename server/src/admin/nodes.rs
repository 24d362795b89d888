//! The health of every node in the topology, for the status page: this
//! node's from its own `health` action, the others' by calling theirs over
//! Flight with the peer credential. Answers are reused for a few seconds,
//! so several open pages refreshing at once cost each peer one call per
//! interval, and a dead peer holds a page for at most the probe timeout.

use std::time::{Duration, Instant};

use arrow_flight::Action;
use bytes::Bytes;
use futures::TryStreamExt;
use quiver_protocol::Topology;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::actions;
use crate::activity::MAX_MESSAGE_CHARS;
use crate::node_core::NodeCore;

/// How long probe answers are reused.
const FRESH_FOR: Duration = Duration::from_secs(3);

/// Longest a peer may take to answer its probe, connection included.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest state string taken from a peer's answer.
const MAX_STATE_CHARS: usize = 32;

/// What the page shows of one node's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeHealth {
    /// `ok` or `degraded` as the node reports it, `unreachable` when it did
    /// not answer, `unknown` before it was asked.
    pub state: String,
    /// The topology epoch the node follows: nodes that disagree have not
    /// all adopted the last change yet.
    pub epoch: Option<u64>,
    /// Why the node could not be asked.
    pub error: Option<String>,
}

/// The part of a `health` answer the page uses.
#[derive(Deserialize)]
struct Reported {
    status: String,
    cluster: Option<ReportedCluster>,
}

#[derive(Deserialize)]
struct ReportedCluster {
    epoch: u64,
}

impl NodeHealth {
    pub fn unknown() -> NodeHealth {
        NodeHealth {
            state: "unknown".into(),
            epoch: None,
            error: None,
        }
    }

    fn unreachable(error: String) -> NodeHealth {
        NodeHealth {
            state: "unreachable".into(),
            epoch: None,
            error: Some(crate::activity::clip(&error, MAX_MESSAGE_CHARS)),
        }
    }

    /// Reads a `health` action's answer; a peer's answer is not trusted to
    /// be well formed or short.
    fn from_answer(body: &[u8]) -> NodeHealth {
        match serde_json::from_slice::<Reported>(body) {
            Ok(r) => NodeHealth {
                state: crate::activity::clip(&r.status, MAX_STATE_CHARS),
                epoch: r.cluster.map(|c| c.epoch),
                error: None,
            },
            Err(e) => NodeHealth::unreachable(format!("its health answer is not readable: {e}")),
        }
    }

    /// This node's health, from its own `health` action.
    pub fn of_node(core: &NodeCore) -> NodeHealth {
        NodeHealth::from_answer(&actions::health(core))
    }
}

/// Calls `url`'s `health` action within [`PROBE_TIMEOUT`].
async fn probe(core: &NodeCore, url: &str) -> NodeHealth {
    let call = async {
        let mut client = core.peers.client(url).await.map_err(|e| e.to_string())?;
        client
            .do_action(Action::new("health", Bytes::new()))
            .await
            .map_err(|e| e.to_string())?
            .try_collect::<Vec<Bytes>>()
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(Ok(bodies)) => match bodies.first() {
            Some(body) => NodeHealth::from_answer(body),
            None => NodeHealth::unreachable("it answered health with nothing".into()),
        },
        Ok(Err(e)) => NodeHealth::unreachable(e),
        Err(_) => {
            NodeHealth::unreachable(format!("it did not answer health within {PROBE_TIMEOUT:?}"))
        }
    }
}

/// The last probe of every node, by node id.
#[derive(Debug, Default)]
pub struct NodeProbes {
    last: Mutex<Option<Probed>>,
}

#[derive(Debug)]
struct Probed {
    at: Instant,
    /// The nodes asked, as (id, url), so a changed topology is asked anew.
    asked: Vec<(String, String)>,
    health: Vec<(String, NodeHealth)>,
}

impl NodeProbes {
    /// Every node's health in `topology`, by id; asks the peers again when
    /// the last answers are stale or the topology changed. Only one probe
    /// round runs at a time: concurrent callers wait for it and share it.
    pub async fn health(&self, core: &NodeCore, topology: &Topology) -> Vec<(String, NodeHealth)> {
        let asked: Vec<(String, String)> = topology
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.url.clone()))
            .collect();
        let mut last = self.last.lock().await;
        if let Some(p) = last.as_ref() {
            if p.at.elapsed() < FRESH_FOR && p.asked == asked {
                return p.health.clone();
            }
        }
        let calls = asked.iter().map(|(id, url)| async move {
            let health = if *id == core.node_id {
                NodeHealth::of_node(core)
            } else {
                probe(core, url).await
            };
            (id.clone(), health)
        });
        let health = futures::future::join_all(calls).await;
        *last = Some(Probed {
            at: Instant::now(),
            asked,
            health: health.clone(),
        });
        health
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_health_answer_and_refuses_garbage() {
        let h = NodeHealth::from_answer(br#"{"status":"ok","cluster":{"epoch":4,"nodes":2}}"#);
        assert_eq!((h.state.as_str(), h.epoch, h.error), ("ok", Some(4), None));
        let long = format!(r#"{{"status":"{}"}}"#, "x".repeat(1000));
        let h = NodeHealth::from_answer(long.as_bytes());
        assert_eq!(h.state.chars().count(), MAX_STATE_CHARS + 1);
        let h = NodeHealth::from_answer(b"<html>");
        assert_eq!(h.state, "unreachable");
        assert!(h.error.is_some());
    }
}
