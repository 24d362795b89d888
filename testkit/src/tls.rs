//! Certificates for TLS tests, made at run time with the `openssl` command
//! (which `.ci/run` installs): a throw-away CA and one node certificate it
//! signed for `localhost` and `127.0.0.1`, so every node of a loopback
//! cluster can serve it.

use std::path::{Path, PathBuf};

/// Runs `openssl` with `args` in `dir`, failing the test with its stderr.
pub fn openssl(args: &[&str], dir: &Path) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed for the TLS tests (infra/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throw-away CA and a node certificate it signed for localhost and
/// 127.0.0.1 (rustls refuses a CA certificate used as the node's own).
/// Returns (CA, node certificate, node key).
pub fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=quiver-test-ca",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "node.key",
            "-out",
            "node.csr",
            "-subj",
            "/CN=localhost",
        ],
        dir,
    );
    std::fs::write(
        dir.join("node.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "node.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "node.pem",
            "-days",
            "1",
            "-extfile",
            "node.ext",
        ],
        dir,
    );
    (
        dir.join("ca.pem"),
        dir.join("node.pem"),
        dir.join("node.key"),
    )
}
