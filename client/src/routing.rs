//! Reads from the cluster as protocol.md §5 ("Clients") describes: plan with any
//! node, send each DoGet straight to a node that owns the object's slot,
//! chosen by a score; fail over to the next owner on an error; follow
//! `MOVED` by refreshing the slot map; and when every owner fails, read the
//! object directly from its source so the query still completes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::{Action, FlightClient, FlightDescriptor, Ticket};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use quiver_protocol::{slot_of, Accept, ListCriteria, Moved, ObjectListing, ScanRequest, Topology};
use tonic::transport::Channel;

use crate::connect::{flight_client_with, Connector, Credentials};
use crate::direct::{read_direct, DirectSource};
use crate::error::ClientError;
use crate::plan::{to_wire, wire_schema, Endpoint, Plan};
use crate::presigned::{read_presigned, Presigned};
use crate::stream::{limit_rows, with_progress_timeout, BatchStream};

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

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Nodes to learn the topology from and to plan with; any one answering
    /// is enough.
    pub seeds: Vec<String>,
    /// TLS trust and credentials.
    pub connector: Connector,
    pub weights: Weights,
    /// Cost per node id (e.g. cross-zone transfer); 0 when absent.
    pub node_costs: HashMap<String, f64>,
    /// Direct-read fallback per source name.
    pub direct: HashMap<String, DirectSource>,
    /// Longest wait for a node's next message: the first batch of a read,
    /// then each following one. A long healthy scan is never cut; a stalled
    /// node is left for the next owner (before the first batch) or reported.
    pub timeout: Duration,
    /// Endpoints read at once by [`QuiverClient::read`] and
    /// [`QuiverClient::collect`].
    pub parallelism: usize,
    /// Follow pre-signed URLs: plans ask for them (`accept: ["flight",
    /// "presigned"]`), so a cold object is read straight from the store
    /// while its owner warms it; and when no owner can serve an object, a
    /// node is asked for a URL before giving up. Needs a network path to the
    /// store.
    pub accept_presigned: bool,
}

impl ClientConfig {
    pub fn new(seeds: Vec<String>) -> Self {
        ClientConfig {
            seeds,
            connector: Connector::default(),
            weights: Weights::default(),
            node_costs: HashMap::new(),
            direct: HashMap::new(),
            timeout: Duration::from_secs(60),
            parallelism: 8,
            accept_presigned: false,
        }
    }

    /// Sends `token` as a bearer token on every call.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.connector.credentials = Credentials::Bearer(token.into());
        self
    }
}

/// Who answered a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    Node(String),
    /// The store, through a pre-signed URL a node handed out.
    Presigned,
    Direct,
}

/// One object read whole.
#[derive(Debug)]
pub struct Scan {
    pub batches: Vec<RecordBatch>,
    pub served_by: Served,
}

/// A whole scan read into memory, endpoints in plan order.
#[derive(Debug, Clone)]
pub struct Table {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Table {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// An object as `ListFlights` describes it.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub listing: ObjectListing,
    /// Its row count, from its footer.
    pub rows: Option<u64>,
    pub schema: Option<SchemaRef>,
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
fn is_final(e: &ClientError) -> bool {
    use tonic::Code::*;
    match e {
        ClientError::Status { code, message, .. } => {
            matches!(
                code,
                InvalidArgument | NotFound | DataLoss | Unauthenticated | PermissionDenied
            ) || message.starts_with("CHANGED ")
        }
        ClientError::BadUrl { .. } | ClientError::Tls(_) | ClientError::Refused(_) => true,
        _ => false,
    }
}

struct Inner {
    cfg: ClientConfig,
    /// The bearer token every call carries (from the config, or from the
    /// Basic handshake made at connect time).
    token: Option<String>,
    map: RwLock<Arc<Topology>>,
    channels: Mutex<HashMap<String, Channel>>,
    health: Mutex<HashMap<String, Health>>,
}

/// A client of a Quiver cluster. Cheap to clone; clones share the slot map,
/// connections and what was learnt of each node's health.
#[derive(Clone)]
pub struct QuiverClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for QuiverClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuiverClient")
            .field("seeds", &self.inner.cfg.seeds)
            .field("epoch", &self.topology().epoch)
            .finish_non_exhaustive()
    }
}

/// A candidate for one read: a node URL and, when the map knows it, its id.
#[derive(Debug, Clone)]
struct Candidate {
    url: String,
    id: Option<String>,
}

