//! The donor side of a hand-off: `handoff-list` pages through the cached
//! objects of the slots asked for, `handoff-read` streams their chunks
//! from cache only, and `handoff-done` stops this node serving slots their
//! new owner has imported.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use quiver_protocol::{
    frame_chunk, frame_part, slot_of, HandoffDone, HandoffList, HandoffObject, HandoffRead,
    HANDOFF_PAGE, SLOT_COUNT,
};

use super::{object_id, READ_BATCH};
use crate::error::{QuiverError, Result};
use crate::node_core::NodeCore;
use crate::source::ObjectId;

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
/// with `checksum` its 4-byte CRC-32C, then its bytes; with `parts`, every
/// part of them that is cached, its offset in the chunk after the index
/// (a chunk held whole is one part). Chunks that are gone, or without
/// `parts` held only in part, are skipped; the importer simply does
/// without them.
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
    if req.parts && !req.checksum {
        return Err(QuiverError::invalid(
            "handoff-read with parts needs checksum: every part frame carries its CRC-32C",
        ));
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
    let (checksum, parts) = (req.checksum, req.parts);
    Ok(futures::stream::iter(req.chunks)
        .then(move |index| {
            let core = core.clone();
            let id = id.clone();
            async move {
                let frames: Vec<Result<Bytes>> = if parts {
                    core.chunks
                        .cached_parts(&id, index)
                        .await
                        .into_iter()
                        .map(|(offset, bytes)| Ok(frame_part(index, offset, &bytes, checksum)))
                        .collect()
                } else {
                    core.chunks
                        .cached_chunk(&id, index)
                        .await
                        .map(|bytes| Ok(frame_chunk(index, &bytes, checksum)))
                        .into_iter()
                        .collect()
                };
                futures::stream::iter(frames)
            }
        })
        .flatten()
        .boxed())
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

#[cfg(test)]
mod tests {
    use super::super::test_support::local_node;
    use super::list;
    use bytes::Bytes;
    use quiver_protocol::HandoffObject;

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
                .insert_part(&id, 0, 0, Bytes::from(vec![1u8; 10_000]))
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
}
