//! Calls from this node to the other nodes of its cluster (hand-off,
//! warm-ups): TLS with the configured trust, the peer credential, and
//! bounds on how long a dead or stalled peer can hold a caller.
//!
//! Channels come from the client library's [`Connector`], so nodes and
//! clients dial the same URL schemes with the same connect timeout and
//! keep-alives. What is particular to peers: the larger message limit a
//! hand-off chunk needs, and the refusal to call a plain `grpc://` peer from
//! a node that serves TLS, so a credential never crosses the network in
//! clear text because one URL in the topology lacks `+tls`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::FlightClient;
use quiver_client::{Connector, Tls};
use tonic::transport::Channel;

use crate::auth::Auth;
use crate::config::AuthConfig;
use crate::error::{QuiverError, Result};

/// Largest message a node accepts from a peer: the largest chunk
/// (`config::MAX_CHUNK`) with its frame header, and room to spare.
pub const PEER_MAX_MESSAGE: usize = crate::config::MAX_CHUNK as usize + (64 << 10);

/// Longest a peer may take to answer a call, or to send the next message
/// of a stream. A donor that stops mid-hand-off is given up after this,
/// and the importer moves on to the slot's other previous owners.
pub const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The value of `auth.tls_ca` that selects the system's root certificates.
pub const SYSTEM_ROOTS: &str = "system";

/// How this node reaches its peers. Cheap to clone.
#[derive(Clone)]
pub struct Peers {
    connector: Connector,
    /// This node serves TLS, so it only calls peers over TLS.
    tls_only: bool,
    /// One channel per peer, shared by every call to it: HTTP/2 multiplexes
    /// them, and a read that misses asks a peer without a new TLS
    /// handshake each time.
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("tls_only", &self.tls_only)
            .finish_non_exhaustive()
    }
}

/// The CA file peers are verified with: `tls_ca`, the system roots when it
/// says so, else the node's own certificate file (a chain anchors its own
/// issuers; a self-signed certificate anchors itself).
pub fn trust(cfg: &AuthConfig) -> Option<PathBuf> {
    match &cfg.tls_ca {
        Some(p) if p.as_os_str() == SYSTEM_ROOTS => None,
        Some(p) => Some(p.clone()),
        None => cfg.tls_cert.clone(),
    }
}

impl Peers {
    pub fn new(cfg: &AuthConfig, auth: &Auth) -> Peers {
        Peers {
            connector: Connector {
                tls: Tls {
                    ca_file: trust(cfg),
                },
                credentials: auth
                    .peer_credential()
                    .map(quiver_client::Credentials::Bearer)
                    .unwrap_or_default(),
            },
            tls_only: cfg.tls_cert.is_some(),
            channels: Arc::default(),
        }
    }

    /// A Flight client of the peer at `url` carrying the peer credential and
    /// the current trace context. The connection opens on first use, within the client's connect
    /// timeout; callers bound each call with [`PEER_CALL_TIMEOUT`].
    pub async fn client(&self, url: &str) -> Result<FlightClient> {
        let secure = url.starts_with("grpc+tls://") || url.starts_with("https://");
        if self.tls_only && !secure {
            return Err(QuiverError::Unavailable(format!(
                "peer {url} is not a TLS URL, and this node serves TLS, so it never calls a peer in clear text; \
                 advertise grpc+tls:// on every node"
            )));
        }
        let channel = {
            let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            match channels.get(url) {
                Some(c) => c.clone(),
                None => {
                    let c = self
                        .connector
                        .channel(url)
                        .map_err(|e| QuiverError::Unavailable(format!("peer {url}: {e}")))?;
                    channels.insert(url.to_string(), c.clone());
                    c
                }
            }
        };
        // A `handoff-read` frame is one whole chunk, up to the 8 MiB the
        // chunk size allows, plus its header: above gRPC's default 4 MiB.
        let inner = FlightServiceClient::new(channel).max_decoding_message_size(PEER_MAX_MESSAGE);
        let mut client = FlightClient::new_from_inner(inner);
        // A client is made per call, so the peer's request span continues
        // the span this call is made from (a peer fill, a warm-up).
        quiver_client::trace_context::inject(client.metadata_mut());
        let token = self
            .connector
            .token(url)
            .await
            .map_err(|e| QuiverError::Unavailable(format!("peer {url}: {e}")))?;
        if let Some(t) = token {
            client
                .add_header("authorization", &format!("Bearer {t}"))
                .map_err(|e| QuiverError::Internal(format!("the peer token: {e}")))?;
        }
        Ok(client)
    }
}

/// Runs `call` against a peer within [`PEER_CALL_TIMEOUT`].
pub async fn bounded<T>(
    url: &str,
    what: &str,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(PEER_CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(QuiverError::Unavailable(format!(
                "peer {url} did not answer {what} within {PEER_CALL_TIMEOUT:?}"
            )))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tls_node_never_calls_a_plain_peer() {
        let cfg = AuthConfig {
            tls_cert: Some("node.pem".into()),
            tls_key: Some("node.key".into()),
            ..Default::default()
        };
        let peers = Peers::new(&cfg, &Auth::default());
        let e = peers.client("grpc://127.0.0.1:1").await.unwrap_err();
        assert!(
            matches!(&e, QuiverError::Unavailable(m) if m.contains("clear text")),
            "{e}"
        );
    }

    #[test]
    fn trust_defaults_to_the_node_certificate_and_can_be_the_system_roots() {
        let mut cfg = AuthConfig {
            tls_cert: Some("node.pem".into()),
            ..Default::default()
        };
        assert_eq!(trust(&cfg), Some("node.pem".into()));
        cfg.tls_ca = Some("ca.pem".into());
        assert_eq!(trust(&cfg), Some("ca.pem".into()));
        cfg.tls_ca = Some(SYSTEM_ROOTS.into());
        assert_eq!(trust(&cfg), None);
    }
}
