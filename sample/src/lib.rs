//! The embedded default's sample data: a small TPC-H data set written as
//! Parquet, laid out `tpch/<table>/part-0.parquet` so every table is a
//! directory (which Flight SQL later exposes as `tpch.<table>`).

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow,
    RecordBatchIterator, RegionArrow, SupplierArrow,
};

/// Rows per row group: small enough that statistics prune row groups even in
/// the sample.
const ROW_GROUP_ROWS: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("cannot write sample data under {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("cannot encode sample data: {0}")]
    Encode(String),
}

/// Whether `dir` holds any Parquet file at any depth.
pub fn has_parquet(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(|e| e.ok()).any(|e| {
        let p = e.path();
        if p.is_dir() {
            has_parquet(&p)
        } else {
            p.extension().is_some_and(|x| x == "parquet")
        }
    })
}

/// Strings as plain Utf8 so that every Flight client (JDBC, older pyarrow)
/// can read the sample, not only those that know string views.
fn plain_strings(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8View => Field::new(f.name(), DataType::Utf8, f.is_nullable()),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ))
}

fn write_table(
    dir: &Path,
    table: &str,
    part: usize,
    batches: impl RecordBatchIterator,
) -> Result<u64, SampleError> {
    let io = |source| SampleError::Io {
        dir: dir.display().to_string(),
        source,
    };
    let table_dir = dir.join("tpch").join(table);
    std::fs::create_dir_all(&table_dir).map_err(io)?;
    let schema = plain_strings(batches.schema());
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    // Write beside the target and rename, so a crash never leaves a
    // half-written file that looks like data.
    let name = format!("part-{part}.parquet");
    let tmp = table_dir.join(format!(".{name}.tmp"));
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
        .map_err(|e| SampleError::Encode(e.to_string()))?;
    let mut rows = 0;
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SampleError::Encode(e.to_string()))?;
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| SampleError::Encode(e.to_string()))?;
        rows += batch.num_rows() as u64;
        writer
            .write(&batch)
            .map_err(|e| SampleError::Encode(e.to_string()))?;
    }
    writer
        .close()
        .map_err(|e| SampleError::Encode(e.to_string()))?;
    std::fs::rename(&tmp, table_dir.join(name)).map_err(io)?;
    Ok(rows)
}

/// Writes the eight TPC-H tables at `scale` under `dir`, one file each;
/// returns rows per table.
pub fn write_tpch(dir: &Path, scale: f64) -> Result<Vec<(&'static str, u64)>, SampleError> {
    write_tpch_parts(dir, scale, 1)
}

/// Like [`write_tpch`], with the six scaled tables split into `parts` files
/// (`part-0.parquet` ...), so that readers see several objects per table.
/// Nation and region are tiny and stay one file.
pub fn write_tpch_parts(
    dir: &Path,
    scale: f64,
    parts: usize,
) -> Result<Vec<(&'static str, u64)>, SampleError> {
    let parts = parts.max(1);
    let mut out = Vec::new();
    let mut each = |table: &'static str,
                    write: &dyn Fn(usize) -> Result<u64, SampleError>|
     -> Result<(), SampleError> {
        let mut rows = 0;
        for part in 0..parts {
            rows += write(part)?;
        }
        out.push((table, rows));
        Ok(())
    };
    let n = parts as i32;
    let p = |part: usize| part as i32 + 1;
    each("lineitem", &|i| {
        write_table(
            dir,
            "lineitem",
            i,
            LineItemArrow::new(LineItemGenerator::new(scale, p(i), n)),
        )
    })?;
    each("orders", &|i| {
        write_table(
            dir,
            "orders",
            i,
            OrderArrow::new(OrderGenerator::new(scale, p(i), n)),
        )
    })?;
    each("customer", &|i| {
        write_table(
            dir,
            "customer",
            i,
            CustomerArrow::new(CustomerGenerator::new(scale, p(i), n)),
        )
    })?;
    each("part", &|i| {
        write_table(
            dir,
            "part",
            i,
            PartArrow::new(PartGenerator::new(scale, p(i), n)),
        )
    })?;
    each("partsupp", &|i| {
        write_table(
            dir,
            "partsupp",
            i,
            PartSuppArrow::new(PartSuppGenerator::new(scale, p(i), n)),
        )
    })?;
    each("supplier", &|i| {
        write_table(
            dir,
            "supplier",
            i,
            SupplierArrow::new(SupplierGenerator::new(scale, p(i), n)),
        )
    })?;
    out.push((
        "nation",
        write_table(
            dir,
            "nation",
            0,
            NationArrow::new(NationGenerator::new(scale, 1, 1)),
        )?,
    ));
    out.push((
        "region",
        write_table(
            dir,
            "region",
            0,
            RegionArrow::new(RegionGenerator::new(scale, 1, 1)),
        )?,
    ));
    Ok(out)
}
