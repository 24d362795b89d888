//! A planned scan: what GetFlightInfo answered, in the client's terms; and
//! the type mapping every node's answer follows.

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_flight::FlightInfo;
use quiver_protocol::{PresignedEndpoint, ScanRequest};
use serde::{Deserialize, Serialize};

use crate::error::ClientError;
use crate::presigned::Presigned;

/// One part of a scan: a ticket naming one object (or a row-group range of
/// it) and the nodes that own it, primary first; or, for a cold object the
/// node sent to the origin, a pre-signed URL (then `locations` is empty and
/// the ticket is what to plan again with when the URL has expired).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ticket: ScanRequest,
    pub locations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presigned: Option<Presigned>,
}

/// The endpoints of a scan, with the projected schema they all return.
#[derive(Debug, Clone)]
pub struct Plan {
    pub schema: SchemaRef,
    pub endpoints: Vec<Endpoint>,
    /// Exact rows the endpoints return together, when the node knows it
    /// (no filter).
    pub total_records: Option<u64>,
    /// The request's row cap over all endpoints: with a filter every ticket
    /// carries the whole limit, so a reader of several must stop itself.
    pub limit: Option<u64>,
}

impl Plan {
    pub fn from_flight_info(info: FlightInfo, limit: Option<u64>) -> Result<Plan, ClientError> {
        let schema: Schema = info
            .clone()
            .try_decode_schema()
            .map_err(|e| ClientError::Decode(format!("the plan's schema: {e}")))?;
        let endpoints = info
            .endpoint
            .into_iter()
            .map(|e| {
                let ticket = e
                    .ticket
                    .ok_or_else(|| ClientError::Decode("an endpoint has no ticket".into()))?;
                let ticket = ScanRequest::from_bytes(&ticket.ticket)
                    .map_err(|err| ClientError::Decode(format!("an endpoint's ticket: {err}")))?;
                let locations: Vec<String> = e.location.into_iter().map(|l| l.uri).collect();
                let object = PresignedEndpoint::parse(&e.app_metadata);
                let url = locations
                    .iter()
                    .find(|l| l.starts_with("http://") || l.starts_with("https://"));
                Ok(match (object, url) {
                    (Some(object), Some(url)) => Endpoint {
                        ticket,
                        presigned: Some(Presigned {
                            url: url.clone(),
                            object,
                        }),
                        locations: Vec::new(),
                    },
                    _ => Endpoint {
                        ticket,
                        locations,
                        presigned: None,
                    },
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Plan {
            schema: Arc::new(schema),
            endpoints,
            total_records: u64::try_from(info.total_records).ok(),
            limit,
        })
    }
}

/// The Arrow type a node sends for a column the file stores as `ty`
/// (`docs/protocol.md`, "Type mapping"): dictionaries as their values, view
/// and 64-bit-offset strings, binaries and lists as their plain forms,
/// nested types with their children mapped alike. arrow-flight's encoder
/// hydrates dictionaries and sends large lists as lists whatever it is told,
/// so the only honest schema is the one that says so; mapping every kind the
/// same way keeps the rule one sentence long and every Flight client able to
/// read the answer.
pub fn wire_type(ty: &DataType) -> DataType {
    match ty {
        DataType::Dictionary(_, values) => wire_type(values),
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::List(item)
        | DataType::LargeList(item)
        | DataType::ListView(item)
        | DataType::LargeListView(item) => DataType::List(Arc::new(wire_field(item))),
        DataType::FixedSizeList(item, n) => DataType::FixedSizeList(Arc::new(wire_field(item)), *n),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| wire_field(f)).collect())
        }
        DataType::Map(entries, sorted) => DataType::Map(Arc::new(wire_field(entries)), *sorted),
        other => other.clone(),
    }
}

/// `field` with its type mapped by [`wire_type`].
pub fn wire_field(field: &Field) -> Field {
    field.clone().with_data_type(wire_type(field.data_type()))
}

/// `schema` with every field mapped by [`wire_type`]: what a node announces
/// and streams for a file of that schema.
pub fn wire_schema(schema: &Schema) -> Schema {
    Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| wire_field(f))
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    )
}

/// `batch` (whose columns are those of `wire`, in order) with each column
/// cast to its wire type. Casts never turn a value into a null: one that
/// cannot be sent (string data beyond 32-bit offsets) is an error.
pub fn to_wire(batch: &RecordBatch, wire: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let columns = batch
        .columns()
        .iter()
        .zip(wire.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                cast_with_options(column, field.data_type(), &options)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        wire.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}
