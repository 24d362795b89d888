//! How a literal is written in a filter text so that a node reads back the
//! same value of the same type: the unparser's own form where that is
//! exact, else a cast of the literal's exact text or raw value.

use arrow::datatypes::{DataType, Decimal128Type, Decimal256Type, DecimalType};
use datafusion::common::ScalarValue;
use datafusion::functions::expr_fn::arrow_cast;
use datafusion::logical_expr::{Cast, Expr};

/// How a literal is written in the filter text.
pub(super) enum LiteralSql {
    /// The unparser's own form reads back exactly.
    AsIs,
    /// This expression reads back as the literal's value and type.
    Rewritten(Expr),
}

/// How `value` is written so that the node reads back the same value of the
/// same type; `None` when it cannot be, and the filter stays local.
///
/// The unparser writes a float as it prints (`NaN` and `inf` read back as
/// column names, and a node reads `1.5` as an exact decimal), an integer as
/// the type its digits parse to (i64, else u64), and a timestamp as text in
/// nanoseconds without its time zone, so those are written as casts of
/// their exact text or raw value instead.
pub(super) fn literal_sql(value: &ScalarValue) -> Option<LiteralSql> {
    use ScalarValue::*;
    let ty = value.data_type();
    let text = |s: String| Expr::Literal(Utf8(Some(s)), None);
    let rewritten = match value {
        Null | Boolean(Some(_)) | Int64(Some(_)) | Utf8(Some(_)) => return Some(LiteralSql::AsIs),
        // A NaN of another sign or payload would read back as the canonical
        // one, which arrow's comparisons tell apart from it.
        Float64(Some(f)) if f.is_nan() && f.to_bits() != f64::NAN.to_bits() => return None,
        Float32(Some(f)) if f.is_nan() && f.to_bits() != f32::NAN.to_bits() => return None,
        // Arrow parses the shortest text that prints the float (`NaN`,
        // `-inf` and `-0` included) straight to a float of that width, so
        // an f32 is never rounded twice through an f64.
        Float64(Some(f)) => exact_cast(text(float_text(f)), ty),
        Float32(Some(f)) => exact_cast(text(float_text(f)), ty),
        // A date the unparser writes as `YYYY-MM-DD`, which arrow parses.
        Date32(Some(days)) if date_text_reads_back(*days) => return Some(LiteralSql::AsIs),
        Int8(Some(_)) | Int16(Some(_)) | Int32(Some(_)) | UInt8(Some(_)) | UInt16(Some(_))
        | UInt32(Some(_)) | UInt64(Some(_)) => exact_cast(Expr::Literal(value.clone(), None), ty),
        // A decimal goes through its exact text, never through a float;
        // arrow reads no text as a decimal of negative scale.
        Decimal128(Some(_), _, s) | Decimal256(Some(_), _, s) if *s < 0 => return None,
        Decimal128(Some(v), p, s) => {
            exact_cast(text(Decimal128Type::format_decimal(*v, *p, *s)), ty)
        }
        Decimal256(Some(v), p, s) => {
            exact_cast(text(Decimal256Type::format_decimal(*v, *p, *s)), ty)
        }
        Utf8View(Some(s)) | LargeUtf8(Some(s)) => exact_cast(text(s.clone()), ty),
        // The raw count of units since the epoch, which a cast from an
        // integer keeps as it is: exact for every unit, zone and year.
        TimestampSecond(Some(v), _)
        | TimestampMillisecond(Some(v), _)
        | TimestampMicrosecond(Some(v), _)
        | TimestampNanosecond(Some(v), _) => exact_cast(Expr::Literal(Int64(Some(*v)), None), ty),
        // A typed NULL keeps its type.
        v if v.is_null() && nameable(&ty) => exact_cast(Expr::Literal(Null, None), ty),
        _ => return None,
    };
    Some(LiteralSql::Rewritten(rewritten))
}

/// The shortest text that reads back as `f`: as printed (`0.25`, `NaN`,
/// `-inf`, `-0`), or in exponent form (`5e-324`) where that is shorter than
/// hundreds of digits.
fn float_text<F: std::fmt::Display + std::fmt::LowerExp>(f: F) -> String {
    let printed = f.to_string();
    let exponent = format!("{f:e}");
    if exponent.len() < printed.len() {
        exponent
    } else {
        printed
    }
}

/// Dates from year 1 to 9999, whose `YYYY-MM-DD` text arrow parses back.
fn date_text_reads_back(days: i32) -> bool {
    // 0001-01-01 and 9999-12-31, in days since 1970-01-01.
    (-719_162..=2_932_896).contains(&days)
}

/// The types [`literal_sql`] writes values of, and so typed NULLs of.
fn nameable(ty: &DataType) -> bool {
    use DataType::*;
    matches!(
        ty,
        Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float32
            | Float64
            | Decimal128(..)
            | Decimal256(..)
            | Utf8
            | Utf8View
            | LargeUtf8
            | Date32
            | Timestamp(..)
    )
}

