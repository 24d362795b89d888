//! The origin failing: a stalled and a refusing S3 endpoint. Cached data is
//! still served, an uncached read fails with Unavailable within a bounded
//! time and without naming the endpoint, and once the origin recovers the
//! node serves misses again, with results equal to DataFusion's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_server::config::Span;
use quiver_server::RunningNode;
use tonic::Code;

use crate::common::*;

/// A TCP proxy to `target` that, while `stalled` is set, accepts
/// connections and never answers them (new ones, and bytes on open ones).
struct Proxy {
    addr: std::net::SocketAddr,
    stalled: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proxy(target: String) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = stalled.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let flag = flag.clone();
            let target = target.clone();
            tokio::spawn(async move {
                if flag.load(Ordering::SeqCst) {
                    // Hold the connection open, say nothing.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                let Ok(upstream) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (cr, cw) = client.split();
                let (ur, uw) = upstream.into_split();
                let up = pump(cr, uw, flag.clone());
                let down = pump(ur, cw, flag);
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            });
        }
    });
    Proxy {
        addr,
        stalled,
        task,
    }
}

/// Copies `from` to `to`, holding every chunk while `stalled` is set, so a
/// stall also freezes connections opened before it.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    stalled: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// How long an uncached read may take to fail with these settings
/// (request timeout 1 s, one retry, backoff up to 5 s), with headroom.
const BOUND: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_origin_fails_misses_quickly_and_hits_keep_being_served() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    write_parquet(&s3.file("t/a.parquet"), 4000, 1);
    write_parquet(&s3.file("t/b.parquet"), 4000, 2);
    let link = proxy(s3.endpoint().trim_start_matches("http://").to_string()).await;
    let mut source = s3.source("lake");
    source.endpoint = Some(format!("http://{}", link.addr));
    source.request_timeout = Span(Duration::from_secs(1));
    source.connect_timeout = Span(Duration::from_secs(1));
    source.retries = 1;
    source.validate = Span(Duration::from_secs(300));
    let node = RunningNode::start(node_config(vec![source], None))
        .await
        .unwrap();
    let mut c = client(&node).await;
    let filter = "qty > 10";
    let a = filtered("t/a.parquet", filter);
    let first = do_get(&mut c, &a).await.unwrap();
    let want_a = reference(&s3.file("t/a.parquet"), None, Some(filter)).await;
    assert_eq!(rows(&first), rows(&want_a));

    link.stalled.store(true, Ordering::SeqCst);
    // Cached: served as before, without the origin.
    let again = do_get(&mut c, &a).await.unwrap();
    assert_eq!(rows(&again), rows(&want_a));
    // Uncached: Unavailable within the bound, naming the object and not the
    // endpoint.
    let b = filtered("t/b.parquet", filter);
    let started = Instant::now();
    let err = do_get(&mut c, &b).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(took < BOUND, "the miss took {took:?} to fail");
    assert!(err.message().contains("t/b.parquet"), "{}", err.message());
    assert!(
        !err.message().contains(&link.addr.to_string()),
        "the message names the origin's endpoint: {}",
        err.message()
    );
    // The node still serves.
    let again = do_get(&mut c, &a).await.unwrap();
    assert_eq!(rows(&again), rows(&want_a));

    // After recovery, misses are served again.
    link.stalled.store(false, Ordering::SeqCst);
    let got = do_get(&mut c, &b).await.unwrap();
    let want_b = reference(&s3.file("t/b.parquet"), None, Some(filter)).await;
    assert_eq!(rows(&got), rows(&want_b));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_origin_is_unavailable_at_once() {
    let root = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(root.path()).await;
    write_parquet(&s3.file("t/a.parquet"), 1000, 1);
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut source = s3.source("lake");
    source.endpoint = Some(format!("http://{closed}"));
    source.retries = 1;
    let node = RunningNode::start(node_config(vec![source], None))
        .await
        .unwrap();
    let mut c = client(&node).await;
    let started = Instant::now();
    let err = do_get(&mut c, &scan("lake", "t/a.parquet"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(started.elapsed() < BOUND, "{:?}", started.elapsed());
    assert!(
        !err.message().contains(&closed.to_string()),
        "{}",
        err.message()
    );
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
