//! The statistics a footer keeps per row group (min, max, null and row
//! counts), offered to DataFusion's `PruningPredicate`: the one row-group
//! pruning both the hot tier and the Parquet path use.
//!
//! A float column's statistics are widened to hold for the keys its values
//! are compared by (`float_key`): Parquet's min and max leave NaN out, and
//! NaN sorts above every number, so a float column's maximum is unknown; its
//! minimum is the key of the written one, and unknown when a writer put a
//! NaN there.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, PrimitiveArray, UInt64Array};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Float16Type, Float32Type, Float64Type, Schema,
};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, ScalarValue};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;

use super::float_key::{self, FloatKey};

/// Statistics of the row groups `row_groups` of one file, in that order.
/// `schema` must be the file's whole Arrow schema: the converter finds a
/// column's Parquet leaf by its position there, so a projected schema would
/// read another column's statistics.
pub struct RowGroupStats<'a> {
    metadata: &'a ParquetMetaData,
    row_groups: &'a [usize],
    schema: &'a Schema,
}

impl<'a> RowGroupStats<'a> {
    pub fn new(metadata: &'a ParquetMetaData, row_groups: &'a [usize], schema: &'a Schema) -> Self {
        RowGroupStats {
            metadata,
            row_groups,
            schema,
        }
    }

    fn converter(&self, column: &Column) -> Option<StatisticsConverter<'a>> {
        StatisticsConverter::try_new(
            &column.name,
            self.schema,
            self.metadata.file_metadata().schema_descr(),
        )
        .ok()
    }

    /// Whether `column` holds floats, whose statistics are widened.
    fn is_float(&self, column: &Column) -> bool {
        self.schema
            .field_with_name(&column.name)
            .is_ok_and(|f| float_key::is_float(f.data_type()))
    }

    fn groups(&self) -> impl Iterator<Item = &'a parquet::file::metadata::RowGroupMetaData> + 'a {
        let metadata = self.metadata;
        self.row_groups
            .iter()
            .filter_map(move |&g| metadata.row_groups().get(g))
    }
}

impl PruningStatistics for RowGroupStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        let mins = self.converter(column)?.row_group_mins(self.groups()).ok()?;
        if self.is_float(column) {
            float_minimum_keys(&mins)
        } else {
            Some(mins)
        }
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        if self.is_float(column) {
            return None;
        }
        self.converter(column)?.row_group_maxes(self.groups()).ok()
    }

    fn num_containers(&self) -> usize {
        self.row_groups.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let counts = self
            .converter(column)?
            .row_group_null_counts(self.groups())
            .ok()?;
        Some(Arc::new(counts))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        let counts: UInt64Array = self
            .groups()
            .map(|g| u64::try_from(g.num_rows()).ok())
            .collect();
        Some(Arc::new(counts))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// The keys of written float minimums, with a NaN minimum (which no key
/// bounds from below) unknown.
fn float_minimum_keys(mins: &ArrayRef) -> Option<ArrayRef> {
    Some(match mins.data_type() {
        DataType::Float16 => minimum_keys::<Float16Type>(mins),
        DataType::Float32 => minimum_keys::<Float32Type>(mins),
        DataType::Float64 => minimum_keys::<Float64Type>(mins),
        _ => return None,
    })
}

fn minimum_keys<T>(mins: &ArrayRef) -> ArrayRef
where
    T: ArrowPrimitiveType,
    T::Native: FloatKey,
{
    let keys: PrimitiveArray<T> = mins
        .as_primitive::<T>()
        .iter()
        .map(|v| v.map(FloatKey::key).filter(|k| !k.is_nan()))
        .collect();
    Arc::new(keys)
}
