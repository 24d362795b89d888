//! The Parquet path: the physical plan that reads exactly one version of
//! one object through the cache and evaluates the scan's one predicate.
//!
//! The plan is built directly, not through a logical plan and DataFusion's
//! optimizer, so the expression it filters with is the very one the hot tier
//! evaluates (`predicate`); nothing rewrites it on one path only.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::config::TableParquetOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

use super::deleted_rows::DeletedRows;
use super::reader::PinnedReaderFactory;
use crate::error::{QuiverError, Result};
use crate::source::ObjectId;

/// What the Parquet path reads and how it filters.
#[derive(Clone)]
pub struct ParquetPlan {
    /// The whole file's schema.
    pub schema: SchemaRef,
    pub store_url: ObjectStoreUrl,
    pub factory: Arc<PinnedReaderFactory>,
    /// The row groups to read, after pruning, in file order.
    pub row_groups: Vec<usize>,
    /// The file's columns the scan reads (projection and filter), ascending.
    pub read: Vec<usize>,
    /// The predicate over the whole file's schema: DataFusion's page-index
    /// and bloom-filter pruning and the decoder's row filter use it.
    pub file_predicate: Option<Arc<dyn PhysicalExpr>>,
    /// The same predicate over the columns read, applied to every batch.
    pub read_predicate: Option<Arc<dyn PhysicalExpr>>,
    /// Which of the columns read the client gets, in its order.
    pub projection: Vec<usize>,
    pub limit: Option<usize>,
    /// Rows the table's log deletes: never decoded.
    pub deleted: Option<Arc<DeletedRows>>,
    /// The session's Parquet options.
    pub options: TableParquetOptions,
}

impl ParquetPlan {
    pub fn build(self, id: &ObjectId, row_group_count: usize) -> Result<Arc<dyn ExecutionPlan>> {
        let fail = |e: datafusion::error::DataFusionError| {
            QuiverError::Internal(format!(
                "planning the scan of {}/{}: {e}",
                id.source, id.path
            ))
        };
        let mut access = ParquetAccessPlan::new_none(row_group_count);
        for &g in &self.row_groups {
            if g >= row_group_count {
                return Err(QuiverError::invalid(format!(
                    "row group {g} does not exist; {}/{} has {row_group_count}",
                    id.source, id.path
                )));
            }
            access.scan(g);
            // A selection narrows a row group that is scanned; on one
            // skipped it would do nothing.
            if let Some(selection) = self.deleted.as_ref().and_then(|d| d.selection(g)) {
                access.scan_selection(g, selection);
            }
        }
        let file = PartitionedFile::new_from_meta(id.meta()).with_extension(access);
        let mut options = self.options;
        // Row groups were pruned already, by the statistics both paths share.
        options.global.pruning = false;
        let mut source = ParquetSource::new(self.schema.clone())
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(self.factory.clone());
        if let Some(predicate) = &self.file_predicate {
            source = source.with_predicate(predicate.clone());
        }
        let scan_limit = if self.read_predicate.is_none() {
            self.limit
        } else {
            None
        };
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file(file)
            .with_projection_indices(Some(self.read.clone()))
            .map_err(fail)?
            .with_limit(scan_limit)
            .build();
        let mut plan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        if let Some(predicate) = self.read_predicate {
            plan = Arc::new(FilterExec::try_new(predicate, plan).map_err(fail)?);
        }
        let identity = self.projection.iter().copied().eq(0..self.read.len());
        if !identity {
            let input = plan.schema();
            let columns: Vec<(Arc<dyn PhysicalExpr>, String)> = self
                .projection
                .iter()
                .map(|&i| {
                    let name = input.field(i).name().clone();
                    (
                        Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                        name,
                    )
                })
                .collect();
            plan = Arc::new(ProjectionExec::try_new(columns, plan).map_err(fail)?);
        }
        if let Some(limit) = self.limit {
            plan = Arc::new(GlobalLimitExec::new(plan, 0, Some(limit)));
        }
        Ok(plan)
    }
}
