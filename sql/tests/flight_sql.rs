//! Flight SQL on a node's Flight port, through arrow-rs's Flight SQL client:
//! TPC-H answers equal DataFusion reading the files, prepared statements,
//! metadata, hive partitions, authentication, and errors that leave the
//! node serving. Also honest schemas: dictionary columns announced as they
//! are streamed, and tables whose files differ in schema read merged (or,
//! when they cannot be, listed and failing with a reason), through Flight
//! SQL and `QuiverTable` alike.

#[path = "../../client/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use arrow::array::{
    ArrayRef, DictionaryArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
    LargeStringArray, RecordBatch, StringArray, StringViewArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables};
use arrow_flight::FlightInfo;
use common::{reference_ctx, row_count, rows, tpch_lake};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use quiver_client::QuiverTable;
use quiver_server::RunningNode;
use tonic::transport::Channel;

async fn sql_client(node: &RunningNode) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", node.flight_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightSqlServiceClient::new(channel)
}

/// Every endpoint of `info`, read in order.
async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for e in info.endpoint {
        let ticket = e.ticket.expect("an endpoint has a ticket");
        let stream = client.do_get(ticket).await.unwrap();
        out.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    out
}

async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, tonic::Status> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(status)?;
    let mut out = Vec::new();
    for e in info.endpoint {
        let stream = client.do_get(e.ticket.unwrap()).await.map_err(status)?;
        out.extend(stream.try_collect::<Vec<_>>().await.map_err(status)?);
    }
    Ok(out)
}

