//! Sources rooted below a bucket's top: a source `s3://lake/warehouse/`
//! serves `t/a.parquet` from the key `warehouse/t/a.parquet`, cold, warm and
//! listed, the same rows as reading the file directly.

use crate::common::*;
use quiver_server::RunningNode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_under_a_key_prefix_reads_its_objects() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    let file = s3.file("warehouse/t/a.parquet");
    write_parquet(&file, 4000, 3);
    write_parquet(&s3.file("warehouse/t/b.parquet"), 1000, 4);
    let mut source = s3.source("lake");
    source.url = format!("s3://{BUCKET}/warehouse/");
    let node = RunningNode::start(node_config(vec![source], None))
        .await
        .unwrap();
    let mut c = client(&node).await;

    let filter = "price > 500 AND name LIKE 'b%'";
    let mut req = scan("lake", "t/a.parquet");
    req.filter = Some(filter.into());
    let expected = rows(&reference(&file, None, Some(filter)).await);
    assert!(!expected.is_empty());
    for pass in ["cold", "warm"] {
        let got = do_get(&mut c, &req)
            .await
            .unwrap_or_else(|e| panic!("{pass} read failed: {e}"));
        assert_eq!(rows(&got), expected, "{pass} read");
    }

    // Listed under the prefix, planned and read through its endpoints.
    let info = flight_info(&mut c, &scan("lake", "t/")).await.unwrap();
    assert_eq!(info.total_records, 5000, "the prefix t/ holds both objects");
    let mut whole = Vec::new();
    for ep in &info.endpoint {
        let ticket = &ep.ticket.as_ref().unwrap().ticket;
        whole.extend(do_get_raw(&mut c, ticket).await.unwrap());
    }
    assert_eq!(row_count(&whole), 5000);
    node.shutdown().await.unwrap();
}
