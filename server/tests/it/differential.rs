//! Quiver's answers must equal DataFusion reading the same Parquet directly,
//! for many generated filters, projections and limits, from a local
//! directory and from a real S3-compatible server.

use std::collections::HashMap;

use crate::common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub(crate) const CASES: usize = 120;

pub(crate) async fn check_cases(
    client: &mut arrow_flight::FlightClient,
    source: &str,
    key: &str,
    file: &std::path::Path,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut nonempty = 0;
    for case in 0..CASES {
        let filter = (case % 10 != 0).then(|| random_filter(&mut rng, 2));
        let columns = random_columns(&mut rng);
        let limit = rng.random_bool(0.3).then(|| rng.random_range(0..400u64));
        let mut req = scan(source, key);
        req.columns = columns.clone();
        req.filter = filter.clone();
        req.limit = limit;
        let got = do_get(client, &req)
            .await
            .unwrap_or_else(|e| panic!("case {case} {req:?} failed: {e}"));
        let expected = reference(file, columns.as_deref(), filter.as_deref()).await;
        if let (Some(cols), Some(b)) = (&columns, got.first()) {
            let names: Vec<String> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(&names, cols, "case {case}: projected schema");
        }
        let (got_rows, want_rows) = (rows(&got), rows(&expected));
        if !want_rows.is_empty() {
            nonempty += 1;
        }
        match limit {
            None => assert_eq!(got_rows, want_rows, "case {case}: {req:?}"),
            Some(n) => {
                assert_eq!(
                    got_rows.len(),
                    want_rows.len().min(n as usize),
                    "case {case}: {req:?}"
                );
                let mut pool: HashMap<&String, usize> = HashMap::new();
                for r in &want_rows {
                    *pool.entry(r).or_default() += 1;
                }
                for r in &got_rows {
                    let left = pool
                        .get_mut(r)
                        .unwrap_or_else(|| panic!("case {case}: row {r} is not in the reference"));
                    assert!(*left > 0, "case {case}: row {r} returned too often");
                    *left -= 1;
                }
            }
        }
    }
    // Guard against a generator that only ever produces empty results.
    assert!(
        nonempty > CASES / 3,
        "only {nonempty} of {CASES} cases matched any row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_matches_datafusion() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t/data.parquet");
    write_parquet(&file, 6000, 7);
    let node = quiver_server::RunningNode::start(node_config(
        vec![local_source("local", dir.path())],
        None,
    ))
    .await
    .unwrap();
    let mut c = client(&node).await;
    check_cases(&mut c, "local", "t/data.parquet", &file, 1).await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_matches_datafusion() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    let file = s3.file("warehouse/t/data.parquet");
    write_parquet(&file, 6000, 11);
    let node = quiver_server::RunningNode::start(node_config(vec![s3.source("lake")], None))
        .await
        .unwrap();
    let mut c = client(&node).await;
    check_cases(&mut c, "lake", "warehouse/t/data.parquet", &file, 2).await;
    node.shutdown().await.unwrap();
}

/// A prefix plans one endpoint per object; reading every endpoint gives what
/// DataFusion gives for the whole directory, and a limit without a filter
/// caps the total across endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_endpoints_cover_the_directory() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    for i in 0..4 {
        write_parquet(&s3.file(&format!("t/part-{i}.parquet")), 1500, 100 + i);
    }
    std::fs::write(s3.file("t/_SUCCESS"), b"").unwrap();
    let node = quiver_server::RunningNode::start(node_config(vec![s3.source("lake")], None))
        .await
        .unwrap();
    let mut c = client(&node).await;
    let dir = s3.file("t/");
    for (filter, columns) in [
        (
            Some("qty > 20 AND name LIKE 'b%'"),
            Some(vec!["id".to_string(), "name".to_string()]),
        ),
        (None, None),
        (
            Some("day >= DATE '2019-04-01' OR flag"),
            Some(vec!["ts".to_string(), "amount".to_string()]),
        ),
    ] {
        let mut req = scan("lake", "t/");
        req.filter = filter.map(String::from);
        req.columns = columns.clone();
        let info = flight_info(&mut c, &req).await.unwrap();
        assert_eq!(info.endpoint.len(), 4);
        let mut got = Vec::new();
        for ep in &info.endpoint {
            assert_eq!(ep.location[0].uri, format!("grpc://{}", node.flight_addr));
            let t = ep.ticket.as_ref().unwrap();
            got.extend(do_get_raw(&mut c, &t.ticket).await.unwrap());
        }
        let expected = reference(&dir, columns.as_deref(), filter).await;
        assert_eq!(rows(&got), rows(&expected), "{filter:?}");
        if filter.is_none() {
            assert_eq!(info.total_records, 6000);
        }
    }
    let mut req = scan("lake", "t/");
    req.limit = Some(2000);
    let info = flight_info(&mut c, &req).await.unwrap();
    assert_eq!(info.total_records, 2000);
    let mut total = 0;
    for ep in &info.endpoint {
        total += row_count(
            &do_get_raw(&mut c, &ep.ticket.as_ref().unwrap().ticket)
                .await
                .unwrap(),
        );
    }
    assert_eq!(total, 2000);
    node.shutdown().await.unwrap();
}

