//! Warm slot hand-off: when a topology change gives this node slots another
//! node owned, it copies that node's cached chunks of those slots instead of
//! reading them again from S3, while the previous owner keeps serving them
//! for the hand-off grace period.
//!
//! The donor side answers `handoff-list` (which cached objects fall in the
//! slots, and which of their chunks it holds) and `handoff-read` (those
//! chunks, from cache only). The importer runs in the background on every
//! adopted change and reports its progress through `health`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, FlightClient};
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use quiver_protocol::{dial_url, slot_of, HandoffList, HandoffObject, HandoffRead, Topology};
use serde::Serialize;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::error::{QuiverError, Result};
use crate::node_core::NodeCore;
use crate::source::ObjectId;

/// Largest message a node accepts from a peer: the largest chunk
/// (`config::MAX_CHUNK`) with its frame header, and room to spare.
const PEER_MAX_MESSAGE: usize = crate::config::MAX_CHUNK as usize + (64 << 10);

/// Chunks asked for in one `handoff-read`, so one stream stays bounded.
const READ_BATCH: usize = 16;

/// What `health` reports about the last hand-off.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HandoffStatus {
    /// `idle`, `running`, `done` or `failed`.
    pub state: &'static str,
    pub epoch: u64,
    pub objects: u64,
    pub objects_done: u64,
    /// Objects the donor offered that this node would not import: not in a
    /// configured source or in the slots handed off, or not the version the
    /// origin has now.
    pub objects_refused: u64,
    /// Bytes received from peers.
    pub bytes: u64,
    pub errors: Vec<String>,
}

/// Shared progress of the hand-off task.
#[derive(Debug, Default)]
pub struct Progress(Mutex<HandoffStatus>);

impl Progress {
    pub fn get(&self) -> HandoffStatus {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        HandoffStatus {
            state: if s.state.is_empty() { "idle" } else { s.state },
            ..s
        }
    }

