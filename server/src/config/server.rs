//! The `[server]` section: where the node listens and the URL it gives
//! out. Whether it may listen beyond loopback depends on `[auth]` too, so
//! that check is the whole configuration's (`Config::validate`).

use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The URL clients and peers use for this node; derived from `listen`
    /// when absent.
    pub advertise: Option<String>,
    /// Serve Flight beyond loopback without tokens. Off by default, like
    /// Redis's protected mode: a node without tokens on a public address
    /// would let anyone read the lake with the node's credentials.
    pub insecure: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            advertise: None,
            insecure: false,
        }
    }
}
