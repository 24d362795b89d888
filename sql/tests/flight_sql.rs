//! Flight SQL on a node's Flight port, through arrow-rs's Flight SQL client:
//! TPC-H answers equal DataFusion reading the files, prepared statements,
//! metadata, hive partitions, authentication, and errors that leave the
//! node serving.

#[path = "../../client/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables};
use arrow_flight::FlightInfo;
use common::{reference_ctx, row_count, rows, tpch_lake};
use futures::TryStreamExt;
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
    let reference = reference_ctx(&lake.local).await;
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
    let reference = reference_ctx(&lake.local).await;

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
    let reference = reference_ctx(&lake.local).await;
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