/// An object whose needed columns are above `limits.split_bytes` is planned
/// as one endpoint per range of its row groups: for many generated filters
/// and projections, reading every endpoint gives exactly DataFusion's
/// rows; a scan of every column is split, a limit keeps one endpoint, and
/// a small object stays one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_object_is_split_into_row_group_endpoints_that_cover_it() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("t/big.parquet");
    let small = dir.path().join("t/small.parquet");
    write_parquet(&big, 20_000, 21);
    write_parquet(&small, 300, 22);
    let size = std::fs::metadata(&big).unwrap().len();
    let mut config = node_config(vec![local_source("local", dir.path())], None);
    // About four endpoints for the big file, none for the small one.
    config.limits.split_bytes = quiver_server::config::ByteSize(size / 4);
    let node = quiver_server::RunningNode::start(config).await.unwrap();
    let mut c = client(&node).await;
    let groups = {
        let file = std::fs::File::open(&big).unwrap();
        parquet::file::reader::FileReader::metadata(
            &parquet::file::reader::SerializedFileReader::new(file).unwrap(),
        )
        .num_row_groups()
    };
    let mut rng = StdRng::seed_from_u64(5);
    let mut nonempty = 0;
    for case in 0..40 {
        let mut req = scan("local", "t/big.parquet");
        req.filter = (case % 5 != 0).then(|| random_filter(&mut rng, 2));
        req.columns = random_columns(&mut rng);
        let info = flight_info(&mut c, &req).await.unwrap();
        let least = if req.columns.is_none() { 2 } else { 1 };
        assert!(
            (least..=groups).contains(&info.endpoint.len()),
            "{} endpoints for {groups} row groups",
            info.endpoint.len()
        );
        let mut covered = Vec::new();
        let mut got = Vec::new();
        for ep in &info.endpoint {
            let t = &ep.ticket.as_ref().unwrap().ticket;
            let ticket: quiver_protocol::ScanRequest = serde_json::from_slice(t).unwrap();
            // One endpoint names no row groups: it reads them all.
            covered.extend(ticket.row_groups.unwrap_or_else(|| (0..groups).collect()));
            got.extend(do_get_raw(&mut c, t).await.unwrap());
        }
        assert_eq!(covered, (0..groups).collect::<Vec<_>>(), "case {case}");
        let want = reference(&big, req.columns.as_deref(), req.filter.as_deref()).await;
        if !want.is_empty() && row_count(&want) > 0 {
            nonempty += 1;
        }
        assert_eq!(rows(&got), rows(&want), "case {case}: {req:?}");
    }
    assert!(nonempty > 10, "only {nonempty} cases matched any row");

    // The split counts what a request reads: one narrow column is fewer
    // endpoints than every column.
    let every = flight_info(&mut c, &scan("local", "t/big.parquet"))
        .await
        .unwrap()
        .endpoint
        .len();
    let mut narrow = scan("local", "t/big.parquet");
    narrow.columns = Some(vec!["id".into()]);
    let narrow = flight_info(&mut c, &narrow).await.unwrap().endpoint.len();
    assert!(
        narrow < every,
        "{narrow} endpoints for one column, {every} for all"
    );

    let mut limited = scan("local", "t/big.parquet");
    limited.limit = Some(100);
    assert_eq!(
        flight_info(&mut c, &limited).await.unwrap().endpoint.len(),
        1
    );
    let info = flight_info(&mut c, &scan("local", "t/small.parquet"))
        .await
        .unwrap();
    assert_eq!(info.endpoint.len(), 1);
    node.shutdown().await.unwrap();
}
