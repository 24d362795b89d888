//! Hands Flight SQL calls to the node's [`QuiverSql`]: tells its messages
//! and actions from Quiver's own, authenticates them as the node does, and
//! tags their answers and errors with the request id.

use std::future::Future;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{ActionType as FlightActionType, Empty};
use futures::StreamExt;
use quiver_protocol::{Caller, REQUEST_ID_HEADER};
use quiver_sql::QuiverSql;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::request::{sql_span, status, tag};
use super::QuiverFlight;
use crate::error::{QuiverError, Result};

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

/// Whether an action of this name belongs to Flight SQL.
pub(super) fn is_sql_action(name: &str) -> bool {
    FLIGHT_SQL_ACTIONS.contains(&name)
}

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
pub(super) fn clone_request<T, U>(request: &Request<T>, message: U) -> Request<U> {
    let mut r = Request::new(message);
    *r.metadata_mut() = request.metadata().clone();
    r
}

/// The Flight SQL actions Quiver answers, as the SQL service lists them.
pub(super) async fn sql_actions(
    sql: &QuiverSql,
) -> Result<Vec<std::result::Result<FlightActionType, Status>>> {
    let listed = sql
        .list_actions(Request::new(Empty {}))
        .await
        .map_err(|s| QuiverError::Internal(s.message().to_string()))?;
    // Only what Quiver's Flight SQL answers: no transactions,
    // savepoints, Substrait or cancellation.
    let supported = ["CreatePreparedStatement", "ClosePreparedStatement"];
    Ok(listed
        .into_inner()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .filter(|a| {
            a.as_ref()
                .is_ok_and(|a| supported.contains(&a.r#type.as_str()))
        })
        .collect())
}

impl QuiverFlight {
    /// The Flight SQL service, if the message is one of its commands.
    pub(super) fn sql_for(&self, message: &[u8]) -> Option<Arc<QuiverSql>> {
        self.core.sql.clone().filter(|_| is_flight_sql(message))
    }

    /// Runs a Flight SQL call after the node's own authentication, tagging
    /// its answer or error with the request id.
    pub(super) async fn sql_call<T, R>(
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

    pub(super) fn tag_sql<R>(
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
