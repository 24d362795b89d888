//! Traces across nodes: two `quiver-server` processes export their spans to
//! an OTLP/gRPC receiver this test runs. A DoGet on the node that gained a
//! slot misses, the miss is filled from the slot's previous owner, and the
//! spans of both nodes form one trace under the caller's span.
//!
//! The nodes are processes, not in-process nodes, because tracing's
//! subscriber (and so the exporter) is one per process
//! (`server/src/telemetry`). They are stopped with SIGTERM, so the spans
//! checked are the ones their shutdown flushes.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::trace::{
    FutureExt as _, SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use quiver_client::{ClientConfig, QuiverClient};
use quiver_protocol::{slot_of, ClusterUpdate, NodeInfo, Topology, REQUEST_ID_HEADER};

use crate::common::*;

const SOURCE: &str = "lake";
const ROWS: usize = 20_000;

/// The caller's span of the DoGet, as a W3C `traceparent` would name it.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// The caller's span of the planning call made through the Rust client.
const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

/// One exported span, flattened with its node's resource.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    node: String,
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: HashMap<String, String>,
}

/// An OTLP trace receiver that keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Exported>>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = Vec::new();
        for rs in request.into_inner().resource_spans {
            let resource = attributes(rs.resource.map(|r| r.attributes).as_deref().unwrap_or(&[]));
            for ss in rs.scope_spans {
                for s in ss.spans {
                    got.push(Exported {
                        service: resource.get("service.name").cloned().unwrap_or_default(),
                        node: resource
                            .get("service.instance.id")
                            .cloned()
                            .unwrap_or_default(),
                        trace: hex(&s.trace_id),
                        id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        name: s.name,
                        attributes: attributes(&s.attributes),
                    });
                }
            }
        }
        self.spans.lock().unwrap().extend(got);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A `quiver-server` process and where it serves.
