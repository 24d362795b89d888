//! The state every request handler shares: sources, caches, scanner,
//! limits, cluster view and metrics. The Flight adapter, the actions, the
//! hand-off and the admin HTTP server depend on this module, and `node`
//! builds it; nothing here depends on `node`, so there is no cycle back
//! from the handlers into the wiring.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use quiver_protocol::{slot_of, NodeInfo, Topology};
use quiver_sql::QuiverSql;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::activity::Activity;
use crate::auth::Auth;
use crate::cache::{CachingObjectStore, ChunkCache, DiskHealth};
use crate::cluster::handoff::progress::Progress;
use crate::cluster::peers::Peers;
use crate::cluster::Cluster;
use crate::error::{QuiverError, Result};
use crate::metrics::{GaugeHold, Metrics};
use crate::miss::{MissRules, Warmer};
use crate::scan::Scanner;
use crate::source::{ObjectId, Sources, Target};

/// Everything a request handler needs, shared by the Flight and admin
/// servers.
pub struct NodeCore {
    pub node_id: String,
    pub advertise: String,
    pub sources: Sources,
    pub(crate) stores: HashMap<Arc<str>, Arc<CachingObjectStore>>,
    pub chunks: ChunkCache,
    pub scanner: Scanner,
    pub metrics: Arc<Metrics>,
    pub auth: Auth,
    pub scan_slots: Arc<Semaphore>,
    pub max_scans: usize,
    /// Places in the queue for a scan slot.
    pub(crate) queue_slots: Arc<Semaphore>,
    pub(crate) scan_queue_timeout: Duration,
    pub(crate) plan_slots: Arc<Semaphore>,
    pub(crate) max_plans: usize,
    /// `limits.split_bytes`: objects above it get one endpoint per range
    /// of row groups of about this size.
    pub split_bytes: u64,
    pub request_timeout: Duration,
    /// How long a scan waits for its client to take the next message.
    pub stall_timeout: Duration,
    pub cluster: Arc<Cluster>,
    /// How this node calls the other nodes: TLS trust and peer credential.
    pub peers: Peers,
    pub handoff: Arc<Progress>,
    /// Whether the disk tier still works.
    pub disk_health: Arc<DiskHealth>,
    /// Which cold objects go out as pre-signed URLs.
    pub miss: MissRules,
    /// Background warm-ups queued after pre-signed URLs.
    pub warmer: Arc<Warmer>,
    /// Flight SQL, when enabled: the Flight adapter hands it every Flight
    /// SQL message.
    pub sql: Option<Arc<QuiverSql>>,
    /// Recent failures and the most requested objects, for the admin
    /// status page.
    pub activity: Activity,
    pub ready: AtomicBool,
}

impl std::fmt::Debug for NodeCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCore")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl NodeCore {
    pub fn store(&self, source: &str) -> Result<&Arc<CachingObjectStore>> {
        self.stores
            .get(source)
            .ok_or_else(|| QuiverError::NotFound(format!("there is no source named `{source}`")))
    }

    /// The objects a target names: the one object (which must exist), or the
    /// Parquet objects under a prefix (at least one).
    pub async fn objects(&self, target: &Target, immutable: bool) -> Result<Vec<ObjectId>> {
        match target {
            Target::Object { source, path } => {
                Ok(vec![source.identity_for(path, immutable).await?])
            }
            Target::Prefix { source, prefix } => {
                let ids = source.list(prefix).await?;
                if ids.is_empty() {
                    return Err(QuiverError::NotFound(format!(
                        "there are no Parquet objects under {}/{}",
                        source.name, prefix
                    )));
                }
                Ok(ids)
            }
        }
    }

    /// A slot for one scan, held while it streams. When all are taken the
    /// scan waits its turn for up to `scan_queue_timeout` (a burst of
    /// clients is served in turn rather than refused), unless the queue is
    /// full; then, or when the wait runs out, it is ResourceExhausted.
    pub async fn scan_permit(&self) -> Result<OwnedSemaphorePermit> {
        if let Ok(permit) = self.scan_slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let busy = |why: &str| {
            QuiverError::ResourceExhausted(format!(
                "this node is already running its maximum of {} scans{why}; retry shortly",
                self.max_scans
            ))
        };
        if self.scan_queue_timeout.is_zero() {
            return Err(busy(""));
        }
        let Ok(_place) = self.queue_slots.clone().try_acquire_owned() else {
            return Err(busy(" and its queue is full"));
        };
        let _waiting = GaugeHold::new(&self.metrics.queued_scans);
        match tokio::time::timeout(
            self.scan_queue_timeout,
            self.scan_slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(busy(&format!(
                " and none came free within {}",
                humantime::format_duration(self.scan_queue_timeout)
            ))),
        }
    }

    /// A slot for one planning call, held while it runs; refused at once
    /// when every slot is taken.
    pub fn plan_permit(&self) -> Result<OwnedSemaphorePermit> {
        self.plan_slots.clone().try_acquire_owned().map_err(|_| {
            QuiverError::ResourceExhausted(format!(
                "this node is already planning its maximum of {} requests; retry shortly",
                self.max_plans
            ))
        })
    }

    pub fn topology(&self) -> Arc<Topology> {
        self.cluster.current()
    }

    /// Refuses a read of an object whose slot this node does not own,
    /// pointing the client at the primary owner.
    pub fn check_owner(&self, id: &ObjectId) -> Result<()> {
        let slot = slot_of(&id.source, id.path.as_ref());
        let topology = self.topology();
        let owners = topology.owners(slot);
        if owners.iter().any(|n| n.id == self.node_id) || self.cluster.serves_during_handoff(slot) {
            return Ok(());
        }
        Err(QuiverError::Moved {
            slot,
            epoch: topology.epoch,
            url: owners.first().map(|n| n.url.clone()).unwrap_or_default(),
        })
    }

    /// The nodes that own an object, primary first.
    pub fn owners(&self, id: &ObjectId) -> Vec<NodeInfo> {
        self.topology()
            .owners(slot_of(&id.source, id.path.as_ref()))
            .into_iter()
            .cloned()
            .collect()
    }
}
