//! What a scan's columns are in one file: the file's Arrow schema, the
//! checks a projection must pass against it, and where the columns' chunks
//! lie, for reads, warming and asking the cache what it holds.

use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};

use super::reader::column_chunk_range;
use crate::cache::CachingObjectStore;
use crate::error::{QuiverError, Result};
use crate::source::ObjectId;

/// The byte ranges of `columns`' chunks in every row group of `id`.
pub fn column_ranges(
    metadata: &ParquetMetaData,
    id: &ObjectId,
    columns: &[String],
) -> Result<Vec<Range<u64>>> {
    let schema = metadata.file_metadata().schema_descr();
    for c in columns {
        if !schema
            .columns()
            .iter()
            .any(|col| col.path().parts()[0] == *c)
        {
            return Err(QuiverError::invalid(format!(
                "unknown column `{c}` in {}/{}",
                id.source, id.path
            )));
        }
    }
    let mut ranges = Vec::new();
    for rg in metadata.row_groups() {
        for col in rg.columns() {
            if columns.iter().any(|c| col.column_path().parts()[0] == *c) {
                let range = column_chunk_range(col, id.size).ok_or_else(|| {
                    QuiverError::DataLoss(format!(
                        "object {}/{} has a corrupt footer: a column chunk lies outside the file",
                        id.source, id.path
                    ))
                })?;
                ranges.push(range);
            }
        }
    }
    Ok(ranges)
}

/// Whether the cache holds the column chunks of `columns` (top-level
/// indices) in `row_groups` of `id`.
pub(super) fn holds_columns(
    store: &CachingObjectStore,
    id: &ObjectId,
    metadata: &ParquetMetaData,
    row_groups: &[usize],
    columns: &[usize],
) -> bool {
    let ranges: Vec<Range<u64>> = chunks_of(metadata, row_groups, columns)
        .filter_map(|c| column_chunk_range(c, id.size))
        .collect();
    store.holds(id, &ranges)
}

/// The column chunks of `columns` (top-level indices) in `row_groups`, in
/// file order. A footer whose row groups list more chunks than the schema
/// has leaves names columns no scan can read; those are skipped.
pub(super) fn chunks_of<'a>(
    metadata: &'a ParquetMetaData,
    row_groups: &'a [usize],
    columns: &'a [usize],
) -> impl Iterator<Item = &'a ColumnChunkMetaData> + 'a {
    let schema = metadata.file_metadata().schema_descr();
    row_groups
        .iter()
        .filter_map(|&g| metadata.row_groups().get(g))
        .flat_map(|rg| rg.columns().iter().enumerate())
        .filter(move |(leaf, _)| {
            *leaf < schema.num_columns() && columns.contains(&schema.get_column_root_idx(*leaf))
        })
        .map(|(_, chunk)| chunk)
}

pub(super) fn arrow_schema(metadata: Arc<ParquetMetaData>, id: &ObjectId) -> Result<SchemaRef> {
    ArrowReaderMetadata::try_new(metadata, ArrowReaderOptions::new())
        .map(|m| m.schema().clone())
        .map_err(|e| {
            QuiverError::DataLoss(format!(
                "object {}/{} has a schema Arrow cannot read: {e}",
                id.source, id.path
            ))
        })
}

pub(super) fn check_columns(columns: &[String], schema: &SchemaRef) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for c in columns {
        if schema.field_with_name(c).is_err() {
            let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(QuiverError::invalid(format!(
                "unknown column `{c}`; the file has columns {}",
                known.join(", ")
            )));
        }
        if !seen.insert(c) {
            return Err(QuiverError::invalid(format!(
                "column `{c}` is listed twice"
            )));
        }
    }
    Ok(())
}
