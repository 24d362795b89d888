//! The admin status page's data: `/status.json` needs the admin token when
//! tokens are configured, and reports the node, its tiers' hit ratios as the
//! counters give them, the topology's slot ranges, the objects read and the
//! requests that failed. The page's own files are open, hold no data and
//! carry a strict Content-Security-Policy.

use std::io::{Read, Write};
use std::net::SocketAddr;

use quiver_protocol::REQUEST_ID_HEADER;
use quiver_server::metrics::Tier;
use quiver_server::RunningNode;
use serde_json::Value;

use crate::common::*;

const READER: &str = "reader-secret";
const ADMIN: &str = "admin-secret";

/// One GET: (status code, lower-cased head, body).
fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n{auth}\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, head.to_ascii_lowercase(), body.to_string())
}

fn status(node: &RunningNode, token: Option<&str>) -> (u16, String, String) {
    http_get(node.admin_addr, "/status.json", token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_needs_the_admin_token_and_reports_the_node() {
    let dir = tempfile::tempdir().unwrap();
    write_parquet(&dir.path().join("t/a.parquet"), 3000, 5);
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{READER}\n")).unwrap();
    let admin = dir.path().join("admin-token");
    std::fs::write(&admin, format!("{ADMIN}\n")).unwrap();
    let mut config = node_config(vec![local_source("local", dir.path())], None);
    config.auth.tokens_file = Some(tokens);
    config.auth.admin_token_file = Some(admin);
    let node = RunningNode::start(config).await.unwrap();

    let mut c = client(&node).await;
    c.add_header("authorization", &format!("Bearer {READER}"))
        .unwrap();
    for _ in 0..2 {
        do_get(&mut c, &scan("local", "t/a.parquet")).await.unwrap();
    }
    let failed = do_get(&mut c, &scan("local", "t/missing.parquet"))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::NotFound);
    let rid = failed
        .metadata()
        .get(REQUEST_ID_HEADER)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    // Refused: no token, an unknown one, a reader token.
    let (code, head, body) = status(&node, None);
    assert_eq!(code, 401, "{body}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert!(!body.contains(&node.core.node_id));
    assert_eq!(status(&node, Some("nope")).0, 401);
    let (code, _, body) = status(&node, Some(READER));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("admin token"), "{body}");

    let (code, head, body) = status(&node, Some(ADMIN));
    assert_eq!(code, 200, "{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    let s: Value = serde_json::from_str(&body).unwrap();

    assert_eq!(s["node"]["id"], node.core.node_id.as_str());
    assert_eq!(s["node"]["ready"], true);
    assert_eq!(s["node"]["health"]["state"], "ok");

    // The ratios are the counters' own.
    let m = &node.core.metrics;
    let (memory, disk, misses) = (m.hits(Tier::Memory), m.hits(Tier::Disk), m.misses());
    let chunks = &s["tiers"]["chunks"];
    assert_eq!(chunks["hits"], memory + disk);
    assert_eq!(chunks["misses"], misses);
    assert_eq!(chunks["lookups"], memory + disk + misses);
    assert!(misses > 0 && memory > 0, "{chunks}");
    assert_eq!(
        chunks["hit_ratio"].as_f64().unwrap(),
        (memory + disk) as f64 / (memory + disk + misses) as f64
    );
    assert_eq!(s["tiers"]["memory"]["hits"], memory);
    assert_eq!(
        s["tiers"]["memory"]["capacity"],
        m.memory_capacity.get() as u64
    );
    // No disk tier: never looked up past memory's misses, never hit.
    assert_eq!(s["tiers"]["disk"]["hits"], 0);
    let hot = &s["tiers"]["hot"];
    assert_eq!(hot["hits"], m.hot_hits.get());
    assert_eq!(
        hot["lookups"],
        m.hot_hits.get() + m.hot_partial.get() + m.hot_misses.get()
    );

    // Alone, the node owns every slot.
    let nodes = s["cluster"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["id"], node.core.node_id.as_str());
    assert_eq!(nodes[0]["this_node"], true);
    assert_eq!(nodes[0]["primary"], serde_json::json!([[0, 16383]]));
    assert_eq!(nodes[0]["primary_slots"], 16384);
    assert_eq!(nodes[0]["health"]["state"], "ok");
    assert_eq!(s["handoff"]["state"], "idle");

    // The object read twice; the missing one was never served.
    let top = s["hot_objects"]["top"].as_array().unwrap();
    assert_eq!(top.len(), 1, "{top:?}");
    assert_eq!(top[0]["object"], "local/t/a.parquet");
    assert_eq!(top[0]["requests"], 2);
    assert_eq!(top[0]["at_least"], 2);

    let errors = s["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["code"], "NotFound");
    assert_eq!(errors[0]["request_id"], rid.as_str());
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("missing.parquet"));

    // The page's files: open, no data, a strict policy.
    for (path, kind) in [
        ("/", "text/html"),
        ("/status.js", "text/javascript"),
        ("/status.css", "text/css"),
    ] {
        let (code, head, body) = http_get(node.admin_addr, path, None);
        assert_eq!(code, 200, "{path}");
        assert!(head.contains(&format!("content-type: {kind}")), "{head}");
        assert!(
            head.contains(&format!(
                "content-security-policy: {}",
                quiver_server::admin::CSP.to_ascii_lowercase()
            )),
            "{head}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        assert!(!body.contains(&node.core.node_id), "{path}");
    }
    assert!(!quiver_server::admin::CSP.contains("unsafe"));
    // What was there before keeps answering as it did.
    assert_eq!(http_get(node.admin_addr, "/health", None).2, "ok\n");
    assert_eq!(http_get(node.admin_addr, "/ready", None).2, "ready\n");
    assert_eq!(http_get(node.admin_addr, "/metrics", None).0, 200);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_status_json_is_open_like_the_admin_actions() {
    let dir = tempfile::tempdir().unwrap();
    let node = RunningNode::start(node_config(vec![local_source("local", dir.path())], None))
        .await
        .unwrap();
    let (code, _, body) = status(&node, None);
    assert_eq!(code, 200, "{body}");
    let s: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["node"]["id"], node.core.node_id.as_str());
    assert_eq!(s["tiers"]["chunks"]["hit_ratio"], Value::Null);
    assert_eq!(s["errors"], serde_json::json!([]));
    node.shutdown().await.unwrap();
}
