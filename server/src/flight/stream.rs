//! Streams a DoGet answer to its client from a task of its own, so a scan
//! holds its slot only while the client keeps reading: it stops at the
//! request deadline or when the client stalls, and ends a stream cut short
//! with an error rather than a silent success.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::FlightData;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tonic::Status;
use tracing::Instrument;

use super::request::{status, timed_out};
use crate::error::QuiverError;
use crate::node_core::NodeCore;
use crate::panics;

fn stalled(stall: Duration) -> QuiverError {
    QuiverError::ResourceExhausted(format!(
        "the client read nothing for {}, so the scan was stopped to free its slot",
        humantime::format_duration(stall)
    ))
}

/// Messages a scan may have produced ahead of its client.
const SCAN_CHANNEL: usize = 2;

/// How a scan task ended, as the tail of its stream reports it.
const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const TIMED_OUT: u8 = 2;
const STALLED: u8 = 3;
const PANICKED: u8 = 4;

/// Counts a scan as active for as long as it lives, however it ends.
struct ActiveScan {
    core: Arc<NodeCore>,
    started: Instant,
}

impl ActiveScan {
    fn new(core: Arc<NodeCore>) -> Self {
        core.metrics.scans.inc();
        core.metrics.active_scans.inc();
        ActiveScan {
            core,
            started: Instant::now(),
        }
    }
}

impl Drop for ActiveScan {
    fn drop(&mut self) {
        self.core.metrics.active_scans.dec();
        self.core
            .metrics
            .scan_seconds
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// Drives a DoGet answer from a task of its own that holds the scan slot.
///
/// The task stops at the request deadline, or when the client has not taken
/// the next message for `stall_timeout`, even though the client has stopped
/// reading (HTTP/2 flow control would otherwise leave the response unpolled
/// and the slot taken for as long as the connection lives, or at best until
/// the request timeout). A stream cut short that way ends with
/// ResourceExhausted, never as a silent success; a panic while producing it
/// ends it with Internal.
pub(super) fn serve_scan(
    core: &Arc<NodeCore>,
    rid: &str,
    mut encoded: BoxStream<'static, std::result::Result<FlightData, Status>>,
    permit: OwnedSemaphorePermit,
    deadline: tokio::time::Instant,
) -> BoxStream<'static, std::result::Result<FlightData, Status>> {
    let (tx, rx) = tokio::sync::mpsc::channel(SCAN_CHANNEL);
    let outcome = Arc::new(AtomicU8::new(RUNNING));
    let (timeout, stall) = (core.request_timeout, core.stall_timeout);
    let producer = (core.clone(), outcome.clone(), rid.to_string());
    let active = ActiveScan::new(core.clone());
    tokio::spawn(
        async move {
            let (core, outcome, rid) = producer;
            let _permit = permit;
            let _active = active;
            loop {
                // Producing the next message may be slow (a cold read); only
                // the client's side counts as a stall.
                let next = std::panic::AssertUnwindSafe(encoded.next()).catch_unwind();
                let item = match tokio::time::timeout_at(deadline, next).await {
                    Ok(Ok(Some(item))) => item,
                    Ok(Ok(None)) => {
                        outcome.store(FINISHED, Ordering::SeqCst);
                        break;
                    }
                    Ok(Err(payload)) => {
                        // Logged here, with the panic's message; the tail only
                        // reports it. The stream is not polled again.
                        panics::panicked(&rid, payload.as_ref());
                        outcome.store(PANICKED, Ordering::SeqCst);
                        break;
                    }
                    Err(_) => {
                        outcome.store(TIMED_OUT, Ordering::SeqCst);
                        break;
                    }
                };
                let failed = item.is_err();
                let size = item
                    .as_ref()
                    .map(|d| d.data_header.len() + d.data_body.len())
                    .unwrap_or(0);
                let stall_at = tokio::time::Instant::now() + stall;
                match tokio::time::timeout_at(stall_at.min(deadline), tx.send(item)).await {
                    Ok(Ok(())) => core.metrics.bytes_served.inc_by(size as u64),
                    // The client went away; nobody will read the tail.
                    Ok(Err(_)) => break,
                    Err(_) if stall_at < deadline => {
                        tracing::warn!(
                            request_id = %rid,
                            stall = %humantime::format_duration(stall),
                            "the client stopped reading; the scan gives its slot back"
                        );
                        core.metrics.stalled_scans.inc();
                        outcome.store(STALLED, Ordering::SeqCst);
                        break;
                    }
                    Err(_) => {
                        outcome.store(TIMED_OUT, Ordering::SeqCst);
                        break;
                    }
                }
                if failed {
                    outcome.store(FINISHED, Ordering::SeqCst);
                    break;
                }
            }
            // The scan is over: what it holds (a hot-tier fill waits for
            // it) goes now, not when the client has taken the last messages.
            drop(encoded);
            // The slot stands for this scan's memory: it is kept until the
            // client has taken what the channel still holds, so answers that
            // are produced but not yet delivered cannot pile up beyond the slot
            // count. A client that stops reading here is let go like any other.
            if outcome.load(Ordering::SeqCst) == FINISHED {
                let until = (tokio::time::Instant::now() + stall).min(deadline);
                let _ = tokio::time::timeout_at(until, tx.reserve_many(SCAN_CHANNEL)).await;
            }
        }
        // The request's span lasts as long as its scan, whose reads it parents.
        .in_current_span(),
    );
    let received = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let (core, rid) = (core.clone(), rid.to_string());
    let tail = futures::stream::once(async move {
        let err = match outcome.load(Ordering::SeqCst) {
            FINISHED => return None,
            STALLED => stalled(stall),
            PANICKED => panics::internal(&rid),
            _ => timed_out(timeout),
        };
        Some(Err(status(&core, &rid, err)))
    })
    .filter_map(|item| async move { item });
    received.chain(tail).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ByteSize, Config};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scan_that_panics_ends_with_internal_and_gives_everything_back() {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.admin_listen = "127.0.0.1:0".parse().unwrap();
        config.cache.disk = ByteSize(0);
        config.cache.memory = ByteSize(16 << 20);
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        config.sources = vec![crate::config::SourceConfig::new("local", url.as_str())];
        let node = crate::node::RunningNode::start(config).await.unwrap();
        let core = node.core.clone();
        let slots = core.scan_slots.available_permits();
        let permit = core.scan_slots.clone().try_acquire_owned().unwrap();
        let mut sent = false;
        let encoded = futures::stream::poll_fn(move |_| {
            if std::mem::replace(&mut sent, true) {
                panic!("a kernel bug");
            }
            std::task::Poll::Ready(Some(Ok(FlightData::default())))
        })
        .boxed();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let out: Vec<_> = serve_scan(&core, "rid-7", encoded, permit, deadline)
            .collect()
            .await;
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].is_ok());
        let err = out[1].as_ref().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
        assert!(err.message().contains("rid-7"), "{}", err.message());
        // The producing task has ended: its slot and gauge are released.
        for _ in 0..100 {
            if core.metrics.active_scans.get() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(core.metrics.active_scans.get(), 0);
        assert_eq!(core.scan_slots.available_permits(), slots);
        node.shutdown().await.unwrap();
    }
}
