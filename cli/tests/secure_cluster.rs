//! A cluster set up as on a real network: quiver-server processes serving
//! TLS (certificates made by the test) with reader, admin and peer tokens.
//! The `quiver` CLI builds and grows it, the routing client reads through
//! it against the oracle, a fourth node is warmed by hand-off over TLS with
//! the peer token, and hand-off actions refuse every credential but the
//! peer's.

#[path = "../../client/tests/common/mod.rs"]
mod common;
#[path = "../../client/tests/common/processes.rs"]
mod processes;

use std::path::Path;
use std::time::{Duration, Instant};

use arrow_flight::{Action, FlightClient};
use bytes::Bytes;
use common::rows;
use futures::TryStreamExt;
use processes::{
    ok, random_request, reference, start_node, write_file, Node, NodeOptions, NodeTls, NodeTokens,
};
use quiver_client::{ClientConfig, Connector, Credentials, QuiverClient, Tls};
use quiver_protocol::{slot_of, StatsReport, Topology};
use rand::rngs::StdRng;
use rand::SeedableRng;

const FILES: usize = 16;
const READER: &str = "reader-secret";
const ADMIN: &str = "admin-secret";
const PEER: &str = "peer-secret";

fn connector(ca: &Path, token: Option<&str>) -> Connector {
    Connector {
        tls: Tls {
            ca_file: Some(ca.to_path_buf()),
        },
        credentials: token
            .map(|t| Credentials::Bearer(t.into()))
            .unwrap_or_default(),
    }
}

async fn action(
    client: &mut FlightClient,
    kind: &str,
    body: &[u8],
) -> Result<Vec<Bytes>, tonic::Status> {
    let stream = client
        .do_action(Action::new(kind, body.to_vec()))
        .await
        .map_err(into_status)?;
    stream.try_collect().await.map_err(into_status)
}

fn into_status(e: arrow_flight::error::FlightError) -> tonic::Status {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => tonic::Status::unknown(other.to_string()),
    }
}

/// The `quiver` CLI with `args`, as an operator runs it.
fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .output()
        .unwrap()
}

/// Hits, misses and origin bytes summed over `nodes`.
async fn totals(nodes: &[Node], ca: &Path) -> (u64, u64, u64) {
    let mut sum = (0, 0, 0);
    for n in nodes {
        let mut c = connector(ca, Some(READER))
            .flight_client(&n.url)
            .await
            .unwrap();
        let out = action(&mut c, "stats", b"").await.unwrap();
        let s: StatsReport = serde_json::from_slice(&out[0]).unwrap();
        sum.0 += s.memory.hits + s.disk.hits;
        sum.1 += s.misses;
        sum.2 += s.origin_bytes;
    }
    sum
}

