//! Three quiver-server processes with replication 2 and a client reading
//! through them: one node is killed (SIGKILL) in the middle of the workload,
//! then a second; every answer must still equal DataFusion reading the file
//! directly, served by a replica and finally by the direct-read fallback.

mod common;
#[path = "common/processes.rs"]
mod processes;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::rows;
use processes::{random_request, reference, start_node, write_file, Node, NodeOptions};
use quiver_client::{AdminClient, ClientConfig, DirectSource, QuiverClient, Served};
use quiver_protocol::{slot_of, NodeInfo, Topology};
use rand::rngs::StdRng;
use rand::SeedableRng;

const FILES: usize = 12;

fn start(i: usize, work: &Path, data: &Path) -> Node {
    start_node(i, work, data, &NodeOptions::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_nodes_mid_workload_loses_no_query() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..FILES {
        write_file(&data.join(format!("f{i}.parquet")), 2_000, i as u64);
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
        write_file(&data.join(format!("f{i}.parquet")), 2_000, 50 + i as u64);
    }
    // No hand-off grace: a node redirects a slot it gave up at once, so the
    // stale client meets MOVED.
    let options = NodeOptions {
        grace: "0s".into(),
        ..Default::default()
    };
    let nodes: Vec<Node> = (1..=3)
        .map(|i| start_node(i, work.path(), &data, &options))
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
