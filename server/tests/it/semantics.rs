//! The semantics `docs/protocol.md` ("Semantics") documents, on both the
//! Parquet path and the hot tier: floats in total order with -0.0 = 0.0 and
//! every NaN equal and above +inf, pruning that never drops a NaN, exact
//! literals, and integer overflow as the request's error, never a wrapped
//! value. The expected rows are computed here from the values written, by
//! those rules, not by the engine under test.

use std::cmp::Ordering;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    AsArray, Decimal128Array, Float32Array, Float64Array, Int32Array, Int64Array, Int8Array,
    RecordBatch,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use quiver_protocol::ScanRequest;
use tonic::Code;

use crate::common::*;
use crate::hot::fill_for;

/// A NaN with its sign bit set: totalOrder puts it below -inf.
fn negative_nan() -> f64 {
    f64::from_bits(f64::NAN.to_bits() | (1 << 63))
}

fn floats() -> Vec<f64> {
    vec![
        1.0,
        2.0,
        f64::NAN,
        5.0,
        6.0,
        f64::NAN,
        -0.0,
        0.0,
        1.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        negative_nan(),
    ]
}

const INTS: [i64; 12] = [
    i64::MAX,
    1,
    i64::MIN,
    0,
    -1,
    7,
    i64::MAX - 1,
    i64::MIN + 1,
    3,
    4,
    5,
    6,
];
const TINY: [i8; 12] = [127, -128, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9];
const DECIMALS: [i128; 12] = [
    12345,
    12346,
    -12345,
    0,
    99_999_999_999_999_999,
    1,
    2,
    3,
    12345,
    5,
    6,
    7,
];

/// Three rows per row group, with statistics: pruning decides per group.
fn write(path: &Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("f", DataType::Float64, false),
        Field::new("g", DataType::Float32, false),
        Field::new("i", DataType::Int64, false),
        Field::new("t", DataType::Int8, false),
        Field::new("d", DataType::Decimal128(18, 4), false),
    ]));
    let f = floats();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from_iter_values(0..12)),
            Arc::new(Float64Array::from(f.clone())),
            Arc::new(Float32Array::from_iter_values(f.iter().map(|v| *v as f32))),
            Arc::new(Int64Array::from(INTS.to_vec())),
            Arc::new(Int8Array::from(TINY.to_vec())),
            Arc::new(
                Decimal128Array::from(DECIMALS.to_vec())
                    .with_precision_and_scale(18, 4)
                    .unwrap(),
            ),
        ],
    )
    .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(3))
        .set_statistics_enabled(EnabledStatistics::Page)
        // One row a page: the page index prunes too.
        .set_data_page_row_count_limit(1)
        .set_write_batch_size(1)
        .build();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// The documented order of floats: totalOrder after mapping -0.0 to 0.0
/// and every NaN to the positive one.
fn order(a: f64, b: f64) -> Ordering {
    let key = |v: f64| if v.is_nan() { f64::NAN } else { v + 0.0 };
    key(a).total_cmp(&key(b))
}

type Rule = Box<dyn Fn(usize) -> bool>;

/// The float of row `i`.
fn fl(i: usize) -> f64 {
    floats()[i]
}

