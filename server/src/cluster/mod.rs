//! Cluster membership as this node sees it: the current topology, re-read
//! from its document on an interval, and the compare-and-swap updates that
//! `quiver cluster` sends through the `cluster-update` action.
//!
//! The rules a node follows:
//! - it adopts only a valid document with a higher epoch, so a stale or
//!   damaged copy can never undo a newer assignment;
//! - a document it cannot use is reported (log, `health`, metrics) while
//!   the last good topology stays in force;
//! - until a document exists, the node owns every slot at epoch 0, so a
//!   fresh node is useful before `quiver cluster init`.

pub mod document;
pub mod fill;
pub mod handoff;
pub mod peers;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use quiver_protocol::{HandoffDone, NodeInfo, Topology, SLOT_COUNT};
use serde::Serialize;
use tokio::sync::watch;
use url::Url;

use crate::config::{ClusterConfig, SourceConfig};
use crate::error::{QuiverError, Result};
use crate::metrics::Metrics;
use crate::source;
use document::{DocumentStore, WriteError};

/// What `health` reports about membership.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub epoch: u64,
    pub nodes: usize,
    pub in_topology: bool,
    pub topology: Option<String>,
    /// Why the last reload was not adopted, if it was not.
    pub error: Option<String>,
}

/// A topology that a newer one replaced.
struct Replaced {
    topology: Arc<Topology>,
    /// The epoch of the topology that replaced it.
    by: u64,
    since: Instant,
}

/// Reports kept at most, so a peer repeating `handoff-done` cannot grow
/// the list without bound (each holds at most `SLOT_COUNT` slots).
const MAX_IMPORTED: usize = 256;

/// How long a node keeps answering `handoff-read` for slots it gave up: a
/// bulk import of a large cache can outlast the grace period, and must not
/// be cut off when the node stops serving the slots to clients.
pub const HANDOFF_READ_WINDOW: Duration = Duration::from_secs(6 * 3600);

/// Replaced topologies kept at most, however often the topology changes.
const MAX_PREVIOUS: usize = 64;

/// Least time between two re-reads of the topology that a `handoff-done`
/// for an epoch this node has not seen yet forces.
const FORCED_RELOAD_EVERY: Duration = Duration::from_secs(1);

pub struct Cluster {
    node_id: String,
    store: Option<DocumentStore>,
    current: RwLock<Arc<Topology>>,
    /// Topologies replaced within the last `grace`: slots this node gave up
    /// in any of them stay served while they are handed off, so a second
    /// change soon after the first does not cut the first one's grace short.
    previous: RwLock<Vec<Replaced>>,
    /// `handoff-done` reports of the nodes that gained slots: once every new
    /// owner of a slot has imported it, this node stops serving it even if
    /// the grace period has not run out.
    imported: RwLock<Vec<HandoffDone>>,
    /// When a `handoff-done` last made this node re-read the topology.
    forced_reload: Mutex<Option<Instant>>,
    grace: Duration,
    changes: watch::Sender<Arc<Topology>>,
    error: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// Builds the store for `cfg.topology`: an object in S3, reached with the
/// settings of a source in the same bucket (or the one named), or a file.
fn document_store(cfg: &ClusterConfig, sources: &[SourceConfig]) -> Result<Option<DocumentStore>> {
    let Some(location) = &cfg.topology else {
        return Ok(None);
    };
    let Some(rest) = location.strip_prefix("s3://") else {
        let path = location.strip_prefix("file://").unwrap_or(location);
        return Ok(Some(DocumentStore::File(path.into())));
    };
    let url = Url::parse(location)
        .map_err(|e| QuiverError::invalid(format!("cluster.topology {location}: {e}")))?;
    let bucket = url.host_str().unwrap_or_default();
    let key = url.path().trim_start_matches('/');
    if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
        return Err(QuiverError::invalid(format!(
            "cluster.topology s3://{rest} must name a bucket and an object key"
        )));
    }
    let same_bucket = |s: &&SourceConfig| {
        Url::parse(&s.url)
            .map(|u| u.scheme() == "s3" && u.host_str() == Some(bucket))
            .unwrap_or(false)
    };
    let borrowed = match &cfg.topology_source {
        Some(name) => sources.iter().find(|s| &s.name == name),
        None => sources.iter().find(same_bucket),
    };
    let settings = borrowed
        .cloned()
        .unwrap_or_else(|| SourceConfig::new("topology", &format!("s3://{bucket}/")));
    let store = source::s3_store(&settings, bucket)?;
    Ok(Some(DocumentStore::Object {
        store: Arc::new(store),
        path: Path::from(key),
        url: location.clone(),
    }))
}

fn parse(bytes: &[u8]) -> std::result::Result<Topology, String> {
    let t: Topology =
        serde_json::from_slice(bytes).map_err(|e| format!("it is not a topology document: {e}"))?;
    t.validate().map_err(|e| e.to_string())?;
    Ok(t)
}

