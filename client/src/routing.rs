//! Reads objects from the cluster the way DESIGN §4 asks of a client: send
//! each DoGet straight to a node that owns the object's slot, chosen by a
//! score; fail over to the next owner on an error; follow `MOVED` by
//! refreshing the slot map and retrying once; and when every owner fails,
//! read the object directly from its source so the query still completes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::{FlightClient, Ticket};
use bytes::Bytes;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use object_store::ObjectStore;
use quiver_protocol::{slot_of, Moved, NodeInfo, ScanRequest, Topology};
use tonic::transport::Channel;
use url::Url;

use crate::connect::{endpoint_url, ClientError};

/// Weights of the owner score `latency * ms + cost * node cost +
/// uptime * (1 - uptime)`; the lowest score is tried first.
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    pub latency: f64,
    pub cost: f64,
    pub uptime: f64,
}

impl Default for Weights {
    /// Latency in milliseconds counts as is; an owner failing half its
    /// requests ranks as if it were 500 ms slower.
    fn default() -> Self {
        Weights {
            latency: 1.0,
            cost: 0.0,
            uptime: 1000.0,
        }
    }
}

/// Where to read a source's objects when no node can serve them: the
/// source's root URL (`s3://bucket/prefix/` or `file:///dir/`) and a store
/// for that URL's bucket or filesystem.
#[derive(Clone)]
pub struct DirectSource {
    pub root: Url,
    pub store: Arc<dyn ObjectStore>,
}

#[derive(Clone)]
pub struct ClientConfig {
    /// Nodes to learn the topology from; any one answering is enough.
    pub seeds: Vec<String>,
    pub token: Option<String>,
    pub weights: Weights,
    /// Cost per node id (e.g. cross-zone transfer); 0 when absent.
    pub node_costs: HashMap<String, f64>,
    /// Direct-read fallback per source name.
    pub direct: HashMap<String, DirectSource>,
    /// Longest one DoGet may take before the next owner is tried.
    pub timeout: Duration,
}