/// Every file through a fresh routing client (so it starts from the
/// current topology), compared with the oracle: whole with seed 0 (which
/// caches every byte), else with a random filter and projection.
async fn workload(entry: &str, ca: &Path, data: &Path, seed: u64) {
    let mut cfg = ClientConfig::new(vec![entry.to_string()]);
    cfg.connector = connector(ca, Some(READER));
    let client = QuiverClient::connect(cfg).await.unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..FILES {
        let path = format!("f{i}.parquet");
        let mut req = random_request(&mut rng, &path);
        if seed == 0 {
            (req.columns, req.filter) = (None, None);
        }
        let scan = client.scan(&req).await.unwrap();
        assert_eq!(
            rows(&scan.batches),
            reference(&data.join(&path), &req).await,
            "{path} with {:?}",
            req.filter
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_cluster_with_tokens_routes_hands_off_and_runs_the_cli() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (ca, cert, key) = quiver_testkit::tls::certificates(dir);
    let ca_arg = ca.to_str().unwrap().to_string();
    let tokens = NodeTokens {
        readers: dir.join("readers"),
        admin: dir.join("admin"),
        peer: dir.join("peer"),
    };
    std::fs::write(&tokens.readers, format!("{READER}\n")).unwrap();
    std::fs::write(&tokens.admin, format!("{ADMIN}\n")).unwrap();
    std::fs::write(&tokens.peer, format!("{PEER}\n")).unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..FILES {
        write_file(&data.join(format!("f{i}.parquet")), 20_000, 300 + i as u64);
    }
    let options = NodeOptions {
        tls: Some(NodeTls { ca, cert, key }),
        tokens: Some(tokens.clone()),
        ..Default::default()
    };
    let ca = options.tls.as_ref().unwrap().ca.clone();
    let nodes: Vec<Node> = (1..=4)
        .map(|i| start_node(i, dir, &data, &options))
        .collect();
    let spec = |n: &Node| format!("{}={}", n.id, n.url);
    let admin_args = |url: &str| {
        vec![
            "--endpoint".to_string(),
            url.to_string(),
            "--tls-ca".into(),
            ca_arg.clone(),
            "--admin-token-file".into(),
            tokens.admin.to_str().unwrap().to_string(),
        ]
    };
    let run = |base: &[String], rest: &[&str]| {
        let mut args: Vec<&str> = base.iter().map(String::as_str).collect();
        args.extend_from_slice(rest);
        cli(&args)
    };

    // A reader's token cannot change membership; the admin token can.
    let members = [spec(&nodes[0]), spec(&nodes[1]), spec(&nodes[2])].join(",");
    let refused = cli(&[
        "--endpoint",
        &nodes[0].url,
        "--tls-ca",
        &ca_arg,
        "--token",
        READER,
        "cluster",
        "init",
        "--nodes",
        &members,
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("admin token"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    ok(&run(
        &admin_args(&nodes[0].url),
        &["cluster", "init", "--nodes", &members],
    ));
    tokio::time::sleep(Duration::from_millis(800)).await;

    workload(&nodes[0].url, &ca, &data, 0).await;
    workload(&nodes[1].url, &ca, &data, 2).await;

    // Grow the cluster through another node; n4 warms from its peers.
    let before = totals(&nodes, &ca).await;
    ok(&run(
        &admin_args(&nodes[2].url),
        &["cluster", "add-node", "--id", "n4", "--url", &nodes[3].url],
    ));
    ok(&run(&admin_args(&nodes[2].url), &["cluster", "rebalance"]));
    let shown = ok(&run(
        &admin_args(&nodes[3].url),
        &["cluster", "show", "--json"],
    ));
    let t: Topology = serde_json::from_str(&shown).unwrap();
    assert_eq!((t.epoch, t.nodes.len()), (3, 4));
    let moved: Vec<String> = (0..FILES)
        .map(|i| format!("f{i}.parquet"))
        .filter(|p| t.owners(slot_of("lake", p))[0].id == "n4")
        .collect();
    assert!(!moved.is_empty(), "no file moves to n4");

    let mut newcomer = connector(&ca, Some(READER))
        .flight_client(&nodes[3].url)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let handoff = loop {
        let out = action(&mut newcomer, "health", b"").await.unwrap();
        let h: serde_json::Value = serde_json::from_slice(&out[0]).unwrap();
        let h = h["handoff"].clone();
        if h["epoch"] == 3 && (h["state"] == "done" || h["state"] == "failed") {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "hand-off did not finish: {h}\n{}",
            nodes[3].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(handoff["state"], "done", "{handoff}\n{}", nodes[3].log());
    assert_eq!(
        handoff["objects_done"].as_u64(),
        Some(moved.len() as u64),
        "{handoff}"
    );
    assert_eq!(handoff["chunks_rejected"], 0, "{handoff}");
    let moved_bytes = handoff["bytes"].as_u64().unwrap();
    assert!(moved_bytes > 0, "{handoff}");

    workload(&nodes[3].url, &ca, &data, 3).await;
    let after = totals(&nodes, &ca).await;
    let (hits, misses, origin) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    let hit_ratio = hits as f64 / (hits + misses) as f64;
    assert!(
        hit_ratio >= 0.9,
        "hit ratio {hit_ratio} ({hits} hits, {misses} misses)"
    );
    assert!(
        (origin as f64) < 0.1 * moved_bytes as f64,
        "{origin} origin bytes after the hand-off, {moved_bytes} bytes moved"
    );

    // The CLI reads over TLS with the reader's token.
    let csv = ok(&cli(&[
        "--endpoint",
        &nodes[3].url,
        "--tls-ca",
        &ca_arg,
        "--token",
        READER,
        "query",
        &format!("lake/{}", moved[0]),
        "--columns",
        "id",
        "--format",
        "csv",
    ]));
    assert_eq!(csv.lines().count(), 20_001, "{csv}");

    // Hand-off actions take the peer token only.
    let list = br#"{"slots": [[0, 16383]]}"#;
    for (token, code) in [
        (Some(READER), tonic::Code::PermissionDenied),
        (None, tonic::Code::Unauthenticated),
        (Some("wrong"), tonic::Code::Unauthenticated),
    ] {
        let mut c = connector(&ca, token)
            .flight_client(&nodes[0].url)
            .await
            .unwrap();
        for kind in ["handoff-list", "handoff-read", "warm"] {
            let e = action(&mut c, kind, list).await.unwrap_err();
            assert_eq!(e.code(), code, "{kind} with {token:?}: {e}");
        }
    }
    let mut peer = connector(&ca, Some(PEER))
        .flight_client(&nodes[0].url)
        .await
        .unwrap();
    let listed = action(&mut peer, "handoff-list", list).await.unwrap();
    let objects: Vec<serde_json::Value> = serde_json::from_slice(&listed[0]).unwrap();
    assert!(!objects.is_empty());
    // The node still serves readers afterwards.
    workload(&nodes[0].url, &ca, &data, 4).await;

    // No clear text: a plain client cannot talk to a TLS node.
    let plain = nodes[0].url.replace("grpc+tls://", "grpc://");
    let mut cfg = ClientConfig::new(vec![plain]);
    cfg.timeout = Duration::from_secs(5);
    cfg.connector.credentials = Credentials::Bearer(READER.into());
    assert!(QuiverClient::connect(cfg).await.is_err());
}
