//! Micro-benchmarks of the per-request protocol work every DoGet pays: the
//! slot function (routing) and ticket decoding.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quiver_protocol::{key_slot, slot_of, ScanRequest};

fn slots(c: &mut Criterion) {
    let mut g = c.benchmark_group("slot");
    let key = "lake/warehouse/lineitem/part-00042-7f3c.snappy.parquet";
    g.throughput(Throughput::Bytes(key.len() as u64));
    g.bench_function("key_slot", |b| b.iter(|| key_slot(black_box(key))));
    g.bench_function("key_slot_hash_tag", |b| {
        b.iter(|| key_slot(black_box("lake/{lineitem}/part-00042.parquet")))
    });
    g.bench_function("slot_of", |b| {
        b.iter(|| {
            slot_of(
                black_box("lake"),
                black_box("warehouse/lineitem/part-00042.parquet"),
            )
        })
    });
    g.finish();
}

fn tickets(c: &mut Criterion) {
    let mut g = c.benchmark_group("ticket_decode");
    let minimal = ScanRequest {
        source: Some("lake".into()),
        path: Some("tpch/lineitem/part-0.parquet".into()),
        ..Default::default()
    }
    .to_bytes();
    let full = ScanRequest {
        source: Some("lake".into()),
        path: Some("tpch/lineitem/part-0.parquet".into()),
        columns: Some((0..16).map(|i| format!("column_{i}")).collect()),
        filter: Some(
            "l_partkey <= 2000 AND l_shipdate >= DATE '1995-01-01' AND l_comment LIKE '%quick%'"
                .into(),
        ),
        limit: Some(100_000),
        etag: Some("\"9b2cf535f27731c974343645a3985328\"".into()),
        row_groups: Some((0..64).collect()),
        ..Default::default()
    }
    .to_bytes();
    for (name, ticket) in [("minimal", minimal), ("full", full)] {
        g.throughput(Throughput::Bytes(ticket.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| ScanRequest::from_bytes(black_box(&ticket)))
        });
    }
    let malformed = br#"{"source": "lake", "path": 7}"#;
    g.throughput(Throughput::Bytes(malformed.len() as u64));
    g.bench_function("malformed", |b| {
        b.iter(|| ScanRequest::from_bytes(black_box(malformed)))
    });
    g.finish();
}

criterion_group!(benches, slots, tickets);
criterion_main!(benches);
