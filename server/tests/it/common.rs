//! Shared test harness: a real S3-compatible server (s3s-fs, checking
//! SigV4), generated Parquet files, in-process Quiver nodes, a Flight client,
//! and DataFusion reading the same files directly as the reference.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use arrow_flight::{Action, FlightClient, FlightDescriptor, FlightInfo, Ticket};
use bytes::Bytes;
use futures::TryStreamExt;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use quiver_protocol::{ScanRequest, StatsReport};
use quiver_server::config::{ByteSize, Config, SourceConfig, Span};
use quiver_server::RunningNode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

pub use quiver_testkit::{ACCESS_KEY, SECRET_KEY};
pub const BUCKET: &str = "lake";

/// The S3-compatible server of the testkit, with the one bucket tests use.
pub struct S3Server {
    inner: quiver_testkit::S3Server,
}

impl S3Server {
    pub async fn start(root: &Path) -> S3Server {
        S3Server {
            inner: quiver_testkit::S3Server::start(root, &[BUCKET])
                .await
                .unwrap(),
        }
    }

    /// The testkit server, for its request log and fault switches.
    pub fn inner(&self) -> &quiver_testkit::S3Server {
        &self.inner
    }

    /// Where an object of the bucket lives on disk (for the reference reader).
    pub fn file(&self, key: &str) -> PathBuf {
        self.inner.file(BUCKET, key)
    }

    pub fn source(&self, name: &str) -> SourceConfig {
        let mut s = SourceConfig::new(name, &format!("s3://{BUCKET}/"));
        s.endpoint = Some(self.inner.endpoint());
        s.region = Some("us-east-1".into());
        s.access_key_id = Some(ACCESS_KEY.into());
        s.secret_access_key = Some(SECRET_KEY.into());
        s
    }
}

/// A node config on free loopback ports with a small cache; memory only
/// unless `disk_dir` is given.
pub fn node_config(sources: Vec<SourceConfig>, disk_dir: Option<&Path>) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.admin_listen = "127.0.0.1:0".parse().unwrap();
    c.cache.memory = ByteSize(64 << 20);
    c.cache.chunk = ByteSize(256 << 10);
    match disk_dir {
        Some(d) => {
            c.cache.disk = ByteSize(256 << 20);
            c.cache.disk_dir = d.to_path_buf();
        }
        None => c.cache.disk = ByteSize(0),
    }
    c.sources = sources;
    c
}

pub fn local_source(name: &str, dir: &Path) -> SourceConfig {
    let mut s = SourceConfig::new(name, url::Url::from_directory_path(dir).unwrap().as_str());
    s.validate = Span(Duration::from_secs(30));
    s
}

