//! A node planning its maximum refuses another plan at once, asking to
//! retry shortly; the client retries after a pause, so a burst of clients
//! is planned in turn instead of failing.

mod common;

use common::{node_config, row_count, source, tpch_lake, url};
use quiver_client::{ClientConfig, QuiverClient};
use quiver_protocol::ScanRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_plans_beyond_the_nodes_limit_is_planned_in_turn() {
    let lake = tpch_lake(0.01, 2).await;
    let mut config = node_config(vec![source(&lake.s3)]);
    config.limits.max_concurrent_plans = 1;
    let node = quiver_server::RunningNode::start(config).await.unwrap();
    let client = QuiverClient::connect(ClientConfig::new(vec![url(&node)]))
        .await
        .unwrap();
    let req = ScanRequest {
        source: Some("lake".into()),
        path: Some("tpch/orders/".into()),
        columns: Some(vec!["o_orderkey".into()]),
        ..Default::default()
    };
    let want = row_count(&client.collect(&req).await.unwrap().batches);
    assert!(want > 0);
    let reads = (0..24).map(|_| {
        let (client, req) = (client.clone(), req.clone());
        tokio::spawn(async move { client.collect(&req).await })
    });
    for read in futures::future::join_all(reads).await {
        let table = read
            .unwrap()
            .unwrap_or_else(|e| panic!("a plan failed: {e}"));
        assert_eq!(row_count(&table.batches), want);
    }
    node.shutdown().await.unwrap();
    lake.node.shutdown().await.unwrap();
}
