//! Real parts for tests and benchmarks, started in-process: an S3-compatible
//! server (s3s-fs) that checks SigV4 signatures and pre-signed URLs, so that
//! Quiver is exercised against the same protocol it meets in production.

pub mod link;
pub mod oracle;
pub mod tls;
pub mod tpch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub const ACCESS_KEY: &str = "quiver-test-key";
pub const SECRET_KEY: &str = "quiver-test-secret-0123456789";

/// One request the S3 server received, as a test counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Request {
    pub method: String,
    /// `/bucket/key`, without the query.
    pub path: String,
    /// The `Range` header, if any (`bytes=0-1023`).
    pub range: Option<String>,
}

impl S3Request {
    /// The byte range a ranged GET asked for, end exclusive.
    pub fn byte_range(&self) -> Option<std::ops::Range<u64>> {
        let spec = self.range.as_deref()?.strip_prefix("bytes=")?;
        let (start, end) = spec.split_once('-')?;
        let start: u64 = start.parse().ok()?;
        let end: u64 = end.parse().ok()?;
        Some(start..end + 1)
    }
}

/// An s3s-fs server on a random loopback port. Buckets are directories of
/// `root`. Stops when dropped. Every request is logged in `requests`.
pub struct S3Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    requests: Arc<Mutex<Vec<S3Request>>>,
    /// Requests still to be answered with 503 SlowDown.
    slow_down: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// S3's answer when a client must back off. It is logged like any request
/// but never reaches the file system.
fn slow_down_response() -> hyper::Response<s3s::Body> {
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
               <Message>Please reduce your request rate.</Message></Error>";
    let mut response = hyper::Response::new(s3s::Body::from(xml.to_string()));
    *response.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl S3Server {
    /// Serves `root`, creating the directory of each bucket in `buckets`.
    pub async fn start(root: &Path, buckets: &[&str]) -> std::io::Result<S3Server> {
        for b in buckets {
            std::fs::create_dir_all(root.join(b))?;
        }
        let fs =
            s3s_fs::FileSystem::new(root).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests: Arc<Mutex<Vec<S3Request>>> = Arc::default();
        let slow_down: Arc<AtomicU64> = Arc::default();
        let log = requests.clone();
        let refusals = slow_down.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let service = service.clone();
                let log = log.clone();
                let refusals = refusals.clone();
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let entry = S3Request {
                            method: req.method().to_string(),
                            path: req.uri().path().to_string(),
                            range: req
                                .headers()
                                .get("range")
                                .and_then(|v| v.to_str().ok())
                                .map(String::from),
                        };
                        log.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
                        let refuse = refusals
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        let service = service.clone();
                        async move {
                            if refuse {
                                Ok(slow_down_response())
                            } else {
                                Service::call(&service, req).await
                            }
                        }
                    },
                );
                tokio::spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        Ok(S3Server {
            addr,
            root: root.to_path_buf(),
            requests,
            slow_down,
            task,
        })
    }

    /// Answers the next `requests` requests with `503 SlowDown`, as S3 does
    /// when a prefix is over its request rate; `u64::MAX` for every request
    /// until [`S3Server::slow_down`] is called again.
    pub fn slow_down(&self, requests: u64) {
        self.slow_down.store(requests, Ordering::SeqCst);
    }

    /// How many of the requests [`S3Server::slow_down`] asked for are still
    /// to be refused.
    pub fn slow_downs_left(&self) -> u64 {
        self.slow_down.load(Ordering::SeqCst)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<S3Request> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where an object lives on disk, for readers that bypass S3.
    pub fn file(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }
}

/// A loopback address nothing listens on yet, for a node process to bind.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Whether the node whose admin server is at `admin` answers `/ready`.
pub fn node_ready(admin: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(admin) else {
        return false;
    };
    let _ = write!(s, "GET /ready HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains(" 200 ")
}
