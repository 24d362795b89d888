//! Whether the disk tier still works, checked from outside foyer.
//!
//! The tier's files are allocated in full when it opens (`chunks`), so a
//! disk that other files fill later does not fail its writes; a disk that
//! fails, or is remounted read-only, still can, and foyer only logs that.
//! So a probe runs
//! every [`PROBE_EVERY`]: it overwrites, syncs and reads back a small file
//! allocated once in `disk_dir` (so it needs no new space either), and
//! looks at the disk-tier read errors counted since the last probe. While any
//! of these fails, the tier is *degraded*: `health` says why, the
//! `quiver_cache_disk_healthy` gauge is 0, and the node goes on serving from
//! memory and the origin, never failing a request because of its disk.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::Metrics;

/// How often the disk tier is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(3);

/// The file the probe writes in `disk_dir`.
pub const PROBE_FILE: &str = "quiver.probe";

const PROBE_BYTES: usize = 4096;

/// What `health` reports about the disk tier.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiskState {
    /// `ok`, `degraded`, or `off` (memory only).
    pub state: &'static str,
    pub problem: Option<String>,
}

#[derive(Debug)]
pub struct DiskHealth {
    dir: Option<PathBuf>,
    /// Why a configured disk tier was not opened: degraded for good.
    unopened: Option<String>,
    metrics: Arc<Metrics>,
    problem: Mutex<Option<String>>,
    read_errors_seen: Mutex<u64>,
}

impl DiskHealth {
    /// `dir` is `None` for a memory-only node; `unopened` says why a
    /// configured disk tier is not in use.
    pub fn new(dir: Option<PathBuf>, unopened: Option<String>, metrics: Arc<Metrics>) -> Self {
        metrics.disk_healthy.set(i64::from(unopened.is_none()));
        DiskHealth {
            dir,
            unopened,
            metrics,
            problem: Mutex::new(None),
            read_errors_seen: Mutex::new(0),
        }
    }

    pub fn state(&self) -> DiskState {
        if let Some(problem) = &self.unopened {
            return DiskState {
                state: "degraded",
                problem: Some(problem.clone()),
            };
        }
        if self.dir.is_none() {
            return DiskState {
                state: "off",
                problem: None,
            };
        }
        let problem = lock(&self.problem).clone();
        DiskState {
            state: if problem.is_some() { "degraded" } else { "ok" },
            problem,
        }
    }

    /// Probes once; blocking file I/O, so run it off the async workers.
    pub fn probe(&self) {
        let Some(dir) = &self.dir else {
            return;
        };
        let read_errors = self.metrics.disk_errors.get();
        let new_read_errors = {
            let mut seen = lock(&self.read_errors_seen);
            let new = read_errors.saturating_sub(*seen);
            *seen = read_errors;
            new
        };
        let problem = match write_probe(dir) {
            Err(e) => {
                self.metrics.disk_write_errors.inc();
                Some(format!(
                    "the disk tier in {} cannot be written ({e}); new entries are kept in memory only",
                    dir.display()
                ))
            }
            Ok(()) if new_read_errors > 0 => Some(format!(
                "{new_read_errors} disk-tier reads failed or found damaged entries since the last check; they were read from the origin"
            )),
            Ok(()) => None,
        };
        let mut current = lock(&self.problem);
        match (&*current, &problem) {
            (None, Some(p)) => tracing::warn!(problem = %p, "the disk tier is degraded"),
            (Some(_), None) => tracing::info!("the disk tier is healthy again"),
            _ => {}
        }
        self.metrics.disk_healthy.set(i64::from(problem.is_none()));
        *current = problem;
    }

    /// Probes every [`PROBE_EVERY`] until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if self.dir.is_none() {
            return;
        }
        loop {
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.probe()).await;
            tokio::select! {
                _ = tokio::time::sleep(PROBE_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// Overwrites, syncs and reads back a small file in place, as the tier's own
/// writes do; the file is allocated on first use.
fn write_probe(dir: &Path) -> std::io::Result<()> {
    use fs4::fs_std::FileExt;
    let path = dir.join(PROBE_FILE);
    let data: Vec<u8> = (0..PROBE_BYTES).map(|i| (i % 251) as u8).collect();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)?;
    if file.metadata()?.len() != PROBE_BYTES as u64 {
        FileExt::allocate(&file, PROBE_BYTES as u64)?;
    }
    file.write_all(&data)?;
    file.sync_all()?;
    file.seek(SeekFrom::Start(0))?;
    let mut back = Vec::with_capacity(PROBE_BYTES);
    file.read_to_end(&mut back)?;
    if back != data {
        return Err(std::io::Error::other("the probe read back other bytes"));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_directory_is_ok_and_read_errors_degrade_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let health = DiskHealth::new(Some(dir.path().to_path_buf()), None, metrics.clone());
        health.probe();
        assert_eq!(health.state().state, "ok");
        metrics.disk_errors.inc();
        health.probe();
        let s = health.state();
        assert_eq!(s.state, "degraded");
        assert!(s.problem.unwrap().contains("1 disk-tier reads failed"));
        assert_eq!(metrics.disk_healthy.get(), 0);
        health.probe();
        assert_eq!(health.state().state, "ok");
        assert_eq!(metrics.disk_healthy.get(), 1);
    }

    #[test]
    fn a_directory_that_cannot_be_written_degrades_it() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let gone = DiskHealth::new(Some(dir.path().join("missing")), None, metrics.clone());
        gone.probe();
        assert!(gone.state().problem.unwrap().contains("cannot be written"));
        assert_eq!(metrics.disk_write_errors.get(), 1);
        let off = DiskHealth::new(None, None, metrics.clone());
        off.probe();
        assert_eq!(off.state().state, "off");
        let unopened = DiskHealth::new(None, Some("no room".into()), metrics);
        assert_eq!(unopened.state().state, "degraded");
    }
}
