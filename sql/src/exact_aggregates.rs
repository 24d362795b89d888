//! `sum` and `avg` that never return a wrapped value.
//!
//! DataFusion sums with wrapping additions: `decimal(p, s)` into
//! `decimal(min(38, p + 10), s)` in 128 bits, `bigint` and `bigint
//! unsigned` in 64 bits (and `avg` of a decimal sums the same way), so a sum
//! past that range comes back as a wrong value with no error. These replace
//! the built-in ones in Flight SQL sessions and accumulate wider where that
//! can happen:
//! - a `decimal128` of more than 28 digits accumulates in 256 bits and
//!   answers a `decimal256` (DataFusion's own rule for a `decimal256`
//!   input: `sum` gives 10 more digits, `avg` 4 more digits and 4 more
//!   decimals), which no realistic row count can overflow;
//! - `sum` of a 64-bit integer accumulates as `decimal(38, 0)` and answers
//!   in its own type, or fails with an overflow error when the exact sum
//!   does not fit it.
//!
//! Every other input is aggregated exactly as DataFusion does.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray};
use arrow::compute::{cast, cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, FieldRef, DECIMAL128_MAX_PRECISION};
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
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
        AggregateUDF::from(Exact { inner: sum_udaf() }),
        AggregateUDF::from(Exact { inner: avg_udaf() }),
    ]
}

/// How an aggregate of one input type is computed instead of DataFusion's
/// way.
struct Widening {
    /// The type the input is cast to before the built-in aggregates it.
    accumulate: DataType,
    /// What the built-in answers for that type.
    inner_output: DataType,
    /// The type the answer is cast back to, checked, if not `inner_output`.
    output: Option<DataType>,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Exact {
    inner: Arc<AggregateUDF>,
}

impl Exact {
    fn widening(&self, input: &DataType) -> Result<Option<Widening>> {
        let (accumulate, output) = match input {
            DataType::Decimal128(p, s) if p.saturating_add(10) > DECIMAL128_MAX_PRECISION => {
                (DataType::Decimal256(*p, *s), None)
            }
            DataType::Int64 | DataType::UInt64 if self.inner.name() == "sum" => (
                DataType::Decimal128(DECIMAL128_MAX_PRECISION, 0),
                Some(input.clone()),
            ),
            _ => return Ok(None),
        };
        let inner_output = self.inner.return_type(std::slice::from_ref(&accumulate))?;
        Ok(Some(Widening {
            accumulate,
            inner_output,
            output,
        }))
    }

    /// `fields` (one input) with its type widened, and the widening.
    fn widened_fields(&self, fields: &[FieldRef]) -> Result<Option<(Vec<FieldRef>, Widening)>> {
        let [field] = fields else {
            return Ok(None);
        };
        Ok(self.widening(field.data_type())?.map(|w| {
            let wide = Arc::new(field.as_ref().clone().with_data_type(w.accumulate.clone()));
            (vec![wide], w)
        }))
    }

