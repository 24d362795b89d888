//! The flags every workload takes (`--quick`, `--out`, the emulated links,
//! running nodes to measure, the local node's tiers), and what they make:
//! links, credentials, and the options of a [`Rig`](crate::rig::Rig).

use std::path::PathBuf;
use std::time::Duration;

use quiver_client::{Compression, Connector, Credentials, Tls};
use quiver_protocol::IpcCompression;
use quiver_testkit::link::LinkConfig;

use crate::error::BoxError;
use crate::rig::{
    RigOptions, DEFAULT_DISK_MIB, DEFAULT_MEMORY_MIB, DEFAULT_SOURCE, QUICK_DISK_MIB,
};
use crate::server::default_binary;

/// The most local nodes `--nodes N` starts on one machine.
const MAX_LOCAL_NODES: usize = 8;

/// The global flags, flattened into the command line of every workload.
#[derive(clap::Args)]
pub struct Common {
    /// A small run (minutes, not tens of minutes) with the same shape.
    #[arg(long, global = true)]
    pub quick: bool,
    /// Where JSON, Markdown and PNG results are written.
    #[arg(long, global = true, default_value = "bench-results")]
    pub out: PathBuf,
    /// Run without the emulated S3 link (raw loopback, or real S3).
    #[arg(long, global = true)]
    pub no_emulation: bool,
    /// First-byte latency of the emulated S3 link, in milliseconds.
    #[arg(long, global = true, default_value_t = 30)]
    pub latency_ms: u64,
    /// Per-connection bandwidth of the emulated S3 link, in MB/s.
    #[arg(long, global = true, default_value_t = 100)]
    pub bandwidth_mb_s: u64,
    /// First-byte latency of an emulated hop from the benchmark's clients to
    /// each local node, in milliseconds; 0 connects them on raw loopback.
    #[arg(long, global = true, default_value_t = 0)]
    pub client_latency_ms: u64,
    /// Per-connection bandwidth of the client hop, in MB/s; 0 for no cap.
    #[arg(long, global = true, default_value_t = 0)]
    pub client_bandwidth_mb_s: u64,
    /// The quiver-server binary to run (default: next to this binary).
    #[arg(long, global = true)]
    pub server_bin: Option<PathBuf>,
    /// Flight URLs of running Quiver nodes to measure instead of starting
    /// one (comma-separated; needs --s3), or a number of local nodes to
    /// start as a cluster (e.g. `--nodes 3`).
    #[arg(long, global = true, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Root URL (s3://bucket/prefix/) of the source the running nodes serve;
    /// credentials come from the AWS environment or instance profile.
    #[arg(long, global = true)]
    pub s3: Option<String>,
    /// PEM CA certificates to trust for grpc+tls:// --nodes.
    #[arg(long, global = true)]
    pub tls_ca: Option<PathBuf>,
    /// File holding the bearer token for --nodes that require one. Use the
    /// admin token: the suite evicts between runs.
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// The source name under which the nodes serve --s3.
    #[arg(long, global = true, default_value = DEFAULT_SOURCE)]
    pub source: String,
    /// Memory tier of the local node, in MiB (1 GiB, like the ISTZIIO rig).
    #[arg(long, global = true, default_value_t = DEFAULT_MEMORY_MIB)]
    pub cache_memory_mib: u64,
    /// Disk tier of each local node, in MiB [default: 4096, or 256 with
    /// --quick]. The tier allocates it when the node starts.
    #[arg(long, global = true)]
    pub cache_disk_mib: Option<u64>,
    /// Read Quiver by DoGet on a hand-made ticket, skipping GetFlightInfo
    /// (no planning paid, no endpoint split); by default it is read as a
    /// client does, GetFlightInfo and then its endpoints in parallel.
    #[arg(long, global = true)]
    pub ticket_only: bool,
    /// IPC compression Quiver's client asks for: auto (lz4_frame from nodes
    /// off loopback, so none on this rig), none, lz4_frame or zstd. Use it
    /// with a client hop (--client-bandwidth-mb-s) to measure compression.
    #[arg(long, global = true, default_value = "auto", value_parser = parse_compression)]
    pub ipc_compression: Compression,
}

