//! The Arrow Flight service: a thin adapter that authenticates, decodes the
//! JSON request, calls the node's modules and encodes the answer. Every
//! response and every error carries the request id.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType as FlightActionType, Criteria, Empty, FlightData, FlightDescriptor,
    FlightInfo, HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc,
    SchemaResult, Ticket,
};
use datafusion::error::DataFusionError;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use quiver_client::plan::{to_wire, wire_schema};
use quiver_protocol::{ActionType, Caller, REQUEST_ID_HEADER};
use tokio::sync::OwnedSemaphorePermit;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use quiver_sql::QuiverSql;

use crate::access_log::client_id;
use crate::actions;
use crate::cluster::handoff;
use crate::error::{QuiverError, Result};
use crate::flight_info::{self, descriptor_request, parse_request};
use crate::node_core::NodeCore;
use crate::panics;
use crate::scan::classify;
use crate::source::Target;
use crate::telemetry::propagation::continue_trace;

/// Largest FlightData message sent; bigger batches are sliced.
const MAX_FLIGHT_DATA: usize = 2 << 20;

pub struct QuiverFlight {
    core: Arc<NodeCore>,
}

impl QuiverFlight {
    pub fn new(core: Arc<NodeCore>) -> Self {
        QuiverFlight { core }
    }
}

