//! What every Flight call shares: its request id (the client's or a new
//! one), its tracing span, and the mapping of its outcome to a response or
//! status tagged with that id. Kept apart so each call's handler only
//! decodes its request and names its work.

use std::future::Future;
use std::time::Duration;

use quiver_protocol::{IpcCompression, COMPRESSION_HEADER, REQUEST_ID_HEADER};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::QuiverFlight;
use crate::error::{QuiverError, Result};
use crate::node_core::NodeCore;
use crate::panics;
use crate::telemetry::propagation::continue_trace;

/// The client's own request id when it sent a sensible one, else a new one.
pub(super) fn request_id<T>(req: &Request<T>) -> String {
    req.metadata()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

pub(super) fn tag<T>(rid: &str, mut response: Response<T>) -> Response<T> {
    if let Ok(v) = MetadataValue::try_from(rid) {
        response.metadata_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// Turns an error into a status with the request id, logging it at a level
/// that matches whose fault it is and keeping it among the node's recent
/// errors.
pub(super) fn status(core: &NodeCore, rid: &str, err: QuiverError) -> Status {
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

pub(super) fn timed_out(timeout: Duration) -> QuiverError {
    QuiverError::ResourceExhausted(format!(
        "the request ran longer than this node's request timeout of {}",
        humantime::format_duration(timeout)
    ))
}

/// The span of one request, named after its call and carrying its request
/// id; it continues the caller's trace when the request's headers carry one.
pub(super) fn request_span(call: &'static str, rid: &str, headers: &MetadataMap) -> tracing::Span {
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
pub(super) fn sql_span(call: &'static str, rid: &str, headers: &MetadataMap) -> tracing::Span {
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
    pub(super) async fn run<T>(
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

pub(super) fn unsupported<T>(what: &str, request: &Request<T>) -> Status {
    let mut s = Status::unimplemented(format!(
        "{what} is not supported: Quiver is a read-only cache"
    ));
    if let Ok(v) = MetadataValue::try_from(request_id(request)) {
        s.metadata_mut().insert(REQUEST_ID_HEADER, v);
    }
    s
}
/// The compression a request's [`COMPRESSION_HEADER`] asks for: `None`
/// without the header, `Some(None)` for `none`. A value that is not text or
/// names no codec is the request's error.
pub fn requested_compression(metadata: &MetadataMap) -> Result<Option<Option<IpcCompression>>> {
    let Some(value) = metadata.get(COMPRESSION_HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        QuiverError::invalid(format!("the {COMPRESSION_HEADER} header is not text"))
    })?;
    IpcCompression::parse(text)
        .map(Some)
        .map_err(|e| QuiverError::invalid(format!("{COMPRESSION_HEADER}: {e}")))
}
