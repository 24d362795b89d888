//! The Arrow Flight service: a thin adapter that authenticates, decodes the
//! JSON request, calls the node's modules and encodes the answer. Every
//! response and every error carries the request id.
//!
//! Each call's shared handling (request id, span, timeout, status) is in
//! `request`; DoGet's scan is started by `scan` and streamed by
//! `stream`; Quiver's actions are in `action`; Flight SQL messages are
//! handed on by `sql`; `worker` is the service distributed SQL statements'
//! tasks run on.

mod action;
mod request;
mod scan;
mod sql;
mod stream;
pub mod worker;

use std::sync::Arc;

use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType as FlightActionType, Criteria, Empty, FlightData, FlightDescriptor,
    FlightInfo, HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc,
    SchemaResult, Ticket,
};
use futures::stream::BoxStream;
use futures::StreamExt;
use quiver_protocol::Caller;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::access_log::client_id;
use crate::error::QuiverError;
use crate::flight_info::{self, descriptor_request};
use crate::node_core::NodeCore;
use request::{
    request_id, request_span, requested_compression, sql_span, status, tag, unsupported,
};
use sql::{clone_request, is_sql_action, sql_actions};

pub struct QuiverFlight {
    core: Arc<NodeCore>,
}

impl QuiverFlight {
    pub fn new(core: Arc<NodeCore>) -> Self {
        QuiverFlight { core }
    }
}

type Stream_<T> = BoxStream<'static, std::result::Result<T, Status>>;

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
                let schema = flight_info::schema(&self.core, &req).await?.schema;
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
                let header = requested_compression(request.metadata())?;
                self.start_scan(&rid, &request.get_ref().ticket, header, deadline, &client)
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
        if is_sql_action(&request.get_ref().r#type) {
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
        let span = request_span("do_action", &rid, request.metadata());
        span.record("action", request.get_ref().r#type.as_str());
        let actions = action::run(self.core.clone(), rid.clone(), request);
        self.run(&rid, span, async move {
            Ok(actions.await? as Self::DoActionStream)
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
                let mut kinds = action::kinds();
                if let Some(sql) = &self.core.sql {
                    kinds.extend(sql_actions(sql).await?);
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
