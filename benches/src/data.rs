//! Benchmark data, generated at run time: Parquet files of random float64
//! columns like the ISTZIIO workload's.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use indicatif::{ProgressBar, ProgressStyle};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const COLUMNS: usize = 16;
const BATCH_ROWS: usize = 64 * 1024;

/// Writes `bytes` (about) of `COLUMNS` uniform [0, 1) float64 columns named
/// `c0`.. to `path`, in row groups of 64 Ki rows (8 MiB), and returns its
/// rows. A filter `c0 < s` selects a fraction `s` of the rows.
pub fn random_floats(
    path: &Path,
    bytes: u64,
    seed: u64,
    progress: &ProgressBar,
) -> std::io::Result<usize> {
    let rows = (bytes / (COLUMNS as u64 * 8)) as usize;
    let schema = Arc::new(Schema::new(
        (0..COLUMNS)
            .map(|i| Field::new(format!("c{i}"), DataType::Float64, false))
            .collect::<Vec<_>>(),
    ));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp)?;
    // Random floats do not compress or dictionary-encode; plain pages keep
    // the file the size asked for.
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(BATCH_ROWS))
        .set_dictionary_enabled(false)
        .build();
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(std::io::Error::other)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut written = 0;
    while written < rows {
        let n = BATCH_ROWS.min(rows - written);
        let columns: Vec<ArrayRef> = (0..COLUMNS)
            .map(|_| {
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|_| rng.random::<f64>()),
                )) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(std::io::Error::other)?;
        writer.write(&batch).map_err(std::io::Error::other)?;
        written += n;
        progress.inc((n * COLUMNS * 8) as u64);
    }
    writer.close().map_err(std::io::Error::other)?;
    std::fs::rename(tmp, path)?;
    Ok(rows)
}

/// A progress bar of `total` units, `counter` saying how they are shown.
fn bar(total: u64, what: &str, counter: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{msg:>12}} [{{bar:40}}] {counter} ({{eta}})"))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

pub fn bytes_bar(total: u64, what: &str) -> ProgressBar {
    bar(total, what, "{bytes}/{total_bytes}")
}

/// Steps of a computation, such as replays.
pub fn count_bar(total: u64, what: &str) -> ProgressBar {
    bar(total, what, "{pos}/{len}")
}

/// TPC-H `lineitem` at `scale`, generated with tpchgen-arrow and written as
/// one zstd Parquet file in row groups of 128 Ki rows, as a lake writer
/// would.
pub fn lineitem(path: &Path, scale: f64, progress: &ProgressBar) -> std::io::Result<u64> {
    lineitem_part(path, scale, 1, 1, progress)
}

/// Part `part` (from 1) of `parts` of TPC-H `lineitem` at `scale`, written
/// like [`lineitem`]: the parts together are the whole table, as a lake
/// holds a large table in many files.
pub fn lineitem_part(
    path: &Path,
    scale: f64,
    part: i32,
    parts: i32,
    progress: &ProgressBar,
) -> std::io::Result<u64> {
    use tpchgen::generators::LineItemGenerator;
    use tpchgen_arrow::LineItemArrow;
    tpch_table(
        path,
        LineItemArrow::new(LineItemGenerator::new(scale, part, parts)),
        progress,
    )
}

/// TPC-H `part` at `scale`, written like [`lineitem`].
pub fn part(path: &Path, scale: f64, progress: &ProgressBar) -> std::io::Result<u64> {
    use tpchgen::generators::PartGenerator;
    use tpchgen_arrow::PartArrow;
    tpch_table(
        path,
        PartArrow::new(PartGenerator::new(scale, 1, 1)),
        progress,
    )
}

/// Writes a tpchgen-arrow table as zstd Parquet; strings become plain Utf8
/// so every client can read them.
fn tpch_table(
    path: &Path,
    batches: impl tpchgen_arrow::RecordBatchIterator,
    progress: &ProgressBar,
) -> std::io::Result<u64> {
    use arrow::compute::cast;
    use parquet::basic::{Compression, ZstdLevel};

    let schema = Arc::new(Schema::new(
        batches
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8View => Field::new(f.name(), DataType::Utf8, f.is_nullable()),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("parquet.tmp");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(128 * 1024))
        .build();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(&tmp)?, schema.clone(), Some(props))
            .map_err(std::io::Error::other)?;
    let mut rows = 0;
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(std::io::Error::other)?;
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(std::io::Error::other)?;
        rows += batch.num_rows() as u64;
        progress.inc(batch.num_rows() as u64);
        writer.write(&batch).map_err(std::io::Error::other)?;
    }
    writer.close().map_err(std::io::Error::other)?;
    std::fs::rename(tmp, path)?;
    Ok(rows)
}

pub fn rows_bar(total: u64, what: &str) -> ProgressBar {
    bar(total, what, "{human_pos}/{human_len} rows")
}
