//! The filter's conjuncts as the hot tier runs them: an expression through
//! DataFusion's kernels, or a range over one integer column in one pass.
//!
//! `k BETWEEN lo AND hi` reaches the hot tier as two conjuncts, `k >= lo`
//! and `k <= hi`. Run as Arrow kernels they read the column twice, build two
//! masks and combine them with a third pass; a selective query over decoded
//! arrays spends most of its time there. [`fuse`] gathers every bound the
//! conjuncts put on one integer column into one [`Conjunct::Range`], whose
//! mask is built by one pass over the values. Only integer-like columns
//! compared with a literal of their own type are fused: their order is the
//! plain one, so the result is the comparison kernels' exactly. Floats keep
//! their kernels (NaN and -0.0 compare by the node's own rules), and so do
//! casts and every other expression.

mod range;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_expr::PhysicalExpr;

/// One filter conjunct as the hot tier runs it.
#[derive(Debug)]
pub enum Conjunct {
    /// Any expression, through DataFusion's kernels.
    Expr(Arc<dyn PhysicalExpr>),
    /// Every bound the filter puts on one integer column, in one pass.
    Range(Range),
}

/// `column` between two bounds, each a literal of the column's own type.
#[derive(Debug)]
pub struct Range {
    column: usize,
    lower: Bound,
    upper: Bound,
}

/// One end of a [`Range`]: its value, and whether the value itself is in.
#[derive(Debug)]
struct Bound {
    value: ScalarValue,
    inclusive: bool,
}

impl Conjunct {
    /// The rows of `batch` this conjunct keeps: true where it holds, false
    /// (or null) where it does not or is null.
    pub fn mask(&self, batch: &RecordBatch) -> DfResult<BooleanArray> {
        match self {
            Conjunct::Expr(expr) => {
                let mask = expr.evaluate(batch)?.into_array(batch.num_rows())?;
                match mask.data_type() {
                    DataType::Boolean => Ok(mask.as_boolean().clone()),
                    other => Err(DataFusionError::Execution(format!(
                        "a filter conjunct evaluated to {other}, not a boolean"
                    ))),
                }
            }
            Conjunct::Range(range) => range.mask(batch),
        }
    }
}

/// A comparison of a column with a literal, as `column <op> literal`.
fn comparison(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Option<(usize, Operator, ScalarValue)> {
    let binary = expr.downcast_ref::<BinaryExpr>()?;
    let (column, op, literal) = match (
        binary.left().downcast_ref::<Column>(),
        binary.right().downcast_ref::<Literal>(),
    ) {
        (Some(c), Some(l)) => (c, *binary.op(), l),
        _ => {
            let column = binary.right().downcast_ref::<Column>()?;
            let literal = binary.left().downcast_ref::<Literal>()?;
            (column, binary.op().swap()?, literal)
        }
    };
    let value = literal.value();
    let field = schema.fields().get(column.index())?;
    if field.name() != column.name()
        || value.is_null()
        || &value.data_type() != field.data_type()
        || !fusable(field.data_type())
    {
        return None;
    }
    matches!(
        op,
        Operator::Gt | Operator::GtEq | Operator::Lt | Operator::LtEq
    )
    .then(|| (column.index(), op, value.clone()))
}

/// The types a range is fused on: integers, and types stored as integers
/// whose order is the integers' (dates, times, timestamps, durations), in
/// exactly the units [`Range::mask`] reads.
fn fusable(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(TimeUnit::Second | TimeUnit::Millisecond)
            | DataType::Time64(TimeUnit::Microsecond | TimeUnit::Nanosecond)
            | DataType::Timestamp(_, _)
            | DataType::Duration(_)
    )
}

