//! Hand-offs that meet trouble, with quiver-server processes: a donor
//! SIGKILLed while the new node is importing (the importer turns to the
//! slots' replicas), and donors restarted before the change (they offer
//! the disk tier they recovered). Answers are compared with the oracle, and
//! the new node must be warm afterwards.

mod common;
#[path = "common/processes.rs"]
mod processes;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use arrow_flight::{Action, FlightClient, Ticket};
use common::rows;
use futures::TryStreamExt;
use processes::{reference, start_node, write_file, Node, NodeOptions};
use quiver_client::{AdminClient, ClientConfig, QuiverClient};
use quiver_protocol::{slot_of, ScanRequest, StatsReport, Topology, SLOT_COUNT};

async fn flight(url: &str) -> FlightClient {
    quiver_client::connect::flight_client(url, None)
        .await
        .unwrap()
}

async fn answer(url: &str, kind: &str) -> serde_json::Value {
    let out: Vec<bytes::Bytes> = flight(url)
        .await
        .do_action(Action::new(kind, Vec::new()))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    serde_json::from_slice(&out[0]).unwrap()
}

async fn stats(url: &str) -> StatsReport {
    serde_json::from_value(answer(url, "stats").await).unwrap()
}

fn whole(path: &str) -> ScanRequest {
    ScanRequest {
        source: Some("lake".into()),
        path: Some(path.into()),
        ..Default::default()
    }
}

/// Reads `path` whole from the node at `url`, which must serve it.
async fn read_from(url: &str, path: &str) {
    let mut c = flight(url).await;
    let batches: Vec<_> = c
        .do_get(Ticket::new(whole(path).to_bytes()))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(!batches.is_empty(), "{path} from {url}");
}

/// Waits until `node`'s hand-off for `epoch` has ended, polling every
/// `every`, and calls `watch` on each report while it runs.
async fn handoff_of(
    node: &Node,
    epoch: u64,
    every: Duration,
    mut watch: impl FnMut(&serde_json::Value),
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let h = answer(&node.url, "health").await["handoff"].clone();
        if h["epoch"] == epoch && h["state"] != "running" && h["state"] != "idle" {
            return h;
        }
        watch(&h);
        assert!(
            Instant::now() < deadline,
            "hand-off did not finish: {h}\n{}",
            node.log()
        );
        tokio::time::sleep(every).await;
    }
}

/// Every file read whole through a routing client, against the oracle.
async fn check_all(entry: &str, data: &Path, files: usize) {
    let mut cfg = ClientConfig::new(vec![entry.to_string()]);
    cfg.timeout = Duration::from_secs(30);
    let client = QuiverClient::connect(cfg).await.unwrap();
    for i in 0..files {
        let path = format!("f{i}.parquet");
        let req = whole(&path);
        let scan = client.scan(&req).await.unwrap();
        assert_eq!(
            rows(&scan.batches),
            reference(&data.join(&path), &req).await,
            "{path}"
        );
    }
}

