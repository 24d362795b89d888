//! Certificates made with `quiver cert` run a TLS cluster: a CA and one
//! certificate per node, two quiver-server processes serving them, a
//! hand-off that fills the new node from its peer over TLS, and the CLI
//! reading through it. A certificate from the usual `openssl req -x509`
//! one-liner (a CA certificate) is refused with a message that says what to
//! do, and the openssl variant that message suggests works.

#[path = "../../client/tests/common/mod.rs"]
mod common;
#[path = "../../client/tests/common/processes.rs"]
mod processes;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use processes::{ok, start_node, write_file, Node, NodeOptions, NodeTls};
use quiver_client::tls::CA_SERVED_AS_NODE;
use quiver_client::{ClientConfig, QuiverClient};
use quiver_protocol::{slot_of, StatsReport, Topology};

const FILES: usize = 8;
const ROWS: i64 = 5_000;

fn quiver(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A self-signed certificate for localhost made by `openssl req -x509`,
/// with `extra` arguments; returns (certificate, key).
fn openssl_self_signed(dir: &Path, name: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &cert,
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ];
    args.extend_from_slice(extra);
    quiver_testkit::tls::openssl(&args, dir);
    (dir.join(cert), dir.join(key))
}

/// The JSON answer of action `kind` on `node`.
async fn action(client: &QuiverClient, node: &Node, kind: &str) -> serde_json::Value {
    let answer = client
        .action_on(&node.url, kind, bytes::Bytes::new())
        .await
        .unwrap();
    serde_json::from_slice(&answer[0]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quiver_cert_makes_a_working_tls_cluster_and_a_ca_certificate_is_explained() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let certs = dir.join("certs");
    let certs_arg = certs.to_str().unwrap().to_string();

    // The CA, then one certificate per node, all for loopback.
    ok(&quiver(&["cert", "create-ca", "--certs-dir", &certs_arg]));
    let again = stderr(&quiver(&["cert", "create-ca", "--certs-dir", &certs_arg]));
    assert!(
        again.contains("already exists; pass --overwrite"),
        "{again}"
    );
    for name in ["n1", "n2"] {
        let out = ok(&quiver(&[
            "cert",
            "create-node",
            "--certs-dir",
            &certs_arg,
            "--localhost",
            "--name",
            name,
        ]));
        assert!(out.contains("for localhost, 127.0.0.1"), "{out}");
    }
    #[cfg(unix)]
    for (file, expected) in [
        ("ca.key", 0o600),
        ("n1.key", 0o600),
        ("n2.key", 0o600),
        ("ca.pem", 0o644),
        ("n1.pem", 0o644),
    ] {
        assert_eq!(mode(&certs.join(file)), expected, "{file}");
    }
    let ca = certs.join("ca.pem");
    let ca_arg = ca.to_str().unwrap().to_string();

    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..FILES {
        write_file(&data.join(format!("f{i}.parquet")), ROWS, 40 + i as u64);
    }
    let options = |name: &str| NodeOptions {
        tls: Some(NodeTls {
            ca: ca.clone(),
            cert: certs.join(format!("{name}.pem")),
            key: certs.join(format!("{name}.key")),
        }),
        ..Default::default()
    };
    let n1 = start_node(1, dir, &data, &options("n1"));
    let n2 = start_node(2, dir, &data, &options("n2"));
    let admin = |url: &str, rest: &[&str]| {
        let mut args = vec!["--endpoint", url, "--tls-ca", &ca_arg];
        args.extend_from_slice(rest);
        quiver(&args)
    };

    // n1 alone caches every file; then n2 joins and takes its slots' data
    // from n1 over TLS, each node checking the other's certificate.
    ok(&admin(
        &n1.url,
        &["cluster", "init", "--nodes", &format!("n1={}", n1.url)],
    ));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut cfg = ClientConfig::new(vec![n1.url.clone()]);
    cfg.connector.tls.ca_file = Some(ca.clone());
    let client = QuiverClient::connect(cfg).await.unwrap();
    for i in 0..FILES {
        let req = quiver_protocol::ScanRequest {
            source: Some("lake".into()),
            path: Some(format!("f{i}.parquet")),
            ..Default::default()
        };
        assert_eq!(
            client.collect(&req).await.unwrap().num_rows(),
            ROWS as usize
        );
    }
    ok(&admin(
        &n1.url,
        &["cluster", "add-node", "--id", "n2", "--url", &n2.url],
    ));
    ok(&admin(&n1.url, &["cluster", "rebalance"]));
    let t: Topology =
        serde_json::from_str(&ok(&admin(&n2.url, &["cluster", "show", "--json"]))).unwrap();
    let moved: Vec<String> = (0..FILES)
        .map(|i| format!("f{i}.parquet"))
        .filter(|p| t.owners(slot_of("lake", p))[0].id == "n2")
        .collect();
    assert!(!moved.is_empty(), "no file moves to n2");

    let deadline = Instant::now() + Duration::from_secs(60);
    let handoff = loop {
        let h = action(&client, &n2, "health").await["handoff"].clone();
        if h["epoch"] == 3 && (h["state"] == "done" || h["state"] == "failed") {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "hand-off did not finish: {h}\n{}",
            n2.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(handoff["state"], "done", "{handoff}\n{}", n2.log());
    assert_eq!(handoff["chunks_rejected"], 0, "{handoff}");
    let moved_bytes = handoff["bytes"].as_u64().unwrap_or(0);
    assert!(moved_bytes > 0, "{handoff}");

    // The CLI reads a moved file through n2, which serves it from what it
    // took from its peer, not from the origin.
    let origin = |s: serde_json::Value| {
        serde_json::from_value::<StatsReport>(s)
            .unwrap()
            .origin_bytes
    };
    let before = origin(action(&client, &n2, "stats").await);
    let csv = ok(&admin(
        &n2.url,
        &[
            "query",
            &format!("lake/{}", moved[0]),
            "--columns",
            "id",
            "--format",
            "csv",
        ],
    ));
    assert_eq!(csv.lines().count(), ROWS as usize + 1);
    assert_eq!(origin(action(&client, &n2, "stats").await), before);

    // `openssl req -x509` as usually typed: a CA certificate. The node
    // starts (pyarrow accepts it) and warns; the Rust client and the CLI
    // refuse it and say what to do.
    // These nodes run alone: in the cluster's topology they would route
    // reads to n1 and n2, whose certificates the pinned one does not sign.
    let alone = dir.join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    let (bad_cert, bad_key) = openssl_self_signed(dir, "selfsigned", &[]);
    let bad = start_node(
        3,
        &alone,
        &data,
        &NodeOptions {
            tls: Some(NodeTls {
                ca: bad_cert.clone(),
                cert: bad_cert.clone(),
                key: bad_key,
            }),
            ..Default::default()
        },
    );
    assert!(bad.log().contains(CA_SERVED_AS_NODE), "{}", bad.log());
    let mut cfg = ClientConfig::new(vec![bad.url.clone()]);
    cfg.connector.tls.ca_file = Some(bad_cert.clone());
    cfg.timeout = Duration::from_secs(5);
    // The transport may or may not put "tls handshake eof: " between the
    // two, depending on when the node sees the client hang up.
    let explained = |err: &str| {
        err.starts_with(&format!("cannot reach {}: ", bad.url))
            && err.ends_with(&format!("other error: {CA_SERVED_AS_NODE}"))
    };
    let err = QuiverClient::connect(cfg).await.unwrap_err().to_string();
    assert!(explained(&err), "{err}");
    let cli = stderr(&quiver(&[
        "--endpoint",
        &bad.url,
        "--tls-ca",
        bad_cert.to_str().unwrap(),
        "ls",
        "lake",
    ]));
    let cli = cli
        .strip_prefix("quiver: ")
        .and_then(|c| c.strip_suffix('\n'))
        .unwrap_or_default();
    assert!(explained(cli), "{cli}");

    // The fix the message names: the same one-liner with CA:FALSE.
    let (leaf_cert, leaf_key) = openssl_self_signed(
        dir,
        "selfsigned-leaf",
        &["-addext", "basicConstraints=critical,CA:FALSE"],
    );
    let fixed = start_node(
        4,
        &alone,
        &data,
        &NodeOptions {
            tls: Some(NodeTls {
                ca: leaf_cert.clone(),
                cert: leaf_cert.clone(),
                key: leaf_key,
            }),
            ..Default::default()
        },
    );
    let csv = ok(&quiver(&[
        "--endpoint",
        &fixed.url,
        "--tls-ca",
        leaf_cert.to_str().unwrap(),
        "query",
        "lake/f0.parquet",
        "--columns",
        "id",
        "--format",
        "csv",
    ]));
    assert_eq!(csv.lines().count(), ROWS as usize + 1);
    drop((n1, n2, bad, fixed));
}
