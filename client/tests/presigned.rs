//! The miss policy end to end against s3s-fs, which checks SigV4 and the
//! expiry of pre-signed URLs: a cold scan from a client that opts in gets a
//! URL that works, only for GET, only until it expires, and only for the
//! object it names; the client reads it with the same results as through a
//! node; the owner warms the object in the background so the next scan is a
//! hit; and 64 concurrent cold scans fetch each chunk from the origin once.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use bytes::Bytes;
use common::*;
use futures::{StreamExt, TryStreamExt};
use object_store::http::HttpBuilder;
use object_store::path::Path as StorePath;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use quiver_client::presigned::read_presigned;
use quiver_client::{ClientConfig, ClientError, Endpoint, Presigned, QuiverClient, Served};
use quiver_protocol::{Accept, PresignedEndpoint, ScanRequest, StatsReport};
use quiver_server::config::{MissPolicy, Span};
use quiver_server::RunningNode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CHUNK: u64 = 256 << 10;

async fn presign_node(lake: &Lake, expiry: Duration) -> RunningNode {
    let mut c = node_config(vec![source(&lake.s3)]);
    c.miss.policy = MissPolicy::Presign;
    c.miss.presign_expiry = Span(expiry);
    RunningNode::start(c).await.unwrap()
}

/// The key of the one lineitem object.
fn lineitem(lake: &Lake) -> String {
    let dir = lake.local.join("tpch").join("lineitem");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    format!("tpch/lineitem/{}", names[0])
}

fn both() -> Option<Vec<Accept>> {
    Some(vec![Accept::Flight, Accept::Presigned])
}

fn request(path: &str, columns: &[&str], filter: Option<&str>, limit: Option<u64>) -> ScanRequest {
    ScanRequest {
        source: Some("lake".into()),
        path: Some(path.into()),
        columns: (!columns.is_empty()).then(|| columns.iter().map(|c| c.to_string()).collect()),
        filter: filter.map(String::from),
        limit,
        ..Default::default()
    }
}

async fn flight_info(client: &QuiverClient, node: &RunningNode, req: &ScanRequest) -> FlightInfo {
    client
        .flight(&url(node))
        .unwrap()
        .get_flight_info(FlightDescriptor::new_cmd(req.to_bytes()))
        .await
        .unwrap()
}

async fn stats(client: &QuiverClient, node: &RunningNode) -> StatsReport {
    let answer = client
        .action_on(&url(node), "stats", Bytes::new())
        .await
        .unwrap();
    serde_json::from_slice(&answer[0]).unwrap()
}

fn http(url: &str) -> object_store::http::HttpStore {
    HttpBuilder::new()
        .with_url(url)
        .with_client_options(ClientOptions::new().with_allow_http(true))
        .build()
        .unwrap()
}

async fn tail(url: &str) -> object_store::Result<Bytes> {
    let options = GetOptions {
        range: Some(GetRange::Suffix(4)),
        ..Default::default()
    };
    http(url)
        .get_opts(&StorePath::default(), options)
        .await?
        .bytes()
        .await
}

/// The one pre-signed endpoint a plan of `req` answers.
async fn presigned(client: &QuiverClient, req: &ScanRequest) -> Presigned {
    let mut req = req.clone();
    req.accept = both();
    let plan = client.plan(&req).await.unwrap();
    assert_eq!(plan.endpoints.len(), 1);
    plan.endpoints[0]
        .presigned
        .clone()
        .expect("a cold object planned for a client that accepts URLs gets one")
}

