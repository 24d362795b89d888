//! A DataFusion table over the Parquet objects under one source path, read
//! through Quiver: projection, filters and limit go to the owning nodes, and
//! only the matching rows cross the network.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{DataFusionError, Result as DfResult, Statistics};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use quiver_protocol::ScanRequest;

use crate::error::{to_datafusion, ClientError};
use crate::exec::{QuiverScanExec, ScanSpec};
use crate::pushdown::filter_text;
use crate::routing::QuiverClient;

#[derive(Debug)]
pub struct QuiverTable {
    client: QuiverClient,
    source: String,
    path: String,
    schema: SchemaRef,
    statistics: Statistics,
}

impl QuiverTable {
    /// A table of `source`/`path`: one object, or every Parquet object under
    /// a prefix ending in `/`. Fails now, with the node's message, if the
    /// source or path does not exist or the objects' schemas differ.
    pub async fn try_new(
        client: QuiverClient,
        source: impl Into<String>,
        path: impl Into<String>,
    ) -> Result<QuiverTable, ClientError> {
        let (source, path) = (source.into(), path.into());
        let req = ScanRequest {
            source: Some(source.clone()),
            path: Some(path.clone()),
            ..Default::default()
        };
        let schema = client.schema(&req).await?;
        let objects = client.list(&source, &path).await?;
        let rows = objects
            .iter()
            .map(|o| o.rows)
            .try_fold(0u64, |sum, r| r.and_then(|r| sum.checked_add(r)));
        let bytes = objects
            .iter()
            .try_fold(0u64, |sum, o| sum.checked_add(o.listing.size));
        let mut statistics = Statistics::new_unknown(&schema);
        if let Some(rows) = rows.and_then(|r| usize::try_from(r).ok()) {
            statistics.num_rows = Precision::Exact(rows);
        }
        // Parquet is compressed: the decoded size is larger, so this is a
        // lower bound for join planning, not an exact figure.
        if let Some(bytes) = bytes.and_then(|b| usize::try_from(b).ok()) {
            statistics.total_byte_size = Precision::Inexact(bytes);
        }
        Ok(QuiverTable {
            client,
            source,
            path,
            schema,
            statistics,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The request the node is sent for a scan of this table.
    fn request(
        &self,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<(ScanRequest, SchemaRef, bool)> {
        // DataFusion passes only the filters declared Exact, so each must
        // still convert; dropping one would return rows it excludes.
        let texts: Vec<String> = filters
            .iter()
            .map(|f| {
                filter_text(f, &self.schema).ok_or_else(|| {
                    DataFusionError::Internal(format!(
                        "filter {f} was pushed to Quiver but cannot be sent to the node"
                    ))
                })
            })
            .collect::<DfResult<_>>()?;
        let filter = match texts.len() {
            0 => None,
            1 => texts.into_iter().next(),
            _ => Some(
                texts
                    .iter()
                    .map(|t| format!("({t})"))
                    .collect::<Vec<_>>()
                    .join(" AND "),
            ),
        };
        let (columns, schema, count_only) = match projection {
            None => (None, self.schema.clone(), false),
            Some(p) if p.is_empty() => {
                // Only row counts are needed: ask for one column, then drop
                // it, since a batch with no columns cannot cross Flight.
                let first = self.schema.fields().first().map(|f| f.name().clone());
                (first.map(|c| vec![c]), Arc::new(Schema::empty()), true)
            }
            Some(p) => {
                let schema = Arc::new(self.schema.project(p)?);
                let names = schema.fields().iter().map(|f| f.name().clone()).collect();
                (Some(names), schema, false)
            }
        };
        let req = ScanRequest {
            source: Some(self.source.clone()),
            path: Some(self.path.clone()),
            columns,
            filter,
            limit: limit.map(|l| l as u64),
            ..Default::default()
        };
        Ok((req, schema, count_only))
    }
}

#[async_trait]
impl TableProvider for QuiverTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (req, schema, count_only) = self.request(projection, filters, limit)?;
        let plan = self.client.plan(&req).await.map_err(to_datafusion)?;
        let spec = ScanSpec {
            schema,
            endpoints: plan.endpoints,
            limit: req.limit,
            count_only,
            total_rows: plan.total_records,
        };
        Ok(Arc::new(QuiverScanExec::new(self.client.clone(), spec)))
    }

    /// Exact for every filter the node evaluates itself (DataFusion then
    /// drops it from the plan); Unsupported for the rest, which DataFusion
    /// applies to the rows that come back.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match filter_text(f, &self.schema) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(self.statistics.clone())
    }
}