/// The conjuncts of a filter over `schema`, with every column that has both
/// a lower and an upper bound fused into one range. The rows kept are the
/// same: the conjuncts are ANDed, and so are a range's bounds.
///
/// The range goes where its *last* bound was, the others dropped, and the
/// rest stay in order. An earlier conjunct that narrows the batch
/// (`hot::Job`) decides which rows a later one sees; placed at its first
/// bound, a range would narrow the rows an expression between its bounds
/// runs on, and could hide an error (a cast that does not fit) that the
/// Parquet path gives. At the last bound, an expression before or between
/// the bounds sees at least the rows it saw unfused: an error it raises
/// sends the row group to Parquet, which gives the client its error. An
/// expression after the range may see fewer rows than unfused (the range
/// keeps few enough rows to be copied out where its first bound alone did
/// not), as it may under the Parquet path's own row filter, which also
/// evaluates conjuncts only on the rows the earlier ones keep.
pub fn fuse(conjuncts: Vec<Arc<dyn PhysicalExpr>>, schema: &Schema) -> Vec<Conjunct> {
    let found: Vec<Option<(usize, Operator, ScalarValue)>> =
        conjuncts.iter().map(|c| comparison(c, schema)).collect();
    let mut lowers: BTreeMap<usize, Bound> = BTreeMap::new();
    let mut uppers: BTreeMap<usize, Bound> = BTreeMap::new();
    let mut last: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, (column, op, value)) in found
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().map(|f| (i, f)))
    {
        last.insert(*column, i);
        let bound = Bound {
            value: value.clone(),
            inclusive: matches!(op, Operator::GtEq | Operator::LtEq),
        };
        let (side, lower) = match op {
            Operator::Gt | Operator::GtEq => (&mut lowers, true),
            _ => (&mut uppers, false),
        };
        let tightest = tighter(side.remove(column), bound, lower);
        side.insert(*column, tightest);
    }
    let mut ranges: BTreeMap<usize, Range> = BTreeMap::new();
    for (column, lower) in lowers {
        if let Some(upper) = uppers.remove(&column) {
            ranges.insert(
                column,
                Range {
                    column,
                    lower,
                    upper,
                },
            );
        }
    }
    let fused: BTreeSet<usize> = ranges.keys().copied().collect();
    let mut out = Vec::with_capacity(conjuncts.len());
    for (i, (expr, found)) in conjuncts.into_iter().zip(found).enumerate() {
        match found
            .map(|(column, _, _)| column)
            .filter(|c| fused.contains(c))
        {
            Some(column) if last.get(&column) == Some(&i) => {
                out.extend(ranges.remove(&column).map(Conjunct::Range));
            }
            // A bound the range at the column's last bound holds.
            Some(_) => {}
            None => out.push(Conjunct::Expr(expr)),
        }
    }
    out
}

