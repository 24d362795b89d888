//! The benchmark's network, run in a child process of its own: the S3 server
//! (s3s-fs) and the emulated links in front of it, or a link in front of a
//! node for the client's hop. Serving and shaping bytes takes CPU; in the
//! process that times the baselines it would slow them down, and not Quiver,
//! which runs in a process of its own.
//!
//! The child is this binary's hidden `serve-link` command. It prints one
//! JSON line with its addresses once it listens, and exits when its standard
//! input closes, so it never outlives the benchmark, however that ends.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use quiver_testkit::link::{Link, LinkConfig};
use quiver_testkit::{S3Server, ACCESS_KEY, SECRET_KEY};
use serde::{Deserialize, Serialize};

use crate::error::BoxError;

/// What the child serves: an S3 server over `dir`, or a link in front of an
/// address that is already listening.
#[derive(Debug, Clone)]
pub enum Upstream {
    S3 { dir: PathBuf, buckets: Vec<String> },
    Addr(SocketAddr),
}

/// The child's one line on standard output.
#[derive(Debug, Serialize, Deserialize)]
struct Ready {
    /// The S3 server, when the child runs one.
    s3: Option<SocketAddr>,
    /// One link per configuration asked for, in that order.
    links: Vec<SocketAddr>,
}

/// How long the child may take to listen and report its addresses.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running child process; it stops when this is dropped.
pub struct NetProcess {
    child: Child,
    /// Held open: the child exits once it closes.
    _stdin: ChildStdin,
    pub s3: Option<SocketAddr>,
    pub links: Vec<SocketAddr>,
}

impl NetProcess {
    /// Starts the child with one link per entry of `links` in front of
    /// `upstream`, and waits until it listens.
    pub fn start(upstream: &Upstream, links: &[LinkConfig]) -> Result<NetProcess, BoxError> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("serve-link");
        match upstream {
            Upstream::S3 { dir, buckets } => {
                cmd.arg("--s3-dir").arg(dir);
                for b in buckets {
                    cmd.arg("--bucket").arg(b);
                }
            }
            Upstream::Addr(addr) => {
                cmd.arg("--upstream").arg(addr.to_string());
            }
        }
        for link in links {
            cmd.arg("--link")
                .arg(format!("{}:{}", link.latency.as_millis(), link.bandwidth));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the benchmark's network process: {e}"))?;
        let stdin = child
            .stdin
            .take()
            .ok_or("the network process has no stdin")?;
        let stdout = child
            .stdout
            .take()
            .ok_or("the network process has no stdout")?;
        // From here on, dropping `process` kills and reaps the child, so
        // no error path leaves it behind.
        let mut process = NetProcess {
            child,
            _stdin: stdin,
            s3: None,
            links: Vec::new(),
        };
        // Read on a thread of its own, so a child that never reports cannot
        // hang the benchmark; killing the child ends the read.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
        });
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                return Err(format!("cannot read the benchmark's network process: {e}").into())
            }
            Err(_) => {
                return Err(format!(
                    "the benchmark's network process did not report its addresses within {} s",
                    READY_TIMEOUT.as_secs()
                )
                .into())
            }
        };
        let ready: Ready = serde_json::from_str(line.trim()).map_err(|e| {
            format!("the benchmark's network process did not start ({e}): {line:?}")
        })?;
        process.s3 = ready.s3;
        process.links = ready.links;
        Ok(process)
    }

    /// `http://addr` of the S3 server itself, bypassing every link.
    pub fn s3_endpoint(&self) -> Result<String, BoxError> {
        let s3 = self.s3.ok_or("the network process runs no S3 server")?;
        Ok(format!("http://{s3}"))
    }
}

impl Drop for NetProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `--link LATENCY_MS:BYTES_PER_S`.
pub fn parse_link(s: &str) -> Result<LinkConfig, String> {
    let (ms, bw) = s
        .split_once(':')
        .ok_or_else(|| format!("a link is LATENCY_MS:BYTES_PER_S, not {s}"))?;
    let ms: u64 = ms
        .parse()
        .map_err(|e| format!("bad link latency {ms}: {e}"))?;
    let bandwidth: u64 = bw
        .parse()
        .map_err(|e| format!("bad link bandwidth {bw}: {e}"))?;
    Ok(LinkConfig {
        latency: Duration::from_millis(ms),
        bandwidth,
    })
}

/// The hidden `serve-link` command's flags, which [`NetProcess::start`]
/// passes to the child.
#[derive(clap::Args)]
pub struct ServeLinkArgs {
    /// Serve S3 (s3s-fs) over this directory.
    #[arg(long)]
    s3_dir: Option<PathBuf>,
    /// Buckets the S3 server creates.
    #[arg(long)]
    bucket: Vec<String>,
    /// Put the links in front of this address instead.
    #[arg(long)]
    upstream: Option<SocketAddr>,
    /// A link to start, as LATENCY_MS:BYTES_PER_S; repeatable.
    #[arg(long, value_parser = parse_link)]
    link: Vec<LinkConfig>,
}

/// The child's body: serve, report the addresses, and wait for standard
/// input to close.
pub async fn serve(args: ServeLinkArgs) -> Result<(), BoxError> {
    let (s3, target) = match (&args.s3_dir, args.upstream) {
        (Some(dir), None) => {
            let buckets: Vec<&str> = args.bucket.iter().map(String::as_str).collect();
            let server = S3Server::start(dir, &buckets).await?;
            let addr = server.addr;
            (Some(server), addr)
        }
        (None, Some(addr)) => (None, addr),
        _ => return Err("serve-link takes either --s3-dir or --upstream".into()),
    };
    let mut running = Vec::new();
    for cfg in &args.link {
        running.push(Link::start(target, *cfg).await?);
    }
    let ready = Ready {
        s3: s3.as_ref().map(|s| s.addr),
        links: running.iter().map(|l| l.addr).collect(),
    };
    println!("{}", serde_json::to_string(&ready)?);
    tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
    })
    .await?;
    drop(running);
    drop(s3);
    Ok(())
}

/// A client of a bucket of the S3 server the child runs, at `endpoint`
/// (the server itself, or a link in front of it).
pub fn s3_store(endpoint: &str, bucket: &str) -> Result<AmazonS3, BoxError> {
    Ok(AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()?)
}