/// The client's own request id when it sent a sensible one, else a new one.
fn request_id<T>(req: &Request<T>) -> String {
    req.metadata()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn tag<T>(rid: &str, mut response: Response<T>) -> Response<T> {
    if let Ok(v) = MetadataValue::try_from(rid) {
        response.metadata_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// Turns an error into a status with the request id, logging it at a level
/// that matches whose fault it is and keeping it among the node's recent
/// errors.
fn status(core: &NodeCore, rid: &str, err: QuiverError) -> Status {
    match &err {
        QuiverError::Internal(m) => tracing::error!(request_id = rid, error = %m, "request failed"),
        QuiverError::Unavailable(m) | QuiverError::DataLoss(m) => {
            tracing::warn!(request_id = rid, error = %m, "request failed")
        }
        QuiverError::Unauthenticated(m) | QuiverError::PermissionDenied(m) => {
            tracing::warn!(request_id = rid, error = %m, "request refused")
        }
        other => tracing::debug!(request_id = rid, error = %other, "request refused"),
    }
    let mut s = Status::from(err);
    core.metrics.error(s.code());
    core.activity.errors.record(rid, s.code(), s.message());
    if let Ok(v) = MetadataValue::try_from(rid) {
        s.metadata_mut().insert(REQUEST_ID_HEADER, v);
    }
    s
}

fn timed_out(timeout: Duration) -> QuiverError {
    QuiverError::ResourceExhausted(format!(
        "the request ran longer than this node's request timeout of {}",
        humantime::format_duration(timeout)
    ))
}

/// The span of one request, named after its call and carrying its request
/// id; it continues the caller's trace when the request's headers carry one.
fn request_span(call: &'static str, rid: &str, headers: &MetadataMap) -> tracing::Span {
    let span = tracing::info_span!(
        "flight",
        call,
        request_id = rid,
        action = tracing::field::Empty,
        otel.name = call,
        otel.kind = "server"
    );
    continue_trace(&span, headers);
    span
}

/// The span of one Flight SQL request, as [`request_span`].
fn sql_span(call: &'static str, rid: &str, headers: &MetadataMap) -> tracing::Span {
    let span = tracing::info_span!(
        "flight_sql",
        call,
        request_id = rid,
        otel.name = call,
        otel.kind = "server"
    );
    continue_trace(&span, headers);
    span
}

impl QuiverFlight {
    /// Runs `work` in its request's `span`, within the request timeout, and
    /// maps its outcome.
    async fn run<T>(
        &self,
        rid: &str,
        span: tracing::Span,
        work: impl Future<Output = Result<T>>,
    ) -> std::result::Result<Response<T>, Status> {
        let timeout = self.core.request_timeout;
        let work = panics::caught(rid, work.instrument(span));
        let outcome = match tokio::time::timeout(timeout, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(timed_out(timeout)),
        };
        match outcome {
            Ok(v) => Ok(tag(rid, Response::new(v))),
            Err(e) => Err(status(&self.core, rid, e)),
        }
    }
}

fn stalled(stall: Duration) -> QuiverError {
    QuiverError::ResourceExhausted(format!(
        "the client read nothing for {}, so the scan was stopped to free its slot",
        humantime::format_duration(stall)
    ))
}

/// Messages a scan may have produced ahead of its client.
const SCAN_CHANNEL: usize = 2;

/// How a scan task ended, as the tail of its stream reports it.
const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const TIMED_OUT: u8 = 2;
const STALLED: u8 = 3;
const PANICKED: u8 = 4;

/// Counts a scan as active for as long as it lives, however it ends.
struct ActiveScan {
    core: Arc<NodeCore>,
    started: Instant,
}

impl ActiveScan {
    fn new(core: Arc<NodeCore>) -> Self {
        core.metrics.scans.inc();
        core.metrics.active_scans.inc();
        ActiveScan {
            core,
            started: Instant::now(),
        }
    }
}

impl Drop for ActiveScan {
    fn drop(&mut self) {
        self.core.metrics.active_scans.dec();
        self.core
            .metrics
            .scan_seconds
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// Drives a DoGet answer from a task of its own that holds the scan slot.
///
/// The task stops at the request deadline, or when the client has not taken
/// the next message for `stall_timeout`, even though the client has stopped
/// reading (HTTP/2 flow control would otherwise leave the response unpolled
/// and the slot taken for as long as the connection lives, or at best until
/// the request timeout). A stream cut short that way ends with
/// ResourceExhausted, never as a silent success; a panic while producing it
/// ends it with Internal.
fn serve_scan(
    core: &Arc<NodeCore>,
    rid: &str,
    mut encoded: BoxStream<'static, std::result::Result<FlightData, Status>>,
    permit: OwnedSemaphorePermit,
    deadline: tokio::time::Instant,
) -> BoxStream<'static, std::result::Result<FlightData, Status>> {
    let (tx, rx) = tokio::sync::mpsc::channel(SCAN_CHANNEL);
    let outcome = Arc::new(AtomicU8::new(RUNNING));
    let (timeout, stall) = (core.request_timeout, core.stall_timeout);
    let producer = (core.clone(), outcome.clone(), rid.to_string());
    let active = ActiveScan::new(core.clone());
    tokio::spawn(
        async move {
            let (core, outcome, rid) = producer;
            let _permit = permit;
            let _active = active;
            loop {
                // Producing the next message may be slow (a cold read); only
                // the client's side counts as a stall.
                let next = std::panic::AssertUnwindSafe(encoded.next()).catch_unwind();
                let item = match tokio::time::timeout_at(deadline, next).await {
                    Ok(Ok(Some(item))) => item,
                    Ok(Ok(None)) => {
                        outcome.store(FINISHED, Ordering::SeqCst);
                        break;
                    }
                    Ok(Err(payload)) => {
                        // Logged here, with the panic's message; the tail only
                        // reports it. The stream is not polled again.
                        panics::panicked(&rid, payload.as_ref());
                        outcome.store(PANICKED, Ordering::SeqCst);
                        break;
                    }
                    Err(_) => {
                        outcome.store(TIMED_OUT, Ordering::SeqCst);
                        break;
                    }
                };
                let failed = item.is_err();
                let size = item
                    .as_ref()
                    .map(|d| d.data_header.len() + d.data_body.len())
                    .unwrap_or(0);
                let stall_at = tokio::time::Instant::now() + stall;
                match tokio::time::timeout_at(stall_at.min(deadline), tx.send(item)).await {
                    Ok(Ok(())) => core.metrics.bytes_served.inc_by(size as u64),
                    // The client went away; nobody will read the tail.
                    Ok(Err(_)) => break,
                    Err(_) if stall_at < deadline => {
                        tracing::warn!(
                            request_id = %rid,
                            stall = %humantime::format_duration(stall),
                            "the client stopped reading; the scan gives its slot back"
                        );
                        core.metrics.stalled_scans.inc();
                        outcome.store(STALLED, Ordering::SeqCst);
                        break;
                    }
                    Err(_) => {
                        outcome.store(TIMED_OUT, Ordering::SeqCst);
                        break;
                    }
                }
                if failed {
                    outcome.store(FINISHED, Ordering::SeqCst);
                    break;
                }
            }
            // The slot stands for this scan's memory: it is kept until the
            // client has taken what the channel still holds, so answers that
            // are produced but not yet delivered cannot pile up beyond the slot
            // count. A client that stops reading here is let go like any other.
            if outcome.load(Ordering::SeqCst) == FINISHED {
                let until = (tokio::time::Instant::now() + stall).min(deadline);
                let _ = tokio::time::timeout_at(until, tx.reserve_many(SCAN_CHANNEL)).await;
            }
        }
        // The request's span lasts as long as its scan, whose reads it parents.
        .in_current_span(),
    );
    let received = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let (core, rid) = (core.clone(), rid.to_string());
    let tail = futures::stream::once(async move {
        let err = match outcome.load(Ordering::SeqCst) {
            FINISHED => return None,
            STALLED => stalled(stall),
            PANICKED => panics::internal(&rid),
            _ => timed_out(timeout),
        };
        Some(Err(status(&core, &rid, err)))
    })
    .filter_map(|item| async move { item });
    received.chain(tail).boxed()
}

impl QuiverFlight {
    async fn start_scan(
        &self,
        rid: &str,
        ticket: &[u8],
        deadline: tokio::time::Instant,
        client: &str,
    ) -> Result<BoxStream<'static, std::result::Result<FlightData, Status>>> {
        let core = &self.core;
        let req = parse_request(ticket)?;
        let has_filter = req.filter.is_some();
        let (source, path) = match core.sources.resolve(&req)? {
            Target::Object { source, path } => (source, path),
            Target::Prefix { .. } => {
                return Err(QuiverError::invalid(
                    "DoGet reads one object; use GetFlightInfo to plan a prefix",
                ))
            }
        };
        let mut id = source.identity(&path).await?;
        core.check_owner(&id)?;
        core.activity.objects.record(&id.source, id.path.as_ref());
        if let Some(etag) = &req.etag {
            if etag != &id.etag {
                id = source.revalidate(&path).await?;
                if etag != &id.etag {
                    return Err(QuiverError::Changed(id.etag));
                }
            }
        }
        let permit = core.scan_permit().await?;
        let store = core.store(&source.name)?;
        let (schema, batches) = core.scanner.scan(store, &id, &req, client).await?;
        // What GetFlightInfo and GetSchema announced for this object
        // (`docs/protocol.md`, "Type mapping"). The batches are cast to it
        // here rather than left to the encoder, which hydrates dictionaries
        // and narrows large lists while announcing whatever schema it was
        // given.
        let wire: SchemaRef = Arc::new(wire_schema(&schema));
        let what = source.describe(&path);
        let metrics_core = core.clone();
        let err_core = core.clone();
        let err_rid = rid.to_string();
        let cast_what = what.clone();
        let stream_wire = wire.clone();
        let batches = batches
            .and_then(move |b| {
                let converted = to_wire(&b, &stream_wire).map_err(|e| {
                    let err = match e {
                        // The batch breaks its own schema (nulls in a
                        // column the footer declares non-nullable).
                        ArrowError::InvalidArgumentError(m) => QuiverError::DataLoss(format!(
                            "object {cast_what} holds data its schema does not allow: {m}"
                        )),
                        // A cast that does not fit 32-bit offsets.
                        other => QuiverError::ResourceExhausted(format!(
                            "a batch of {cast_what} is too large to send with its columns' wire types: {other}"
                        )),
                    };
                    DataFusionError::External(Box::new(err))
                });
                futures::future::ready(converted)
            })
            .map_ok(move |b| {
                metrics_core.metrics.rows_served.inc_by(b.num_rows() as u64);
                b
            })
            .map_err(move |e| {
                FlightError::Tonic(Box::new(status(
                    &err_core,
                    &err_rid,
                    classify(e, &what, has_filter),
                )))
            });
        let encoded = FlightDataEncoderBuilder::new()
            .with_schema(wire)
            .with_max_flight_data_size(MAX_FLIGHT_DATA)
            .build(batches)
            .map_err(Status::from)
            .boxed();
        Ok(serve_scan(core, rid, encoded, permit, deadline))
    }
}

type Stream_<T> = BoxStream<'static, std::result::Result<T, Status>>;

/// The action types of Flight SQL; every other name is Quiver's.
const FLIGHT_SQL_ACTIONS: [&str; 8] = [
    "CreatePreparedStatement",
    "ClosePreparedStatement",
    "CreatePreparedSubstraitPlan",
    "BeginTransaction",
    "EndTransaction",
    "BeginSavepoint",
    "EndSavepoint",
    "CancelQuery",
];

/// Whether `bytes` is a Flight SQL message: a protobuf `Any` of one of its
/// types. Quiver's own messages are JSON objects, and anything that is
/// neither stays on Quiver's path, which answers it with InvalidArgument.
fn is_flight_sql(bytes: &[u8]) -> bool {
    const SQL_TYPES: &str = "type.googleapis.com/arrow.flight.protocol.sql.";
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return false;
    }
    <arrow_flight::sql::Any as prost::Message>::decode(bytes)
        .is_ok_and(|any| any.type_url.starts_with(SQL_TYPES))
}

/// The same request with `message`, keeping the caller's metadata (its
/// token and request id) for the Flight SQL service.
fn clone_request<T, U>(request: &Request<T>, message: U) -> Request<U> {
    let mut r = Request::new(message);
    *r.metadata_mut() = request.metadata().clone();
    r
}

impl QuiverFlight {
    /// The Flight SQL service, if the message is one of its commands.
    fn sql_for(&self, message: &[u8]) -> Option<Arc<QuiverSql>> {
        self.core.sql.clone().filter(|_| is_flight_sql(message))
    }

    /// Runs a Flight SQL call after the node's own authentication, tagging
    /// its answer or error with the request id.
    async fn sql_call<T, R>(
        &self,
        rid: &str,
        name: &'static str,
        request: &Request<T>,
        call: impl Future<Output = std::result::Result<Response<R>, Status>>,
    ) -> std::result::Result<Response<R>, Status> {
        if let Err(e) = self.core.auth.check(request.metadata(), Caller::Reader) {
            return Err(status(&self.core, rid, e));
        }
        let span = sql_span(name, rid, request.metadata());
        self.tag_sql(rid, call.instrument(span).await)
    }

    fn tag_sql<R>(
        &self,
        rid: &str,
        outcome: std::result::Result<Response<R>, Status>,
    ) -> std::result::Result<Response<R>, Status> {
        match outcome {
            Ok(r) => Ok(tag(rid, r)),
            Err(mut s) => {
                tracing::debug!(request_id = rid, error = %s.message(), "Flight SQL call failed");
                self.core.metrics.error(s.code());
                self.core.activity.errors.record(rid, s.code(), s.message());
                if let Ok(v) = MetadataValue::try_from(rid) {
                    s.metadata_mut().insert(REQUEST_ID_HEADER, v);
                }
                Err(s)
            }
        }
    }
}

fn unsupported<T>(what: &str, request: &Request<T>) -> Status {
    let mut s = Status::unimplemented(format!(
        "{what} is not supported: Quiver is a read-only cache"
    ));
    if let Ok(v) = MetadataValue::try_from(request_id(request)) {
        s.metadata_mut().insert(REQUEST_ID_HEADER, v);
    }
    s
}

#[tonic::async_trait]
impl FlightService for QuiverFlight {
    type HandshakeStream = Stream_<HandshakeResponse>;
    type ListFlightsStream = Stream_<FlightInfo>;
    type DoGetStream = Stream_<FlightData>;
    type DoPutStream = Stream_<PutResult>;
    type DoActionStream = Stream_<arrow_flight::Result>;
    type ListActionsStream = Stream_<FlightActionType>;
    type DoExchangeStream = Stream_<FlightData>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<Response<Self::HandshakeStream>, Status> {
        let rid = request_id(&request);
        let token = match self.core.auth.handshake(request.metadata()) {
            Ok(t) => t,
            Err(e) => return Err(status(&self.core, &rid, e)),
        };
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().unwrap_or_default().into_bytes().into(),
        };
        let mut response = tag(
            &rid,
            Response::new(futures::stream::iter([Ok(reply)]).boxed() as Self::HandshakeStream),
        );
        if let Some(t) = token {
            if let Ok(v) = MetadataValue::try_from(format!("Bearer {t}")) {
                response.metadata_mut().insert("authorization", v);
            }
        }
        Ok(response)
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> std::result::Result<Response<Self::ListFlightsStream>, Status> {
        let rid = request_id(&request);
        self.run(
            &rid,
            request_span("list_flights", &rid, request.metadata()),
            async {
                self.core.auth.check(request.metadata(), Caller::Reader)?;
                let _slot = self.core.plan_permit()?;
                let infos = flight_info::list(&self.core, &request.get_ref().expression).await?;
                Ok(futures::stream::iter(infos.into_iter().map(Ok)).boxed()
                    as Self::ListFlightsStream)
            },
        )
        .await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        let rid = request_id(&request);
        let is_cmd =
            request.get_ref().r#type == arrow_flight::flight_descriptor::DescriptorType::Cmd as i32;
        if let Some(sql) = self.sql_for(&request.get_ref().cmd).filter(|_| is_cmd) {
            return self
                .sql_call(
                    &rid,
                    "sql_get_flight_info",
                    &request,
                    sql.get_flight_info(clone_request(&request, request.get_ref().clone())),
                )
                .await;
        }
        self.run(
            &rid,
            request_span("get_flight_info", &rid, request.metadata()),
            async {
                self.core.auth.check(request.metadata(), Caller::Reader)?;
                let descriptor = request.get_ref().clone();
                let req = descriptor_request(&descriptor)?;
                let _slot = self.core.plan_permit()?;
                flight_info::flight_info(&self.core, descriptor, &req).await
            },
        )
        .await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<PollInfo>, Status> {
        Err(unsupported(
            "PollFlightInfo (GetFlightInfo answers at once)",
            &request,
        ))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<SchemaResult>, Status> {
        let rid = request_id(&request);
        self.run(
            &rid,
            request_span("get_schema", &rid, request.metadata()),
            async {
                self.core.auth.check(request.metadata(), Caller::Reader)?;
                let req = descriptor_request(request.get_ref())?;
                let _slot = self.core.plan_permit()?;
                let (_, _, schema) = flight_info::schema(&self.core, &req).await?;
                SchemaResult::try_from(SchemaAsIpc::new(&schema, &IpcWriteOptions::default()))
                    .map_err(|e| QuiverError::Internal(format!("cannot encode the schema: {e}")))
            },
        )
        .await
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Self::DoGetStream>, Status> {
        let rid = request_id(&request);
        if let Some(sql) = self.sql_for(&request.get_ref().ticket) {
            return self
                .sql_call(
                    &rid,
                    "sql_do_get",
                    &request,
                    sql.do_get(clone_request(&request, request.get_ref().clone())),
                )
                .await;
        }
        // One deadline for planning and streaming together.
        let deadline = tokio::time::Instant::now() + self.core.request_timeout;
        self.run(
            &rid,
            request_span("do_get", &rid, request.metadata()),
            async {
                self.core.auth.check(request.metadata(), Caller::Reader)?;
                let client = client_id(request.metadata(), request.remote_addr());
                self.start_scan(&rid, &request.get_ref().ticket, deadline, &client)
                    .await
            },
        )
        .await
    }

    /// Flight SQL binds prepared statements' parameters with DoPut; Quiver's
    /// own protocol has no use for it.
    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoPutStream>, Status> {
        let Some(sql) = self.core.sql.clone() else {
            return Err(unsupported("DoPut", &request));
        };
        let rid = request_id(&request);
        if let Err(e) = self.core.auth.check(request.metadata(), Caller::Reader) {
            return Err(status(&self.core, &rid, e));
        }
        let span = sql_span("sql_do_put", &rid, request.metadata());
        let outcome = sql.do_put(request).instrument(span).await;
        self.tag_sql(&rid, outcome)
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> std::result::Result<Response<Self::DoActionStream>, Status> {
        let rid = request_id(&request);
        if FLIGHT_SQL_ACTIONS.contains(&request.get_ref().r#type.as_str()) {
            if let Some(sql) = self.core.sql.clone() {
                return self
                    .sql_call(
                        &rid,
                        "sql_do_action",
                        &request,
                        sql.do_action(clone_request(&request, request.get_ref().clone())),
                    )
                    .await;
            }
        }
        let core = self.core.clone();
        let stream_rid = rid.clone();
        let span = request_span("do_action", &rid, request.metadata());
        span.record("action", request.get_ref().r#type.as_str());
        self.run(&rid, span, async move {
            core.auth.check(request.metadata(), Caller::Reader)?;
            let action = request.get_ref();
            let kind = ActionType::parse(&action.r#type).ok_or_else(|| {
                let known: Vec<&str> = ActionType::ALL.iter().map(|a| a.name()).collect();
                QuiverError::invalid(format!(
                    "unknown action `{}`; this node knows {}",
                    action.r#type,
                    known.join(", ")
                ))
            })?;
            core.auth.check(request.metadata(), kind.caller())?;
            let body = &action.body;
            let results: BoxStream<'static, Result<bytes::Bytes>> = match kind {
                ActionType::Stats => one(actions::stats(&core)),
                ActionType::Health => one(actions::health(&core)),
                ActionType::ClusterShards => one(actions::cluster_shards(&core, body).await?),
                ActionType::ClusterUpdate => one(actions::cluster_update(&core, body).await?),
                ActionType::HandoffList => one(handoff::list(&core, body)?),
                ActionType::HandoffRead => handoff::read(core.clone(), body)?,
                ActionType::HandoffDone => one(handoff::done(&core, body).await?),
                ActionType::Evict => one(actions::evict(&core, body).await?),
                ActionType::Prefetch => actions::prefetch(core.clone(), body).await?,
                ActionType::RefreshCatalog => one(actions::refresh_catalog(&core).await?),
                ActionType::Warm => one(actions::warm(&core, body).await?),
            };
            Ok(results
                .map(move |r| match r {
                    Ok(body) => Ok(arrow_flight::Result { body }),
                    Err(e) => Err(status(&core, &stream_rid, e)),
                })
                .boxed() as Self::DoActionStream)
        })
        .await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> std::result::Result<Response<Self::ListActionsStream>, Status> {
        let rid = request_id(&request);
        self.run(
            &rid,
            request_span("list_actions", &rid, request.metadata()),
            async {
                self.core.auth.check(request.metadata(), Caller::Reader)?;
                let mut kinds: Vec<std::result::Result<FlightActionType, Status>> = ActionType::ALL
                    .iter()
                    .map(|a| {
                        Ok(FlightActionType {
                            r#type: a.name().to_string(),
                            description: a.description().to_string(),
                        })
                    })
                    .collect();
                if let Some(sql) = &self.core.sql {
                    let listed = sql
                        .list_actions(Request::new(Empty {}))
                        .await
                        .map_err(|s| QuiverError::Internal(s.message().to_string()))?;
                    // Only what Quiver's Flight SQL answers: no transactions,
                    // savepoints, Substrait or cancellation.
                    let supported = ["CreatePreparedStatement", "ClosePreparedStatement"];
                    kinds.extend(
                        listed
                            .into_inner()
                            .collect::<Vec<_>>()
                            .await
                            .into_iter()
                            .filter(|a| {
                                a.as_ref()
                                    .is_ok_and(|a| supported.contains(&a.r#type.as_str()))
                            }),
                    );
                }
                Ok(futures::stream::iter(kinds).boxed() as Self::ListActionsStream)
            },
        )
        .await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoExchangeStream>, Status> {
        Err(unsupported("DoExchange", &request))
    }
}

fn one(body: bytes::Bytes) -> BoxStream<'static, Result<bytes::Bytes>> {
    futures::stream::iter([Ok(body)]).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ByteSize, Config};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scan_that_panics_ends_with_internal_and_gives_everything_back() {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.admin_listen = "127.0.0.1:0".parse().unwrap();
        config.cache.disk = ByteSize(0);
        config.cache.memory = ByteSize(16 << 20);
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        config.sources = vec![crate::config::SourceConfig::new("local", url.as_str())];
        let node = crate::node::RunningNode::start(config).await.unwrap();
        let core = node.core.clone();
        let slots = core.scan_slots.available_permits();
        let permit = core.scan_slots.clone().try_acquire_owned().unwrap();
        let mut sent = false;
        let encoded = futures::stream::poll_fn(move |_| {
            if std::mem::replace(&mut sent, true) {
                panic!("a kernel bug");
            }
            std::task::Poll::Ready(Some(Ok(FlightData::default())))
        })
        .boxed();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let out: Vec<_> = serve_scan(&core, "rid-7", encoded, permit, deadline)
            .collect()
            .await;
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].is_ok());
        let err = out[1].as_ref().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
        assert!(err.message().contains("rid-7"), "{}", err.message());
        // The producing task has ended: its slot and gauge are released.
        for _ in 0..100 {
            if core.metrics.active_scans.get() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(core.metrics.active_scans.get(), 0);
        assert_eq!(core.scan_slots.available_permits(), slots);
        node.shutdown().await.unwrap();
    }
}
