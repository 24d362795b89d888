//! Reads from the cluster as protocol.md §5 ("Clients") describes: plan with any
//! node, send each DoGet straight to a node that owns the object's slot,
//! chosen by a score; fail over to the next owner on an error; follow
//! `MOVED` by refreshing the slot map; and when every owner fails, read the
//! object directly from its source so the query still completes.
//!
//! This file holds the [`QuiverClient`] handle, its connections and its
//! planning calls; the slot map is kept in `topology`, node health and the
//! owner score in `health`, and reading an endpoint with its fail-over in
//! `failover`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::{Action, FlightClient, FlightDescriptor};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use quiver_protocol::{Accept, ListCriteria, ObjectListing, ScanRequest, Topology};
use tonic::transport::Channel;

pub use crate::config::{ClientConfig, Weights};
use crate::connect::flight_client_with;
use crate::error::ClientError;
use crate::health::NodeHealth;
use crate::plan::{Endpoint, Plan};
pub use crate::results::{ObjectInfo, Scan, Served, Table};
use crate::stream::{limit_rows, BatchStream};

pub(crate) struct Inner {
    pub(crate) cfg: ClientConfig,
    /// The bearer token every call carries (from the config, or from the
    /// Basic handshake made at connect time).
    token: Option<String>,
    pub(crate) map: RwLock<Arc<Topology>>,
    channels: Mutex<HashMap<String, Channel>>,
    pub(crate) health: NodeHealth,
}

/// A client of a Quiver cluster. Cheap to clone; clones share the slot map,
/// connections and what was learnt of each node's health.
#[derive(Clone)]
pub struct QuiverClient {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for QuiverClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuiverClient")
            .field("seeds", &self.inner.cfg.seeds)
            .field("epoch", &self.topology().epoch)
            .finish_non_exhaustive()
    }
}

/// Times a plan refused by a busy node is asked again.
const PLAN_RETRIES: u32 = 8;

/// The first pause before asking again; each retry doubles it, up to
/// [`PLAN_RETRY_MAX_PAUSE`] (about 5 s over all of them).
const PLAN_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// The longest pause between two asks.
const PLAN_RETRY_MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

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
                Err(e) if e.is_final() || e.code().is_some() => return Err(e),
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
                    health: NodeHealth::default(),
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
    pub(crate) async fn timed<T>(
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
    /// Runs a planning call on the first node that can be reached; an
    /// answer from a node, even an error, is final.
    pub(crate) async fn on_any_node<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
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
    /// endpoint per object, each naming its owners. A node planning its
    /// maximum answers `ResourceExhausted` at once, asking to retry
    /// shortly; the plan is asked again after a growing pause, up to
    /// [`PLAN_RETRIES`] times, so a burst of clients is planned in turn.
    pub async fn plan(&self, req: &ScanRequest) -> Result<Plan, ClientError> {
        let mut req = req.clone();
        if self.inner.cfg.accept_presigned && req.accept.is_none() {
            req.accept = Some(vec![Accept::Flight, Accept::Presigned]);
        }
        let cmd = Bytes::from(req.to_bytes());
        let mut pause = PLAN_RETRY_PAUSE;
        let mut retries = 0;
        let info = loop {
            let answer = self
                .on_any_node(|mut c| {
                    let cmd = cmd.clone();
                    async move { Ok(c.get_flight_info(FlightDescriptor::new_cmd(cmd)).await?) }
                })
                .await;
            match answer {
                Err(e)
                    if e.code() == Some(tonic::Code::ResourceExhausted)
                        && retries < PLAN_RETRIES =>
                {
                    retries += 1;
                    // A random half to all of the pause: clients refused
                    // together must not all come back together, or each
                    // round plans one of them and refuses the rest again.
                    let jittered = pause.mul_f64(rand::random_range(0.5..=1.0));
                    tokio::time::sleep(jittered).await;
                    pause = pause.saturating_mul(2).min(PLAN_RETRY_MAX_PAUSE);
                }
                other => break other?,
            }
        };
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