/// Filters with the rows they must keep, by the documented rules.
fn cases() -> Vec<(&'static str, Rule)> {
    vec![
        ("f > 2.5", Box::new(|i| order(fl(i), 2.5).is_gt())),
        ("g > 2.5", Box::new(|i| order(fl(i), 2.5).is_gt())),
        ("f = 'NaN'", Box::new(|i| fl(i).is_nan())),
        ("f = CAST('NaN' AS DOUBLE)", Box::new(|i| fl(i).is_nan())),
        ("f IN (0.0)", Box::new(|i| order(fl(i), 0.0).is_eq())),
        ("f = -0.0", Box::new(|i| order(fl(i), 0.0).is_eq())),
        (
            "g IN (-0.0, 6)",
            Box::new(|i| order(fl(i), 0.0).is_eq() || fl(i) == 6.0),
        ),
        ("f < 0.0", Box::new(|i| order(fl(i), 0.0).is_lt())),
        (
            "f >= 'inf'",
            Box::new(|i| order(fl(i), f64::INFINITY).is_ge()),
        ),
        (
            "f <= '-inf'",
            Box::new(|i| order(fl(i), f64::NEG_INFINITY).is_le()),
        ),
        (
            "f NOT IN (1.0, 'NaN')",
            Box::new(|i| !(fl(i) == 1.0 || fl(i).is_nan())),
        ),
        (
            "f IS NOT DISTINCT FROM CAST('NaN' AS DOUBLE)",
            Box::new(|i| fl(i).is_nan()),
        ),
        (
            "f IS DISTINCT FROM 0.0",
            Box::new(|i| !order(fl(i), 0.0).is_eq()),
        ),
        (
            "f BETWEEN 5 AND 'NaN'",
            Box::new(|i| order(fl(i), 5.0).is_ge()),
        ),
        (
            "CASE f WHEN 0.0 THEN true ELSE false END",
            Box::new(|i| order(fl(i), 0.0).is_eq()),
        ),
        ("f > -1e300", Box::new(|i| order(fl(i), -1e300).is_gt())),
        (
            "f <= 1.7976931348623157e308",
            Box::new(|i| order(fl(i), f64::MAX).is_le()),
        ),
        ("i > -9223372036854775809", Box::new(|_| true)),
        ("i < 9223372036854775808", Box::new(|_| true)),
        ("i >= -9223372036854775808", Box::new(|_| true)),
        ("d = 1.2345", Box::new(|i| DECIMALS[i] == 12345)),
        ("d > 1.23455", Box::new(|i| DECIMALS[i] > 12345)),
        ("d < 0", Box::new(|i| DECIMALS[i] < 0)),
    ]
}

/// Filters that overflow on some row: the request's error, naming it.
const OVERFLOWS: [&str; 4] = ["i + 1 > 0", "t * t > 16000", "-i > 0", "i - 2 < 0"];

fn ids(batches: &[RecordBatch]) -> Vec<i32> {
    let mut out: Vec<i32> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_primitive::<Int32Type>()
                .iter()
                .flatten()
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort_unstable();
    out
}

async fn check_all(c: &mut arrow_flight::FlightClient, path: &str, tier: &str) {
    for (filter, rule) in cases() {
        let mut req: ScanRequest = scan("local", path);
        req.columns = Some(vec!["id".into()]);
        req.filter = Some(filter.into());
        let got = do_get(c, &req)
            .await
            .unwrap_or_else(|e| panic!("{tier}: `{filter}` failed: {e}"));
        let want: Vec<i32> = (0..12).filter(|&i| rule(i)).map(|i| i as i32).collect();
        assert_eq!(ids(&got), want, "{tier}: `{filter}`");
    }
    for filter in OVERFLOWS {
        let mut req: ScanRequest = scan("local", path);
        req.columns = Some(vec!["id".into()]);
        req.filter = Some(filter.into());
        let err = do_get(c, &req).await.expect_err(filter);
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{tier}: `{filter}`: {err}"
        );
        assert!(
            err.message().to_lowercase().contains("overflow"),
            "{tier}: `{filter}`: {err}"
        );
    }
    // A constant that overflows is refused when the filter is planned.
    let mut req: ScanRequest = scan("local", path);
    req.filter = Some("i > 9223372036854775807 + 1".into());
    let err = do_get(c, &req).await.expect_err("constant overflow");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floats_overflow_and_literals_follow_the_documented_semantics_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("t/edge.parquet"));

    // The Parquet path alone: a node without a hot tier.
    let mut config = node_config(vec![local_source("local", dir.path())], None);
    config.cache.hot = quiver_server::config::ByteSize(0);
    let cold = quiver_server::RunningNode::start(config).await.unwrap();
    let mut c = client(&cold).await;
    check_all(&mut c, "t/edge.parquet", "parquet").await;
    cold.shutdown().await.unwrap();

    // The hot tier, holding the whole object.
    let node = quiver_server::RunningNode::start(node_config(
        vec![local_source("local", dir.path())],
        None,
    ))
    .await
    .unwrap();
    let mut c = client(&node).await;
    fill_for(&mut c, &scan("local", "t/edge.parquet")).await;
    let before = stats(&mut c).await.hot.hits;
    check_all(&mut c, "t/edge.parquet", "hot").await;
    let hits = stats(&mut c).await.hot.hits - before;
    assert!(
        hits >= cases().len() as u64,
        "only {hits} scans were answered by the hot tier"
    );
    node.shutdown().await.unwrap();
}
