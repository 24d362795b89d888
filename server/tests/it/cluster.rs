//! Three nodes on loopback sharing one topology: routing, MOVED redirects,
//! compare-and-swap updates, and the topologies a node must refuse.

use std::path::Path;
use std::time::{Duration, Instant};

use arrow_flight::FlightClient;
use quiver_protocol::{slot_of, ClusterUpdate, NodeInfo, Topology};
use quiver_server::RunningNode;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::common::*;

const SOURCE: &str = "lake";

struct Cluster {
    nodes: Vec<RunningNode>,
    _dir: tempfile::TempDir,
}

fn url(node: &RunningNode) -> String {
    format!("grpc://{}", node.flight_addr)
}

async fn topology(client: &mut FlightClient) -> Topology {
    let out = action(client, "cluster-shards", b"").await.unwrap();
    serde_json::from_slice(&out[0]).unwrap()
}

async fn health(client: &mut FlightClient) -> serde_json::Value {
    let out = action(client, "health", b"").await.unwrap();
    serde_json::from_slice(&out[0]).unwrap()
}

async fn update(
    client: &mut FlightClient,
    expected: u64,
    t: &Topology,
) -> Result<Topology, tonic::Status> {
    let body = serde_json::to_vec(&ClusterUpdate {
        expected_epoch: expected,
        topology: t.clone(),
    })
    .unwrap();
    let out = action(client, "cluster-update", &body).await?;
    Ok(serde_json::from_slice(&out[0]).unwrap())
}

