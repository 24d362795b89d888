//! The origin failing, through the testkit's emulated S3 link and the test
//! S3 server's 503 SlowDown answers: a stall, refused connections, bodies
//! reset mid-way, a latency spike and throttling. In every case cached data
//! is still served, an uncached read fails with Unavailable within a bounded
//! time and without naming the endpoint, the circuit breaker makes repeated
//! misses fail fast, and once the origin recovers the node serves misses
//! again, with results equal to the oracle's.

use std::time::{Duration, Instant};

use quiver_server::config::{SourceConfig, Span};
use quiver_server::RunningNode;
use quiver_testkit::link::{Link, LinkConfig};
use tonic::Code;

use crate::common::*;

/// How long an uncached read may take to fail with [`fragile`] settings
/// (request timeout 1 s, one retry, backoff up to 5 s), with headroom.
const BOUND: Duration = Duration::from_secs(15);

/// A source read through `link`, with short timeouts and one retry so that
/// failures show quickly, and a breaker that opens only when a test says.
fn fragile(s3: &S3Server, link: &Link) -> SourceConfig {
    let mut source = s3.source("lake");
    source.endpoint = Some(link.endpoint());
    source.request_timeout = Span(Duration::from_secs(1));
    source.connect_timeout = Span(Duration::from_secs(1));
    source.retries = 1;
    source.validate = Span(Duration::from_secs(300));
    source.breaker_failures = 0;
    source
}

/// An S3 server with objects `t/a.parquet` .. `t/e.parquet` behind a link,
/// a node reading it through a [`fragile`] source changed by `tune`, and a
/// client of the node.
struct Rig {
    s3: S3Server,
    link: Link,
    node: RunningNode,
    c: arrow_flight::FlightClient,
}

async fn rig(root: &std::path::Path, tune: impl FnOnce(&mut SourceConfig)) -> Rig {
    let s3 = S3Server::start(root).await;
    for (i, name) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        write_parquet(&s3.file(&format!("t/{name}.parquet")), 4000, i as u64 + 1);
    }
    let link = Link::start(s3.inner().addr, LinkConfig::default())
        .await
        .unwrap();
    let mut source = fragile(&s3, &link);
    tune(&mut source);
    let node = RunningNode::start(node_config(vec![source], None))
        .await
        .unwrap();
    let c = client(&node).await;
    Rig { s3, link, node, c }
}

const FILTER: &str = "qty > 10";

/// Scans `name` and checks the rows against the oracle.
async fn served(c: &mut arrow_flight::FlightClient, s3: &S3Server, name: &str) {
    let path = format!("t/{name}.parquet");
    let got = do_get(c, &filtered(&path, FILTER))
        .await
        .unwrap_or_else(|e| panic!("{path}: {e:?}"));
    let want = reference(&s3.file(&path), None, Some(FILTER)).await;
    assert_eq!(rows(&got), rows(&want), "{path}");
}

