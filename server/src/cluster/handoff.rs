//! Warm slot hand-off: when a topology change gives this node slots another
//! node owned, it copies that node's cached chunks of those slots instead of
//! reading them again from S3, while the previous owner keeps serving them
//! for the hand-off grace period.
//!
//! The donor side answers `handoff-list` (a page of the cached objects that
//! fall in the slots, and which of their chunks it holds, taken from the
//! cache's own catalog so a restarted donor offers its recovered disk tier)
//! and `handoff-read` (those chunks, from cache only, each with its
//! checksum). The importer runs in the background on every adopted change,
//! tries a slot's previous owners in order (its primary, then its
//! replicas) and leaves what none of them could give to the origin; it
//! reports its progress through `health`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow_flight::{Action, FlightClient};
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use quiver_protocol::{
    handoff_checksum, slot_of, HandoffDone, HandoffList, HandoffObject, HandoffRead, Topology,
    HANDOFF_PAGE, SLOT_COUNT,
};
use serde::Serialize;
use tokio::sync::watch;

use super::peers::bounded;
use crate::error::{QuiverError, Result};
use crate::metrics::Metrics;
use crate::node_core::NodeCore;
use crate::source::ObjectId;

/// Chunks asked for in one `handoff-read`, so one stream stays bounded.
const READ_BATCH: usize = 16;

/// Bytes before a checksummed chunk: its index and its CRC-32C.
const FRAME_HEADER: usize = 12;

/// What `health` reports about the last hand-off.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HandoffStatus {
    /// `idle`, `running`, `done`, `failed` (some slots' chunks will come
    /// from the origin instead) or `stopped` (the node shut down).
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
    /// Chunks a peer sent that failed their checksum or length check; none
    /// of them entered the cache.
    pub chunks_rejected: u64,
    pub errors: Vec<String>,
}

/// The states a hand-off reports, `idle` until the first one starts.
const STATES: [&str; 5] = ["idle", "running", "done", "failed", "stopped"];

/// Shared progress of the hand-off task, mirrored into the node's metrics
/// on every change so dashboards see what `health` says.
#[derive(Debug)]
pub struct Progress {
    status: Mutex<HandoffStatus>,
    metrics: Arc<Metrics>,
}