/// Waits until every node follows `epoch` (they re-read every 200 ms).
async fn converge(cluster: &Cluster, epoch: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in &cluster.nodes {
        let mut c = client(node).await;
        loop {
            let t = topology(&mut c).await;
            if t.epoch == epoch {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node stuck at epoch {} waiting for {epoch}",
                t.epoch
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Lets every node re-read the document at least twice.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

/// Three nodes serving one local directory, with the topology in `doc`
/// (a file path or an s3:// URL) and `sources` as extra sources.
async fn start(
    data: &Path,
    doc: &str,
    extra: Vec<quiver_server::config::SourceConfig>,
) -> Vec<RunningNode> {
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let mut sources = vec![local_source(SOURCE, data)];
        sources.extend(extra.clone());
        let mut c = node_config(sources, None);
        c.cluster.node_id = Some(format!("n{i}"));
        c.cluster.topology = Some(doc.to_string());
        c.cluster.reload = quiver_server::config::Span(Duration::from_millis(200));
        nodes.push(RunningNode::start(c).await.unwrap());
    }
    nodes
}

fn members(nodes: &[RunningNode]) -> Vec<NodeInfo> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| NodeInfo {
            id: format!("n{}", i + 1),
            url: url(n),
        })
        .collect()
}

async fn file_cluster(files: usize) -> (Cluster, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(data.join("t")).unwrap();
    for i in 0..files {
        write_parquet(&data.join(format!("t/part-{i}.parquet")), 3_000, i as u64);
    }
    let doc = dir.path().join("cluster/topology.json");
    let nodes = start(&data, doc.to_str().unwrap(), vec![]).await;
    (Cluster { nodes, _dir: dir }, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_route_redirect_and_match_datafusion() {
    let (cluster, data) = file_cluster(12).await;
    let mut first = client(&cluster.nodes[0]).await;
    // Before init every node runs alone at epoch 0.
    assert_eq!(topology(&mut first).await.epoch, 0);
    let t = Topology::initial(members(&cluster.nodes), 2).unwrap();
    let stored = update(&mut first, 0, &t).await.unwrap();
    assert_eq!(stored, t);
    converge(&cluster, 1).await;

    let mut rng = StdRng::seed_from_u64(7);
    let mut primaries = std::collections::HashSet::new();
    for i in 0..12 {
        let path = format!("t/part-{i}.parquet");
        let owners: Vec<String> = t
            .owners(slot_of(SOURCE, &path))
            .iter()
            .map(|n| n.url.clone())
            .collect();
        primaries.insert(owners[0].clone());

        // Any node answers GetFlightInfo with the owners, primary first.
        let asked = &cluster.nodes[i % 3];
        let info = flight_info(&mut client(asked).await, &scan(SOURCE, &path))
            .await
            .unwrap();
        let locations: Vec<String> = info.endpoint[0]
            .location
            .iter()
            .map(|l| l.uri.clone())
            .collect();
        assert_eq!(locations, owners, "{path}");

        // Every owner serves it, and the answer matches DataFusion.
        let columns = random_columns(&mut rng);
        let filter = random_filter(&mut rng, 2);
        let mut req = scan(SOURCE, &path);
        req.columns = columns.clone();
        req.filter = Some(filter.clone());
        let expected = rows(&reference(&data.join(&path), columns.as_deref(), Some(&filter)).await);
        for owner in &owners {
            let got = do_get(&mut client_at(owner).await, &req).await.unwrap();
            assert_eq!(rows(&got), expected, "{path} from {owner} with {filter}");
        }

        // The node that does not own it redirects to the primary.
        let stranger = cluster
            .nodes
            .iter()
            .find(|n| !owners.contains(&url(n)))
            .unwrap();
        let err = do_get(&mut client(stranger).await, &req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        let slot = slot_of(SOURCE, &path);
        assert_eq!(err.message(), format!("MOVED {slot} 1 {}", owners[0]));
        let redirected = err.message().rsplit(' ').next().unwrap().to_string();
        let got = do_get(&mut client_at(&redirected).await, &req)
            .await
            .unwrap();
        assert_eq!(rows(&got), expected);
    }
    assert!(
        primaries.len() >= 2,
        "the files should spread over the nodes"
    );
    for n in cluster.nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_malformed_and_conflicting_topologies_are_refused() {
    let (cluster, _data) = file_cluster(1).await;
    let doc = cluster._dir.path().join("cluster/topology.json");
    let mut c = client(&cluster.nodes[1]).await;
    let t1 = Topology::initial(members(&cluster.nodes), 1).unwrap();
    update(&mut c, 0, &t1).await.unwrap();
    let t2 = t1.rebalance().unwrap();
    update(&mut c, 1, &t2).await.unwrap();
    converge(&cluster, 2).await;

    // A compare-and-swap against an old epoch loses and says where it is.
    let err = update(&mut c, 1, &t2.rebalance().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().starts_with("EPOCH 2"), "{}", err.message());
    // An invalid document is refused before anything is written.
    let mut broken = t2.rebalance().unwrap();
    broken.slots.pop();
    let err = update(&mut c, 2, &broken).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = action(&mut c, "cluster-update", b"{\"topology\": 1}")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // Written behind the nodes' backs: a stale epoch, garbage, a document
    // with a hole. Every node keeps epoch 2 and says why.
    let mut stale = t1.clone();
    stale.epoch = 1;
    let mut holed = t2.rebalance().unwrap();
    holed.epoch = 9;
    holed.slots.pop();
    for (bytes, reason) in [
        (serde_json::to_vec(&stale).unwrap(), "older"),
        (b"{\"epoch\": 7, \"nodes\": [".to_vec(), "malformed"),
        (serde_json::to_vec(&holed).unwrap(), "have no owner"),
    ] {
        std::fs::write(&doc, &bytes).unwrap();
        settle().await;
        for node in &cluster.nodes {
            let mut c = client(node).await;
            assert_eq!(topology(&mut c).await.epoch, 2);
            let h = health(&mut c).await;
            let error = h["cluster"]["error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(error.contains(reason), "{reason}: {error}");
        }
        // Still serving, from the owner the last good topology names.
        let owner = &t2.owners(slot_of(SOURCE, "t/part-0.parquet"))[0].url;
        do_get(
            &mut client_at(owner).await,
            &scan(SOURCE, "t/part-0.parquet"),
        )
        .await
        .unwrap();
    }

    // A good, newer document is adopted and clears the error; a node left
    // out of it owns nothing and redirects every read.
    let t3 = t2.without_node("n3").unwrap();
    let mut t3_direct = t3.clone();
    t3_direct.epoch = 3;
    std::fs::write(&doc, serde_json::to_vec(&t3_direct).unwrap()).unwrap();
    converge(&cluster, 3).await;
    let mut third = client(&cluster.nodes[2]).await;
    let h = health(&mut third).await;
    assert_eq!(h["cluster"]["in_topology"], false);
    assert!(h["cluster"]["error"].is_null(), "{h}");
    let err = do_get(&mut third, &scan(SOURCE, "t/part-0.parquet"))
        .await
        .unwrap_err();
    assert!(err.message().starts_with("MOVED "), "{}", err.message());
    for n in cluster.nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn topology_in_s3_is_updated_by_compare_and_swap() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("t")).unwrap();
    write_parquet(&data.join("t/part-0.parquet"), 1_000, 1);
    let doc = format!("s3://{BUCKET}/.quiver/topology.json");
    let nodes = start(&data, &doc, vec![s3.source("s3lake")]).await;
    let cluster = Cluster { nodes, _dir: dir };
    let mut a = client(&cluster.nodes[0]).await;
    let mut b = client(&cluster.nodes[2]).await;

    let t1 = Topology::initial(members(&cluster.nodes), 3).unwrap();
    update(&mut a, 0, &t1).await.unwrap();
    // A second init loses: the object exists now.
    let err = update(&mut b, 0, &t1).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    converge(&cluster, 1).await;
    // Both operators compute from epoch 1; only the first write lands.
    let from_a = t1.without_node("n2").unwrap();
    let from_b = t1.rebalance().unwrap();
    update(&mut a, 1, &from_a).await.unwrap();
    let err = update(&mut b, 1, &from_b).await.unwrap_err();
    assert!(err.message().starts_with("EPOCH 2"), "{}", err.message());
    converge(&cluster, 2).await;
    assert_eq!(topology(&mut b).await, from_a);
    for n in cluster.nodes {
        n.shutdown().await.unwrap();
    }
    drop(s3);
}

/// Hits, misses and origin bytes summed over `nodes`.
async fn totals(nodes: &[RunningNode]) -> (u64, u64, u64) {
    let mut sum = (0, 0, 0);
    for n in nodes {
        let s = stats(&mut client(n).await).await;
        sum.0 += s.memory.hits + s.disk.hits;
        sum.1 += s.misses;
        sum.2 += s.origin_bytes;
    }
    sum
}

/// Reads every file whole from its primary owner under `t`.
async fn workload(t: &Topology, files: usize) {
    for i in 0..files {
        let path = format!("t/part-{i}.parquet");
        let owner = &t.owners(slot_of(SOURCE, &path))[0].url;
        do_get(&mut client_at(owner).await, &scan(SOURCE, &path))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_node_warms_from_its_peers_not_from_s3() {
    const FILES: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("t")).unwrap();
    for i in 0..FILES {
        write_parquet(
            &data.join(format!("t/part-{i}.parquet")),
            20_000,
            100 + i as u64,
        );
    }
    let doc = dir.path().join("topology.json");
    let mut nodes = start(&data, doc.to_str().unwrap(), vec![]).await;
    let mut c = node_config(vec![local_source(SOURCE, &data)], None);
    c.cluster.node_id = Some("n4".into());
    c.cluster.topology = Some(doc.to_str().unwrap().to_string());
    c.cluster.reload = quiver_server::config::Span(Duration::from_millis(200));
    nodes.push(RunningNode::start(c).await.unwrap());
    let cluster = Cluster { nodes, _dir: dir };

    let mut admin = client(&cluster.nodes[0]).await;
    let t1 = Topology::initial(members(&cluster.nodes[..3]), 1).unwrap();
    update(&mut admin, 0, &t1).await.unwrap();
    converge(&cluster, 1).await;
    workload(&t1, FILES).await;
    workload(&t1, FILES).await;

    let before = totals(&cluster.nodes).await;
    let all = members(&cluster.nodes);
    let t2 = t1.with_node(all[3].clone()).unwrap();
    update(&mut admin, 1, &t2).await.unwrap();
    let t3 = t2.rebalance().unwrap();
    update(&mut admin, 2, &t3).await.unwrap();
    converge(&cluster, 3).await;

    // The previous owner still serves what it gave up, until n4 reports
    // that slot's hand-off done; then it points at n4.
    let moved: Vec<String> = (0..FILES)
        .map(|i| format!("t/part-{i}.parquet"))
        .filter(|p| t3.owners(slot_of(SOURCE, p))[0].id == "n4")
        .collect();
    assert!(!moved.is_empty(), "some files should move to n4");
    let old_owner = &t1.owners(slot_of(SOURCE, &moved[0]))[0].url;
    let mut newcomer = client(&cluster.nodes[3]).await;
    if let Err(e) = do_get(&mut client_at(old_owner).await, &scan(SOURCE, &moved[0])).await {
        let want = format!("MOVED {} 3 {}", slot_of(SOURCE, &moved[0]), all[3].url);
        assert!(e.message().starts_with(&want), "{}", e.message());
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let handoff = loop {
        let h = health(&mut newcomer).await["handoff"].clone();
        if h["state"] == "done" {
            break h;
        }
        assert!(h["state"] != "failed", "{h}");
        assert!(Instant::now() < deadline, "hand-off did not finish: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let moved_bytes = handoff["bytes"].as_u64().unwrap();
    assert!(moved_bytes > 0, "{handoff}");
    assert_eq!(
        handoff["objects_done"].as_u64(),
        Some(moved.len() as u64),
        "{handoff}"
    );

    workload(&t3, FILES).await;
    let after = totals(&cluster.nodes).await;
    let (hits, misses, origin) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    let hit_ratio = hits as f64 / (hits + misses) as f64;
    assert!(
        hit_ratio >= 0.9,
        "hit ratio {hit_ratio} ({hits} hits, {misses} misses)"
    );
    assert!(
        (origin as f64) < 0.1 * moved_bytes as f64,
        "{origin} origin bytes during the hand-off, {moved_bytes} bytes moved"
    );
    for n in cluster.nodes {
        n.shutdown().await.unwrap();
    }
}

/// Two nodes serving `data`, configured by `tune`: n1 alone reads every
/// one of `files` once, then n2 joins and takes its share (epoch 2, which
/// is returned once both follow it).
async fn grow_one_to_two(
    dir: tempfile::TempDir,
    data: &Path,
    files: &[String],
    tune: impl Fn(&mut quiver_server::config::Config),
) -> (Cluster, Topology) {
    let doc = dir.path().join("topology.json");
    let mut nodes = Vec::new();
    for id in ["n1", "n2"] {
        let mut c = node_config(vec![local_source(SOURCE, data)], None);
        c.cluster.node_id = Some(id.into());
        c.cluster.topology = Some(doc.to_str().unwrap().to_string());
        c.cluster.reload = quiver_server::config::Span(Duration::from_millis(200));
        tune(&mut c);
        nodes.push(RunningNode::start(c).await.unwrap());
    }
    let cluster = Cluster { nodes, _dir: dir };
    let all = members(&cluster.nodes);
    let mut admin = client(&cluster.nodes[0]).await;
    let t1 = Topology::initial(all[..1].to_vec(), 1).unwrap();
    update(&mut admin, 0, &t1).await.unwrap();
    converge(&cluster, 1).await;
    for f in files {
        do_get(&mut admin, &scan(SOURCE, f)).await.unwrap();
    }
    let t2 = t1.with_node(all[1].clone()).unwrap().rebalance().unwrap();
    let t2 = Topology { epoch: 2, ..t2 };
    update(&mut admin, 1, &t2).await.unwrap();
    converge(&cluster, 2).await;
    (cluster, t2)
}

/// Chunks of 8 MiB, the largest `cache.chunk` allows, travel in one
/// `handoff-read` frame each: more than gRPC's default 4 MiB message limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hand_off_moves_8_mib_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files: Vec<String> = (0..4).map(|i| format!("t/big-{i}.parquet")).collect();
    for (i, f) in files.iter().enumerate() {
        write_parquet(&data.join(f), 300_000, 40 + i as u64);
    }
    let size = std::fs::metadata(data.join(&files[0])).unwrap().len();
    assert!(size > 8 << 20, "a file is only {size} bytes");
    let (cluster, t2) = grow_one_to_two(dir, &data, &files, |c| {
        c.cache.chunk = quiver_server::config::ByteSize(8 << 20);
        c.cache.memory = quiver_server::config::ByteSize(512 << 20);
    })
    .await;
    let moved: Vec<&String> = files
        .iter()
        .filter(|f| t2.owners(slot_of(SOURCE, f))[0].id == "n2")
        .collect();
    assert!(!moved.is_empty(), "no file moves to n2");
    let mut newcomer = client(&cluster.nodes[1]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let handoff = loop {
        let h = health(&mut newcomer).await["handoff"].clone();
        if h["state"] == "done" || h["state"] == "failed" {
            break h;
        }
        assert!(Instant::now() < deadline, "hand-off did not finish: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(handoff["state"], "done", "{handoff}");
    assert!(handoff["bytes"].as_u64().unwrap() > 4 << 20, "{handoff}");
    // The moved files are served from what was handed off.
    let before = stats(&mut newcomer).await.origin_bytes;
    for f in &moved {
        let got = do_get(&mut newcomer, &scan(SOURCE, f)).await.unwrap();
        let want = reference(&data.join(f), None, None).await;
        assert_eq!(rows(&got), rows(&want), "{f}");
    }
    assert_eq!(stats(&mut newcomer).await.origin_bytes, before);
    for n in cluster.nodes {
        n.shutdown().await.unwrap();
    }
}

/// Waits for `node`'s hand-off to end, and returns its `health` entry.
async fn handoff_finished(node: &RunningNode) -> serde_json::Value {
    let mut c = client(node).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = health(&mut c).await["handoff"].clone();
        if h["state"] == "done" || h["state"] == "failed" {
            return h;
        }
        assert!(Instant::now() < deadline, "hand-off did not finish: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The old owner serves a moved slot only until its new owner reports the
/// hand-off done, well inside the grace period; after that, a chunk the new
/// owner lacks comes from the old owner's cache, not from the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_finished_hand_off_ends_the_old_owners_window_and_misses_ask_it_first() {
    const FILES: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files: Vec<String> = (0..FILES).map(|i| format!("t/part-{i}.parquet")).collect();
    for (i, f) in files.iter().enumerate() {
        write_parquet(&data.join(f), 20_000, 300 + i as u64);
    }
    let (cluster, t2) = grow_one_to_two(dir, &data, &files, |c| {
        // Far longer than the test: only the report can end the window.
        c.cluster.handoff_grace = quiver_server::config::Span(Duration::from_secs(600));
    })
    .await;
    let all = members(&cluster.nodes);
    let mut old = client(&cluster.nodes[0]).await;
    let (moved, kept): (Vec<&String>, Vec<&String>) = files
        .iter()
        .partition(|f| t2.owners(slot_of(SOURCE, f))[0].id == "n2");
    assert!(!moved.is_empty() && !kept.is_empty(), "{moved:?} {kept:?}");
    let handoff = handoff_finished(&cluster.nodes[1]).await;
    assert_eq!(handoff["state"], "done", "{handoff}");

    // The report reached n1, which now redirects what it gave up and still
    // serves what it kept.
    let err = do_get(&mut old, &scan(SOURCE, moved[0])).await.unwrap_err();
    assert!(
        err.message().starts_with(&format!(
            "MOVED {} 2 {}",
            slot_of(SOURCE, moved[0]),
            all[1].url
        )),
        "{}",
        err.message()
    );
    do_get(&mut old, &scan(SOURCE, kept[0])).await.unwrap();

    // n2 drops what it imported; reading it again asks n1 first.
    let mut newcomer = client(&cluster.nodes[1]).await;
    for f in &moved {
        let body = format!(r#"{{"source": "{SOURCE}", "path": "{f}"}}"#);
        action(&mut newcomer, "evict", body.as_bytes())
            .await
            .unwrap();
    }
    let before = stats(&mut newcomer).await;
    for f in &moved {
        let got = do_get(&mut newcomer, &scan(SOURCE, f)).await.unwrap();
        let want = reference(&data.join(f), None, None).await;
        assert_eq!(rows(&got), rows(&want), "{f}");
    }
    let after = stats(&mut newcomer).await;
    assert!(after.misses > before.misses, "nothing was evicted");
    assert_eq!(
        after.origin_bytes, before.origin_bytes,
        "the misses went to the origin, not to the previous owner"
    );
    for n in cluster.nodes {
        n.shutdown().await.unwrap();
    }
}

/// `handoff-done` accepts only reports of slots the reporter owns, at an
/// epoch this node knows, and leaves the node serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_done_refuses_reports_it_cannot_trust() {
    let (cluster, _data) = file_cluster(1).await;
    let mut admin = client(&cluster.nodes[0]).await;
    let all = members(&cluster.nodes);
    let t1 = Topology::initial(all[..2].to_vec(), 1).unwrap();
    update(&mut admin, 0, &t1).await.unwrap();
    converge(&cluster, 1).await;
    let n2_slot = (0..quiver_protocol::SLOT_COUNT)
        .find(|&s| t1.owners(s)[0].id == "n2")
        .unwrap();
    let n1_slot = (0..quiver_protocol::SLOT_COUNT)
        .find(|&s| t1.owners(s)[0].id == "n1")
        .unwrap();
    let cases = [
        (r#"{"epoch": 1}"#.to_string(), tonic::Code::InvalidArgument),
        (
            format!(r#"{{"epoch": 1, "node": "n2", "slots": [[{n1_slot}, {n1_slot}]]}}"#),
            tonic::Code::InvalidArgument,
        ),
        (
            r#"{"epoch": 1, "node": "n2", "slots": [[0, 16384]]}"#.to_string(),
            tonic::Code::InvalidArgument,
        ),
        (
            format!(r#"{{"epoch": 9, "node": "n2", "slots": [[{n2_slot}, {n2_slot}]]}}"#),
            tonic::Code::FailedPrecondition,
        ),
        // Each slot at most once: no walking the slot space over and over.
        (
            format!(
                r#"{{"epoch": 1, "node": "n2", "slots": [[{n2_slot}, {n2_slot}], [0, 16383]]}}"#
            ),
            tonic::Code::InvalidArgument,
        ),
    ];
    for (body, code) in cases {
        let err = action(&mut admin, "handoff-done", body.as_bytes())
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{body}: {}", err.message());
    }
    let ok = format!(r#"{{"epoch": 1, "node": "n2", "slots": [[{n2_slot}, {n2_slot}]]}}"#);
    action(&mut admin, "handoff-done", ok.as_bytes())
        .await
        .unwrap();
    health(&mut admin).await;
    for n in cluster.nodes {
        n.shutdown().await.unwrap();
    }
}

/// `handoff-read` judges the slot of the object it will read, not of the
/// path as spelled: a leading `/` names the same object under another
/// slot, and must not get a slot this node does not hold past the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_read_checks_the_slot_of_the_resolved_path() {
    const FILES: usize = 16;
    let (cluster, _data) = file_cluster(FILES).await;
    let mut n1 = client(&cluster.nodes[0]).await;
    let all = members(&cluster.nodes);
    let t1 = Topology::initial(all[..2].to_vec(), 1).unwrap();
    let owner = |path: &str| t1.owners(slot_of(SOURCE, path))[0].id.clone();
    // A file n2 owns whose path with a leading `/` falls in n1's slots.
    let file = (0..FILES)
        .map(|i| format!("t/part-{i}.parquet"))
        .find(|p| owner(p) == "n2" && owner(&format!("/{p}")) == "n1")
        .expect("no file with the right pair of slots; add files");
    // While n1 still runs alone it caches the file.
    do_get(&mut n1, &scan(SOURCE, &file)).await.unwrap();
    let listed: Vec<quiver_protocol::HandoffObject> = serde_json::from_slice(
        &action(&mut n1, "handoff-list", br#"{"slots": [[0, 16383]]}"#)
            .await
            .unwrap()[0],
    )
    .unwrap();
    let object = listed.into_iter().find(|o| o.path == file).unwrap();
    update(&mut n1, 0, &t1).await.unwrap();
    converge(&cluster, 1).await;
    for path in [file.clone(), format!("/{file}")] {
        let body = serde_json::to_vec(&quiver_protocol::HandoffRead {
            object: quiver_protocol::HandoffObject {
                path: path.clone(),
                ..object.clone()
            },
            chunks: vec![0],
            checksum: true,
            parts: true,
        })
        .unwrap();
        let err = action(&mut n1, "handoff-read", &body).await.unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::InvalidArgument,
            "{path}: {}",
            err.message()
        );
    }
    for n in cluster.nodes {
        n.shutdown().await.unwrap();
    }
}
