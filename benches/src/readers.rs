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
use datafusion::datasource::file_format::options::ReadOptions;
use datafusion::datasource::listing::{ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, RowFilter,
};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use quiver_client::QuiverClient;
use quiver_protocol::ScanRequest;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, OnceCell};

use crate::baseline::link_datafusion;
use crate::compare::Digest;
use crate::error::BoxError;
use crate::rig::Rig;

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
            acc.arrow_bytes += batch_bytes(&batch);
            Ok(acc)
        })
        .await
}

/// The bytes of Arrow data in `batches`: what each column's values,
/// offsets and validity take for the rows it holds.
pub fn arrow_bytes(batches: &[RecordBatch]) -> u64 {
    batches.iter().map(batch_bytes).sum()
}

/// The bytes of Arrow data in one batch, counted the same way whoever made
/// it. Not `get_array_memory_size`: the columns of a batch decoded from
/// Flight are slices of one message body, and that method counts the whole
/// body once per column, so a 16-column answer would be counted 16 times.
fn batch_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
        .sum()
}

type Batches = BoxStream<'static, Result<RecordBatch, BoxError>>;

/// Answers queries in every mode against one rig, each baseline in its best
/// honest configuration. DataFusion keeps one session, tuned for reading S3
/// over a link, for the whole run, as a long-lived query engine would, so
/// it benefits from its own metadata and file-list caches; the direct
/// reader keeps its footers too. Quiver is read as a client reads it:
/// GetFlightInfo, then the endpoints it returns, in parallel (or by ticket
/// alone, with [`Rig::ticket_only`]).
pub struct Readers<'a> {
    rig: &'a Rig,
    ctx: SessionContext,
    tables: Mutex<HashMap<String, String>>,
    /// The direct reader's footers, by object name.
    footers: Mutex<HashMap<String, (u64, ArrowReaderMetadata)>>,
    client: OnceCell<QuiverClient>,
}

/// Row groups the direct reader fetches at once: enough to hide the link's
/// first-byte latency, few enough to bound its memory.
const DIRECT_ROW_GROUPS: usize = 4;

impl<'a> Readers<'a> {
    pub fn new(rig: &'a Rig) -> Self {
        let ctx = SessionContext::new_with_config(link_datafusion());
        ctx.register_object_store(rig.bucket_url(), rig.baseline().clone());
        Readers {
            rig,
            ctx,
            tables: Mutex::default(),
            footers: Mutex::default(),
            client: OnceCell::new(),
        }
    }

    pub fn rig(&self) -> &Rig {
        self.rig
    }

    pub async fn read(&self, mode: Mode, q: &Query) -> Result<Reply, BoxError> {
        drain(self.batches(mode, q).await?).await
    }

    /// The content `mode` answers `q` with, read apart from any timed run.
    pub async fn digest(&self, mode: Mode, q: &Query) -> Result<Digest, BoxError> {
        let mut batches = self.batches(mode, q).await?;
        let mut digest = Digest::default();
        while let Some(batch) = batches.try_next().await? {
            digest.add(&batch)?;
        }
        Ok(digest)
    }

    async fn batches(&self, mode: Mode, q: &Query) -> Result<Batches, BoxError> {
        match mode {
            Mode::Direct => self.direct(q).await,
            Mode::Datafusion => self.datafusion(q).await,
            Mode::QuiverCold | Mode::QuiverWarm => self.quiver(q).await,
        }
    }

    /// The object's size and parsed footer, read on its first query only, as
    /// a tuned reader keeps them.
    async fn footer(&self, name: &str) -> Result<(u64, ArrowReaderMetadata), BoxError> {
        // Not held while reading: concurrent first reads of other objects
        // fetch their footers at once (one object's may be read twice).
        if let Some(f) = self.footers.lock().await.get(name) {
            return Ok(f.clone());
        }
        let store: Arc<dyn ObjectStore> = self.rig.baseline().clone();
        let path = self.rig.object_path(name);
        let size = store.head(&path).await?.size;
        let mut reader = StoreReader { store, path, size };
        let metadata = ArrowReaderMetadata::load_async(&mut reader, Default::default()).await?;
        self.footers
            .lock()
            .await
            .insert(name.to_string(), (size, metadata.clone()));
        Ok((size, metadata))
    }

