//! A lake for the client's tests (and the command line's and Flight SQL's,
//! which include this file by path): TPC-H written as Parquet, uploaded to an
//! s3s-fs server that checks SigV4, served by an in-process Quiver node; and
//! the independent reference, DataFusion reading the same files from local
//! disk with every pruning and pushdown switched off.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};
use quiver_client::{ClientConfig, QuiverClient, QuiverTable};
use quiver_server::config::{ByteSize, Config, SourceConfig};
use quiver_server::RunningNode;
use quiver_testkit::{S3Server, ACCESS_KEY, SECRET_KEY};

pub const BUCKET: &str = "lake";
pub const TABLES: [&str; 8] = [
    "lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region",
];

pub struct Lake {
    pub s3: S3Server,
    /// The same files on local disk, for the reference reader.
    pub local: PathBuf,
    pub node: RunningNode,
    _dir: tempfile::TempDir,
}

/// TPC-H at `scale`, the big tables in `parts` files each, in s3s-fs under
/// `tpch/<table>/`, and a node serving it as source `lake`.
pub async fn tpch_lake(scale: f64, parts: usize) -> Lake {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    let written = {
        let local = local.clone();
        tokio::task::spawn_blocking(move || {
            quiver_sample::write_tpch_parts(&local, scale, parts).unwrap()
        })
        .await
        .unwrap()
    };
    assert_eq!(written.len(), 8);
    let s3 = S3Server::start(&dir.path().join("s3"), &[BUCKET])
        .await
        .unwrap();
    upload(&s3, &local).await;
    let node = RunningNode::start(node_config(vec![source(&s3)]))
        .await
        .unwrap();
    Lake {
        s3,
        local,
        node,
        _dir: dir,
    }
}

pub fn source(s3: &S3Server) -> SourceConfig {
    let mut s = SourceConfig::new("lake", &format!("s3://{BUCKET}/"));
    s.endpoint = Some(s3.endpoint());
    s.region = Some("us-east-1".into());
    s.access_key_id = Some(ACCESS_KEY.into());
    s.secret_access_key = Some(SECRET_KEY.into());
    s
}

pub fn node_config(sources: Vec<SourceConfig>) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.admin_listen = "127.0.0.1:0".parse().unwrap();
    c.cache.memory = ByteSize(256 << 20);
    c.cache.chunk = ByteSize(256 << 10);
    c.cache.disk = ByteSize(0);
    c.sources = sources;
    c
}

/// A store for the test bucket, to upload with.
pub fn store(s3: &S3Server) -> object_store::aws::AmazonS3 {
    AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()
        .unwrap()
}

/// Uploads every file under `local` with PUT (s3s-fs then stores its
/// checksum instead of hashing the file on every GET).
async fn upload(s3: &S3Server, local: &Path) {
    let store = store(s3);
    let mut stack = vec![local.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                let key = p.strip_prefix(local).unwrap().to_string_lossy().to_string();
                let bytes = std::fs::read(&p).unwrap();
                store
                    .put(&StorePath::from(key), PutPayload::from(bytes))
                    .await
                    .unwrap();
            }
        }
    }
}

pub fn url(node: &RunningNode) -> String {
    format!("grpc://{}", node.flight_addr)
}

pub async fn client(node: &RunningNode) -> QuiverClient {
    QuiverClient::connect(ClientConfig::new(vec![url(node)]))
        .await
        .unwrap()
}

/// A session with every TPC-H table registered as a [`QuiverTable`].
pub async fn quiver_ctx(client: &QuiverClient) -> SessionContext {
    let ctx = SessionContext::new_with_config(quiver_client::session_config());
    for t in TABLES {
        let table = QuiverTable::try_new(client.clone(), "lake", format!("tpch/{t}/"))
            .await
            .unwrap();
        ctx.register_table(t, Arc::new(table)).unwrap();
    }
    ctx
}

/// The oracle ([`quiver_testkit::oracle`]) with every TPC-H table registered.
pub async fn reference_ctx(local: &Path) -> SessionContext {
    let ctx = quiver_testkit::oracle::session();
    for t in TABLES {
        let dir = local.join("tpch").join(t);
        ctx.register_parquet(
            t,
            &format!("{}/", dir.display()),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    }
    ctx
}

/// Every row as text, sorted: results compare by content, whatever order
/// the partitions delivered them in.
pub fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            let cells: Vec<String> = formatters.iter().map(|f| f.value(r).to_string()).collect();
            out.push(cells.join("|"));
        }
    }
    out.sort();
    out
}

pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// A lake, a client of its node, a session over its tables through Quiver
/// and the reference session over the same files.
pub struct Sessions {
    pub lake: Lake,
    pub client: QuiverClient,
    pub quiver: SessionContext,
    pub reference: SessionContext,
}

pub async fn sessions(scale: f64, parts: usize) -> Sessions {
    let lake = tpch_lake(scale, parts).await;
    let client = client(&lake.node).await;
    let quiver = quiver_ctx(&client).await;
    let reference = reference_ctx(&lake.local).await;
    Sessions {
        lake,
        client,
        quiver,
        reference,
    }
}
