//! Quiver scans through `datafusion-proto`, so a distributed DataFusion
//! engine can plan on one machine and ship [`QuiverScanExec`] to workers that
//! read their partitions straight from the owning nodes.
//!
//! The node is encoded as versioned JSON (the schema as Arrow IPC): the
//! endpoints are already plain data, and JSON keeps the format readable in a
//! plan dump. The decoding side supplies its own [`QuiverClient`], so
//! credentials never travel inside plans.

use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::{IpcMessage, SchemaAsIpc};
use base64::Engine;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};

use crate::exec::{as_quiver_scan, QuiverScanExec, ScanSpec};
use crate::plan::Endpoint;
use crate::routing::QuiverClient;

/// Bumped when the encoding changes; older encodings are refused clearly.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Encoded {
    quiver_scan: u32,
    /// Arrow IPC schema message, base64.
    schema: String,
    endpoints: Vec<Endpoint>,
    limit: Option<u64>,
    count_only: bool,
    total_rows: Option<u64>,
    /// Absent from scans encoded before distributed plans: one per endpoint.
    #[serde(default)]
    partitions: usize,
}

/// Encodes and decodes [`QuiverScanExec`] nodes; decoded scans read through
/// `client`.
#[derive(Debug, Clone)]
pub struct QuiverCodec {
    client: QuiverClient,
}

impl QuiverCodec {
    pub fn new(client: QuiverClient) -> Self {
        QuiverCodec { client }
    }
}

fn plan_error(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(message.into())
}

impl PhysicalExtensionCodec for QuiverCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if !inputs.is_empty() {
            return Err(plan_error("a Quiver scan has no inputs"));
        }
        let encoded: Encoded = serde_json::from_slice(buf)
            .map_err(|e| plan_error(format!("not an encoded Quiver scan: {e}")))?;
        if encoded.quiver_scan != VERSION {
            return Err(plan_error(format!(
                "this client reads Quiver scan encoding {VERSION}, not {}",
                encoded.quiver_scan
            )));
        }
        let ipc = base64::engine::general_purpose::STANDARD
            .decode(&encoded.schema)
            .map_err(|e| plan_error(format!("the scan's schema is not base64: {e}")))?;
        let schema = Schema::try_from(IpcMessage(ipc.into()))
            .map_err(|e| plan_error(format!("the scan's schema: {e}")))?;
        let spec = ScanSpec {
            schema: Arc::new(schema),
            endpoints: encoded.endpoints,
            limit: encoded.limit,
            count_only: encoded.count_only,
            total_rows: encoded.total_rows,
            partitions: encoded.partitions,
        };
        Ok(Arc::new(QuiverScanExec::new(self.client.clone(), spec)))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        let Some(scan) = as_quiver_scan(node.as_ref()) else {
            return Err(DataFusionError::NotImplemented(format!(
                "QuiverCodec encodes Quiver scans only, not {}",
                node.name()
            )));
        };
        let spec = scan.spec();
        let IpcMessage(schema) =
            SchemaAsIpc::new(&spec.schema, &IpcWriteOptions::default()).try_into()?;
        let encoded = Encoded {
            quiver_scan: VERSION,
            schema: base64::engine::general_purpose::STANDARD.encode(&schema),
            endpoints: spec.endpoints.clone(),
            limit: spec.limit,
            count_only: spec.count_only,
            total_rows: spec.total_rows,
            partitions: spec.partitions,
        };
        serde_json::to_writer(buf, &encoded)
            .map_err(|e| DataFusionError::Internal(format!("encoding a Quiver scan: {e}")))
    }
}