/// `expr` cast to exactly `ty`: a SQL `CAST` when the name the unparser
/// writes for `ty` reads back as `ty` on a node, else `arrow_cast(expr,
/// '<ty>')`, which names any Arrow type. `DECIMAL(p, s)` is a Decimal128 up
/// to precision 38 and a Decimal256 above (of scale 0 when `s` is
/// negative), `VARCHAR` is a `Utf8View` (DataFusion maps SQL strings to
/// views), and `TIMESTAMP` has neither a unit nor a zone.
fn exact_cast(expr: Expr, ty: DataType) -> Expr {
    use DataType::*;
    let sql_names_it = match &ty {
        Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float32
        | Float64 | Date32 | Utf8View => true,
        Decimal128(_, s) => *s >= 0,
        Decimal256(p, s) => *p > 38 && *s >= 0,
        _ => false,
    };
    if sql_names_it {
        Expr::Cast(Cast::new(Box::new(expr), ty))
    } else {
        let name = Expr::Literal(ScalarValue::Utf8(Some(ty.to_string())), None);
        arrow_cast(expr, name)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::simplify::SimplifyContext;
    use datafusion::optimizer::simplify_expressions::ExprSimplifier;
    use datafusion::prelude::*;
    use datafusion::scalar::ScalarValue;

    use crate::pushdown::filter_text;
    use crate::pushdown::test_support::node_context;

    /// A column `c` of `ty`, and a one-row batch of it.
    fn one_column(ty: &DataType) -> (Arc<Schema>, datafusion::common::DFSchema) {
        let schema = Arc::new(Schema::new(vec![Field::new("c", ty.clone(), true)]));
        let df = datafusion::common::DFSchema::try_from(schema.as_ref().clone()).unwrap();
        (schema, df)
    }

    /// The value and type the node reads back from the text of `c = value`,
    /// parsing and evaluating it as a node does: `Ok(None)` if it is not
    /// pushed, `Err` with the text if a node would refuse it.
    async fn read_back(value: &ScalarValue) -> Result<Option<ScalarValue>, String> {
        let ty = match value.data_type() {
            DataType::Null => DataType::Int64,
            ty => ty,
        };
        let (schema, df) = one_column(&ty);
        let e = col("c").eq(Expr::Literal(value.clone(), None));
        let Some(text) = filter_text(&e, &schema) else {
            return Ok(None);
        };
        let fail = |e: &dyn std::fmt::Display| format!("{text}: {e}");
        quiver_server::scan::filter::check_text(&text).map_err(|e| fail(&e))?;
        let ctx = node_context();
        let parsed = ctx.parse_sql_expr(&text, &df).map_err(|e| fail(&e))?;
        quiver_server::scan::filter::check(&parsed, &text).map_err(|e| fail(&e))?;
        let Expr::BinaryExpr(b) = parsed else {
            return Err(fail(&"not a comparison"));
        };
        // A node folds constants, and leaves `arrow_cast` to DataFusion's
        // simplifier, which makes it a cast.
        let simplifier = ExprSimplifier::new(
            SimplifyContext::builder()
                .with_schema(Arc::new(df.clone()))
                .build(),
        );
        let right = simplifier.simplify(*b.right).map_err(|e| fail(&e))?;
        let physical = ctx.create_physical_expr(right, &df).map_err(|e| fail(&e))?;
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![arrow::array::new_null_array(&ty, 1)],
        )
        .map_err(|e| fail(&e))?;
        let got = physical
            .evaluate(&batch)
            .and_then(|v| v.to_array(1))
            .and_then(|a| ScalarValue::try_from_array(&a, 0))
            .map_err(|e| fail(&e))?;
        Ok(Some(got))
    }

    /// Same type, and the same value down to the bits of a float.
    fn same(a: &ScalarValue, b: &ScalarValue) -> bool {
        match (a, b) {
            (ScalarValue::Float64(Some(x)), ScalarValue::Float64(Some(y))) => {
                x.to_bits() == y.to_bits()
            }
            (ScalarValue::Float32(Some(x)), ScalarValue::Float32(Some(y))) => {
                x.to_bits() == y.to_bits()
            }
            _ => a.data_type() == b.data_type() && a == b,
        }
    }

    fn every_literal_kind() -> Vec<ScalarValue> {
        use arrow::datatypes::{i256, TimeUnit};
        use ScalarValue::*;
        let max38 = 10i128.pow(38) - 1;
        let max76 = i256::from_string(&"9".repeat(76)).unwrap();
        let mut values = vec![
            Null,
            Boolean(Some(true)),
            Boolean(Some(false)),
            Boolean(None),
            Int8(Some(i8::MIN)),
            Int8(Some(i8::MAX)),
            Int16(Some(-3)),
            Int32(Some(i32::MIN)),
            Int32(Some(i32::MAX)),
            Int64(Some(i64::MIN)),
            Int64(Some(i64::MAX)),
            Int64(Some(-1)),
            Int64(None),
            UInt8(Some(u8::MAX)),
            UInt16(Some(u16::MAX)),
            UInt32(Some(u32::MAX)),
            UInt64(Some(u64::MAX)),
            UInt64(Some(i64::MAX as u64 + 1)),
            UInt64(Some(0)),
            UInt64(None),
            Decimal128(Some(5), 15, 2),
            Decimal128(Some(-5), 15, 2),
            Decimal128(Some(max38), 38, 10),
            Decimal128(Some(-max38), 38, 10),
            Decimal128(Some(max38), 38, 0),
            Decimal128(Some(max38), 38, 38),
            Decimal128(None, 38, 10),
            Decimal128(None, 5, -2),
            Decimal256(Some(max76), 76, 10),
            Decimal256(Some(max76.wrapping_neg()), 76, 76),
            Decimal256(None, 50, 3),
            Decimal256(Some(i256::from_i128(-12345)), 10, 2),
            Decimal256(Some(i256::from_i128(max38)), 38, 38),
            Utf8(Some("it's a \"name\", \\ 100% _?\n ünïcode".into())),
            Utf8(Some(String::new())),
            Utf8(None),
            Utf8View(Some("view".into())),
            Utf8View(None),
            LargeUtf8(Some("large".into())),
            LargeUtf8(None),
            Date32(Some(0)),
            Date32(Some(-719_162)),
            Date32(Some(2_932_896)),
            Date32(Some(19_000)),
            Date32(None),
        ];
        for f in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            1.5,
            -1.5,
            0.1,
            -3.0,
            1e300,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            5e-324,
            -5e-324,
            123_456_789.0,
            9_007_199_254_740_993.0,
        ] {
            values.push(Float64(Some(f)));
        }
        values.push(Float64(None));
        for f in [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            0.1,
            1.1,
            -2.989,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            f32::EPSILON,
            1e-45,
            16_777_216.0,
        ] {
            values.push(Float32(Some(f)));
        }
        values.push(Float32(None));
        for tz in [None, Some("UTC"), Some("+05:30"), Some("Europe/Paris")] {
            let tz: Option<Arc<str>> = tz.map(Into::into);
            for v in [0, -1, 1_700_000_000_123_456, i64::MIN, i64::MAX] {
                values.push(TimestampSecond(Some(v), tz.clone()));
                values.push(TimestampMillisecond(Some(v), tz.clone()));
                values.push(TimestampMicrosecond(Some(v), tz.clone()));
                values.push(TimestampNanosecond(Some(v), tz.clone()));
            }
            values.push(TimestampNanosecond(None, tz.clone()));
            values.push(ScalarValue::try_from(DataType::Timestamp(TimeUnit::Second, tz)).unwrap());
        }
        values
    }

    #[tokio::test]
    async fn every_literal_reads_back_as_the_same_value_and_type() {
        let mut wrong = Vec::new();
        for value in every_literal_kind() {
            match read_back(&value).await {
                Ok(Some(got)) if same(&got, &value) => {}
                Ok(Some(got)) => wrong.push(format!("{value:?} read back as {got:?}")),
                Ok(None) => wrong.push(format!("{value:?} was not pushed")),
                Err(e) => wrong.push(format!("{value:?} is refused: {e}")),
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[tokio::test]
    async fn random_floats_read_back_bit_for_bit() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(25);
        for _ in 0..300 {
            let values = [
                ScalarValue::Float64(Some(f64::from_bits(rng.random()))),
                ScalarValue::Float32(Some(f32::from_bits(rng.random()))),
            ];
            for value in values {
                match read_back(&value)
                    .await
                    .unwrap_or_else(|e| panic!("{value:?}: {e}"))
                {
                    Some(got) => assert!(same(&got, &value), "{value:?} read back as {got:?}"),
                    // Only a NaN of another sign or payload stays local.
                    None => assert!(
                        matches!(value, ScalarValue::Float64(Some(f)) if f.is_nan())
                            || matches!(value, ScalarValue::Float32(Some(f)) if f.is_nan()),
                        "{value:?} was not pushed"
                    ),
                }
            }
        }
    }

    #[test]
    fn literals_without_an_exact_form_stay_local() {
        use arrow::datatypes::i256;
        use ScalarValue::*;
        for value in [
            // Years past 9999 print with a sign arrow does not parse.
            Date32(Some(3_000_000)),
            // Read back as the canonical NaN.
            Float64(Some(-f64::NAN)),
            Float32(Some(f32::from_bits(0x7fc0_0001))),
            // Arrow reads no text as a decimal of negative scale.
            Decimal128(Some(123), 5, -2),
            Decimal256(Some(i256::from_i128(-99_999)), 50, -3),
            // Types whose literals are not written at all.
            Date64(Some(0)),
            Time64Microsecond(Some(1)),
            Binary(Some(vec![1, 2])),
            Binary(None),
            IntervalMonthDayNano(None),
        ] {
            let (schema, _) = one_column(&value.data_type());
            let e = col("c").eq(lit(value.clone()));
            assert_eq!(filter_text(&e, &schema), None, "{value:?}");
        }
    }
}