fn status<E: Into<arrow_flight::error::FlightError>>(e: E) -> tonic::Status {
    match e.into() {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        // The Flight SQL client reports some statuses as Arrow errors.
        other => {
            let text = other.to_string();
            let code = [
                ("InvalidArgument", tonic::Code::InvalidArgument),
                ("NotFound", tonic::Code::NotFound),
                ("ResourceExhausted", tonic::Code::ResourceExhausted),
                ("Unauthenticated", tonic::Code::Unauthenticated),
            ]
            .into_iter()
            .find(|(name, _)| text.contains(name))
            .map(|(_, c)| c)
            .unwrap_or(tonic::Code::Unknown);
            tonic::Status::new(code, text)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_over_flight_sql_matches_datafusion_reading_the_files() {
    let lake = tpch_lake(0.1, 2).await;
    // Discovered, the tables are `tpch.<table>`; declared in the config as
    // well, they are also `default.<table>`, so the queries run unchanged.
    let mut config = common::node_config(vec![common::source(&lake.s3)]);
    config.sql.tables = common::TABLES
        .iter()
        .map(|t| quiver_server::config::SqlTableConfig {
            source: "lake".into(),
            schema: "default".into(),
            name: t.to_string(),
            path: format!("tpch/{t}/"),
        })
        .collect();
    let node = RunningNode::start(config).await.unwrap();
    let mut client = sql_client(&node).await;
    let reference = quiver_sql::session::with_exact_numbers(reference_ctx(&lake.local).await);
    for (name, sql) in quiver_testkit::tpch::QUERIES {
        let expected = reference.sql(sql).await.unwrap().collect().await.unwrap();
        let got = query(&mut client, sql)
            .await
            .unwrap_or_else(|e| panic!("{name} over Flight SQL: {e}"));
        assert_eq!(rows(&got), rows(&expected), "{name} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_prepared_statements_and_errors() {
    let lake = tpch_lake(0.01, 2).await;
    let mut client = sql_client(&lake.node).await;
    let reference = quiver_sql::session::with_exact_numbers(reference_ctx(&lake.local).await);

    let sql = "SELECT o_orderkey, o_totalprice FROM tpch.orders WHERE o_totalprice > 400000";
    let got = query(&mut client, sql).await.unwrap();
    let want = reference
        .sql("SELECT o_orderkey, o_totalprice FROM orders WHERE o_totalprice > 400000")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(rows(&got), rows(&want));
    assert!(row_count(&got) > 0);

    // A prepared statement with a parameter, executed twice with two values.
    let mut prepared = client
        .prepare(
            "SELECT count(*) AS n FROM lake.tpch.orders WHERE o_custkey < $1".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(prepared.parameter_schema().unwrap().fields().len(), 1);
    for limit in [100i64, 500] {
        let params = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![limit]))],
        )
        .unwrap();
        prepared.set_parameters(params).unwrap();
        let info = prepared.execute().await.unwrap();
        let got = fetch(&mut client, info).await;
        let want = reference
            .sql(&format!(
                "SELECT count(*) AS n FROM orders WHERE o_custkey < {limit}"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(rows(&got), rows(&want), "o_custkey < {limit}");
    }
    prepared.close().await.unwrap();

    for (sql, code, needle) in [
        ("SELEC 1", tonic::Code::InvalidArgument, "SELEC"),
        (
            "SELECT nope FROM tpch.orders",
            tonic::Code::InvalidArgument,
            "nope",
        ),
        (
            "SELECT * FROM tpch.missing",
            tonic::Code::NotFound,
            "tpch.missing",
        ),
        (
            "INSERT INTO tpch.orders VALUES (1)",
            tonic::Code::InvalidArgument,
            "read-only",
        ),
        (
            "CREATE TABLE t AS SELECT 1",
            tonic::Code::InvalidArgument,
            "read-only",
        ),
        (
            "COPY tpch.orders TO '/tmp/x.parquet'",
            tonic::Code::InvalidArgument,
            "read-only",
        ),
        (
            "DROP TABLE tpch.orders",
            tonic::Code::InvalidArgument,
            "read-only",
        ),
    ] {
        let err = query(&mut client, sql).await.unwrap_err();
        assert_eq!(err.code(), code, "{sql}: {err}");
        assert!(err.message().contains(needle), "{sql}: {err}");
    }
    // The node still serves.
    assert_eq!(
        row_count(
            &query(&mut client, "SELECT * FROM tpch.region")
                .await
                .unwrap()
        ),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lists_the_lake() {
    let lake = tpch_lake(0.01, 1).await;
    let mut client = sql_client(&lake.node).await;

    let info = client.get_catalogs().await.unwrap();
    let catalogs = rows(&fetch(&mut client, info).await);
    assert_eq!(catalogs, vec!["lake"]);

    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("lake".into()),
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let schemas = rows(&fetch(&mut client, info).await);
    assert_eq!(schemas, vec!["lake|default", "lake|tpch"]);

    let info = client
        .get_tables(CommandGetTables {
            catalog: Some("lake".into()),
            db_schema_filter_pattern: Some("tpch".into()),
            table_name_filter_pattern: Some("line%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch(&mut client, info).await;
    assert_eq!(row_count(&tables), 1);
    let names = rows(&[tables[0].project(&[0, 1, 2, 3]).unwrap()]);
    assert_eq!(names, vec!["lake|tpch|lineitem|TABLE"]);
    assert!(
        tables[0].num_columns() == 5,
        "include_schema adds the table schema column"
    );

    let info = client.get_table_types().await.unwrap();
    assert_eq!(rows(&fetch(&mut client, info).await), vec!["TABLE"]);
    let info = client.get_sql_info(vec![]).await.unwrap();
    assert!(row_count(&fetch(&mut client, info).await) > 3);
    let info = client
        .get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None })
        .await
        .unwrap();
    assert!(row_count(&fetch(&mut client, info).await) > 5);
    let info = client
        .get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some("tpch".into()),
            table: "lineitem".into(),
        })
        .await
        .unwrap();
    assert_eq!(row_count(&fetch(&mut client, info).await), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_handshake_gives_a_bearer_token_that_later_calls_need() {
    let dir = tempfile::tempdir().unwrap();
    let lake = tpch_lake(0.01, 1).await;
    std::fs::write(dir.path().join("tokens"), "sql-token\n").unwrap();
    let mut config = common::node_config(vec![common::source(&lake.s3)]);
    config.auth.tokens_file = Some(dir.path().join("tokens"));
    let node = RunningNode::start(config).await.unwrap();

    let mut anonymous = sql_client(&node).await;
    let err = query(&mut anonymous, "SELECT 1").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");

    let mut client = sql_client(&node).await;
    assert!(client.handshake("bi-tool", "wrong").await.is_err());
    let mut client = sql_client(&node).await;
    let token = client.handshake("bi-tool", "sql-token").await.unwrap();
    assert_eq!(&token[..], b"sql-token");
    assert_eq!(
        row_count(
            &query(&mut client, "SELECT * FROM tpch.nation")
                .await
                .unwrap()
        ),
        25
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_its_memory_budget_fails_alone() {
    let lake = tpch_lake(0.1, 1).await;
    let mut config = common::node_config(vec![common::source(&lake.s3)]);
    config.sql.query_memory = quiver_server::config::ByteSize(16 << 20);
    let node = RunningNode::start(config).await.unwrap();
    let mut client = sql_client(&node).await;
    let err = query(
        &mut client,
        "SELECT * FROM tpch.lineitem ORDER BY l_comment, l_orderkey",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert_eq!(
        row_count(
            &query(&mut client, "SELECT * FROM tpch.region")
                .await
                .unwrap()
        ),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hive_partitions_are_columns_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let lake = tpch_lake(0.01, 1).await;
    // The nation table, split by region into `events/region=<k>/` files.
    let reference = quiver_sql::session::with_exact_numbers(reference_ctx(&lake.local).await);
    let store = common::store(&lake.s3);
    for region in 0..5 {
        let batches = reference
            .sql(&format!(
                "SELECT n_nationkey, n_name FROM nation WHERE n_regionkey = {region}"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let path = dir.path().join(format!("{region}.parquet"));
        let file = std::fs::File::create(&path).unwrap();
        let mut w = parquet_writer(file, batches[0].schema());
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        object_store::ObjectStoreExt::put(
            &store,
            &object_store::path::Path::from(format!("geo/nations/region={region}/part-0.parquet")),
            std::fs::read(&path).unwrap().into(),
        )
        .await
        .unwrap();
    }
    let mut client = sql_client(&lake.node).await;
    let got = query(
        &mut client,
        "SELECT n_name, region FROM geo.nations WHERE region IN ('1', '3') ORDER BY n_name",
    )
    .await
    .unwrap();
    let want = reference
        .sql("SELECT n_name, CAST(n_regionkey AS VARCHAR) AS region FROM nation WHERE n_regionkey IN (1, 3) ORDER BY n_name")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(rows(&got), rows(&want));
    assert_eq!(row_count(&got), 10);
    let counted = query(
        &mut client,
        "SELECT region, count(*) FROM geo.nations GROUP BY region",
    )
    .await
    .unwrap();
    assert_eq!(rows(&counted), vec!["0|5", "1|5", "2|5", "3|5", "4|5"]);
}

fn parquet_writer(
    file: std::fs::File,
    schema: arrow::datatypes::SchemaRef,
) -> parquet::arrow::ArrowWriter<std::fs::File> {
    parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_follows_the_lake_on_demand() {
    let lake = tpch_lake(0.01, 1).await;
    let mut client = sql_client(&lake.node).await;
    let count = "SELECT count(*) FROM tpch.region";
    assert_eq!(rows(&query(&mut client, count).await.unwrap()), vec!["5"]);
    assert_eq!(
        query(&mut client, "SELECT count(*) FROM extra.copy")
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );

    // A second region file and a new table appear in the lake.
    let store = common::store(&lake.s3);
    let region = std::fs::read(lake.local.join("tpch/region/part-0.parquet")).unwrap();
    for key in ["tpch/region/part-1.parquet", "extra/copy/part-0.parquet"] {
        object_store::ObjectStoreExt::put(
            &store,
            &object_store::path::Path::from(key),
            region.clone().into(),
        )
        .await
        .unwrap();
    }

    let mut flight = arrow_flight::FlightClient::new(
        Channel::from_shared(format!("http://{}", lake.node.flight_addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let answer: Vec<bytes::Bytes> = flight
        .do_action(arrow_flight::Action::new(
            "refresh-catalog",
            bytes::Bytes::new(),
        ))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&answer[0]).unwrap();
    assert_eq!(report["tables"], 9, "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(rows(&query(&mut client, count).await.unwrap()), vec!["10"]);
    assert_eq!(
        rows(
            &query(&mut client, "SELECT count(*) FROM extra.copy")
                .await
                .unwrap()
        ),
        vec!["5"]
    );
}

/// `batch` written to `key` in the lake, and to the same path under the
/// lake's local copy for the reference reader, which is returned.
async fn put(lake: &common::Lake, key: &str, batch: &RecordBatch) -> std::path::PathBuf {
    let mut bytes = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    let local = lake.local.join(key);
    std::fs::create_dir_all(local.parent().unwrap()).unwrap();
    std::fs::write(&local, &bytes).unwrap();
    object_store::ObjectStoreExt::put(
        &common::store(&lake.s3),
        &object_store::path::Path::from(key),
        bytes.into(),
    )
    .await
    .unwrap();
    local
}

/// The catalog listed again now; its `{"tables", "errors"}` report.
async fn refresh_catalog(node: &RunningNode) -> serde_json::Value {
    let mut flight = arrow_flight::FlightClient::new(
        Channel::from_shared(format!("http://{}", node.flight_addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let answer: Vec<bytes::Bytes> = flight
        .do_action(arrow_flight::Action::new(
            "refresh-catalog",
            bytes::Bytes::new(),
        ))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    serde_json::from_slice(&answer[0]).unwrap()
}

async fn collect_sql(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A session over `table` registered as `name`, as a DataFusion user has it.
fn quiver_session(name: &str, table: QuiverTable) -> SessionContext {
    let ctx = SessionContext::new_with_config(quiver_client::session_config());
    ctx.register_table(name, Arc::new(table)).unwrap();
    ctx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dictionary_columns_query_like_their_values() {
    let lake = tpch_lake(0.01, 1).await;
    let n = 300;
    let tag: DictionaryArray<Int32Type> = (0..n)
        .map(|i| (i % 4 != 3).then(|| ["a", "b", "c"][i % 4]))
        .collect();
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..n as i64)) as ArrayRef,
        ),
        ("tag", Arc::new(tag)),
        (
            "note",
            Arc::new(LargeStringArray::from_iter_values(
                (0..n).map(|i| format!("n{i}")),
            )),
        ),
        (
            "v",
            Arc::new(StringViewArray::from_iter_values(
                (0..n).map(|i| format!("v{}", i % 7)),
            )),
        ),
    ])
    .unwrap();
    let file = put(&lake, "dict/t/part-0.parquet", &batch).await;
    let report = refresh_catalog(&lake.node).await;
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let reference = quiver_testkit::oracle::session();
    reference
        .register_parquet("t", file.to_str().unwrap(), Default::default())
        .await
        .unwrap();
    let qc = common::client(&lake.node).await;
    let table = QuiverTable::try_new(qc, "lake", "dict/t/").await.unwrap();
    let direct = quiver_session("t", table);
    let mut client = sql_client(&lake.node).await;

    for sql in [
        "SELECT id, tag, note, v FROM {t} WHERE tag = 'b' OR v = 'v3'",
        "SELECT * FROM {t} WHERE tag IN ('a', 'c') AND id > 100",
        "SELECT tag, count(*) AS n FROM {t} GROUP BY tag",
        "SELECT count(*) FROM {t} WHERE tag IS NULL",
    ] {
        let want = collect_sql(&reference, &sql.replace("{t}", "t")).await;
        assert!(row_count(&want) > 0, "{sql}");
        // Flight SQL announces what it streams.
        let info = client
            .execute(sql.replace("{t}", "dict.t"), None)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let announced = info.clone().try_decode_schema().unwrap();
        let got = fetch(&mut client, info).await;
        for b in &got {
            assert_eq!(b.schema().as_ref(), &announced, "{sql}");
        }
        assert_eq!(rows(&got), rows(&want), "{sql} over Flight SQL");
        // So does a prepared statement's dataset schema.
        let mut prepared = client
            .prepare(sql.replace("{t}", "dict.t"), None)
            .await
            .unwrap();
        let dataset = prepared.dataset_schema().unwrap().clone();
        let info = prepared.execute().await.unwrap();
        let got = fetch(&mut client, info).await;
        for b in &got {
            assert_eq!(b.schema().as_ref(), &dataset, "{sql} prepared");
        }
        assert_eq!(rows(&got), rows(&want), "{sql} prepared");
        prepared.close().await.unwrap();
        // And QuiverTable's schema is what its scans return.
        let frame = direct.sql(&sql.replace("{t}", "t")).await.unwrap();
        let planned = frame.schema().as_arrow().clone();
        let got = frame.collect().await.unwrap();
        for b in &got {
            assert_eq!(
                b.schema().fields(),
                planned.fields(),
                "{sql} on QuiverTable"
            );
        }
        assert_eq!(rows(&got), rows(&want), "{sql} on QuiverTable");
    }
}

/// Three files of one table: `id` int32 in the first and int64 in the
/// others, columns in other orders, `score` float32 then float64 and
/// missing from the second, `extra` only in the third.
async fn mixed_table(lake: &common::Lake, reference: &SessionContext) {
    let a = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int32Array::from_iter_values(0..50)) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringArray::from_iter_values(
                (0..50).map(|i| format!("n{i}")),
            )),
        ),
        (
            "score",
            Arc::new(Float32Array::from_iter_values(
                (0..50).map(|i| i as f32 / 10.0),
            )),
        ),
    ])
    .unwrap();
    let b = RecordBatch::try_from_iter(vec![
        (
            "name",
            Arc::new(StringArray::from_iter_values(
                (50..100).map(|i| format!("n{i}")),
            )) as ArrayRef,
        ),
        ("id", Arc::new(Int64Array::from_iter_values(50..100))),
    ])
    .unwrap();
    let c = RecordBatch::try_from_iter(vec![
        (
            "score",
            Arc::new(Float64Array::from_iter_values(
                (100..150).map(|i| i as f64 / 10.0),
            )) as ArrayRef,
        ),
        ("id", Arc::new(Int64Array::from_iter_values(100..150))),
        (
            "extra",
            Arc::new(StringArray::from_iter(
                (100..150).map(|i| (i % 2 == 0).then(|| format!("e{i}"))),
            )),
        ),
    ])
    .unwrap();
    for (name, batch) in [("a", &a), ("b", &b), ("c", &c)] {
        let file = put(lake, &format!("mixed/t/{name}.parquet"), batch).await;
        reference
            .register_parquet(name, file.to_str().unwrap(), Default::default())
            .await
            .unwrap();
    }
    // Partitions whose files differ too: `v` int16 then int64, `w` only in
    // the second.
    let pa = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int32Array::from_iter_values(0..10)) as ArrayRef,
        ),
        ("v", Arc::new(Int16Array::from_iter_values(0..10))),
    ])
    .unwrap();
    let pb = RecordBatch::try_from_iter(vec![
        (
            "v",
            Arc::new(Int64Array::from_iter_values(10..20)) as ArrayRef,
        ),
        ("id", Arc::new(Int64Array::from_iter_values(10..20))),
        (
            "w",
            Arc::new(StringArray::from_iter_values(
                (10..20).map(|i| format!("w{i}")),
            )),
        ),
    ])
    .unwrap();
    for (name, key, batch) in [
        ("pa", "mixed/p/k=1/a.parquet", &pa),
        ("pb", "mixed/p/k=2/b.parquet", &pb),
    ] {
        let file = put(lake, key, batch).await;
        reference
            .register_parquet(name, file.to_str().unwrap(), Default::default())
            .await
            .unwrap();
    }
    // The reference: DataFusion reading each file and merging by hand.
    for view in [
        "CREATE VIEW t AS \
         SELECT CAST(id AS BIGINT) AS id, name, CAST(score AS DOUBLE) AS score, CAST(NULL AS VARCHAR) AS extra FROM a \
         UNION ALL SELECT id, name, CAST(NULL AS DOUBLE), CAST(NULL AS VARCHAR) FROM b \
         UNION ALL SELECT id, CAST(NULL AS VARCHAR), score, extra FROM c",
        "CREATE VIEW p AS \
         SELECT CAST(id AS BIGINT) AS id, CAST(v AS BIGINT) AS v, CAST(NULL AS VARCHAR) AS w, '1' AS k FROM pa \
         UNION ALL SELECT id, v, w, '2' FROM pb",
    ] {
        reference.sql(view).await.unwrap();
    }
}

const MIXED_QUERIES: [&str; 9] = [
    "SELECT * FROM {t}",
    "SELECT id, name FROM {t} WHERE id >= 40 AND id < 110",
    "SELECT id, score FROM {t} WHERE score > 2.5",
    "SELECT count(*) FROM {t} WHERE extra IS NULL",
    "SELECT count(*) FROM {t}",
    "SELECT extra FROM {t} WHERE id < 5 OR id > 140",
    "SELECT id FROM {t} ORDER BY id DESC LIMIT 3",
    "SELECT * FROM {p}",
    "SELECT id, w, k FROM {p} WHERE v > 5 AND k = '2'",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_whose_files_differ_are_read_with_a_merged_schema() {
    let lake = tpch_lake(0.01, 1).await;
    let reference = quiver_testkit::oracle::session();
    mixed_table(&lake, &reference).await;
    let report = refresh_catalog(&lake.node).await;
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let mut client = sql_client(&lake.node).await;

    let info = client
        .execute("SELECT * FROM mixed.t".into(), None)
        .await
        .unwrap();
    let announced = info.clone().try_decode_schema().unwrap();
    let types: Vec<(&str, &DataType)> = announced
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        [
            ("id", &DataType::Int64),
            ("name", &DataType::Utf8),
            ("score", &DataType::Float64),
            ("extra", &DataType::Utf8)
        ]
    );

    let qc = common::client(&lake.node).await;
    let table = QuiverTable::try_new(qc, "lake", "mixed/t/").await.unwrap();
    let direct = quiver_session("t", table);
    for sql in MIXED_QUERIES {
        let local = sql.replace("{t}", "t").replace("{p}", "p");
        let want = collect_sql(&reference, &local).await;
        assert!(row_count(&want) > 0, "{sql}");
        let got = query(
            &mut client,
            &sql.replace("{t}", "mixed.t").replace("{p}", "mixed.p"),
        )
        .await
        .unwrap_or_else(|e| panic!("{sql} over Flight SQL: {e}"));
        assert_eq!(rows(&got), rows(&want), "{sql} over Flight SQL");
        // The hive table is Flight SQL's; QuiverTable reads the plain one.
        if !sql.contains("{p}") {
            let got = collect_sql(&direct, &local).await;
            assert_eq!(rows(&got), rows(&want), "{sql} on QuiverTable");
        }
    }

    // A filter goes only to the objects that hold its column with the
    // table's type; DataFusion applies it to the others' rows.
    let plan = direct
        .sql("SELECT id FROM t WHERE id >= 40")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let mut stack = vec![plan];
    let mut tickets = Vec::new();
    while let Some(p) = stack.pop() {
        if let Some(scan) = quiver_client::exec::as_quiver_scan(p.as_ref()) {
            for e in &scan.spec().endpoints {
                tickets.push((e.ticket.path.clone(), e.ticket.filter.is_some()));
            }
        }
        stack.extend(p.children().into_iter().cloned());
    }
    tickets.sort();
    assert_eq!(
        tickets,
        [
            (Some("mixed/t/a.parquet".to_string()), false),
            (Some("mixed/t/b.parquet".to_string()), true),
            (Some("mixed/t/c.parquet".to_string()), true),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_whose_files_conflict_is_listed_and_fails_naming_them() {
    let lake = tpch_lake(0.01, 1).await;
    let a = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        ("v", Arc::new(StringArray::from(vec!["x", "y"]))),
    ])
    .unwrap();
    let b = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![3])) as ArrayRef),
        ("v", Arc::new(Int64Array::from(vec![7]))),
    ])
    .unwrap();
    put(&lake, "bad/t/a.parquet", &a).await;
    put(&lake, "bad/t/b.parquet", &b).await;
    let named = |text: &str| {
        for part in ["`v`", "lake/bad/t/a.parquet", "lake/bad/t/b.parquet"] {
            assert!(text.contains(part), "{part} missing from: {text}");
        }
    };

    let qc = common::client(&lake.node).await;
    let err = QuiverTable::try_new(qc, "lake", "bad/t/")
        .await
        .unwrap_err();
    named(&err.to_string());

    let report = refresh_catalog(&lake.node).await;
    let errors = report["errors"].to_string();
    named(&errors);
    let mut client = sql_client(&lake.node).await;
    let info = client
        .get_tables(CommandGetTables {
            catalog: Some("lake".into()),
            db_schema_filter_pattern: Some("bad".into()),
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: false,
        })
        .await
        .unwrap();
    assert_eq!(
        rows(&fetch(&mut client, info).await),
        vec!["lake|bad|t|TABLE"],
        "the table is listed"
    );
    for sql in [
        "SELECT * FROM bad.t",
        "SELECT count(*) FROM bad.t WHERE id > 1",
    ] {
        let err = query(&mut client, sql).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{sql}: {err}");
        named(err.message());
    }
    // The other tables are unaffected.
    assert_eq!(
        rows(
            &query(&mut client, "SELECT count(*) FROM tpch.region")
                .await
                .unwrap()
        ),
        vec!["5"]
    );
}
