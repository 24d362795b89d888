//! Micro-benchmarks of the chunk cache's two paths: a hit (memory tier
//! lookup and slicing) and an insert (a miss that reads the origin and
//! stores the chunk). The origin is a local directory so the numbers are
//! the cache's own cost, not a network's.

use std::hint::black_box;
use std::slice;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use object_store::path::Path;
use object_store::ObjectStore;
use quiver_server::cache::ChunkCache;
use quiver_server::config::{ByteSize, CacheConfig, SourceConfig};
use quiver_server::metrics::Metrics;
use quiver_server::source::{ObjectId, Source};

const MIB: u64 = 1 << 20;

struct Fixture {
    cache: ChunkCache,
    origin: Arc<dyn ObjectStore>,
    id: ObjectId,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let data: Vec<u8> = (0..16 * MIB).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("object.bin"), data).expect("write object");
    let url = format!("file://{}/", dir.path().display());
    let metrics = Arc::new(Metrics::new());
    let source = Source::new(&SourceConfig::new("bench", &url), 10, &metrics).expect("source");
    let id = source
        .identity(&Path::from("object.bin"))
        .await
        .expect("object identity");
    let cfg = CacheConfig {
        memory: ByteSize(256 * MIB),
        disk: ByteSize(0),
        ..CacheConfig::default()
    };
    let cache = ChunkCache::open(&cfg, metrics).await.expect("cache");
    Fixture {
        cache,
        origin: source.origin.clone(),
        id,
        _dir: dir,
    }
}

fn chunk_cache(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let f = rt.block_on(fixture());
    let chunk = f.cache.chunk_size();
    let mut g = c.benchmark_group("chunk_cache");

    // Warm every chunk the hit benchmarks touch.
    let whole = 0..f.id.size;
    rt.block_on(
        f.cache
            .read_ranges(&f.id, &f.origin, slice::from_ref(&whole)),
    )
    .expect("warm");
    g.throughput(Throughput::Bytes(chunk));
    g.bench_function("get_hit_chunk", |b| {
        let second = chunk..2 * chunk;
        b.to_async(&rt).iter(|| async {
            f.cache
                .read_ranges(&f.id, &f.origin, black_box(slice::from_ref(&second)))
                .await
                .expect("hit")
        })
    });
    g.throughput(Throughput::Bytes(64 * 1024));
    g.bench_function("get_hit_64kib_across_chunks", |b| {
        let start = chunk - 32 * 1024;
        let straddling = start..start + 64 * 1024;
        b.to_async(&rt).iter(|| async {
            f.cache
                .read_ranges(&f.id, &f.origin, black_box(slice::from_ref(&straddling)))
                .await
                .expect("hit")
        })
    });
    g.throughput(Throughput::Bytes(chunk));
    g.bench_function("insert_chunk_from_origin", |b| {
        let first = 0..chunk;
        b.to_async(&rt).iter_batched(
            || {
                f.cache.evict(&f.id);
            },
            |()| async {
                f.cache
                    .read_ranges(&f.id, &f.origin, black_box(slice::from_ref(&first)))
                    .await
                    .expect("miss")
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, chunk_cache);
criterion_main!(benches);
