//! How a [`QuiverClient`](crate::QuiverClient) is set up: its seeds, TLS and
//! credentials, timeouts, fallbacks, and the weights of the owner score, so
//! a caller states every choice in one value before connecting.

use std::collections::HashMap;
use std::time::Duration;

use quiver_protocol::IpcCompression;

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
    /// The IPC compression asked of nodes for the batches they stream.
    pub compression: Compression,
    /// The URL of the node this client runs inside, if any: of a slot's
    /// owners it is asked first, so the node's own scans (Flight SQL, and
    /// the distributed stages it runs as a worker) read its cache with no
    /// network hop, whatever the others' latency.
    pub local: Option<String>,
}

/// Which IPC body compression the client asks a node for
/// (`docs/protocol.md`, "Compression").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// LZ4_FRAME from a node that is not on this machine's loopback; none
    /// from one that is, where compressing costs more CPU than the bytes it
    /// saves.
    #[default]
    Auto,
    Off,
    Always(IpcCompression),
}

impl Compression {
    /// What to ask the node at `url` for.
    pub fn for_node(self, url: &str) -> Option<IpcCompression> {
        match self {
            Compression::Off => None,
            Compression::Always(c) => Some(c),
            Compression::Auto => (!is_loopback(url)).then_some(IpcCompression::Lz4Frame),
        }
    }
}

/// Whether `url` names this machine's loopback; a URL that cannot be read
/// counts as loopback, so nothing is compressed for it.
fn is_loopback(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return true;
    };
    match parsed.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        // A `grpc://` URL is not one of the schemes whose host `url` reads
        // as an address, so an IPv4 address arrives as a domain.
        Some(url::Host::Domain(d)) => match d.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => d.eq_ignore_ascii_case("localhost"),
        },
        None => true,
    }
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
            compression: Compression::default(),
            local: None,
        }
    }

    /// Sends `token` as a bearer token on every call.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.connector.credentials = Credentials::Bearer(token.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_compresses_only_for_nodes_off_loopback() {
        let auto = Compression::Auto;
        for local in [
            "grpc://127.0.0.1:32010",
            "grpc://[::1]:1",
            "grpc+tls://localhost:9",
            "not a url",
        ] {
            assert_eq!(auto.for_node(local), None, "{local}");
        }
        for remote in ["grpc://10.0.0.7:32010", "grpc+tls://quiver-0.quiver:32010"] {
            assert_eq!(
                auto.for_node(remote),
                Some(IpcCompression::Lz4Frame),
                "{remote}"
            );
        }
        assert_eq!(Compression::Off.for_node("grpc://10.0.0.7:1"), None);
        let zstd = Compression::Always(IpcCompression::Zstd);
        assert_eq!(
            zstd.for_node("grpc://127.0.0.1:1"),
            Some(IpcCompression::Zstd)
        );
    }
}
