//! A table whose columns are read under other names: a Delta table that
//! maps columns keeps them in its files under physical names (`col-<uuid>`)
//! and shows them under the names its schema gives. Everything below this
//! table (the files' schemas, partition values, log statistics, the
//! requests sent to the nodes) speaks physical names; this only renames
//! the columns on the way in (filters) and on the way out (the plan's
//! output), so no other part needs to know.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result as DfResult, Statistics};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

use crate::error::ClientError;

#[derive(Debug)]
pub struct RenamedTable {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    /// The inner name of each column this table shows under another.
    inner_names: HashMap<String, String>,
}

impl RenamedTable {
    /// `inner` with each column named by a key of `names` (shown name to
    /// inner name) shown under that key. Two columns may not end up with
    /// one name.
    pub fn try_new(
        inner: Arc<dyn TableProvider>,
        names: &HashMap<String, String>,
    ) -> Result<RenamedTable, ClientError> {
        let shown: HashMap<&str, &str> = names
            .iter()
            .map(|(shown, inner)| (inner.as_str(), shown.as_str()))
            .collect();
        let fields: Vec<Field> = inner
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let name = shown.get(f.name().as_str()).copied().unwrap_or(f.name());
                f.as_ref().clone().with_name(name)
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        if let Some(f) = fields.iter().find(|f| !seen.insert(f.name().clone())) {
            return Err(ClientError::Refused(format!(
                "two columns of the table would be named `{}`",
                f.name()
            )));
        }
        Ok(RenamedTable {
            inner,
            schema: Arc::new(Schema::new(fields)),
            inner_names: names.clone(),
        })
    }

    /// `expr` over the inner table's names.
    fn to_inner(&self, expr: &Expr) -> DfResult<Expr> {
        Ok(expr
            .clone()
            .transform(|e| {
                Ok(match e {
                    Expr::Column(c) => match self.inner_names.get(&c.name) {
                        Some(inner) => {
                            Transformed::yes(Expr::Column(Column::new(c.relation, inner)))
                        }
                        None => Transformed::no(Expr::Column(c)),
                    },
                    other => Transformed::no(other),
                })
            })?
            .data)
    }
}

#[async_trait]
impl TableProvider for RenamedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let inner: Vec<Expr> = filters
            .iter()
            .map(|f| self.to_inner(f))
            .collect::<DfResult<_>>()?;
        let refs: Vec<&Expr> = inner.iter().collect();
        self.inner.supports_filters_pushdown(&refs)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let inner_filters: Vec<Expr> = filters
            .iter()
            .map(|f| self.to_inner(f))
            .collect::<DfResult<_>>()?;
        let plan = self
            .inner
            .scan(state, projection, &inner_filters, limit)
            .await?;
        // The plan's columns are the projected ones, in order: each gets
        // the name this table shows it under.
        let shown: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let input = plan.schema();
        let columns: Vec<(Arc<dyn PhysicalExpr>, String)> = shown
            .iter()
            .enumerate()
            .map(|(i, &field)| {
                let name = self.schema.field(field).name().clone();
                let column: Arc<dyn PhysicalExpr> =
                    Arc::new(PhysicalColumn::new(input.field(i).name(), i));
                (column, name)
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(columns, plan)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::DataType;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// Filters, projections and aggregates name the shown columns and see
    /// the inner ones' values.
    #[tokio::test]
    async fn columns_are_shown_under_their_names() {
        let inner_schema = Arc::new(Schema::new(vec![
            Field::new("col-a1", DataType::Int64, false),
            Field::new("col-b2", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            inner_schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..10)),
                Arc::new(StringArray::from_iter_values(
                    (0..10).map(|i| format!("s{i}")),
                )),
            ],
        )
        .unwrap();
        let inner = Arc::new(MemTable::try_new(inner_schema, vec![vec![batch]]).unwrap());
        let names: HashMap<String, String> = [("id", "col-a1"), ("name", "col-b2")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let table = RenamedTable::try_new(inner, &names).unwrap();
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let out = ctx
            .sql("SELECT name, id FROM t WHERE id > 6 ORDER BY id")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let batch = &out[0];
        assert_eq!(batch.schema().field(0).name(), "name");
        assert_eq!(batch.num_rows(), 3);
        let count = ctx
            .sql("SELECT count(*) AS n, max(t.id) AS m FROM t WHERE t.name <> 's0'")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&count)
            .unwrap()
            .to_string();
        assert!(text.contains("| 9 | 9 |"), "{text}");

        let clash: HashMap<String, String> = [("col-b2".to_string(), "col-a1".to_string())]
            .into_iter()
            .collect();
        let inner = Arc::new(
            MemTable::try_new(
                Arc::new(Schema::new(vec![
                    Field::new("col-a1", DataType::Int64, false),
                    Field::new("col-b2", DataType::Utf8, true),
                ])),
                vec![vec![]],
            )
            .unwrap(),
        );
        assert!(RenamedTable::try_new(inner, &clash).is_err());
    }
}
