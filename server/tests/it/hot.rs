//! The hot tier answers scans from decoded arrays. Its answers must equal
//! DataFusion reading the file directly, for the generated filters,
//! projections and limits of the differential test, with the tier full,
//! after its arrays are evicted, and after the object is rewritten.

use std::time::{Duration, Instant};

use quiver_protocol::{ScanRequest, StatsReport};
use tonic::Code;

use crate::common::*;
use crate::differential::{check_cases, CASES};

const ROWS: usize = 6000;

/// Repeats `req` until the tier answers it: the first miss only remembers
/// the column chunks, the second decodes them.
pub(crate) async fn fill_for(c: &mut arrow_flight::FlightClient, req: &ScanRequest) -> StatsReport {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let before = stats(c).await.hot.hits;
        do_get(c, req).await.unwrap();
        let now = stats(c).await;
        if now.hot.hits > before {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the tier never answered {req:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fills the tier with the whole object.
async fn fill(c: &mut arrow_flight::FlightClient, source: &str, key: &str) -> StatsReport {
    fill_for(c, &scan(source, key)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_answers_equal_datafusion_when_full_after_eviction_and_after_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t/data.parquet");
    write_parquet(&file, ROWS, 21);
    let mut source = local_source("local", dir.path());
    source.validate = quiver_server::config::Span(Duration::from_millis(100));
    let node = quiver_server::RunningNode::start(node_config(vec![source], None))
        .await
        .unwrap();
    let mut c = client(&node).await;

    let full = fill(&mut c, "local", "t/data.parquet").await;
    assert!(full.hot.usage > 0, "{full:?}");
    check_cases(&mut c, "local", "t/data.parquet", &file, 31).await;
    let after = stats(&mut c).await;
    let hits = after.hot.hits - full.hot.hits;
    assert!(
        hits >= CASES as u64 * 9 / 10,
        "only {hits} of {CASES} cases were answered by the hot tier: {after:?}"
    );
    // Answering from memory read no bytes: the byte tier saw no lookups.
    assert_eq!(after.memory.hits, full.memory.hits, "{after:?}");

    // Evicted, the object is read from Parquet again, with the same answers.
    let body = br#"{"source":"local","path":"t/data.parquet"}"#;
    action(&mut c, "evict", body).await.unwrap();
    let evicted = stats(&mut c).await;
    assert_eq!(evicted.hot.usage, 0, "{evicted:?}");
    check_cases(&mut c, "local", "t/data.parquet", &file, 32).await;

    // Rewritten, the old arrays never answer for the new version.
    fill(&mut c, "local", "t/data.parquet").await;
    std::fs::remove_file(&file).unwrap();
    write_parquet(&file, ROWS, 22);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let changed = fill(&mut c, "local", "t/data.parquet").await;
    check_cases(&mut c, "local", "t/data.parquet", &file, 33).await;
    let after = stats(&mut c).await;
    assert!(
        after.hot.hits - changed.hot.hits >= CASES as u64 * 9 / 10,
        "{after:?}"
    );
    node.shutdown().await.unwrap();
}

/// The ids a scan of `id` alone returns, in the order they arrive.
async fn ids_in_order(c: &mut arrow_flight::FlightClient, filter: &str) -> Vec<i64> {
    use arrow::array::AsArray;
    let mut req = scan("local", "t/data.parquet");
    req.columns = Some(vec!["id".into()]);
    req.filter = Some(filter.into());
    do_get(c, &req)
        .await
        .unwrap()
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

/// Rows come in file order (ids ascend in the generated file), as many as
/// DataFusion finds.
async fn check_file_order(c: &mut arrow_flight::FlightClient, file: &std::path::Path) {
    for filter in ["qty > 0", "id >= 0", "price < 500 OR name LIKE 'a%'"] {
        let ids = ids_in_order(c, filter).await;
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{filter}: rows out of file order"
        );
        let want = reference(file, Some(&["id".to_string()]), Some(filter)).await;
        assert_eq!(ids.len(), row_count(&want), "{filter}");
    }
}

/// With only some row groups in the tier, a scan reads those from it and
/// the rest from Parquet, several at once: answers equal DataFusion's for
/// the generated cases, rows keep file order, and stats count partial hits.
/// The tier holds about half the file, so it never answers a full scan
/// alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_hits_answer_like_parquet_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t/data.parquet");
    write_parquet(&file, ROWS, 26);
    let mut config = node_config(vec![local_source("local", dir.path())], None);
    config.cache.hot = quiver_server::config::ByteSize(200_000);
    let node = quiver_server::RunningNode::start(config).await.unwrap();
    let mut c = client(&node).await;
    // Cold: every row group from Parquet, read in parallel.
    check_file_order(&mut c, &file).await;

    let before = stats(&mut c).await;
    for seed in [34, 35] {
        check_cases(&mut c, "local", "t/data.parquet", &file, seed).await;
        check_file_order(&mut c, &file).await;
    }
    let after = stats(&mut c).await;
    let partial = after.hot.partial - before.hot.partial;
    assert!(
        partial >= CASES as u64 / 8,
        "only {partial} of {} scans were partial hits: {after:?}",
        2 * CASES
    );
    assert!(after.hot.usage <= 200_000, "{after:?}");
    node.shutdown().await.unwrap();
}

/// A filter that fails on the arrays fails as on the Parquet path, with the
/// request's error, and the node goes on serving from the tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_fails_on_hot_arrays_is_the_requests_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t/data.parquet");
    write_parquet(&file, ROWS, 23);
    let node = quiver_server::RunningNode::start(node_config(
        vec![local_source("local", dir.path())],
        None,
    ))
    .await
    .unwrap();
    let mut c = client(&node).await;
    fill(&mut c, "local", "t/data.parquet").await;

    let mut bad = scan("local", "t/data.parquet");
    bad.filter = Some("CAST(name AS INT) > 3".into());
    let err = do_get(&mut c, &bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    let before = stats(&mut c).await.hot.hits;
    let mut good = scan("local", "t/data.parquet");
    good.filter = Some("qty > 10".into());
    good.columns = Some(vec!["id".into(), "name".into()]);
    let got = do_get(&mut c, &good).await.unwrap();
    let want = reference(&file, good.columns.as_deref(), good.filter.as_deref()).await;
    assert_eq!(rows(&got), rows(&want));
    assert!(stats(&mut c).await.hot.hits > before);
    node.shutdown().await.unwrap();
}

/// With the tier off, nothing is decoded into it and scans still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_hot_tier_reads_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t/data.parquet");
    write_parquet(&file, 3000, 24);
    let mut config = node_config(vec![local_source("local", dir.path())], None);
    config.cache.hot = quiver_server::config::ByteSize(0);
    let node = quiver_server::RunningNode::start(config).await.unwrap();
    let mut c = client(&node).await;
    for _ in 0..3 {
        let got = do_get(&mut c, &scan("local", "t/data.parquet"))
            .await
            .unwrap();
        assert_eq!(row_count(&got), 3000);
    }
    let s = stats(&mut c).await;
    assert_eq!(
        (s.hot.capacity, s.hot.usage, s.hot.hits, s.hot.fills),
        (0, 0, 0, 0),
        "{s:?}"
    );
    node.shutdown().await.unwrap();
}

/// One pass over an object decodes nothing: a column chunk enters the tier
/// on its second miss, so a table read once never displaces the hot set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_chunk_enters_the_tier_on_its_second_miss() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t/data.parquet");
    write_parquet(&file, ROWS, 25);
    let node = quiver_server::RunningNode::start(node_config(
        vec![local_source("local", dir.path())],
        None,
    ))
    .await
    .unwrap();
    let mut c = client(&node).await;
    let mut req = scan("local", "t/data.parquet");
    req.columns = Some(vec!["id".into(), "qty".into()]);
    do_get(&mut c, &req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let once = stats(&mut c).await;
    assert_eq!(
        (once.hot.fills, once.hot.usage, once.hot.misses),
        (0, 0, 1),
        "{once:?}"
    );

    do_get(&mut c, &req).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = stats(&mut c).await;
        if s.hot.fills == 6 {
            assert!(s.hot.usage > 0, "{s:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second miss did not fill: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another projection of the same columns is a hit; one with a column
    // never read is a miss.
    let mut same = scan("local", "t/data.parquet");
    same.columns = Some(vec!["qty".into()]);
    same.filter = Some("id < 100".into());
    let before = stats(&mut c).await.hot;
    let got = do_get(&mut c, &same).await.unwrap();
    assert_eq!(
        rows(&got),
        rows(&reference(&file, same.columns.as_deref(), same.filter.as_deref()).await)
    );
    let mut other = scan("local", "t/data.parquet");
    other.columns = Some(vec!["name".into()]);
    do_get(&mut c, &other).await.unwrap();
    let after = stats(&mut c).await.hot;
    assert_eq!(
        (after.hits - before.hits, after.misses - before.misses),
        (1, 1),
        "{after:?}"
    );
    node.shutdown().await.unwrap();
}

/// The tier holds at most its capacity: filling it with more columns than
/// fit evicts, and answers stay DataFusion's whatever is left in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tier_keeps_to_its_capacity_and_answers_right_after_evicting() {
    const BIG: usize = 1_500_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t/big.parquet");
    write_parquet(&file, BIG, 26);
    let mut config = node_config(vec![local_source("local", dir.path())], None);
    config.cache.hot = quiver_server::config::ByteSize(64 << 20);
    let node = quiver_server::RunningNode::start(config).await.unwrap();
    let mut c = client(&node).await;
    for column in COLUMNS {
        let mut req = scan("local", "t/big.parquet");
        req.columns = Some(vec![column.to_string()]);
        // A second miss decodes the column's six row groups, whether or
        // not they all still fit once decoded; a miss while the previous
        // fill still runs only asks again later.
        let before = stats(&mut c).await.hot.fills;
        let deadline = Instant::now() + Duration::from_secs(60);
        let s = loop {
            do_get(&mut c, &req).await.unwrap();
            let s = stats(&mut c).await.hot;
            if s.fills >= before + 6 {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "column {column} was never decoded: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(s.usage <= s.capacity, "{s:?}");
    }
    let s = stats(&mut c).await.hot;
    assert!(
        s.evictions > 0,
        "eight columns of 1.5 M rows fit in 64 MiB? {s:?}"
    );
    for (columns, filter) in [
        (vec!["id", "amount"], "qty > 90"),
        (vec!["name"], "amount < 0 AND flag"),
    ] {
        let mut req = scan("local", "t/big.parquet");
        req.columns = Some(columns.iter().map(|c| c.to_string()).collect());
        req.filter = Some(filter.into());
        let got = do_get(&mut c, &req).await.unwrap();
        let want = reference(&file, req.columns.as_deref(), req.filter.as_deref()).await;
        assert_eq!(rows(&got), rows(&want), "{req:?}");
    }
    node.shutdown().await.unwrap();
}

/// A Parquet file of one row group and `columns` Int64 columns of `rows`
/// rows each: a hot-tier fill of it inserts many arrays, one at a time.
fn write_wide(path: &std::path::Path, columns: usize, rows: usize) {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    let schema = Arc::new(Schema::new(
        (0..columns)
            .map(|c| Field::new(format!("c{c}"), DataType::Int64, false))
            .collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = (0..columns)
        .map(|c| {
            Arc::new(Int64Array::from_iter_values(
                (0..rows as i64).map(|r| r * columns as i64 + c as i64),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// Scans that look an object up while a fill is inserting its arrays must
/// read it from Parquet or from the tier, never skip it. A row group the
/// tier held only in part when its arrays were looked up, and in full by
/// the time the columns it lacked were listed, must still be answered: left
/// out, a 1-row-group object comes back empty, with no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_during_a_fill_return_every_row() {
    const COLUMNS: usize = 400;
    const ROWS: usize = 64;
    const ROUNDS: usize = 30;
    const READERS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    write_wide(&dir.path().join("t/wide.parquet"), COLUMNS, ROWS);
    let node = quiver_server::RunningNode::start(node_config(
        vec![local_source("local", dir.path())],
        None,
    ))
    .await
    .unwrap();
    let mut c = client(&node).await;
    let req = scan("local", "t/wide.parquet");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (mut c, req, stop) = (client(&node).await, req.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut answers = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let got = do_get(&mut c, &req).await.unwrap();
                assert_eq!(row_count(&got), ROWS, "a whole read lost rows");
                answers += 1;
            }
            answers
        }));
    }
    let body = br#"{"source":"local","path":"t/wide.parquet"}"#;
    for _ in 0..ROUNDS {
        let fills = stats(&mut c).await.hot.fills;
        action(&mut c, "evict", body).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while stats(&mut c).await.hot.fills == fills {
            assert!(
                Instant::now() < deadline,
                "the readers never filled the tier"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    node.shutdown().await.unwrap();
}

/// A fill waits for the scan that admitted it: decoding beside a cold scan
/// would take the cores that scan needs. Held open, the scan keeps the
/// fill back; once the client drops it, the fill runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_starts_when_the_scan_that_missed_is_over() {
    const ROWS: usize = 400_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t/held.parquet");
    write_parquet(&file, ROWS, 27);
    let node = quiver_server::RunningNode::start(node_config(
        vec![local_source("local", dir.path())],
        None,
    ))
    .await
    .unwrap();
    let mut c = client(&node).await;
    let req = scan("local", "t/held.parquet");
    // The first miss only remembers the column chunks.
    do_get(&mut c, &req).await.unwrap();
    assert_eq!(stats(&mut c).await.hot.fills, 0);
    // The second admits them, and holds the fill while its stream is open:
    // one batch read, the rest (far more than the transport buffers) not.
    let mut held = c.do_get(ticket(&req)).await.unwrap();
    futures::StreamExt::next(&mut held).await.unwrap().unwrap();
    let mut other = client(&node).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        stats(&mut other).await.hot.fills,
        0,
        "a fill ran while its scan was still streaming"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats(&mut other).await.hot.fills == 0 {
        assert!(Instant::now() < deadline, "the fill never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.shutdown().await.unwrap();
}
