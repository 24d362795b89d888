//! A local file rewritten in place, to the same size, with its old access
//! and modification times put back (what `os.utime(path, ns=...)` does after
//! a rewrite) is a new version: the node must notice it, and no answer may
//! mix rows of the old and the new bytes. An identity without the change
//! time would keep the ETag across such a rewrite, and a scan would answer
//! the columns it had cached from the old file and the rest from the new one.

use std::fs::{File, FileTimes};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::FlightClient;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use quiver_protocol::ScanRequest;
use quiver_server::config::Span;
use quiver_server::RunningNode;
use tonic::Code;

use crate::common::*;

const ROWS: i64 = 100_000;
const KEY: &str = "t/rewritten.parquet";

/// A Parquet file whose size depends only on its row count: fixed-width
/// columns, plain encoding, no compression and no statistics, so that
/// versions with other `seed`s are the same number of bytes. At 3.2 MB in
/// four row groups it spans many 256 KiB cache chunks, so caching one column
/// leaves the others' chunks to be read later.
fn same_size_parquet(seed: i64) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("a", DataType::Int64, false),
        Field::new("b", DataType::Float64, false),
        Field::new("c", DataType::Int64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..ROWS)),
        Arc::new(Int64Array::from_iter_values(
            (0..ROWS).map(|i| i * seed + seed),
        )),
        Arc::new(Float64Array::from_iter_values(
            (0..ROWS).map(|i| (i * seed) as f64 / 4.0),
        )),
        Arc::new(Int64Array::from_iter_values(
            (0..ROWS).map(|i| (i ^ seed) * 3),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_max_row_group_row_count(Some(ROWS as usize / 4))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

/// Rewrites `file` in place (same inode, same size) with `bytes`, then puts
/// its access and modification times back to the exact nanoseconds they
/// had, as a careless tool or a restore-times step would.
fn rewrite_keeping_times(file: &Path, bytes: &[u8]) {
    let before = std::fs::metadata(file).unwrap();
    assert_eq!(
        before.len(),
        bytes.len() as u64,
        "the versions differ in size"
    );
    std::fs::write(file, bytes).unwrap();
    let times = FileTimes::new()
        .set_accessed(before.accessed().unwrap())
        .set_modified(before.modified().unwrap());
    File::options()
        .write(true)
        .open(file)
        .unwrap()
        .set_times(times)
        .unwrap();
    let after = std::fs::metadata(file).unwrap();
    assert_eq!(after.ino(), before.ino(), "the rewrite was not in place");
    assert_eq!(after.len(), before.len());
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (before.mtime(), before.mtime_nsec()),
        "the modification time was not put back"
    );
}

async fn start(dir: &Path, validate: Duration) -> (RunningNode, FlightClient) {
    let mut source = local_source("local", dir);
    source.validate = Span(validate);
    let node = RunningNode::start(node_config(vec![source], None))
        .await
        .unwrap();
    let c = client(&node).await;
    (node, c)
}

fn columns(names: &[&str]) -> ScanRequest {
    ScanRequest {
        columns: Some(names.iter().map(|c| c.to_string()).collect()),
        ..scan("local", KEY)
    }
}

/// Scans `req` until the hot tier answers it, so that both the byte tiers
/// and the decoded tier hold the columns it reads.
async fn cache_fully(c: &mut FlightClient, req: &ScanRequest) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let before = stats(c).await.hot.hits;
        do_get(c, req).await.unwrap();
        if stats(c).await.hot.hits > before {
            return;
        }
        assert!(Instant::now() < deadline, "the hot tier never held {req:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (a) With validation on every request, the scan after the rewrite answers
/// exactly the new file, although the old file's `a` column was cached in
/// every tier and the rewrite kept size, inode and modification time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_size_rewrite_with_its_mtime_put_back_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(KEY);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, same_size_parquet(7)).unwrap();
    let old = rows(&reference(&file, None, None).await);
    let (node, mut c) = start(dir.path(), Duration::ZERO).await;

    cache_fully(&mut c, &columns(&["a"])).await;
    rewrite_keeping_times(&file, &same_size_parquet(11));
    let new = rows(&reference(&file, None, None).await);
    assert_ne!(old, new);

    let got = rows(&do_get(&mut c, &scan("local", KEY)).await.unwrap());
    assert!(got == new, "{}", describe(&got, &old, &new));
    node.shutdown().await.unwrap();
}

/// (b) With a `validate` window, a scan inside the window may answer the old
/// version, but only wholly: from what is cached, or it fails with
/// `CHANGED <etag>` when it needs bytes the rewrite replaced. Once the
/// window has passed, scans answer the new file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_validate_a_scan_answers_one_version_and_after_it_the_new_one() {
    let validate = Duration::from_secs(2);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(KEY);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, same_size_parquet(7)).unwrap();
    let old = rows(&reference(&file, None, None).await);
    let old_a = rows(&reference(&file, Some(&["a".to_string()]), None).await);
    let (node, mut c) = start(dir.path(), validate).await;

    // Only `a` and the footer are cached when the file changes: the other
    // columns must come from the origin, which now holds other bytes.
    cache_fully(&mut c, &columns(&["a"])).await;
    let rewritten = Instant::now();
    rewrite_keeping_times(&file, &same_size_parquet(11));
    let new = rows(&reference(&file, None, None).await);

    // Inside the window the node still trusts the old identity. What it
    // holds of it is answered whole; what it lacks ends the scan.
    let cached = do_get(&mut c, &columns(&["a"])).await;
    assert_eq!(
        rows(&cached.unwrap()),
        old_a,
        "a cached column of the old version changed"
    );
    match do_get(&mut c, &scan("local", KEY)).await {
        Err(status) => {
            assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
            assert!(
                status.message().starts_with("CHANGED "),
                "{}",
                status.message()
            );
        }
        Ok(batches) => {
            let got = rows(&batches);
            assert!(got == old, "{}", describe(&got, &old, &new));
        }
    }
    assert!(
        rewritten.elapsed() < validate,
        "the test ran too slowly to look inside the validate window"
    );

    // After the window (and after any CHANGED, which forgets the identity)
    // every scan answers the new file, however much of the old was cached.
    tokio::time::sleep(validate.saturating_sub(rewritten.elapsed()) + Duration::from_millis(200))
        .await;
    let got = rows(&do_get(&mut c, &scan("local", KEY)).await.unwrap());
    assert!(got == new, "{}", describe(&got, &old, &new));
    let got_a = rows(&do_get(&mut c, &columns(&["a"])).await.unwrap());
    let new_a = rows(&reference(&file, Some(&["a".to_string()]), None).await);
    assert_eq!(got_a, new_a, "the old version's cached column was answered");
    node.shutdown().await.unwrap();
}

