//! Misses during a hand-off: a chunk this node lacks in a slot it just
//! gained is asked of the slot's previous owners before the origin, since
//! they may have cached it after the hand-off listed their objects, or the
//! hand-off may not have reached it yet.
//!
//! Asking must never make a miss much slower than the origin would: all the
//! previous owners together get [`FILL_TIMEOUT`], a peer that failed is
//! left alone for [`FAILED_PEER_PAUSE`] so a dead donor costs one timeout,
//! not one per read, and at most [`MAX_PEER_FILLS`] misses ask at once (the
//! rest go straight to the origin), so a cold scan cannot flood a donor
//! that is also streaming a hand-off.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use arrow_flight::Action;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use quiver_protocol::{slot_of, unframe_part, HandoffObject, HandoffRead};
use tracing::Instrument;

use super::peers::Peers;
use super::Cluster;
use crate::cache::{PeerChunks, PeerPart};
use crate::error::{QuiverError, Result};
use crate::source::ObjectId;

/// Longest the previous owners together may take to answer a miss.
pub const FILL_TIMEOUT: Duration = Duration::from_secs(2);

/// Misses asking previous owners at once.
pub const MAX_PEER_FILLS: usize = 8;

/// How long a previous owner that failed a fill is not asked again.
pub const FAILED_PEER_PAUSE: Duration = Duration::from_secs(10);

/// Fills misses from the previous owners of the object's slot. Cheap to
/// clone.
#[derive(Clone)]
pub struct PeerFill {
    cluster: Arc<Cluster>,
    peers: Peers,
    failed: Arc<Mutex<HashMap<String, Instant>>>,
    asking: Arc<Semaphore>,
}

impl PeerFill {
    pub fn new(cluster: Arc<Cluster>, peers: Peers) -> PeerFill {
        PeerFill {
            cluster,
            peers,
            failed: Arc::default(),
            asking: Arc::new(Semaphore::new(MAX_PEER_FILLS)),
        }
    }

    fn paused(&self, url: &str) -> bool {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.retain(|_, at| at.elapsed() < FAILED_PEER_PAUSE);
        failed.contains_key(url)
    }

    fn failed(&self, url: &str) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.insert(url.to_string(), Instant::now());
    }

    /// What the peer at `url` holds of chunks `run`, as verified parts,
    /// or `None` when it holds nothing of them.
    async fn ask(
        &self,
        url: &str,
        id: &ObjectId,
        chunk: u64,
        run: &Range<u64>,
    ) -> Result<Option<Vec<PeerPart>>> {
        let indices: Vec<u64> = run.clone().collect();
        let body = serde_json::to_vec(&HandoffRead {
            object: HandoffObject {
                source: id.source.to_string(),
                path: id.path.to_string(),
                etag: id.etag.clone(),
                size: id.size,
                last_modified_ms: id.last_modified.timestamp_millis(),
                chunk_size: chunk,
                chunks: indices.clone(),
            },
            chunks: indices,
            checksum: true,
            parts: true,
        })
        .map_err(|e| QuiverError::Internal(e.to_string()))?;
        let mut client = self.peers.client(url).await?;
        let frames: Vec<Bytes> = client
            .do_action(Action::new("handoff-read", body))
            .await
            .map_err(|e| QuiverError::Unavailable(format!("peer {url}: {e}")))?
            .try_collect()
            .await
            .map_err(|e| QuiverError::Unavailable(format!("peer {url}: {e}")))?;
        let mut got = Vec::with_capacity(frames.len());
        for framed in frames {
            let (index, offset, bytes) = unframe_part(framed).map_err(|reason| {
                QuiverError::DataLoss(format!("peer {url} sent a bad chunk: {reason}"))
            })?;
            if !run.contains(&index) {
                return Err(QuiverError::DataLoss(format!(
                    "peer {url} sent chunk {index}, which was not asked for"
                )));
            }
            got.push((index, offset, bytes));
        }
        Ok((!got.is_empty()).then_some(got))
    }
}

impl PeerChunks for PeerFill {
    fn fetch(
        &self,
        id: ObjectId,
        chunk: u64,
        run: Range<u64>,
    ) -> BoxFuture<'static, Option<Vec<PeerPart>>> {
        let owners = self
            .cluster
            .previous_owners(slot_of(&id.source, id.path.as_ref()));
        let this = self.clone();
        let span = tracing::info_span!(
            "peer_fill",
            source = %id.source,
            path = %id.path,
            chunks = run.end - run.start,
            otel.kind = "client"
        );
        async move {
            if owners.is_empty() {
                return None;
            }
            let _asking = this.asking.clone().try_acquire_owned().ok()?;
            let deadline = tokio::time::Instant::now() + FILL_TIMEOUT;
            for owner in owners {
                if this.paused(&owner.url) {
                    continue;
                }
                match tokio::time::timeout_at(deadline, this.ask(&owner.url, &id, chunk, &run))
                    .await
                {
                    Ok(Ok(Some(parts))) => return Some(parts),
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(peer = %owner.url, error = %e, "a previous owner could not fill a miss");
                        this.failed(&owner.url);
                    }
                    Err(_) => {
                        // The miss's budget is spent: the origin answers it.
                        tracing::warn!(peer = %owner.url, "the previous owners did not fill a miss within {FILL_TIMEOUT:?}");
                        this.failed(&owner.url);
                        return None;
                    }
                }
            }
            None
        }
        .instrument(span)
        .boxed()
    }
}
