//! The key a float is compared by, so every path follows the float order
//! `docs/protocol.md` ("Semantics") documents: -0.0 equals 0.0, every NaN
//! equals every other and sorts above +inf.
//!
//! Arrow's comparison kernels use IEEE 754's totalOrder: -0.0 sorts below
//! 0.0, NaNs with different bits differ, and a NaN with its sign bit set
//! sorts below -inf. The node rewrites each float comparison of a filter to
//! compare `quiver_float_key(x)` instead; the key maps both zeros to 0.0 and
//! every NaN to the one positive quiet NaN, so totalOrder on keys is the
//! documented order. A literal's key is folded once when the filter is
//! planned; a column's is computed as rows are compared.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use arrow::datatypes::{ArrowPrimitiveType, DataType, Float16Type, Float32Type, Float64Type};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use half::f16;

/// The function's name, as it appears in plans.
pub const NAME: &str = "quiver_float_key";

/// The comparison key of one float.
pub trait FloatKey: Copy {
    fn key(self) -> Self;
    fn is_nan(self) -> bool;
}

impl FloatKey for f64 {
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }

    fn key(self) -> Self {
        if self.is_nan() {
            f64::NAN
        } else {
            // -0.0 + 0.0 is 0.0 in IEEE 754 arithmetic; every other value
            // is unchanged.
            self + 0.0
        }
    }
}

impl FloatKey for f32 {
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }

    fn key(self) -> Self {
        if self.is_nan() {
            f32::NAN
        } else {
            self + 0.0
        }
    }
}

impl FloatKey for f16 {
    fn is_nan(self) -> bool {
        f16::is_nan(self)
    }

    fn key(self) -> Self {
        if self.is_nan() {
            f16::NAN
        } else if self == f16::ZERO {
            // The two zeros compare equal under `==`.
            f16::ZERO
        } else {
            self
        }
    }
}

/// `quiver_float_key(x)` as a DataFusion function.
pub fn udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::from(KeyFunction::new()))
}

/// Whether a value of `ty` is compared by its key.
pub fn is_float(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::Float16 | DataType::Float32 | DataType::Float64
    )
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct KeyFunction {
    signature: Signature,
}

impl KeyFunction {
    fn new() -> Self {
        KeyFunction {
            signature: Signature::uniform(
                1,
                vec![DataType::Float16, DataType::Float32, DataType::Float64],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for KeyFunction {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [ty] if is_float(ty) => Ok(ty.clone()),
            other => exec_err!("{NAME} takes one float, not {other:?}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("{NAME} takes one argument");
        };
        Ok(match arg {
            ColumnarValue::Scalar(value) => ColumnarValue::Scalar(scalar_key(value)?),
            ColumnarValue::Array(array) => ColumnarValue::Array(array_key(array)?),
        })
    }
}

fn scalar_key(value: &ScalarValue) -> Result<ScalarValue> {
    Ok(match value {
        ScalarValue::Float16(v) => ScalarValue::Float16(v.map(FloatKey::key)),
        ScalarValue::Float32(v) => ScalarValue::Float32(v.map(FloatKey::key)),
        ScalarValue::Float64(v) => ScalarValue::Float64(v.map(FloatKey::key)),
        other => return exec_err!("{NAME} takes a float, not {}", other.data_type()),
    })
}

fn array_key(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(match array.data_type() {
        DataType::Float16 => keys::<Float16Type>(array),
        DataType::Float32 => keys::<Float32Type>(array),
        DataType::Float64 => keys::<Float64Type>(array),
        other => return exec_err!("{NAME} takes a float, not {other}"),
    })
}

fn keys<T>(array: &ArrayRef) -> ArrayRef
where
    T: ArrowPrimitiveType,
    T::Native: FloatKey,
{
    let values: &PrimitiveArray<T> = array.as_primitive();
    Arc::new(values.unary::<_, T>(FloatKey::key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;

    #[test]
    fn keys_follow_the_documented_order() {
        let negative_nan = f64::from_bits(f64::NAN.to_bits() | (1 << 63));
        let payload_nan = f64::from_bits(f64::NAN.to_bits() | 1);
        assert_eq!((-0.0f64).key().to_bits(), 0.0f64.to_bits());
        assert_eq!(negative_nan.key().to_bits(), f64::NAN.to_bits());
        assert_eq!(payload_nan.key().to_bits(), f64::NAN.to_bits());
        assert!(f64::NAN.key().total_cmp(&f64::INFINITY).is_gt());
        assert_eq!((-1.5f64).key(), -1.5);
        assert_eq!((-0.0f32).key().to_bits(), 0.0f32.to_bits());
        assert_eq!(f16::NEG_ZERO.key().to_bits(), f16::ZERO.to_bits());

        let array: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(-0.0),
            None,
            Some(negative_nan),
            Some(2.0),
        ]));
        let keyed = array_key(&array).unwrap();
        let keyed = keyed.as_primitive::<Float64Type>();
        assert_eq!(keyed.value(0).to_bits(), 0.0f64.to_bits());
        assert!(keyed.is_null(1));
        assert_eq!(keyed.value(2).to_bits(), f64::NAN.to_bits());
        assert_eq!(keyed.value(3), 2.0);
    }
}