/// A fully cached old version is not served past the window either: the
/// rewrite is seen within `validate`, even when no byte has to be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fully_cached_old_version_is_replaced_once_validate_passes() {
    let validate = Duration::from_millis(800);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(KEY);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, same_size_parquet(7)).unwrap();
    let old = rows(&reference(&file, None, None).await);
    let (node, mut c) = start(dir.path(), validate).await;

    cache_fully(&mut c, &scan("local", KEY)).await;
    rewrite_keeping_times(&file, &same_size_parquet(11));
    let new = rows(&reference(&file, None, None).await);
    tokio::time::sleep(validate + Duration::from_millis(200)).await;
    let got = rows(&do_get(&mut c, &scan("local", KEY)).await.unwrap());
    assert!(got == new, "{}", describe(&got, &old, &new));
    node.shutdown().await.unwrap();
}

/// Says which version each answered row belongs to, for a failure message
/// that shows a mix rather than two walls of rows.
fn describe(got: &[String], old: &[String], new: &[String]) -> String {
    let in_old = |r: &&String| old.binary_search(r).is_ok();
    let in_new = |r: &&String| new.binary_search(r).is_ok();
    let neither = got.iter().filter(|r| !in_old(r) && !in_new(r)).count();
    format!(
        "{} rows answered: {} of the old version, {} of the new, {neither} of neither (a mix of columns)",
        got.len(),
        got.iter().filter(in_old).count(),
        got.iter().filter(in_new).count(),
    )
}