/// A `--ipc-compression` value.
fn parse_compression(value: &str) -> Result<Compression, String> {
    if value == "auto" {
        return Ok(Compression::Auto);
    }
    Ok(match IpcCompression::parse(value)? {
        Some(codec) => Compression::Always(codec),
        None => Compression::Off,
    })
}

impl Common {
    /// The emulated S3 link, unless `--no-emulation` or `--s3` says the
    /// data is read without one.
    pub fn link(&self) -> Option<LinkConfig> {
        (!self.no_emulation && self.s3.is_none()).then(|| LinkConfig {
            latency: Duration::from_millis(self.latency_ms),
            bandwidth: self.bandwidth_mb_s * 1_000_000,
        })
    }

    /// The emulated hop from clients to local nodes, when
    /// `--client-latency-ms` or `--client-bandwidth-mb-s` asks for one.
    pub fn client_link(&self) -> Option<LinkConfig> {
        (self.client_latency_ms > 0 || self.client_bandwidth_mb_s > 0).then(|| LinkConfig {
            latency: Duration::from_millis(self.client_latency_ms),
            bandwidth: self.client_bandwidth_mb_s * 1_000_000,
        })
    }

    /// TLS trust and credentials for `--nodes`, from `--tls-ca` and
    /// `--token-file`; a token file that cannot be read or is empty fails
    /// the run before anything starts.
    pub fn connector(&self) -> Result<Connector, BoxError> {
        let credentials = match &self.token_file {
            Some(path) => {
                let token = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read --token-file {}: {e}", path.display()))?;
                let token = token.trim();
                if token.is_empty() {
                    return Err(format!("--token-file {} is empty", path.display()).into());
                }
                Credentials::Bearer(token.to_string())
            }
            None => Credentials::None,
        };
        Ok(Connector {
            tls: Tls {
                ca_file: self.tls_ca.clone(),
            },
            credentials,
        })
    }

    /// The quiver-server binary local nodes run.
    pub fn server_bin(&self) -> PathBuf {
        self.server_bin.clone().unwrap_or_else(default_binary)
    }

    /// A rig of the flags' S3 and running nodes, or of one local node with
    /// the flags' tiers, behind the flags' links.
    pub fn rig_options(&self) -> Result<RigOptions, BoxError> {
        Ok(RigOptions::default()
            .link(self.link())
            .client_link(self.client_link())
            .server_bin(self.server_bin())
            .nodes(self.remote_nodes())
            .local_nodes(self.local_nodes()?)
            .s3(self.s3.clone())
            .source(self.source.clone())
            .memory_mib(self.cache_memory_mib)
            .disk_mib(self.disk_mib())
            .connector(self.connector()?)
            .ticket_only(self.ticket_only)
            .compression(self.ipc_compression))
    }

    /// The disk tier of each local node: `--cache-disk-mib`, else a small
    /// one for a quick run (its data is tens of MiB) and the full default
    /// otherwise.
    pub fn disk_mib(&self) -> u64 {
        self.cache_disk_mib.unwrap_or(if self.quick {
            QUICK_DISK_MIB
        } else {
            DEFAULT_DISK_MIB
        })
    }

    /// `--nodes N` (a number rather than URLs).
    fn node_count(&self) -> Option<usize> {
        match self.nodes.as_slice() {
            [one] => one.parse().ok(),
            _ => None,
        }
    }

    /// How many local nodes to start: `--nodes N`, else 1.
    pub fn local_nodes(&self) -> Result<usize, BoxError> {
        match self.node_count() {
            None => Ok(1),
            Some(n @ 1..=MAX_LOCAL_NODES) => Ok(n),
            Some(n) => Err(format!(
                "--nodes {n}: start between 1 and {MAX_LOCAL_NODES} local nodes"
            )
            .into()),
        }
    }

    /// The running nodes `--nodes URL,...` names (none for a count).
    pub fn remote_nodes(&self) -> Vec<String> {
        match self.node_count() {
            Some(_) => Vec::new(),
            None => self.nodes.clone(),
        }
    }

    /// Refuses running `--nodes` and `--s3` for a workload that starts its
    /// own nodes; `what` says so, as "the X workload starts its own node".
    pub fn no_remote_nodes(&self, what: &str) -> Result<(), BoxError> {
        if !self.remote_nodes().is_empty() || self.s3.is_some() {
            return Err(format!("{what}; it takes no --nodes or --s3").into());
        }
        Ok(())
    }
}
