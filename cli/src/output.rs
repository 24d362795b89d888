//! Writing query results as a table, CSV, JSON lines or Parquet, to stdout
//! or to a file that appears only once it is complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use clap::ValueEnum;
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use quiver_client::{BatchStream, ClientError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned text table (reads the whole result first).
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Jsonl,
    /// A Parquet file (needs --output).
    Parquet,
}

fn io_error(what: &Path, e: std::io::Error) -> ClientError {
    ClientError::Refused(format!("cannot write {}: {e}", what.display()))
}

/// Where the bytes go: stdout, or `<file>.partial` renamed to `<file>` on
/// success, so a failed or interrupted query never leaves a file that looks
/// complete.
enum Sink {
    Stdout(BufWriter<std::io::Stdout>),
    File {
        partial: PathBuf,
        target: PathBuf,
        file: BufWriter<File>,
    },
}

impl Sink {
    fn open(output: Option<&Path>) -> Result<Sink, ClientError> {
        match output {
            None => Ok(Sink::Stdout(BufWriter::new(std::io::stdout()))),
            Some(target) => {
                let mut partial = target.as_os_str().to_owned();
                partial.push(".partial");
                let partial = PathBuf::from(partial);
                let file = File::create(&partial).map_err(|e| io_error(target, e))?;
                Ok(Sink::File {
                    partial,
                    target: target.to_path_buf(),
                    file: BufWriter::new(file),
                })
            }
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(w) => w,
            Sink::File { file, .. } => file,
        }
    }

    fn finish(self) -> Result<(), ClientError> {
        match self {
            Sink::Stdout(mut w) => match w.flush() {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(io_error(Path::new("stdout"), e))
                }
                _ => Ok(()),
            },
            Sink::File {
                partial,
                target,
                file,
            } => {
                let file = file
                    .into_inner()
                    .map_err(|e| io_error(&target, e.into_error()))?;
                file.sync_all().map_err(|e| io_error(&target, e))?;
                std::fs::rename(&partial, &target).map_err(|e| io_error(&target, e))
            }
        }
    }

    fn abandon(self) {
        if let Sink::File { partial, .. } = self {
            let _ = std::fs::remove_file(partial);
        }
    }
}

/// A spinner on stderr counting rows, drawn only when stderr is a terminal.
fn rows_spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {human_pos} rows, {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Writes every batch of `stream` in `format`; returns the rows written.
pub async fn write(
    format: Format,
    output: Option<&Path>,
    schema: SchemaRef,
    mut stream: BatchStream,
) -> Result<u64, ClientError> {
    if format == Format::Parquet && output.is_none() {
        return Err(ClientError::Refused(
            "Parquet output is binary: give --output FILE".into(),
        ));
    }
    let mut sink = Sink::open(output)?;
    let spinner = rows_spinner();
    let result = async {
        let mut rows = 0u64;
        let mut batch_writer = BatchWriter::new(format, schema.clone())?;
        while let Some(batch) = stream.try_next().await? {
            rows += batch.num_rows() as u64;
            spinner.set_position(rows);
            if !batch_writer.write(&mut sink, batch)? {
                break;
            }
        }
        batch_writer.finish(&mut sink)?;
        Ok::<u64, ClientError>(rows)
    }
    .await;
    spinner.finish_and_clear();
    match result {
        Ok(rows) => {
            sink.finish()?;
            Ok(rows)
        }
        Err(e) => {
            sink.abandon();
            Err(e)
        }
    }
}

/// One format's encoder, fed batch by batch.
enum BatchWriter {
    Table(SchemaRef, Vec<RecordBatch>),
    Csv {
        schema: SchemaRef,
        header_done: bool,
    },
    Jsonl,
    Parquet(Box<parquet::arrow::ArrowWriter<Vec<u8>>>),
}

fn arrow_error(e: impl std::fmt::Display) -> ClientError {
    ClientError::Refused(format!("cannot encode the result: {e}"))
}

impl BatchWriter {
    fn new(format: Format, schema: SchemaRef) -> Result<Self, ClientError> {
        Ok(match format {
            Format::Table => BatchWriter::Table(schema, Vec::new()),
            Format::Csv => BatchWriter::Csv {
                schema,
                header_done: false,
            },
            Format::Jsonl => BatchWriter::Jsonl,
            Format::Parquet => BatchWriter::Parquet(Box::new(
                parquet::arrow::ArrowWriter::try_new(Vec::new(), schema, None)
                    .map_err(arrow_error)?,
            )),
        })
    }

    /// Encodes `batch` into the sink; `false` when the reader went away
    /// (a closed pipe), so the query can stop early.
    fn write(&mut self, sink: &mut Sink, batch: RecordBatch) -> Result<bool, ClientError> {
        let bytes = match self {
            BatchWriter::Table(_, all) => {
                all.push(batch);
                return Ok(true);
            }
            BatchWriter::Csv { header_done, .. } => {
                let bytes = csv(&batch, !*header_done)?;
                *header_done = true;
                bytes
            }
            BatchWriter::Jsonl => {
                let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
                w.write(&batch).map_err(arrow_error)?;
                w.finish().map_err(arrow_error)?;
                w.into_inner()
            }
            BatchWriter::Parquet(w) => {
                w.write(&batch).map_err(arrow_error)?;
                // Row groups are flushed into the buffer as they fill.
                std::mem::take(w.inner_mut())
            }
        };
        put(sink, &bytes)
    }

    fn finish(self, sink: &mut Sink) -> Result<(), ClientError> {
        let bytes = match self {
            BatchWriter::Table(schema, all) => {
                let table = arrow::util::pretty::pretty_format_batches_with_schema(schema, &all)
                    .map_err(arrow_error)?;
                format!("{table}\n").into_bytes()
            }
            // The header even when no row matched.
            BatchWriter::Csv {
                schema,
                header_done: false,
            } => csv(&RecordBatch::new_empty(schema), true)?,
            BatchWriter::Csv { .. } | BatchWriter::Jsonl => Vec::new(),
            BatchWriter::Parquet(w) => w.into_inner().map_err(arrow_error)?,
        };
        put(sink, &bytes).map(|_| ())
    }
}

fn csv(batch: &RecordBatch, header: bool) -> Result<Vec<u8>, ClientError> {
    let mut w = arrow::csv::WriterBuilder::new()
        .with_header(header)
        .build(Vec::new());
    w.write(batch).map_err(arrow_error)?;
    Ok(w.into_inner())
}

fn put(sink: &mut Sink, bytes: &[u8]) -> Result<bool, ClientError> {
    match sink.writer().write_all(bytes) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(io_error(Path::new("the output"), e)),
    }
}
