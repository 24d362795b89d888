//! `quiver_decimal_fits(x)`: `x`, or an overflow error where a value has more
//! digits than its decimal type declares.
//!
//! DataFusion computes decimal arithmetic in 128 (or 256) bits and caps the
//! result's precision at 38 (or 76) digits without checking the values: the
//! sum of a `decimal(38,10)` near its maximum and `1.5` fits in 128 bits but
//! not in 38 digits, and would be compared as if it were valid. The node
//! wraps every decimal `+ - * / %` of a filter in this check, so such a value
//! is the request's overflow error, as it is in SQL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Decimal128Type, Decimal256Type};
use arrow::error::ArrowError;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The function's name, as it appears in plans.
pub const NAME: &str = "quiver_decimal_fits";

/// `quiver_decimal_fits(x)` as a DataFusion function.
pub fn udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::from(FitsFunction {
        signature: Signature::any(1, Volatility::Immutable),
    }))
}

/// Whether arithmetic producing `ty` is checked by this function.
pub fn is_decimal(ty: &DataType) -> bool {
    matches!(ty, DataType::Decimal128(..) | DataType::Decimal256(..))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FitsFunction {
    signature: Signature,
}

impl ScalarUDFImpl for FitsFunction {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [ty] if is_decimal(ty) => Ok(ty.clone()),
            other => exec_err!("{NAME} takes one decimal, not {other:?}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("{NAME} takes one argument");
        };
        let array = match arg {
            ColumnarValue::Scalar(value) => value.to_array()?,
            ColumnarValue::Array(array) => array.clone(),
        };
        check(&array)?;
        Ok(match arg {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(array),
        })
    }
}

fn check(array: &ArrayRef) -> Result<()> {
    let checked = match array.data_type() {
        DataType::Decimal128(p, _) => array
            .as_primitive::<Decimal128Type>()
            .validate_decimal_precision(*p),
        DataType::Decimal256(p, _) => array
            .as_primitive::<Decimal256Type>()
            .validate_decimal_precision(*p),
        other => return exec_err!("{NAME} takes a decimal, not {other}"),
    };
    checked.map_err(|e| {
        DataFusionError::ArrowError(
            Box::new(ArrowError::ArithmeticOverflow(format!(
                "decimal overflow: {e}"
            ))),
            None,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Decimal128Array;

    #[test]
    fn a_value_past_its_precision_is_an_overflow() {
        let fits: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(99_999), None])
                .with_precision_and_scale(5, 2)
                .unwrap(),
        );
        assert!(check(&fits).is_ok());
        let past: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(100_000)])
                .with_precision_and_scale(5, 2)
                .unwrap(),
        );
        let err = check(&past).unwrap_err().to_string();
        assert!(err.contains("overflow"), "{err}");
    }
}