/// Scans `name`, which is not cached, and checks that it fails with
/// Unavailable within `bound`, naming the object and not the endpoint.
async fn unavailable(
    c: &mut arrow_flight::FlightClient,
    link: &Link,
    name: &str,
    bound: Duration,
) -> tonic::Status {
    let path = format!("t/{name}.parquet");
    let started = Instant::now();
    let err = do_get(c, &filtered(&path, FILTER)).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{path}: {err:?}");
    assert!(took < bound, "{path}: the miss took {took:?} to fail");
    assert!(err.message().contains(&path), "{}", err.message());
    assert!(
        !err.message().contains(&link.addr.to_string()),
        "the message names the origin's endpoint: {}",
        err.message()
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_origin_fails_misses_quickly_and_hits_keep_being_served() {
    let root = tempfile::tempdir().unwrap();
    let Rig {
        s3,
        link,
        node,
        mut c,
    } = rig(root.path(), |_| {}).await;
    served(&mut c, &s3, "a").await;
    link.faults().stall(true);
    served(&mut c, &s3, "a").await;
    unavailable(&mut c, &link, "b", BOUND).await;
    served(&mut c, &s3, "a").await;
    link.faults().stall(false);
    served(&mut c, &s3, "b").await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_origin_is_unavailable_at_once_and_then_recovers() {
    let root = tempfile::tempdir().unwrap();
    let Rig {
        s3,
        link,
        node,
        mut c,
    } = rig(root.path(), |_| {}).await;
    served(&mut c, &s3, "a").await;
    link.faults().refuse(true);
    // Refused connections need no timeout: well under one request timeout
    // per attempt plus the backoff.
    unavailable(&mut c, &link, "b", Duration::from_secs(5)).await;
    served(&mut c, &s3, "a").await;
    link.faults().refuse(false);
    served(&mut c, &s3, "b").await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_off_mid_way_is_unavailable_never_a_short_result() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    let path = "t/big.parquet";
    write_parquet(&s3.file(path), 60_000, 7);
    let link = Link::start(s3.inner().addr, LinkConfig::default())
        .await
        .unwrap();
    let mut config = node_config(vec![fragile(&s3, &link)], None);
    config.cache.chunk = quiver_server::config::ByteSize(64 << 10);
    let node = RunningNode::start(config).await.unwrap();
    let mut c = client(&node).await;
    // Plan first, so that identity and footer are known and the failure
    // falls in the column chunks the scan streams.
    flight_info(&mut c, &scan("lake", path)).await.unwrap();
    let mut cut = 0;
    for limit in [20_000, 100_000, 300_000] {
        link.faults().reset_after(Some(limit));
        match do_get(&mut c, &scan("lake", path)).await {
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "cut after {limit} B: {e:?}");
                cut += 1;
            }
            // Every try reads the chunks a cut left missing again, so a run
            // may complete; then it must be complete.
            Ok(got) => assert_eq!(row_count(&got), 60_000, "cut after {limit} B"),
        }
    }
    assert!(cut > 0, "no read was cut off: the fault did not bite");
    link.faults().reset_after(None);
    let got = do_get(&mut c, &scan("lake", path)).await.unwrap();
    let want = reference(&s3.file(path), None, None).await;
    assert_eq!(rows(&got), rows(&want));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_spike_past_the_request_timeout_is_unavailable_until_it_passes() {
    let root = tempfile::tempdir().unwrap();
    let Rig {
        s3,
        link,
        node,
        mut c,
    } = rig(root.path(), |_| {}).await;
    served(&mut c, &s3, "a").await;
    link.faults().extra_latency(Duration::from_secs(3));
    served(&mut c, &s3, "a").await;
    unavailable(&mut c, &link, "b", BOUND).await;
    // A spike under the timeout only slows misses down.
    link.faults().extra_latency(Duration::from_millis(300));
    served(&mut c, &s3, "b").await;
    link.faults().clear();
    served(&mut c, &s3, "c").await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_answers_are_retried_and_persistent_ones_are_unavailable() {
    let root = tempfile::tempdir().unwrap();
    let Rig {
        s3,
        link,
        node,
        mut c,
    } = rig(root.path(), |s| s.retries = 3).await;
    // Two throttled answers are absorbed by the retries.
    s3.inner().slow_down(2);
    served(&mut c, &s3, "a").await;
    assert_eq!(
        s3.inner().slow_downs_left(),
        0,
        "the read succeeded without meeting the SlowDown answers"
    );
    // Throttled for good: Unavailable, and hits are still served.
    s3.inner().slow_down(u64::MAX);
    let err = unavailable(&mut c, &link, "b", BOUND).await;
    assert!(!err.message().contains("SlowDown"), "{}", err.message());
    served(&mut c, &s3, "a").await;
    s3.inner().slow_down(0);
    served(&mut c, &s3, "b").await;
    node.shutdown().await.unwrap();
}

async fn health(c: &mut arrow_flight::FlightClient) -> serde_json::Value {
    serde_json::from_slice(&action(c, "health", b"").await.unwrap()[0]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_keeps_failing_opens_the_circuit_and_misses_fail_fast() {
    let root = tempfile::tempdir().unwrap();
    let Rig {
        s3,
        link,
        node,
        mut c,
    } = rig(root.path(), |s| {
        s.retries = 0;
        s.breaker_failures = 2;
        s.breaker_cooldown = Span(Duration::from_secs(2));
    })
    .await;
    served(&mut c, &s3, "a").await;
    assert_eq!(health(&mut c).await["origins"]["lake"]["circuit"], "closed");
    link.faults().stall(true);
    unavailable(&mut c, &link, "b", BOUND).await;
    unavailable(&mut c, &link, "c", BOUND).await;
    // Two failures in a row: the circuit is open, and a miss fails without
    // waiting for the origin: under its 1 s request timeout.
    let err = unavailable(&mut c, &link, "d", Duration::from_millis(900)).await;
    assert!(
        err.message().contains("failed 2 times in a row"),
        "{}",
        err.message()
    );
    let h = health(&mut c).await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["origins"]["lake"]["circuit"], "open", "{h}");
    let metrics = node.core.metrics.render();
    assert!(
        metrics.contains("quiver_origin_circuit_open{source=\"lake\"} 1"),
        "{metrics}"
    );
    served(&mut c, &s3, "a").await;
    // The origin recovers; after the cooldown one probe closes the circuit.
    link.faults().stall(false);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    served(&mut c, &s3, "d").await;
    let h = health(&mut c).await;
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["origins"]["lake"]["circuit"], "closed", "{h}");
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_objects_and_forced_rechecks_do_not_drive_the_origin() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    write_parquet(&s3.file("t/a.parquet"), 1000, 1);
    let mut source = s3.source("lake");
    source.missing_ttl = Span(Duration::from_millis(1500));
    source.revalidate_interval = Span(Duration::from_secs(5));
    let node = RunningNode::start(node_config(vec![source], None))
        .await
        .unwrap();
    let mut c = client(&node).await;
    let heads = |key: &str| {
        s3.inner()
            .requests()
            .iter()
            .filter(|r| r.method == "HEAD" && r.path.ends_with(key))
            .count()
    };
    for _ in 0..20 {
        let err = do_get(&mut c, &scan("lake", "t/gone.parquet"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
    assert_eq!(
        heads("t/gone.parquet"),
        1,
        "each missing read asked the origin"
    );
    // Tickets naming ETags the node has never seen: one recheck, then the
    // recent answer stands.
    for i in 0..20 {
        let req = quiver_protocol::ScanRequest {
            etag: Some(format!("\"bogus-{i}\"")),
            ..scan("lake", "t/a.parquet")
        };
        let err = do_get(&mut c, &req).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().starts_with("CHANGED "), "{}", err.message());
    }
    assert!(heads("t/a.parquet") <= 2, "{} HEADs", heads("t/a.parquet"));
    // The object appears: found once the negative entry has expired.
    write_parquet(&s3.file("t/gone.parquet"), 500, 2);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let got = do_get(&mut c, &scan("lake", "t/gone.parquet"))
        .await
        .unwrap();
    assert_eq!(row_count(&got), 500);
    still_answers(&mut c).await;
    node.shutdown().await.unwrap();
}

async fn still_answers(c: &mut arrow_flight::FlightClient) {
    let s = stats(c).await;
    assert!(!s.node_id.is_empty());
}

/// A scan of source `lake` with a filter.
fn filtered(path: &str, filter: &str) -> quiver_protocol::ScanRequest {
    quiver_protocol::ScanRequest {
        filter: Some(filter.into()),
        ..scan("lake", path)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_plans_is_refused_beyond_the_limit_and_scans_go_on() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..60 {
        write_parquet(&dir.path().join(format!("t/p{i:02}.parquet")), 200, i);
    }
    let mut config = node_config(vec![local_source("local", dir.path())], None);
    config.limits.max_concurrent_plans = 2;
    let node = RunningNode::start(config).await.unwrap();
    let prefix = quiver_protocol::ScanRequest {
        filter: Some("qty > 3".into()),
        ..scan("local", "t/")
    };
    let mut clients = Vec::new();
    for _ in 0..24 {
        clients.push(client(&node).await);
    }
    let calls = clients.into_iter().enumerate().map(|(i, mut c)| {
        let req = prefix.clone();
        async move {
            if i % 2 == 0 {
                flight_info(&mut c, &req).await.map(|_| ())
            } else {
                c.get_schema(arrow_flight::FlightDescriptor::new_cmd(req.to_bytes()))
                    .await
                    .map(|_| ())
                    .map_err(into_status)
            }
        }
    });
    let outcomes = futures::future::join_all(calls).await;
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(e) if e.code() == Code::ResourceExhausted))
        .count();
    let other: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().err())
        .filter(|e| e.code() != Code::ResourceExhausted)
        .collect();
    assert!(other.is_empty(), "{other:?}");
    assert!(
        refused > 0,
        "24 concurrent plans with a limit of 2 were all admitted"
    );
    assert!(refused < 24, "no plan was admitted");
    // Scans and later plans are served.
    let mut c = client(&node).await;
    let got = do_get(&mut c, &scan("local", "t/p07.parquet"))
        .await
        .unwrap();
    assert_eq!(row_count(&got), 200);
    flight_info(&mut c, &prefix).await.unwrap();
    node.shutdown().await.unwrap();
}
