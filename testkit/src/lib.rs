//! Real parts for tests and benchmarks, started in-process: an S3-compatible
//! server (s3s-fs) that checks SigV4 signatures and pre-signed URLs, so that
//! Quiver is exercised against the same protocol it meets in production.

pub mod tpch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub const ACCESS_KEY: &str = "quiver-test-key";
pub const SECRET_KEY: &str = "quiver-test-secret-0123456789";

/// An s3s-fs server on a random loopback port. Buckets are directories of
/// `root`. Stops when dropped.
pub struct S3Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    task: tokio::task::JoinHandle<()>,
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
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let svc = service.clone();
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
            task,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where an object lives on disk, for readers that bypass S3.
    pub fn file(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }
}
