//! Skipping a table's files by the statistics its log keeps (Delta's
//! `minValues`, `maxValues`, `nullCount` and `numRecords` per file): a file
//! whose values cannot satisfy a scan's filters is not planned at all, so
//! it costs neither a GetFlightInfo nor a footer read.
//!
//! Only statistics that bound the values exactly are used: integers,
//! dates and booleans. Delta writers leave NaN out of float statistics
//! (under Quiver's semantics NaN is above every number, so `x > 5` can
//! match a file whose max says 3), truncate strings to a prefix and
//! timestamps to milliseconds, so a skip on those could drop a matching
//! row; they are left unknown, and unknown never skips.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, UInt64Array};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, ScalarValue};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;

/// What a table's log says of one file's values, for the columns whose
/// statistics can be trusted to skip it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileStats {
    rows: Option<u64>,
    min: HashMap<String, ScalarValue>,
    max: HashMap<String, ScalarValue>,
    nulls: HashMap<String, u64>,
}

/// Whether statistics of `data_type` bound a file's values exactly.
fn exact(data_type: &DataType) -> bool {
    data_type.is_integer()
        || matches!(
            data_type,
            DataType::Date32 | DataType::Date64 | DataType::Boolean
        )
}

/// `value`, a statistic as Delta's JSON writes it, as a value of `field`'s
/// type; `None` when it is not one.
fn typed(value: &serde_json::Value, data_type: &DataType) -> Option<ScalarValue> {
    let scalar = match value {
        serde_json::Value::Number(n) => ScalarValue::Int64(Some(n.as_i64()?)),
        serde_json::Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        serde_json::Value::String(s) => ScalarValue::try_from_string(s.clone(), data_type).ok()?,
        _ => return None,
    };
    scalar.cast_to(data_type).ok().filter(|v| !v.is_null())
}

impl FileStats {
    /// The statistics of a Delta `add` action (`stats` as parsed JSON) for
    /// the top-level columns of `schema`.
    pub fn from_delta(stats: &serde_json::Value, schema: &Schema) -> FileStats {
        let rows = stats.get("numRecords").and_then(serde_json::Value::as_u64);
        let mut out = FileStats {
            rows,
            ..FileStats::default()
        };
        for field in schema.fields().iter().filter(|f| exact(f.data_type())) {
            let name = field.name();
            let of = |key: &str| stats.get(key).and_then(|m| m.get(name));
            if let Some(v) = of("minValues").and_then(|v| typed(v, field.data_type())) {
                out.min.insert(name.clone(), v);
            }
            if let Some(v) = of("maxValues").and_then(|v| typed(v, field.data_type())) {
                out.max.insert(name.clone(), v);
            }
            if let Some(n) = of("nullCount").and_then(serde_json::Value::as_u64) {
                out.nulls.insert(name.clone(), n);
            }
        }
        out
    }
}

/// The statistics of a table's files, one container each.
struct Files<'a> {
    schema: &'a Schema,
    stats: &'a [Option<&'a FileStats>],
}

impl Files<'_> {
    fn values(
        &self,
        column: &Column,
        pick: impl Fn(&FileStats) -> Option<&ScalarValue>,
    ) -> Option<ArrayRef> {
        let field = self.schema.field_with_name(&column.name).ok()?;
        if !exact(field.data_type()) {
            return None;
        }
        let nulls = ScalarValue::try_from(field.data_type()).ok()?;
        let values = self
            .stats
            .iter()
            .map(|s| s.and_then(&pick).cloned().unwrap_or_else(|| nulls.clone()));
        ScalarValue::iter_to_array(values).ok()
    }
}

impl PruningStatistics for Files<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.min.get(&column.name))
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.max.get(&column.name))
    }

    fn num_containers(&self) -> usize {
        self.stats.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let counts: UInt64Array = self
            .stats
            .iter()
            .map(|s| s.and_then(|s| s.nulls.get(&column.name).copied()))
            .collect();
        Some(Arc::new(counts))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        let counts: UInt64Array = self.stats.iter().map(|s| s.and_then(|s| s.rows)).collect();
        Some(Arc::new(counts))
    }

    fn contained(&self, _: &Column, _: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// Which of the files with `stats` may hold a row for which `predicate`
/// (over `schema`) is true: `false` only where the statistics prove none
/// can. Anything that cannot be decided keeps the file.
pub fn may_match(
    predicate: Arc<dyn PhysicalExpr>,
    schema: &SchemaRef,
    stats: &[Option<&FileStats>],
) -> Vec<bool> {
    let keep_all = vec![true; stats.len()];
    if stats.iter().all(Option::is_none) {
        return keep_all;
    }
    let Some(pruning) = PruningPredicateBuilder::new()
        .with_file_schema(schema.clone())
        .build(predicate)
    else {
        return keep_all;
    };
    let files = Files {
        schema: schema.as_ref(),
        stats,
    };
    match pruning.prune(&files) {
        Ok(kept) if kept.len() == stats.len() => kept,
        _ => keep_all,
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::Field;
    use datafusion::common::DFSchema;
    use datafusion::logical_expr::{col, lit};
    use datafusion::prelude::SessionContext;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("d", DataType::Date32, true),
        ]))
    }

    fn stats(json: &str) -> FileStats {
        FileStats::from_delta(&serde_json::from_str(json).unwrap(), &schema())
    }

    fn kept(expr: datafusion::logical_expr::Expr, files: &[Option<&FileStats>]) -> Vec<bool> {
        let schema = schema();
        let df = DFSchema::try_from(schema.as_ref().clone()).unwrap();
        let predicate = SessionContext::new()
            .state()
            .create_physical_expr(expr, &df)
            .unwrap();
        may_match(predicate, &schema, files)
    }

    #[test]
    fn exact_statistics_skip_files_and_the_rest_never_do() {
        let a = stats(
            r#"{"numRecords":10,"minValues":{"id":0,"x":-1.0,"s":"a","d":"2026-01-01"},
                "maxValues":{"id":9,"x":3.0,"s":"b","d":"2026-01-02"},"nullCount":{"id":0,"x":0}}"#,
        );
        let b = stats(
            r#"{"numRecords":5,"minValues":{"id":10},"maxValues":{"id":19},"nullCount":{"id":1}}"#,
        );
        let files = [Some(&a), Some(&b), None];
        assert_eq!(kept(col("id").gt(lit(12i64)), &files), [false, true, true]);
        assert_eq!(kept(col("id").lt(lit(3i64)), &files), [true, false, true]);
        // b has a null id, a has none.
        assert_eq!(kept(col("id").is_null(), &files), [false, true, true]);
        // Float and string statistics are never trusted (NaN, truncation).
        assert_eq!(kept(col("x").gt(lit(5.0)), &files), [true, true, true]);
        assert_eq!(kept(col("s").gt(lit("zz")), &files), [true, true, true]);
        let date = ScalarValue::try_from_string("2026-02-01".into(), &DataType::Date32).unwrap();
        assert_eq!(kept(col("d").gt_eq(lit(date)), &files), [false, true, true]);
    }
}
