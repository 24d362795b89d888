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
    // The tier's files are allocated in full at start-up, and hold nothing
    // yet: usage counts cached bytes, the allocation is reported apart.
    let empty = stats(&mut c).await;
    assert_eq!(empty.disk.usage, 0, "{:?}", empty.disk);
    let allocated = empty.disk.allocated.unwrap_or(0);
    assert!(
        allocated > empty.disk.capacity / 2 && allocated <= empty.disk.capacity,
        "{:?}",
        empty.disk
    );
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
    assert!(s.disk.usage < s.disk.capacity, "{:?}", s.disk);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_survives_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    write_parquet(&s3.file("t/a.parquet"), 5000, 3);
    write_parquet(&s3.file("t/b.parquet"), 5000, 4);
    let start = || RunningNode::start(node_config(vec![s3.source("lake")], Some(cache_dir.path())));
    let node = start().await.unwrap();
    let mut c = client(&node).await;
    for key in ["t/a.parquet", "t/b.parquet"] {
        do_get(&mut c, &scan("lake", key)).await.unwrap();
    }
    action(
        &mut c,
        "evict",
        br#"{"source":"lake","path":"t/a.parquet"}"#,
    )
    .await
    .unwrap();
    node.shutdown().await.unwrap();

    let node = start().await.unwrap();
    let mut c = client(&node).await;
    do_get(&mut c, &scan("lake", "t/b.parquet")).await.unwrap();
    assert_eq!(
        stats(&mut c).await.origin_bytes,
        0,
        "the kept object was lost"
    );
    let got = do_get(&mut c, &scan("lake", "t/a.parquet")).await.unwrap();
    let s = stats(&mut c).await;
    assert!(
        s.origin_bytes > 0,
        "the evicted object came back from the disk tier after a restart"
    );
    let want = reference(&s3.file("t/a.parquet"), None, None).await;
    assert_eq!(rows(&got), rows(&want));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_fetch_each_byte_once() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    let file = s3.file("t/a.parquet");
    write_parquet(&file, 20000, 4);
    let size = std::fs::metadata(&file).unwrap().len();
    // 100 ms per origin request, so that eight scans started together are
    // certainly in flight together.
    let link = quiver_testkit::link::Link::start(
        s3.inner().addr,
        quiver_testkit::link::LinkConfig {
            latency: std::time::Duration::from_millis(100),
            bandwidth: 0,
        },
    )
    .await
    .unwrap();
    let mut source = s3.source("lake");
    source.endpoint = Some(link.endpoint());
    let node = RunningNode::start(node_config(vec![source], None))
        .await
        .unwrap();
    let req = scan("lake", "t/a.parquet");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = client(&node).await;
        let req = req.clone();
        tasks.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let n = row_count(&do_get(&mut c, &req).await.unwrap());
            (n, started, std::time::Instant::now())
        }));
    }
    let mut spans = Vec::new();
    for t in tasks {
        let (n, started, ended) = t.await.unwrap();
        assert_eq!(n, 20000);
        spans.push((started, ended));
    }
    let last_start = spans.iter().map(|s| s.0).max().unwrap();
    let first_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(
        last_start < first_end,
        "the scans did not overlap: one ended before the last began"
    );
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

/// Random projections and filters over `key`, each compared with DataFusion
/// reading `file` directly; the whole file is scanned first.
async fn assert_answers_match(
    c: &mut arrow_flight::FlightClient,
    key: &str,
    file: &std::path::Path,
    seed: u64,
    cases: usize,
) {
    use rand::SeedableRng;
    let all = do_get(c, &scan("lake", key))
        .await
        .unwrap_or_else(|e| panic!("full scan failed: {e}"));
    assert_eq!(rows(&all), rows(&reference(file, None, None).await));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for case in 0..cases {
        let mut req = scan("lake", key);
        req.columns = random_columns(&mut rng);
        req.filter = Some(random_filter(&mut rng, 2));
        let got = do_get(c, &req)
            .await
            .unwrap_or_else(|e| panic!("case {case} {req:?} failed: {e}"));
        let want = reference(file, req.columns.as_deref(), req.filter.as_deref()).await;
        assert_eq!(rows(&got), rows(&want), "case {case}: {req:?}");
    }
}