    /// The accumulator `make` builds for the widened input, or for `args`
    /// as they are.
    fn accumulator_with(
        &self,
        args: AccumulatorArgs,
        make: impl FnOnce(AccumulatorArgs) -> Result<Box<dyn Accumulator>>,
    ) -> Result<Box<dyn Accumulator>> {
        match self.widened_fields(args.expr_fields)? {
            Some((fields, w)) => {
                let inner = make(AccumulatorArgs {
                    expr_fields: &fields,
                    return_field: output_field(&args.return_field, &w.inner_output),
                    ..args
                })?;
                Ok(Box::new(Widened {
                    inner,
                    to: w.accumulate,
                    output: w.output,
                }))
            }
            None => make(args),
        }
    }
}

/// `field` with the type the built-in answers.
fn output_field(field: &FieldRef, ty: &DataType) -> FieldRef {
    Arc::new(Field::new(field.name(), ty.clone(), field.is_nullable()))
}

impl AggregateUDFImpl for Exact {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [input] => match self.widening(input)? {
                Some(w) => Ok(w.output.unwrap_or(w.inner_output)),
                None => self.inner.return_type(arg_types),
            },
            _ => self.inner.return_type(arg_types),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.accumulator_with(args, |a| self.inner.accumulator(a))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        match self.widened_fields(args.input_fields)? {
            Some((fields, w)) => self.inner.state_fields(StateFieldsArgs {
                input_fields: &fields,
                return_field: output_field(&args.return_field, &w.inner_output),
                ..args
            }),
            None => self.inner.state_fields(args),
        }
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        match self.widened_fields(args.expr_fields) {
            Ok(Some((fields, w))) => self.inner.groups_accumulator_supported(AccumulatorArgs {
                expr_fields: &fields,
                return_field: output_field(&args.return_field, &w.inner_output),
                ..args
            }),
            Ok(None) => self.inner.groups_accumulator_supported(args),
            Err(_) => false,
        }
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        match self.widened_fields(args.expr_fields)? {
            Some((fields, w)) => {
                let inner = self.inner.create_groups_accumulator(AccumulatorArgs {
                    expr_fields: &fields,
                    return_field: output_field(&args.return_field, &w.inner_output),
                    ..args
                })?;
                Ok(Box::new(WidenedGroups {
                    inner,
                    to: w.accumulate,
                    output: w.output,
                }))
            }
            None => self.inner.create_groups_accumulator(args),
        }
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.accumulator_with(args, |a| self.inner.create_sliding_accumulator(a))
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

/// `answer` in the type `output` asks for; a value that does not fit is an
/// overflow error, never a wrapped or null value.
fn narrowed(answer: ArrayRef, output: &Option<DataType>) -> Result<ArrayRef> {
    let Some(ty) = output else {
        return Ok(answer);
    };
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(&answer, ty, &options).map_err(|e| {
        DataFusionError::ArrowError(
            Box::new(arrow::error::ArrowError::ArithmeticOverflow(format!(
                "the sum does not fit {ty}: {e}"
            ))),
            None,
        )
    })
}

/// An accumulator fed its input cast to the wider type it sums in.
#[derive(Debug)]
struct Widened {
    inner: Box<dyn Accumulator>,
    to: DataType,
    output: Option<DataType>,
}

impl Accumulator for Widened {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.update_batch(&widen(values, &self.to)?)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let answer = self.inner.evaluate()?;
        if self.output.is_none() {
            return Ok(answer);
        }
        ScalarValue::try_from_array(&narrowed(answer.to_array()?, &self.output)?, 0)
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
    output: Option<DataType>,
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
        narrowed(self.inner.evaluate(emit_to)?, &self.output)
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

    /// A 64-bit sum past its type is an overflow error, where the built-in
    /// wraps; one that fits keeps its type and value.
    #[tokio::test]
    async fn integer_sums_fail_on_overflow_and_keep_their_type() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("k", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(arrow::array::Int64Array::from(vec![
                    Some(i64::MAX),
                    Some(1),
                    Some(5),
                    None,
                ])),
                Arc::new(arrow::array::Int32Array::from(vec![1, 1, 2, 2])),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_batch("t", batch.clone()).unwrap();
        for f in udafs() {
            ctx.register_udaf(f);
        }
        let err = ctx
            .sql("SELECT sum(i) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("does not fit Int64"), "{err}");
        let err = ctx
            .sql("SELECT k, sum(i) FROM t GROUP BY k")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("does not fit Int64"), "{err}");
        let fits = ctx
            .sql("SELECT sum(i) FROM t WHERE k = 2")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(fits[0].schema().field(0).data_type(), &DataType::Int64);
        let fits = ScalarValue::try_from_array(fits[0].column(0), 0).unwrap();
        assert_eq!(fits, ScalarValue::Int64(Some(5)));

        // The built-in wraps to a negative number, with no error.
        let builtin = SessionContext::new();
        builtin.register_batch("t", batch).unwrap();
        let wrapped = builtin
            .sql("SELECT sum(i) FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let wrapped = ScalarValue::try_from_array(wrapped[0].column(0), 0).unwrap();
        assert_eq!(wrapped, ScalarValue::Int64(Some(i64::MIN + 5)));
    }
}
