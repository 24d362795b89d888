//! The ways a benchmark query is answered, one per mode: the two baselines a
//! user has without Quiver (object_store + parquet, and DataFusion, both
//! reading S3 directly) and Quiver over Flight.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch};
use arrow::compute::kernels::cmp;
use arrow::error::ArrowError;
use arrow_flight::Ticket;
use bytes::Bytes;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowPredicateFn, ArrowReaderOptions, RowFilter};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use quiver_protocol::ScanRequest;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::rig::Rig;
use crate::BoxError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// object_store + parquet straight from S3, same projection and filter.
    Direct,
    /// A DataFusion table over the S3 object.
    Datafusion,
    /// Quiver starting from an empty cache.
    QuiverCold,
    /// Quiver once the same requests have warmed it.
    QuiverWarm,
}

impl Mode {
    pub const ALL: [Mode; 4] = [
        Mode::Direct,
        Mode::Datafusion,
        Mode::QuiverCold,
        Mode::QuiverWarm,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Mode::Direct => "object_store+parquet",
            Mode::Datafusion => "DataFusion over S3",
            Mode::QuiverCold => "Quiver cold",
            Mode::QuiverWarm => "Quiver warm",
        }
    }

    pub fn is_quiver(self) -> bool {
        matches!(self, Mode::QuiverCold | Mode::QuiverWarm)
    }
}

/// `column <= max` on an Int64 column, or `column < max` on a Float64
/// one: simple enough that every mode, including the hand-written parquet
/// reader, evaluates exactly the same predicate.
#[derive(Debug, Clone)]
pub struct Pred {
    pub column: String,
    pub bound: Bound,
}

#[derive(Debug, Clone, Copy)]
pub enum Bound {
    IntAtMost(i64),
    FloatBelow(f64),
}

impl Pred {
    pub fn int_at_most(column: &str, max: i64) -> Pred {
        Pred {
            column: column.into(),
            bound: Bound::IntAtMost(max),
        }
    }

    pub fn float_below(column: &str, max: f64) -> Pred {
        Pred {
            column: column.into(),
            bound: Bound::FloatBelow(max),
        }
    }

    pub fn sql(&self) -> String {
        match self.bound {
            Bound::IntAtMost(v) => format!("\"{}\" <= {v}", self.column),
            Bound::FloatBelow(v) => format!("\"{}\" < {v:?}", self.column),
        }
    }

    fn evaluate(&self, array: &dyn Array) -> Result<BooleanArray, ArrowError> {
        match self.bound {
            Bound::IntAtMost(v) => cmp::lt_eq(&array, &Int64Array::new_scalar(v)),
            Bound::FloatBelow(v) => cmp::lt(&array, &Float64Array::new_scalar(v)),
        }
    }
}

/// The plain way to read Parquet from an object store: one GET per range
/// the decoder asks for, footer found from the object's size.
struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn parquet_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(parquet_err)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(parquet_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// One request of a workload: an object, optionally with a projection and
/// a filter.
#[derive(Debug, Clone)]
pub struct Query {
    pub name: String,
    pub columns: Option<Vec<String>>,
    pub filter: Option<Pred>,
}

/// What reached the client's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reply {
    pub rows: u64,
    pub arrow_bytes: u64,
}

pub async fn drain<E>(stream: impl Stream<Item = Result<RecordBatch, E>>) -> Result<Reply, E> {
    stream
        .try_fold(Reply::default(), |mut acc, batch| async move {
            acc.rows += batch.num_rows() as u64;
            acc.arrow_bytes += batch.get_array_memory_size() as u64;
            Ok(acc)
        })
        .await
}

/// Answers queries in every mode against one rig. DataFusion keeps one
/// session for the whole run, as a long-lived query engine would, so it
/// benefits from its own metadata caching.
pub struct Readers<'a> {
    rig: &'a Rig,
    ctx: SessionContext,
    tables: Mutex<HashMap<String, String>>,
}

impl<'a> Readers<'a> {
    pub fn new(rig: &'a Rig) -> Self {
        let ctx = SessionContext::new();
        ctx.register_object_store(rig.bucket_url(), rig.baseline().clone());
        Readers {
            rig,
            ctx,
            tables: Mutex::default(),
        }
    }

    pub fn rig(&self) -> &Rig {
        self.rig
    }

    pub async fn read(&self, mode: Mode, q: &Query) -> Result<Reply, BoxError> {
        match mode {
            Mode::Direct => self.direct(q).await,
            Mode::Datafusion => self.datafusion(q).await,
            Mode::QuiverCold | Mode::QuiverWarm => self.quiver(q).await,
        }
    }

    async fn direct(&self, q: &Query) -> Result<Reply, BoxError> {
        let store: Arc<dyn ObjectStore> = self.rig.baseline().clone();
        let path = self.rig.object_path(&q.name);
        let size = store.head(&path).await?.size;
        let reader = StoreReader { store, path, size };
        let mut builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
        let schema = builder.metadata().file_metadata().schema_descr_ptr();
        if let Some(columns) = &q.columns {
            builder = builder.with_projection(ProjectionMask::columns(
                &schema,
                columns.iter().map(String::as_str),
            ));
        }
        if let Some(pred) = q.filter.clone() {
            let mask = ProjectionMask::columns(&schema, [pred.column.as_str()]);
            let predicate = ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
                pred.evaluate(batch.column(0))
            });
            builder = builder.with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
        }
        Ok(drain(builder.build()?).await?)
    }

    async fn table(&self, name: &str) -> Result<String, BoxError> {
        let mut tables = self.tables.lock().await;
        if let Some(t) = tables.get(name) {
            return Ok(t.clone());
        }
        let table = format!("t{}", tables.len());
        let url = format!(
            "{}/{}",
            self.rig.bucket_url().as_str().trim_end_matches('/'),
            self.rig.object_path(name)
        );
        self.ctx
            .register_parquet(&table, url, ParquetReadOptions::default())
            .await?;
        tables.insert(name.to_string(), table.clone());
        Ok(table)
    }

    async fn datafusion(&self, q: &Query) -> Result<Reply, BoxError> {
        let table = self.table(&q.name).await?;
        let columns = match &q.columns {
            Some(c) => c
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", "),
            None => "*".into(),
        };
        let filter = q
            .filter
            .as_ref()
            .map(|p| format!(" WHERE {}", p.sql()))
            .unwrap_or_default();
        let df = self
            .ctx
            .sql(&format!("SELECT {columns} FROM {table}{filter}"))
            .await?;
        Ok(drain(df.execute_stream().await?).await?)
    }

    async fn quiver(&self, q: &Query) -> Result<Reply, BoxError> {
        let req = ScanRequest {
            source: Some(self.rig.source().to_string()),
            path: Some(self.rig.quiver_path(&q.name)),
            columns: q.columns.clone(),
            filter: q.filter.as_ref().map(Pred::sql),
            ..Default::default()
        };
        let mut client = self.rig.client_for(&q.name);
        let stream = client.do_get(Ticket::new(req.to_bytes())).await?;
        Ok(drain(stream).await?)
    }
}
