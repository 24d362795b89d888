//! A DataFusion table that is exactly one version of one Parquet object.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::reader::PinnedReaderFactory;
use crate::error::{QuiverError, Result};
use crate::source::ObjectId;

#[derive(Debug)]
pub struct ObjectTable {
    schema: SchemaRef,
    file: PartitionedFile,
    store_url: ObjectStoreUrl,
    factory: Arc<PinnedReaderFactory>,
}

impl ObjectTable {
    /// `row_groups`, when given, restricts the scan to those row groups.
    pub fn new(
        schema: SchemaRef,
        id: &ObjectId,
        store_url: ObjectStoreUrl,
        factory: Arc<PinnedReaderFactory>,
        row_groups: Option<&[usize]>,
        row_group_count: usize,
    ) -> Result<Self> {
        let mut file = PartitionedFile::new_from_meta(id.meta());
        if let Some(groups) = row_groups {
            let mut plan = ParquetAccessPlan::new_none(row_group_count);
            for &g in groups {
                if g >= row_group_count {
                    return Err(QuiverError::invalid(format!(
                        "row group {g} does not exist; {}/{} has {row_group_count}",
                        id.source, id.path
                    )));
                }
                plan.scan(g);
            }
            file = file.with_extension(plan);
        }
        Ok(ObjectTable {
            schema,
            file,
            store_url,
            factory,
        })
    }
}

#[async_trait]
impl TableProvider for ObjectTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Filters reach the Parquet source through DataFusion's physical
        // filter pushdown, which turns them into row-group, page and bloom
        // pruning plus a row filter inside the decoder.
        let source = ParquetSource::new(self.schema.clone())
            .with_table_parquet_options(state.default_table_options().parquet)
            .with_parquet_file_reader_factory(self.factory.clone());
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file(self.file.clone())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}
