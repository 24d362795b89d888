//! The slot map the client routes with: learnt from a node's
//! `cluster-shards`, refreshed when a node answers `MOVED` from a newer
//! epoch, and never rolled back by a node that lags.

use std::sync::Arc;

use arrow_flight::Action;
use bytes::Bytes;
use futures::TryStreamExt;
use quiver_protocol::{Moved, Topology};

use crate::error::ClientError;
use crate::routing::QuiverClient;

impl QuiverClient {
    /// The slot map the client routes with.
    pub fn topology(&self) -> Arc<Topology> {
        self.inner
            .map
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Asks `url` for its topology and adopts it unless it is older than the
    /// one the client has (a node that lags never rolls the map back).
    pub(crate) async fn refresh_from(&self, url: &str) -> Result<(), ClientError> {
        let mut client = self.flight(url)?;
        let answer: Vec<Bytes> = self
            .timed(url, async {
                let s = client
                    .do_action(Action::new("cluster-shards", Bytes::new()))
                    .await?;
                Ok(s.try_collect().await?)
            })
            .await?;
        let body = answer
            .first()
            .ok_or_else(|| ClientError::Decode("cluster-shards returned nothing".into()))?;
        let t: Topology =
            serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        t.validate()?;
        let mut map = self.inner.map.write().unwrap_or_else(|p| p.into_inner());
        if t.epoch >= map.epoch {
            *map = Arc::new(t);
        }
        Ok(())
    }

    /// Refreshes the slot map from any node that answers.
    pub async fn refresh(&self) -> Result<(), ClientError> {
        let mut last = None;
        for url in self.planners() {
            match self.refresh_from(&url).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Refused("no node answered".into())))
    }

    /// Nodes to send planning calls to: the seeds, then every known node.
    pub(crate) fn planners(&self) -> Vec<String> {
        let mut urls = self.inner.cfg.seeds.clone();
        for n in &self.topology().nodes {
            if !urls.contains(&n.url) {
                urls.push(n.url.clone());
            }
        }
        urls
    }

    /// Catches the map up with a `MOVED` answer. A redirect from a newer
    /// epoch than the map's: the node it names knows that epoch too, else
    /// any node that has caught up. One from an older epoch comes from a
    /// node that lags, and never rolls the map back.
    pub(crate) async fn follow_moved(&self, moved: &Moved) {
        if moved.epoch > self.topology().epoch {
            let fresh = self.refresh_from(&moved.url).await.is_ok();
            if !fresh || self.topology().epoch < moved.epoch {
                let _ = self.refresh().await;
            }
        }
    }

    /// The id of the node at `url`, when the map knows it.
    pub(crate) fn node_id(&self, url: &str) -> Option<String> {
        self.topology()
            .nodes
            .iter()
            .find(|n| n.url == url)
            .map(|n| n.id.clone())
    }
}
