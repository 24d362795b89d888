//! EXPLAIN of a statement that runs in stages. DataFusion renders EXPLAIN
//! from its own single-node plan, so a plain EXPLAIN answered that way
//! would not show what runs: here the distributed plan is shown instead,
//! stage by stage with its tasks, and each scan task with the node it is
//! sent to. (EXPLAIN ANALYZE is the engine's own, with every stage's
//! metrics.)

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion_distributed::{display_plan_ascii, DistributedExec};

use super::placement;

/// The answer to `plan` when it is a plain EXPLAIN whose statement runs in
/// stages, in `schema` (EXPLAIN's two text columns); `None` otherwise.
pub(crate) async fn explain(
    ctx: &SessionContext,
    plan: &LogicalPlan,
    schema: &SchemaRef,
) -> DfResult<Option<RecordBatch>> {
    let LogicalPlan::Explain(e) = plan else {
        return Ok(None);
    };
    if e.verbose {
        return Ok(None);
    }
    let state = ctx.state();
    let physical = state.create_physical_plan(&e.plan).await?;
    if !physical.is::<DistributedExec>() {
        return Ok(None);
    }
    let rows = [
        ("logical_plan", e.plan.display_indent().to_string()),
        (
            "distributed_plan",
            display_plan_ascii(physical.as_ref(), false),
        ),
        ("scan_tasks", placement::readers(&physical, state.config())?),
    ];
    let kinds = StringArray::from_iter_values(rows.iter().map(|(k, _)| *k));
    let texts = StringArray::from_iter_values(rows.iter().map(|(_, t)| t.as_str()));
    RecordBatch::try_new(schema.clone(), vec![Arc::new(kinds), Arc::new(texts)])
        .map(Some)
        .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
}