impl Progress {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let progress = Progress {
            status: Mutex::default(),
            metrics,
        };
        progress.update(|_| {});
        progress
    }

    pub fn get(&self) -> HandoffStatus {
        shown(&self.status.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn update(&self, f: impl FnOnce(&mut HandoffStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut status);
        let s = shown(&status);
        drop(status);
        let m = &self.metrics;
        for state in STATES {
            m.handoff_state
                .with_label_values(&[state])
                .set(i64::from(state == s.state));
        }
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        m.handoff_epoch.set(gauge(s.epoch));
        m.handoff_objects.set(gauge(s.objects));
        m.handoff_objects_done.set(gauge(s.objects_done));
        m.handoff_objects_refused.set(gauge(s.objects_refused));
        m.handoff_bytes.set(gauge(s.bytes));
    }
}

/// The status as reported: `idle` before any hand-off has run.
fn shown(s: &HandoffStatus) -> HandoffStatus {
    HandoffStatus {
        state: if s.state.is_empty() { "idle" } else { s.state },
        ..s.clone()
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

/// Donor: one page of the cached objects whose slots fall in the requested
/// ranges, in (source, path) order after `after`.
pub fn list(core: &NodeCore, body: &[u8]) -> Result<Bytes> {
    let req: HandoffList = serde_json::from_slice(body).map_err(|e| {
        QuiverError::invalid(format!(
            "handoff-list takes {{\"slots\": [[start, end], ...], \"after\": [source, path], \"limit\": n}}: {e}"
        ))
    })?;
    let mut wanted = vec![false; usize::from(SLOT_COUNT)];
    for &(start, end) in &req.slots {
        if start > end || end >= SLOT_COUNT {
            return Err(QuiverError::invalid(format!(
                "slot range [{start}, {end}] is not within 0..={}",
                SLOT_COUNT - 1
            )));
        }
        wanted[usize::from(start)..=usize::from(end)].fill(true);
    }
    let limit = req.limit.unwrap_or(HANDOFF_PAGE).clamp(1, HANDOFF_PAGE);
    let chunk_size = core.chunks.chunk_size();
    let mut out = Vec::new();
    for id in core.chunks.objects() {
        if let Some((source, path)) = &req.after {
            if (&*id.source, id.path.as_ref()) <= (source.as_str(), path.as_str()) {
                continue;
            }
        }
        if !wanted[usize::from(slot_of(&id.source, id.path.as_ref()))] {
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
        if out.len() == limit {
            break;
        }
    }
    serde_json::to_vec(&out)
        .map(Bytes::from)
        .map_err(|e| QuiverError::Internal(format!("cannot encode the hand-off list: {e}")))
}

/// Donor: the requested chunks that are cached, each as an 8-byte index,
/// with `checksum` its 4-byte CRC-32C, then its bytes. Chunks that are gone
/// are skipped; the importer simply does without them.
pub fn read(core: Arc<NodeCore>, body: &[u8]) -> Result<BoxStream<'static, Result<Bytes>>> {
    let req: HandoffRead = serde_json::from_slice(body).map_err(|e| {
        QuiverError::invalid(format!(
            "handoff-read takes {{\"object\", \"chunks\", \"checksum\"}}: {e}"
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
    // Only objects of a configured source, in slots this node owns or gave
    // up recently, are handed out. The slot and the cache key both come
    // from the resolved name, so a path spelled another way ("/t/a", "t//a")
    // cannot pass the slot check as one object and read another.
    let (source, path) = match core
        .sources
        .resolve_named(&req.object.source, &req.object.path)?
    {
        crate::source::Target::Object { source, path } => (source, path),
        crate::source::Target::Prefix { .. } => {
            return Err(QuiverError::invalid(
                "handoff-read names a prefix, not an object",
            ))
        }
    };
    let slot = slot_of(&source.name, path.as_ref());
    if !core.cluster.holds(slot) {
        return Err(QuiverError::invalid(format!(
            "slot {slot} is neither owned nor being handed off by this node"
        )));
    }
    let id = ObjectId {
        source: source.name.clone(),
        path,
        ..object_id(&req.object)
    };
    let checksum = req.checksum;
    Ok(futures::stream::iter(req.chunks)
        .filter_map(move |index| {
            let core = core.clone();
            let id = id.clone();
            async move {
                let bytes = core.chunks.cached_chunk(&id, index).await?;
                let mut framed = BytesMut::with_capacity(FRAME_HEADER + bytes.len());
                framed.extend_from_slice(&index.to_be_bytes());
                if checksum {
                    framed.extend_from_slice(&handoff_checksum(&bytes).to_be_bytes());
                }
                framed.extend_from_slice(&bytes);
                Some(Ok(framed.freeze()))
            }
        })
        .boxed())
}

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

/// Donor: a new owner reports that it imported slots; this node stops
/// serving them (`Cluster::serves_during_handoff`).
pub async fn done(core: &NodeCore, body: &[u8]) -> Result<Bytes> {
    let req: HandoffDone = serde_json::from_slice(body).map_err(|e| {
        QuiverError::invalid(format!(
            "handoff-done takes {{\"epoch\", \"node\", \"slots\": [[start, end], ...]}}: {e}"
        ))
    })?;
    let kept = core.cluster.record_imported(req).await?;
    Ok(Bytes::from(format!("{{\"kept\":{kept}}}")))
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

/// Splits a checksummed `handoff-read` frame into its chunk index and
/// bytes, after checking the bytes against the checksum.
pub(super) fn unframe(framed: Bytes) -> std::result::Result<(u64, Bytes), String> {
    if framed.len() < FRAME_HEADER {
        return Err("a chunk frame is shorter than its header".into());
    }
    let mut index = [0u8; 8];
    index.copy_from_slice(&framed[..8]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&framed[8..FRAME_HEADER]);
    let bytes = framed.slice(FRAME_HEADER..);
    let index = u64::from_be_bytes(index);
    if handoff_checksum(&bytes) != u32::from_be_bytes(crc) {
        return Err(format!("chunk {index} does not match its checksum"));
    }
    Ok((index, bytes))
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
            let received = unframe(framed).and_then(|(index, bytes)| {
                if !batch.contains(&index) {
                    return Err(format!("chunk {index} was not asked for"));
                }
                let len = bytes.len() as u64;
                core.chunks
                    .insert_chunk(id, index, bytes)
                    .map(|()| len)
                    .map_err(|e| e.to_string())
            });
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
    use super::{checked_offer, gained, list, unframe};
    use bytes::Bytes;
    use quiver_protocol::{handoff_checksum, slot_of, HandoffObject, NodeInfo, Topology};

    /// A memory-only node serving `dir` as source `local`.
    async fn local_node(dir: &std::path::Path) -> crate::node::RunningNode {
        let mut config = crate::config::Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.admin_listen = "127.0.0.1:0".parse().unwrap();
        config.cache.disk = crate::config::ByteSize(0);
        let url = url::Url::from_directory_path(dir).unwrap();
        config.sources = vec![crate::config::SourceConfig::new("local", url.as_str())];
        crate::node::RunningNode::start(config).await.unwrap()
    }

    fn frame(index: u64, crc: u32, bytes: &[u8]) -> Bytes {
        let mut f = index.to_be_bytes().to_vec();
        f.extend_from_slice(&crc.to_be_bytes());
        f.extend_from_slice(bytes);
        Bytes::from(f)
    }

    #[test]
    fn a_chunk_that_fails_its_checksum_is_refused() {
        let bytes = b"some chunk bytes";
        let good = frame(7, handoff_checksum(bytes), bytes);
        assert_eq!(unframe(good).unwrap(), (7, Bytes::from_static(bytes)));
        let mut flipped = bytes.to_vec();
        flipped[3] ^= 1;
        assert!(unframe(frame(7, handoff_checksum(bytes), &flipped)).is_err());
        assert!(unframe(Bytes::from_static(b"short")).is_err());
        // An empty chunk still carries its header.
        assert!(unframe(frame(0, handoff_checksum(b""), b"")).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_object_list_comes_in_pages_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        let names = ["t/a.parquet", "t/b.parquet", "t/c.parquet"];
        for n in names {
            std::fs::write(dir.path().join(n), vec![1u8; 10_000]).unwrap();
        }
        let node = local_node(dir.path()).await;
        let core = &node.core;
        let source = core.sources.get("local").unwrap();
        // Cached in reverse order: the pages still come in path order.
        for n in names.iter().rev() {
            let id = source.identity(&(*n).into()).await.unwrap();
            core.chunks
                .insert_chunk(&id, 0, Bytes::from(vec![1u8; 10_000]))
                .unwrap();
        }
        let page = |body: &str| -> Vec<String> {
            let out: Vec<HandoffObject> =
                serde_json::from_slice(&list(core, body.as_bytes()).unwrap()).unwrap();
            out.into_iter().map(|o| o.path).collect()
        };
        let all = r#""slots": [[0, 16383]]"#;
        assert_eq!(page(&format!("{{{all}, \"limit\": 2}}")), names[..2]);
        assert_eq!(
            page(&format!(
                "{{{all}, \"limit\": 2, \"after\": [\"local\", \"t/b.parquet\"]}}"
            )),
            names[2..]
        );
        assert!(page(&format!(
            "{{{all}, \"after\": [\"local\", \"t/c.parquet\"]}}"
        ))
        .is_empty());
        assert_eq!(page(&format!("{{{all}}}")), names);
        // Slot ranges outside the slot space are refused, not clamped.
        assert!(list(core, br#"{"slots": [[0, 16384]]}"#).is_err());
        assert!(list(core, br#"{"slots": [[5, 4]]}"#).is_err());
        node.shutdown().await.unwrap();
    }

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
