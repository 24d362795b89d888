//! The client against a node serving TLS with tokens: the library and the
//! CLI trust a CA file, refuse a node they cannot verify, and never send a
//! token to a plain URL when TLS was asked for.

#[path = "../../client/tests/common/mod.rs"]
mod common;

use common::tpch_lake;
use quiver_client::{ClientConfig, Connector, Credentials, QuiverClient, Tls};
use quiver_protocol::ScanRequest;
use quiver_testkit::tls::certificates;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_through_tls_with_a_ca_file_and_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    std::fs::write(dir.path().join("tokens"), "tls-token\n").unwrap();
    let lake = tpch_lake(0.01, 1).await;
    let mut config = common::node_config(vec![common::source(&lake.s3)]);
    config.auth.tls_cert = Some(cert);
    config.auth.tls_key = Some(key);
    config.auth.tokens_file = Some(dir.path().join("tokens"));
    let node = quiver_server::RunningNode::start(config).await.unwrap();
    let url = format!("grpc+tls://127.0.0.1:{}", node.flight_addr.port());
    let req = ScanRequest {
        source: Some("lake".into()),
        path: Some("tpch/nation/".into()),
        ..Default::default()
    };

    for credentials in [
        Credentials::Bearer("tls-token".into()),
        Credentials::Basic {
            user: "bi".into(),
            password: "tls-token".into(),
        },
    ] {
        let mut cfg = ClientConfig::new(vec![url.clone()]);
        cfg.connector = Connector {
            tls: Tls {
                ca_file: Some(ca.clone()),
            },
            credentials,
        };
        let client = QuiverClient::connect(cfg).await.unwrap();
        assert!(client.topology().nodes[0].url.starts_with("grpc+tls://"));
        assert_eq!(client.collect(&req).await.unwrap().num_rows(), 25);
    }

    // The system roots do not know a self-signed certificate.
    let mut cfg = ClientConfig::new(vec![url.clone()]).with_token("tls-token");
    cfg.timeout = std::time::Duration::from_secs(5);
    let err = QuiverClient::connect(cfg).await.unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");

    // A CA file with a plain URL is a mistake, not a silent downgrade.
    let mut cfg = ClientConfig::new(vec![format!(
        "grpc://127.0.0.1:{}",
        node.flight_addr.port()
    )]);
    cfg.connector.tls.ca_file = Some(ca.clone());
    let err = QuiverClient::connect(cfg).await.unwrap_err();
    assert!(err.to_string().contains("not a TLS URL"), "{err}");

    // The CLI, the same way.
    let out = tokio::task::spawn_blocking({
        let (url, ca) = (url.clone(), ca.clone());
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
                .args(["--endpoint", &url, "--token", "tls-token", "--tls-ca"])
                .arg(&ca)
                .args(["query", "lake/tpch/region/", "--format", "csv"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6);
}

/// A node that accepts connections but never answers: a Basic handshake
/// gives up after its timeout instead of hanging the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_fails_the_handshake_in_bounded_time() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept() {
            held.push(sock);
        }
    });
    let connector = Connector {
        tls: Tls::default(),
        credentials: Credentials::Basic {
            user: "u".into(),
            password: "p".into(),
        },
    };
    let started = std::time::Instant::now();
    let err = connector
        .token(&format!("grpc://{addr}"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("handshake got no answer"), "{err}");
    assert!(
        started.elapsed()
            < quiver_client::connect::HANDSHAKE_TIMEOUT + std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
