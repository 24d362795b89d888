//! DoAction handlers: `stats`, `prefetch`, `evict`, `cluster-shards` and
//! `health`. Each returns JSON bodies; `prefetch` streams progress.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use quiver_protocol::{
    CacheTierStats, ClusterUpdate, EvictRequest, HotStats, PrefetchProgress, PrefetchSummary,
    ScanRequest, SqlStats, StatsReport, WarmAnswer, WarmStats,
};
use quiver_sql::Role;

use crate::error::{QuiverError, Result};
use crate::metrics::{TaskKind, Tier};
use crate::miss::WarmJob;
use crate::node_core::NodeCore;
use crate::scan::column_ranges;
use crate::source::{ObjectId, Target};

/// Chunks a prefetch loads per read.
const PREFETCH_SLICE_CHUNKS: u64 = 16;

fn split(range: Range<u64>, size: u64) -> impl Iterator<Item = Range<u64>> {
    (range.start..range.end)
        .step_by(size.max(1) as usize)
        .map(move |start| start..(start + size).min(range.end))
}

fn json<T: serde::Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

pub fn stats(core: &NodeCore) -> Bytes {
    let usage = core.chunks.usage();
    let m = &core.metrics;
    json(&StatsReport {
        node_id: core.node_id.clone(),
        memory: CacheTierStats {
            capacity: m.memory_capacity.get() as u64,
            usage: usage.memory,
            allocated: None,
            hits: m.hits(Tier::Memory),
        },
        disk: CacheTierStats {
            capacity: m.disk_capacity.get() as u64,
            usage: usage.disk,
            allocated: Some(usage.disk_allocated),
            hits: m.hits(Tier::Disk),
        },
        misses: m.misses(),
        origin_bytes: m.origin_bytes.get(),
        origin_requests: m.origin_requests.get(),
        origin_heads: m.origin_heads.get(),
        bytes_served: m.bytes_served.get(),
        rows_served: m.rows_served.get(),
        presigned_urls: m.presigned_total(),
        scans: m.scans.get(),
        active_scans: m.active_scans.get().max(0) as u64,
        warm: WarmStats {
            queued: core.warmer.len() as u64,
            done: m.warm_done.get(),
            dropped: m.warm_dropped.get(),
            failed: m.warm_failed.get(),
            bytes: m.warm_bytes.get(),
        },
        hot: HotStats {
            capacity: core.scanner.hot().capacity(),
            usage: core.scanner.hot().usage(),
            hits: m.hot_hits.get(),
            misses: m.hot_misses.get(),
            partial: m.hot_partial.get(),
            evictions: m.hot_evictions.get(),
            fills: m.hot_fills.get(),
        },
        sql: SqlStats {
            distributed_statements: m.sql_distributed.get(),
            tasks: m.sql_tasks(TaskKind::ALL),
            leaf_tasks: m.sql_tasks(&[TaskKind::LocalLeaf, TaskKind::RemoteLeaf]),
            local_leaf_tasks: m.sql_tasks(&[TaskKind::LocalLeaf]),
            coordinator_bytes: m.sql_exchanged(Role::Coordinator),
            worker_bytes: m.sql_exchanged(Role::Worker),
        },
    })
}

pub fn health(core: &NodeCore) -> Bytes {
    let origins: serde_json::Map<String, serde_json::Value> = core
        .sources
        .all()
        .iter()
        .map(|s| {
            let circuit = if s.breaker.is_open() {
                "open"
            } else {
                "closed"
            };
            (
                s.name.to_string(),
                serde_json::json!({ "circuit": circuit }),
            )
        })
        .collect();
    let disk = core.disk_health.state();
    let degraded =
        disk.state == "degraded" || core.sources.all().iter().any(|s| s.breaker.is_open());
    json(&serde_json::json!({
        "status": if degraded { "degraded" } else { "ok" },
        "origins": origins,
        "disk": disk,
        "node_id": core.node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "active_scans": core.metrics.active_scans.get(),
        "cluster": core.cluster.status(),
        "handoff": core.handoff.get(),
        "warm_queue": core.warmer.len(),
    }))
}

