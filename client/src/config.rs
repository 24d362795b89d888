//! How a [`QuiverClient`](crate::QuiverClient) is set up: its seeds, TLS and
//! credentials, timeouts, fallbacks, and the weights of the owner score, so
//! a caller states every choice in one value before connecting.

use std::collections::HashMap;
use std::time::Duration;

use crate::connect::{Connector, Credentials};
use crate::direct::DirectSource;

/// Weights of the owner score `latency * ms + cost * node cost +
/// uptime * (1 - uptime)`; the lowest score is tried first.
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    pub latency: f64,
    pub cost: f64,
    pub uptime: f64,
}

impl Default for Weights {
    /// Latency in milliseconds counts as is; an owner failing half its
    /// requests ranks as if it were 500 ms slower.
    fn default() -> Self {
        Weights {
            latency: 1.0,
            cost: 0.0,
            uptime: 1000.0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Nodes to learn the topology from and to plan with; any one answering
    /// is enough.
    pub seeds: Vec<String>,
    /// TLS trust and credentials.
    pub connector: Connector,
    pub weights: Weights,
    /// Cost per node id (e.g. cross-zone transfer); 0 when absent.
    pub node_costs: HashMap<String, f64>,
    /// Direct-read fallback per source name.
    pub direct: HashMap<String, DirectSource>,
    /// Longest wait for a node's next message: the first batch of a read,
    /// then each following one. A long healthy scan is never cut; a stalled
    /// node is left for the next owner (before the first batch) or reported.
    pub timeout: Duration,
    /// Endpoints read at once by [`QuiverClient::read`] and
    /// [`QuiverClient::collect`].
    ///
    /// [`QuiverClient::read`]: crate::QuiverClient::read
    /// [`QuiverClient::collect`]: crate::QuiverClient::collect
    pub parallelism: usize,
    /// Follow pre-signed URLs: plans ask for them (`accept: ["flight",
    /// "presigned"]`), so a cold object is read straight from the store
    /// while its owner warms it; and when no owner can serve an object, a
    /// node is asked for a URL before giving up. Needs a network path to the
    /// store.
    pub accept_presigned: bool,
}

impl ClientConfig {
    pub fn new(seeds: Vec<String>) -> Self {
        ClientConfig {
            seeds,
            connector: Connector::default(),
            weights: Weights::default(),
            node_costs: HashMap::new(),
            direct: HashMap::new(),
            timeout: Duration::from_secs(60),
            parallelism: 8,
            accept_presigned: false,
        }
    }

    /// Sends `token` as a bearer token on every call.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.connector.credentials = Credentials::Bearer(token.into());
        self
    }
}
