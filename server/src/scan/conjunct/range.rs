//! A fused range's mask: one pass over an integer-like column, one
//! unsigned comparison per value.

use arrow::array::{Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, RecordBatch};
use arrow::buffer::{BooleanBuffer, Buffer};
use arrow::datatypes::{
    ArrowNativeTypeOp, DataType, Date32Type, Date64Type, DurationMicrosecondType,
    DurationMillisecondType, DurationNanosecondType, DurationSecondType, Int16Type, Int32Type,
    Int64Type, Int8Type, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};

use super::Range;

impl Range {
    /// The rows of `batch` whose value in the range's column lies between
    /// its bounds; false where the value is null.
    pub(super) fn mask(&self, batch: &RecordBatch) -> DfResult<BooleanArray> {
        let array = batch.columns().get(self.column).ok_or_else(|| {
            DataFusionError::Internal(format!(
                "a range over column {} of a batch of {}",
                self.column,
                batch.num_columns()
            ))
        })?;
        macro_rules! typed {
            ($t:ty) => {
                self.typed::<$t>(array)
            };
        }
        match array.data_type() {
            DataType::Int8 => typed!(Int8Type),
            DataType::Int16 => typed!(Int16Type),
            DataType::Int32 => typed!(Int32Type),
            DataType::Int64 => typed!(Int64Type),
            DataType::UInt8 => typed!(UInt8Type),
            DataType::UInt16 => typed!(UInt16Type),
            DataType::UInt32 => typed!(UInt32Type),
            DataType::UInt64 => typed!(UInt64Type),
            DataType::Date32 => typed!(Date32Type),
            DataType::Date64 => typed!(Date64Type),
            DataType::Time32(TimeUnit::Second) => typed!(Time32SecondType),
            DataType::Time32(TimeUnit::Millisecond) => typed!(Time32MillisecondType),
            DataType::Time64(TimeUnit::Microsecond) => typed!(Time64MicrosecondType),
            DataType::Time64(TimeUnit::Nanosecond) => typed!(Time64NanosecondType),
            DataType::Timestamp(TimeUnit::Second, _) => typed!(TimestampSecondType),
            DataType::Timestamp(TimeUnit::Millisecond, _) => typed!(TimestampMillisecondType),
            DataType::Timestamp(TimeUnit::Microsecond, _) => typed!(TimestampMicrosecondType),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => typed!(TimestampNanosecondType),
            DataType::Duration(TimeUnit::Second) => typed!(DurationSecondType),
            DataType::Duration(TimeUnit::Millisecond) => typed!(DurationMillisecondType),
            DataType::Duration(TimeUnit::Microsecond) => typed!(DurationMicrosecondType),
            DataType::Duration(TimeUnit::Nanosecond) => typed!(DurationNanosecondType),
            other => Err(DataFusionError::Internal(format!(
                "a range was fused over a column of {other}"
            ))),
        }
    }

    /// [`Range::mask`] over a column whose values are `T`'s natives: the
    /// bounds become inclusive ones of the native type first.
    fn typed<T: ArrowPrimitiveType>(&self, array: &ArrayRef) -> DfResult<BooleanArray>
    where
        T::Native: OrderKey,
    {
        let values = array.as_primitive::<T>();
        let len = values.len();
        let empty = || BooleanArray::new(BooleanBuffer::new_unset(len), None);
        let (lower, upper) = (&self.lower, &self.upper);
        // Exclusive bounds become inclusive ones; one past the type's end
        // keeps no row.
        let lo = native::<T>(&lower.value)?;
        let lo = if lower.inclusive {
            lo
        } else {
            match lo.add_checked(T::Native::ONE) {
                Ok(lo) => lo,
                Err(_) => return Ok(empty()),
            }
        };
        let hi = native::<T>(&upper.value)?;
        let hi = if upper.inclusive {
            hi
        } else {
            match hi.sub_checked(T::Native::ONE) {
                Ok(hi) => hi,
                Err(_) => return Ok(empty()),
            }
        };
        let holds = in_range(values.values(), lo, hi);
        let holds = match values.nulls() {
            Some(nulls) => &holds & nulls.inner(),
            None => holds,
        };
        Ok(BooleanArray::new(holds, None))
    }
}

/// One bit per value, set where `lo <= value <= hi`.
///
/// Each value is one unsigned comparison, `key(v) - key(lo) <= key(hi) -
/// key(lo)` with wrapping subtraction, and the bits are gathered 64 to a
/// word over exact chunks, without a branch per value: with `&&`, or a
/// checked index per value (`BooleanBuffer::collect_bool`), the loop
/// branched on every value, mispredicted on every other row of a column
/// whose values are not sorted, and ran slower than the two kernels it
/// replaces. Without SSE4.2 in the build's target there is no vector
/// comparison of 64-bit integers, so fewer instructions per value is what
/// counts.
fn in_range<N: OrderKey>(values: &[N], lo: N, hi: N) -> BooleanBuffer {
    let lo = lo.key();
    let Some(span) = hi.key().checked_sub(lo) else {
        return BooleanBuffer::new_unset(values.len());
    };
    let word = |chunk: &[N]| {
        chunk.iter().enumerate().fold(0u64, |word, (bit, v)| {
            word | (u64::from(v.key().wrapping_sub(lo) <= span) << bit)
        })
    };
    let chunks = values.chunks_exact(64);
    let rest = chunks.remainder();
    let mut words: Vec<u64> = Vec::with_capacity(values.len().div_ceil(64));
    words.extend(chunks.map(word));
    if !rest.is_empty() {
        words.push(word(rest));
    }
    BooleanBuffer::new(Buffer::from_vec(words), 0, values.len())
}

/// An integer as an unsigned 64-bit key in the same order (signed values
/// have their sign bit flipped), so that a range is one unsigned comparison.
trait OrderKey: Copy {
    fn key(self) -> u64;
}

macro_rules! order_key {
    (signed: $($s:ty),*; unsigned: $($u:ty),*) => {
        $(impl OrderKey for $s {
            fn key(self) -> u64 {
                (i64::from(self) as u64) ^ (1 << 63)
            }
        })*
        $(impl OrderKey for $u {
            fn key(self) -> u64 {
                u64::from(self)
            }
        })*
    };
}

order_key!(signed: i8, i16, i32, i64; unsigned: u8, u16, u32, u64);

/// A bound's value as the column's native type (the literal has the
/// column's type: `comparison` checked it).
fn native<T: ArrowPrimitiveType>(value: &ScalarValue) -> DfResult<T::Native> {
    let array = value.to_array()?;
    let typed = array
        .as_primitive_opt::<T>()
        .filter(|a| a.len() == 1 && a.is_valid(0))
        .ok_or_else(|| {
            DataFusionError::Internal(format!("a range bound {value} is not of the column's type"))
        })?;
    Ok(typed.value(0))
}
