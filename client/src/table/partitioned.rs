//! A partitioned table: one [`QuiverTable`] per partition, the partition
//! values as extra columns, and filters on them answered by pruning whole
//! partitions before any node is asked for data. Hive-style directories
//! (`year=2024/month=1/...`) give string values; a Delta table's log gives
//! typed ones, null included.

use std::sync::Arc;

use super::QuiverTable;
use crate::error::ClientError;
use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;

/// One partition: its values, in partition-column order and of the
/// partition columns' types.
#[derive(Debug)]
pub struct Partition {
    pub values: Vec<ScalarValue>,
    pub table: Arc<QuiverTable>,
}

#[derive(Debug)]
pub struct PartitionedTable {
    schema: SchemaRef,
    /// The files' own columns come first in `schema`; this many of them.
    file_columns: usize,
    partition_fields: Vec<Field>,
    partitions: Vec<Partition>,
}

impl PartitionedTable {
    /// Every partition must be read with the same file schema (the merged
    /// schema of all their files, `TableFiles::merged_schema`), and no
    /// partition column may share a name with a file column.
    pub fn try_new(
        partition_fields: Vec<Field>,
        partitions: Vec<Partition>,
    ) -> Result<PartitionedTable, ClientError> {
        let Some(first) = partitions.first() else {
            return Err(ClientError::Refused(
                "a partitioned table has no partitions".into(),
            ));
        };
        let file_schema = first.table.schema();
        for p in &partitions[1..] {
            if p.table.schema().fields() != file_schema.fields() {
                return Err(ClientError::Refused(format!(
                    "partition {} has another schema than {}",
                    p.table.path(),
                    first.table.path()
                )));
            }
        }
        let mut fields: Vec<Field> = file_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for f in &partition_fields {
            if file_schema.field_with_name(f.name()).is_ok() {
                return Err(ClientError::Refused(format!(
                    "partition column `{}` is also a column of the files",
                    f.name()
                )));
            }
            fields.push(f.clone());
        }
        for p in &partitions {
            let typed = p.values.len() == partition_fields.len()
                && p.values
                    .iter()
                    .zip(&partition_fields)
                    .all(|(v, f)| &v.data_type() == f.data_type());
            if !typed {
                return Err(ClientError::Refused(format!(
                    "partition {} has values that do not match the partition columns",
                    p.table.path()
                )));
            }
        }
        Ok(PartitionedTable {
            schema: Arc::new(Schema::new(fields)),
            file_columns: file_schema.fields().len(),
            partition_fields,
            partitions,
        })
    }

    fn is_partition_column(&self, name: &str) -> bool {
        self.partition_fields.iter().any(|f| f.name() == name)
    }

    /// Which columns `expr` reads: (any partition column, any file column).
    fn reads(&self, expr: &Expr) -> (bool, bool) {
        let columns = expr.column_refs();
        let partition = columns.iter().any(|c| self.is_partition_column(&c.name));
        let file = columns.iter().any(|c| !self.is_partition_column(&c.name));
        (partition, file)
    }

    /// Whether every filter holds for partition `p`'s values.
    fn keeps(&self, state: &dyn Session, filters: &[&Expr], p: &Partition) -> DfResult<bool> {
        if filters.is_empty() {
            return Ok(true);
        }
        let schema = Arc::new(Schema::new(self.partition_fields.clone()));
        let columns: Vec<ArrayRef> = p
            .values
            .iter()
            .map(ScalarValue::to_array)
            .collect::<DfResult<_>>()?;
        let row = RecordBatch::try_new(schema.clone(), columns)?;
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        for f in filters {
            let physical = state.create_physical_expr(strip((*f).clone()), &df_schema)?;
            let value = physical.evaluate(&row)?.into_array(1)?;
            let kept = ScalarValue::try_from_array(&value, 0)?;
            if kept != ScalarValue::Boolean(Some(true)) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// `expr` with its column qualifiers removed, to evaluate against a bare
/// schema of partition values.
fn strip(expr: Expr) -> Expr {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    expr.transform(|e| {
        Ok(match e {
            Expr::Column(c) => Transformed::yes(Expr::Column(
                datafusion::common::Column::new_unqualified(c.name),
            )),
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
    .unwrap_or_else(|e| Expr::Literal(ScalarValue::Utf8(Some(e.to_string())), None))
}

#[async_trait]
impl TableProvider for PartitionedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Exact for filters on partition columns only (they prune partitions);
    /// for filters on file columns only, what the partitions' tables say
    /// together (Exact only when every partition's is, Unsupported only
    /// when every partition's is, else Inexact: their files may differ in
    /// schema); Unsupported for filters that mix the two.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        use TableProviderFilterPushDown::{Exact, Inexact, Unsupported};
        let mut inner: Option<Vec<TableProviderFilterPushDown>> = None;
        for p in &self.partitions {
            let own = p.table.supports_filters_pushdown(filters)?;
            inner = Some(match inner {
                None => own,
                Some(so_far) => so_far
                    .into_iter()
                    .zip(own)
                    .map(|(a, b)| if a == b { a } else { Inexact })
                    .collect(),
            });
        }
        let inner = inner.unwrap_or_else(|| vec![Unsupported; filters.len()]);
        Ok(filters
            .iter()
            .zip(inner)
            .map(|(f, inner)| match self.reads(f) {
                (true, false) => Exact,
                (false, _) => inner,
                (true, true) => Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let projection = projection.unwrap_or(&all);
        let out_schema = Arc::new(self.schema.project(projection)?);
        let partition_filters: Vec<&Expr> = filters
            .iter()
            .filter(|f| self.reads(f) == (true, false))
            .collect();
        let file_filters: Vec<Expr> = filters
            .iter()
            .filter(|f| !self.reads(f).0)
            .cloned()
            .collect();
        // The files' columns the query needs, in the order it needs them.
        let file_projection: Vec<usize> = projection
            .iter()
            .copied()
            .filter(|&i| i < self.file_columns)
            .collect();
        let mut plans = Vec::new();
        for p in &self.partitions {
            if !self.keeps(state, &partition_filters, p)? {
                continue;
            }
            let inner = p
                .table
                .scan(state, Some(&file_projection), &file_filters, limit)
                .await?;
            let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::new();
            let mut next_file = 0;
            for &i in projection {
                let name = self.schema.field(i).name().clone();
                if i < self.file_columns {
                    exprs.push((Arc::new(Column::new(&name, next_file)), name));
                    next_file += 1;
                } else {
                    let value = p
                        .values
                        .get(i - self.file_columns)
                        .cloned()
                        .ok_or_else(|| {
                            DataFusionError::Internal(format!("partition value of {name}"))
                        })?;
                    exprs.push((Arc::new(Literal::new(value)), name));
                }
            }
            plans.push(Arc::new(ProjectionExec::try_new(exprs, inner)?) as Arc<dyn ExecutionPlan>);
        }
        match plans.len() {
            0 => Ok(Arc::new(EmptyExec::new(out_schema))),
            1 => Ok(plans.remove(0)),
            _ => UnionExec::try_new(plans),
        }
    }
}
