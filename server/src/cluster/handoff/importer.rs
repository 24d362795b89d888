//! The importing side of a hand-off: on every adopted topology change,
//! the slots this node gained are asked of their previous owners in order,
//! each offered object is checked against the origin, and the chunks this
//! node lacks are copied into its cache; what no previous owner could give
//! is left to the origin.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow_flight::{Action, FlightClient};
use bytes::Bytes;
use futures::TryStreamExt;
use quiver_protocol::{
    slot_of, unframe_part, HandoffDone, HandoffList, HandoffObject, HandoffRead, Topology,
    HANDOFF_PAGE,
};
use tokio::sync::watch;

use super::progress::{HandoffStatus, Progress};
use super::READ_BATCH;
use crate::cluster::peers::bounded;
use crate::error::{QuiverError, Result};
use crate::node_core::NodeCore;
use crate::source::ObjectId;

/// Slot ranges this node gained in `new` compared with `old`, grouped by
/// the nodes that owned them before: primary first, then replicas, the
/// order the importer tries them in.
fn gained(old: &Topology, new: &Topology, me: &str) -> BTreeMap<Vec<String>, Vec<(u16, u16)>> {
    let mut by_donors: BTreeMap<Vec<String>, Vec<(u16, u16)>> = BTreeMap::new();
    for range in &new.slots {
        if !range.owners.iter().any(|o| o == me) {
            continue;
        }
        for slot in range.start..=range.end {
            let before = old.owners(slot);
            if before.iter().any(|n| n.id == me) {
                continue;
            }
            let donors: Vec<String> = before.iter().map(|n| n.url.clone()).collect();
            if donors.is_empty() {
                continue;
            }
            let ranges = by_donors.entry(donors).or_default();
            match ranges.last_mut() {
                Some((_, end)) if *end + 1 == slot => *end = slot,
                _ => ranges.push((slot, slot)),
            }
        }
    }
    by_donors
}

/// Tells every previous owner of `slots` that this node imported them at
/// `epoch`, so they stop serving them. A donor that does not hear it
/// serves them until its grace period ends, so a failure is only logged.
async fn report_done(core: &NodeCore, donors: &[String], slots: &[(u16, u16)], epoch: u64) {
    let body = match serde_json::to_vec(&HandoffDone {
        epoch,
        node: core.node_id.clone(),
        slots: slots.to_vec(),
    }) {
        Ok(b) => b,
        Err(e) => return tracing::error!(error = %e, "cannot encode a handoff-done report"),
    };
    let calls = donors.iter().map(|url| {
        let body = body.clone();
        async move {
            let sent = bounded(url, "handoff-done", async {
                let mut client = core.peers.client(url).await?;
                client
                    .do_action(Action::new("handoff-done", body))
                    .await
                    .map_err(|e| peer_error(url, e))?
                    .try_collect::<Vec<Bytes>>()
                    .await
                    .map_err(|e| peer_error(url, e))
            })
            .await;
            if let Err(e) = sent {
                tracing::warn!(peer = %url, error = %e, "could not report a finished hand-off; the peer serves the slots until its grace period ends");
            }
        }
    });
    futures::future::join_all(calls).await;
}

fn peer_error(url: &str, e: impl std::fmt::Display) -> QuiverError {
    QuiverError::Unavailable(format!("hand-off from {url} failed: {e}"))
}

/// One `handoff-list` page from the donor.
async fn list_page(
    client: &mut FlightClient,
    url: &str,
    slots: &[(u16, u16)],
    after: Option<(String, String)>,
) -> Result<Vec<HandoffObject>> {
    let body = serde_json::to_vec(&HandoffList {
        slots: slots.to_vec(),
        after,
        limit: Some(HANDOFF_PAGE),
    })
    .map_err(|e| QuiverError::Internal(e.to_string()))?;
    let answer: Vec<Bytes> = bounded(url, "handoff-list", async {
        client
            .do_action(Action::new("handoff-list", body))
            .await
            .map_err(|e| peer_error(url, e))?
            .try_collect()
            .await
            .map_err(|e| peer_error(url, e))
    })
    .await?;
    let page: Vec<HandoffObject> =
        serde_json::from_slice(answer.first().map(|b| b.as_ref()).unwrap_or(b"[]"))
            .map_err(|e| peer_error(url, e))?;
    if page.len() > HANDOFF_PAGE {
        return Err(peer_error(url, "a page holds more objects than asked for"));
    }
    Ok(page)
}

