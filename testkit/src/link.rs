//! An emulated network link: a TCP proxy in front of a server (the test S3,
//! or a node) that delays each request by a first-byte latency, caps each
//! connection's download bandwidth, and injects faults on demand.
//!
//! The kernel here has no `netem`, so this is done in user space. Each
//! direction is a separate pump; [`Faults`] is read by both on every chunk,
//! so a fault switched on also hits connections that are already open:
//!
//! - **stall**: bytes stop flowing both ways, and new connections are
//!   accepted but never answered, like a black-holed route;
//! - **refuse**: new connections and open ones are reset, like a host whose
//!   service is down;
//! - **reset after N bytes**: each connection is reset once it has carried N
//!   bytes towards the client, so bodies break off in the middle;
//! - **extra latency**: added to every request from now on, a latency spike.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
pub struct LinkConfig {
    /// Added before each request reaches the server.
    pub latency: Duration,
    /// Bytes per second from the server to the client, per connection; 0
    /// for no cap.
    pub bandwidth: u64,
}

/// Faults a test switches on and off while the link runs.
#[derive(Debug, Default)]
pub struct Faults {
    stalled: AtomicBool,
    refusing: AtomicBool,
    /// 0: off.
    reset_after: AtomicU64,
    extra_latency_us: AtomicU64,
}

impl Faults {
    pub fn stall(&self, on: bool) {
        self.stalled.store(on, Ordering::SeqCst);
    }

    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, Ordering::SeqCst);
    }

    /// Resets every connection once it has sent `bytes` towards the client;
    /// `None` switches it off.
    pub fn reset_after(&self, bytes: Option<u64>) {
        self.reset_after
            .store(bytes.map_or(0, |b| b.max(1)), Ordering::SeqCst);
    }

    /// Latency added to every request on top of the link's own.
    pub fn extra_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.extra_latency_us.store(us, Ordering::SeqCst);
    }

    /// Switches every fault off.
    pub fn clear(&self) {
        self.stall(false);
        self.refuse(false);
        self.reset_after(None);
        self.extra_latency(Duration::ZERO);
    }

    fn latency(&self) -> Duration {
        Duration::from_micros(self.extra_latency_us.load(Ordering::SeqCst))
    }

    async fn while_stalled(&self) {
        while self.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A running proxy; dropping it stops accepting new connections.
pub struct Link {
    pub addr: SocketAddr,
    faults: Arc<Faults>,
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
        let faults = Arc::new(Faults::default());
        let shared = faults.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let faults = shared.clone();
                tokio::spawn(async move {
                    if faults.refusing.load(Ordering::SeqCst) {
                        reset(client);
                        return;
                    }
                    faults.while_stalled().await;
                    match TcpStream::connect(upstream).await {
                        Ok(server) => {
                            let _ = client.set_nodelay(true);
                            let _ = server.set_nodelay(true);
                            proxy(client, server, config, faults).await;
                        }
                        Err(_) => reset(client),
                    }
                });
            }
        });
        Ok(Link { addr, faults, task })
    }

    /// `http://addr`, for clients that take an endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }
}

/// Closes `stream` with a TCP reset rather than an orderly shutdown.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// How a pump ended.
enum End {
    /// One side closed, or a write failed: shut down in order.
    Closed,
    /// A fault asked for a reset.
    Reset,
}

async fn proxy(client: TcpStream, server: TcpStream, config: LinkConfig, faults: Arc<Faults>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = delayed(client_read, server_write, config.latency, faults.clone());
    let down = throttled(server_read, client_write, config.bandwidth, faults);
    tokio::pin!(up, down);
    // A reset drops both halves of the client's socket at once; the pump
    // that asked for it set a zero linger, which turns the close into an RST.
    tokio::select! {
        end = &mut down => if let End::Closed = end { up.await; },
        end = &mut up => if let End::Closed = end { down.await; },
    }
}

/// Forwards each chunk `latency` after it arrived, keeping pipelined requests
/// pipelined rather than delaying them one after another.
async fn delayed(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    latency: Duration,
    faults: Arc<Faults>,
) -> End {
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
    let end = loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break End::Closed,
            Ok(n) => n,
        };
        faults.while_stalled().await;
        if faults.refusing.load(Ordering::SeqCst) {
            let _ = from.as_ref().set_zero_linger();
            break End::Reset;
        }
        let due = Instant::now() + latency + faults.latency();
        if tx.send((due, buf[..n].to_vec())).is_err() {
            break End::Closed;
        }
    };
    drop(tx);
    if let End::Reset = end {
        writer.abort();
    } else {
        let _ = writer.await;
    }
    end
}

/// Forwards bytes no faster than `bandwidth` bytes per second. Idle time
/// earns no credit, so a response after a pause is not sent in a burst.
async fn throttled(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    bandwidth: u64,
    faults: Arc<Faults>,
) -> End {
    let mut buf = vec![0u8; 64 * 1024];
    let mut next = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        faults.while_stalled().await;
        if faults.refusing.load(Ordering::SeqCst) {
            let _ = to.as_ref().set_zero_linger();
            return End::Reset;
        }
        let limit = faults.reset_after.load(Ordering::SeqCst);
        let (n, cut) = match limit {
            0 => (n, false),
            limit => {
                let left = limit.saturating_sub(sent);
                let n_u64 = n as u64;
                (n_u64.min(left) as usize, n_u64 >= left)
            }
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
        sent = sent.saturating_add(n as u64);
        if cut {
            let _ = to.flush().await;
            let _ = to.as_ref().set_zero_linger();
            return End::Reset;
        }
    }
    let _ = to.shutdown().await;
    End::Closed
}
