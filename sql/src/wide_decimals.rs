//! `sum` and `avg` over wide decimals without silent overflow.
//!
//! DataFusion sums `decimal(p, s)` into `decimal(min(38, p + 10), s)` with
//! wrapping 128-bit additions (and `avg` sums the same way), so a
//! `decimal(38, 10)` column whose sum leaves the 128-bit range comes back as
//! a wrong value, with no error. These replace the built-in ones in Flight
//! SQL sessions: for a `decimal128` of more than 28 digits, where that can
//! happen, they accumulate in 256 bits and answer a `decimal256` (DataFusion's
//! own rule for a `decimal256` input: `sum` gives 10 more digits, `avg` 4
//! more digits and 4 more decimals), which no realistic row count can
//! overflow; every other input is aggregated exactly as DataFusion does.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, FieldRef, DECIMAL128_MAX_PRECISION};
use datafusion::common::{Result, ScalarValue};
use datafusion::functions_aggregate::average::avg_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, ReversedUDAF,
    SetMonotonicity, Signature,
};

/// The `sum` and `avg` Flight SQL sessions register in place of
/// DataFusion's.
pub fn udafs() -> [AggregateUDF; 2] {
    [
        AggregateUDF::from(WideDecimal { inner: sum_udaf() }),
        AggregateUDF::from(WideDecimal { inner: avg_udaf() }),
    ]
}

