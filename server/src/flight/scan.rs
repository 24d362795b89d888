//! Starts the scan a DoGet ticket asks for: resolves its one object, checks
//! that this node owns it and that its version is the one planned, and
//! encodes its batches in the wire types GetFlightInfo announced, to be
//! streamed by `stream`.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::writer::IpcWriteOptions;
use arrow::ipc::CompressionType;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::FlightData;
use datafusion::error::DataFusionError;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use quiver_client::plan::{to_wire, wire_schema};
use quiver_protocol::IpcCompression;
use tonic::Status;

use super::request::status;
use super::stream::serve_scan;
use super::QuiverFlight;
use crate::error::{QuiverError, Result};
use crate::flight_info::parse_request;
use crate::scan::classify;
use crate::source::Target;

/// Largest FlightData message sent; bigger batches are sliced.
const MAX_FLIGHT_DATA: usize = 2 << 20;

impl QuiverFlight {
    /// `header` is the compression the request's
    /// [`COMPRESSION_HEADER`](quiver_protocol::COMPRESSION_HEADER) asks for,
    /// when it has one; it wins over the ticket's.
    pub(super) async fn start_scan(
        &self,
        rid: &str,
        ticket: &[u8],
        header: Option<Option<IpcCompression>>,
        deadline: tokio::time::Instant,
        client: &str,
    ) -> Result<BoxStream<'static, std::result::Result<FlightData, Status>>> {
        let core = &self.core;
        let req = parse_request(ticket)?;
        let options = write_options(header.unwrap_or(req.compression))?;
        let has_filter = req.filter.is_some();
        let (source, path) = match core.sources.resolve(&req)? {
            Target::Object { source, path } => (source, path),
            Target::Prefix { .. } => {
                return Err(QuiverError::invalid(
                    "DoGet reads one object; use GetFlightInfo to plan a prefix",
                ))
            }
        };
        // Ownership first: a node that does not own the object redirects
        // without asking the origin about a version it would not serve.
        core.check_owner(&source.identity_for(&path, req.immutable).await?)?;
        let id = source
            .version_for(&path, req.etag.as_deref(), req.immutable)
            .await?;
        core.activity.objects.record(&id.source, id.path.as_ref());
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
            .with_options(options)
            .with_schema(wire)
            .with_max_flight_data_size(MAX_FLIGHT_DATA)
            .build(batches)
            .map_err(Status::from)
            .boxed();
        Ok(serve_scan(core, rid, encoded, permit, deadline))
    }
}

/// The IPC options that compress message bodies with `compression`.
fn write_options(compression: Option<IpcCompression>) -> Result<IpcWriteOptions> {
    let codec = compression.map(|c| match c {
        IpcCompression::Lz4Frame => CompressionType::LZ4_FRAME,
        IpcCompression::Zstd => CompressionType::ZSTD,
    });
    IpcWriteOptions::default()
        .try_with_compression(codec)
        .map_err(|e| QuiverError::Internal(format!("IPC compression is not available: {e}")))
}