impl ClientConfig {
    pub fn new(seeds: Vec<String>) -> Self {
        ClientConfig {
            seeds,
            token: None,
            weights: Weights::default(),
            node_costs: HashMap::new(),
            direct: HashMap::new(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// Who answered a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    Node(String),
    Direct,
}

#[derive(Debug)]
pub struct Scan {
    pub batches: Vec<RecordBatch>,
    pub served_by: Served,
}

/// What the client has seen of a node, decayed so old faults fade.
#[derive(Debug, Clone, Copy, Default)]
struct Health {
    latency_ms: Option<f64>,
    ok: f64,
    failed: f64,
}

impl Health {
    const DECAY: f64 = 0.9;

    fn uptime(&self) -> f64 {
        (self.ok + 1.0) / (self.ok + self.failed + 1.0)
    }

    fn success(&mut self, ms: f64) {
        self.latency_ms = Some(match self.latency_ms {
            Some(l) => 0.8 * l + 0.2 * ms,
            None => ms,
        });
        self.ok = self.ok * Self::DECAY + 1.0;
        self.failed *= Self::DECAY;
    }

    fn failure(&mut self) {
        self.failed = self.failed * Self::DECAY + 1.0;
        self.ok *= Self::DECAY;
    }
}

/// Errors that another owner would answer the same way: the request itself
/// is wrong, so failing over would only repeat it.
fn is_final(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        InvalidArgument | NotFound | DataLoss | Unauthenticated | PermissionDenied
    )
}

pub struct QuiverClient {
    cfg: ClientConfig,
    map: RwLock<Arc<Topology>>,
    channels: Mutex<HashMap<String, Channel>>,
    health: Mutex<HashMap<String, Health>>,
}

impl QuiverClient {
    /// Learns the topology from the first seed that answers.
    pub async fn connect(cfg: ClientConfig) -> Result<QuiverClient, ClientError> {
        if cfg.seeds.is_empty() {
            return Err(ClientError::Refused("give at least one seed node".into()));
        }
        let first = cfg.seeds[0].clone();
        let client = QuiverClient {
            map: RwLock::new(Arc::new(Topology::single("seed", &first))),
            cfg,
            channels: Mutex::default(),
            health: Mutex::default(),
        };
        let mut seeds = client.cfg.seeds.clone();
        let mut last = None;
        for seed in seeds.drain(..) {
            match client.refresh_from(&seed).await {
                Ok(()) => return Ok(client),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Refused("no seed answered".into())))
    }

    /// The slot map the client routes with.
    pub fn topology(&self) -> Arc<Topology> {
        self.map
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn channel(&self, url: &str) -> Result<Channel, ClientError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(url) {
            return Ok(c.clone());
        }
        let channel = Channel::from_shared(endpoint_url(url)?)
            .map_err(|e| ClientError::BadUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        channels.insert(url.to_string(), channel.clone());
        Ok(channel)
    }

    fn flight(&self, url: &str) -> Result<FlightClient, ClientError> {
        let mut client = FlightClient::new(self.channel(url)?);
        if let Some(token) = &self.cfg.token {
            client
                .add_header("authorization", &format!("Bearer {token}"))
                .map_err(|e| ClientError::Decode(e.to_string()))?;
        }
        Ok(client)
    }

    /// Asks `url` for its topology and adopts it if it is not older.
    async fn refresh_from(&self, url: &str) -> Result<(), ClientError> {
        let mut client = self.flight(url)?;
        let answer: Vec<Bytes> = tokio::time::timeout(
            self.cfg.timeout,
            client.do_action(arrow_flight::Action::new("cluster-shards", Bytes::new())),
        )
        .await
        .map_err(|_| ClientError::Connect {
            url: url.to_string(),
            reason: "timed out".into(),
        })??
        .try_collect()
        .await?;
        let body = answer
            .first()
            .ok_or_else(|| ClientError::Decode("cluster-shards returned nothing".into()))?;
        let t: Topology =
            serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        t.validate()?;
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if t.epoch >= map.epoch {
            *map = Arc::new(t);
        }
        Ok(())
    }

    /// Refreshes the slot map from any node that answers.
    pub async fn refresh(&self) -> Result<(), ClientError> {
        let known: Vec<String> = self
            .topology()
            .nodes
            .iter()
            .map(|n| n.url.clone())
            .collect();
        let mut last = None;
        for url in known.iter().chain(&self.cfg.seeds) {
            match self.refresh_from(url).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Refused("no node answered".into())))
    }

    fn score(&self, node: &NodeInfo, health: &HashMap<String, Health>) -> f64 {
        let h = health.get(&node.id).copied().unwrap_or_default();
        let w = self.cfg.weights;
        w.latency * h.latency_ms.unwrap_or(0.0)
            + w.cost * self.cfg.node_costs.get(&node.id).copied().unwrap_or(0.0)
            + w.uptime * (1.0 - h.uptime())
    }

    /// The owners of `slot`, best score first; ties keep the topology's
    /// order, so the primary is preferred until there is evidence.
    fn ranked(&self, slot: u16) -> Vec<NodeInfo> {
        let t = self.topology();
        let mut owners: Vec<NodeInfo> = t.owners(slot).into_iter().cloned().collect();
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        owners.sort_by(|a, b| self.score(a, &health).total_cmp(&self.score(b, &health)));
        owners
    }

    fn record(&self, node: &str, outcome: Option<f64>) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let h = health.entry(node.to_string()).or_default();
        match outcome {
            Some(ms) => h.success(ms),
            None => h.failure(),
        }
    }

    async fn do_get(&self, url: &str, req: &ScanRequest) -> Result<Vec<RecordBatch>, ClientError> {
        let mut client = self.flight(url)?;
        let read = async {
            let stream = client.do_get(Ticket::new(req.to_bytes())).await?;
            Ok::<_, ClientError>(stream.try_collect().await?)
        };
        tokio::time::timeout(self.cfg.timeout, read)
            .await
            .map_err(|_| ClientError::Connect {
                url: url.to_string(),
                reason: format!("no answer within {:?}", self.cfg.timeout),
            })?
    }

    /// Reads one object (`source` + `path`) with the request's projection,
    /// filter and limit.
    pub async fn scan(&self, req: &ScanRequest) -> Result<Scan, ClientError> {
        let (Some(source), Some(path)) = (&req.source, &req.path) else {
            return Err(ClientError::Refused(
                "scan reads one object: give source and path".into(),
            ));
        };
        let slot = slot_of(source, path);
        let mut followed_redirect = false;
        let mut last: Option<ClientError> = None;
        'route: loop {
            for node in self.ranked(slot) {
                let started = Instant::now();
                match self.do_get(&node.url, req).await {
                    Ok(batches) => {
                        self.record(&node.id, Some(started.elapsed().as_secs_f64() * 1000.0));
                        return Ok(Scan {
                            batches,
                            served_by: Served::Node(node.id),
                        });
                    }
                    Err(ClientError::Status { code, message }) => {
                        if let Some(moved) = Moved::parse(&message) {
                            if !followed_redirect {
                                followed_redirect = true;
                                // The redirecting node knows a newer map;
                                // the primary it names knows it too.
                                if self.refresh_from(&moved.url).await.is_err() {
                                    let _ = self.refresh().await;
                                }
                                continue 'route;
                            }
                        }
                        if is_final(code) || message.starts_with("CHANGED ") {
                            return Err(ClientError::Status { code, message });
                        }
                        self.record(&node.id, None);
                        last = Some(ClientError::Status { code, message });
                    }
                    Err(e) => {
                        self.record(&node.id, None);
                        last = Some(e);
                    }
                }
            }
            break;
        }
        match self.cfg.direct.get(source) {
            Some(direct) => Ok(Scan {
                batches: read_direct(direct, path, req).await?,
                served_by: Served::Direct,
            }),
            None => Err(ClientError::Refused(format!(
                "no owner of slot {slot} could serve {source}/{path}, and no direct source is configured: {}",
                last.map(|e| e.to_string())
                    .unwrap_or_else(|| "the slot has no owner".into())
            ))),
        }
    }
}

