//! The statistics a footer keeps per row group (min, max, null and row
//! counts), offered to DataFusion's `PruningPredicate` so that the hot tier
//! skips row groups a filter cannot match, as the Parquet reader does.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, UInt64Array};
use arrow::datatypes::Schema;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, ScalarValue};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;

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

    fn groups(&self) -> impl Iterator<Item = &'a parquet::file::metadata::RowGroupMetaData> + 'a {
        let metadata = self.metadata;
        self.row_groups
            .iter()
            .filter_map(move |&g| metadata.row_groups().get(g))
    }
}

impl PruningStatistics for RowGroupStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.converter(column)?.row_group_mins(self.groups()).ok()
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
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
