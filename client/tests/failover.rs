//! Three quiver-server processes with replication 2 and a client reading
//! through them: one node is killed (SIGKILL) in the middle of the workload,
//! then a second; every answer must still equal DataFusion reading the file
//! directly, served by a replica and finally by the direct-read fallback.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::ParquetReadOptions;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use quiver_client::{AdminClient, ClientConfig, DirectSource, QuiverClient, Served};
use quiver_protocol::{slot_of, NodeInfo, ScanRequest, Topology};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const FILES: usize = 12;

struct Node {
    id: String,
    url: String,
    admin: std::net::SocketAddr,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("quiver-server"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p quiver-server` first (infra/test.sh does)",
        bin.display()
    );
    bin
}

fn start(i: usize, work: &Path, data: &Path) -> Node {
    start_with(i, work, data, "60s")
}

/// `grace`: how long a node keeps serving slots it gave up.
fn start_with(i: usize, work: &Path, data: &Path, grace: &str) -> Node {
    let flight = quiver_testkit::free_addr().unwrap();
    let admin = quiver_testkit::free_addr().unwrap();
    let id = format!("n{i}");
    let config = format!(
        "[server]\nlisten = \"{flight}\"\nadmin_listen = \"{admin}\"\n\n\
         [cache]\nmemory = \"64MiB\"\ndisk = 0\nchunk = \"256KiB\"\n\n\
         [[source]]\nname = \"lake\"\nurl = \"{}\"\n\n\
         [cluster]\nnode_id = \"{id}\"\ntopology = \"{}\"\nreload = \"200ms\"\nhandoff_grace = \"{grace}\"\n",
        url::Url::from_directory_path(data).unwrap(),
        work.join("topology.json").display(),
    );
    let path = work.join(format!("{id}.toml"));
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(work.join(format!("{id}.log"))).unwrap();
    let child = Command::new(server_binary())
        .arg("--config")
        .arg(&path)
        .env("QUIVER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let node = Node {
        id,
        url: format!("grpc://{flight}"),
        admin,
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !quiver_testkit::node_ready(node.admin) {
        assert!(Instant::now() < deadline, "{} did not start", node.id);
        std::thread::sleep(Duration::from_millis(50));
    }
    node
}

fn write_file(path: &Path, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = 2_000;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("x", DataType::Float64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let words = ["ash", "birch", "cedar", "dogwood", "elm"];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..n)),
        Arc::new(Float64Array::from_iter((0..n).map(|_| {
            rng.random_bool(0.9).then(|| rng.random::<f64>() * 100.0)
        }))),
        Arc::new(StringArray::from_iter((0..n).map(|_| {
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

fn random_request(rng: &mut StdRng, path: &str) -> ScanRequest {
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

fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let f: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                f.iter()
                    .map(|f| f.value(r).to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    out.sort();
    out
}

async fn reference(file: &Path, req: &ScanRequest) -> Vec<String> {
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
    rows(&ctx.sql(&sql).await.unwrap().collect().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_nodes_mid_workload_loses_no_query() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..FILES {
        write_file(&data.join(format!("f{i}.parquet")), i as u64);
    }
    let mut nodes: Vec<Node> = (1..=3).map(|i| start(i, work.path(), &data)).collect();
    let members: Vec<NodeInfo> = nodes
        .iter()
        .map(|n| NodeInfo {
            id: n.id.clone(),
            url: n.url.clone(),
        })
        .collect();
    let mut admin = AdminClient::connect(&nodes[0].url, None).await.unwrap();
    let topology = admin.init(members, 2).await.unwrap();
    // Let every node follow epoch 1 before the client reads.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let mut cfg = ClientConfig::new(vec![nodes[0].url.clone()]);
    cfg.timeout = Duration::from_secs(10);
    cfg.direct = HashMap::from([(
        "lake".to_string(),
        DirectSource {
            root: url::Url::from_directory_path(&data).unwrap(),
            store: Arc::new(object_store::local::LocalFileSystem::new()),
        },
    )]);
    let client = QuiverClient::connect(cfg).await.unwrap();
    assert_eq!(client.topology().epoch, 1);

    let owners = |i: usize| -> Vec<String> {
        topology
            .owners(slot_of("lake", &format!("f{i}.parquet")))
            .iter()
            .map(|n| n.id.clone())
            .collect()
    };
    let mut rng = StdRng::seed_from_u64(11);
    let mut served: HashMap<String, usize> = HashMap::new();
    let rounds = 6;
    for round in 0..rounds {
        if round == 2 {
            // Mid-workload: n2 dies without a chance to say goodbye.
            nodes[1].child.kill().unwrap();
        }
        if round == 4 {
            nodes[2].child.kill().unwrap();
        }
        for i in 0..FILES {
            let path = format!("f{i}.parquet");
            let req = random_request(&mut rng, &path);
            let scan = client
                .scan(&req)
                .await
                .unwrap_or_else(|e| panic!("round {round}, {path} with {:?}: {e}", req.filter));
            assert_eq!(
                rows(&scan.batches),
                reference(&data.join(&path), &req).await,
                "round {round}, {path} with {:?} served by {:?}",
                req.filter,
                scan.served_by
            );
            let o = owners(i);
            let who = match &scan.served_by {
                Served::Node(id) => id.clone(),
                Served::Direct => "direct".into(),
                Served::Presigned => "presigned".into(),
            };
            match round {
                // n2 is down: a live owner serves it.
                2 | 3 => assert!(
                    who != "n2" && o.contains(&who),
                    "round {round}: {path} owned by {o:?} served by {who}"
                ),
                // n2 and n3 are down: n1 if it owns the slot, else the source.
                4 | 5 if o.contains(&"n1".to_string()) => assert_eq!(who, "n1"),
                4 | 5 => assert_eq!(who, "direct"),
                _ => assert!(o.contains(&who), "{path} owned by {o:?} served by {who}"),
            }
            *served.entry(who).or_default() += 1;
        }
    }
    assert!(
        served.get("direct").copied().unwrap_or(0) > 0,
        "{served:?}: some slot should be owned only by n2 and n3"
    );
    assert!(served.get("n3").copied().unwrap_or(0) > 0, "{served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_slot_map_is_refreshed_on_moved() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..FILES {
        write_file(&data.join(format!("f{i}.parquet")), 50 + i as u64);
    }
    // No hand-off grace: a node redirects a slot it gave up at once, so the
    // stale client meets MOVED.
    let nodes: Vec<Node> = (1..=3)
        .map(|i| start_with(i, work.path(), &data, "0s"))
        .collect();
    let info = |n: &Node| NodeInfo {
        id: n.id.clone(),
        url: n.url.clone(),
    };
    let mut admin = AdminClient::connect(&nodes[0].url, None).await.unwrap();
    admin
        .init(vec![info(&nodes[0]), info(&nodes[1])], 1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let client = QuiverClient::connect(ClientConfig::new(vec![nodes[1].url.clone()]))
        .await
        .unwrap();
    assert_eq!(client.topology().epoch, 1);

    // The cluster grows behind the client's back.
    admin
        .change(|t| t.with_node(info(&nodes[2])))
        .await
        .unwrap();
    let (_, grown) = admin.change(Topology::rebalance).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;

    let mut rng = StdRng::seed_from_u64(3);
    let mut to_n3 = 0;
    for i in 0..FILES {
        let path = format!("f{i}.parquet");
        let req = random_request(&mut rng, &path);
        let scan = client.scan(&req).await.unwrap();
        assert_eq!(
            rows(&scan.batches),
            reference(&data.join(&path), &req).await
        );
        let owner = grown.owners(slot_of("lake", &path))[0].id.clone();
        assert_eq!(scan.served_by, Served::Node(owner.clone()), "{path}");
        to_n3 += usize::from(owner == "n3");
    }
    assert!(to_n3 > 0, "some file should have moved to n3");
    assert_eq!(client.topology().epoch, grown.epoch);
}
