//! The chunk cache reads exactly what is asked for: a miss fetches the
//! missing bytes of the chunks a read touches, not whole chunks, each byte
//! once however many readers want it at the same time, and every read
//! returns the object's bytes.

use std::ops::Range;
use std::sync::Arc;

use object_store::path::Path;
use object_store::ObjectStore;
use quiver_server::cache::ChunkCache;
use quiver_server::config::{ByteSize, CacheConfig, SourceConfig};
use quiver_server::metrics::Metrics;
use quiver_server::source::{ObjectId, Source};
use rand::{Rng, SeedableRng};

const KIB: u64 = 1 << 10;

fn one(range: Range<u64>) -> Vec<Range<u64>> {
    vec![range]
}

struct Fixture {
    cache: ChunkCache,
    origin: Arc<dyn ObjectStore>,
    id: ObjectId,
    data: Vec<u8>,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

async fn fixture(size: u64, chunk: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.path().join("object.bin"), &data).unwrap();
    let url = format!("file://{}/", dir.path().display());
    let metrics = Arc::new(Metrics::new());
    let source = Source::new(&SourceConfig::new("t", &url), 10, &metrics).unwrap();
    let id = source.identity(&Path::from("object.bin")).await.unwrap();
    let cfg = CacheConfig {
        memory: ByteSize(64 << 20),
        disk: ByteSize(0),
        chunk: ByteSize(chunk),
        ..CacheConfig::default()
    };
    let cache = ChunkCache::open(&cfg, metrics.clone()).await.unwrap();
    Fixture {
        cache,
        origin: source.origin.clone(),
        id,
        data,
        metrics,
        _dir: dir,
    }
}

impl Fixture {
    async fn read(&self, ranges: &[Range<u64>]) {
        let got = self
            .cache
            .read_ranges(&self.id, &self.origin, ranges)
            .await
            .unwrap();
        for (r, bytes) in ranges.iter().zip(got) {
            assert!(
                bytes[..] == self.data[r.start as usize..r.end as usize],
                "bytes {r:?} differ from the object's"
            );
        }
    }

    fn origin_bytes(&self) -> u64 {
        self.metrics.origin_bytes.get()
    }
}

#[tokio::test]
async fn a_miss_fetches_the_bytes_asked_for_not_whole_chunks() {
    let f = fixture(4096 * KIB, 1024 * KIB).await;
    // Two ranges in two chunks, far from each other and from the chunks'
    // ends: 200 KiB fetched, not 2 MiB.
    f.read(&[100 * KIB..200 * KIB, 1500 * KIB..1600 * KIB])
        .await;
    assert_eq!(f.origin_bytes(), 200 * KIB);
    // Overlapping what is held: only the 50 KiB beyond it.
    f.read(&one(150 * KIB..250 * KIB)).await;
    assert_eq!(f.origin_bytes(), 250 * KIB);
    // Already held: nothing.
    f.read(&[120 * KIB..180 * KIB, 1550 * KIB..1560 * KIB])
        .await;
    assert_eq!(f.origin_bytes(), 250 * KIB);
    // The whole object: every byte not yet held, once.
    f.read(&one(0..4096 * KIB)).await;
    assert_eq!(f.origin_bytes(), 4096 * KIB);
    assert_eq!(f.cache.cached_bytes(&f.id), 4096 * KIB);
}

#[tokio::test]
async fn small_holes_are_read_rather_than_left() {
    let f = fixture(4096 * KIB, 1024 * KIB).await;
    let requests = f.metrics.origin_requests.get();
    // A hole of 10 KiB (under a sixteenth of a chunk) between two ranges:
    // one GET, and the hole is held too.
    f.read(&[100 * KIB..200 * KIB, 210 * KIB..300 * KIB]).await;
    assert_eq!(f.metrics.origin_requests.get(), requests + 1);
    assert_eq!(f.origin_bytes(), 200 * KIB);
    let (needed, cached) = f.cache.coverage(&f.id, &one(195 * KIB..215 * KIB));
    assert_eq!((needed, cached), (20 * KIB, 20 * KIB));
    // A hole of 500 KiB is left: two GETs, and the hole is not held.
    f.read(&[1100 * KIB..1200 * KIB, 1700 * KIB..1800 * KIB])
        .await;
    assert_eq!(f.metrics.origin_requests.get(), requests + 3);
    let (needed, cached) = f.cache.coverage(&f.id, &one(1100 * KIB..1800 * KIB));
    assert_eq!((needed, cached), (700 * KIB, 200 * KIB));
    // A chunk held in part is not handed off whole.
    assert_eq!(f.cache.cached_chunk(&f.id, 1).await, None);
}

/// Many readers of random ranges at once get the object's bytes, and
/// together fetch each byte once: no two GETs overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_random_reads_return_the_objects_bytes_fetched_once() {
    let size = 3000 * KIB + 123;
    let chunk = 64 * KIB;
    let f = Arc::new(fixture(size, chunk).await);
    let mut tasks = Vec::new();
    for seed in 0..16u64 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            for _ in 0..20 {
                let ranges: Vec<Range<u64>> = (0..rng.random_range(1..6))
                    .map(|_| {
                        let start = rng.random_range(0..size);
                        let len = rng.random_range(0..=(3 * chunk)).min(size - start);
                        start..start + len
                    })
                    .collect();
                f.read(&ranges).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    f.read(&one(0..size)).await;
    assert_eq!(f.origin_bytes(), size, "some bytes were fetched twice");
    assert_eq!(f.cache.cached_bytes(&f.id), size);
}

/// Scattered small reads of one chunk do not leave an entry of ever more
/// parts: once it holds 16, the next read fetches the rest of the chunk.
#[tokio::test]
async fn scattered_small_reads_end_in_a_whole_chunk() {
    let f = fixture(2048 * KIB, 1024 * KIB).await;
    for i in 0..16 {
        let at = 100 * KIB + i * 50 * KIB;
        f.read(&one(at..at + 10)).await;
    }
    assert_eq!(f.origin_bytes(), 16 * 10);
    assert_eq!(f.cache.cached_chunk(&f.id, 0).await, None);
    f.read(&one(999 * KIB..999 * KIB + 10)).await;
    assert_eq!(f.origin_bytes(), 1024 * KIB);
    assert!(f.cache.cached_chunk(&f.id, 0).await.is_some());
}
