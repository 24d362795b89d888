//! Evaluating one row group from the hot tier's decoded arrays.
//!
//! A row group whose every column the scan reads is in the tier never
//! touches Parquet: its arrays become one batch and the filter's conjuncts
//! run over it (Arrow kernels, or one pass for a range over an integer
//! column: `conjunct`), their masks combined. The rows a conjunct keeps are
//! copied out for the next one only when it keeps few of them; otherwise the
//! combined mask is applied once, at the end, to the projected columns
//! alone, so a conjunct that keeps most rows copies nothing and the columns
//! the filter reads but the client does not are never copied. `row_groups`
//! decides which row groups come from here and runs them beside the ones
//! read from Parquet.

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::compute::{and, filter_record_batch};
use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DfResult};

use super::conjunct::Conjunct;

/// How much a conjunct must narrow a row group before the rows it keeps are
/// copied out for the next one: copying every column costs more than running
/// the next conjunct over rows already ruled out, unless few rows survive.
const NARROW: usize = 8;

/// What evaluating any hot row group of one scan needs.
pub struct Job {
    /// The columns the scan reads (projection and filter), in this order.
    pub input: SchemaRef,
    /// The filter's conjuncts, over `input`, ranges fused
    /// (`conjunct::fuse`); applied in order.
    pub conjuncts: Vec<Conjunct>,
    /// Which `input` columns the client gets, in its order.
    pub projection: Vec<usize>,
    pub output: SchemaRef,
    /// At least one.
    pub batch_rows: usize,
}

