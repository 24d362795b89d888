//! The `[limits]` section: how many scans and plans run and wait at once,
//! how long requests may take, and the size bounds of one request.

use std::time::Duration;

use super::error::{invalid, ConfigError};
use super::section::section;
use super::values::{ByteSize, Span};

section! {
    /// Concurrency, time and size bounds.
    pub struct LimitsConfig / LimitsFlags {
        /// Scans running at once; more wait for a slot.
        ///
        /// Each holds about one row group of the columns it reads in memory
        /// (read-ahead and further row groups read at once come from
        /// node-wide budgets), so this bounds the node's scan memory; more
        /// would not run faster on the cores a node has.
        max_concurrent_scans: usize = 8,
            [long = "max-concurrent-scans", env = "QUIVER_MAX_CONCURRENT_SCANS"];
        /// Longest a scan waits for a slot before ResourceExhausted, e.g. 30s.
        ///
        /// 0 answers at once.
        scan_queue_timeout: Span = Span(Duration::from_secs(30)),
            [long = "scan-queue-timeout", env = "QUIVER_SCAN_QUEUE_TIMEOUT"];
        /// Scans waiting for a slot at most; one more is answered at once.
        max_queued_scans: usize = 1024, [skip];
        /// Longest a single request may run, e.g. 10m.
        request_timeout: Span = Span(Duration::from_secs(600)),
            [long = "request-timeout", env = "QUIVER_REQUEST_TIMEOUT"];
        /// Longest a scan waits for a client that stopped reading, e.g. 30s.
        ///
        /// It then gives its slot back: an idle reader must not hold a slot
        /// for the whole `request_timeout`.
        stall_timeout: Span = Span(Duration::from_secs(30)),
            [long = "stall-timeout", env = "QUIVER_STALL_TIMEOUT"];
        /// Longest filter accepted, in bytes.
        max_filter_len: usize = 16 * 1024,
            [long = "max-filter-len", env = "QUIVER_MAX_FILTER_LEN"];
        /// Rows per record batch sent to clients.
        batch_rows: usize = 8192,
            [long = "batch-rows", env = "QUIVER_BATCH_ROWS"];
        /// Most objects one request may name through a prefix.
        max_objects: usize = 10_000,
            [long = "max-objects", env = "QUIVER_MAX_OBJECTS"];
        /// Planning calls running at once before ResourceExhausted.
        ///
        /// GetFlightInfo, GetSchema and ListFlights: planning a prefix reads
        /// every object's footer, so a flood of plans must not crowd out
        /// scans.
        max_concurrent_plans: usize = 32,
            [long = "max-concurrent-plans", env = "QUIVER_MAX_CONCURRENT_PLANS"];
        /// An object larger than this is planned as several endpoints, one
        /// per range of row groups of about this many bytes, so clients, and
        /// the node's cores, read it in parallel; 0 plans every object as
        /// one.
        split_bytes: ByteSize = ByteSize(64 << 20), [skip];
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