/// Copies the chunks of one offered object that this node lacks.
async fn import_object(
    core: &NodeCore,
    progress: &Progress,
    client: &mut FlightClient,
    url: &str,
    object: &HandoffObject,
    id: &ObjectId,
) -> Result<()> {
    let have = core.chunks.cached_indices(id);
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
            checksum: true,
            parts: true,
        })
        .map_err(|e| QuiverError::Internal(e.to_string()))?;
        let mut stream = bounded(url, "handoff-read", async {
            client
                .do_action(Action::new("handoff-read", body))
                .await
                .map_err(|e| peer_error(url, e))
        })
        .await?;
        while let Some(framed) = bounded(url, "the next chunk", async {
            stream.try_next().await.map_err(|e| peer_error(url, e))
        })
        .await?
        {
            let received = unframe_part(framed).map_err(|e| e.to_string()).and_then(
                |(index, offset, bytes)| {
                    if !batch.contains(&index) {
                        return Err(format!("chunk {index} was not asked for"));
                    }
                    let len = bytes.len() as u64;
                    core.chunks
                        .insert_part(id, index, offset, bytes)
                        .map(|()| len)
                        .map_err(|e| e.to_string())
                },
            );
            match received {
                Ok(len) => progress.update(|s| s.bytes += len),
                Err(reason) => {
                    // Nothing from this donor is trusted any more: the rest
                    // comes from the next previous owner or the origin.
                    progress.update(|s| s.chunks_rejected += 1);
                    core.metrics.handoff_chunks_rejected.inc();
                    return Err(QuiverError::DataLoss(format!(
                        "peer {url} sent a bad chunk of {}/{}: {reason}",
                        object.source, object.path
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The objects a hand-off has counted as offered and as done, so a
/// fallback donor offering the same objects is not counted twice.
#[derive(Default)]
struct Tally {
    offered: HashSet<(String, String)>,
    done: HashSet<(String, String)>,
}

/// Copies the donor's cached chunks of `slots` into this node's cache.
async fn import(
    core: &NodeCore,
    progress: &Progress,
    url: &str,
    slots: &[(u16, u16)],
    tally: &mut Tally,
) -> Result<()> {
    let mut client = core.peers.client(url).await?;
    let mut after = None;
    loop {
        let page = list_page(&mut client, url, slots, after.clone()).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        let next = (last.source.clone(), last.path.clone());
        if let Some(previous) = &after {
            if &next <= previous {
                return Err(peer_error(url, "its pages do not advance"));
            }
        }
        for object in page {
            let name = (object.source.clone(), object.path.clone());
            if tally.offered.insert(name.clone()) {
                progress.update(|s| s.objects += 1);
            }
            // Chunk indices only mean something at one chunk size (which is
            // part of every cache key), so chunks of another size are never
            // imported.
            if object.chunk_size != core.chunks.chunk_size() {
                return Err(peer_error(url, "the peer uses a different chunk size"));
            }
            let id = match checked_offer(core, &object, slots).await {
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
            import_object(core, progress, &mut client, url, &object, &id).await?;
            if tally.done.insert(name) {
                progress.update(|s| s.objects_done += 1);
            }
        }
        after = Some(next);
    }
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

/// Imports `slots` from the first of `donors` that can give them; a donor
/// that fails (dead, stalled, or sending bad chunks) hands over to the
/// next, which skips what is already here. Returns whether one finished.
async fn import_from_any(
    core: &NodeCore,
    progress: &Progress,
    donors: &[String],
    slots: &[(u16, u16)],
    tally: &mut Tally,
) -> bool {
    for url in donors {
        match import(core, progress, url, slots, tally).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(peer = %url, error = %e, "hand-off from this peer incomplete; trying the slots' next previous owner");
                progress.update(|s| s.errors.push(e.to_string()));
            }
        }
    }
    tracing::warn!(
        ?slots,
        "no previous owner could hand these slots off; they will be read from the origin"
    );
    false
}

/// Runs a hand-off for every adopted change until `stop` turns true. A
/// shutdown stops a running hand-off at once; what it copied stays cached.
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
        let work = async {
            let mut tally = Tally::default();
            let mut complete = true;
            for (urls, slots) in &donors {
                if import_from_any(&core, &progress, urls, slots, &mut tally).await {
                    report_done(&core, urls, slots, new.epoch).await;
                } else {
                    complete = false;
                }
            }
            complete
        };
        let complete = tokio::select! {
            complete = work => complete,
            _ = stop.wait_for(|s| *s) => {
                tracing::info!(epoch = new.epoch, "hand-off stopped by shutdown");
                progress.update(|s| s.state = "stopped");
                return;
            }
        };
        let status = progress.get();
        progress.update(|s| s.state = if complete { "done" } else { "failed" });
        tracing::info!(
            epoch = new.epoch,
            objects = status.objects_done,
            bytes = status.bytes,
            complete,
            "hand-off finished"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::local_node;
    use super::{checked_offer, gained};
    use quiver_protocol::{slot_of, HandoffObject, NodeInfo, Topology};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offers_from_a_peer_are_checked_against_the_origin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        std::fs::write(dir.path().join("t/a.parquet"), vec![7u8; 3 << 20]).unwrap();
        let node = local_node(dir.path()).await;
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
        assert!(g.keys().flatten().all(|url| url != "grpc://h:4"));
        // The old nodes gain nothing.
        assert!(gained(&t3, &t4, "n1").is_empty());
    }
}