async fn wait_warm(client: &QuiverClient, node: &RunningNode) -> StatsReport {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = stats(client, node).await;
        if s.warm.queued == 0 && s.warm.done + s.warm.failed > 0 {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "warming did not finish: {:?}",
            s.warm
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_scan_gets_a_url_that_reads_only_that_object_and_never_writes() {
    let lake = tpch_lake(0.05, 1).await;
    let node = presign_node(&lake, Duration::from_secs(900)).await;
    let client = client(&node).await;
    let key = lineitem(&lake);
    let mut req = request(
        &key,
        &["l_orderkey", "l_quantity"],
        Some("l_quantity > 45"),
        None,
    );

    // A client that did not opt in gets Flight endpoints, cold or not.
    for accept in [None, Some(vec![Accept::Flight])] {
        req.accept = accept;
        let info = flight_info(&client, &node, &req).await;
        assert!(info.endpoint[0].location[0].uri.starts_with("grpc://"));
        assert!(info.endpoint[0].expiration_time.is_none());
    }
    assert_eq!(stats(&client, &node).await.presigned_urls, 0);

    // Nothing outside a configured source is ever signed.
    for outside in [
        "s3://another-bucket/secret.parquet",
        "s3://lake-archive/x.parquet",
    ] {
        let bad = ScanRequest {
            url: Some(outside.into()),
            accept: both(),
            ..Default::default()
        };
        let err = client.plan(&bad).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    }
    let escape = ScanRequest {
        accept: both(),
        ..request("../other/secret.parquet", &[], None, None)
    };
    let err = client.plan(&escape).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    assert_eq!(stats(&client, &node).await.presigned_urls, 0);

    req.accept = both();
    let planned_at = SystemTime::now();
    let info = flight_info(&client, &node, &req).await;
    assert_eq!(info.endpoint.len(), 1);
    let endpoint = &info.endpoint[0];
    assert_eq!(endpoint.location.len(), 1, "one URL, no node");
    let location = endpoint.location[0].uri.clone();
    assert!(location.starts_with(&lake.s3.endpoint()), "{location}");
    let expires: SystemTime = endpoint.expiration_time.unwrap().try_into().unwrap();
    let life = expires.duration_since(planned_at).unwrap();
    assert!(
        life > Duration::from_secs(890) && life < Duration::from_secs(910),
        "{life:?}"
    );
    let meta = PresignedEndpoint::parse(&endpoint.app_metadata).unwrap();
    let head = store(&lake.s3)
        .head(&StorePath::from(key.as_str()))
        .await
        .unwrap();
    assert_eq!(
        meta,
        PresignedEndpoint::new("lake", &key, head.e_tag.as_deref().unwrap(), head.size)
    );

    // The URL reads the object, with a Range request.
    assert_eq!(&tail(&location).await.unwrap()[..], b"PAR1");

    // A tampered signature, and the same signature on another key, are
    // refused by the store.
    let mut url = url::Url::parse(&location).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    url.query_pairs_mut().clear();
    for (k, v) in &pairs {
        let v = if k == "X-Amz-Signature" {
            let flipped = if v.ends_with('0') { '1' } else { '0' };
            format!("{}{flipped}", &v[..v.len() - 1])
        } else {
            v.clone()
        };
        url.query_pairs_mut().append_pair(k, &v);
    }
    let err = tail(url.as_str()).await.unwrap_err();
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "{err}"
    );
    let other = location.replace("lineitem", "orders");
    let err = tail(&other).await.unwrap_err();
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "{err}"
    );

    // A URL is for GET only: a PUT with it is refused, and the object is
    // untouched.
    let err = http(&location)
        .put(
            &StorePath::default(),
            Bytes::from_static(b"overwritten").into(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "{err}"
    );
    let after = store(&lake.s3)
        .head(&StorePath::from(key.as_str()))
        .await
        .unwrap();
    assert_eq!(after.e_tag, head.e_tag);
    assert_eq!(after.size, head.size);

    // Counted, in stats and by source on /metrics.
    assert_eq!(stats(&client, &node).await.presigned_urls, 1);
    let metrics = http_get(node.admin_addr, "/metrics").await;
    assert!(
        metrics.contains("quiver_presigned_urls_total{source=\"lake\"} 1"),
        "{metrics}"
    );
}

/// `GET path` on the admin listener, returning the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    sock.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_url_is_refused_and_the_client_plans_again() {
    let lake = tpch_lake(0.02, 1).await;
    let node = presign_node(&lake, Duration::from_secs(1)).await;
    let key = lineitem(&lake);
    let mut cfg = ClientConfig::new(vec![url(&node)]);
    cfg.accept_presigned = true;
    let client = QuiverClient::connect(cfg).await.unwrap();
    let req = request(
        &key,
        &["l_orderkey", "l_discount"],
        Some("l_discount > 0.08"),
        None,
    );
    let plan = client.plan(&req).await.unwrap();
    let endpoint: Endpoint = plan.endpoints[0].clone();
    let p = endpoint.presigned.clone().unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let err = tail(&p.url).await.unwrap_err();
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "{err}"
    );
    let err = read_presigned(&p, &endpoint.ticket, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::UrlRefused(_)), "{err}");

    // The routing client plans the object again and still answers.
    let (_, stream) = client.read_endpoint(&endpoint).await.unwrap();
    let got: Vec<_> = stream.try_collect().await.unwrap();
    let reference = reference_ctx(&lake.local).await;
    let want = reference
        .sql("SELECT l_orderkey, l_discount FROM lineitem WHERE l_discount > 0.08")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(rows(&got), rows(&want));
}

