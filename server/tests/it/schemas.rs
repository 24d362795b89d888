//! What a node announces is what it streams (`docs/protocol.md`, "Type
//! mapping"): for dictionary, view and large columns, GetFlightInfo,
//! GetSchema, ListFlights and every DoGet, on the Parquet path and the hot
//! tier, give one schema; and a prefix whose objects differ is refused
//! naming both objects and the column.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryViewArray, DictionaryArray, Int32Array, Int64Array, LargeBinaryArray,
    LargeListArray, LargeStringArray, RecordBatch, StringArray, StringViewArray, StructArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow_flight::{FlightClient, FlightDescriptor};
use futures::TryStreamExt;
use parquet::arrow::ArrowWriter;
use quiver_protocol::ScanRequest;
use quiver_server::RunningNode;

use crate::common::*;

fn write(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// A file with a dictionary string column (as pyarrow writes
/// `dictionary_encode()`d strings), view and large strings and binaries, a
/// large list and a struct holding a large string.
fn typed_batch(rows: usize) -> RecordBatch {
    let words = ["a", "b", "c"];
    let tag: DictionaryArray<Int32Type> = (0..rows)
        .map(|i| (i % 4 != 3).then(|| words[i % 4]))
        .collect();
    let id = Int64Array::from_iter_values(0..rows as i64);
    let view = StringViewArray::from_iter_values((0..rows).map(|i| format!("view-{i}")));
    let bin = BinaryViewArray::from_iter_values((0..rows).map(|i| format!("b{i}").into_bytes()));
    let large = LargeStringArray::from_iter_values((0..rows).map(|i| format!("large-{i}")));
    let lbin = LargeBinaryArray::from_iter_values((0..rows).map(|i| format!("L{i}").into_bytes()));
    let llist = LargeListArray::from_iter_primitive::<arrow::datatypes::Int32Type, _, _>(
        (0..rows).map(|i| Some(vec![Some(i as i32), None, Some(-(i as i32))])),
    );
    let inner = LargeStringArray::from_iter_values((0..rows).map(|i| format!("s{i}")));
    let s = StructArray::from(vec![(
        Arc::new(Field::new("v", DataType::LargeUtf8, false)),
        Arc::new(inner) as ArrayRef,
    )]);
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(id)),
        ("tag", Arc::new(tag)),
        ("view", Arc::new(view)),
        ("bin", Arc::new(bin)),
        ("large", Arc::new(large)),
        ("lbin", Arc::new(lbin)),
        ("llist", Arc::new(llist)),
        ("s", Arc::new(s)),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

/// Whether `ty` or a type nested in it is one the node must not send.
fn unmapped(ty: &DataType) -> bool {
    match ty {
        DataType::Dictionary(..)
        | DataType::Utf8View
        | DataType::BinaryView
        | DataType::LargeUtf8
        | DataType::LargeBinary
        | DataType::LargeList(_)
        | DataType::ListView(_)
        | DataType::LargeListView(_) => true,
        DataType::List(f) | DataType::FixedSizeList(f, _) | DataType::Map(f, _) => {
            unmapped(f.data_type())
        }
        DataType::Struct(fields) => fields.iter().any(|f| unmapped(f.data_type())),
        _ => false,
    }
}

/// The schema DoGet of `req` streams (its first message), and its batches.
async fn streamed(c: &mut FlightClient, req: &ScanRequest) -> (SchemaRef, Vec<RecordBatch>) {
    let mut stream = c.do_get(ticket(req)).await.unwrap();
    let mut batches = Vec::new();
    while let Some(b) = stream.try_next().await.unwrap() {
        batches.push(b);
    }
    let schema = stream.schema().expect("the stream sent its schema").clone();
    (schema, batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dictionary_view_and_large_columns_are_announced_as_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typed/a.parquet");
    write(&file, &typed_batch(500));
    let node = RunningNode::start(node_config(vec![local_source("local", dir.path())], None))
        .await
        .unwrap();
    let mut c = client(&node).await;
    let with = |columns: Option<&[&str]>, filter: Option<&str>| ScanRequest {
        columns: columns.map(|c| c.iter().map(|s| s.to_string()).collect()),
        filter: filter.map(String::from),
        ..scan("local", "typed/a.parquet")
    };
    let requests = [
        with(None, None),
        with(Some(&["tag", "id", "llist"]), None),
        with(None, Some("tag = 'b'")),
        with(Some(&["id", "view", "s"]), Some("tag = 'b' AND id > 100")),
        // A prefix is planned the same way.
        ScanRequest {
            filter: Some("tag IS NULL".into()),
            ..scan("local", "typed/")
        },
    ];
    for req in &requests {
        let info = flight_info(&mut c, req).await.unwrap();
        let announced = Arc::new(info.clone().try_decode_schema().unwrap());
        for f in announced.fields() {
            assert!(!unmapped(f.data_type()), "{req:?} announces {f}");
        }
        let schema: Schema = c
            .get_schema(FlightDescriptor::new_cmd(req.to_bytes()))
            .await
            .unwrap();
        assert_eq!(schema, *announced, "GetSchema of {req:?}");
        let columns: Option<Vec<String>> = req.columns.clone();
        let expected = rows(&reference(&file, columns.as_deref(), req.filter.as_deref()).await);
        // The first read misses the hot tier, the second admits the
        // columns, the third is answered from it.
        for pass in 0..3 {
            let mut got = Vec::new();
            for e in &info.endpoint {
                let t = ScanRequest::from_bytes(&e.ticket.as_ref().unwrap().ticket).unwrap();
                let (schema, batches) = streamed(&mut c, &t).await;
                assert_eq!(schema, announced, "pass {pass} of {req:?}");
                for b in &batches {
                    assert_eq!(b.schema(), announced, "pass {pass} of {req:?}");
                }
                got.extend(batches);
            }
            assert_eq!(rows(&got), expected, "pass {pass} of {req:?}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    // The passes above were answered from the hot tier too.
    assert!(stats(&mut c).await.hot.hits > 0, "no scan hit the hot tier");
    let listed = c
        .list_flights(
            serde_json::to_vec(&serde_json::json!({"source": "local", "path": "typed/a.parquet"}))
                .unwrap(),
        )
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let whole = flight_info(&mut c, &with(None, None)).await.unwrap();
    assert_eq!(
        listed[0].clone().try_decode_schema().unwrap(),
        whole.try_decode_schema().unwrap(),
        "ListFlights describes the object as a scan of it streams"
    );
    node.shutdown().await.unwrap();
}

fn ids(name: &str, ty: DataType, values: std::ops::Range<i64>) -> RecordBatch {
    let array: ArrayRef = match ty {
        DataType::Int32 => Arc::new(Int32Array::from_iter_values(values.map(|v| v as i32))),
        _ => Arc::new(Int64Array::from_iter_values(values)),
    };
    RecordBatch::try_from_iter(vec![(name, array)]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_is_planned_by_its_wire_schemas_and_a_difference_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // Dictionary strings in one object, plain strings in the other: both
    // are sent as utf8, so the prefix has one schema.
    let dict: DictionaryArray<Int32Type> = vec!["x", "y"].into_iter().collect();
    let plain = StringArray::from(vec!["z"]);
    write(
        &dir.path().join("same/a.parquet"),
        &RecordBatch::try_from_iter(vec![("tag", Arc::new(dict) as ArrayRef)]).unwrap(),
    );
    write(
        &dir.path().join("same/b.parquet"),
        &RecordBatch::try_from_iter(vec![("tag", Arc::new(plain) as ArrayRef)]).unwrap(),
    );
    write(
        &dir.path().join("ints/a.parquet"),
        &ids("id", DataType::Int32, 0..3),
    );
    write(
        &dir.path().join("ints/b.parquet"),
        &ids("id", DataType::Int64, 3..6),
    );
    let node = RunningNode::start(node_config(vec![local_source("local", dir.path())], None))
        .await
        .unwrap();
    let mut c = client(&node).await;

    let info = flight_info(&mut c, &scan("local", "same/")).await.unwrap();
    let announced = Arc::new(info.clone().try_decode_schema().unwrap());
    assert_eq!(announced.field(0).data_type(), &DataType::Utf8);
    let mut values = Vec::new();
    for e in &info.endpoint {
        let t = ScanRequest::from_bytes(&e.ticket.as_ref().unwrap().ticket).unwrap();
        let (schema, batches) = streamed(&mut c, &t).await;
        assert_eq!(schema, announced);
        values.extend(rows(&batches));
    }
    values.sort();
    assert_eq!(values, ["x", "y", "z"]);

    let err = flight_info(&mut c, &scan("local", "ints/"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    for part in [
        "`id`",
        "local/ints/a.parquet",
        "local/ints/b.parquet",
        "Int32",
        "Int64",
    ] {
        assert!(err.message().contains(part), "{part}: {}", err.message());
    }
    node.shutdown().await.unwrap();
}