/// The type an aggregate of `input` accumulates in, when it is not
/// DataFusion's.
fn widened(input: &DataType) -> Option<DataType> {
    match input {
        DataType::Decimal128(p, s) if p.saturating_add(10) > DECIMAL128_MAX_PRECISION => {
            Some(DataType::Decimal256(*p, *s))
        }
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct WideDecimal {
    inner: Arc<AggregateUDF>,
}

/// `fields` with a wide decimal one made `decimal256`, when there is one.
fn widened_fields(fields: &[FieldRef]) -> Option<(Vec<FieldRef>, DataType)> {
    let [field] = fields else {
        return None;
    };
    let to = widened(field.data_type())?;
    let wide = Arc::new(field.as_ref().clone().with_data_type(to.clone()));
    Some((vec![wide], to))
}

impl AggregateUDFImpl for WideDecimal {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [input] => match widened(input) {
                Some(wide) => self.inner.return_type(&[wide]),
                None => self.inner.return_type(arg_types),
            },
            _ => self.inner.return_type(arg_types),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match widened_fields(args.expr_fields) {
            Some((fields, to)) => {
                let inner = self.inner.accumulator(AccumulatorArgs {
                    expr_fields: &fields,
                    ..args
                })?;
                Ok(Box::new(Widened { inner, to }))
            }
            None => self.inner.accumulator(args),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        match widened_fields(args.input_fields) {
            Some((fields, _)) => self.inner.state_fields(StateFieldsArgs {
                input_fields: &fields,
                ..args
            }),
            None => self.inner.state_fields(args),
        }
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        match widened_fields(args.expr_fields) {
            Some((fields, _)) => self.inner.groups_accumulator_supported(AccumulatorArgs {
                expr_fields: &fields,
                ..args
            }),
            None => self.inner.groups_accumulator_supported(args),
        }
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        match widened_fields(args.expr_fields) {
            Some((fields, to)) => {
                let inner = self.inner.create_groups_accumulator(AccumulatorArgs {
                    expr_fields: &fields,
                    ..args
                })?;
                Ok(Box::new(WidenedGroups { inner, to }))
            }
            None => self.inner.create_groups_accumulator(args),
        }
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match widened_fields(args.expr_fields) {
            Some((fields, to)) => {
                let inner = self.inner.create_sliding_accumulator(AccumulatorArgs {
                    expr_fields: &fields,
                    ..args
                })?;
                Ok(Box::new(Widened { inner, to }))
            }
            None => self.inner.create_sliding_accumulator(args),
        }
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        self.inner.inner().reverse_expr()
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.inner().order_sensitivity()
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner.default_value(data_type)
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner.inner().set_monotonicity(data_type)
    }
}

fn widen(values: &[ArrayRef], to: &DataType) -> Result<Vec<ArrayRef>> {
    Ok(values
        .iter()
        .map(|v| cast(v, to))
        .collect::<std::result::Result<_, _>>()?)
}

/// An accumulator fed its input cast to the wider type it sums in.
#[derive(Debug)]
struct Widened {
    inner: Box<dyn Accumulator>,
    to: DataType,
}

impl Accumulator for Widened {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.update_batch(&widen(values, &self.to)?)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.inner.evaluate()
    }

    fn size(&self) -> usize {
        self.inner.size() + std::mem::size_of::<Self>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.retract_batch(&widen(values, &self.to)?)
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
}

/// A groups accumulator fed its input cast to the wider type it sums in.
struct WidenedGroups {
    inner: Box<dyn GroupsAccumulator>,
    to: DataType,
}

impl GroupsAccumulator for WidenedGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner.update_batch(
            &widen(values, &self.to)?,
            group_indices,
            opt_filter,
            total_num_groups,
        )
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.inner.evaluate(emit_to)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.inner.state(emit_to)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner
            .merge_batch(values, group_indices, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        self.inner
            .convert_to_state(&widen(values, &self.to)?, opt_filter)
    }

    fn size(&self) -> usize {
        self.inner.size() + std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, RecordBatch};
    use arrow::datatypes::{Field, Schema};
    use datafusion::prelude::SessionContext;

    /// Two values near the top of `decimal(38, 10)` sum past the 128-bit
    /// range; DataFusion's own `sum` returns a wrapped, wrong value.
    #[tokio::test]
    async fn wide_decimal_sums_and_averages_are_exact_where_the_builtins_wrap() {
        let big = 99_999_999_999_999_999_999_999_999_999_999_999_999i128;
        let values = Decimal128Array::from(vec![Some(big), Some(big), Some(-1), None])
            .with_precision_and_scale(38, 10)
            .unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("d", DataType::Decimal128(38, 10), true),
            Field::new("k", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(values),
                Arc::new(arrow::array::Int32Array::from(vec![1, 1, 2, 2])),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_batch("t", batch).unwrap();
        for f in udafs() {
            ctx.register_udaf(f);
        }
        let out = ctx
            .sql("SELECT sum(d) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let got = ScalarValue::try_from_array(out[0].column(0), 0).unwrap();
        assert_eq!(got.to_string(), "19999999999999999999999999999.9999999997");

        // The built-in sum, on the same rows, does not give that answer.
        let builtin = SessionContext::new();
        builtin
            .register_batch(
                "t",
                ctx.table("t").await.unwrap().collect().await.unwrap()[0].clone(),
            )
            .unwrap();
        let wrapped = builtin
            .sql("SELECT sum(d) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let wrapped = ScalarValue::try_from_array(wrapped[0].column(0), 0).unwrap();
        assert_ne!(wrapped.to_string(), got.to_string());
        let grouped = ctx
            .sql("SELECT k, sum(d) FROM t GROUP BY k ORDER BY k")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let first = ScalarValue::try_from_array(grouped[0].column(1), 0).unwrap();
        let second = ScalarValue::try_from_array(grouped[0].column(1), 1).unwrap();
        assert_eq!(
            first.to_string(),
            "19999999999999999999999999999.9999999998"
        );
        assert_eq!(second.to_string(), "-0.0000000001");

        let avg = ctx
            .sql("SELECT avg(d) FROM t WHERE k = 1")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let avg = ScalarValue::try_from_array(avg[0].column(0), 0).unwrap();
        assert_eq!(
            avg.to_string(),
            "9999999999999999999999999999.99999999990000"
        );
    }
}
