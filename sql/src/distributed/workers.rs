//! Which nodes can run stage tasks now: the cluster's nodes, less those
//! that do not accept a connection or whose worker calls just failed.
//!
//! DataFusion-distributed asks for the workers synchronously, while it
//! plans and again when it routes tasks, so the list is kept here and
//! refreshed before every distributed statement, from a TCP connect to
//! every node in parallel (a killed node refuses at once; one that hangs is
//! given [`PROBE_TIMEOUT`]). A statement after a node died is thus planned
//! without it, and its scans are read from the slots' other owners; one
//! whose worker dies while it runs fails whole.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use datafusion::common::DataFusionError;
use datafusion_distributed::WorkerResolver;
use url::Url;

/// How long a node has to accept a connection to count as up.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Debug, Default)]
struct State {
    alive: Vec<Url>,
}

/// The nodes that may run stage tasks, shared by every statement.
#[derive(Debug, Default)]
pub struct Workers {
    state: RwLock<State>,
}

/// `url` as the worker resolver names it; the same text a node's
/// topology and endpoints carry.
pub(crate) fn worker_url(url: &str) -> Option<Url> {
    Url::parse(url).ok().filter(|u| u.host_str().is_some())
}

impl Workers {
    /// The reachable nodes among `nodes` (their Flight URLs), probed now.
    pub async fn refresh(&self, nodes: &[String]) -> Vec<Url> {
        let probes = nodes
            .iter()
            .filter_map(|n| worker_url(n))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|url| async move { reachable(&url).await.then_some(url) });
        let alive: Vec<Url> = futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect();
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        *state = State {
            alive: alive.clone(),
        };
        alive
    }

    /// The nodes found reachable last, sorted.
    pub fn alive(&self) -> Vec<Url> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .alive
            .clone()
    }

    /// A call to `url` failed in transport: the statement's tasks still to
    /// be routed go elsewhere.
    pub fn failed(&self, url: &Url) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.alive.retain(|u| u != url);
    }
}

async fn reachable(url: &Url) -> bool {
    let (Some(host), Some(port)) = (url.host_str(), url.port()) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

/// The resolver a coordinating session asks for workers.
#[derive(Debug, Clone)]
pub(crate) struct Resolver(pub Arc<Workers>);

impl WorkerResolver for Resolver {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.0.alive())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_nodes_that_accept_are_workers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = format!("grpc://{}", listener.local_addr().unwrap());
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("grpc://{}", l.local_addr().unwrap())
        };
        let workers = Workers::default();
        let alive = workers
            .refresh(&[closed, up.clone(), "not a url".into(), up.clone()])
            .await;
        assert_eq!(alive, vec![Url::parse(&up).unwrap()]);
        workers.failed(&alive[0]);
        assert!(workers.alive().is_empty());
        // The next statement's probe finds it again.
        assert_eq!(workers.refresh(std::slice::from_ref(&up)).await, alive);
    }
}