pub async fn client(node: &RunningNode) -> FlightClient {
    let channel = Channel::from_shared(format!("http://{}", node.flight_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightClient::new(channel)
}

/// A Flight client of the node at `url` (`grpc://host:port`).
pub async fn client_at(url: &str) -> FlightClient {
    let endpoint = quiver_protocol::dial_url(url).unwrap();
    FlightClient::new(
        Channel::from_shared(endpoint)
            .unwrap()
            .connect()
            .await
            .unwrap(),
    )
}

pub fn ticket(req: &ScanRequest) -> Ticket {
    Ticket::new(req.to_bytes())
}

pub fn scan(source: &str, path: &str) -> ScanRequest {
    ScanRequest {
        source: Some(source.into()),
        path: Some(path.into()),
        ..Default::default()
    }
}

pub async fn do_get(
    client: &mut FlightClient,
    req: &ScanRequest,
) -> Result<Vec<RecordBatch>, tonic::Status> {
    let stream = client.do_get(ticket(req)).await.map_err(into_status)?;
    stream.try_collect().await.map_err(into_status)
}

pub async fn do_get_raw(
    client: &mut FlightClient,
    bytes: &[u8],
) -> Result<Vec<RecordBatch>, tonic::Status> {
    let stream = client
        .do_get(Ticket::new(Bytes::copy_from_slice(bytes)))
        .await
        .map_err(into_status)?;
    stream.try_collect().await.map_err(into_status)
}

pub async fn flight_info(
    client: &mut FlightClient,
    req: &ScanRequest,
) -> Result<FlightInfo, tonic::Status> {
    client
        .get_flight_info(FlightDescriptor::new_cmd(req.to_bytes()))
        .await
        .map_err(into_status)
}

/// GetFlightInfo with a command of any bytes.
pub async fn flight_info_raw(
    client: &mut FlightClient,
    bytes: &[u8],
) -> Result<FlightInfo, tonic::Status> {
    client
        .get_flight_info(FlightDescriptor::new_cmd(Bytes::copy_from_slice(bytes)))
        .await
        .map_err(into_status)
}

pub fn into_status(e: arrow_flight::error::FlightError) -> tonic::Status {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => tonic::Status::unknown(other.to_string()),
    }
}

pub async fn action(
    client: &mut FlightClient,
    kind: &str,
    body: &[u8],
) -> Result<Vec<Bytes>, tonic::Status> {
    let stream = client
        .do_action(Action::new(kind, Bytes::copy_from_slice(body)))
        .await
        .map_err(into_status)?;
    stream.try_collect().await.map_err(into_status)
}

pub async fn stats(client: &mut FlightClient) -> StatsReport {
    let out = action(client, "stats", b"").await.unwrap();
    serde_json::from_slice(&out[0]).unwrap()
}

/// Every row of `batches` as one line of text, sorted: an order-insensitive
/// fingerprint for comparing results with the reference.
pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            let cells: Vec<String> = formatters.iter().map(|f| f.value(r).to_string()).collect();
            out.push(cells.join("|"));
        }
    }
    out.sort();
    out
}

/// What DataFusion returns reading the same file directly.
pub async fn reference(
    file: &Path,
    columns: Option<&[String]>,
    filter: Option<&str>,
) -> Vec<RecordBatch> {
    use datafusion::prelude::ParquetReadOptions;
    let ctx = quiver_testkit::oracle::session();
    ctx.register_parquet("t", file.to_str().unwrap(), ParquetReadOptions::default())
        .await
        .unwrap();
    let cols = match columns {
        Some(c) => c
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", "),
        None => "*".into(),
    };
    let sql = match filter {
        Some(f) => format!("SELECT {cols} FROM t WHERE {f}"),
        None => format!("SELECT {cols} FROM t"),
    };
    ctx.sql(&sql).await.unwrap().collect().await.unwrap()
}

pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// Column names of the generated test files.
pub const COLUMNS: [&str; 8] = ["id", "qty", "price", "name", "day", "ts", "flag", "amount"];

/// A Parquet file of `rows` rows covering ints, floats, strings, dates,
/// timestamps, booleans and decimals, with nulls, several row groups, small
/// pages and bloom filters, so that every pruning path is exercised.
pub fn write_parquet(path: &Path, rows: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("qty", DataType::Int32, true),
        Field::new("price", DataType::Float64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("day", DataType::Date32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("flag", DataType::Boolean, true),
        Field::new("amount", DataType::Decimal128(12, 2), true),
    ]));
    let words = [
        "apple",
        "banana",
        "cherry",
        "date",
        "elder",
        "fig",
        "grape",
        "apricot",
        "blueberry",
    ];
    let maybe = |rng: &mut StdRng| rng.random_range(0..10) != 0;
    let id: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
    let qty: ArrayRef = Arc::new(Int32Array::from_iter(
        (0..rows).map(|_| maybe(&mut rng).then(|| rng.random_range(-50..100))),
    ));
    let price: ArrayRef = Arc::new(Float64Array::from_iter((0..rows).map(|_| {
        maybe(&mut rng).then(|| (rng.random_range(0.0..1000.0f64) * 100.0).round() / 100.0)
    })));
    let name: ArrayRef = Arc::new(StringArray::from_iter((0..rows).map(|_| {
        maybe(&mut rng).then(|| {
            format!(
                "{}-{}",
                words[rng.random_range(0..words.len())],
                rng.random_range(0..50)
            )
        })
    })));
    // Days and timestamps increase with the id, so statistics prune.
    let day: ArrayRef = Arc::new(Date32Array::from_iter(
        (0..rows).map(|i| maybe(&mut rng).then(|| 18000 + (i / 40) as i32)),
    ));
    let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from_iter((0..rows).map(|i| {
        maybe(&mut rng)
            .then(|| 1_600_000_000_000_000 + i as i64 * 1_000_000 + rng.random_range(0..999_999))
    })));
    let flag: ArrayRef = Arc::new(BooleanArray::from_iter(
        (0..rows).map(|_| maybe(&mut rng).then(|| rng.random_bool(0.3))),
    ));
    let amount: ArrayRef = Arc::new(
        Decimal128Array::from_iter(
            (0..rows).map(|_| maybe(&mut rng).then(|| rng.random_range(-100_000..1_000_000i128))),
        )
        .with_precision_and_scale(12, 2)
        .unwrap(),
    );
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![id, qty, price, name, day, ts, flag, amount],
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows.div_ceil(6).max(1)))
        .set_data_page_row_count_limit(500)
        .set_write_batch_size(500)
        .set_bloom_filter_enabled(true)
        .build();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// A random SQL filter over the generated columns.
