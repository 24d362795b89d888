//! The physical scan of a [`crate::QuiverTable`]: one partition per planned
//! endpoint, each read straight from an owner of its object, so DataFusion
//! reads objects in parallel and never through a coordinator.

use std::fmt;
use std::sync::Arc;

use arrow::array::{new_null_array, RecordBatch, RecordBatchOptions};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::SchemaRef;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult, Statistics};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};

use crate::error::to_datafusion;
use crate::plan::Endpoint;
use crate::routing::QuiverClient;
use crate::stream::limit_rows;

/// What a scan node carries: everything needed to run it anywhere a client
/// can reach the cluster (and what the codec serialises).
#[derive(Debug, Clone, PartialEq)]
pub struct ScanSpec {
    /// The schema this node outputs.
    pub schema: SchemaRef,
    pub endpoints: Vec<Endpoint>,
    /// A row cap per partition (the tickets carry it too).
    pub limit: Option<u64>,
    /// The node is asked for one column that is then dropped, because the
    /// query needs only row counts (`SELECT count(*)`).
    pub count_only: bool,
    /// Exact rows over all endpoints, when known.
    pub total_rows: Option<u64>,
    /// Output partitions: one per endpoint, and past the endpoints empty
    /// ones up to this count (at least one). The parts a distributed plan
    /// splits a scan into must all have as many partitions.
    pub partitions: usize,
}

impl ScanSpec {
    /// The partitions the node outputs.
    pub fn partition_count(&self) -> usize {
        self.endpoints.len().max(self.partitions).max(1)
    }
}

pub struct QuiverScanExec {
    client: QuiverClient,
    spec: ScanSpec,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for QuiverScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuiverScanExec")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl QuiverScanExec {
    pub fn new(client: QuiverClient, spec: ScanSpec) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(spec.schema.clone()),
            Partitioning::UnknownPartitioning(spec.partition_count()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        QuiverScanExec {
            client,
            spec,
            properties,
        }
    }

    pub fn spec(&self) -> &ScanSpec {
        &self.spec
    }

    /// The same scan over `endpoints` only, with `partitions` partitions:
    /// the part of a scan one task of a distributed plan reads. Its row
    /// count is not known.
    pub fn part(&self, endpoints: Vec<Endpoint>, partitions: usize) -> QuiverScanExec {
        QuiverScanExec::new(
            self.client.clone(),
            ScanSpec {
                endpoints,
                partitions,
                total_rows: None,
                ..self.spec.clone()
            },
        )
    }
}

impl DisplayAs for QuiverScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let first = self.spec.endpoints.first();
        write!(
            f,
            "QuiverScanExec: endpoints={}, columns=[{}]",
            self.spec.endpoints.len(),
            self.spec
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        if let Some(filter) = first.and_then(|e| e.ticket.filter.as_deref()) {
            write!(f, ", filter={filter}")?;
        }
        if let Some(limit) = self.spec.limit {
            write!(f, ", limit={limit}")?;
        }
        Ok(())
    }
}

/// A batch as the plan's schema has it, or reduced to its row count. An
/// object of a merged table sends the columns it has, with its own types
/// (and a cold one read through a pre-signed URL, the file's types): each
/// of the schema's columns is taken by name and cast, losslessly, to the
/// schema's type, and one the object lacks is all nulls.
fn conform(batch: RecordBatch, schema: &SchemaRef, count_only: bool) -> DfResult<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    if count_only {
        return Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &options,
        )?);
    }
    let cast_options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(c) if c.data_type() == field.data_type() => Ok(c.clone()),
            Some(c) => cast_with_options(c, field.data_type(), &cast_options),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}

impl ExecutionPlan for QuiverScanExec {
    fn name(&self) -> &str {
        "QuiverScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "QuiverScanExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let schema = self.spec.schema.clone();
        let Some(endpoint) = self.spec.endpoints.get(partition).cloned() else {
            // A plan with no endpoints (a limit of 0) still has one empty
            // partition, and a part of a distributed scan may have more.
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )));
        };
        let client = self.client.clone();
        let rows = futures::stream::once(async move {
            client
                .read_endpoint(&endpoint)
                .await
                .map(|(_, stream)| stream)
        })
        .try_flatten()
        .boxed();
        let count_only = self.spec.count_only;
        let out = schema.clone();
        let stream = limit_rows(rows, self.spec.limit)
            .map_err(to_datafusion)
            .and_then(move |b| {
                let out = out.clone();
                async move { conform(b, &out, count_only) }
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn partition_statistics(&self, partition: Option<usize>) -> DfResult<Arc<Statistics>> {
        let mut stats = Statistics::new_unknown(&self.spec.schema);
        if let (None, Some(rows)) = (partition, self.spec.total_rows) {
            stats.num_rows = Precision::Exact(usize::try_from(rows).unwrap_or(usize::MAX));
        }
        Ok(Arc::new(stats))
    }
}

/// The scan spec of `plan` if it is a Quiver scan.
pub fn as_quiver_scan(plan: &dyn ExecutionPlan) -> Option<&QuiverScanExec> {
    plan.downcast_ref::<QuiverScanExec>()
}
