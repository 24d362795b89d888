//! The command line: every flag, the `QUIVER_*` variable each also reads,
//! and how the given ones override the file's settings.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::error::{invalid, ConfigError};
use super::sources::SourceConfig;
use super::values::{ByteSize, Eviction, MissPolicy, Span};
use super::Config;

/// Command-line flags; each also reads `QUIVER_<FLAG>` from the environment
/// and, when given, wins over the config file.
#[derive(Debug, Default, Parser)]
#[command(
    name = "quiver-server",
    version,
    about = "One Quiver cache node: Arrow Flight over a hybrid memory/NVMe cache of Parquet data"
)]
pub struct Flags {
    /// TOML configuration file.
    #[arg(long, env = "QUIVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Flight (and Flight SQL) listen address.
    #[arg(long, env = "QUIVER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Admin HTTP listen address (/metrics, /health, /ready, the status page).
    #[arg(long, env = "QUIVER_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// URL that clients use to reach this node.
    #[arg(long, env = "QUIVER_ADVERTISE")]
    pub advertise: Option<String>,
    /// Listen beyond loopback although no tokens are configured (a trusted
    /// network only).
    #[arg(long, env = "QUIVER_INSECURE")]
    pub insecure: bool,
    /// Memory tier capacity, e.g. 1GiB.
    #[arg(long, env = "QUIVER_CACHE_MEMORY")]
    pub cache_memory: Option<ByteSize>,
    /// Disk tier capacity, e.g. 10GiB; 0 for memory only (default: a
    /// quarter of the disk's free space, at most 10GiB).
    #[arg(long, env = "QUIVER_CACHE_DISK")]
    pub cache_disk: Option<ByteSize>,
    /// Directory of the disk tier.
    #[arg(long, env = "QUIVER_CACHE_DISK_DIR")]
    pub cache_disk_dir: Option<PathBuf>,
    /// Chunk size of cached byte ranges, e.g. 1MiB.
    #[arg(long, env = "QUIVER_CACHE_CHUNK")]
    pub cache_chunk: Option<ByteSize>,
    /// Eviction policy: lru, lfu, s3fifo, fifo or sieve.
    #[arg(long, env = "QUIVER_CACHE_EVICTION")]
    pub cache_eviction: Option<Eviction>,
    /// Memory for parsed Parquet footers and page indexes.
    #[arg(long, env = "QUIVER_CACHE_METADATA")]
    pub cache_metadata: Option<ByteSize>,
    /// Hot tier of decoded Arrow arrays, e.g. 1GiB; 0 turns it off.
    #[arg(long, env = "QUIVER_CACHE_HOT")]
    pub cache_hot: Option<ByteSize>,
    /// Append one JSON line per scan read to this file (a trace for
    /// `quiver-bench policies`).
    #[arg(long, env = "QUIVER_CACHE_ACCESS_LOG")]
    pub cache_access_log: Option<PathBuf>,
    /// A source as NAME=URL (repeatable; replaces the file's sources).
    #[arg(long = "source", env = "QUIVER_SOURCE", value_delimiter = ',')]
    pub sources: Vec<String>,
    /// This node's id in the cluster topology.
    #[arg(long, env = "QUIVER_NODE_ID")]
    pub node_id: Option<String>,
    /// The topology document: s3://bucket/key or a local path.
    #[arg(long, env = "QUIVER_TOPOLOGY")]
    pub topology: Option<String>,
    /// How often the topology is re-read (e.g. 2s).
    #[arg(long, env = "QUIVER_TOPOLOGY_RELOAD")]
    pub topology_reload: Option<Span>,
    /// File of bearer tokens, one per line; enables auth.
    #[arg(long, env = "QUIVER_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// File holding the admin token for prefetch and evict.
    #[arg(long, env = "QUIVER_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the token nodes present to each other (hand-off).
    #[arg(long, env = "QUIVER_PEER_TOKEN_FILE")]
    pub peer_token_file: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key, serves TLS.
    #[arg(long, env = "QUIVER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "QUIVER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates trusted when calling TLS nodes (default: those of --tls-cert).
    #[arg(long, env = "QUIVER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Scans running at once; more wait for a slot.
    #[arg(long, env = "QUIVER_MAX_CONCURRENT_SCANS")]
    pub max_concurrent_scans: Option<usize>,
    /// Longest a scan waits for a slot before ResourceExhausted, e.g. 30s.
    #[arg(long, env = "QUIVER_SCAN_QUEUE_TIMEOUT")]
    pub scan_queue_timeout: Option<Span>,
    /// Longest a single request may run, e.g. 10m.
    #[arg(long, env = "QUIVER_REQUEST_TIMEOUT")]
    pub request_timeout: Option<Span>,
    /// Longest a scan waits for a client that stopped reading, e.g. 30s.
    #[arg(long, env = "QUIVER_STALL_TIMEOUT")]
    pub stall_timeout: Option<Span>,
    /// Longest filter accepted, in bytes.
    #[arg(long, env = "QUIVER_MAX_FILTER_LEN")]
    pub max_filter_len: Option<usize>,
    /// Rows per record batch sent to clients.
    #[arg(long, env = "QUIVER_BATCH_ROWS")]
    pub batch_rows: Option<usize>,
    /// Most objects one request may name through a prefix.
    #[arg(long, env = "QUIVER_MAX_OBJECTS")]
    pub max_objects: Option<usize>,
    /// Planning calls running at once before ResourceExhausted.
    #[arg(long, env = "QUIVER_MAX_CONCURRENT_PLANS")]
    pub max_concurrent_plans: Option<usize>,
    /// What a cold scan does: read-through, presign or auto.
    #[arg(long, env = "QUIVER_MISS_POLICY")]
    pub miss_policy: Option<MissPolicy>,
    /// How long a pre-signed URL works, e.g. 15m (at most 7 days).
    #[arg(long, env = "QUIVER_PRESIGN_EXPIRY")]
    pub presign_expiry: Option<Span>,
    /// With `auto`, the smallest cold object handed out as a URL, e.g. 8MiB.
    #[arg(long, env = "QUIVER_PRESIGN_MIN_BYTES")]
    pub presign_min_bytes: Option<ByteSize>,
    /// With no source configured: the directory served as source `local`.
    #[arg(long, env = "QUIVER_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// TPC-H scale factor of the sample written to an empty data directory.
    #[arg(long, env = "QUIVER_SAMPLE_SCALE", default_value_t = 0.01)]
    pub sample_scale: f64,
    /// Log format: text or json.
    #[arg(long, env = "QUIVER_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Export traces to this OTLP/gRPC collector, e.g. http://127.0.0.1:4317.
    #[arg(long, env = "QUIVER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

impl Config {
    /// Writes every flag or variable that was given over the setting it names.
    pub(super) fn apply(&mut self, f: &Flags) -> Result<(), ConfigError> {
        fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *slot = v.clone();
            }
        }
        set(&mut self.server.listen, &f.listen);
        set(&mut self.server.admin_listen, &f.admin_listen);
        if f.advertise.is_some() {
            self.server.advertise = f.advertise.clone();
        }
        self.server.insecure |= f.insecure;
        set(&mut self.cache.memory, &f.cache_memory);
        set(&mut self.cache.disk, &f.cache_disk);
        self.cache.disk_auto &= f.cache_disk.is_none();
        set(&mut self.cache.disk_dir, &f.cache_disk_dir);
        set(&mut self.cache.chunk, &f.cache_chunk);
        set(&mut self.cache.eviction, &f.cache_eviction);
        set(&mut self.cache.metadata, &f.cache_metadata);
        set(&mut self.cache.hot, &f.cache_hot);
        if f.cache_access_log.is_some() {
            self.cache.access_log = f.cache_access_log.clone();
        }
        if f.node_id.is_some() {
            self.cluster.node_id = f.node_id.clone();
        }
        if f.topology.is_some() {
            self.cluster.topology = f.topology.clone();
        }
        set(&mut self.cluster.reload, &f.topology_reload);
        for (slot, value) in [
            (&mut self.auth.tokens_file, &f.tokens_file),
            (&mut self.auth.admin_token_file, &f.admin_token_file),
            (&mut self.auth.peer_token_file, &f.peer_token_file),
            (&mut self.auth.tls_cert, &f.tls_cert),
            (&mut self.auth.tls_key, &f.tls_key),
            (&mut self.auth.tls_ca, &f.tls_ca),
        ] {
            if value.is_some() {
                *slot = value.clone();
            }
        }
        set(
            &mut self.limits.max_concurrent_scans,
            &f.max_concurrent_scans,
        );
        set(&mut self.limits.scan_queue_timeout, &f.scan_queue_timeout);
        set(&mut self.limits.request_timeout, &f.request_timeout);
        set(&mut self.limits.stall_timeout, &f.stall_timeout);
        set(&mut self.limits.max_filter_len, &f.max_filter_len);
        set(&mut self.limits.batch_rows, &f.batch_rows);
        set(&mut self.limits.max_objects, &f.max_objects);
        set(
            &mut self.limits.max_concurrent_plans,
            &f.max_concurrent_plans,
        );
        set(&mut self.miss.policy, &f.miss_policy);
        set(&mut self.miss.presign_expiry, &f.presign_expiry);
        set(&mut self.miss.presign_min_bytes, &f.presign_min_bytes);
        if f.otlp_endpoint.is_some() {
            self.telemetry.otlp_endpoint = f.otlp_endpoint.clone();
        }
        if !f.sources.is_empty() {
            self.sources = f
                .sources
                .iter()
                .map(|spec| {
                    let (name, url) = spec
                        .split_once('=')
                        .ok_or_else(|| invalid("source", format!("`{spec}` is not NAME=URL")))?;
                    Ok(SourceConfig::new(name.trim(), url.trim()))
                })
                .collect::<Result<_, ConfigError>>()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn flags_override_the_file() {
        let flags = Flags::parse_from([
            "quiver-server",
            "--cache-memory",
            "256MiB",
            "--source",
            "lake=s3://bucket/prefix/",
            "--listen",
            "127.0.0.1:6000",
            "--stall-timeout",
            "5s",
        ]);
        let c = Config::load(&flags).unwrap();
        assert_eq!(c.cache.memory, ByteSize(256 << 20));
        assert_eq!(c.limits.stall_timeout, Span(Duration::from_secs(5)));
        assert_eq!(c.sources[0].name, "lake");
        assert_eq!(c.advertise_url(), "grpc://127.0.0.1:6000");
        let bad = Flags::parse_from(["quiver-server", "--source", "no-equals-sign"]);
        assert!(Config::load(&bad).is_err());
    }
}