impl QuiverClient {
    /// Authenticates with the first seed that answers and learns the
    /// topology from it.
    pub async fn connect(cfg: ClientConfig) -> Result<QuiverClient, ClientError> {
        let Some(first) = cfg.seeds.first().cloned() else {
            return Err(ClientError::Refused("give at least one node URL".into()));
        };
        for seed in &cfg.seeds {
            crate::connect::endpoint_url(seed)?;
        }
        let mut last = None;
        for seed in &cfg.seeds {
            let token = match cfg.connector.token(seed).await {
                Ok(t) => t,
                Err(e) if is_final(&e) || e.code().is_some() => return Err(e),
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let client = QuiverClient {
                inner: Arc::new(Inner {
                    map: RwLock::new(Arc::new(Topology::single("seed", &first))),
                    cfg: cfg.clone(),
                    token,
                    channels: Mutex::default(),
                    health: Mutex::default(),
                }),
            };
            match client.refresh_from(seed).await {
                Ok(()) => return Ok(client),
                Err(e) if e.code().is_some_and(|c| c != tonic::Code::Unavailable) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Refused("no node answered".into())))
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The slot map the client routes with.
    pub fn topology(&self) -> Arc<Topology> {
        self.inner
            .map
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn channel(&self, url: &str) -> Result<Channel, ClientError> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(url) {
            return Ok(c.clone());
        }
        let channel = self.inner.cfg.connector.channel(url)?;
        channels.insert(url.to_string(), channel.clone());
        Ok(channel)
    }

    /// A Flight client for `url` carrying the token.
    pub fn flight(&self, url: &str) -> Result<FlightClient, ClientError> {
        flight_client_with(self.channel(url)?, self.inner.token.as_deref())
    }

    /// Runs `call` against `url` within the configured timeout.
    async fn timed<T>(
        &self,
        url: &str,
        call: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let timeout = self.inner.cfg.timeout;
        match tokio::time::timeout(timeout, call).await {
            Ok(r) => r.map_err(|e| e.at(url)),
            Err(_) => Err(ClientError::Connect {
                url: url.to_string(),
                reason: format!("no answer within {timeout:?}"),
            }),
        }
    }

    /// Asks `url` for its topology and adopts it unless it is older than the
    /// one the client has (a node that lags never rolls the map back).
    async fn refresh_from(&self, url: &str) -> Result<(), ClientError> {
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
    fn planners(&self) -> Vec<String> {
        let mut urls = self.inner.cfg.seeds.clone();
        for n in &self.topology().nodes {
            if !urls.contains(&n.url) {
                urls.push(n.url.clone());
            }
        }
        urls
    }

    /// Runs a planning call on the first node that can be reached; an
    /// answer from a node, even an error, is final.
    async fn on_any_node<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(FlightClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut last = None;
        for url in self.planners() {
            let client = self.flight(&url)?;
            match self.timed(&url, call(client)).await {
                Ok(v) => return Ok(v),
                Err(e @ ClientError::Connect { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Refused("no node answered".into())))
    }

    /// Plans `req` (an object or a prefix): the projected schema and one
    /// endpoint per object, each naming its owners.
    pub async fn plan(&self, req: &ScanRequest) -> Result<Plan, ClientError> {
        let mut req = req.clone();
        if self.inner.cfg.accept_presigned && req.accept.is_none() {
            req.accept = Some(vec![Accept::Flight, Accept::Presigned]);
        }
        let cmd = Bytes::from(req.to_bytes());
        let info = self
            .on_any_node(|mut c| {
                let cmd = cmd.clone();
                async move { Ok(c.get_flight_info(FlightDescriptor::new_cmd(cmd)).await?) }
            })
            .await?;
        Plan::from_flight_info(info, req.limit)
    }

    /// The projected schema `req` would return, checked against every
    /// object it names.
    pub async fn schema(&self, req: &ScanRequest) -> Result<SchemaRef, ClientError> {
        let cmd = Bytes::from(req.to_bytes());
        let schema = self
            .on_any_node(|mut c| {
                let cmd = cmd.clone();
                async move { Ok(c.get_schema(FlightDescriptor::new_cmd(cmd)).await?) }
            })
            .await?;
        Ok(Arc::new(schema))
    }

    /// The objects under `source`/`path` (a key or a prefix ending in `/`)
    /// with their sizes, versions, row counts and how much is cached.
    pub async fn list(&self, source: &str, path: &str) -> Result<Vec<ObjectInfo>, ClientError> {
        let criteria = serde_json::to_vec(&ListCriteria {
            source: source.to_string(),
            path: path.to_string(),
        })
        .map_err(|e| ClientError::Decode(e.to_string()))?;
        let infos: Vec<arrow_flight::FlightInfo> = self
            .on_any_node(|mut c| {
                let criteria = Bytes::from(criteria.clone());
                async move {
                    let s = c.list_flights(criteria).await?;
                    Ok(s.try_collect().await?)
                }
            })
            .await?;
        infos
            .into_iter()
            .map(|info| {
                let listing: ObjectListing = serde_json::from_slice(&info.app_metadata)
                    .map_err(|e| ClientError::Decode(format!("a listing: {e}")))?;
                let rows = u64::try_from(info.total_records).ok();
                let schema = info.try_decode_schema().ok().map(Arc::new);
                Ok(ObjectInfo {
                    listing,
                    rows,
                    schema,
                })
            })
            .collect()
    }

    /// Runs action `kind` on the node at `url` and returns its results.
    pub async fn action_on(
        &self,
        url: &str,
        kind: &str,
        body: Bytes,
    ) -> Result<Vec<Bytes>, ClientError> {
        let mut client = self.flight(url)?;
        self.timed(url, async {
            let s = client.do_action(Action::new(kind, body)).await?;
            Ok(s.try_collect().await?)
        })
        .await
    }

    /// Runs action `kind` on the node the action's body concerns, streaming
    /// its results (prefetch reports progress this way).
    pub async fn action_stream(
        &self,
        url: &str,
        kind: &str,
        body: Bytes,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, ClientError>>, ClientError> {
        let mut client = self.flight(url)?;
        let stream = self
            .timed(url, async {
                Ok(client.do_action(Action::new(kind, body)).await?)
            })
            .await?;
        let url = url.to_string();
        Ok(stream
            .map_err(move |e| ClientError::from(e).at(&url))
            .boxed())
    }

    fn score(&self, id: &str, health: &HashMap<String, Health>) -> f64 {
        let h = health.get(id).copied().unwrap_or_default();
        let w = self.inner.cfg.weights;
        w.latency * h.latency_ms.unwrap_or(0.0)
            + w.cost * self.inner.cfg.node_costs.get(id).copied().unwrap_or(0.0)
            + w.uptime * (1.0 - h.uptime())
    }

    /// Where to read an endpoint, best first: the owners of its slot in the
    /// client's map ranked by score (ties keep the topology's order, so the
    /// primary is preferred until there is evidence), then any location the
    /// planning node named that the map does not know.
    fn candidates(&self, endpoint: &Endpoint) -> Vec<Candidate> {
        let t = self.topology();
        let mut owners: Vec<Candidate> = match (&endpoint.ticket.source, &endpoint.ticket.path) {
            (Some(source), Some(path)) => t
                .owners(slot_of(source, path))
                .into_iter()
                .map(|n| Candidate {
                    url: n.url.clone(),
                    id: Some(n.id.clone()),
                })
                .collect(),
            _ => Vec::new(),
        };
        {
            let health = self.inner.health.lock().unwrap_or_else(|p| p.into_inner());
            owners.sort_by(|a, b| {
                let sa = a.id.as_deref().map_or(0.0, |id| self.score(id, &health));
                let sb = b.id.as_deref().map_or(0.0, |id| self.score(id, &health));
                sa.total_cmp(&sb)
            });
        }
        for url in &endpoint.locations {
            if !owners.iter().any(|c| &c.url == url) {
                owners.push(Candidate {
                    url: url.clone(),
                    id: t.nodes.iter().find(|n| &n.url == url).map(|n| n.id.clone()),
                });
            }
        }
        owners
    }

    fn record(&self, node: &Candidate, outcome: Option<f64>) {
        let Some(id) = &node.id else { return };
        let mut health = self.inner.health.lock().unwrap_or_else(|p| p.into_inner());
        let h = health.entry(id.clone()).or_default();
        match outcome {
            Some(ms) => h.success(ms),
            None => h.failure(),
        }
    }

    /// Opens a DoGet at `url` and waits for its first batch, so that a node
    /// that fails before sending anything can be replaced by another owner
    /// without duplicating rows.
    async fn open(&self, url: &str, ticket: &ScanRequest) -> Result<BatchStream, ClientError> {
        let mut client = self.flight(url)?;
        let timeout = self.inner.cfg.timeout;
        let stream = self
            .timed(url, async {
                Ok(client.do_get(Ticket::new(ticket.to_bytes())).await?)
            })
            .await?;
        let mut stream = with_progress_timeout(stream, timeout, url.to_string());
        match stream.next().await {
            Some(Ok(first)) => Ok(futures::stream::once(async { Ok(first) })
                .chain(stream)
                .boxed()),
            Some(Err(e)) => Err(e),
            None => Ok(futures::stream::empty().boxed()),
        }
    }

    /// Reads one endpoint. A pre-signed one is read from the store; when its
    /// URL has expired or the object changed, the object is planned again
    /// once. A Flight one (or a pre-signed one whose store cannot be read)
    /// goes to each owner in turn until one starts streaming, following
    /// `MOVED` once, then the last resorts.
    pub async fn read_endpoint(
        &self,
        endpoint: &Endpoint,
    ) -> Result<(Served, BatchStream), ClientError> {
        let Some(presigned) = &endpoint.presigned else {
            return self.read_flight(endpoint).await;
        };
        match self.read_url(presigned, &endpoint.ticket).await {
            Err(ClientError::UrlRefused(_) | ClientError::ObjectChanged(_)) => {
                let fresh = self.replan(&endpoint.ticket, None).await?;
                match &fresh.presigned {
                    Some(p) => self.read_url(p, &fresh.ticket).await,
                    None => self.read_flight(&fresh).await,
                }
            }
            Err(_) => self.read_flight(endpoint).await,
            ok => ok,
        }
    }

    async fn read_url(
        &self,
        presigned: &Presigned,
        ticket: &ScanRequest,
    ) -> Result<(Served, BatchStream), ClientError> {
        let batches = read_presigned(presigned, ticket, self.inner.cfg.timeout).await?;
        Ok((Served::Presigned, as_streamed(batches)?))
    }

    /// Plans the one object `ticket` names again, at its current version.
    async fn replan(
        &self,
        ticket: &ScanRequest,
        accept: Option<Vec<Accept>>,
    ) -> Result<Endpoint, ClientError> {
        let req = ScanRequest {
            source: ticket.source.clone(),
            path: ticket.path.clone(),
            columns: ticket.columns.clone(),
            filter: ticket.filter.clone(),
            limit: ticket.limit,
            accept,
            ..Default::default()
        };
        let mut plan = self.plan(&req).await?;
        match (plan.endpoints.pop(), plan.endpoints.is_empty()) {
            (Some(endpoint), true) => Ok(endpoint),
            _ => Err(ClientError::Decode(
                "planning one object again did not return one endpoint".into(),
            )),
        }
    }

    async fn read_flight(&self, endpoint: &Endpoint) -> Result<(Served, BatchStream), ClientError> {
        let mut ticket = endpoint.ticket.clone();
        let mut queue = self.candidates(endpoint);
        let mut followed_redirect = false;
        let mut followed_change = false;
        let mut last: Option<ClientError> = None;
        let mut tried: Vec<String> = Vec::new();
        while !queue.is_empty() {
            let node = queue.remove(0);
            if tried.contains(&node.url) {
                continue;
            }
            tried.push(node.url.clone());
            let started = Instant::now();
            match self.open(&node.url, &ticket).await {
                Ok(stream) => {
                    self.record(&node, Some(started.elapsed().as_secs_f64() * 1000.0));
                    let who = node.id.clone().unwrap_or(node.url);
                    return Ok((Served::Node(who), stream));
                }
                Err(e) => {
                    if let Some(moved) = e.message().and_then(Moved::parse) {
                        if !followed_redirect {
                            followed_redirect = true;
                            // A redirect from a newer epoch than the map's:
                            // the node it names knows that epoch too, else
                            // any node that has caught up. One from an older
                            // epoch comes from a node that lags, and never
                            // rolls the map back.
                            if moved.epoch > self.topology().epoch {
                                let fresh = self.refresh_from(&moved.url).await.is_ok();
                                if !fresh || self.topology().epoch < moved.epoch {
                                    let _ = self.refresh().await;
                                }
                            }
                            tried.clear();
                            queue = self.candidates(endpoint);
                            let id = self
                                .topology()
                                .nodes
                                .iter()
                                .find(|n| n.url == moved.url)
                                .map(|n| n.id.clone());
                            queue.insert(
                                0,
                                Candidate {
                                    url: moved.url.clone(),
                                    id,
                                },
                            );
                            continue;
                        }
                    }
                    // The object was rewritten since it was planned, and
                    // nothing of it was read yet: read the new version once,
                    // as a fresh plan would.
                    if let Some(etag) = e.message().and_then(|m| m.strip_prefix("CHANGED ")) {
                        if !followed_change {
                            followed_change = true;
                            ticket.etag = Some(etag.to_string());
                            tried.retain(|u| u != &node.url);
                            queue.insert(0, node);
                            continue;
                        }
                    }
                    if is_final(&e) {
                        return Err(e);
                    }
                    self.record(&node, None);
                    last = Some(e);
                }
            }
        }
        let (Some(source), Some(path)) = (&ticket.source, &ticket.path) else {
            return Err(last.unwrap_or_else(|| {
                ClientError::Refused("the ticket names no object and has no location".into())
            }));
        };
        // A node that cannot serve the object may still sign a URL for it.
        if self.inner.cfg.accept_presigned && ticket.row_groups.is_none() {
            if let Ok(Endpoint {
                presigned: Some(p),
                ticket: fresh,
                ..
            }) = self.replan(&ticket, Some(vec![Accept::Presigned])).await
            {
                if let Ok(read) = self.read_url(&p, &fresh).await {
                    return Ok(read);
                }
            }
        }
        match self.inner.cfg.direct.get(source) {
            Some(direct) => {
                let batches = read_direct(direct, path, &ticket).await?;
                Ok((Served::Direct, as_streamed(batches)?))
            }
            None => Err(last.unwrap_or_else(|| {
                ClientError::Refused(format!(
                    "no node owns {source}/{path}, and no direct source is configured"
                ))
            })),
        }
    }

    /// Reads one object (`source` + `path`) whole, with the request's
    /// projection, filter and limit, and says who served it.
    pub async fn scan(&self, req: &ScanRequest) -> Result<Scan, ClientError> {
        if req.source.is_none() || req.path.is_none() {
            return Err(ClientError::Refused(
                "scan reads one object: give source and path".into(),
            ));
        }
        let endpoint = Endpoint {
            ticket: req.clone(),
            locations: Vec::new(),
            presigned: None,
        };
        let (served_by, stream) = self.read_endpoint(&endpoint).await?;
        Ok(Scan {
            batches: stream.try_collect().await?,
            served_by,
        })
    }

    /// Plans `req` and streams every endpoint's batches, up to
    /// `parallelism` endpoints at once, each straight to an owner. Batches
    /// of different endpoints interleave; the request's limit holds over the
    /// whole stream.
    pub async fn read(&self, req: &ScanRequest) -> Result<(SchemaRef, BatchStream), ClientError> {
        let plan = self.plan(req).await?;
        Ok((plan.schema.clone(), self.read_plan(plan)))
    }

    /// Streams the endpoints of a plan made earlier.
    pub fn read_plan(&self, plan: Plan) -> BatchStream {
        let parallelism = self.inner.cfg.parallelism.max(1);
        let client = self.clone();
        let parts = futures::stream::iter(plan.endpoints).map(move |e| {
            let client = client.clone();
            futures::stream::once(async move {
                client.read_endpoint(&e).await.map(|(_, stream)| stream)
            })
            .try_flatten()
            .boxed()
        });
        limit_rows(parts.flatten_unordered(parallelism).boxed(), plan.limit)
    }

    /// Plans `req` and reads it into memory, endpoints in plan order, up to
    /// `parallelism` of them at once.
    pub async fn collect(&self, req: &ScanRequest) -> Result<Table, ClientError> {
        let plan = self.plan(req).await?;
        let schema = plan.schema.clone();
        let limit = plan.limit;
        let parallelism = self.inner.cfg.parallelism.max(1);
        let client = self.clone();
        let parts: Vec<Vec<RecordBatch>> = futures::stream::iter(plan.endpoints)
            .map(move |e| {
                let client = client.clone();
                async move {
                    let (_, stream) = client.read_endpoint(&e).await?;
                    stream.try_collect::<Vec<_>>().await
                }
            })
            .buffered(parallelism)
            .try_collect()
            .await?;
        let all = futures::stream::iter(parts.into_iter().flatten().map(Ok)).boxed();
        let batches = limit_rows(all, limit).try_collect().await?;
        Ok(Table { schema, batches })
    }
}

/// Batches read from the file itself, with its own types (dictionaries,
/// views), as a node would have streamed them (`docs/protocol.md`, "Type
/// mapping"), so a plan's schema holds whoever served an endpoint.
fn as_streamed(batches: Vec<RecordBatch>) -> Result<BatchStream, ClientError> {
    let batches = batches
        .into_iter()
        .map(|b| {
            let wire = Arc::new(wire_schema(&b.schema()));
            to_wire(&b, &wire).map_err(|e| ClientError::Decode(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(futures::stream::iter(batches.into_iter().map(Ok)).boxed())
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