/// The topology this node follows. With `{"refresh": true}` the node first
/// re-reads the document, so an operator's tool never computes a change
/// from a copy that is one reload interval old.
pub async fn cluster_shards(core: &NodeCore, body: &[u8]) -> Result<Bytes> {
    if !body.is_empty() {
        let req: ShardsRequest = serde_json::from_slice(body).map_err(|e| {
            QuiverError::invalid(format!(
                "cluster-shards takes no body or {{\"refresh\": true}}: {e}"
            ))
        })?;
        if req.refresh {
            core.cluster.reload().await;
        }
    }
    Ok(json(&*core.topology()))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardsRequest {
    #[serde(default)]
    refresh: bool,
}

/// Compare-and-swap of the stored topology, sent by `quiver cluster`.
pub async fn cluster_update(core: &NodeCore, body: &[u8]) -> Result<Bytes> {
    let req: ClusterUpdate = serde_json::from_slice(body).map_err(|e| {
        QuiverError::invalid(format!(
            "cluster-update takes {{\"expected_epoch\", \"topology\"}}: {e}"
        ))
    })?;
    let adopted = core
        .cluster
        .update(req.expected_epoch, req.topology)
        .await?;
    Ok(json(&*adopted))
}

/// Drops the named objects (current versions) from every tier and forgets
/// their validated identity, so the next read goes to the origin.
pub async fn evict(core: &NodeCore, body: &[u8]) -> Result<Bytes> {
    let req: EvictRequest = serde_json::from_slice(body)
        .map_err(|e| QuiverError::invalid(format!("evict takes {{\"source\", \"path\"}}: {e}")))?;
    let target = core.sources.resolve_named(&req.source, &req.path)?;
    let objects = core.objects(&target, false).await?;
    let mut summary = PrefetchSummary::default();
    for id in &objects {
        summary.objects += 1;
        summary.bytes += evict_decoded(core, id).await;
        summary.bytes += core.chunks.evict(id);
        core.scanner.footers().forget(id);
        target.source().forget(&id.path);
    }
    Ok(json(&summary))
}

/// Drops an object's arrays from the hot tier; its footer says which
/// row groups and columns there can be. Without a readable footer nothing
/// of it can have been decoded.
async fn evict_decoded(core: &NodeCore, id: &ObjectId) -> u64 {
    if !core.scanner.hot().is_enabled() {
        return 0;
    }
    let Ok(store) = core.store(&id.source) else {
        return 0;
    };
    match core.scanner.metadata(store, id).await {
        Ok(metadata) => core.scanner.hot().evict(
            id,
            metadata.num_row_groups(),
            metadata
                .file_metadata()
                .schema_descr()
                .root_schema()
                .get_fields()
                .len(),
        ),
        Err(_) => 0,
    }
}

/// Queues a background warm-up of one object version's needed columns,
/// sent by the node that handed a client a pre-signed URL for it. A ticket
/// for another version than the current one is not warmed: its bytes would
/// never be read again.
pub async fn warm(core: &NodeCore, body: &[u8]) -> Result<Bytes> {
    let req = ScanRequest::from_bytes(body).map_err(|e| QuiverError::invalid(e.to_string()))?;
    let Target::Object { source, path } = core.sources.resolve(&req)? else {
        return Err(QuiverError::invalid("warm names one object, not a prefix"));
    };
    let id = source.identity(&path).await?;
    if req.etag.as_ref().is_some_and(|e| *e != id.etag) {
        return Ok(json(&WarmAnswer { queued: false }));
    }
    let store = core.store(&id.source)?;
    // The same checks as a plan: columns exist, the filter is allowed.
    core.scanner.projected_schema(store, &id, &req).await?;
    let columns = core.scanner.needed_columns(store, &id, &req).await?;
    let queued = core.warmer.offer(WarmJob { id, columns });
    Ok(json(&WarmAnswer { queued }))
}

/// Re-reads the lake for Flight SQL's catalog now.
pub async fn refresh_catalog(core: &NodeCore) -> Result<Bytes> {
    let Some(sql) = &core.sql else {
        return Err(QuiverError::invalid(
            "Flight SQL is disabled on this node (sql.enabled = false)",
        ));
    };
    for source in core.sources.all() {
        source.forget_listings();
    }
    let snapshot = sql
        .refresh()
        .await
        .map_err(|s| QuiverError::Unavailable(format!("cannot list the lake: {}", s.message())))?;
    Ok(json(&serde_json::json!({
        "tables": snapshot.names().count(),
        "errors": snapshot.errors,
    })))
}

/// The byte ranges a prefetch loads: the whole object, or with `columns` only
/// those columns' chunks and the footer.
async fn prefetch_ranges(
    core: &NodeCore,
    id: &ObjectId,
    columns: Option<&[String]>,
) -> Result<Vec<Range<u64>>> {
    let store = core.store(&id.source)?;
    let Some(columns) = columns else {
        return Ok(std::iter::once(0..id.size).collect());
    };
    // Reading the metadata goes through the chunk cache, so the footer is
    // loaded as well.
    let metadata = core.scanner.metadata(store, id).await?;
    column_ranges(&metadata, id, columns)
}

/// Loads objects into the cache, one progress message per object, then the
/// totals.
pub async fn prefetch(
    core: Arc<NodeCore>,
    body: &[u8],
) -> Result<BoxStream<'static, Result<Bytes>>> {
    let req = ScanRequest::from_bytes(body).map_err(|e| QuiverError::invalid(e.to_string()))?;
    let target = core.sources.resolve(&req)?;
    let objects = core.objects(&target, req.immutable).await?;
    let total = objects.len() as u64;
    let state = (
        core,
        objects.into_iter().enumerate(),
        req.columns,
        PrefetchSummary::default(),
        false,
    );
    Ok(futures::stream::unfold(
        state,
        move |(core, mut objects, columns, mut summary, done)| async move {
            if done {
                return None;
            }
            let Some((i, id)) = objects.next() else {
                return Some((Ok(json(&summary)), (core, objects, columns, summary, true)));
            };
            let result = async {
                let ranges = prefetch_ranges(&core, &id, columns.as_deref()).await?;
                let store = core.store(&id.source)?;
                // Load in slices, so that prefetching a huge object never
                // holds more than a slice of it in memory outside the cache.
                let slice = PREFETCH_SLICE_CHUNKS * core.chunks.chunk_size();
                for piece in ranges.iter().flat_map(|r| split(r.clone(), slice)) {
                    store.read_pinned(&id, std::slice::from_ref(&piece)).await?;
                }
                Ok::<u64, QuiverError>(ranges.iter().map(|r| r.end - r.start).sum())
            }
            .await;
            match result {
                Ok(bytes) => {
                    summary.objects += 1;
                    summary.bytes += bytes;
                    let progress = PrefetchProgress {
                        path: id.path.to_string(),
                        done: i as u64 + 1,
                        total,
                        bytes,
                    };
                    Some((
                        Ok(json(&progress)),
                        (core, objects, columns, summary, false),
                    ))
                }
                Err(e) => Some((Err(e), (core, objects, columns, summary, true))),
            }
        },
    )
    .boxed())
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_covers_the_range_in_slices() {
        assert_eq!(split(0..10, 4).collect::<Vec<_>>(), vec![0..4, 4..8, 8..10]);
        assert_eq!(split(3..5, 4).collect::<Vec<_>>(), vec![3..5]);
        assert_eq!(split(5..5, 4).count(), 0);
    }
}