/// Slots `me` gains from `old` to `new`, grouped by their previous owners
/// in the order the importer tries them (as `handoff::gained` does).
fn donors(old: &Topology, new: &Topology, me: &str) -> BTreeMap<Vec<String>, usize> {
    let mut out = BTreeMap::new();
    for slot in 0..SLOT_COUNT {
        let now = new.owners(slot).iter().any(|n| n.id == me);
        let before: Vec<String> = old.owners(slot).iter().map(|n| n.url.clone()).collect();
        if now && !before.is_empty() && !old.owners(slot).iter().any(|n| n.id == me) {
            *out.entry(before).or_insert(0) += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_donor_killed_mid_hand_off_is_replaced_by_a_replica() {
    const FILES: usize = 24;
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..FILES {
        write_file(&data.join(format!("f{i}.parquet")), 150_000, 700 + i as u64);
    }
    // Small chunks make many hand-off reads, so the kill lands while the
    // importer is still at work.
    let options = NodeOptions {
        memory: "256MiB".into(),
        chunk: "64KiB".into(),
        ..Default::default()
    };
    let mut nodes: Vec<Node> = (1..=4)
        .map(|i| start_node(i, work.path(), &data, &options))
        .collect();
    let mut admin = AdminClient::connect(&nodes[0].url, None).await.unwrap();
    let t1 = admin
        .init(nodes[..3].iter().map(Node::info).collect(), 2)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Both owners of every file cache it.
    for i in 0..FILES {
        let path = format!("f{i}.parquet");
        for owner in t1.owners(slot_of("lake", &path)) {
            read_from(&owner.url, &path).await;
        }
    }
    let info4 = nodes[3].info();
    admin.change(|t| t.with_node(info4.clone())).await.unwrap();
    let (_, t3) = admin.change(Topology::rebalance).await.unwrap();
    let groups = donors(&t1, &t3, "n4");
    assert!(groups.len() >= 2, "{groups:?}");
    // The importer takes the groups in order: the primary of the last one
    // dies once the first objects have arrived.
    let victim_url = groups.keys().last().unwrap()[0].clone();
    let victim = nodes.iter().position(|n| n.url == victim_url).unwrap();
    let mut killed_at = None;
    let handoff = {
        let nodes_ref = &mut nodes;
        let newcomer_url = nodes_ref[3].url.clone();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let h = answer(&newcomer_url, "health").await["handoff"].clone();
            if h["epoch"] == t3.epoch && h["state"] != "running" {
                break h;
            }
            if killed_at.is_none() && h["objects_done"].as_u64().unwrap_or(0) >= 1 {
                nodes_ref[victim].kill();
                killed_at = Some(h.clone());
            }
            assert!(Instant::now() < deadline, "hand-off did not finish: {h}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let killed_at =
        killed_at.unwrap_or_else(|| panic!("the hand-off ended before the kill: {handoff}"));
    assert_eq!(handoff["state"], "done", "{handoff}\n{}", nodes[3].log());
    assert_eq!(handoff["objects_done"], handoff["objects"], "{handoff}");
    let errors = handoff["errors"].to_string();
    assert!(
        errors.contains(&victim_url),
        "no error from the killed donor {victim_url} (killed at {killed_at}): {handoff}"
    );
    let moved_bytes = handoff["bytes"].as_u64().unwrap();

    // Everything n4 owns now was handed off by someone: reading it costs
    // the origin next to nothing, and every answer is right.
    let before = stats(&nodes[3].url).await.origin_bytes;
    let mine: Vec<String> = (0..FILES)
        .map(|i| format!("f{i}.parquet"))
        .filter(|p| t3.owners(slot_of("lake", p)).iter().any(|n| n.id == "n4"))
        .collect();
    assert!(!mine.is_empty());
    for p in &mine {
        read_from(&nodes[3].url, p).await;
    }
    let origin = stats(&nodes[3].url).await.origin_bytes - before;
    assert!(
        (origin as f64) < 0.1 * moved_bytes as f64,
        "{origin} origin bytes, {moved_bytes} handed off"
    );
    check_all(&nodes[3].url, &data, FILES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_donor_hands_off_its_recovered_disk_tier() {
    const FILES: usize = 16;
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..FILES {
        write_file(&data.join(format!("f{i}.parquet")), 20_000, 900 + i as u64);
    }
    let donor = NodeOptions {
        disk: Some("128MiB".into()),
        ..Default::default()
    };
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| start_node(i, work.path(), &data, &donor))
        .collect();
    nodes.push(start_node(4, work.path(), &data, &NodeOptions::default()));
    let mut admin = AdminClient::connect(&nodes[0].url, None).await.unwrap();
    let t1 = admin
        .init(nodes[..3].iter().map(Node::info).collect(), 1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    check_all(&nodes[0].url, &data, FILES).await;

    // Every donor restarts: what it knows of the lake is gone, its disk
    // tier is not.
    for n in &mut nodes[..3] {
        n.stop();
        n.restart();
    }
    let mut admin = AdminClient::connect(&nodes[0].url, None).await.unwrap();
    let info4 = nodes[3].info();
    admin.change(|t| t.with_node(info4.clone())).await.unwrap();
    let (_, t3) = admin.change(Topology::rebalance).await.unwrap();
    let moved: Vec<String> = (0..FILES)
        .map(|i| format!("f{i}.parquet"))
        .filter(|p| t3.owners(slot_of("lake", p))[0].id == "n4")
        .collect();
    assert!(!moved.is_empty());
    assert!(t1.epoch < t3.epoch);
    let handoff = handoff_of(&nodes[3], t3.epoch, Duration::from_millis(50), |_| {}).await;
    assert_eq!(handoff["state"], "done", "{handoff}");
    assert_eq!(
        handoff["objects_done"].as_u64(),
        Some(moved.len() as u64),
        "{handoff}"
    );
    let moved_bytes = handoff["bytes"].as_u64().unwrap();
    assert!(moved_bytes > 0, "{handoff}");

    // The hand-off test's bar, now with restarted donors.
    let mut before = (0, 0, 0);
    for n in &nodes {
        let s = stats(&n.url).await;
        before.0 += s.memory.hits + s.disk.hits;
        before.1 += s.misses;
        before.2 += s.origin_bytes;
    }
    check_all(&nodes[3].url, &data, FILES).await;
    let mut after = (0, 0, 0);
    for n in &nodes {
        let s = stats(&n.url).await;
        after.0 += s.memory.hits + s.disk.hits;
        after.1 += s.misses;
        after.2 += s.origin_bytes;
    }
    let (hits, misses, origin) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    let ratio = hits as f64 / (hits + misses) as f64;
    assert!(
        ratio >= 0.9,
        "hit ratio {ratio} ({hits} hits, {misses} misses)"
    );
    assert!(
        (origin as f64) < 0.1 * moved_bytes as f64,
        "{origin} origin bytes, {moved_bytes} handed off"
    );
}
