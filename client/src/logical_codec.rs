//! [`QuiverTable`] through `datafusion-proto` logical plans, beside
//! [`QuiverCodec`](crate::QuiverCodec) for physical ones: an engine that
//! ships logical plans (Ballista's scheduler hands them to its planner) can
//! send a plan over a Quiver table and have it planned and read elsewhere.
//!
//! A table is encoded as versioned JSON: its source, path, schema and the
//! objects it was listed with (each with its schema, as Arrow IPC, its
//! deletion vector and whether it is immutable), so the decoding side
//! rebuilds the same table without listing again, over its own
//! [`QuiverClient`]: credentials never travel inside plans. The log
//! statistics a Delta table's files carry are left out: a decoded table
//! plans every file (file skipping is an optimisation, never an answer).

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::{IpcMessage, SchemaAsIpc};
use base64::Engine;
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result as DfResult, TableReference};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use quiver_protocol::DeletionVector;
use serde::{Deserialize, Serialize};

use crate::routing::QuiverClient;
use crate::table::{QuiverTable, TableFiles};

/// Bumped when the encoding changes; older encodings are refused clearly.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EncodedObject {
    path: String,
    /// Arrow IPC schema message, base64.
    schema: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deletion_vector: Option<DeletionVector>,
    #[serde(default)]
    immutable: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EncodedTable {
    quiver_table: u32,
    source: String,
    path: String,
    /// Arrow IPC schema message, base64.
    schema: String,
    whole: bool,
    rows: Option<u64>,
    bytes: Option<u64>,
    objects: Vec<EncodedObject>,
}

/// Encodes and decodes [`QuiverTable`] providers in logical plans; decoded
/// tables read through `client`.
#[derive(Debug, Clone)]
pub struct QuiverLogicalCodec {
    client: QuiverClient,
}

impl QuiverLogicalCodec {
    pub fn new(client: QuiverClient) -> Self {
        QuiverLogicalCodec { client }
    }
}

fn plan_error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(message.into())
}

fn encode_schema(schema: &Schema) -> DfResult<String> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default()).try_into()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(&bytes))
}

fn decode_schema(text: &str, what: &str) -> DfResult<SchemaRef> {
    let ipc = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| plan_error(format!("the schema of {what} is not base64: {e}")))?;
    Schema::try_from(IpcMessage(ipc.into()))
        .map(Arc::new)
        .map_err(|e| plan_error(format!("the schema of {what}: {e}")))
}

impl LogicalExtensionCodec for QuiverLogicalCodec {
    fn try_decode(
        &self,
        _buf: &[u8],
        _inputs: &[LogicalPlan],
        _ctx: &TaskContext,
    ) -> DfResult<Extension> {
        Err(DataFusionError::NotImplemented(
            "Quiver plans have no extension nodes; only tables".into(),
        ))
    }

    fn try_encode(&self, node: &Extension, _buf: &mut Vec<u8>) -> DfResult<()> {
        Err(DataFusionError::NotImplemented(format!(
            "QuiverLogicalCodec encodes Quiver tables, not extension node {}",
            node.node.name()
        )))
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        _ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let encoded: EncodedTable = serde_json::from_slice(buf)
            .map_err(|e| plan_error(format!("{table_ref} is not an encoded Quiver table: {e}")))?;
        if encoded.quiver_table != VERSION {
            return Err(plan_error(format!(
                "this client reads Quiver table encoding {VERSION}, not {}",
                encoded.quiver_table
            )));
        }
        let table_schema = decode_schema(&encoded.schema, &table_ref.to_string())?;
        if table_schema.fields() != schema.fields() {
            return Err(plan_error(format!(
                "{table_ref}: the encoded table's schema is not the plan's"
            )));
        }
        let objects = encoded
            .objects
            .into_iter()
            .map(|o| {
                let schema = decode_schema(&o.schema, &o.path)?;
                Ok((o.path, schema, o.deletion_vector, o.immutable))
            })
            .collect::<DfResult<Vec<_>>>()?;
        let files = TableFiles::decoded(
            &encoded.source,
            &encoded.path,
            objects,
            encoded.rows,
            encoded.bytes,
            encoded.whole,
        )
        .map_err(|e| plan_error(format!("{table_ref}: {e}")))?;
        Ok(Arc::new(QuiverTable::from_files(
            self.client.clone(),
            files,
            table_schema,
        )))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        let Some(table) = node.as_ref().downcast_ref::<QuiverTable>() else {
            return Err(DataFusionError::NotImplemented(format!(
                "QuiverLogicalCodec encodes QuiverTable only; {table_ref} is another provider"
            )));
        };
        let objects = table
            .encoded_objects()
            .map(|(path, schema, deletion_vector, immutable)| {
                Ok(EncodedObject {
                    path: path.to_string(),
                    schema: encode_schema(schema)?,
                    deletion_vector: deletion_vector.cloned(),
                    immutable,
                })
            })
            .collect::<DfResult<Vec<_>>>()?;
        let (rows, bytes) = table.listed_size();
        let encoded = EncodedTable {
            quiver_table: VERSION,
            source: table.source().to_string(),
            path: table.path().to_string(),
            schema: encode_schema(&table.schema())?,
            whole: table.is_whole(),
            rows,
            bytes,
            objects,
        };
        serde_json::to_writer(buf, &encoded)
            .map_err(|e| DataFusionError::Internal(format!("encoding a Quiver table: {e}")))
    }
}
