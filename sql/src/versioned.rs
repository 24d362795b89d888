//! Time travel over Delta tables: `"sales@v3"` names version 3 of table
//! `sales`, `"sales@2026-12-01T00:00:00Z"` the version committed last at or
//! before that time (Databricks' `@v` spelling; quoted, as `@` is not part
//! of a bare name). The catalog registers each Delta table as a
//! [`DeltaTable`], which knows where its log is; a statement naming a
//! version gets that snapshot registered in its own session under the name
//! it used.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{ResolvedTableReference, Result as DfResult, Statistics};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use quiver_client::table::AsOf;
use quiver_client::{QuiverClient, QuiverTable};
use tonic::Status;

use crate::error::client_status;

/// A Delta table's latest version, with where its log is, so that other
/// versions of it can be read.
#[derive(Debug)]
pub struct DeltaTable {
    latest: Arc<dyn TableProvider>,
    client: QuiverClient,
    source: String,
    root: String,
}

impl DeltaTable {
    pub fn new(
        latest: Arc<dyn TableProvider>,
        client: QuiverClient,
        source: &str,
        root: &str,
    ) -> DeltaTable {
        DeltaTable {
            latest,
            client,
            source: source.to_string(),
            root: root.to_string(),
        }
    }
}

#[async_trait]
impl TableProvider for DeltaTable {
    fn schema(&self) -> SchemaRef {
        self.latest.schema()
    }

    fn table_type(&self) -> TableType {
        self.latest.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.latest.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.latest.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.latest.statistics()
    }
}

/// When `table` names a version of a Delta table (`name@v3`, `name@<time>`)
/// and no table has that very name, registers that version under it in
/// `ctx` and says so; `Ok(false)` when it names no version.
pub async fn register_version(
    ctx: &SessionContext,
    table: &ResolvedTableReference,
) -> Result<bool, Status> {
    let Some((base, as_of)) = table.table.rsplit_once('@') else {
        return Ok(false);
    };
    let Some(schema) = ctx
        .catalog(&table.catalog)
        .and_then(|c| c.schema(&table.schema))
    else {
        return Ok(false);
    };
    let Some(found) = schema
        .table(base)
        .await
        .map_err(|e| Status::internal(e.to_string()))?
    else {
        return Ok(false);
    };
    let Some(delta) = found.downcast_ref::<DeltaTable>() else {
        return Err(Status::invalid_argument(format!(
            "{}.{}.{base} is not a Delta table: only Delta tables have versions (`{}`)",
            table.catalog, table.schema, table.table
        )));
    };
    let version = QuiverTable::delta(
        delta.client.clone(),
        &delta.source,
        &delta.root,
        AsOf::parse(as_of),
    )
    .await
    .map_err(|e| client_status(&e))?;
    schema
        .register_table(table.table.to_string(), version)
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(true)
}