/// The object read straight from its source with DataFusion, with the same
/// projection, filter and limit a node would apply.
async fn read_direct(
    direct: &DirectSource,
    path: &str,
    req: &ScanRequest,
) -> Result<Vec<RecordBatch>, ClientError> {
    let df = |e: datafusion::error::DataFusionError| {
        ClientError::Refused(format!("direct read of {path} failed: {e}"))
    };
    let url = direct.root.join(path).map_err(|e| ClientError::BadUrl {
        url: path.to_string(),
        reason: e.to_string(),
    })?;
    let ctx = SessionContext::new();
    let mut base = url.clone();
    base.set_path("/");
    ctx.register_object_store(&base, direct.store.clone());
    ctx.register_parquet("t", url.as_str(), ParquetReadOptions::default())
        .await
        .map_err(df)?;
    let columns = match &req.columns {
        Some(c) => c
            .iter()
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(", "),
        None => "*".into(),
    };
    let mut sql = format!("SELECT {columns} FROM t");
    if let Some(f) = &req.filter {
        sql.push_str(&format!(" WHERE {f}"));
    }
    if let Some(n) = req.limit {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    ctx.sql(&sql).await.map_err(df)?.collect().await.map_err(df)
}

#[cfg(test)]
mod tests {
    use super::Health;

    #[test]
    fn failures_lower_uptime_and_fade() {
        let mut h = Health::default();
        assert_eq!(h.uptime(), 1.0);
        h.failure();
        h.failure();
        let low = h.uptime();
        assert!(low < 0.5, "{low}");
        for _ in 0..30 {
            h.success(5.0);
        }
        assert!(h.uptime() > 0.9, "{}", h.uptime());
        assert_eq!(h.latency_ms, Some(5.0));
    }
}
