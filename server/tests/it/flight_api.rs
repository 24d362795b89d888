//! The happy paths of every Flight call and of the admin HTTP server.

use std::io::{Read, Write};
use std::sync::Arc;

use crate::common::*;
use arrow_flight::FlightDescriptor;
use futures::TryStreamExt;
use quiver_protocol::{ObjectListing, Topology, REQUEST_ID_HEADER};
use quiver_server::RunningNode;

fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_answers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t/a.parquet");
    write_parquet(&file, 3000, 5);
    write_parquet(&dir.path().join("t/b.parquet"), 1000, 6);
    let node = RunningNode::start(node_config(vec![local_source("local", dir.path())], None))
        .await
        .unwrap();
    let mut c = client(&node).await;

    let actions: Vec<String> = c
        .list_actions()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.r#type)
        .collect();
    assert_eq!(
        actions,
        [
            "stats",
            "prefetch",
            "evict",
            "cluster-shards",
            "cluster-update",
            "handoff-list",
            "handoff-read",
            "handoff-done",
            "health",
            "refresh-catalog",
            "warm",
            "tables",
            "table-snapshot",
            "CreatePreparedStatement",
            "ClosePreparedStatement"
        ]
    );

    let health: serde_json::Value =
        serde_json::from_slice(&action(&mut c, "health", b"").await.unwrap()[0]).unwrap();
    assert_eq!(health["status"], "ok");
    let topo: Topology =
        serde_json::from_slice(&action(&mut c, "cluster-shards", b"").await.unwrap()[0]).unwrap();
    assert_eq!(topo.nodes[0].url, format!("grpc://{}", node.flight_addr));
    assert_eq!((topo.slots[0].start, topo.slots[0].end), (0, 16383));

    let mut req = scan("local", "t/a.parquet");
    req.columns = Some(vec!["name".into(), "id".into()]);
    let schema = c
        .get_schema(FlightDescriptor::new_cmd(req.to_bytes()))
        .await
        .unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["name", "id"]);

    // The ticket a server issues names the object and its ETag.
    let info = flight_info(&mut c, &req).await.unwrap();
    let t: quiver_protocol::ScanRequest =
        serde_json::from_slice(&info.endpoint[0].ticket.as_ref().unwrap().ticket).unwrap();
    assert_eq!(t.path.as_deref(), Some("t/a.parquet"));
    assert!(t.etag.is_some());
    assert_eq!(info.total_records, 3000);

    // A request id comes back on success too, and the client's own is kept.
    let mut tagged = client(&node).await;
    tagged
        .add_header(REQUEST_ID_HEADER, "my-request-42")
        .unwrap();
    let stream = tagged
        .do_get(ticket(&scan("local", "t/a.parquet")))
        .await
        .unwrap();
    assert_eq!(
        stream
            .headers()
            .get(REQUEST_ID_HEADER)
            .unwrap()
            .to_str()
            .unwrap(),
        "my-request-42"
    );
    assert_eq!(
        row_count(&stream.try_collect::<Vec<_>>().await.unwrap()),
        3000
    );

    // `url` names the same object as source + path.
    let by_url = quiver_protocol::ScanRequest {
        url: Some(format!(
            "{}t/a.parquet",
            url::Url::from_directory_path(dir.path()).unwrap()
        )),
        filter: Some("id < 5".into()),
        ..Default::default()
    };
    assert_eq!(row_count(&do_get(&mut c, &by_url).await.unwrap()), 5);

    let listed: Vec<ObjectListing> = c
        .list_flights(bytes::Bytes::new())
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|i| serde_json::from_slice(&i.app_metadata).unwrap())
        .collect();
    let paths: Vec<&str> = listed.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(paths, ["t/a.parquet", "t/b.parquet"]);
    assert_eq!(listed[0].size, std::fs::metadata(&file).unwrap().len());
    assert!(
        listed[0].cached_bytes > 0,
        "the scans above cached part of a.parquet"
    );

    // Row groups in a ticket restrict the scan to them.
    let mut req = scan("local", "t/a.parquet");
    req.row_groups = Some(vec![0]);
    let first_group = row_count(&do_get(&mut c, &req).await.unwrap());
    assert_eq!(first_group, 500);

    let (code, body) = http_get(node.admin_addr, "/metrics");
    assert_eq!(code, 200);
    for metric in [
        "quiver_cache_hits_total",
        "quiver_origin_bytes_total",
        "quiver_served_rows_total",
        "quiver_scan_seconds_bucket",
        "quiver_cache_memory_bytes",
    ] {
        assert!(body.contains(metric), "{metric} missing from /metrics");
    }
    assert_eq!(http_get(node.admin_addr, "/health").0, 200);
    assert_eq!(http_get(node.admin_addr, "/ready").0, 200);
    assert_eq!(http_get(node.admin_addr, "/nope").0, 404);
    node.shutdown().await.unwrap();
}

/// The caching store is an ordinary ObjectStore: DataFusion's own Parquet
/// reader gets the same answer through it, and the repeat from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datafusion_reads_through_the_caching_store() {
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    let file = s3.file("t/a.parquet");
    write_parquet(&file, 4000, 9);
    let node = RunningNode::start(node_config(vec![s3.source("lake")], None))
        .await
        .unwrap();
    let store = node.core.store("lake").unwrap().clone();
    let ctx = SessionContext::new();
    ctx.register_object_store(
        &url::Url::parse("quiver://lake").unwrap(),
        store as Arc<dyn object_store::ObjectStore>,
    );
    let read = || async {
        ctx.read_parquet("quiver://lake/t/a.parquet", ParquetReadOptions::default())
            .await
            .unwrap()
            .filter(datafusion::prelude::col("qty").gt(datafusion::prelude::lit(10)))
            .unwrap()
            .collect()
            .await
            .unwrap()
    };
    let first = read().await;
    let mut c = client(&node).await;
    let cold = stats(&mut c).await.origin_bytes;
    assert!(cold > 0);
    let second = read().await;
    assert_eq!(stats(&mut c).await.origin_bytes, cold);
    let expected = reference(&file, None, Some("qty > 10")).await;
    assert_eq!(rows(&first), rows(&expected));
    assert_eq!(rows(&second), rows(&expected));
    node.shutdown().await.unwrap();
}
