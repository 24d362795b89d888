//! A quiver-server node run as its own process, as users run it, so that its
//! memory can be measured apart from the benchmark's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow_flight::FlightClient;
use tonic::transport::Channel;

use crate::error::BoxError;

/// The smallest hot tier a node accepts (`cache.hot`), in MiB.
pub const MIN_HOT_MIB: u64 = 64;

pub struct ServerProcess {
    child: Child,
    pub flight: SocketAddr,
    pub admin: SocketAddr,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The quiver-server binary next to this benchmark's binary, unless given.
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("quiver-server")))
        .unwrap_or_else(|| PathBuf::from("quiver-server"))
}

impl ServerProcess {
    /// Starts the binary with `config` (TOML; listen addresses are added
    /// here) and waits until it reports ready.
    pub fn start(binary: &Path, workdir: &Path, config: &str) -> std::io::Result<ServerProcess> {
        let flight: SocketAddr = format!("127.0.0.1:{}", free_port()?)
            .parse()
            .map_err(std::io::Error::other)?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?)
            .parse()
            .map_err(std::io::Error::other)?;
        let path = workdir.join("quiver.toml");
        std::fs::write(
            &path,
            format!("[server]\nlisten = \"{flight}\"\nadmin_listen = \"{admin}\"\n\n{config}"),
        )?;
        let log = std::fs::File::create(workdir.join("server.log"))?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(&path)
            .env("QUIVER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                std::io::Error::other(format!("cannot start {}: {e}", binary.display()))
            })?;
        let mut server = ServerProcess {
            child,
            flight,
            admin,
        };
        server.wait_ready(Duration::from_secs(60))?;
        Ok(server)
    }

    fn wait_ready(&mut self, timeout: Duration) -> std::io::Result<()> {
        use std::io::{Read, Write};
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "quiver-server exited early: {status}"
                )));
            }
            if let Ok(mut s) = std::net::TcpStream::connect(self.admin) {
                let _ = write!(s, "GET /ready HTTP/1.0\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200") {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(std::io::Error::other("quiver-server did not become ready"))
    }

    pub async fn client(&self) -> Result<FlightClient, BoxError> {
        let channel = Channel::from_shared(format!("http://{}", self.flight))?
            .connect()
            .await?;
        Ok(FlightClient::new(channel))
    }

    /// Starts a new `VmHWM` window, so each measured phase reports its own
    /// peak rather than the largest since start-up.
    pub fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// Peak resident memory of the node so far (Linux `VmHWM`), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    pub fn stop(mut self) -> std::io::Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
