//! `QuiverTable` as a DataFusion user meets it: filters, projections and
//! limits pushed to the node, answers equal to DataFusion reading the files
//! (over many generated queries), scans that survive `datafusion-proto`, and
//! clear errors.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{quiver_ctx, row_count, rows, tpch_lake, Lake};
use datafusion::physical_plan::{collect, ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::SessionContext;
use datafusion_proto::bytes::{
    logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use quiver_client::exec::as_quiver_scan;
use quiver_client::{QuiverClient, QuiverCodec, QuiverLogicalCodec, QuiverTable, ScanSpec};
use quiver_protocol::StatsReport;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn scans(plan: &Arc<dyn ExecutionPlan>) -> Vec<ScanSpec> {
    let mut out = Vec::new();
    let mut stack = vec![plan.clone()];
    while let Some(p) = stack.pop() {
        if let Some(scan) = as_quiver_scan(p.as_ref()) {
            out.push(scan.spec().clone());
        }
        stack.extend(p.children().into_iter().cloned());
    }
    out
}

async fn stats(client: &QuiverClient, lake: &Lake) -> StatsReport {
    let answer = client
        .action_on(&common::url(&lake.node), "stats", Bytes::new())
        .await
        .unwrap();
    serde_json::from_slice(&answer[0]).unwrap()
}

async fn run(ctx: &SessionContext, sql: &str) -> Vec<arrow::array::RecordBatch> {
    ctx.sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn lineitem_bytes(lake: &Lake) -> u64 {
    std::fs::read_dir(lake.local.join("tpch/lineitem"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selective_query_sends_only_its_columns_and_filter() {
    let common::Sessions {
        lake,
        client,
        quiver: ctx,
        reference,
    } = common::sessions(0.01, 3).await;
    let sql = "SELECT l_orderkey, l_extendedprice FROM lineitem WHERE l_partkey < 40 AND l_shipmode = 'AIR'";

    let plan = ctx
        .sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let specs = scans(&plan);
    assert_eq!(specs.len(), 1, "one Quiver scan: {specs:?}");
    let spec = &specs[0];
    assert_eq!(spec.endpoints.len(), 3, "one partition per object");
    assert_eq!(plan.output_partitioning().partition_count(), 3);
    for e in &spec.endpoints {
        let t = &e.ticket;
        assert_eq!(
            t.columns.as_deref(),
            Some(&["l_orderkey".to_string(), "l_extendedprice".to_string()][..])
        );
        let filter = t.filter.as_deref().unwrap();
        assert!(
            filter.contains("\"l_partkey\" < 40") && filter.contains("\"l_shipmode\" = 'AIR'"),
            "{filter}"
        );
        assert!(!e.locations.is_empty(), "each partition keeps its owners");
    }
    // Both filters are exact: no FilterExec is left above the scan.
    let shown = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(false)
        .to_string();
    assert!(!shown.contains("FilterExec"), "{shown}");

    let before = stats(&client, &lake).await;
    let got = collect(plan, ctx.task_ctx()).await.unwrap();
    let after = stats(&client, &lake).await;
    assert_eq!(rows(&got), rows(&run(&reference, sql).await));
    assert!(row_count(&got) > 0);
    let received = after.bytes_served - before.bytes_served;
    let files = lineitem_bytes(&lake);
    assert!(
        received * 20 < files,
        "the client received {received} bytes of {files} bytes of files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_the_node_cannot_run_stay_in_datafusion() {
    let common::Sessions {
        lake: _lake,
        client: _client,
        quiver: ctx,
        reference,
    } = common::sessions(0.01, 2).await;
    // `repeat` is not on the node's allowlist; the date filter is.
    let sql = "SELECT o_orderkey, o_comment FROM orders \
               WHERE repeat(o_orderpriority, 2) = '1-URGENT1-URGENT' AND o_orderdate < DATE '1993-01-01'";
    let plan = ctx
        .sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let shown = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(false)
        .to_string();
    assert!(shown.contains("FilterExec"), "{shown}");
    let spec = &scans(&plan)[0];
    let filter = spec.endpoints[0].ticket.filter.as_deref().unwrap();
    assert!(
        filter.contains("o_orderdate") && !filter.contains("repeat"),
        "{filter}"
    );
    let got = collect(plan, ctx.task_ctx()).await.unwrap();
    assert_eq!(rows(&got), rows(&run(&reference, sql).await));
    assert!(row_count(&got) > 0);
}

/// Many filters, each one the node accepts alone, together make one filter
/// per request: those past the node's limits stay in DataFusion instead of
/// the node refusing the whole query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pushed_filters_stay_within_the_nodes_limits() {
    let common::Sessions {
        lake: _lake,
        client: _client,
        quiver: ctx,
        reference,
    } = common::sessions(0.01, 2).await;
    let conditions: Vec<String> = (1..=120)
        .map(|k| format!("o_orderkey <> {}", k * 7))
        .collect();
    let sql = format!(
        "SELECT o_orderkey, o_totalprice FROM orders WHERE {}",
        conditions.join(" AND ")
    );
    let plan = ctx
        .sql(&sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let spec = &scans(&plan)[0];
    let filter = spec.endpoints[0].ticket.filter.as_deref().unwrap();
    let operators = quiver_client::pushdown::operator_count(filter).unwrap();
    assert!(
        operators <= quiver_protocol::MAX_FILTER_OPERATORS,
        "{operators} operators pushed"
    );
    let got = collect(plan, ctx.task_ctx()).await.unwrap();
    assert_eq!(rows(&got), rows(&run(&reference, &sql).await));
    assert!(row_count(&got) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_counts_and_statistics() {
    let common::Sessions {
        lake: _lake,
        client,
        quiver: ctx,
        reference,
    } = common::sessions(0.01, 3).await;

    let got = run(&ctx, "SELECT * FROM lineitem LIMIT 7").await;
    assert_eq!(row_count(&got), 7);
    let plan = ctx
        .sql("SELECT l_orderkey FROM lineitem LIMIT 7")
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let spec = &scans(&plan)[0];
    assert!(spec
        .endpoints
        .iter()
        .all(|e| e.ticket.limit.is_some_and(|l| l <= 7)));

    for sql in [
        "SELECT count(*) FROM lineitem",
        "SELECT count(*) FROM lineitem WHERE l_quantity > 30",
        "SELECT l_returnflag, count(*), sum(l_quantity) FROM lineitem GROUP BY l_returnflag",
    ] {
        assert_eq!(
            rows(&run(&ctx, sql).await),
            rows(&run(&reference, sql).await),
            "{sql}"
        );
    }

    let table = QuiverTable::try_new(client.clone(), "lake", "tpch/orders/")
        .await
        .unwrap();
    let stats = datafusion::catalog::TableProvider::statistics(&table).unwrap();
    let expected = row_count(&run(&reference, "SELECT o_orderkey FROM orders").await);
    assert_eq!(stats.num_rows.get_value(), Some(&expected));
    assert!(stats.total_byte_size.get_value().is_some_and(|b| *b > 0));
}

/// A WHERE clause over lineitem from the pieces a dashboard or a notebook
/// writes: ranges, IN lists, LIKE, dates, arithmetic, NOT, OR, NULL checks,
/// and now and then a function the node refuses.
fn random_condition(rng: &mut StdRng, depth: u32) -> String {
    if depth > 0 && rng.random_bool(0.4) {
        let op = if rng.random_bool(0.5) { "AND" } else { "OR" };
        let a = random_condition(rng, depth - 1);
        let b = random_condition(rng, depth - 1);
        return if rng.random_bool(0.15) {
            format!("NOT ({a} {op} {b})")
        } else {
            format!("({a} {op} {b})")
        };
    }
    match rng.random_range(0..11) {
        0 => format!("l_quantity {} {}", cmp(rng), rng.random_range(1..50)),
        1 => format!(
            "l_discount BETWEEN {:.2} AND {:.2}",
            rng.random_range(0..5) as f64 / 100.0,
            rng.random_range(5..11) as f64 / 100.0
        ),
        2 => format!(
            "l_shipdate {} DATE '199{}-0{}-1{}'",
            cmp(rng),
            rng.random_range(2..9),
            rng.random_range(1..10),
            rng.random_range(0..10)
        ),
        3 => format!(
            "l_returnflag IN ({})",
            ["'A'", "'N'", "'R'"][..rng.random_range(1..3)].join(", ")
        ),
        4 => format!(
            "l_shipmode LIKE '{}%'",
            ["A", "T", "M", "RE", "S"][rng.random_range(0..5)]
        ),
        5 => format!(
            "l_extendedprice * (1 - l_discount) > {}",
            rng.random_range(1000..90000)
        ),
        6 => format!("l_partkey % {} = 0", rng.random_range(2..40)),
        7 => "l_comment ILIKE '%final%'".to_string(),
        8 => format!(
            "upper(l_shipinstruct) = '{}'",
            ["NONE", "COLLECT COD", "TAKE BACK RETURN"][rng.random_range(0..3)]
        ),
        9 => format!(
            "length(repeat(l_linestatus, 2)) = {}",
            rng.random_range(1..3) * 2
        ),
        _ => format!(
            "l_tax IS NOT NULL AND l_suppkey < {}",
            rng.random_range(1..100)
        ),
    }
}

fn cmp(rng: &mut StdRng) -> &'static str {
    ["<", "<=", ">", ">=", "=", "<>"][rng.random_range(0..6)]
}

const COLUMNS: [&str; 8] = [
    "l_orderkey",
    "l_partkey",
    "l_quantity",
    "l_extendedprice",
    "l_discount",
    "l_returnflag",
    "l_shipdate",
    "l_comment",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_queries_match_the_reference() {
    let common::Sessions {
        lake: _lake,
        client: _client,
        quiver: ctx,
        reference,
    } = common::sessions(0.01, 3).await;
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut nonempty = 0;
    for _ in 0..60 {
        let n = rng.random_range(1..=COLUMNS.len());
        let mut cols: Vec<&str> = COLUMNS.to_vec();
        for i in 0..cols.len() {
            cols.swap(i, rng.random_range(0..COLUMNS.len()));
        }
        cols.truncate(n);
        let mut sql = format!("SELECT {} FROM lineitem", cols.join(", "));
        if rng.random_bool(0.9) {
            sql.push_str(&format!(" WHERE {}", random_condition(&mut rng, 2)));
        }
        if rng.random_bool(0.3) {
            // An order over every column makes a limited answer unique.
            sql.push_str(&format!(
                " ORDER BY {} LIMIT {}",
                cols.join(", "),
                rng.random_range(0..500)
            ));
        }
        let expected = run(&reference, &sql).await;
        assert_eq!(rows(&run(&ctx, &sql).await), rows(&expected), "{sql}");
        if row_count(&expected) > 0 {
            nonempty += 1;
        }
    }
    assert!(
        nonempty > 30,
        "only {nonempty} of the generated queries matched rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_round_trip_through_datafusion_proto() {
    let lake = tpch_lake(0.01, 2).await;
    let client = common::client(&lake.node).await;
    let ctx = quiver_ctx(&client).await;
    let sql = "SELECT l_returnflag, sum(l_quantity) AS q FROM lineitem \
               WHERE l_shipdate >= DATE '1995-01-01' GROUP BY l_returnflag ORDER BY l_returnflag";
    let plan = ctx
        .sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let codec = QuiverCodec::new(client.clone());
    let bytes = physical_plan_to_bytes_with_extension_codec(plan.clone(), &codec).unwrap();
    // A "worker" with its own client and session decodes and runs it.
    let worker = common::client(&lake.node).await;
    let worker_ctx = SessionContext::new();
    let decoded = physical_plan_from_bytes_with_extension_codec(
        &bytes,
        &worker_ctx.task_ctx(),
        &QuiverCodec::new(worker),
    )
    .unwrap();
    assert_eq!(scans(&decoded), scans(&plan));
    let show = |p: &Arc<dyn ExecutionPlan>| {
        datafusion::physical_plan::displayable(p.as_ref())
            .indent(true)
            .to_string()
    };
    assert_eq!(show(&decoded), show(&plan));
    let expected = collect(plan, ctx.task_ctx()).await.unwrap();
    let got = collect(decoded, worker_ctx.task_ctx()).await.unwrap();
    assert_eq!(rows(&got), rows(&expected));
    assert!(row_count(&got) > 0);

    // Bytes that are not a Quiver scan are refused with a reason.
    let err = QuiverCodec::new(client.clone());
    let bad = datafusion_proto::physical_plan::PhysicalExtensionCodec::try_decode(
        &err,
        b"{\"quiver_scan\": 99}",
        &[],
        &worker_ctx.task_ctx(),
        &datafusion_proto::physical_plan::DefaultPhysicalProtoConverter {},
    )
    .unwrap_err();
    assert!(bad.to_string().contains("Quiver scan"), "{bad}");
}

/// A logical plan over Quiver tables (as Ballista's scheduler ships one)
/// decodes elsewhere, over the decoder's own client and without listing
/// again, into a plan that answers the same; another provider, or bytes
/// that are not a Quiver table, are refused with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_round_trip_through_logical_plans() {
    let lake = tpch_lake(0.01, 2).await;
    let client = common::client(&lake.node).await;
    let ctx = quiver_ctx(&client).await;
    let sql = "SELECT o_orderpriority, count(*) AS n FROM orders JOIN lineitem ON o_orderkey = l_orderkey \
               WHERE l_shipdate >= DATE '1995-01-01' AND o_totalprice > 1000 \
               GROUP BY o_orderpriority ORDER BY o_orderpriority";
    let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
    let bytes =
        logical_plan_to_bytes_with_extension_codec(&plan, &QuiverLogicalCodec::new(client.clone()))
            .unwrap();
    let worker = common::client(&lake.node).await;
    let worker_ctx = SessionContext::new_with_config(quiver_client::session_config());
    let decoded = logical_plan_from_bytes_with_extension_codec(
        &bytes,
        &worker_ctx.task_ctx(),
        &QuiverLogicalCodec::new(worker.clone()),
    )
    .unwrap();
    assert_eq!(
        format!("{}", decoded.display_indent()),
        format!("{}", plan.display_indent())
    );
    let expected = run(&ctx, sql).await;
    let got = worker_ctx
        .execute_logical_plan(decoded)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(rows(&got), rows(&expected));
    assert!(row_count(&got) > 0);

    // Another provider is not encoded as a Quiver table.
    let other = SessionContext::new();
    other
        .register_batch(
            "m",
            arrow::array::RecordBatch::try_from_iter([(
                "x",
                Arc::new(arrow::array::Int64Array::from(vec![1])) as arrow::array::ArrayRef,
            )])
            .unwrap(),
        )
        .unwrap();
    let mem = other
        .sql("SELECT x FROM m")
        .await
        .unwrap()
        .into_optimized_plan()
        .unwrap();
    let err =
        logical_plan_to_bytes_with_extension_codec(&mem, &QuiverLogicalCodec::new(client.clone()))
            .unwrap_err();
    assert!(err.to_string().contains("QuiverTable only"), "{err}");
    let bad = datafusion_proto::logical_plan::LogicalExtensionCodec::try_decode_table_provider(
        &QuiverLogicalCodec::new(client.clone()),
        b"{\"quiver_table\": 99}",
        &datafusion::common::TableReference::bare("t"),
        Arc::new(arrow::datatypes::Schema::empty()),
        &worker_ctx.task_ctx(),
    )
    .unwrap_err();
    assert!(bad.to_string().contains("Quiver table"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_that_cannot_exist_fail_with_the_nodes_reason() {
    let lake = tpch_lake(0.01, 1).await;
    let client = common::client(&lake.node).await;
    let err = QuiverTable::try_new(client.clone(), "nope", "tpch/orders/")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
    assert!(err.request_id().is_some(), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
    let err = QuiverTable::try_new(client.clone(), "lake", "tpch/missing/")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
    let err = QuiverTable::try_new(client.clone(), "lake", "../etc/")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    // A query over a good table still works afterwards.
    let ctx = quiver_ctx(&client).await;
    assert_eq!(row_count(&run(&ctx, "SELECT * FROM region").await), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_rewritten_after_planning_is_read_at_its_new_version() {
    let lake = tpch_lake(0.01, 1).await;
    let mut source = common::source(&lake.s3);
    source.validate = quiver_server::config::Span(std::time::Duration::ZERO);
    let node = quiver_server::RunningNode::start(common::node_config(vec![source]))
        .await
        .unwrap();
    let client = common::client(&node).await;
    let req = quiver_protocol::ScanRequest {
        source: Some("lake".into()),
        path: Some("tpch/nation/".into()),
        ..Default::default()
    };
    let plan = client.plan(&req).await.unwrap();
    // The nation file is replaced by the region file (same kind of data for
    // the reader: another version with other rows).
    let region = std::fs::read(lake.local.join("tpch/region/part-0.parquet")).unwrap();
    let nation = std::fs::read(lake.local.join("tpch/nation/part-0.parquet")).unwrap();
    assert_ne!(region, nation);
    object_store::ObjectStoreExt::put(
        &common::store(&lake.s3),
        &object_store::path::Path::from("tpch/nation/part-0.parquet"),
        region.into(),
    )
    .await
    .unwrap();
    let batches: Vec<_> = futures::TryStreamExt::try_collect(client.read_plan(plan))
        .await
        .unwrap();
    assert_eq!(row_count(&batches), 5, "the new version's rows, read once");
}