impl Job {
    /// Filters and projects one row group of `rows` rows into batches of at
    /// most `batch_rows`. Rows `keep` leaves out (deleted by the table's
    /// log) are dropped before any conjunct runs.
    pub fn evaluate(
        &self,
        arrays: Vec<ArrayRef>,
        rows: usize,
        keep: Option<BooleanArray>,
    ) -> DfResult<Vec<RecordBatch>> {
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let mut batch = RecordBatch::try_new_with_options(self.input.clone(), arrays, &options)?;
        // The rows of `batch` every conjunct so far keeps, when they have not
        // been taken out of it yet.
        let mut kept: Option<BooleanArray> = None;
        if let Some(keep) = keep {
            if keep.len() != rows {
                return Err(DataFusionError::Execution(format!(
                    "a row group of {rows} rows has a deletion mask of {}",
                    keep.len()
                )));
            }
            match keep.true_count() {
                0 => return Ok(Vec::new()),
                n if n == rows => {}
                n if !self.conjuncts.is_empty() && n.saturating_mul(NARROW) <= rows => {
                    batch = filter_record_batch(&batch, &keep)?;
                }
                _ => kept = Some(keep),
            }
        }
        for (i, conjunct) in self.conjuncts.iter().enumerate() {
            let mask = conjunct.mask(&batch)?;
            let mask = match kept.take() {
                Some(before) => and(&before, &mask)?,
                None => mask,
            };
            let count = mask.true_count();
            if count == 0 {
                return Ok(Vec::new());
            }
            if count == mask.len() {
                continue;
            }
            let more = i + 1 < self.conjuncts.len();
            if more && count.saturating_mul(NARROW) <= batch.num_rows() {
                batch = filter_record_batch(&batch, &mask)?;
            } else {
                kept = Some(mask);
            }
        }
        let columns: Vec<ArrayRef> = self
            .projection
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let mut out = RecordBatch::try_new_with_options(self.output.clone(), columns, &options)?;
        if let Some(mask) = kept {
            out = filter_record_batch(&out, &mask)?;
        }
        let total = out.num_rows();
        let mut batches = Vec::with_capacity(total.div_ceil(self.batch_rows));
        let mut offset = 0;
        while offset < total {
            let len = self.batch_rows.min(total - offset);
            batches.push(out.slice(offset, len));
            offset += len;
        }
        Ok(batches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::conjunct::fuse;
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{binary, col, lit};
    use std::sync::Arc;

    const ROWS: i64 = 1000;

    /// Conjuncts `k <op> value`, and the `k` of the rows they keep.
    type Case = (Vec<(Operator, i64)>, Vec<i64>);

    /// Evaluates `k <op> value` conjuncts over `k = 0..ROWS` and `s = k` as
    /// text, projecting `(s, k)`, and returns the `k` of each row kept.
    fn kept(conjuncts: &[(Operator, i64)]) -> Vec<i64> {
        kept_after(conjuncts, None)
    }

    /// As [`kept`], with the rows `deleted` says dropped first. Runs the
    /// conjuncts both as kernels and fused (`conjunct::fuse`), which must
    /// keep the same rows.
    fn kept_after(
        conjuncts: &[(Operator, i64)],
        deleted: Option<&dyn Fn(i64) -> bool>,
    ) -> Vec<i64> {
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let exprs: Vec<_> = conjuncts
            .iter()
            .map(|(op, v)| binary(col("k", &input).unwrap(), *op, lit(*v), &input).unwrap())
            .collect();
        let plain = run(
            &input,
            exprs.iter().cloned().map(Conjunct::Expr).collect(),
            deleted,
        );
        let fused = run(&input, fuse(exprs, &input), deleted);
        assert_eq!(plain, fused, "{conjuncts:?}");
        plain
    }

    fn run(
        input: &SchemaRef,
        conjuncts: Vec<Conjunct>,
        deleted: Option<&dyn Fn(i64) -> bool>,
    ) -> Vec<i64> {
        let output = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, false),
            Field::new("k", DataType::Int64, false),
        ]));
        let job = Job {
            input: input.clone(),
            conjuncts,
            projection: vec![1, 0],
            output,
            batch_rows: 64,
        };
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(0..ROWS)),
            Arc::new(StringArray::from_iter_values(
                (0..ROWS).map(|k| k.to_string()),
            )),
        ];
        let keep = deleted.map(|d| BooleanArray::from_iter((0..ROWS).map(|k| Some(!d(k)))));
        let batches = job.evaluate(arrays, ROWS as usize, keep).unwrap();
        let mut ks = Vec::new();
        for b in &batches {
            assert!(b.num_rows() > 0 && b.num_rows() <= 64, "{}", b.num_rows());
            let s = b.column(0).as_string::<i32>();
            let k = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
            for i in 0..b.num_rows() {
                assert_eq!(s.value(i), k.value(i).to_string());
                ks.push(k.value(i));
            }
        }
        ks
    }

    /// Whichever way the masks are combined (kept for the end, or applied
    /// early when a conjunct narrows the rows enough), the rows kept are
    /// those every conjunct keeps, in order, with their projected columns.
    #[test]
    fn conjuncts_keep_the_rows_all_of_them_keep() {
        use Operator::*;
        let cases: Vec<Case> = vec![
            // A range: unfused, neither half narrows enough and one mask is
            // applied at the end; fused, it is one conjunct.
            (vec![(GtEq, 300), (LtEq, 309)], (300..=309).collect()),
            // A narrow first conjunct: its rows are taken out early.
            (vec![(GtEq, 990), (LtEq, 995)], (990..=995).collect()),
            (
                vec![(GtEq, 100), (Lt, 900), (NotEq, 500), (Gt, 880)],
                (881..900).collect(),
            ),
            (vec![(GtEq, 0)], (0..ROWS).collect()),
            (vec![(GtEq, 0), (LtEq, ROWS)], (0..ROWS).collect()),
            (vec![(Lt, 0), (GtEq, 0)], vec![]),
            (vec![(GtEq, 500), (Lt, 500)], vec![]),
            (vec![], (0..ROWS).collect()),
        ];
        for (conjuncts, want) in cases {
            assert_eq!(kept(&conjuncts), want, "{conjuncts:?}");
        }
    }

    /// Deleted rows are never kept, whether the deletion mask is applied
    /// first (it rules out most rows), kept for the end, or is the only
    /// mask (no filter).
    #[test]
    fn deleted_rows_are_never_kept() {
        use Operator::*;
        let few: &dyn Fn(i64) -> bool = &|k| k % 10 == 3;
        let most: &dyn Fn(i64) -> bool = &|k| k % 100 != 7;
        let all: &dyn Fn(i64) -> bool = &|_| true;
        for deleted in [few, most, all] {
            for conjuncts in [vec![], vec![(GtEq, 100), (Lt, 400)], vec![(Lt, 5)]] {
                let want: Vec<i64> = kept(&conjuncts)
                    .into_iter()
                    .filter(|&k| !deleted(k))
                    .collect();
                assert_eq!(kept_after(&conjuncts, Some(deleted)), want, "{conjuncts:?}");
            }
        }
    }
}