pub fn random_filter(rng: &mut StdRng, depth: u32) -> String {
    if depth > 0 && rng.random_range(0..3) == 0 {
        let a = random_filter(rng, depth - 1);
        let b = random_filter(rng, depth - 1);
        return match rng.random_range(0..3) {
            0 => format!("({a} AND {b})"),
            1 => format!("({a} OR {b})"),
            _ => format!("NOT ({a})"),
        };
    }
    let op = ["=", "<>", "<", "<=", ">", ">="][rng.random_range(0..6)];
    match rng.random_range(0..14) {
        0 => format!("id {op} {}", rng.random_range(0..6000)),
        1 => format!("qty {op} {}", rng.random_range(-60..110)),
        2 => format!("price {op} {:.2}", rng.random_range(0.0..1000.0f64)),
        3 => format!("name {op} 'banana-{}'", rng.random_range(0..50)),
        4 => format!(
            "day {op} DATE '{}'",
            ["2019-04-15", "2019-05-01", "2019-06-20", "2019-03-01"][rng.random_range(0..4)]
        ),
        5 => format!(
            "ts {op} TIMESTAMP '2020-09-13 13:{:02}:00'",
            rng.random_range(0..59)
        ),
        6 => {
            let lo = rng.random_range(0..5000);
            format!("id BETWEEN {lo} AND {}", lo + rng.random_range(0..800))
        }
        7 => format!(
            "qty IN ({}, {}, {})",
            rng.random_range(-50..100),
            rng.random_range(-50..100),
            rng.random_range(-50..100)
        ),
        8 => format!(
            "{} IS {}NULL",
            COLUMNS[rng.random_range(1..COLUMNS.len())],
            if rng.random_bool(0.5) { "NOT " } else { "" }
        ),
        9 => format!(
            "name LIKE '{}%'",
            ["ap", "b", "cherry-1", "z", "fig-"][rng.random_range(0..5)]
        ),
        10 => format!("flag = {}", rng.random_bool(0.5)),
        11 => format!(
            "amount {op} {}.{:02}",
            rng.random_range(-1000..10000),
            rng.random_range(0..100)
        ),
        12 => format!(
            "price BETWEEN {} AND {}",
            rng.random_range(0..500),
            rng.random_range(500..1000)
        ),
        _ => format!(
            "name NOT IN ('apple-{}', 'fig-{}')",
            rng.random_range(0..50),
            rng.random_range(0..50)
        ),
    }
}

pub fn random_columns(rng: &mut StdRng) -> Option<Vec<String>> {
    if rng.random_range(0..4) == 0 {
        return None;
    }
    let mut cols: Vec<String> = COLUMNS
        .iter()
        .filter(|_| rng.random_bool(0.4))
        .map(|c| c.to_string())
        .collect();
    if cols.is_empty() {
        cols.push(COLUMNS[rng.random_range(0..COLUMNS.len())].to_string());
    }
    Some(cols)
}
