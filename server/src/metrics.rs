//! The node's counters, kept in one Prometheus registry per node so that the
//! `/metrics` page and the `stats` action read the same numbers, and so that
//! several nodes can live in one test process without sharing counters.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use quiver_sql::{Outcome, Role, StatementObserver};

/// Which tier answered a chunk lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Memory,
    Disk,
}

impl Tier {
    fn label(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::Disk => "disk",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    hits: IntCounterVec,
    misses: IntCounter,
    /// Disk-tier reads that failed, or found an entry of the wrong length,
    /// each then read from the origin: a rising count means a failing disk.
    /// (foyer itself drops entries that fail their checksum; those are
    /// plain misses.)
    pub disk_errors: IntCounter,
    /// Writes to the disk tier's directory that failed (health probes).
    pub disk_write_errors: IntCounter,
    /// 1 while the disk tier passes its health probe.
    pub disk_healthy: IntGauge,
    /// Chunks a hand-off donor sent that failed their checksum or length
    /// check, and so never entered the cache.
    pub handoff_chunks_rejected: IntCounter,
    /// Bytes of chunks that missed here and came from a slot's previous
    /// owner instead of the origin.
    pub peer_fill_bytes: IntCounter,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    pub origin_bytes: IntCounter,
    pub origin_requests: IntCounter,
    pub origin_heads: IntCounter,
    pub bytes_served: IntCounter,
    pub rows_served: IntCounter,
    /// Pre-signed URLs handed out, by source.
    pub presigned_urls: IntCounterVec,
    /// Warm-ups waiting or running.
    pub warm_queued: IntGauge,
    pub warm_done: IntCounter,
    /// Warm-ups dropped because the queue was full.
    pub warm_dropped: IntCounter,
    pub warm_failed: IntCounter,
    pub warm_bytes: IntCounter,
    pub scans: IntCounter,
    pub active_scans: IntGauge,
    /// Scans waiting in line for a scan slot.
    pub queued_scans: IntGauge,
    /// Scans stopped because the client read nothing for `stall_timeout`.
    pub stalled_scans: IntCounter,
    pub scan_seconds: Histogram,
    /// Time of each ranged GET to the origin, its body read included.
    pub origin_request_seconds: Histogram,
    pub errors: IntCounterVec,
    pub memory_usage: IntGauge,
    pub memory_capacity: IntGauge,
    pub disk_usage: IntGauge,
    pub disk_allocated: IntGauge,
    pub disk_capacity: IntGauge,
    /// Scans answered from the hot tier's decoded arrays.
    pub hot_hits: IntCounter,
    /// Scans the hot tier held none of, read from Parquet.
    pub hot_misses: IntCounter,
    /// Scans answered from the hot tier for some row groups and from
    /// Parquet for the rest.
    pub hot_partial: IntCounter,
    /// Decoded column chunks dropped to make room.
    pub hot_evictions: IntCounter,
    /// Row groups decoded into the hot tier after a miss.
    pub hot_fills: IntCounter,
    pub hot_usage: IntGauge,
    pub hot_capacity: IntGauge,
    pub topology_epoch: IntGauge,
    pub topology_errors: IntCounter,
    /// 1 while a source's circuit breaker fails its misses fast.
    pub origin_circuit_open: IntGaugeVec,
    /// Origin calls answered at once by an open circuit, by source.
    pub origin_fast_failures: IntCounterVec,
    /// 1 for the state the latest hand-off is in, 0 for the others.
    pub handoff_state: IntGaugeVec,
    /// The latest hand-off's epoch and progress; each starts again at 0
    /// when a new hand-off starts, so they are gauges.
    pub handoff_epoch: IntGauge,
    pub handoff_objects: IntGauge,
    pub handoff_objects_done: IntGauge,
    pub handoff_objects_refused: IntGauge,
    pub handoff_bytes: IntGauge,
    /// Flight SQL statements run, by how they ended.
    sql_statements: IntCounterVec,
    sql_running: IntGauge,
    sql_seconds: Histogram,
    /// Statements this node coordinated in distributed stages.
    pub sql_distributed: IntCounter,
    /// Stage tasks run here as a worker, by [`TaskKind`].
    sql_tasks: IntCounterVec,
    /// Stage output received from workers, by [`Role`].
    sql_exchange_bytes: IntCounterVec,
}

/// What a stage task this node ran read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Only other stages' output.
    Inner,
    /// Quiver endpoints, all of slots this node owns.
    LocalLeaf,
    /// Quiver endpoints, some of slots other nodes own.
    RemoteLeaf,
}

