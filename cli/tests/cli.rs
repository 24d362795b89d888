//! The `quiver cluster` commands against three (then four) real nodes that
//! share a topology file and require the admin token for changes.

use std::process::Output;
use std::time::Duration;

use quiver_protocol::{Topology, SLOT_COUNT};
use quiver_server::config::{ByteSize, Config, SourceConfig, Span};
use quiver_server::RunningNode;

const TOKEN: &str = "s3cret-admin";

async fn node(i: usize, dir: &std::path::Path) -> RunningNode {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.admin_listen = "127.0.0.1:0".parse().unwrap();
    c.cache.memory = ByteSize(16 << 20);
    c.cache.chunk = ByteSize(256 << 10);
    c.cache.disk = ByteSize(0);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    c.sources = vec![SourceConfig::new(
        "lake",
        url::Url::from_directory_path(&data).unwrap().as_str(),
    )];
    c.cluster.node_id = Some(format!("n{i}"));
    c.cluster.topology = Some(dir.join("topology.json").display().to_string());
    c.cluster.reload = Span(Duration::from_millis(200));
    c.auth.admin_token_file = Some(dir.join("admin-token"));
    RunningNode::start(c).await.unwrap()
}

fn url(n: &RunningNode) -> String {
    format!("grpc://{}", n.flight_addr)
}

async fn quiver(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(&args)
            .env_remove("QUIVER_NODE")
            .env_remove("QUIVER_ADMIN_TOKEN_FILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

async fn ok(args: &[&str]) -> String {
    let out = quiver(args.iter().map(|s| s.to_string()).collect()).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "quiver {args:?} failed: {stderr}");
    stdout
}

async fn fails(args: &[&str]) -> String {
    let out = quiver(args.iter().map(|s| s.to_string()).collect()).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "quiver {args:?} should fail");
    assert!(stderr.starts_with("quiver: "), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_commands_grow_and_shrink_the_topology() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin-token"), TOKEN).unwrap();
    let token_file = dir.path().join("token-for-cli");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let token = token_file.to_str().unwrap().to_string();
    let mut nodes = Vec::new();
    for i in 1..=4 {
        nodes.push(node(i, dir.path()).await);
    }
    let first = url(&nodes[0]);
    let members = format!(
        "n1={},n2={},n3={}",
        url(&nodes[0]),
        url(&nodes[1]),
        url(&nodes[2])
    );

    assert!(ok(&["cluster", "show", "--node", &first])
        .await
        .starts_with("epoch 0"));
    // Changes need the admin token.
    let err = fails(&["cluster", "init", "--node", &first, "--nodes", &members]).await;
    assert!(err.contains("token"), "{err}");
    // Bad input is refused with a clear message before anything is sent.
    let err = fails(&[
        "cluster",
        "init",
        "--node",
        &first,
        "--admin-token-file",
        &token,
        "--nodes",
        "n1",
    ])
    .await;
    assert!(err.contains("is not ID=URL"), "{err}");
    let err = fails(&["cluster", "show", "--node", "ftp://127.0.0.1:1"]).await;
    assert!(err.contains("bad node URL"), "{err}");
    let err = fails(&[
        "cluster",
        "init",
        "--node",
        &first,
        "--admin-token-file",
        &token,
        "--nodes",
        &members,
        "--replication",
        "0",
    ])
    .await;
    assert!(err.contains("replication"), "{err}");

    let out = ok(&[
        "cluster",
        "init",
        "--node",
        &first,
        "--admin-token-file",
        &token,
        "--nodes",
        &members,
        "--replication",
        "2",
    ])
    .await;
    assert!(
        out.starts_with("initialised the cluster at epoch 1"),
        "{out}"
    );
    let err = fails(&[
        "cluster",
        "init",
        "--node",
        &first,
        "--admin-token-file",
        &token,
        "--nodes",
        &members,
    ])
    .await;
    assert!(err.contains("already initialised"), "{err}");

    // Grow: add n4 (through another node), then rebalance.
    let second = url(&nodes[1]);
    let n4 = url(&nodes[3]);
    let out = ok(&[
        "cluster",
        "add-node",
        "--node",
        &second,
        "--admin-token-file",
        &token,
        "--id",
        "n4",
        "--url",
        &n4,
    ])
    .await;
    assert!(out.contains("added n4 at epoch 2"), "{out}");
    let out = ok(&[
        "cluster",
        "rebalance",
        "--node",
        &second,
        "--admin-token-file",
        &token,
    ])
    .await;
    assert!(
        out.starts_with("rebalanced at epoch 3; 4096 slots moved"),
        "{out}"
    );
    // Every node follows within its reload interval.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let t = loop {
        let json = ok(&["cluster", "show", "--node", &n4, "--json"]).await;
        let t: Topology = serde_json::from_str(&json).unwrap();
        if t.epoch == 3 || std::time::Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((t.epoch, t.nodes.len(), t.replication), (3, 4, 2));
    for n in &t.nodes {
        let owned = (0..SLOT_COUNT)
            .filter(|&s| t.owners(s)[0].id == n.id)
            .count();
        assert_eq!(owned, 4096, "{}", n.id);
    }

    // Shrink: remove n2; its slots spread over the rest.
    let out = ok(&[
        "cluster",
        "remove-node",
        "--node",
        &first,
        "--admin-token-file",
        &token,
        "--id",
        "n2",
    ])
    .await;
    assert!(
        out.contains("removed n2 at epoch 4; 4096 slots moved"),
        "{out}"
    );
    let err = fails(&[
        "cluster",
        "remove-node",
        "--node",
        &first,
        "--admin-token-file",
        &token,
        "--id",
        "n2",
    ])
    .await;
    assert!(err.contains("no node \"n2\""), "{err}");
    let shown = ok(&["cluster", "show", "--node", &first]).await;
    assert!(
        shown.starts_with("epoch 4, replication 2, 3 node(s)"),
        "{shown}"
    );
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}
