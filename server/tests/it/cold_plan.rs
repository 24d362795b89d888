//! A cold plan asks the origin once before it reads data: the GET of the
//! object's last bytes that describes it also brings the footer, so no HEAD
//! is sent, and the scan's rows are the reference's.

use std::time::Duration;

use arrow_flight::Ticket;
use futures::TryStreamExt;
use quiver_server::config::Span;
use quiver_server::RunningNode;
use tonic::Code;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_plan_learns_the_object_and_its_footer_in_one_request() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    write_parquet(&s3.file("t/a.parquet"), 20_000, 7);
    let node = RunningNode::start(node_config(vec![s3.source("lake")], None))
        .await
        .unwrap();
    let mut c = client(&node).await;
    s3.inner().clear_requests();
    let req = quiver_protocol::ScanRequest {
        filter: Some("qty > 40".into()),
        columns: Some(vec!["id".into(), "price".into()]),
        ..scan("lake", "t/a.parquet")
    };
    let info = flight_info(&mut c, &req).await.unwrap();
    let before_data = s3.inner().requests();
    assert_eq!(
        before_data.len(),
        1,
        "the plan asked the origin more than once: {before_data:?}"
    );
    assert_eq!(before_data[0].method, "GET", "{before_data:?}");
    assert_eq!(
        before_data[0].range.as_deref(),
        Some("bytes=-262144"),
        "{before_data:?}"
    );
    let mut got = Vec::new();
    for endpoint in &info.endpoint {
        let ticket: Ticket = endpoint.ticket.clone().unwrap();
        let batches: Vec<_> = c.do_get(ticket).await.unwrap().try_collect().await.unwrap();
        got.extend(batches);
    }
    let expected = reference(
        &s3.file("t/a.parquet"),
        Some(&["id".into(), "price".into()]),
        Some("qty > 40"),
    )
    .await;
    assert_eq!(rows(&got), rows(&expected));
    assert!(
        s3.inner().requests().iter().all(|r| r.method == "GET"),
        "a HEAD was sent: {:?}",
        s3.inner().requests()
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_empty_objects_are_answered_as_before() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    let empty = s3.file("t/empty.parquet");
    std::fs::create_dir_all(empty.parent().unwrap()).unwrap();
    std::fs::write(&empty, b"").unwrap();
    let mut source = s3.source("lake");
    source.missing_ttl = Span(Duration::from_secs(60));
    let node = RunningNode::start(node_config(vec![source], None))
        .await
        .unwrap();
    let mut c = client(&node).await;
    for _ in 0..10 {
        let err = flight_info(&mut c, &scan("lake", "t/gone.parquet"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
    let asked = s3
        .inner()
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("t/gone.parquet"))
        .count();
    assert_eq!(asked, 1, "each plan of a missing object asked the origin");
    // An empty object has no suffix to read: the node asks with a HEAD and
    // reports what the bytes are not.
    let err = flight_info(&mut c, &scan("lake", "t/empty.parquet"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    let s = stats(&mut c).await;
    assert!(!s.node_id.is_empty());
    node.shutdown().await.unwrap();
}
