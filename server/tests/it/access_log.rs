//! The opt-in access log records what scans read, per client, in the
//! format `quiver-bench policies --trace FILE` replays.

use std::collections::HashSet;

use quiver_server::RunningNode;

use crate::common::*;

#[derive(serde::Deserialize)]
struct Line {
    t_ms: i64,
    client: String,
    object: String,
    size: u64,
    start: u64,
    end: u64,
}

fn lines(path: &std::path::Path) -> Vec<Line> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_are_logged_per_client_in_the_replay_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_parquet(&data.join("t/a.parquet"), 20_000, 1);
    write_parquet(&data.join("t/b.parquet"), 5_000, 2);
    let size_a = std::fs::metadata(data.join("t/a.parquet")).unwrap().len();
    let log = dir.path().join("access.jsonl");
    let mut config = node_config(vec![local_source("local", &data)], None);
    config.cache.access_log = Some(log.clone());
    let node = RunningNode::start(config).await.unwrap();

    let mut alice = client(&node).await;
    alice.add_header("x-quiver-client", "alice").unwrap();
    let mut req = scan("local", "t/a.parquet");
    req.columns = Some(vec!["id".into(), "price".into()]);
    do_get(&mut alice, &req).await.unwrap();
    // An unnamed client is logged under its address.
    do_get(&mut client(&node).await, &scan("local", "t/b.parquet"))
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let got = loop {
        let got = lines(&log);
        let clients: HashSet<&str> = got.iter().map(|l| l.client.as_str()).collect();
        if clients.len() == 2 {
            break got;
        }
        assert!(std::time::Instant::now() < deadline, "{clients:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let alice_reads: Vec<&Line> = got.iter().filter(|l| l.client == "alice").collect();
    assert!(!alice_reads.is_empty());
    for l in &alice_reads {
        assert_eq!(l.object, "local/t/a.parquet");
        assert_eq!(l.size, size_a);
        assert!(l.start < l.end && l.end <= l.size, "{}..{}", l.start, l.end);
        assert!(l.t_ms > 0);
    }
    // A projection of two of eight columns reads less than the file.
    let read: u64 = alice_reads.iter().map(|l| l.end - l.start).sum();
    assert!(read < size_a, "{read} of {size_a} bytes");
    assert!(got
        .iter()
        .any(|l| l.client == "127.0.0.1" && l.object == "local/t/b.parquet"));
    node.shutdown().await.unwrap();

    // A log that cannot be opened stops the node from starting, saying why.
    let mut config = node_config(vec![local_source("local", &data)], None);
    config.cache.access_log = Some(dir.path().join("no/such/dir/access.jsonl"));
    let err = match RunningNode::start(config).await {
        Ok(_) => panic!("a node started with an access log it cannot open"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cache.access_log"), "{err}");
}
