//! The `quiver` binary's data and cache subcommands against a live node:
//! every output format checked against DataFusion reading the same files,
//! and every error a user can make answered with one readable line and a
//! non-zero exit code.

#[path = "../../client/tests/common/mod.rs"]
mod common;

use std::process::Output;

use common::{reference_ctx, rows, tpch_lake, Lake};
use quiver_protocol::StatsReport;

async fn quiver(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(&args)
            .env_remove("QUIVER_ENDPOINT")
            .env_remove("QUIVER_TOKEN")
            .env_remove("QUIVER_TLS_CA")
            .env_remove("QUIVER_ADMIN_TOKEN_FILE")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

async fn ok(lake: &Lake, args: &[&str]) -> (String, String) {
    let endpoint = common::url(&lake.node);
    let mut all = vec!["--endpoint", endpoint.as_str()];
    all.extend_from_slice(args);
    let out = quiver(&all).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "quiver {args:?} failed: {stderr}");
    (stdout, stderr)
}

/// Runs a command that must fail; returns its one line of stderr.
async fn fails(args: &[&str]) -> String {
    let out = quiver(args).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "quiver {args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line of error for {args:?}: {stderr}");
    assert!(lines[0].starts_with("quiver: "), "{stderr}");
    for noise in ["panicked", "backtrace", "Status {", "RUST_BACKTRACE"] {
        assert!(!stderr.contains(noise), "{noise} in {stderr}");
    }
    lines[0].to_string()
}

