//! What a rig is made of: its links, its nodes (local, how many and how
//! configured, or running ones) and what its clients ask of them.

use std::path::PathBuf;

use quiver_client::{Compression, Connector};
use quiver_testkit::link::LinkConfig;

use crate::server::default_binary;

/// The scan limit of local nodes in workloads that measure speed: far above
/// what they send, so no request is refused.
const BENCH_MAX_SCANS: usize = 512;
/// The name local nodes serve the benchmark's bucket as, unless told.
pub const DEFAULT_SOURCE: &str = "bench";
/// The memory tier of a local node unless told: 1 GiB, like the ISTZIIO rig.
pub const DEFAULT_MEMORY_MIB: u64 = 1024;
/// The disk tier of a local node unless told.
pub const DEFAULT_DISK_MIB: u64 = 4096;
/// The disk tier of a local node in a `--quick` run unless told: room for
/// its data many times over, without taking gigabytes from a CI machine.
pub const QUICK_DISK_MIB: u64 = 256;

/// What a [`Rig`] is made of. [`RigOptions::default`] is one local node,
/// with the default tiers, on raw loopback; the builder methods change one
/// part each:
///
/// ```ignore
/// let opts = RigOptions::default().link(Some(link)).memory_mib(256).disk_mib(0);
/// ```
#[derive(Debug, Clone)]
pub struct RigOptions {
    pub(super) link: Option<LinkConfig>,
    pub(super) client_link: Option<LinkConfig>,
    pub(super) server_bin: PathBuf,
    pub(super) nodes: Vec<String>,
    pub(super) s3: Option<String>,
    pub(super) source: String,
    pub(super) memory_mib: u64,
    pub(super) disk_mib: u64,
    pub(super) hot_mib: Option<u64>,
    pub(super) max_scans: usize,
    pub(super) local_nodes: usize,
    pub(super) sql_tables: Vec<(String, String)>,
    /// `sql.distributed` of each local node, by position; absent: the
    /// node's default.
    pub(super) sql_distributed: Vec<String>,
    pub(super) connector: Connector,
    pub(super) ticket_only: bool,
    pub(super) compression: Compression,
    pub(super) validate_ms: Option<u64>,
}

impl Default for RigOptions {
    fn default() -> Self {
        RigOptions {
            link: None,
            client_link: None,
            server_bin: default_binary(),
            nodes: Vec::new(),
            s3: None,
            source: DEFAULT_SOURCE.to_string(),
            memory_mib: DEFAULT_MEMORY_MIB,
            disk_mib: DEFAULT_DISK_MIB,
            hot_mib: None,
            max_scans: BENCH_MAX_SCANS,
            local_nodes: 1,
            sql_tables: Vec::new(),
            sql_distributed: Vec::new(),
            ticket_only: false,
            compression: Compression::Auto,
            connector: Connector::default(),
            validate_ms: None,
        }
    }
}

impl RigOptions {
    /// The emulated S3 link in front of the local S3 server; `None` reads
    /// it on raw loopback.
    pub fn link(mut self, link: Option<LinkConfig>) -> Self {
        self.link = link;
        self
    }

    /// The emulated hop from the benchmark's clients to each local node;
    /// `None` connects them on raw loopback.
    pub fn client_link(mut self, link: Option<LinkConfig>) -> Self {
        self.client_link = link;
        self
    }

    /// How long local nodes trust what they know of an object (the
    /// source's `validate`) before asking the origin again.
    pub fn validate_ms(mut self, ms: u64) -> Self {
        self.validate_ms = Some(ms);
        self
    }

    /// The quiver-server binary local nodes run.
    pub fn server_bin(mut self, path: PathBuf) -> Self {
        self.server_bin = path;
        self
    }

    /// Flight URLs of running nodes to measure instead of local ones; they
    /// go with [`s3`](Self::s3).
    pub fn nodes(mut self, urls: Vec<String>) -> Self {
        self.nodes = urls;
        self
    }

    /// The root URL of the source the running nodes serve.
    pub fn s3(mut self, url: Option<String>) -> Self {
        self.s3 = url;
        self
    }

    /// The name the nodes serve the data as.
    pub fn source(mut self, name: String) -> Self {
        self.source = name;
        self
    }

    /// The memory tier of local nodes, in MiB.
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.memory_mib = mib;
        self
    }

    /// The disk tier of local nodes, in MiB; 0 for none.
    pub fn disk_mib(mut self, mib: u64) -> Self {
        self.disk_mib = mib;
        self
    }

    /// The hot tier of local nodes, in MiB (0 for none); unset keeps the
    /// node's default.
    pub fn hot_mib(mut self, mib: u64) -> Self {
        self.hot_mib = Some(mib);
        self
    }

    /// `limits.max_concurrent_scans` of local nodes: [`BENCH_MAX_SCANS`]
    /// unless set, for workloads that measure speed; the node's own default
    /// (8) for one that measures behaviour past the limits.
    pub fn max_scans(mut self, scans: usize) -> Self {
        self.max_scans = scans;
        self
    }

    /// Local nodes to start (ignored with `nodes`); more than one forms a
    /// cluster through a shared topology file.
    pub fn local_nodes(mut self, count: usize) -> Self {
        self.local_nodes = count;
        self
    }

    /// Flight SQL tables the local nodes declare: `(name, path)` in the
    /// `default` schema, so benchmark queries name tables unqualified.
    pub fn sql_tables(mut self, tables: Vec<(String, String)>) -> Self {
        self.sql_tables = tables;
        self
    }

    /// `sql.distributed` of the local nodes, the first node first (auto,
    /// on or off); nodes past the list keep the default.
    pub fn sql_distributed(mut self, modes: &[&str]) -> Self {
        self.sql_distributed = modes.iter().map(|m| m.to_string()).collect();
        self
    }

    /// TLS trust and credentials for running `nodes` (`--tls-ca`,
    /// `--token-file`); local nodes take none.
    pub fn connector(mut self, connector: Connector) -> Self {
        self.connector = connector;
        self
    }

    /// Quiver is read by DoGet on a ticket made by hand, without
    /// GetFlightInfo: the node's scan alone, with no planning and no
    /// endpoint split.
    pub fn ticket_only(mut self, yes: bool) -> Self {
        self.ticket_only = yes;
        self
    }

    /// The IPC compression the rig's Quiver clients ask for.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }
}
