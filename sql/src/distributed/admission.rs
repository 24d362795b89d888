//! Which task plans a worker runs. A task is whatever plan its coordinator
//! sent, decoded with DataFusion's codecs, which can also describe scans of
//! local files; the worker service admits only peers, but a node without
//! tokens (on loopback, or `--insecure` on a private network) admits any
//! caller that reaches the port. So a task may read only what a statement
//! planned by a Quiver node reads: Quiver endpoints, the output of other
//! stages, and rows written in the statement (VALUES, a single row, an
//! empty relation).

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::NetworkBoundaryExt;
use quiver_client::exec::as_quiver_scan;

/// `Ok` when every source `plan` reads is one a Quiver statement may read;
/// otherwise a Plan error naming the first that is not.
pub(crate) fn admit(plan: &Arc<dyn ExecutionPlan>) -> DfResult<()> {
    plan.apply(|node| {
        // Another stage's output: read from its workers, not here.
        if node.as_ref().is_network_boundary() {
            return Ok(TreeNodeRecursion::Jump);
        }
        if node.children().is_empty() && !readable(node) {
            return Err(DataFusionError::Plan(format!(
                "a Quiver worker reads only Quiver scans, other stages and literal rows; a task reading {} is refused",
                node.name()
            )));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(())
}

fn readable(leaf: &Arc<dyn ExecutionPlan>) -> bool {
    as_quiver_scan(leaf.as_ref()).is_some()
        || leaf.is::<EmptyExec>()
        || leaf.is::<PlaceholderRowExec>()
        || leaf
            .downcast_ref::<DataSourceExec>()
            .is_some_and(|d| d.data_source().is::<MemorySourceConfig>())
}

#[cfg(test)]
mod tests {
    use datafusion::dataframe::DataFrameWriteOptions;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};

    use super::*;

    async fn plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
        ctx.sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_task_reading_local_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.parquet");
        let ctx = SessionContext::new();
        ctx.sql("SELECT 1 AS a")
            .await
            .unwrap()
            .write_parquet(path.to_str().unwrap(), DataFrameWriteOptions::new(), None)
            .await
            .unwrap();
        ctx.register_parquet(
            "secret",
            path.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
        let refused = admit(&plan(&ctx, "SELECT a + 1 FROM secret").await).unwrap_err();
        assert!(refused.to_string().contains("is refused"), "{refused}");
        for allowed in [
            "SELECT 1",
            "SELECT * FROM (VALUES (1), (2)) AS v(x) WHERE x > 1",
            "SELECT 1 WHERE false",
        ] {
            admit(&plan(&ctx, allowed).await).unwrap_or_else(|e| panic!("{allowed}: {e}"));
        }
    }
}