async fn reference_csv(lake: &Lake, sql: &str) -> Vec<String> {
    let ctx = reference_ctx(&lake.local).await;
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut w = arrow::csv::WriterBuilder::new()
        .with_header(false)
        .build(Vec::new());
    for b in &batches {
        w.write(b).unwrap();
    }
    let mut lines: Vec<String> = String::from_utf8(w.into_inner())
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

fn csv_body(stdout: &str) -> (String, Vec<String>) {
    let mut lines = stdout.lines();
    let header = lines.next().unwrap_or_default().to_string();
    let mut body: Vec<String> = lines.map(String::from).collect();
    body.sort();
    (header, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_in_every_format() {
    let lake = tpch_lake(0.01, 2).await;
    let filter = "l_quantity > 45 AND l_shipmode = 'MAIL'";
    let sql = format!("SELECT l_orderkey, l_quantity, l_shipdate FROM lineitem WHERE {filter}");
    let expected = reference_csv(&lake, &sql).await;
    assert!(!expected.is_empty());
    let base = [
        "query",
        "lake/tpch/lineitem/",
        "--columns",
        "l_orderkey,l_quantity,l_shipdate",
        "--filter",
        filter,
    ];

    let mut args = base.to_vec();
    args.extend(["--format", "csv"]);
    let (stdout, stderr) = ok(&lake, &args).await;
    let (header, body) = csv_body(&stdout);
    assert_eq!(header, "l_orderkey,l_quantity,l_shipdate");
    assert_eq!(body, expected);
    assert!(
        stderr.contains(&format!("({} rows)", expected.len())),
        "{stderr}"
    );

    let mut args = base.to_vec();
    args.extend(["--format", "table"]);
    let (stdout, _) = ok(&lake, &args).await;
    assert!(stdout.contains("| l_orderkey |"), "{stdout}");
    let table_rows = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("l_orderkey"))
        .count();
    assert_eq!(table_rows, expected.len());

    let mut args = base.to_vec();
    args.extend(["--format", "jsonl"]);
    let (stdout, _) = ok(&lake, &args).await;
    let mut keys: Vec<String> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{},{},{}",
                v["l_orderkey"],
                // JSON numbers lose a decimal's trailing zeros.
                v["l_quantity"].as_f64().map(|q| format!("{q:.2}")).unwrap(),
                v["l_shipdate"].as_str().unwrap()
            )
        })
        .collect();
    keys.sort();
    assert_eq!(keys, expected);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.parquet");
    let mut args = base.to_vec();
    args.extend(["--format", "parquet", "--output", file.to_str().unwrap()]);
    let (stdout, stderr) = ok(&lake, &args).await;
    assert!(stdout.is_empty());
    assert!(stderr.contains("rows written to"), "{stderr}");
    assert!(!dir.path().join("out.parquet.partial").exists());
    let ctx = datafusion::prelude::SessionContext::new();
    let got = ctx
        .read_parquet(file.to_str().unwrap(), Default::default())
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let reference = reference_ctx(&lake.local).await;
    let want = reference.sql(&sql).await.unwrap().collect().await.unwrap();
    assert_eq!(rows(&got), rows(&want));

    // A limit holds over all objects together.
    let (stdout, _) = ok(
        &lake,
        &[
            "query",
            "lake/tpch/lineitem/",
            "--filter",
            filter,
            "--limit",
            "3",
            "--format",
            "csv",
        ],
    )
    .await;
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_over_quiver_tables() {
    let lake = tpch_lake(0.01, 2).await;
    let sql = "SELECT o_orderpriority, count(*) AS n FROM orders JOIN lineitem ON l_orderkey = o_orderkey \
               WHERE l_commitdate < l_receiptdate AND o_orderdate >= DATE '1995-01-01' \
               GROUP BY o_orderpriority ORDER BY o_orderpriority";
    let (stdout, _) = ok(
        &lake,
        &[
            "sql",
            sql,
            "--table",
            "orders=lake/tpch/orders/",
            "--table",
            "lineitem=lake/tpch/lineitem/",
            "--format",
            "csv",
        ],
    )
    .await;
    let (header, body) = csv_body(&stdout);
    assert_eq!(header, "o_orderpriority,n");
    assert_eq!(body, reference_csv(&lake, sql).await);
    assert_eq!(body.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_prefetch_stats_evict() {
    let lake = tpch_lake(0.01, 2).await;
    // Listing reads each footer, which caches the objects' last chunk, so a
    // cold listing shows a little cached, not nothing.
    let (stdout, _) = ok(&lake, &["ls", "lake/tpch/lineitem/"]).await;
    assert!(
        stdout.contains("lake/tpch/lineitem/part-0.parquet"),
        "{stdout}"
    );
    assert!(
        stdout.contains("lake/tpch/lineitem/part-1.parquet"),
        "{stdout}"
    );
    assert!(stdout.contains("2 object(s)"), "{stdout}");
    let cold = cached_percent(&stdout);
    assert!(cold < 50, "{stdout}");

    let (stdout, _) = ok(&lake, &["prefetch", "lake/tpch/lineitem/"]).await;
    assert!(stdout.contains("prefetched 2 object(s)"), "{stdout}");
    let (stdout, _) = ok(&lake, &["ls", "lake/tpch/lineitem/"]).await;
    assert_eq!(cached_percent(&stdout), 100, "{stdout}");

    let (stdout, _) = ok(&lake, &["stats", "--json"]).await;
    let report: StatsReport = serde_json::from_str(&stdout).unwrap();
    assert!(
        report.memory.usage > 0 && report.origin_bytes > 0,
        "{report:?}"
    );
    let (stdout, _) = ok(&lake, &["stats"]).await;
    assert!(
        stdout.contains("memory") && stdout.contains("hit ratio"),
        "{stdout}"
    );

    let (stdout, _) = ok(&lake, &["evict", "lake/tpch/lineitem/"]).await;
    assert!(stdout.contains("2 object(s)"), "{stdout}");
    let (stdout, _) = ok(&lake, &["ls", "lake/tpch/lineitem/"]).await;
    assert_eq!(cached_percent(&stdout), cold, "{stdout}");
}

/// The percentage on `ls`'s summary line.
fn cached_percent(ls: &str) -> u32 {
    let last = ls.lines().last().unwrap();
    let open = last.rfind('(').unwrap();
    last[open + 1..].trim_end_matches("%)").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_error_is_one_line_and_exit_code_1() {
    let lake = tpch_lake(0.01, 1).await;
    let url = common::url(&lake.node);
    let e = &url;

    let line = fails(&["--endpoint", "grpc://127.0.0.1:1", "ls", "lake"]).await;
    assert!(line.contains("cannot reach grpc://127.0.0.1:1"), "{line}");

    let line = fails(&["--endpoint", e, "query", "nope/x.parquet"]).await;
    assert!(
        line.contains("no source named `nope`") && line.contains("NotFound"),
        "{line}"
    );
    assert!(line.contains("request id "), "{line}");

    let line = fails(&[
        "--endpoint",
        e,
        "query",
        "lake/tpch/orders/",
        "--filter",
        "o_orderkey >>> 3",
    ])
    .await;
    assert!(
        line.contains("InvalidArgument") && line.contains("request id "),
        "{line}"
    );

    let line = fails(&[
        "--endpoint",
        e,
        "query",
        "lake/tpch/orders/",
        "--columns",
        "nope",
    ])
    .await;
    assert!(line.contains("unknown column `nope`"), "{line}");

    let line = fails(&["--endpoint", e, "sql", "SELECT 1", "--table", "orders"]).await;
    assert!(line.contains("bad --table `orders`"), "{line}");

    let line = fails(&[
        "--endpoint",
        e,
        "sql",
        "SELEC x",
        "--table",
        "o=lake/tpch/orders/",
    ])
    .await;
    assert!(line.contains("SELEC"), "{line}");

    let line = fails(&[
        "--endpoint",
        e,
        "query",
        "lake/tpch/orders/",
        "--format",
        "parquet",
    ])
    .await;
    assert!(line.contains("--output"), "{line}");

    let line = fails(&["--endpoint", "http//oops", "ls", "lake"]).await;
    assert!(line.contains("bad node URL"), "{line}");

    // The node still serves after all of that.
    let (stdout, _) = ok(&lake, &["query", "lake/tpch/region/", "--format", "csv"]).await;
    assert_eq!(stdout.lines().count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_and_basic_handshake_works() {
    let dir = tempfile::tempdir().unwrap();
    let lake = tpch_lake(0.01, 1).await;
    std::fs::write(dir.path().join("tokens"), "reader-token\n").unwrap();
    let mut config = common::node_config(vec![common::source(&lake.s3)]);
    config.auth.tokens_file = Some(dir.path().join("tokens"));
    let node = quiver_server::RunningNode::start(config).await.unwrap();
    let url = common::url(&node);

    let line = fails(&["--endpoint", &url, "ls", "lake"]).await;
    assert!(line.contains("Unauthenticated"), "{line}");
    let line = fails(&["--endpoint", &url, "--token", "wrong", "ls", "lake"]).await;
    assert!(line.contains("Unauthenticated"), "{line}");

    for extra in [
        vec!["--token", "reader-token"],
        vec!["--token", "reader-token", "--user", "bi"],
    ] {
        let mut args = vec!["--endpoint", url.as_str()];
        args.extend(extra);
        args.extend(["query", "lake/tpch/region/", "--format", "csv"]);
        let out = quiver(&args).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(stdout.lines().count(), 6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_comes_from_the_environment_new_name_or_old() {
    let lake = tpch_lake(0.01, 1).await;
    let url = common::url(&lake.node);
    for var in ["QUIVER_ENDPOINT", "QUIVER_NODE"] {
        let url = url.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
                .args(["ls", "lake/tpch/region/"])
                .env_remove("QUIVER_ENDPOINT")
                .env_remove("QUIVER_NODE")
                .env(var, url)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{var}: {stderr}");
        assert!(stdout.contains("1 object(s)"), "{var}: {stdout}");
    }
}
