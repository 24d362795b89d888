//! The DataFusion `TableProvider` of a [`QuiverTable`]: which filters it
//! takes, and the physical plan of a scan (the Quiver scan, with a filter
//! and projection over it for the filters past the pushdown budget).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, Result as DfResult, Statistics};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

use super::file_stats::{self, FileStats};
use super::files::TableObject;
use super::scan_plan::ObjectRequest;
use super::QuiverTable;
use crate::exec::{QuiverScanExec, ScanSpec};
use crate::pushdown::{filter_text, PushBudget};

/// `expr` with its columns unqualified: the scan's schema has no table name.
fn unqualified(expr: Expr) -> DfResult<Expr> {
    Ok(expr
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                other => Transformed::no(other),
            })
        })?
        .data)
}

impl QuiverTable {
    /// The objects that may hold a row for which every filter holds: all
    /// of them, but for those whose log statistics prove otherwise
    /// (`file_stats`).
    fn may_match(&self, state: &dyn Session, filters: &[Expr]) -> DfResult<Vec<&TableObject>> {
        let all = || self.objects.iter().collect();
        if self.objects.iter().all(|o| o.stats.is_none()) {
            return Ok(all());
        }
        let filters = filters
            .iter()
            .cloned()
            .map(unqualified)
            .collect::<DfResult<Vec<_>>>()?;
        let Some(predicate) = conjunction(filters) else {
            return Ok(all());
        };
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
        let Ok(predicate) = state.create_physical_expr(predicate, &df_schema) else {
            return Ok(all());
        };
        let stats: Vec<Option<&FileStats>> =
            self.objects.iter().map(|o| o.stats.as_ref()).collect();
        let kept = file_stats::may_match(predicate, &self.schema, &stats);
        Ok(self
            .objects
            .iter()
            .zip(kept)
            .filter_map(|(o, keep)| keep.then_some(o))
            .collect())
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
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        // Every filter DataFusion declared Exact reaches every object (see
        // `supports_filters_pushdown`); an Inexact one goes to the objects
        // that evaluate it and DataFusion applies it again to all rows. A
        // request carries them ANDed, and those that no longer fit one
        // request (DataFusion asks about filters a few at a time, so the
        // budget there cannot see them all) are applied here instead.
        let mut budget = PushBudget::default();
        let (texts, rest): (Vec<(&Expr, String)>, Vec<(&Expr, String)>) = filters
            .iter()
            .filter_map(|f| filter_text(f, &self.schema).map(|t| (f, t)))
            .partition(|(_, t)| budget.admit(t));
        let wanted: Vec<usize> = match projection {
            None => (0..self.schema.fields().len()).collect(),
            Some(p) => p.clone(),
        };
        let mut read = wanted.clone();
        for (f, _) in &rest {
            for c in f.column_refs() {
                let i = self.schema.index_of(&c.name)?;
                if !read.contains(&i) {
                    read.push(i);
                }
            }
        }
        let schema = Arc::new(self.schema.project(&read)?);
        let objects = self.may_match(state, filters)?;
        let requests: Vec<ObjectRequest> = objects
            .iter()
            .map(|o| self.object_request(o, schema.fields(), &texts))
            .collect();
        // A limit holds after every filter: with some applied here, the
        // nodes must not stop early.
        let limit = limit.filter(|_| rest.is_empty()).map(|l| l as u64);
        let plan = self.plan(&objects, requests, limit).await?;
        let spec = ScanSpec {
            count_only: schema.fields().is_empty(),
            schema: schema.clone(),
            endpoints: plan.endpoints,
            limit,
            total_rows: plan.total_records,
            partitions: 1,
        };
        let scan: Arc<dyn ExecutionPlan> = Arc::new(QuiverScanExec::new(self.client.clone(), spec));
        let rest = rest
            .into_iter()
            .map(|(f, _)| unqualified(f.clone()))
            .collect::<DfResult<Vec<_>>>()?;
        let Some(predicate) = conjunction(rest) else {
            return Ok(scan);
        };
        let predicate =
            state.create_physical_expr(predicate, &DFSchema::try_from(schema.as_ref().clone())?)?;
        let filtered: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(predicate, scan)?);
        let columns: Vec<(Arc<dyn PhysicalExpr>, String)> = wanted
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let name = self.schema.field(w).name().clone();
                (
                    Arc::new(PhysicalColumn::new(&name, i)) as Arc<dyn PhysicalExpr>,
                    name,
                )
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(columns, filtered)?))
    }

    /// Exact for every filter each object evaluates itself (DataFusion then
    /// drops it from the plan), as long as the filters pushed fit one
    /// request together (`PushBudget`); Inexact for one only some objects can
    /// evaluate as the table does (a column missing or of a narrower type
    /// in the others), which DataFusion applies again; Unsupported for the
    /// rest, which DataFusion applies to the rows that come back.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let mut budget = PushBudget::default();
        Ok(filters
            .iter()
            .map(|f| {
                let fits = filter_text(f, &self.schema).is_some_and(|t| budget.admit(&t));
                if !fits {
                    return TableProviderFilterPushDown::Unsupported;
                }
                let objects = self.objects.iter().filter(|o| self.evaluates(o, f)).count();
                match objects {
                    n if n == self.objects.len() => TableProviderFilterPushDown::Exact,
                    0 => TableProviderFilterPushDown::Unsupported,
                    _ => TableProviderFilterPushDown::Inexact,
                }
            })
            .collect())
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(self.statistics.clone())
    }
}