/// The tighter of two bounds of the same type: the greater lower bound or
/// the smaller upper one; of equal values, the exclusive one.
fn tighter(current: Option<Bound>, new: Bound, lower: bool) -> Bound {
    let Some(current) = current else {
        return new;
    };
    match new.value.partial_cmp(&current.value) {
        Some(std::cmp::Ordering::Equal) => Bound {
            inclusive: current.inclusive && new.inclusive,
            value: current.value,
        },
        Some(std::cmp::Ordering::Greater) if lower => new,
        Some(std::cmp::Ordering::Less) if !lower => new,
        _ => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        ArrayRef, Int32Array, Int64Array, Int8Array, TimestampMicrosecondArray,
        TimestampMillisecondArray, UInt64Array, UInt8Array,
    };
    use arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::{binary, col, lit};
    use proptest::prelude::*;

    fn schema(ty: DataType) -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("k", ty, true),
        ]))
    }

    /// `k <op> v`, or `v <op> k` when `flipped`.
    fn cmp(schema: &Schema, op: Operator, v: ScalarValue, flipped: bool) -> Arc<dyn PhysicalExpr> {
        let k = col("k", schema).unwrap();
        let v = lit(v);
        if flipped {
            binary(v, op.swap().unwrap(), k, schema).unwrap()
        } else {
            binary(k, op, v, schema).unwrap()
        }
    }

    /// The rows every conjunct keeps, by DataFusion's kernels and by the
    /// fused conjuncts.
    fn both(batch: &RecordBatch, conjuncts: Vec<Arc<dyn PhysicalExpr>>) -> (Vec<bool>, Vec<bool>) {
        let rows = batch.num_rows();
        let run = |cs: Vec<Conjunct>| {
            let mut kept = vec![true; rows];
            for c in &cs {
                let mask = c.mask(batch).unwrap();
                assert_eq!(mask.len(), rows);
                for (i, k) in kept.iter_mut().enumerate() {
                    *k &= mask.is_valid(i) && mask.value(i);
                }
            }
            kept
        };
        let plain = run(conjuncts.iter().cloned().map(Conjunct::Expr).collect());
        let fused = run(fuse(conjuncts, batch.schema_ref()));
        (plain, fused)
    }

    /// [`both`] for bounds `(operator index into OPS, value, flipped)`,
    /// each value a literal made by `scalar`.
    fn bounded<V: Copy>(
        batch: &RecordBatch,
        bounds: &[(usize, V, bool)],
        scalar: impl Fn(V) -> ScalarValue,
    ) -> (Vec<bool>, Vec<bool>) {
        let conjuncts = bounds
            .iter()
            .map(|&(op, v, flipped)| cmp(batch.schema_ref(), OPS[op], scalar(v), flipped))
            .collect();
        both(batch, conjuncts)
    }

    const OPS: [Operator; 4] = [Operator::Gt, Operator::GtEq, Operator::Lt, Operator::LtEq];

    fn batch(k: ArrayRef) -> RecordBatch {
        let s: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![Some("x"); k.len()]));
        RecordBatch::try_new(schema(k.data_type().clone()), vec![s, k]).unwrap()
    }

    proptest! {
        /// Any set of bounds on an int64 column with nulls, at the type's
        /// ends included, keeps exactly the rows the kernels keep, also
        /// on a slice of the column that starts inside a 64-value word.
        #[test]
        fn fused_bounds_keep_what_the_kernels_keep(
            values in prop::collection::vec(prop::option::weighted(0.9, prop_oneof![
                -20i64..20, Just(i64::MIN), Just(i64::MAX)]), 0..300),
            bounds in prop::collection::vec((0usize..4, prop_oneof![
                -25i64..25, Just(i64::MIN), Just(i64::MAX)], any::<bool>()), 1..5),
            skip in 0usize..70,
        ) {
            let skip = skip.min(values.len());
            let len = values.len() - skip;
            let b = batch(Arc::new(Int64Array::from(values).slice(skip, len)));
            let (plain, fused) = bounded(&b, &bounds, |v| ScalarValue::Int64(Some(v)));
            prop_assert_eq!(plain, fused);
        }

        /// The same on signed bytes, and on timestamps with a time zone.
        #[test]
        fn narrow_and_zoned_columns_keep_what_the_kernels_keep(
            values in prop::collection::vec(prop::option::of(any::<i8>()), 0..300),
            bounds in prop::collection::vec((0usize..4, any::<i8>(), any::<bool>()), 1..4),
        ) {
            let b = batch(Arc::new(Int8Array::from(values.clone())));
            let (plain, fused) = bounded(&b, &bounds, |v| ScalarValue::Int8(Some(v)));
            prop_assert_eq!(plain, fused);

            let zone: Option<Arc<str>> = Some("+02:00".into());
            let ts = TimestampMicrosecondArray::from(
                values.iter().map(|v| v.map(i64::from)).collect::<Vec<_>>(),
            )
            .with_timezone_opt(zone.clone());
            let b = batch(Arc::new(ts));
            let conjuncts = bounds
                .iter()
                .map(|&(op, v, flipped)| {
                    let v = ScalarValue::TimestampMicrosecond(Some(i64::from(v)), zone.clone());
                    cmp(b.schema_ref(), OPS[op], v, flipped)
                })
                .collect();
            let (plain, fused) = both(&b, conjuncts);
            prop_assert_eq!(plain, fused);
        }

        /// The same on unsigned bytes, whose ends are 0 and 255.
        #[test]
        fn unsigned_ends_keep_what_the_kernels_keep(
            values in prop::collection::vec(prop::option::of(any::<u8>()), 0..300),
            bounds in prop::collection::vec((0usize..4, any::<u8>(), any::<bool>()), 1..4),
        ) {
            let b = batch(Arc::new(UInt8Array::from(values)));
            let (plain, fused) = bounded(&b, &bounds, |v| ScalarValue::UInt8(Some(v)));
            prop_assert_eq!(plain, fused);
        }

        /// Unsigned 64-bit values over their whole range, those above
        /// `i64::MAX` included, whose keys are the values themselves.
        #[test]
        fn wide_unsigned_values_keep_what_the_kernels_keep(
            values in prop::collection::vec(prop::option::of(prop_oneof![
                any::<u64>(), Just(0u64), Just(u64::MAX), Just(1u64 << 63)]), 0..300),
            bounds in prop::collection::vec((0usize..4, prop_oneof![
                any::<u64>(), Just(0u64), Just(u64::MAX), Just(1u64 << 63)], any::<bool>()), 1..4),
        ) {
            let b = batch(Arc::new(UInt64Array::from(values)));
            let (plain, fused) = bounded(&b, &bounds, |v| ScalarValue::UInt64(Some(v)));
            prop_assert_eq!(plain, fused);
        }

        /// A slice of an int32 column, around zero and at the type's ends.
        #[test]
        fn sliced_int32_columns_keep_what_the_kernels_keep(
            values in prop::collection::vec(prop::option::weighted(0.9, prop_oneof![
                -40i32..40, Just(i32::MIN), Just(i32::MAX)]), 0..300),
            bounds in prop::collection::vec((0usize..4, prop_oneof![
                -45i32..45, Just(i32::MIN), Just(i32::MAX)], any::<bool>()), 1..4),
            skip in 0usize..130,
        ) {
            let skip = skip.min(values.len());
            let len = values.len() - skip;
            let b = batch(Arc::new(Int32Array::from(values).slice(skip, len)));
            let (plain, fused) = bounded(&b, &bounds, |v| ScalarValue::Int32(Some(v)));
            prop_assert_eq!(plain, fused);
        }
    }

    /// Every type `fusable` accepts is one `Range::mask` can run, and it
    /// keeps what the kernels keep there: the two lists of types are kept
    /// by hand, and a type in the first alone would fail every range over
    /// it (the row group would go to Parquet, slower).
    #[test]
    fn every_fusable_type_is_masked_like_the_kernels() {
        use arrow::datatypes::TimeUnit::*;
        let candidates = [
            DataType::Int8,
            DataType::Int16,
            DataType::Int32,
            DataType::Int64,
            DataType::UInt8,
            DataType::UInt16,
            DataType::UInt32,
            DataType::UInt64,
            DataType::Date32,
            DataType::Date64,
            DataType::Time32(Second),
            DataType::Time32(Millisecond),
            DataType::Time64(Microsecond),
            DataType::Time64(Nanosecond),
            DataType::Timestamp(Second, None),
            DataType::Timestamp(Millisecond, Some("UTC".into())),
            DataType::Timestamp(Microsecond, Some("+02:00".into())),
            DataType::Timestamp(Nanosecond, None),
            DataType::Duration(Second),
            DataType::Duration(Millisecond),
            DataType::Duration(Microsecond),
            DataType::Duration(Nanosecond),
        ];
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(1),
            None,
            Some(5),
            Some(9),
            Some(3),
        ]));
        let mut fused_types = 0;
        for ty in candidates {
            // Arrow casts 32-bit times from 32-bit integers only.
            let k = arrow::compute::cast(&ints, &ty)
                .or_else(|_| {
                    arrow::compute::cast(&arrow::compute::cast(&ints, &DataType::Int32)?, &ty)
                })
                .unwrap();
            let b = batch(k.clone());
            let lo = ScalarValue::try_from_array(&k, 4).unwrap();
            let hi = ScalarValue::try_from_array(&k, 2).unwrap();
            let conjuncts = vec![
                cmp(b.schema_ref(), Operator::GtEq, lo, false),
                cmp(b.schema_ref(), Operator::LtEq, hi, false),
            ];
            if fuse(conjuncts.clone(), b.schema_ref())
                .iter()
                .any(|c| matches!(c, Conjunct::Range(_)))
            {
                fused_types += 1;
            }
            let (plain, fused) = both(&b, conjuncts);
            assert_eq!(plain, fused, "{ty}");
            assert_eq!(plain, vec![false, false, true, false, true], "{ty}");
        }
        assert_eq!(fused_types, 22);
    }

    /// A lower and an upper bound on one column become one range where the
    /// last was, so an expression between them sees the rows it saw
    /// unfused; other conjuncts, one-sided bounds and literals of another
    /// type stay expressions, in order.
    #[test]
    fn only_two_sided_ranges_of_the_columns_own_type_are_fused() {
        let s = schema(DataType::Int32);
        let other = binary(
            col("s", &s).unwrap(),
            Operator::Eq,
            lit(ScalarValue::Utf8(Some("x".into()))),
            &s,
        )
        .unwrap();
        let fused = fuse(
            vec![
                other.clone(),
                cmp(&s, Operator::GtEq, ScalarValue::Int32(Some(1)), false),
                cmp(&s, Operator::Lt, ScalarValue::Int32(Some(9)), true),
            ],
            &s,
        );
        assert!(
            matches!(fused.as_slice(), [Conjunct::Expr(_), Conjunct::Range(_)]),
            "{fused:?}"
        );

        let between = fuse(
            vec![
                cmp(&s, Operator::GtEq, ScalarValue::Int32(Some(1)), false),
                other.clone(),
                cmp(&s, Operator::Lt, ScalarValue::Int32(Some(9)), false),
            ],
            &s,
        );
        assert!(
            matches!(between.as_slice(), [Conjunct::Expr(_), Conjunct::Range(_)]),
            "{between:?}"
        );

        let one_sided = fuse(
            vec![cmp(&s, Operator::Gt, ScalarValue::Int32(Some(1)), false)],
            &s,
        );
        assert!(matches!(one_sided.as_slice(), [Conjunct::Expr(_)]));

        let wide = fuse(
            vec![
                cmp(&s, Operator::Gt, ScalarValue::Int32(Some(1)), false),
                Arc::new(BinaryExpr::new(
                    col("k", &s).unwrap(),
                    Operator::Lt,
                    lit(ScalarValue::Int64(Some(9))),
                )),
            ],
            &s,
        );
        assert!(
            wide.iter().all(|c| matches!(c, Conjunct::Expr(_))),
            "{wide:?}"
        );

        let b = batch(Arc::new(Int32Array::from(vec![
            Some(0),
            Some(1),
            Some(2),
            None,
            Some(8),
            Some(9),
        ])));
        let kept = fused[1].mask(&b).unwrap();
        assert_eq!(
            kept.iter().collect::<Vec<_>>(),
            [false, true, true, false, true, false].map(Some)
        );
    }

    /// `BETWEEN` as the node plans a client's filter (`Predicate`) becomes
    /// one range, on a narrower integer column too (the literals take its
    /// type).
    #[test]
    fn between_as_the_node_plans_it_is_one_range() {
        use crate::scan::predicate::Predicate;
        use datafusion::physical_expr::split_conjunction;
        let state = datafusion::prelude::SessionContext::new().state();
        for ty in [DataType::Int64, DataType::Int32, DataType::UInt16] {
            let s = schema(ty.clone());
            let p = Predicate::plan(&state, "k BETWEEN 5 AND 10 AND s = 'x'", &s, "t").unwrap();
            let expr = p.physical(&state, &s).unwrap();
            let fused = fuse(split_conjunction(&expr).into_iter().cloned().collect(), &s);
            assert_eq!(fused.len(), 2, "{ty}: {fused:?}");
            assert!(
                fused.iter().any(|c| matches!(c, Conjunct::Range(_))),
                "{ty}: {fused:?}"
            );
        }
    }

    /// Timestamps are fused as their integers, bounds of their own unit and
    /// zone.
    #[test]
    fn timestamps_are_ranges_of_their_integers() {
        let k = TimestampMillisecondArray::from(vec![Some(10), None, Some(20), Some(30)]);
        let b = batch(Arc::new(k));
        let ts = |v| ScalarValue::TimestampMillisecond(Some(v), None);
        let conjuncts = vec![
            cmp(b.schema_ref(), Operator::GtEq, ts(20), false),
            cmp(b.schema_ref(), Operator::LtEq, ts(30), false),
        ];
        assert!(matches!(
            fuse(conjuncts.clone(), b.schema_ref()).as_slice(),
            [Conjunct::Range(_)]
        ));
        let (plain, fused) = both(&b, conjuncts);
        assert_eq!(plain, [false, false, true, true]);
        assert_eq!(plain, fused);
    }
}
