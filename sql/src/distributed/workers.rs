//! Which nodes run a statement's stage tasks: the cluster's nodes that
//! accept a connection when the statement is planned.
//!
//! DataFusion-distributed asks for the workers synchronously, while it
//! plans and again when it routes tasks, so before every distributed
//! statement every node is probed with a TCP connect, in parallel (a killed
//! node refuses at once; one that hangs is given [`PROBE_TIMEOUT`]), and
//! the statement keeps that list from planning to routing: every question
//! about it gets the same answer, so its scan is split and placed over the
//! same nodes. A statement after a node died is thus planned without it,
//! and its scans are read from the slots' other owners; one whose worker
//! dies while it runs fails whole.

use std::collections::BTreeSet;
use std::time::Duration;

use datafusion::common::DataFusionError;
use datafusion_distributed::WorkerResolver;
use url::Url;

/// How long a node has to accept a connection to count as up.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// `url` as the worker resolver names it; the same text a node's
/// topology and endpoints carry.
pub(crate) fn worker_url(url: &str) -> Option<Url> {
    Url::parse(url).ok().filter(|u| u.host_str().is_some())
}

/// The reachable nodes among `nodes` (their Flight URLs), probed now,
/// sorted and without repeats.
pub(crate) async fn probe(nodes: &[String]) -> Vec<Url> {
    let probes = nodes
        .iter()
        .filter_map(|n| worker_url(n))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|url| async move { reachable(&url).await.then_some(url) });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect()
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

/// The workers of one statement: the nodes its probe found.
#[derive(Debug, Clone)]
pub(crate) struct Resolver(pub Vec<Url>);

impl WorkerResolver for Resolver {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.0.clone())
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
        let alive = probe(&[closed, up.clone(), "not a url".into(), up.clone()]).await;
        assert_eq!(alive, vec![Url::parse(&up).unwrap()]);
        drop(listener);
        assert!(probe(&[up]).await.is_empty());
    }
}
