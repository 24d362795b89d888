//! The opt-in access log (`cache.access_log`): one JSON line per read a
//! scan's Parquet decoder makes, `{"t_ms", "client", "object", "size",
//! "start", "end"}`. That is the trace format `quiver-bench policies
//! --trace FILE` replays, so a deployment can choose its eviction policy on
//! its own traffic (docs/benchmarks.md, "Eviction policies").
//!
//! Logging never slows a scan: lines go through a bounded queue to a writer
//! thread, and when the queue is full they are dropped and counted in
//! `quiver_access_log_dropped_total`. The writer flushes whenever the queue
//! runs empty, so the file is current to within the lines in flight.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use serde::Serialize;

use crate::error::{QuiverError, Result};
use crate::metrics::Metrics;
use crate::source::ObjectId;

/// Lines waiting for the writer, at most.
const QUEUE: usize = 16 * 1024;

/// Longest client id kept; a longer header is cut here.
pub const MAX_CLIENT_LEN: usize = 128;

#[derive(Serialize)]
struct Line<'a> {
    t_ms: i64,
    client: &'a str,
    object: String,
    size: u64,
    start: u64,
    end: u64,
}

pub struct AccessLog {
    tx: SyncSender<String>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Opens `path` for appending and starts its writer.
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> Result<AccessLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                QuiverError::invalid(format!(
                    "cache.access_log {} cannot be opened for appending: {e}",
                    path.display()
                ))
            })?;
        let (tx, rx) = sync_channel(QUEUE);
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("quiver-access-log".into())
            .spawn(move || write_lines(rx, file, &shown))
            .map_err(|e| QuiverError::Internal(format!("cannot start the access log: {e}")))?;
        Ok(AccessLog { tx, metrics })
    }

    /// Records that `client` read `ranges` of `id`.
    pub fn record(&self, client: &str, id: &ObjectId, ranges: &[Range<u64>]) {
        let t_ms = chrono::Utc::now().timestamp_millis();
        for r in ranges {
            let line = Line {
                t_ms,
                client,
                object: format!("{}/{}", id.source, id.path),
                size: id.size,
                start: r.start,
                end: r.end,
            };
            let Ok(text) = serde_json::to_string(&line) else {
                continue;
            };
            match self.tx.try_send(text) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.metrics.access_log_dropped.inc();
                }
            }
        }
    }
}

/// Writes every queued line, flushing each time the queue runs empty; ends
/// when the node drops its log. A write error is logged once and the rest
/// of the lines are dropped, so a full disk never stops the node.
fn write_lines(rx: Receiver<String>, file: File, path: &str) {
    let mut out = BufWriter::new(file);
    let mut failed = false;
    while let Ok(first) = rx.recv() {
        let mut line = Some(first);
        while let Some(text) = line {
            if !failed {
                if let Err(e) = writeln!(out, "{text}") {
                    tracing::error!(path, error = %e, "the access log cannot be written; it stops");
                    failed = true;
                }
            }
            line = rx.try_recv().ok();
        }
        if !failed {
            if let Err(e) = out.flush() {
                tracing::error!(path, error = %e, "the access log cannot be written; it stops");
                failed = true;
            }
        }
    }
}

/// The client id a request is logged under: its `x-quiver-client` header
/// when it sends one (printable ASCII, cut at [`MAX_CLIENT_LEN`]), else
/// its address's IP.
pub fn client_id(
    metadata: &tonic::metadata::MetadataMap,
    addr: Option<std::net::SocketAddr>,
) -> String {
    let header = metadata
        .get("x-quiver-client")
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.chars()
                .filter(|c| c.is_ascii_graphic())
                .take(MAX_CLIENT_LEN)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty());
    header
        .or_else(|| addr.map(|a| a.ip().to_string()))
        .unwrap_or_else(|| "unknown".into())
}
