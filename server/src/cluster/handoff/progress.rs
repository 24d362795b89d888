//! What a hand-off reports: its status for `health`, mirrored into the
//! node's metrics on every change. Nothing here knows the node or the
//! hand-off's actions, so the node's shared state can hold it without
//! importing them.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::metrics::Metrics;

/// What `health` reports about the last hand-off.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HandoffStatus {
    /// `idle`, `running`, `done`, `failed` (some slots' chunks will come
    /// from the origin instead) or `stopped` (the node shut down).
    pub state: &'static str,
    pub epoch: u64,
    pub objects: u64,
    pub objects_done: u64,
    /// Objects the donor offered that this node would not import: not in a
    /// configured source or in the slots handed off, or not the version the
    /// origin has now.
    pub objects_refused: u64,
    /// Bytes received from peers.
    pub bytes: u64,
    /// Chunks a peer sent that failed their checksum or length check; none
    /// of them entered the cache.
    pub chunks_rejected: u64,
    pub errors: Vec<String>,
}

/// The states a hand-off reports, `idle` until the first one starts.
const STATES: [&str; 5] = ["idle", "running", "done", "failed", "stopped"];

/// Shared progress of the hand-off task, mirrored into the node's metrics
/// on every change so dashboards see what `health` says.
#[derive(Debug)]
pub struct Progress {
    status: Mutex<HandoffStatus>,
    metrics: Arc<Metrics>,
}

impl Progress {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let progress = Progress {
            status: Mutex::default(),
            metrics,
        };
        progress.update(|_| {});
        progress
    }

    pub fn get(&self) -> HandoffStatus {
        shown(&self.status.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut HandoffStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut status);
        let s = shown(&status);
        drop(status);
        let m = &self.metrics;
        for state in STATES {
            m.handoff_state
                .with_label_values(&[state])
                .set(i64::from(state == s.state));
        }
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        m.handoff_epoch.set(gauge(s.epoch));
        m.handoff_objects.set(gauge(s.objects));
        m.handoff_objects_done.set(gauge(s.objects_done));
        m.handoff_objects_refused.set(gauge(s.objects_refused));
        m.handoff_bytes.set(gauge(s.bytes));
    }
}

/// The status as reported: `idle` before any hand-off has run.
fn shown(s: &HandoffStatus) -> HandoffStatus {
    HandoffStatus {
        state: if s.state.is_empty() { "idle" } else { s.state },
        ..s.clone()
    }
}
