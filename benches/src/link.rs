//! An emulated S3 link: a TCP proxy in front of the S3 server that delays
//! each request by a first-byte latency and caps each connection's download
//! bandwidth, so that loopback numbers behave like a real network path.
//!
//! The kernel here has no `netem`, so this is done in user space. Each
//! direction is a separate pump, which is where fault injection (resets,
//! stalls) will hook in.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// Added before each request reaches the server.
    pub latency: Duration,
    /// Bytes per second from the server to the client, per connection.
    pub bandwidth: u64,
}

/// A running proxy; dropping it stops accepting new connections.
pub struct Link {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    pub async fn start(upstream: SocketAddr, config: LinkConfig) -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        proxy(client, server, config).await;
                    }
                });
            }
        });
        Ok(Link { addr, task })
    }
}

async fn proxy(client: TcpStream, server: TcpStream, config: LinkConfig) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = delayed(client_read, server_write, config.latency);
    let down = throttled(server_read, client_write, config.bandwidth);
    let _ = tokio::join!(up, down);
}

/// Forwards each chunk `latency` after it arrived, keeping pipelined requests
/// pipelined rather than delaying them one after another.
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + latency, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Forwards bytes no faster than `bandwidth` bytes per second. Idle time
/// earns no credit, so a response after a pause is not sent in a burst.
async fn throttled(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    bandwidth: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut next = Instant::now();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if bandwidth > 0 {
            // The timer ticks in milliseconds, far coarser than one read at
            // 100 MB/s, so sleep only once ahead by a few ticks: the average
            // rate is exact and bursts stay within that slack.
            let now = Instant::now();
            next = next.max(now) + Duration::from_secs_f64(n as f64 / bandwidth as f64);
            if next > now + Duration::from_millis(2) {
                tokio::time::sleep_until(next).await;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