    /// object_store + parquet at its best: the footer cached, and up to
    /// [`DIRECT_ROW_GROUPS`] row groups fetched and decoded at once, their
    /// batches still delivered in file order.
    async fn direct(&self, q: &Query) -> Result<Batches, BoxError> {
        let (size, metadata) = self.footer(&q.name).await?;
        let store: Arc<dyn ObjectStore> = self.rig.baseline().clone();
        let path = self.rig.object_path(&q.name);
        let schema = metadata.metadata().file_metadata().schema_descr_ptr();
        let projection = q
            .columns
            .as_ref()
            .map(|columns| ProjectionMask::columns(&schema, columns.iter().map(String::as_str)));
        let filter = q.filter.clone().map(|pred| {
            (
                ProjectionMask::columns(&schema, [pred.column.as_str()]),
                pred,
            )
        });
        let groups = metadata.metadata().num_row_groups();
        let read_group = move |group: usize| {
            let reader = StoreReader {
                store: store.clone(),
                path: path.clone(),
                size,
            };
            let mut builder =
                ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata.clone())
                    .with_row_groups(vec![group]);
            if let Some(mask) = &projection {
                builder = builder.with_projection(mask.clone());
            }
            if let Some((mask, pred)) = filter.clone() {
                let predicate = ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
                    pred.evaluate(batch.column(0))
                });
                builder = builder.with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
            }
            async move {
                let batches: Vec<RecordBatch> = builder.build()?.try_collect().await?;
                Ok::<_, BoxError>(batches)
            }
        };
        Ok(futures::stream::iter(0..groups)
            .map(read_group)
            .buffered(DIRECT_ROW_GROUPS)
            .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
            .try_flatten()
            .boxed())
    }

    async fn table(&self, name: &str) -> Result<String, BoxError> {
        let mut tables = self.tables.lock().await;
        if let Some(t) = tables.get(name) {
            return Ok(t.clone());
        }
        let table = format!("t{}", tables.len());
        let url = listing_url(self.rig.bucket_url(), &self.rig.object_path(name))?;
        let options = ParquetReadOptions::default()
            .to_listing_options(&self.ctx.copied_config(), self.ctx.copied_table_options());
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .infer_schema(&self.ctx.state())
            .await?;
        self.ctx
            .register_table(&table, Arc::new(ListingTable::try_new(config)?))?;
        tables.insert(name.to_string(), table.clone());
        Ok(table)
    }

    async fn datafusion(&self, q: &Query) -> Result<Batches, BoxError> {
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
        Ok(df.execute_stream().await?.map_err(BoxError::from).boxed())
    }

    async fn quiver(&self, q: &Query) -> Result<Batches, BoxError> {
        let req = ScanRequest {
            source: Some(self.rig.source().to_string()),
            path: Some(self.rig.quiver_path(&q.name)),
            columns: q.columns.clone(),
            filter: q.filter.as_ref().map(Pred::sql),
            ..Default::default()
        };
        if self.rig.ticket_only() {
            let req = ScanRequest {
                compression: self.rig.ticket_compression(),
                ..req
            };
            let mut client = self.rig.client_for(&q.name);
            let stream = client.do_get(Ticket::new(req.to_bytes())).await?;
            return Ok(stream.map_err(BoxError::from).boxed());
        }
        let client = self
            .client
            .get_or_try_init(|| QuiverClient::connect(self.rig.client_config()))
            .await?;
        let (_, stream) = client.read(&req).await?;
        Ok(stream.map_err(BoxError::from).boxed())
    }
}

/// The listing DataFusion registers object `path` under: its directory,
/// with a glob that matches its name alone, so the table is listed like a
/// directory, through the session's file-list cache, rather than by a HEAD
/// of the object on every query as a single-file URL is.
fn listing_url(bucket: &url::Url, path: &Path) -> Result<ListingTableUrl, BoxError> {
    let text = path.as_ref();
    let (dir, file) = text.rsplit_once('/').unwrap_or(("", text));
    let base = bucket.as_str().trim_end_matches('/');
    let dir = if dir.is_empty() {
        format!("{base}/")
    } else {
        format!("{base}/{dir}/")
    };
    let glob = glob::Pattern::new(&glob::Pattern::escape(file))?;
    Ok(ListingTableUrl::try_new(
        url::Url::parse(&dir)?,
        Some(glob),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::ArrayRef;
    use arrow::datatypes::{DataType, Field, Schema};

    /// The listing is the object's directory, and its glob matches the
    /// object's name and no other, whatever characters the name holds.
    #[test]
    fn a_listing_matches_its_one_object() {
        let bucket = url::Url::parse("s3://bench").unwrap();
        for (path, others) in [
            (
                "root/data/zipf-00.parquet",
                &[
                    "root/data/zipf-001.parquet",
                    "root/data/zipf-00.parquet.tmp",
                ][..],
            ),
            ("x[1]*.parquet", &["x1a.parquet"][..]),
        ] {
            let url = listing_url(&bucket, &Path::from(path)).unwrap();
            assert!(url.is_collection(), "{path}");
            assert!(url.contains(&Path::from(path), true), "{path}");
            for other in others {
                assert!(
                    !url.contains(&Path::from(*other), true),
                    "{path} matched {other}"
                );
            }
        }
    }

    /// A stream of known size, through the same Flight encoding and
    /// decoding a node's answer takes: `drain` counts each column's bytes
    /// once. Counting with `get_array_memory_size` would give every column
    /// the whole decoded message body.
    #[tokio::test]
    async fn drain_counts_each_columns_bytes_once_after_flight_decoding() {
        use arrow_flight::decode::FlightRecordBatchStream;
        use arrow_flight::encode::FlightDataEncoderBuilder;

        const ROWS: usize = 1000;
        const COLUMNS: usize = 4;
        let schema = Arc::new(Schema::new(
            (0..COLUMNS)
                .map(|i| Field::new(format!("c{i}"), DataType::Int64, false))
                .collect::<Vec<_>>(),
        ));
        let columns = (0..COLUMNS)
            .map(|i| {
                Arc::new(Int64Array::from_iter_values(
                    (0..ROWS as i64).map(|v| v * i as i64),
                )) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(schema, columns).unwrap();
        // 4 columns of 1000 non-null 8-byte values.
        let known = (ROWS * COLUMNS * 8) as u64;

        let encoded = FlightDataEncoderBuilder::new().build(futures::stream::iter([Ok(batch)]));
        let decoded: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(encoded)
            .try_collect()
            .await
            .unwrap();
        let old_count: u64 = decoded
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum();
        assert!(old_count >= known * COLUMNS as u64 / 2, "{old_count}");

        let reply = drain(futures::stream::iter(
            decoded.into_iter().map(Ok::<_, ArrowError>),
        ))
        .await
        .unwrap();
        assert_eq!(
            reply,
            Reply {
                rows: ROWS as u64,
                arrow_bytes: known
            }
        );
    }
}
