//! The client's DoGet timeout is about progress: a scan that keeps sending
//! over a slow link runs as long as it needs on the node that started it,
//! and a scan whose node goes silent fails within about one timeout.
//! Between the client and the node sits the testkit's emulated link, with a
//! bandwidth cap and a switch that stalls it.

mod common;
#[path = "common/processes.rs"]
mod processes;

use std::time::{Duration, Instant};

use arrow_flight::Action;
use common::rows;
use futures::TryStreamExt;
use processes::{reference, write_file};
use quiver_client::{ClientConfig, QuiverClient, Served};
use quiver_protocol::{ScanRequest, StatsReport};
use quiver_server::config::SourceConfig;
use quiver_server::RunningNode;
use quiver_testkit::link::{Link, LinkConfig};

const TIMEOUT: Duration = Duration::from_millis(1500);

async fn scans(node: &RunningNode) -> u64 {
    let out: Vec<bytes::Bytes> = quiver_client::connect::flight_client(&common::url(node), None)
        .await
        .unwrap()
        .do_action(Action::new("stats", Vec::new()))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    serde_json::from_slice::<StatsReport>(&out[0])
        .unwrap()
        .scans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_healthy_scan_finishes_and_a_silent_one_fails_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t/big.parquet");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    write_file(&file, 150_000, 5);
    // The node advertises the link, so the routing client reads through it.
    let listen = quiver_testkit::free_addr().unwrap();
    let link = Link::start(
        listen,
        LinkConfig {
            latency: Duration::ZERO,
            bandwidth: 1 << 20,
        },
    )
    .await
    .unwrap();
    let source = SourceConfig::new(
        "lake",
        url::Url::from_directory_path(dir.path()).unwrap().as_str(),
    );
    let mut config = common::node_config(vec![source]);
    config.server.listen = listen;
    config.server.advertise = Some(format!("grpc://{}", link.addr));
    let node = RunningNode::start(config).await.unwrap();
    let mut cfg = ClientConfig::new(vec![format!("grpc://{}", link.addr)]);
    cfg.timeout = TIMEOUT;
    let client = QuiverClient::connect(cfg).await.unwrap();
    let req = ScanRequest {
        source: Some("lake".into()),
        path: Some("t/big.parquet".into()),
        ..Default::default()
    };

    let before = scans(&node).await;
    let started = Instant::now();
    let scan = client.scan(&req).await.unwrap();
    let took = started.elapsed();
    assert!(
        took > 2 * TIMEOUT,
        "the scan took {took:?}: too fast to show that the timeout is per message"
    );
    assert!(matches!(scan.served_by, Served::Node(_)));
    assert_eq!(rows(&scan.batches), reference(&file, &req).await);
    assert_eq!(scans(&node).await - before, 1, "the scan was run again");

    // The link goes silent a moment into the next scan.
    let faults = link.faults();
    let stalled = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        faults.stall(true);
    };
    let started = Instant::now();
    let (result, ()) = tokio::join!(client.scan(&req), stalled);
    let took = started.elapsed();
    let e = result.unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("sent nothing") || message.contains("no answer within"),
        "{message}"
    );
    assert!(took < Duration::from_millis(500) + 3 * TIMEOUT, "{took:?}");
    faults.stall(false);
    node.shutdown().await.unwrap();
}
