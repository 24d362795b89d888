//! The `[limits]` section: how many scans and plans run and wait at once,
//! how long requests may take, and the size bounds of one request.

use std::time::Duration;

use serde::Deserialize;

use super::error::{invalid, ConfigError};
use super::values::{ByteSize, Span};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Scans running at once. Each holds about one row group of the
    /// columns it reads in memory (read-ahead and further row groups read
    /// at once come from node-wide budgets), so this bounds the node's scan
    /// memory;
    /// more would not run faster on the cores a node has.
    pub max_concurrent_scans: usize,
    /// Longest a scan waits for a free slot before it is answered
    /// ResourceExhausted; 0 answers at once.
    pub scan_queue_timeout: Span,
    /// Scans waiting for a slot at most; one more is answered at once.
    pub max_queued_scans: usize,
    /// Longest a single request may run.
    pub request_timeout: Span,
    /// Longest a scan waits for its client to take the next message before
    /// it gives its slot back: an idle reader must not hold a slot for the
    /// whole `request_timeout`.
    pub stall_timeout: Span,
    /// Longest filter expression accepted, in bytes.
    pub max_filter_len: usize,
    /// Rows per record batch sent to clients.
    pub batch_rows: usize,
    /// Most objects one request may name through a prefix.
    pub max_objects: usize,
    /// Planning calls (GetFlightInfo, GetSchema, ListFlights) running at
    /// once; one more is answered ResourceExhausted. Planning a prefix reads
    /// every object's footer, so a flood of plans must not crowd out scans.
    pub max_concurrent_plans: usize,
    /// An object larger than this is planned as several endpoints, one per
    /// range of row groups of about this many bytes, so clients, and the
    /// node's cores, read it in parallel; 0 plans every object as one.
    pub split_bytes: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_concurrent_scans: 8,
            scan_queue_timeout: Span(Duration::from_secs(30)),
            max_queued_scans: 1024,
            request_timeout: Span(Duration::from_secs(600)),
            stall_timeout: Span(Duration::from_secs(30)),
            max_filter_len: 16 * 1024,
            batch_rows: 8192,
            max_objects: 10_000,
            max_concurrent_plans: 32,
            split_bytes: ByteSize(64 << 20),
        }
    }
}

impl LimitsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent_scans == 0 {
            return Err(invalid("limits.max_concurrent_scans", "must be at least 1"));
        }
        if self.max_concurrent_plans == 0 {
            return Err(invalid("limits.max_concurrent_plans", "must be at least 1"));
        }
        if self.max_objects == 0 {
            return Err(invalid("limits.max_objects", "must be at least 1"));
        }
        if self.batch_rows == 0 {
            return Err(invalid("limits.batch_rows", "must be at least 1"));
        }
        if self.request_timeout.0.is_zero() {
            return Err(invalid("limits.request_timeout", "must be above zero"));
        }
        if self.stall_timeout.0.is_zero() {
            return Err(invalid("limits.stall_timeout", "must be above zero"));
        }
        Ok(())
    }
}