/// A config whose memory tier holds only 8 chunks, so that reads come from
/// the disk tier.
fn disk_heavy_config(
    s3: &S3Server,
    dir: &std::path::Path,
    chunk: u64,
    memory: u64,
) -> quiver_server::Config {
    let mut config = node_config(vec![s3.source("lake")], Some(dir));
    config.cache.chunk = quiver_server::config::ByteSize(chunk);
    config.cache.memory = quiver_server::config::ByteSize(memory);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_tier_reopened_with_another_chunk_size_serves_the_right_rows() {
    let root = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    let file = s3.file("t/a.parquet");
    write_parquet(&file, 30_000, 21);

    // Fill the disk tier with 64 KiB chunks of the whole object.
    let node = RunningNode::start(disk_heavy_config(&s3, cache_dir.path(), 64 << 10, 64 << 20))
        .await
        .unwrap();
    let mut c = client(&node).await;
    assert_answers_match(&mut c, "t/a.parquet", &file, 1, 5).await;
    node.shutdown().await.unwrap();

    // Reopen it with 128 KiB chunks and a memory tier of 8 chunks.
    let node = RunningNode::start(disk_heavy_config(
        &s3,
        cache_dir.path(),
        128 << 10,
        8 * (128 << 10),
    ))
    .await
    .unwrap();
    let mut c = client(&node).await;
    assert_answers_match(&mut c, "t/a.parquet", &file, 2, 40).await;
    let s = stats(&mut c).await;
    assert!(s.disk.hits > 0, "the disk tier was not read: {s:?}");
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_cannot_share_one_disk_dir() {
    let root = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    write_parquet(&s3.file("t/a.parquet"), 2000, 22);
    let config = node_config(vec![s3.source("lake")], Some(cache_dir.path()));
    let first = RunningNode::start(config.clone()).await.unwrap();
    let err = RunningNode::start(config.clone())
        .await
        .err()
        .expect("a second node opened a disk_dir in use");
    let message = err.to_string();
    assert!(
        message.contains("already in use by another Quiver node")
            && message.contains(&cache_dir.path().display().to_string()),
        "{message}"
    );
    // The first node is unharmed, and the directory is free once it stops.
    do_get(&mut client(&first).await, &filtered("lake", "t/a.parquet"))
        .await
        .unwrap();
    first.shutdown().await.unwrap();
    let second = RunningNode::start(config).await.unwrap();
    do_get(&mut client(&second).await, &filtered("lake", "t/a.parquet"))
        .await
        .unwrap();
    second.shutdown().await.unwrap();
}

/// The disk tier's data files (not the lock file).
fn cache_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("foyer-storage"))
        })
        .collect();
    assert!(!files.is_empty(), "no disk tier files in {}", dir.display());
    files
}

/// How far into `path` entries were written: the tier's files are
/// allocated in full and zero-filled, so the end of the last non-zero byte.
fn written(path: &std::path::Path) -> u64 {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let (mut at, mut end) = (0u64, 0u64);
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return end;
        }
        if let Some(last) = buf[..n].iter().rposition(|&b| b != 0) {
            end = at + last as u64 + 1;
        }
        at += n as u64;
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Every file overwritten with random bytes.
    Random,
    /// One byte in every 8 KiB of written data flipped, so that block
    /// indexes partly survive and damaged entries are found on read.
    Flipped,
    /// Files cut in the middle of their data, not at a page boundary.
    Truncated,
    /// Files cut to nothing.
    Emptied,
}

fn damage(dir: &std::path::Path, how: Damage) {
    use rand::{Rng, RngCore, SeedableRng};
    use std::io::{Seek, SeekFrom, Write};
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    for path in cache_files(dir) {
        let len = std::fs::metadata(&path).unwrap().len();
        let data = written(&path).min(len);
        if data == 0 {
            continue;
        }
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        match how {
            Damage::Random => {
                let mut buf = vec![0u8; 1 << 20];
                let mut at = 0;
                while at < len {
                    rng.fill_bytes(&mut buf);
                    let n = buf.len().min((len - at) as usize);
                    f.write_all(&buf[..n]).unwrap();
                    at += n as u64;
                }
            }
            Damage::Flipped => {
                let mut at = 0;
                while at < data {
                    let pos = at + rng.random_range(0..8192u64.min(data - at));
                    f.seek(SeekFrom::Start(pos)).unwrap();
                    f.write_all(&[rng.random::<u8>() | 1]).unwrap();
                    at += 8192;
                }
            }
            Damage::Truncated => f.set_len(data / 2 + 1234).unwrap(),
            Damage::Emptied => f.set_len(0).unwrap(),
        }
        f.sync_all().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_disk_entries_are_misses_not_wrong_rows() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    let file = s3.file("t/a.parquet");
    write_parquet(&file, 30_000, 23);
    let chunk = 64 << 10;
    for (i, how) in [
        Damage::Random,
        Damage::Flipped,
        Damage::Truncated,
        Damage::Emptied,
    ]
    .into_iter()
    .enumerate()
    {
        let cache_dir = tempfile::tempdir().unwrap();
        let node = RunningNode::start(disk_heavy_config(&s3, cache_dir.path(), chunk, 64 << 20))
            .await
            .unwrap();
        let mut c = client(&node).await;
        assert_answers_match(&mut c, "t/a.parquet", &file, 30 + i as u64, 3).await;
        node.shutdown().await.unwrap();

        damage(cache_dir.path(), how);

        let node = RunningNode::start(disk_heavy_config(&s3, cache_dir.path(), chunk, 8 * chunk))
            .await
            .unwrap_or_else(|e| panic!("{how:?}: the node did not restart: {e}"));
        let mut c = client(&node).await;
        assert_answers_match(&mut c, "t/a.parquet", &file, 40 + i as u64, 15).await;
        let s = stats(&mut c).await;
        eprintln!(
            "{how:?}: disk hits {}, misses {}, disk errors {}",
            s.disk.hits,
            s.misses,
            node.core.metrics.disk_errors.get()
        );
        assert!(s.misses > 0, "{how:?}: nothing was read again: {s:?}");
        node.shutdown().await.unwrap();
    }
}
