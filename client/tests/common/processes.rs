//! quiver-server processes on loopback serving one local directory, for
//! the tests that kill, restart or secure nodes: the real binary, its TOML
//! configuration, and a small lake of generated Parquet files with the
//! oracle's answers for random scans of them.
//!
//! Declared by the tests that use it with
//! `#[path = "common/processes.rs"] mod processes;` (beside `mod common;`;
//! the `quiver` command line's tests in `cli/tests` reach both through
//! `../../client/tests/common/`), so the other crates that share `common`
//! need none of its dependencies.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::ParquetReadOptions;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use quiver_protocol::{NodeInfo, ScanRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// TLS material every node serves and trusts.
#[derive(Clone)]
pub struct NodeTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Token files every node of the cluster shares.
#[derive(Clone)]
pub struct NodeTokens {
    pub readers: PathBuf,
    pub admin: PathBuf,
    pub peer: PathBuf,
}

/// How a node is configured beyond its ports.
#[derive(Clone)]
pub struct NodeOptions {
    /// How long a node keeps serving slots it gave up.
    pub grace: String,
    pub memory: String,
    pub chunk: String,
    /// A disk tier of this size in the node's own directory; `None`:
    /// memory only.
    pub disk: Option<String>,
    pub tls: Option<NodeTls>,
    pub tokens: Option<NodeTokens>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            grace: "60s".into(),
            memory: "64MiB".into(),
            chunk: "256KiB".into(),
            disk: None,
            tls: None,
            tokens: None,
        }
    }
}

pub struct Node {
    pub id: String,
    pub url: String,
    pub admin: std::net::SocketAddr,
    config: PathBuf,
    log: PathBuf,
    pub child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("quiver-server"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` first (infra/test.sh does)",
        bin.display()
    );
    bin
}

/// Starts node `n<i>` with its files in `work`, serving `data` as source
/// `lake`, and waits until it is ready.
pub fn start_node(i: usize, work: &Path, data: &Path, options: &NodeOptions) -> Node {
    let flight = quiver_testkit::free_addr().unwrap();
    let admin = quiver_testkit::free_addr().unwrap();
    let id = format!("n{i}");
    let scheme = if options.tls.is_some() {
        "grpc+tls"
    } else {
        "grpc"
    };
    let url = format!("{scheme}://127.0.0.1:{}", flight.port());
    let disk = match &options.disk {
        Some(size) => format!(
            "disk = \"{size}\"\ndisk_dir = \"{}\"\n",
            work.join(format!("{id}-cache")).display()
        ),
        None => "disk = 0\n".into(),
    };
    let mut auth = String::new();
    if let Some(tls) = &options.tls {
        auth += &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\n",
            tls.cert.display(),
            tls.key.display(),
            tls.ca.display()
        );
    }
    if let Some(t) = &options.tokens {
        auth += &format!(
            "tokens_file = \"{}\"\nadmin_token_file = \"{}\"\npeer_token_file = \"{}\"\n",
            t.readers.display(),
            t.admin.display(),
            t.peer.display()
        );
    }
    let config = format!(
        "[server]\nlisten = \"{flight}\"\nadmin_listen = \"{admin}\"\nadvertise = \"{url}\"\n\n\
         [cache]\nmemory = \"{}\"\nchunk = \"{}\"\n{disk}\n\
         [auth]\n{auth}\n\
         [[source]]\nname = \"lake\"\nurl = \"{}\"\n\n\
         [cluster]\nnode_id = \"{id}\"\ntopology = \"{}\"\nreload = \"200ms\"\nhandoff_grace = \"{}\"\n",
        options.memory,
        options.chunk,
        url::Url::from_directory_path(data).unwrap(),
        work.join("topology.json").display(),
        options.grace,
    );
    let path = work.join(format!("{id}.toml"));
    std::fs::write(&path, config).unwrap();
    let log = work.join(format!("{id}.log"));
    let child = spawn(&path, &log);
    let mut node = Node {
        id,
        url,
        admin,
        config: path,
        log,
        child,
    };
    node.wait_ready();
    node
}

/// The server with `config`, logging to `log` (appended, across restarts).
fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(server_binary())
        .arg("--config")
        .arg(config)
        .env("QUIVER_LOG", "warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Node {
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !quiver_testkit::node_ready(self.admin) {
            assert!(
                Instant::now() < deadline,
                "{} did not start: {}",
                self.id,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "{} exited: {}",
                self.id,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and waits for the graceful shutdown (which flushes the
    /// cache) to finish.
    pub fn stop(&mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{} stopped with {status}", self.id);
    }

    /// Starts the node again with the same configuration and ports.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.config, &self.log);
        self.wait_ready();
    }

    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            id: self.id.clone(),
            url: self.url.clone(),
        }
    }

    /// What the node logged so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A Parquet file of `rows` rows (ids, floats and words with nulls) in row
/// groups of 500.
pub fn write_file(path: &Path, rows: i64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("x", DataType::Float64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let words = ["ash", "birch", "cedar", "dogwood", "elm"];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..rows)),
        Arc::new(Float64Array::from_iter((0..rows).map(|_| {
            rng.random_bool(0.9).then(|| rng.random::<f64>() * 100.0)
        }))),
        Arc::new(StringArray::from_iter((0..rows).map(|_| {
            rng.random_bool(0.9)
                .then(|| words[rng.random_range(0..words.len())].to_string())
        }))),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(500))
        .build();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// A random filter and projection over a file of [`write_file`].
pub fn random_request(rng: &mut StdRng, path: &str) -> ScanRequest {
    let atoms = [
        format!("x < {}", rng.random_range(0..100)),
        format!("id >= {}", rng.random_range(0..2_000)),
        "name IS NULL".to_string(),
        format!("name = '{}'", ["ash", "elm", "oak"][rng.random_range(0..3)]),
        "name LIKE 'c%'".to_string(),
    ];
    let a = &atoms[rng.random_range(0..atoms.len())];
    let b = &atoms[rng.random_range(0..atoms.len())];
    let filter = match rng.random_range(0..3) {
        0 => a.clone(),
        1 => format!("{a} AND {b}"),
        _ => format!("{a} OR NOT ({b})"),
    };
    let columns = match rng.random_range(0..3) {
        0 => None,
        1 => Some(vec!["id".to_string(), "name".to_string()]),
        _ => Some(vec!["x".to_string()]),
    };
    ScanRequest {
        source: Some("lake".into()),
        path: Some(path.into()),
        columns,
        filter: Some(filter),
        ..Default::default()
    }
}

/// The oracle's rows for `req` over `file`.
pub async fn reference(file: &Path, req: &ScanRequest) -> Vec<String> {
    let ctx = quiver_testkit::oracle::session();
    ctx.register_parquet("t", file.to_str().unwrap(), ParquetReadOptions::default())
        .await
        .unwrap();
    let cols = req
        .columns
        .as_ref()
        .map(|c| c.join(", "))
        .unwrap_or_else(|| "*".into());
    let sql = format!(
        "SELECT {cols} FROM t WHERE {}",
        req.filter.as_deref().unwrap_or("true")
    );
    crate::common::rows(&ctx.sql(&sql).await.unwrap().collect().await.unwrap())
}

/// The standard output of a command that must have succeeded; its output
/// and errors are the failure message when it did not.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