struct Node {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Node {
    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status of the graceful shutdown.
    async fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}: {}", self.logs());
                return self.logs();
            }
            if Instant::now() > deadline {
                self.child.kill().unwrap();
                panic!("the node did not stop: {}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Starts node `id` serving `data`, reading `topology` and exporting to
/// `otlp`; returns once it prints where it serves.
async fn start(id: &str, dir: &Path, data: &Path, topology: &Path, otlp: &str) -> Node {
    let log = dir.join(format!("{id}.log"));
    let out = File::create(&log).unwrap();
    let source = url::Url::from_directory_path(data).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_quiver-server"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--node-id", id, "--topology-reload", "200ms"])
        .arg("--topology")
        .arg(topology)
        .args(["--source", &format!("{SOURCE}={source}")])
        .args([
            "--cache-memory",
            "64MiB",
            "--cache-disk",
            "0",
            "--cache-hot",
            "0",
        ])
        .args(["--cache-chunk", "256KiB"])
        .arg("--cache-disk-dir")
        .arg(dir.join(format!("{id}-cache")))
        .args(["--otlp-endpoint", otlp])
        .env("QUIVER_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut node = Node {
        child,
        url: String::new(),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let logs = node.logs();
        if let Some(rest) = logs.split(&format!("`{SOURCE}` on grpc://")).nth(1) {
            let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            node.url = format!("grpc://{}", addr.trim_end_matches('.'));
            return node;
        }
        if let Some(status) = node.child.try_wait().unwrap() {
            panic!("node {id} exited with {status}: {logs}");
        }
        assert!(Instant::now() < deadline, "node {id} did not start: {logs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn epoch(url: &str) -> u64 {
    let out = action(&mut client_at(url).await, "cluster-shards", b"")
        .await
        .unwrap();
    serde_json::from_slice::<Topology>(&out[0]).unwrap().epoch
}

/// Stores `t` through `url` and waits until every node follows it.
async fn adopt(url: &str, expected: u64, t: &Topology, nodes: &[&Node]) {
    let body = serde_json::to_vec(&ClusterUpdate {
        expected_epoch: expected,
        topology: t.clone(),
    })
    .unwrap();
    action(&mut client_at(url).await, "cluster-update", &body)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in nodes {
        while epoch(&node.url).await != t.epoch {
            assert!(Instant::now() < deadline, "no epoch {}", t.epoch);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits for `url`'s hand-off to end and returns its state.
async fn handoff_state(url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = action(&mut client_at(url).await, "health", b"")
            .await
            .unwrap();
        let health: serde_json::Value = serde_json::from_slice(&out[0]).unwrap();
        let state = health["handoff"]["state"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if state == "done" || state == "failed" {
            return state;
        }
        assert!(Instant::now() < deadline, "hand-off did not end: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `span` lies under the span `ancestor` in `spans`.
fn under(spans: &[Exported], span: &Exported, ancestor: &str) -> bool {
    let mut parent = span.parent.clone();
    for _ in 0..64 {
        if parent == ancestor {
            return true;
        }
        match spans.iter().find(|s| s.id == parent) {
            Some(p) => parent = p.parent.clone(),
            None => return false,
        }
    }
    false
}

fn show(spans: &[Exported]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {} {} <- {} {:?}",
                s.node, s.name, s.id, s.parent, s.attributes
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_do_get_is_one_trace_across_the_node_and_its_peer() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = format!("http://{}", listener.local_addr().unwrap());
    let (stop_receiver, receiver_stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = receiver_stopped.await;
                },
            ),
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files: Vec<String> = (0..8).map(|i| format!("t/part-{i}.parquet")).collect();
    for (i, f) in files.iter().enumerate() {
        write_parquet(&data.join(f), ROWS, 700 + i as u64);
    }
    let topology = dir.path().join("topology.json");
    let n1 = start("n1", dir.path(), &data, &topology, &otlp).await;
    let n2 = start("n2", dir.path(), &data, &topology, &otlp).await;
    let members = [
        NodeInfo {
            id: "n1".into(),
            url: n1.url.clone(),
        },
        NodeInfo {
            id: "n2".into(),
            url: n2.url.clone(),
        },
    ];

    // n1 alone reads every file, then n2 joins, takes its share of the
    // slots and imports what n1 cached for them.
    let t1 = Topology::initial(members[..1].to_vec(), 1).unwrap();
    adopt(&n1.url, 0, &t1, &[&n1, &n2]).await;
    let mut c1 = client_at(&n1.url).await;
    for f in &files {
        do_get(&mut c1, &scan(SOURCE, f)).await.unwrap();
    }
    let t2 = t1
        .with_node(members[1].clone())
        .unwrap()
        .rebalance()
        .unwrap();
    let t2 = Topology { epoch: 2, ..t2 };
    adopt(&n1.url, 1, &t2, &[&n1, &n2]).await;
    assert_eq!(handoff_state(&n2.url).await, "done", "{}", n2.logs());
    let moved = files
        .iter()
        .find(|f| t2.owners(slot_of(SOURCE, f))[0].id == "n2")
        .expect("no file moved to n2");

    // n2 forgets the file, so the DoGet below misses and asks n1 first.
    let mut c2 = client_at(&n2.url).await;
    let evict = format!(r#"{{"source": "{SOURCE}", "path": "{moved}"}}"#);
    action(&mut c2, "evict", evict.as_bytes()).await.unwrap();
    let before = stats(&mut c2).await.origin_bytes;
    let mut traced = client_at(&n2.url).await;
    traced
        .add_header("traceparent", &format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .unwrap();
    traced
        .add_header(REQUEST_ID_HEADER, "trace-test-1")
        .unwrap();
    let got = do_get(&mut traced, &scan(SOURCE, moved)).await.unwrap();
    assert_eq!(row_count(&got), ROWS);
    assert_eq!(
        stats(&mut c2).await.origin_bytes,
        before,
        "the miss was read from the origin, not filled from n1"
    );

    // The Rust client sends the context of the span it is called in.
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let caller = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_hex(CLIENT_TRACE).unwrap(),
        SpanId::from_hex(CLIENT_SPAN).unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ));
    let planned = async {
        let client = QuiverClient::connect(ClientConfig::new(vec![n2.url.clone()]))
            .await
            .unwrap();
        client.plan(&scan(SOURCE, moved)).await.unwrap()
    }
    .with_context(caller)
    .await;
    assert_eq!(planned.endpoints.len(), 1);

    // Stopping flushes each node's spans to the receiver.
    let n2_logs = n2.stop().await;
    let n1_logs = n1.stop().await;
    let _ = stop_receiver.send(());
    serving.await.unwrap().unwrap();
    let spans = receiver.spans.lock().unwrap().clone();
    assert!(
        spans.iter().all(|s| s.service == "quiver-server"),
        "{}",
        show(&spans)
    );

    let trace: Vec<Exported> = spans.iter().filter(|s| s.trace == TRACE).cloned().collect();
    let context = format!(
        "{}\n--- n2 ---\n{n2_logs}\n--- n1 ---\n{n1_logs}",
        show(&trace)
    );
    let find = |node: &str, name: &str, pred: &dyn Fn(&Exported) -> bool| {
        trace
            .iter()
            .find(|s| s.node == node && s.name == name && pred(s))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} span of {node} in the trace:\n{context}"))
    };
    // n2's request span continues the caller's span and carries the
    // request id.
    let request = find("n2", "do_get", &|s| s.parent == CALLER_SPAN);
    assert_eq!(request.attributes["request_id"], "trace-test-1");
    find("n2", "scan_plan", &|s| under(&trace, s, &request.id));
    find("n2", "cache_lookup", &|s| under(&trace, s, &request.id));
    let fill = find("n2", "peer_fill", &|s| under(&trace, s, &request.id));
    // n1's request span answering the fill is the fill's child.
    let answer = find("n1", "do_action", &|s| s.parent == fill.id);
    assert_eq!(answer.attributes["action"], "handoff-read", "{context}");
    assert_ne!(answer.attributes["request_id"], "", "{context}");

    let planning: Vec<&Exported> = spans.iter().filter(|s| s.trace == CLIENT_TRACE).collect();
    assert!(
        planning
            .iter()
            .any(|s| s.node == "n2" && s.name == "get_flight_info" && s.parent == CLIENT_SPAN),
        "the client's context did not reach n2:\n{}",
        show(&spans)
    );
}