const FILTERS: [&str; 12] = [
    "l_quantity > 45",
    "l_discount BETWEEN 0.05 AND 0.07",
    "l_shipdate >= DATE '1995-01-01' AND l_shipdate < DATE '1995-03-01'",
    "l_returnflag = 'R'",
    "l_shipmode IN ('AIR', 'MAIL')",
    "l_comment LIKE '%furious%'",
    "l_orderkey % 7 = 3",
    "l_extendedprice * (1 - l_discount) > 50000",
    "NOT (l_linestatus = 'O')",
    "l_quantity < 2 OR l_tax > 0.07",
    "l_suppkey = 17",
    "l_receiptdate > l_commitdate",
];

const COLUMNS: [&[&str]; 4] = [
    &[],
    &["l_orderkey"],
    &["l_orderkey", "l_extendedprice", "l_shipdate"],
    &["l_comment", "l_quantity"],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_through_a_url_equal_reads_through_the_node_and_warming_makes_them_hits() {
    let lake = tpch_lake(0.05, 1).await;
    let node = presign_node(&lake, Duration::from_secs(900)).await;
    let key = lineitem(&lake);
    let plain = client(&node).await;
    let reference = reference_ctx(&lake.local).await;

    let first = request(&key, &["l_orderkey"], Some("l_orderkey < 20000"), None);
    let url = presigned(&plain, &first).await;

    // The owner warms what that scan needs: the same scan is then a hit
    // with no origin bytes, and is planned as a Flight endpoint.
    let warmed = wait_warm(&plain, &node).await;
    assert!(
        warmed.warm.done >= 1 && warmed.warm.bytes > 0,
        "{:?}",
        warmed.warm
    );
    let mut again = first.clone();
    again.accept = both();
    let info = flight_info(&plain, &node, &again).await;
    assert!(info.endpoint[0].location[0].uri.starts_with("grpc://"));
    let before = stats(&plain, &node).await;
    let hit = plain.collect(&first).await.unwrap();
    let after = stats(&plain, &node).await;
    assert!(hit.num_rows() > 0);
    assert_eq!(
        after.origin_bytes, before.origin_bytes,
        "a warm scan reads no origin bytes"
    );
    assert_eq!(after.misses, before.misses);

    // A routing client that opts in follows the URL of an object made cold
    // again by evicting it.
    let evict = serde_json::json!({"source": "lake", "path": key}).to_string();
    plain
        .action_on(&common::url(&node), "evict", Bytes::from(evict))
        .await
        .unwrap();
    let mut cfg = ClientConfig::new(vec![common::url(&node)]);
    cfg.accept_presigned = true;
    let opted = QuiverClient::connect(cfg).await.unwrap();
    let filter = "l_comment LIKE '%furious%'";
    let plan = opted
        .plan(&request(&key, &["l_comment"], Some(filter), None))
        .await
        .unwrap();
    assert!(plan.endpoints[0].presigned.is_some());
    let (served, stream) = opted.read_endpoint(&plan.endpoints[0]).await.unwrap();
    assert_eq!(served, Served::Presigned);
    let got: Vec<_> = stream.try_collect().await.unwrap();
    for batch in &got {
        assert_eq!(
            batch.schema(),
            plan.schema,
            "a pre-signed read streams the planned schema"
        );
    }
    let want = reference
        .sql(&format!("SELECT l_comment FROM lineitem WHERE {filter}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(rows(&got), rows(&want));

    // Many requests read through the same URL, each compared with the node
    // (Flight) and, without a limit, with DataFusion over the local file.
    let mut rng = StdRng::seed_from_u64(7);
    for case in 0..30 {
        let columns = COLUMNS[rng.random_range(0..COLUMNS.len())];
        let filter = (case % 5 != 0).then(|| FILTERS[rng.random_range(0..FILTERS.len())]);
        let limit = [None, None, Some(10), Some(1000)][rng.random_range(0..4)];
        let req = request(&key, columns, filter, limit);
        let direct = read_presigned(&url, &req, Duration::from_secs(30))
            .await
            .unwrap();
        let through_node = plain.collect(&req).await.unwrap().batches;
        assert_eq!(rows(&direct), rows(&through_node), "case {case}: {req:?}");
        if limit.is_none() {
            let projection = if columns.is_empty() {
                "*".to_string()
            } else {
                columns.join(", ")
            };
            let sql = format!(
                "SELECT {projection} FROM lineitem{}",
                filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
            );
            let want = reference.sql(&sql).await.unwrap().collect().await.unwrap();
            assert_eq!(rows(&direct), rows(&want), "case {case}: {sql}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_directory_cannot_presign_and_reads_through() {
    let lake = tpch_lake(0.01, 1).await;
    let mut c = node_config(vec![quiver_server::config::SourceConfig::new(
        "lake",
        url::Url::from_directory_path(&lake.local).unwrap().as_str(),
    )]);
    c.miss.policy = MissPolicy::Presign;
    let node = RunningNode::start(c).await.unwrap();
    let client = client(&node).await;
    let mut req = request(&lineitem(&lake), &["l_orderkey"], None, None);
    req.accept = Some(vec![Accept::Flight, Accept::Presigned]);
    let info = flight_info(&client, &node, &req).await;
    assert!(info.endpoint[0].location[0].uri.starts_with("grpc://"));
    assert_eq!(stats(&client, &node).await.presigned_urls, 0);
    // A client that accepts only URLs still gets a Flight endpoint it can
    // recognise, never a URL the source cannot sign.
    req.accept = Some(vec![Accept::Presigned]);
    let info = flight_info(&client, &node, &req).await;
    assert!(info.endpoint[0].location[0].uri.starts_with("grpc://"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_cold_scans_fetch_each_byte_once() {
    let lake = tpch_lake(0.05, 1).await;
    let key = lineitem(&lake);
    let client = client(&lake.node).await;
    let size = store(&lake.s3)
        .head(&StorePath::from(key.as_str()))
        .await
        .unwrap()
        .size;
    assert!(size > 8 * CHUNK, "the object spans many chunks: {size}");
    lake.s3.clear_requests();
    let ticket = Ticket::new(request(&key, &[], None, None).to_bytes());
    let scans = (0..64).map(|_| {
        let mut flight = client.flight(&url(&lake.node)).unwrap();
        let ticket = ticket.clone();
        async move {
            let batches: Vec<_> = flight.do_get(ticket).await?.try_collect().await?;
            Ok::<usize, arrow_flight::error::FlightError>(row_count(&batches))
        }
    });
    let counts = futures::future::try_join_all(scans).await.unwrap();
    let reference = reference_ctx(&lake.local).await;
    let want = reference
        .sql("SELECT count(*) FROM lineitem")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let want = rows(&want)[0].parse::<usize>().unwrap();
    assert!(counts.iter().all(|&c| c == want), "{counts:?} vs {want}");

    // Every GET of the object: no byte was fetched twice, and together
    // they touch every chunk of the object.
    let path = format!("/{BUCKET}/{key}");
    let mut gets: Vec<std::ops::Range<u64>> = lake
        .s3
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == path)
        .map(|r| r.byte_range().expect("every origin GET is ranged"))
        .collect();
    gets.sort_by_key(|r| r.start);
    let twice: Vec<_> = gets.windows(2).filter(|w| w[1].start < w[0].end).collect();
    assert!(twice.is_empty(), "bytes fetched more than once: {twice:?}");
    let chunks: BTreeSet<u64> = gets
        .iter()
        .flat_map(|r| r.start / CHUNK..r.end.div_ceil(CHUNK))
        .collect();
    assert_eq!(chunks.len() as u64, size.div_ceil(CHUNK));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_serve_but_can_sign_is_read_through_a_url() {
    let lake = tpch_lake(0.05, 1).await;
    let mut c = node_config(vec![source(&lake.s3)]);
    c.limits.max_concurrent_scans = 1;
    c.limits.scan_queue_timeout = quiver_server::config::Span(std::time::Duration::ZERO);
    let node = RunningNode::start(c).await.unwrap();
    let key = lineitem(&lake);
    // A reader that takes its first message and then stops holds the only
    // scan slot (for the stall timeout).
    let plain = client(&node).await;
    let mut hog = plain
        .flight(&url(&node))
        .unwrap()
        .do_get(Ticket::new(request(&key, &[], None, None).to_bytes()))
        .await
        .unwrap();
    let _first = hog.next().await;
    let busy = plain
        .scan(&request(&key, &["l_orderkey"], None, None))
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Some(tonic::Code::ResourceExhausted), "{busy}");

    let mut cfg = ClientConfig::new(vec![url(&node)]);
    cfg.accept_presigned = true;
    let opted = QuiverClient::connect(cfg).await.unwrap();
    let filter = "l_quantity > 48";
    let scan = opted
        .scan(&request(
            &key,
            &["l_orderkey", "l_quantity"],
            Some(filter),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(scan.served_by, Served::Presigned);
    let want = reference_ctx(&lake.local)
        .await
        .sql(&format!(
            "SELECT l_orderkey, l_quantity FROM lineitem WHERE {filter}"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(rows(&scan.batches), rows(&want));
    drop(hog);
}
