//! The `[server]` section: where the node listens and the URL it gives
//! out. Whether it may listen beyond loopback depends on `[auth]` too, so
//! that check is the whole configuration's (`Config::validate`).

use std::net::SocketAddr;

use super::section::section;

section! {
    /// Where the node listens and what it tells clients and peers.
    pub struct ServerConfig / ServerFlags {
        /// Flight (and Flight SQL) listen address.
        listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 50051)),
            [long = "listen", env = "QUIVER_LISTEN"];
        /// Admin HTTP listen address (/metrics, /health, /ready, the status page).
        admin_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9090)),
            [long = "admin-listen", env = "QUIVER_ADMIN_LISTEN"];
        /// URL that clients and peers use to reach this node.
        ///
        /// Derived from `listen` when absent.
        advertise: Option<String> = None,
            [long = "advertise", env = "QUIVER_ADVERTISE"];
        /// Serve Flight beyond loopback without tokens. Off by default, like
        /// Redis's protected mode: a node without tokens on a public address
        /// would let anyone read the lake with the node's credentials.
        insecure: bool = false, [skip];
    }
}
