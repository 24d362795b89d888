//! Cache behaviour seen from outside: repeat scans cost the origin nothing,
//! rewritten objects are never served stale after validation, the disk tier
//! survives a restart, concurrent misses share fetches, and prefetch / evict
//! do what they say.

use std::time::Duration;

use crate::common::*;
use quiver_protocol::{ObjectListing, PrefetchSummary};
use quiver_server::config::Span;
use quiver_server::RunningNode;

fn filtered(source: &str, key: &str) -> quiver_protocol::ScanRequest {
    let mut req = scan(source, key);
    req.columns = Some(vec!["id".into(), "price".into(), "name".into()]);
    req.filter = Some("price > 500 AND name LIKE 'b%'".into());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_scan_reads_nothing_from_the_origin() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    write_parquet(&s3.file("t/a.parquet"), 5000, 1);
    let node = RunningNode::start(node_config(vec![s3.source("lake")], None))
        .await
        .unwrap();
    let mut c = client(&node).await;
    let req = filtered("lake", "t/a.parquet");
    let first = do_get(&mut c, &req).await.unwrap();
    let cold = stats(&mut c).await;
    assert!(cold.origin_bytes > 0);
    assert!(cold.misses > 0);
    let second = do_get(&mut c, &req).await.unwrap();
    let warm = stats(&mut c).await;
    assert_eq!(
        warm.origin_bytes, cold.origin_bytes,
        "the repeat scan read from the origin"
    );
    assert!(warm.memory.hits > cold.memory.hits);
    assert_eq!(rows(&first), rows(&second));
    assert!(warm.rows_served as usize >= 2 * row_count(&first));
    assert!(warm.bytes_served > 0);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_object_is_fresh_once_validation_expires() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    let file = s3.file("t/a.parquet");
    write_parquet(&file, 3000, 1);
    let mut source = s3.source("lake");
    source.validate = Span(Duration::from_millis(500));
    let node = RunningNode::start(node_config(vec![source], None))
        .await
        .unwrap();
    let mut c = client(&node).await;
    let req = filtered("lake", "t/a.parquet");
    let before = do_get(&mut c, &req).await.unwrap();
    assert_eq!(
        rows(&before),
        rows(&reference(&file, req.columns.as_deref(), req.filter.as_deref()).await)
    );
    let old_ticket = flight_info(&mut c, &req).await.unwrap().endpoint[0]
        .ticket
        .clone()
        .unwrap();

    write_parquet(&file, 4000, 2);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = do_get(&mut c, &req).await.unwrap();
    let expected = reference(&file, req.columns.as_deref(), req.filter.as_deref()).await;
    assert_eq!(rows(&after), rows(&expected));
    assert_ne!(rows(&after), rows(&before));

    // A ticket issued for the old version is refused with the new ETag.
    let err = do_get_raw(&mut c, &old_ticket.ticket).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().starts_with("CHANGED "), "{}", err.message());
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_serves_hits_after_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    write_parquet(&s3.file("t/a.parquet"), 5000, 3);
    let req = filtered("lake", "t/a.parquet");

    let node = RunningNode::start(node_config(vec![s3.source("lake")], Some(cache_dir.path())))
        .await
        .unwrap();
    let mut c = client(&node).await;
    let first = do_get(&mut c, &req).await.unwrap();
    assert!(stats(&mut c).await.origin_bytes > 0);
    node.shutdown().await.unwrap();

    let node = RunningNode::start(node_config(vec![s3.source("lake")], Some(cache_dir.path())))
        .await
        .unwrap();
    let mut c = client(&node).await;
    let again = do_get(&mut c, &req).await.unwrap();
    let s = stats(&mut c).await;
    assert_eq!(rows(&first), rows(&again));
    assert_eq!(
        s.origin_bytes, 0,
        "after a restart the data came from the origin, not the disk tier"
    );
    assert!(s.disk.hits > 0);
    assert!(s.disk.usage > 0);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_fetch_each_byte_once() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    let file = s3.file("t/a.parquet");
    write_parquet(&file, 20000, 4);
    let size = std::fs::metadata(&file).unwrap().len();
    let node = RunningNode::start(node_config(vec![s3.source("lake")], None))
        .await
        .unwrap();
    let req = scan("lake", "t/a.parquet");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = client(&node).await;
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            row_count(&do_get(&mut c, &req).await.unwrap())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 20000);
    }
    let s = stats(&mut client(&node).await).await;
    assert!(
        s.origin_bytes <= size,
        "origin bytes {} exceed the file size {size}: misses were not shared",
        s.origin_bytes
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_warms_and_evict_drops() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    for i in 0..3 {
        write_parquet(&s3.file(&format!("t/p{i}.parquet")), 2000, 10 + i);
    }
    let node = RunningNode::start(node_config(vec![s3.source("lake")], None))
        .await
        .unwrap();
    let mut c = client(&node).await;

    let body = serde_json::to_vec(&scan("lake", "t/")).unwrap();
    let out = action(&mut c, "prefetch", &body).await.unwrap();
    assert_eq!(out.len(), 4, "three progress messages and a summary");
    let summary: PrefetchSummary = serde_json::from_slice(out.last().unwrap()).unwrap();
    assert_eq!(summary.objects, 3);
    let fetched = stats(&mut c).await.origin_bytes;
    assert!(fetched >= summary.bytes);

    let listed: Vec<ObjectListing> = {
        use futures::TryStreamExt;
        let infos: Vec<_> = c
            .list_flights(
                serde_json::to_vec(&serde_json::json!({"source": "lake", "path": "t/"})).unwrap(),
            )
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        infos
            .iter()
            .map(|i| serde_json::from_slice(&i.app_metadata).unwrap())
            .collect()
    };
    assert_eq!(listed.len(), 3);
    for l in &listed {
        assert_eq!(l.cached_bytes, l.size, "{} is not fully cached", l.path);
    }

    do_get(&mut c, &scan("lake", "t/p1.parquet")).await.unwrap();
    assert_eq!(
        stats(&mut c).await.origin_bytes,
        fetched,
        "a prefetched object was read from the origin"
    );

    let out = action(
        &mut c,
        "evict",
        br#"{"source":"lake","path":"t/p1.parquet"}"#,
    )
    .await
    .unwrap();
    let evicted: PrefetchSummary = serde_json::from_slice(&out[0]).unwrap();
    assert_eq!(evicted.objects, 1);
    assert!(evicted.bytes > 0);
    do_get(&mut c, &scan("lake", "t/p1.parquet")).await.unwrap();
    assert!(
        stats(&mut c).await.origin_bytes > fetched,
        "an evicted object was still served from the cache"
    );

    // Prefetching only some columns loads less than the whole object.
    action(&mut c, "evict", br#"{"source":"lake","path":"t/"}"#)
        .await
        .unwrap();
    let mut req = scan("lake", "t/p0.parquet");
    req.columns = Some(vec!["id".into()]);
    let out = action(&mut c, "prefetch", &serde_json::to_vec(&req).unwrap())
        .await
        .unwrap();
    let partial: PrefetchSummary = serde_json::from_slice(out.last().unwrap()).unwrap();
    let size = std::fs::metadata(s3.file("t/p0.parquet")).unwrap().len();
    assert!(
        partial.bytes > 0 && partial.bytes < size / 2,
        "{} of {size}",
        partial.bytes
    );
    node.shutdown().await.unwrap();
}
