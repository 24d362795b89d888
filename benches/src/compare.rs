//! Answers compared by content, before anything is timed: a benchmark of a
//! reader that answers wrongly measures nothing. Two ways, for two kinds of
//! answer: an order-insensitive [`Digest`] of rows for scans of any size,
//! and the rows as sorted text ([`content`]) for SQL answers, whose
//! aggregates print the same however the plan computed them.

use std::hash::{Hash, Hasher};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::BoxError;

/// An order-insensitive fingerprint of a result's content: its row count
/// and the wrapping sum of a hash of each row. Columns are first cast to one
/// representation per logical type (string and binary views, large and
/// dictionary types to their plain forms), so modes that return the same
/// rows in another order, batch size or layout agree, and any changed
/// value, missing row or extra row does not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    pub rows: u64,
    pub sum: u64,
}

impl Digest {
    /// The digest of every row of `batches`.
    pub fn of(batches: &[RecordBatch]) -> Result<Digest, ArrowError> {
        let mut d = Digest::default();
        for b in batches {
            d.add(b)?;
        }
        Ok(d)
    }

    /// Adds the rows of `batch`.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        let columns = batch
            .columns()
            .iter()
            .map(canonical)
            .collect::<Result<Vec<ArrayRef>, ArrowError>>()?;
        let fields = columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect();
        let rows = RowConverter::new(fields)?.convert_columns(&columns)?;
        for row in rows.iter() {
            // SipHash with fixed keys: the same row hashes the same in every
            // mode and run.
            let mut h = std::collections::hash_map::DefaultHasher::new();
            row.as_ref().hash(&mut h);
            self.sum = self.sum.wrapping_add(h.finish());
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }
}

fn canonical(array: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let plain = match array.data_type() {
        DataType::Utf8View | DataType::LargeUtf8 => Some(DataType::Utf8),
        DataType::BinaryView | DataType::LargeBinary => Some(DataType::Binary),
        DataType::Dictionary(_, values) => Some(values.as_ref().clone()),
        _ => None,
    };
    match plain {
        Some(to) => canonical(&arrow::compute::cast(array, &to)?),
        None => Ok(array.clone()),
    }
}

/// Rows as sorted text, so two plans' answers compare by content.
pub fn content(batches: &[RecordBatch]) -> Result<Vec<String>, BoxError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let formatters = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            let cells: Vec<String> = formatters.iter().map(|f| f.value(r).to_string()).collect();
            out.push(cells.join("|"));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{Int64Array, StringArray, StringViewArray};
    use arrow::datatypes::{Field, Schema};

    fn batch(ids: &[i64], names: ArrayRef) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", names.data_type().clone(), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from(ids.to_vec())), names],
        )
        .unwrap()
    }

    fn digest(batches: &[RecordBatch]) -> Digest {
        Digest::of(batches).unwrap()
    }

    #[test]
    fn the_digest_sees_content_not_order_batching_or_string_layout() {
        let whole = batch(
            &[1, 2, 3],
            Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
        );
        let split = [
            batch(&[3], Arc::new(StringViewArray::from(vec![Some("c")]))),
            batch(
                &[2, 1],
                Arc::new(StringViewArray::from(vec![None, Some("a")])),
            ),
        ];
        assert_eq!(digest(std::slice::from_ref(&whole)), digest(&split));
        let changed = batch(
            &[1, 2, 3],
            Arc::new(StringArray::from(vec![Some("a"), None, Some("d")])),
        );
        assert_ne!(digest(std::slice::from_ref(&whole)), digest(&[changed]));
        let fewer = batch(&[1, 2], Arc::new(StringArray::from(vec![Some("a"), None])));
        assert_ne!(digest(&[whole]), digest(&[fewer]));
    }

    #[test]
    fn content_is_sorted_text_with_nulls_spelled_out() {
        let a = batch(&[2, 1], Arc::new(StringArray::from(vec![None, Some("a")])));
        let b = batch(&[1], Arc::new(StringArray::from(vec![Some("a")])));
        let c = batch(&[2], Arc::new(StringViewArray::from(vec![None::<&str>])));
        assert_eq!(content(&[a]).unwrap(), vec!["1|a", "2|NULL"]);
        assert_eq!(content(&[c, b]).unwrap(), vec!["1|a", "2|NULL"]);
    }
}