    fn update(&self, f: impl FnOnce(&mut HandoffStatus)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

fn object_id(o: &HandoffObject) -> ObjectId {
    ObjectId {
        source: Arc::from(o.source.as_str()),
        path: Path::from(o.path.as_str()),
        etag: o.etag.clone(),
        size: o.size,
        last_modified: chrono::DateTime::from_timestamp_millis(o.last_modified_ms)
            .unwrap_or_default(),
    }
}

/// Donor: the cached objects whose slots fall in the requested ranges.
pub fn list(core: &NodeCore, body: &[u8]) -> Result<Bytes> {
    let req: HandoffList = serde_json::from_slice(body).map_err(|e| {
        QuiverError::invalid(format!(
            "handoff-list takes {{\"slots\": [[start, end], ...]}}: {e}"
        ))
    })?;
    let wanted = |slot: u16| req.slots.iter().any(|&(s, e)| s <= slot && slot <= e);
    let chunk_size = core.chunks.chunk_size();
    let mut out = Vec::new();
    for source in core.sources.all() {
        for id in source.known() {
            if !wanted(slot_of(&id.source, id.path.as_ref())) {
                continue;
            }
            let chunks = core.chunks.cached_indices(&id);
            if chunks.is_empty() {
                continue;
            }
            out.push(HandoffObject {
                source: id.source.to_string(),
                path: id.path.to_string(),
                etag: id.etag.clone(),
                size: id.size,
                last_modified_ms: id.last_modified.timestamp_millis(),
                chunk_size,
                chunks,
            });
        }
    }
    serde_json::to_vec(&out)
        .map(Bytes::from)
        .map_err(|e| QuiverError::Internal(format!("cannot encode the hand-off list: {e}")))
}

/// Donor: the requested chunks that are cached, each as an 8-byte index
/// followed by its bytes. Chunks that are gone are skipped; the importer
/// simply does without them.
pub fn read(core: Arc<NodeCore>, body: &[u8]) -> Result<BoxStream<'static, Result<Bytes>>> {
    let req: HandoffRead = serde_json::from_slice(body).map_err(|e| {
        QuiverError::invalid(format!(
            "handoff-read takes {{\"object\", \"chunks\"}}: {e}"
        ))
    })?;
    if req.object.chunk_size != core.chunks.chunk_size() {
        return Err(QuiverError::invalid(format!(
            "this node caches chunks of {} bytes, not {}",
            core.chunks.chunk_size(),
            req.object.chunk_size
        )));
    }
    if req.chunks.len() > 4 * READ_BATCH {
        return Err(QuiverError::ResourceExhausted(format!(
            "handoff-read takes at most {} chunks at a time",
            4 * READ_BATCH
        )));
    }
    let id = object_id(&req.object);
    Ok(futures::stream::iter(req.chunks)
        .filter_map(move |index| {
            let core = core.clone();
            let id = id.clone();
            async move {
                let bytes = core.chunks.cached_chunk(&id, index).await?;
                let mut framed = BytesMut::with_capacity(8 + bytes.len());
                framed.extend_from_slice(&index.to_be_bytes());
                framed.extend_from_slice(&bytes);
                Some(Ok(framed.freeze()))
            }
        })
        .boxed())
}

/// Slot ranges this node gained in `new` compared with `old`, grouped by
/// the node that owned them (its first owner other than this node).
fn gained(old: &Topology, new: &Topology, me: &str) -> BTreeMap<String, Vec<(u16, u16)>> {
    let mut by_donor: BTreeMap<String, Vec<(u16, u16)>> = BTreeMap::new();
    for range in &new.slots {
        if !range.owners.iter().any(|o| o == me) {
            continue;
        }
        for slot in range.start..=range.end {
            let before = old.owners(slot);
            if before.iter().any(|n| n.id == me) {
                continue;
            }
            let Some(donor) = before.first() else {
                continue;
            };
            let ranges = by_donor.entry(donor.url.clone()).or_default();
            match ranges.last_mut() {
                Some((_, end)) if *end + 1 == slot => *end = slot,
                _ => ranges.push((slot, slot)),
            }
        }
    }
    by_donor
}

/// A Flight client of the peer at `url`, carrying the peer token.
pub(crate) async fn peer(url: &str, token: Option<&str>) -> Result<FlightClient> {
    let endpoint = dial_url(url)
        .ok_or_else(|| QuiverError::Unavailable(format!("peer {url} is not a Flight URL")))?;
    let channel = Channel::from_shared(endpoint)
        .map_err(|e| QuiverError::Unavailable(format!("peer {url}: {e}")))?
        .connect_timeout(PEER_CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|e| QuiverError::Unavailable(format!("cannot reach peer {url}: {e}")))?;
    // A `handoff-read` frame is one whole chunk, up to the 8 MiB the chunk
    // size allows, plus its index: above gRPC's default 4 MiB limit.
    let inner = FlightServiceClient::new(channel).max_decoding_message_size(PEER_MAX_MESSAGE);
    let mut client = FlightClient::new_from_inner(inner);
    if let Some(t) = token {
        client
            .add_header("authorization", &format!("Bearer {t}"))
            .map_err(|e| QuiverError::Internal(e.to_string()))?;
    }
    Ok(client)
}

/// Longest a peer connection may take to open.
const PEER_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn peer_error(url: &str, e: impl std::fmt::Display) -> QuiverError {
    QuiverError::Unavailable(format!("hand-off from {url} failed: {e}"))
}

/// Copies the donor's cached chunks of `slots` into this node's cache.
async fn import(
    core: &NodeCore,
    progress: &Progress,
    url: &str,
    slots: Vec<(u16, u16)>,
) -> Result<()> {
    let token = core.auth.peer_token();
    let mut client = peer(url, token.as_deref()).await?;
    let body = serde_json::to_vec(&HandoffList {
        slots: slots.clone(),
    })
    .map_err(|e| QuiverError::Internal(e.to_string()))?;
    let answer: Vec<Bytes> = client
        .do_action(Action::new("handoff-list", body))
        .await
        .map_err(|e| peer_error(url, e))?
        .try_collect()
        .await
        .map_err(|e| peer_error(url, e))?;
    let objects: Vec<HandoffObject> =
        serde_json::from_slice(answer.first().map(|b| b.as_ref()).unwrap_or(b"[]"))
            .map_err(|e| peer_error(url, e))?;
    progress.update(|s| s.objects += objects.len() as u64);
    for object in objects {
        // Chunk indices only mean something at one chunk size (which is part
        // of every cache key), so chunks of another size are never imported.
        if object.chunk_size != core.chunks.chunk_size() {
            return Err(peer_error(url, "the peer uses a different chunk size"));
        }
        let id = match checked_offer(core, &object, &slots).await {
            Ok(id) => id,
            Err(reason) => {
                tracing::warn!(
                    peer = url, source = %object.source, path = %object.path, %reason,
                    "a hand-off object was refused"
                );
                progress.update(|s| s.objects_refused += 1);
                continue;
            }
        };
        let have = core.chunks.cached_indices(&id);
        let missing: Vec<u64> = object
            .chunks
            .iter()
            .copied()
            .filter(|c| !have.contains(c))
            .collect();
        for batch in missing.chunks(READ_BATCH) {
            let body = serde_json::to_vec(&HandoffRead {
                object: object.clone(),
                chunks: batch.to_vec(),
            })
            .map_err(|e| QuiverError::Internal(e.to_string()))?;
            let mut stream = client
                .do_action(Action::new("handoff-read", body))
                .await
                .map_err(|e| peer_error(url, e))?;
            while let Some(framed) = stream.try_next().await.map_err(|e| peer_error(url, e))? {
                if framed.len() < 8 {
                    return Err(peer_error(url, "a chunk frame is shorter than its header"));
                }
                let mut index = [0u8; 8];
                index.copy_from_slice(&framed[..8]);
                let bytes = framed.slice(8..);
                let len = bytes.len() as u64;
                core.chunks
                    .insert_chunk(&id, u64::from_be_bytes(index), bytes)?;
                progress.update(|s| s.bytes += len);
            }
        }
        progress.update(|s| s.objects_done += 1);
    }
    Ok(())
}

/// The identity under which an offered object's chunks may be imported.
///
/// Nothing in the offer is trusted: the object must name a configured
/// source and a valid path in one of the `slots` being handed off, and its
/// ETag and size must be what the origin says the object is now. The size
/// then bounds every chunk index, so a peer that claims an object of
/// `u64::MAX` bytes costs one HEAD, not an endless walk over chunk indices.
async fn checked_offer(
    core: &NodeCore,
    object: &HandoffObject,
    slots: &[(u16, u16)],
) -> Result<ObjectId> {
    let (source, path) = match core.sources.resolve_named(&object.source, &object.path)? {
        crate::source::Target::Object { source, path } => (source, path),
        crate::source::Target::Prefix { .. } => {
            return Err(QuiverError::invalid(
                "the offer names a prefix, not an object",
            ))
        }
    };
    let slot = slot_of(&source.name, path.as_ref());
    if !slots.iter().any(|&(s, e)| s <= slot && slot <= e) {
        return Err(QuiverError::invalid(format!(
            "slot {slot} is not among the slots handed off"
        )));
    }
    let id = source.identity(&path).await?;
    if id.etag != object.etag || id.size != object.size {
        return Err(QuiverError::Changed(format!(
            "the origin has {} ({} bytes), not the offered {} ({} bytes)",
            id.etag, id.size, object.etag, object.size
        )));
    }
    let chunks = core.chunks.chunk_count(&id);
    if object.chunks.len() as u64 > chunks || object.chunks.iter().any(|&c| c >= chunks) {
        return Err(QuiverError::invalid(format!(
            "the offer lists chunks beyond the object's {chunks}"
        )));
    }
    Ok(id)
}

/// Runs a hand-off for every adopted change until `stop` turns true.
pub async fn run(core: Arc<NodeCore>, progress: Arc<Progress>, mut stop: watch::Receiver<bool>) {
    let mut changes = core.cluster.subscribe();
    let mut old = changes.borrow_and_update().clone();
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = stop.changed() => return,
        }
        let new = changes.borrow_and_update().clone();
        // Epoch 0 is a node running alone before the cluster exists: it
        // owned everything and hands nothing over.
        let donors = if old.epoch == 0 {
            BTreeMap::new()
        } else {
            gained(&old, &new, &core.node_id)
        };
        old = new.clone();
        if donors.is_empty() {
            continue;
        }
        progress.update(|s| {
            *s = HandoffStatus {
                state: "running",
                epoch: new.epoch,
                ..Default::default()
            }
        });
        tracing::info!(epoch = new.epoch, donors = donors.len(), "hand-off started");
        for (url, slots) in donors {
            if let Err(e) = import(&core, &progress, &url, slots).await {
                tracing::warn!(error = %e, "hand-off incomplete; the rest will be read from the origin");
                progress.update(|s| s.errors.push(e.to_string()));
            }
        }
        let status = progress.get();
        progress.update(|s| {
            s.state = if status.errors.is_empty() {
                "done"
            } else {
                "failed"
            }
        });
        tracing::info!(
            epoch = new.epoch,
            objects = status.objects_done,
            bytes = status.bytes,
            "hand-off finished"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{checked_offer, gained};
    use quiver_protocol::{slot_of, HandoffObject, NodeInfo, Topology};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offers_from_a_peer_are_checked_against_the_origin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        std::fs::write(dir.path().join("t/a.parquet"), vec![7u8; 3 << 20]).unwrap();
        let mut config = crate::config::Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.admin_listen = "127.0.0.1:0".parse().unwrap();
        config.cache.disk = crate::config::ByteSize(0);
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        config.sources = vec![crate::config::SourceConfig::new("local", url.as_str())];
        let node = crate::node::RunningNode::start(config).await.unwrap();
        let core = &node.core;
        let id = core
            .sources
            .get("local")
            .unwrap()
            .identity(&"t/a.parquet".into())
            .await
            .unwrap();
        let slot = slot_of("local", "t/a.parquet");
        let good = HandoffObject {
            source: "local".into(),
            path: "t/a.parquet".into(),
            etag: id.etag.clone(),
            size: id.size,
            last_modified_ms: 0,
            chunk_size: core.chunks.chunk_size(),
            chunks: vec![0, 1, 2],
        };
        let all = [(0, 16383)];
        assert_eq!(checked_offer(core, &good, &all).await.unwrap(), id);
        let bad = [
            (
                "a huge size",
                HandoffObject {
                    size: u64::MAX,
                    ..good.clone()
                },
            ),
            (
                "another version",
                HandoffObject {
                    etag: "\"other\"".into(),
                    ..good.clone()
                },
            ),
            (
                "an unknown source",
                HandoffObject {
                    source: "nope".into(),
                    ..good.clone()
                },
            ),
            (
                "an escaping path",
                HandoffObject {
                    path: "../etc/passwd".into(),
                    ..good.clone()
                },
            ),
            (
                "a missing object",
                HandoffObject {
                    path: "t/none.parquet".into(),
                    ..good.clone()
                },
            ),
            (
                "chunks past the end",
                HandoffObject {
                    chunks: vec![0, u64::MAX],
                    ..good.clone()
                },
            ),
        ];
        for (what, offer) in bad {
            assert!(
                checked_offer(core, &offer, &all).await.is_err(),
                "{what} was accepted"
            );
        }
        let elsewhere = [(slot.wrapping_add(1) % 16384, slot.wrapping_add(1) % 16384)];
        assert!(
            checked_offer(core, &good, &elsewhere).await.is_err(),
            "an object outside the handed-off slots was accepted"
        );
        node.shutdown().await.unwrap();
    }

    fn nodes(n: usize) -> Vec<NodeInfo> {
        (1..=n)
            .map(|i| NodeInfo {
                id: format!("n{i}"),
                url: format!("grpc://h:{i}"),
            })
            .collect()
    }

    #[test]
    fn a_new_node_gains_its_share_from_each_previous_owner() {
        let t3 = Topology::initial(nodes(3), 1).unwrap();
        let t4 = t3
            .with_node(nodes(4).pop().unwrap())
            .unwrap()
            .rebalance()
            .unwrap();
        let g = gained(&t3, &t4, "n4");
        let total: usize = g
            .values()
            .flatten()
            .map(|(s, e)| usize::from(e - s) + 1)
            .sum();
        assert_eq!(total, 4096);
        assert!(g.keys().all(|url| url != "grpc://h:4"));
        // The old nodes gain nothing.
        assert!(gained(&t3, &t4, "n1").is_empty());
    }
}