impl TaskKind {
    pub const ALL: &'static [TaskKind] =
        &[TaskKind::Inner, TaskKind::LocalLeaf, TaskKind::RemoteLeaf];

    pub fn label(self) -> &'static str {
        match self {
            TaskKind::Inner => "inner",
            TaskKind::LocalLeaf => "local_leaf",
            TaskKind::RemoteLeaf => "remote_leaf",
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label])
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), &[label])
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

/// A latency histogram with buckets from 1 ms doubling to about 65 s, which
/// covers a cached scan through a request that ran into its timeout.
fn seconds(registry: &Registry, name: &str, help: &str) -> Histogram {
    let buckets = prometheus::exponential_buckets(0.001, 2.0, 17)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(h.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    h
}

/// Holds one unit of a gauge for as long as it lives, so a waiter that
/// gives up or whose request is dropped leaves the gauge as it found it.
#[derive(Debug)]
pub struct GaugeHold(IntGauge);

impl GaugeHold {
    pub fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        GaugeHold(gauge.clone())
    }
}

impl Drop for GaugeHold {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Metric names are fixed at compile time, so registration can only fail
    /// on a programming error; that is caught by every test that builds a node.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("quiver".into()), None)
            .unwrap_or_else(|e| panic!("metrics registry: {e}"));
        let scan_seconds = Histogram::with_opts(
            HistogramOpts::new("scan_seconds", "Time from DoGet to the last batch sent")
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 16).unwrap_or_default()),
        )
        .unwrap_or_else(|e| panic!("metric scan_seconds: {e}"));
        registry
            .register(Box::new(scan_seconds.clone()))
            .unwrap_or_else(|e| panic!("metric scan_seconds: {e}"));
        let hits = counter_vec(
            &registry,
            "cache_hits_total",
            "Chunk lookups answered by a cache tier",
            "tier",
        );
        // Both tiers' series exist from the start, so a hit ratio per tier
        // reads 0 rather than nothing before the first hit.
        for tier in [Tier::Memory, Tier::Disk] {
            hits.with_label_values(&[tier.label()]);
        }
        let sql_statements = counter_vec(
            &registry,
            "sql_statements_total",
            "Flight SQL statements by outcome: ok, error (refused, did not plan, or failed), cancelled",
            "outcome",
        );
        for outcome in Outcome::ALL {
            sql_statements.with_label_values(&[outcome.label()]);
        }
        let sql_tasks = counter_vec(
            &registry,
            "sql_tasks_total",
            "Stage tasks of distributed Flight SQL statements run on this node, by what they read: inner (other stages), local_leaf (endpoints this node owns), remote_leaf",
            "kind",
        );
        for kind in TaskKind::ALL {
            sql_tasks.with_label_values(&[kind.label()]);
        }
        let sql_exchange_bytes = counter_vec(
            &registry,
            "sql_exchange_bytes_total",
            "Bytes of stage output this node received from workers, as a statement's coordinator or as a worker",
            "role",
        );
        for role in Role::ALL {
            sql_exchange_bytes.with_label_values(&[role.label()]);
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .unwrap_or_else(|e| panic!("process metrics: {e}"));
        Metrics {
            hits,
            misses: counter(
                &registry,
                "cache_misses_total",
                "Chunk lookups that went to the origin",
            ),
            disk_errors: counter(
                &registry,
                "cache_disk_errors_total",
                "Disk-tier reads that failed or found a damaged entry, then served from the origin",
            ),
            disk_write_errors: counter(
                &registry,
                "cache_disk_write_errors_total",
                "Writes to the disk tier's directory that failed (health probes)",
            ),
            handoff_chunks_rejected: counter(
                &registry,
                "handoff_chunks_rejected_total",
                "Chunks from a hand-off donor that failed their checksum or length check",
            ),
            peer_fill_bytes: counter(
                &registry,
                "peer_fill_bytes_total",
                "Bytes of missed chunks read from the slot's previous owner instead of the origin",
            ),
            access_log_dropped: counter(
                &registry,
                "access_log_dropped_total",
                "Access-log lines dropped because the writer fell behind",
            ),
            disk_healthy: gauge(
                &registry,
                "cache_disk_healthy",
                "1 while the disk tier can be written and reads from it succeed",
            ),
            origin_bytes: counter(
                &registry,
                "origin_bytes_total",
                "Bytes read from the origin object store",
            ),
            origin_requests: counter(
                &registry,
                "origin_requests_total",
                "Requests sent to the origin object store",
            ),
            origin_heads: counter(
                &registry,
                "origin_heads_total",
                "HEAD requests asking the origin what an object is now (identity revalidation)",
            ),
            bytes_served: counter(
                &registry,
                "served_bytes_total",
                "Arrow IPC bytes sent to clients",
            ),
            rows_served: counter(&registry, "served_rows_total", "Rows sent to clients"),
            presigned_urls: counter_vec(
                &registry,
                "presigned_urls_total",
                "Pre-signed URLs issued, by source",
                "source",
            ),
            warm_queued: gauge(
                &registry,
                "warm_queue",
                "Background warm-ups waiting or running",
            ),
            warm_done: counter(&registry, "warm_done_total", "Background warm-ups finished"),
            warm_dropped: counter(
                &registry,
                "warm_dropped_total",
                "Background warm-ups dropped because the queue was full",
            ),
            warm_failed: counter(
                &registry,
                "warm_failed_total",
                "Background warm-ups that failed",
            ),
            warm_bytes: counter(
                &registry,
                "warm_bytes_total",
                "Bytes loaded into the cache by background warm-ups",
            ),
            scans: counter(&registry, "scans_total", "Scans started"),
            active_scans: gauge(&registry, "active_scans", "Scans running now"),
            queued_scans: gauge(
                &registry,
                "queued_scans",
                "Scans waiting in line for a scan slot",
            ),
            origin_request_seconds: seconds(
                &registry,
                "origin_request_seconds",
                "Time of each ranged GET to the origin, its body read included",
            ),
            stalled_scans: counter(
                &registry,
                "stalled_scans_total",
                "Scans stopped because the client stopped reading for the stall timeout",
            ),
            errors: counter_vec(
                &registry,
                "errors_total",
                "Requests that failed, by gRPC code",
                "code",
            ),
            memory_usage: gauge(
                &registry,
                "cache_memory_bytes",
                "Bytes held by the memory tier",
            ),
            memory_capacity: gauge(
                &registry,
                "cache_memory_capacity_bytes",
                "Capacity of the memory tier",
            ),
            disk_usage: gauge(
                &registry,
                "cache_disk_bytes",
                "Bytes of chunks held by the disk tier",
            ),
            disk_allocated: gauge(
                &registry,
                "cache_disk_allocated_bytes",
                "Space the disk tier's files take on disk (allocated in full at start-up)",
            ),
            disk_capacity: gauge(
                &registry,
                "cache_disk_capacity_bytes",
                "Capacity of the disk tier",
            ),
            hot_hits: counter(
                &registry,
                "hot_hits_total",
                "Scans answered from the hot tier's decoded Arrow arrays",
            ),
            hot_misses: counter(
                &registry,
                "hot_misses_total",
                "Scans the hot tier held no row group of, read from Parquet instead",
            ),
            hot_partial: counter(
                &registry,
                "hot_partial_hits_total",
                "Scans answered from the hot tier for some row groups and from Parquet for the rest",
            ),
            hot_evictions: counter(
                &registry,
                "hot_evictions_total",
                "Decoded column chunks the hot tier dropped to make room",
            ),
            hot_fills: counter(
                &registry,
                "hot_fills_total",
                "Row groups decoded into the hot tier after a miss",
            ),
            hot_usage: gauge(&registry, "hot_bytes", "Bytes held by the hot tier"),
            hot_capacity: gauge(
                &registry,
                "hot_capacity_bytes",
                "Capacity of the hot tier of decoded Arrow arrays",
            ),
            topology_epoch: gauge(
                &registry,
                "topology_epoch",
                "Epoch of the topology this node follows",
            ),
            topology_errors: counter(
                &registry,
                "topology_errors_total",
                "Topology reloads that found a document it could not adopt",
            ),
            origin_circuit_open: gauge_vec(
                &registry,
                "origin_circuit_open",
                "1 while the source's origin keeps failing and misses fail fast",
                "source",
            ),
            origin_fast_failures: counter_vec(
                &registry,
                "origin_fast_failures_total",
                "Origin calls refused at once because the source's circuit was open",
                "source",
            ),
            handoff_state: gauge_vec(
                &registry,
                "handoff_state",
                "1 for the state of the latest hand-off (idle, running, done, failed, stopped)",
                "state",
            ),
            handoff_epoch: gauge(
                &registry,
                "handoff_epoch",
                "Topology epoch of the latest hand-off",
            ),
            handoff_objects: gauge(
                &registry,
                "handoff_objects",
                "Objects the latest hand-off's donors offered so far",
            ),
            handoff_objects_done: gauge(
                &registry,
                "handoff_objects_done",
                "Objects the latest hand-off has copied",
            ),
            handoff_objects_refused: gauge(
                &registry,
                "handoff_objects_refused",
                "Objects the latest hand-off refused to import",
            ),
            handoff_bytes: gauge(
                &registry,
                "handoff_bytes",
                "Bytes the latest hand-off received from peers",
            ),
            sql_statements,
            sql_running: gauge(
                &registry,
                "sql_statements_running",
                "Flight SQL statements running now",
            ),
            sql_seconds: seconds(
                &registry,
                "sql_statement_seconds",
                "Time from a Flight SQL statement's DoGet to the end of its answer",
            ),
            sql_distributed: counter(
                &registry,
                "sql_distributed_statements_total",
                "Flight SQL statements this node coordinated in distributed stages",
            ),
            sql_tasks,
            sql_exchange_bytes,
            scan_seconds,
            registry,
        }
    }

    pub fn hit(&self, tier: Tier) {
        self.hits.with_label_values(&[tier.label()]).inc();
    }

    pub fn hits(&self, tier: Tier) -> u64 {
        self.hits.with_label_values(&[tier.label()]).get()
    }

    pub fn miss(&self, chunks: u64) {
        self.misses.inc_by(chunks);
    }

    pub fn misses(&self) -> u64 {
        self.misses.get()
    }

    /// Pre-signed URLs issued for every source together.
    pub fn presigned_total(&self) -> u64 {
        prometheus::core::Collector::collect(&self.presigned_urls)
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// Stage tasks run here of any of `kinds`.
    pub fn sql_tasks(&self, kinds: &[TaskKind]) -> u64 {
        kinds
            .iter()
            .map(|k| self.sql_tasks.with_label_values(&[k.label()]).get())
            .sum()
    }

    /// Stage output received here as `role`.
    pub fn sql_exchanged(&self, role: Role) -> u64 {
        self.sql_exchange_bytes
            .with_label_values(&[role.label()])
            .get()
    }

    pub fn error(&self, code: tonic::Code) {
        self.errors.with_label_values(&[&format!("{code:?}")]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Flight SQL statements count in the node's registry like its scans.
impl StatementObserver for Metrics {
    fn started(&self) {
        self.sql_running.inc();
    }

    fn finished(&self, outcome: Outcome, elapsed: Duration) {
        self.sql_running.dec();
        self.sql_statements
            .with_label_values(&[outcome.label()])
            .inc();
        self.sql_seconds.observe(elapsed.as_secs_f64());
    }

    fn refused(&self) {
        self.sql_statements
            .with_label_values(&[Outcome::Error.label()])
            .inc();
    }

    fn distributed(&self) {
        self.sql_distributed.inc();
    }

    fn task(&self, scans: bool, local: bool) {
        let kind = match (scans, local) {
            (false, _) => TaskKind::Inner,
            (true, true) => TaskKind::LocalLeaf,
            (true, false) => TaskKind::RemoteLeaf,
        };
        self.sql_tasks.with_label_values(&[kind.label()]).inc();
    }

    fn exchanged(&self, role: Role, bytes: u64) {
        self.sql_exchange_bytes
            .with_label_values(&[role.label()])
            .inc_by(bytes);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
