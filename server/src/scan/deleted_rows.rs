//! The rows of one file a table's log deletes, laid over the file's row
//! groups: a row selection per row group for the Parquet decoder, and a
//! keep-mask per row group for the hot tier's arrays. Both paths drop the
//! same rows before the filter sees them, so a deleted row can never match.

use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::array::BooleanBufferBuilder;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::file::metadata::ParquetMetaData;
use roaring::RoaringTreemap;

use crate::error::{QuiverError, Result};

/// Deleted row indexes of one file, by row group.
#[derive(Debug)]
pub struct DeletedRows {
    rows: Arc<RoaringTreemap>,
    /// The first row of each row group, then the file's row count.
    starts: Vec<u64>,
}

impl DeletedRows {
    /// The deleted `rows` of the file `metadata` describes; every one must
    /// be a row of it.
    pub fn new(rows: Arc<RoaringTreemap>, metadata: &ParquetMetaData, what: &str) -> Result<Self> {
        let mut starts = Vec::with_capacity(metadata.num_row_groups().saturating_add(1));
        let mut next: u64 = 0;
        starts.push(next);
        for rg in metadata.row_groups() {
            let rows = u64::try_from(rg.num_rows()).map_err(|_| {
                QuiverError::DataLoss(format!("{what} has a row group of negative size"))
            })?;
            next = next.checked_add(rows).ok_or_else(|| {
                QuiverError::DataLoss(format!("{what} has more rows than can be counted"))
            })?;
            starts.push(next);
        }
        if let Some(max) = rows.max().filter(|&m| m >= next) {
            return Err(QuiverError::DataLoss(format!(
                "the deletion vector of {what} deletes row {max}, but the file has {next} rows"
            )));
        }
        Ok(DeletedRows { rows, starts })
    }

    /// The first row of row group `g` and the row after its last.
    fn bounds(&self, g: usize) -> (u64, u64) {
        let start = self.starts.get(g).copied().unwrap_or(0);
        let end = self
            .starts
            .get(g.saturating_add(1))
            .copied()
            .unwrap_or(start);
        (start, end)
    }

    /// How many rows of row group `g` are deleted.
    fn deleted_in(&self, g: usize) -> u64 {
        let (start, end) = self.bounds(g);
        if start >= end {
            return 0;
        }
        self.rows.range_cardinality(start..end)
    }

    /// Whether every row of row group `g` is deleted.
    pub fn all_deleted(&self, g: usize) -> bool {
        let (start, end) = self.bounds(g);
        end > start && self.deleted_in(g) == end - start
    }

    /// The deleted rows of row group `g`, relative to its first row.
    fn in_group(&self, g: usize) -> impl Iterator<Item = usize> + '_ {
        let (start, end) = self.bounds(g);
        let mut iter = self.rows.iter();
        iter.advance_to(start);
        // Below `end`, so the difference is a row index of the group, which
        // fits the group's own (usize) row count.
        iter.take_while(move |&r| r < end)
            .map(move |r| usize::try_from(r - start).unwrap_or(usize::MAX))
    }

    /// The rows of row group `g` to decode; `None` when it deletes none.
    pub fn selection(&self, g: usize) -> Option<RowSelection> {
        if self.deleted_in(g) == 0 {
            return None;
        }
        let (start, end) = self.bounds(g);
        let len = usize::try_from(end - start).unwrap_or(usize::MAX);
        let mut selectors: Vec<RowSelector> = Vec::new();
        let mut at = 0;
        for row in self.in_group(g) {
            if row > at {
                selectors.push(RowSelector::select(row - at));
            }
            match selectors.last_mut() {
                Some(last) if last.skip => last.row_count += 1,
                _ => selectors.push(RowSelector::skip(1)),
            }
            at = row + 1;
        }
        if len > at {
            selectors.push(RowSelector::select(len - at));
        }
        Some(RowSelection::from(selectors))
    }

    /// Which of the `rows` rows of row group `g` are kept; `None` when it
    /// deletes none.
    pub fn keep(&self, g: usize, rows: usize) -> Option<BooleanArray> {
        if self.deleted_in(g) == 0 {
            return None;
        }
        let mut keep = BooleanBufferBuilder::new(rows);
        keep.append_n(rows, true);
        for row in self.in_group(g).filter(|&r| r < rows) {
            keep.set_bit(row, false);
        }
        Some(BooleanArray::new(keep.finish(), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::SerializedFileReader;

    /// A file of 0..rows in row groups of `group` rows, and its footer.
    fn metadata(rows: i64, group: usize) -> ParquetMetaData {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(group))
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(out)).unwrap();
        reader.metadata().clone()
    }

    /// The rows of each group a selection and a mask keep agree, and are
    /// those the vector does not delete.
    #[test]
    fn selections_and_masks_keep_the_rows_not_deleted() {
        let meta = metadata(1000, 300);
        let deleted: Vec<u64> = vec![0, 1, 2, 299, 300, 450, 451, 452, 999];
        let mut rows: RoaringTreemap = deleted.iter().copied().collect();
        rows.insert_range(600..850);
        let deletes = DeletedRows::new(Arc::new(rows.clone()), &meta, "t").unwrap();
        let starts = [0u64, 300, 600, 900];
        for (g, &start) in starts.iter().enumerate() {
            let len = meta.row_group(g).num_rows() as usize;
            let want: Vec<u64> = (start..start + len as u64)
                .filter(|r| !rows.contains(*r))
                .collect();
            let mask = deletes.keep(g, len).unwrap();
            let from_mask: Vec<u64> = (0..len)
                .filter(|&i| mask.value(i))
                .map(|i| start + i as u64)
                .collect();
            assert_eq!(from_mask, want, "mask of group {g}");
            let selection = deletes.selection(g).unwrap();
            let mut from_selection = Vec::new();
            let mut at = start;
            for s in selection.iter() {
                if !s.skip {
                    from_selection.extend(at..at + s.row_count as u64);
                }
                at += s.row_count as u64;
            }
            assert_eq!(at, start + len as u64, "the selection covers group {g}");
            assert_eq!(from_selection, want, "selection of group {g}");
        }
        assert!(!deletes.all_deleted(2));
        let none = DeletedRows::new(Arc::new(RoaringTreemap::new()), &meta, "t").unwrap();
        assert!(none.selection(0).is_none() && none.keep(0, 300).is_none());
        let whole: RoaringTreemap = (300..600).collect();
        assert!(DeletedRows::new(Arc::new(whole), &meta, "t")
            .unwrap()
            .all_deleted(1));
    }

    #[test]
    fn a_row_past_the_end_is_refused() {
        let meta = metadata(100, 60);
        let rows: RoaringTreemap = [5u64, 100].into_iter().collect();
        let err = DeletedRows::new(Arc::new(rows), &meta, "t/a.parquet").unwrap_err();
        assert!(matches!(err, QuiverError::DataLoss(_)), "{err}");
        assert!(err.to_string().contains("row 100"), "{err}");
    }
}