impl Cluster {
    /// Reads the topology once; a missing or unusable document leaves the
    /// node owning every slot at epoch 0, reported through `health`.
    pub async fn open(
        cfg: &ClusterConfig,
        sources: &[SourceConfig],
        node_id: &str,
        advertise: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Cluster> {
        let mut alone = Topology::single(node_id, advertise);
        let store = document_store(cfg, sources)?;
        if store.is_some() {
            alone.epoch = 0;
        }
        let alone = Arc::new(alone);
        let cluster = Cluster {
            node_id: node_id.to_string(),
            store,
            previous: RwLock::default(),
            imported: RwLock::default(),
            forced_reload: Mutex::default(),
            grace: cfg.handoff_grace.0,
            changes: watch::channel(alone.clone()).0,
            current: RwLock::new(alone),
            error: Mutex::default(),
            metrics,
        };
        cluster.reload().await;
        Ok(cluster)
    }

    pub fn current(&self) -> Arc<Topology> {
        self.current
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Every adopted topology, for the hand-off task.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Topology>> {
        self.changes.subscribe()
    }

    /// The replaced topologies still within the grace period. Epoch 0 is a
    /// node running alone before the cluster existed: there is nothing to
    /// hand off from it.
    fn recent(&self) -> Vec<(Arc<Topology>, u64)> {
        self.replaced_within(self.grace)
    }

    fn replaced_within(&self, window: Duration) -> Vec<(Arc<Topology>, u64)> {
        let previous = self.previous.read().unwrap_or_else(|p| p.into_inner());
        previous
            .iter()
            .filter(|r| r.topology.epoch > 0 && r.since.elapsed() < window)
            .map(|r| (r.topology.clone(), r.by))
            .collect()
    }

    /// Whether this node owned `slot` before a recent change and keeps
    /// serving it to clients that have not seen the change yet: until every
    /// node that gained the slot reports its hand-off done, and for the
    /// grace period at most.
    pub fn serves_during_handoff(&self, slot: u16) -> bool {
        let recent = self.recent();
        if recent.is_empty() {
            return false;
        }
        let current = self.current();
        let now = current.owners(slot);
        let imported = self.imported.read().unwrap_or_else(|p| p.into_inner());
        recent.iter().any(|(before, by)| {
            let owners = before.owners(slot);
            owners.iter().any(|n| n.id == self.node_id)
                && now
                    .iter()
                    .filter(|n| !owners.iter().any(|o| o.id == n.id))
                    .any(|gainer| {
                        !imported.iter().any(|r| {
                            r.node == gainer.id
                                && r.epoch >= *by
                                && r.slots.iter().any(|&(s, e)| s <= slot && slot <= e)
                        })
                    })
        })
    }

    /// Whether this node owns `slot` now or gave it up within
    /// [`HANDOFF_READ_WINDOW`]: the slots whose chunks it hands to peers.
    pub fn holds(&self, slot: u16) -> bool {
        let mine = |t: &Topology| t.owners(slot).iter().any(|n| n.id == self.node_id);
        mine(&self.current())
            || self
                .replaced_within(HANDOFF_READ_WINDOW.max(self.grace))
                .iter()
                .any(|(t, _)| mine(t))
    }

    /// The nodes that owned `slot` before a recent change that gave it to
    /// this node, newest change first: who may still cache its chunks.
    pub fn previous_owners(&self, slot: u16) -> Vec<NodeInfo> {
        let current = self.current();
        if !current.owners(slot).iter().any(|n| n.id == self.node_id) {
            return Vec::new();
        }
        let mut out: Vec<NodeInfo> = Vec::new();
        for (before, _) in self.recent().iter().rev() {
            let owners = before.owners(slot);
            if owners.iter().any(|n| n.id == self.node_id) {
                continue;
            }
            for n in owners {
                if !out.iter().any(|o| o.id == n.id) {
                    out.push(n.clone());
                }
            }
        }
        out
    }

    /// Records that `report.node` imported `report.slots` at
    /// `report.epoch`. The node must own those slots at that epoch; a
    /// report for an epoch this node has not adopted yet makes it re-read
    /// the topology first. Returns whether the report was kept (a report
    /// older than the grace period is moot).
    pub async fn record_imported(&self, report: HandoffDone) -> Result<bool> {
        let mut covered: usize = 0;
        for &(start, end) in &report.slots {
            if start > end || end >= SLOT_COUNT {
                return Err(QuiverError::invalid(format!(
                    "slot range [{start}, {end}] is not within 0..={}",
                    SLOT_COUNT - 1
                )));
            }
            covered = covered.saturating_add(usize::from(end - start) + 1);
        }
        // Checking ownership costs one look-up per slot: a report can name
        // each slot once, not the slot space many times over.
        if covered > usize::from(SLOT_COUNT) {
            return Err(QuiverError::invalid(format!(
                "the report names {covered} slots; there are {SLOT_COUNT}"
            )));
        }
        if report.epoch > self.current().epoch && self.may_force_reload() {
            self.reload().await;
        }
        let current = self.current();
        if report.epoch > current.epoch {
            return Err(QuiverError::FailedPrecondition(format!(
                "this node is at epoch {}, not yet at the reported {}",
                current.epoch, report.epoch
            )));
        }
        let at = if report.epoch == current.epoch {
            Some(current)
        } else {
            self.recent()
                .into_iter()
                .map(|(t, _)| t)
                .find(|t| t.epoch == report.epoch)
        };
        let Some(at) = at else {
            return Ok(false);
        };
        for &(start, end) in &report.slots {
            if let Some(slot) =
                (start..=end).find(|&s| !at.owners(s).iter().any(|n| n.id == report.node))
            {
                return Err(QuiverError::invalid(format!(
                    "node {} does not own slot {slot} at epoch {}",
                    report.node, report.epoch
                )));
            }
        }
        let oldest = self.recent().iter().map(|(_, by)| *by).min();
        let mut imported = self.imported.write().unwrap_or_else(|p| p.into_inner());
        imported.retain(|r| oldest.is_some_and(|o| r.epoch >= o));
        if imported.len() >= MAX_IMPORTED {
            imported.remove(0);
        }
        imported.push(report);
        Ok(true)
    }

    pub fn status(&self) -> ClusterStatus {
        let t = self.current();
        ClusterStatus {
            epoch: t.epoch,
            nodes: t.nodes.len(),
            in_topology: t.node(&self.node_id).is_some(),
            topology: self.store.as_ref().map(|s| s.to_string()),
            error: self.error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Records the outcome of a reload; a fault is logged when it first
    /// appears, not on every interval while it lasts.
    fn report(&self, error: Option<String>) {
        let Ok(mut slot) = self.error.lock() else {
            return;
        };
        if let Some(e) = &error {
            self.metrics.topology_errors.inc();
            if slot.as_ref() != Some(e) {
                tracing::error!(error = %e, epoch = self.current().epoch, "topology not adopted; keeping the last good one");
            }
        }
        *slot = error;
    }

    /// Whether a report may make this node re-read its topology now: at
    /// most once per [`FORCED_RELOAD_EVERY`], so reports of made-up epochs
    /// cannot turn into a stream of reads of the document.
    fn may_force_reload(&self) -> bool {
        let mut last = self.forced_reload.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < FORCED_RELOAD_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Adopts `t` if it is newer than what the node has.
    fn adopt(&self, t: Topology) -> bool {
        let Ok(mut current) = self.current.write() else {
            return false;
        };
        if t.epoch <= current.epoch {
            return false;
        }
        if t.node(&self.node_id).is_none() {
            tracing::warn!(
                epoch = t.epoch,
                node_id = %self.node_id,
                "this node is not in the topology; it owns no slots and redirects every read"
            );
        }
        tracing::info!(epoch = t.epoch, nodes = t.nodes.len(), "topology adopted");
        self.metrics.topology_epoch.set(t.epoch as i64);
        let t = Arc::new(t);
        let old = std::mem::replace(&mut *current, t.clone());
        drop(current);
        let mut previous = self.previous.write().unwrap_or_else(|p| p.into_inner());
        let keep = HANDOFF_READ_WINDOW.max(self.grace);
        previous.retain(|r| r.since.elapsed() < keep);
        if previous.len() >= MAX_PREVIOUS {
            previous.remove(0);
        }
        previous.push(Replaced {
            topology: old,
            by: t.epoch,
            since: Instant::now(),
        });
        drop(previous);
        self.changes.send_replace(t);
        true
    }

    /// Re-reads the document and adopts it if it is valid and newer.
    pub async fn reload(&self) {
        let Some(store) = &self.store else {
            return;
        };
        let doc = match store.read().await {
            Ok(Some(doc)) => doc,
            Ok(None) => return self.report(None),
            Err(e) => return self.report(Some(format!("cannot read {store}: {e}"))),
        };
        let t = match parse(&doc.bytes) {
            Ok(t) => t,
            Err(e) => return self.report(Some(format!("{store} is malformed: {e}"))),
        };
        let have = self.current().epoch;
        if t.epoch < have {
            return self.report(Some(format!(
                "{store} holds epoch {}, older than this node's {have}",
                t.epoch
            )));
        }
        self.adopt(t);
        self.report(None);
    }

    /// Replaces the document with `new` if it still holds `expected_epoch`
    /// (0: no document yet), then adopts it. Concurrent updates are
    /// serialised by the store's compare-and-swap: the loser is told the
    /// epoch it lost to.
    pub async fn update(&self, expected_epoch: u64, new: Topology) -> Result<Arc<Topology>> {
        let store = self.store.as_ref().ok_or_else(|| {
            QuiverError::FailedPrecondition(
                "this node has no cluster.topology configured, so it runs alone".into(),
            )
        })?;
        new.validate()
            .map_err(|e| QuiverError::invalid(format!("the new topology is invalid: {e}")))?;
        if new.epoch <= expected_epoch {
            return Err(QuiverError::invalid(format!(
                "the new topology's epoch {} must be above {expected_epoch}",
                new.epoch
            )));
        }
        let doc = store.read().await?;
        let (stored_epoch, version) = match &doc {
            None => (0, None),
            Some(d) => (
                parse(&d.bytes).map(|t| t.epoch).map_err(|e| {
                    QuiverError::FailedPrecondition(format!(
                        "{store} is malformed ({e}); fix or remove it first"
                    ))
                })?,
                Some(d.version.as_str()),
            ),
        };
        if stored_epoch != expected_epoch {
            // Catch up, so the caller's next `cluster-shards` here is fresh.
            self.reload().await;
            return Err(QuiverError::FailedPrecondition(format!(
                "EPOCH {stored_epoch}: the topology is at epoch {stored_epoch}, not {expected_epoch}; re-read it and retry"
            )));
        }
        let bytes = serde_json::to_vec_pretty(&new)
            .map_err(|e| QuiverError::Internal(format!("cannot encode the topology: {e}")))?;
        match store.write(Bytes::from(bytes), version).await {
            Ok(()) => {}
            Err(WriteError::Conflict) => {
                self.reload().await;
                return Err(QuiverError::FailedPrecondition(format!(
                    "EPOCH {stored_epoch}: another update changed the topology first; re-read it and retry"
                )));
            }
            Err(WriteError::Other(e)) => return Err(e),
        }
        self.adopt(new);
        self.report(None);
        Ok(self.current())
    }

    /// Re-reads the document every `interval` until `stop` turns true.
    pub async fn reload_every(
        self: Arc<Self>,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        if self.store.is_none() {
            return;
        }
        while !*stop.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(interval) => self.reload().await,
                // The sender only ever sends `true`, and dropping it ends
                // the node too.
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_protocol::NodeInfo;

    fn node(i: usize) -> NodeInfo {
        NodeInfo {
            id: format!("n{i}"),
            url: format!("grpc://127.0.0.1:{i}"),
        }
    }

    /// The slots `t` gives `id` (as primary or replica).
    fn owned_by(t: &Topology, id: &str) -> std::collections::HashSet<u16> {
        (0..quiver_protocol::SLOT_COUNT)
            .filter(|&s| t.owners(s).iter().any(|n| n.id == id))
            .collect()
    }

    #[tokio::test]
    async fn two_changes_in_one_grace_period_keep_both_windows() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ClusterConfig {
            topology: Some(dir.path().join("topology.json").display().to_string()),
            ..Default::default()
        };
        let cluster = Cluster::open(
            &cfg,
            &[],
            "n1",
            "grpc://127.0.0.1:1",
            Arc::new(Metrics::new()),
        )
        .await
        .unwrap();
        let t1 = Topology::initial(vec![node(1), node(2)], 1).unwrap();
        cluster.update(0, t1.clone()).await.unwrap();
        // Two nodes join one after the other; n1 gives slots up each time.
        let t2 = t1.with_node(node(3)).unwrap().rebalance().unwrap();
        let t2 = Topology { epoch: 2, ..t2 };
        cluster.update(1, t2.clone()).await.unwrap();
        let t3 = t2.with_node(node(4)).unwrap().rebalance().unwrap();
        let t3 = Topology { epoch: 3, ..t3 };
        cluster.update(2, t3.clone()).await.unwrap();
        let (m1, m2, m3) = (
            owned_by(&t1, "n1"),
            owned_by(&t2, "n1"),
            owned_by(&t3, "n1"),
        );
        let lost_first: Vec<u16> = m1.iter().copied().filter(|s| !m2.contains(s)).collect();
        let lost_second: Vec<u16> = m2.iter().copied().filter(|s| !m3.contains(s)).collect();
        assert!(!lost_first.is_empty() && !lost_second.is_empty());
        for slot in lost_first.iter().chain(&lost_second) {
            assert!(
                cluster.serves_during_handoff(*slot),
                "slot {slot}, given up within the grace period, is no longer served"
            );
        }
        // Slots n1 never owned are not served.
        let never = (0..quiver_protocol::SLOT_COUNT)
            .find(|s| !m1.contains(s) && !m2.contains(s))
            .unwrap();
        assert!(!cluster.serves_during_handoff(never));
    }
}
