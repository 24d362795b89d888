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

/// Free space a run keeps beyond its nodes' disk tiers: for the generated
/// data, the emulated S3's copy of it and the results.
const DISK_MARGIN: u64 = 512 << 20;

/// Fails, naming `--cache-disk-mib`, when the file system of `dir` cannot
/// hold `tier_bytes` of disk tiers (the tiers allocate their files when they
/// open) and the run's data besides: a clear error before anything starts,
/// not a node or a write failing with "no space left" half way through.
pub fn ensure_disk_room(dir: &Path, tier_bytes: u64) -> Result<(), BoxError> {
    if tier_bytes == 0 {
        return Ok(());
    }
    let free = fs4::available_space(dir)?;
    let needed = tier_bytes.saturating_add(DISK_MARGIN);
    if free < needed {
        return Err(format!(
            "the local nodes' disk tiers need {} MiB in {} and the run about {} MiB more, \
             but only {} MiB is free: pass a smaller --cache-disk-mib (0 for none)",
            tier_bytes >> 20,
            dir.display(),
            DISK_MARGIN >> 20,
            free >> 20
        )
        .into());
    }
    Ok(())
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

    /// CPU time the node's process has used so far (user and system, all
    /// threads), from Linux `/proc/<pid>/stat` in clock ticks of 10 ms
    /// (`USER_HZ`, 100 on Linux whatever the kernel's own tick).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The command name, in parentheses, may hold spaces: fields are
        // counted after its closing parenthesis (utime and stime are the
        // 14th and 15th of the line, the 12th and 13th after it).
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace().skip(11);
        let user: u64 = fields.next()?.parse().ok()?;
        let system: u64 = fields.next()?.parse().ok()?;
        Some(user.saturating_add(system) as f64 / 100.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiers the disk cannot hold fail before anything starts, naming the
    /// flag that shrinks them; tiers it can hold, or none, pass.
    #[test]
    fn tiers_larger_than_the_free_space_are_refused_with_the_flag_to_shrink_them() {
        let dir = tempfile::tempdir().unwrap();
        let free = fs4::available_space(dir.path()).unwrap();
        let err = ensure_disk_room(dir.path(), free.saturating_add(1 << 30))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--cache-disk-mib"), "{err}");
        assert!(ensure_disk_room(dir.path(), 0).is_ok());
        assert!(ensure_disk_room(dir.path(), 1 << 20).is_ok() || free < DISK_MARGIN + (1 << 20));
    }
}
