//! The command line: every flag, the `QUIVER_*` variable each also reads,
//! and how the given ones override the file's settings.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::error::{invalid, ConfigError};
use super::sources::SourceConfig;
use super::values::{ByteSize, Eviction, MissPolicy, Span};
use super::Config;

/// Declares the command line once. Each entry is a flag's help (its doc
/// comment), its clap arguments (the flag and its `QUIVER_*` variable), its
/// field and type, and, after `=>`, the setting it overrides. `Flags` and
/// the writing of every given flag over its setting both come from the one
/// list, so no flag is declared without being applied or applied under
/// another name; the few flags with rules of their own have no `=>` and are
/// applied in [`Config::apply`].
macro_rules! flags {
    ($(
        $(#[doc = $doc:literal])*
        [$($arg:tt)*] $field:ident: $ty:ty $(=> $($path:ident).+)?;
    )*) => {
        /// Command-line flags; each also reads `QUIVER_<FLAG>` from the
        /// environment and, when given, wins over the config file.
        #[derive(Debug, Default, Parser)]
        #[command(
            name = "quiver-server",
            version,
            about = "One Quiver cache node: Arrow Flight over a hybrid memory/NVMe cache of Parquet data"
        )]
        pub struct Flags {
            $(
                $(#[doc = $doc])*
                #[arg($($arg)*)]
                pub $field: $ty,
            )*
        }

        impl Flags {
            /// Writes every given flag that names a setting over it.
            fn override_settings(&self, config: &mut Config) {
                $($(Override::write(&self.$field, &mut config.$($path).+);)?)*
            }
        }
    };
}

/// How a given flag writes the setting it names: a setting with a default
/// takes the value, an optional one becomes set.
trait Override<T> {
    fn write(&self, setting: &mut T);
}

impl<T: Clone> Override<T> for Option<T> {
    fn write(&self, setting: &mut T) {
        if let Some(v) = self {
            *setting = v.clone();
        }
    }
}

impl<T: Clone> Override<Option<T>> for Option<T> {
    fn write(&self, setting: &mut Option<T>) {
        if let Some(v) = self {
            *setting = Some(v.clone());
        }
    }
}

flags! {
    /// TOML configuration file.
    [long, env = "QUIVER_CONFIG"] config: Option<PathBuf>;
    /// Flight (and Flight SQL) listen address.
    [long, env = "QUIVER_LISTEN"] listen: Option<SocketAddr> => server.listen;
    /// Admin HTTP listen address (/metrics, /health, /ready, the status page).
    [long, env = "QUIVER_ADMIN_LISTEN"] admin_listen: Option<SocketAddr> => server.admin_listen;
    /// URL that clients use to reach this node.
    [long, env = "QUIVER_ADVERTISE"] advertise: Option<String> => server.advertise;
    /// Listen beyond loopback although no tokens are configured (a trusted
    /// network only).
    [long, env = "QUIVER_INSECURE"] insecure: bool;
    /// Memory tier capacity, e.g. 1GiB.
    [long, env = "QUIVER_CACHE_MEMORY"] cache_memory: Option<ByteSize> => cache.memory;
    /// Disk tier capacity, e.g. 10GiB; 0 for memory only (default: a
    /// quarter of the disk's free space, at most 10GiB).
    [long, env = "QUIVER_CACHE_DISK"] cache_disk: Option<ByteSize> => cache.disk;
    /// Directory of the disk tier.
    [long, env = "QUIVER_CACHE_DISK_DIR"] cache_disk_dir: Option<PathBuf> => cache.disk_dir;
    /// Chunk size of cached byte ranges, e.g. 1MiB.
    [long, env = "QUIVER_CACHE_CHUNK"] cache_chunk: Option<ByteSize> => cache.chunk;
    /// Eviction policy: lru, lfu, s3fifo, fifo or sieve.
    [long, env = "QUIVER_CACHE_EVICTION"] cache_eviction: Option<Eviction> => cache.eviction;
    /// Memory for parsed Parquet footers and page indexes.
    [long, env = "QUIVER_CACHE_METADATA"] cache_metadata: Option<ByteSize> => cache.metadata;
    /// Hot tier of decoded Arrow arrays, e.g. 1GiB; 0 turns it off.
    [long, env = "QUIVER_CACHE_HOT"] cache_hot: Option<ByteSize> => cache.hot;
    /// Append one JSON line per scan read to this file (a trace for
    /// `quiver-bench policies`).
    [long, env = "QUIVER_CACHE_ACCESS_LOG"] cache_access_log: Option<PathBuf> => cache.access_log;
    /// A source as NAME=URL (repeatable; replaces the file's sources).
    [long = "source", env = "QUIVER_SOURCE", value_delimiter = ','] sources: Vec<String>;
    /// This node's id in the cluster topology.
    [long, env = "QUIVER_NODE_ID"] node_id: Option<String> => cluster.node_id;
    /// The topology document: s3://bucket/key or a local path.
    [long, env = "QUIVER_TOPOLOGY"] topology: Option<String> => cluster.topology;
    /// How often the topology is re-read (e.g. 2s).
    [long, env = "QUIVER_TOPOLOGY_RELOAD"] topology_reload: Option<Span> => cluster.reload;
    /// File of bearer tokens, one per line; enables auth.
    [long, env = "QUIVER_TOKENS_FILE"] tokens_file: Option<PathBuf> => auth.tokens_file;
    /// File holding the admin token for prefetch and evict.
    [long, env = "QUIVER_ADMIN_TOKEN_FILE"] admin_token_file: Option<PathBuf> => auth.admin_token_file;
    /// File holding the token nodes present to each other (hand-off).
    [long, env = "QUIVER_PEER_TOKEN_FILE"] peer_token_file: Option<PathBuf> => auth.peer_token_file;
    /// PEM certificate chain; with --tls-key, serves TLS.
    [long, env = "QUIVER_TLS_CERT"] tls_cert: Option<PathBuf> => auth.tls_cert;
    /// PEM private key.
    [long, env = "QUIVER_TLS_KEY"] tls_key: Option<PathBuf> => auth.tls_key;
    /// PEM CA certificates trusted when calling TLS nodes (default: those of --tls-cert).
    [long, env = "QUIVER_TLS_CA"] tls_ca: Option<PathBuf> => auth.tls_ca;
    /// Scans running at once; more wait for a slot.
    [long, env = "QUIVER_MAX_CONCURRENT_SCANS"] max_concurrent_scans: Option<usize> => limits.max_concurrent_scans;
    /// Longest a scan waits for a slot before ResourceExhausted, e.g. 30s.
    [long, env = "QUIVER_SCAN_QUEUE_TIMEOUT"] scan_queue_timeout: Option<Span> => limits.scan_queue_timeout;
    /// Longest a single request may run, e.g. 10m.
    [long, env = "QUIVER_REQUEST_TIMEOUT"] request_timeout: Option<Span> => limits.request_timeout;
    /// Longest a scan waits for a client that stopped reading, e.g. 30s.
    [long, env = "QUIVER_STALL_TIMEOUT"] stall_timeout: Option<Span> => limits.stall_timeout;
    /// Longest filter accepted, in bytes.
    [long, env = "QUIVER_MAX_FILTER_LEN"] max_filter_len: Option<usize> => limits.max_filter_len;
    /// Rows per record batch sent to clients.
    [long, env = "QUIVER_BATCH_ROWS"] batch_rows: Option<usize> => limits.batch_rows;
    /// Most objects one request may name through a prefix.
    [long, env = "QUIVER_MAX_OBJECTS"] max_objects: Option<usize> => limits.max_objects;
    /// Planning calls running at once before ResourceExhausted.
    [long, env = "QUIVER_MAX_CONCURRENT_PLANS"] max_concurrent_plans: Option<usize> => limits.max_concurrent_plans;
    /// What a cold scan does: read-through, presign or auto.
    [long, env = "QUIVER_MISS_POLICY"] miss_policy: Option<MissPolicy> => miss.policy;
    /// How long a pre-signed URL works, e.g. 15m (at most 7 days).
    [long, env = "QUIVER_PRESIGN_EXPIRY"] presign_expiry: Option<Span> => miss.presign_expiry;
    /// With `auto`, the smallest cold object handed out as a URL, e.g. 8MiB.
    [long, env = "QUIVER_PRESIGN_MIN_BYTES"] presign_min_bytes: Option<ByteSize> => miss.presign_min_bytes;
    /// With no source configured: the directory served as source `local`.
    [long, env = "QUIVER_DATA_DIR", default_value = "./data"] data_dir: PathBuf;
    /// TPC-H scale factor of the sample written to an empty data directory.
    [long, env = "QUIVER_SAMPLE_SCALE", default_value_t = 0.01] sample_scale: f64;
    /// Log format: text or json.
    [long, env = "QUIVER_LOG_FORMAT", default_value = "text"] log_format: String;
    /// Export traces to this OTLP/gRPC collector, e.g. http://127.0.0.1:4317.
    [long, env = "QUIVER_OTLP_ENDPOINT"] otlp_endpoint: Option<String> => telemetry.otlp_endpoint;
}

impl Config {
    /// Writes every flag or variable that was given over the setting it
    /// names, then the flags with rules of their own.
    pub(super) fn apply(&mut self, f: &Flags) -> Result<(), ConfigError> {
        f.override_settings(self);
        self.server.insecure |= f.insecure;
        // A disk tier sized by a flag is no longer sized automatically.
        self.cache.disk_auto &= f.cache_disk.is_none();
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

    /// Every flag that names a setting writes that one: given all at once,
    /// each setting holds its flag's value.
    #[test]
    fn each_flag_writes_its_own_setting() {
        let flags = Flags::parse_from([
            "quiver-server",
            "--admin-listen=127.0.0.1:6001",
            "--advertise=grpc://n1:6000",
            "--cache-disk=2GiB",
            "--cache-disk-dir=/d",
            "--cache-chunk=2MiB",
            "--cache-eviction=sieve",
            "--cache-metadata=3MiB",
            "--cache-hot=4MiB",
            "--cache-access-log=/log",
            "--node-id=n1",
            "--topology=/t.json",
            "--topology-reload=3s",
            "--tokens-file=/tok",
            "--admin-token-file=/adm",
            "--peer-token-file=/peer",
            "--tls-cert=/c",
            "--tls-key=/k",
            "--tls-ca=/ca",
            "--max-concurrent-scans=5",
            "--scan-queue-timeout=6s",
            "--request-timeout=7s",
            "--max-filter-len=99",
            "--batch-rows=123",
            "--max-objects=11",
            "--max-concurrent-plans=12",
            "--miss-policy=presign",
            "--presign-expiry=9m",
            "--presign-min-bytes=1MiB",
            "--otlp-endpoint=http://h:4317",
        ]);
        let mut c = Config::default();
        c.apply(&flags).unwrap();
        let secs = |n| Span(Duration::from_secs(n));
        let path = |p: &str| Some(PathBuf::from(p));
        assert_eq!(c.server.admin_listen, "127.0.0.1:6001".parse().unwrap());
        assert_eq!(c.server.advertise.as_deref(), Some("grpc://n1:6000"));
        assert_eq!(
            (c.cache.disk, c.cache.disk_auto),
            (ByteSize(2 << 30), false)
        );
        assert_eq!(c.cache.disk_dir, PathBuf::from("/d"));
        assert_eq!(c.cache.chunk, ByteSize(2 << 20));
        assert_eq!(c.cache.eviction, Eviction::Sieve);
        assert_eq!(
            (c.cache.metadata, c.cache.hot),
            (ByteSize(3 << 20), ByteSize(4 << 20))
        );
        assert_eq!(c.cache.access_log, path("/log"));
        assert_eq!(c.cluster.node_id.as_deref(), Some("n1"));
        assert_eq!(c.cluster.topology.as_deref(), Some("/t.json"));
        assert_eq!(c.cluster.reload, secs(3));
        let a = &c.auth;
        assert_eq!(
            [
                &a.tokens_file,
                &a.admin_token_file,
                &a.peer_token_file,
                &a.tls_cert,
                &a.tls_key,
                &a.tls_ca
            ],
            [
                &path("/tok"),
                &path("/adm"),
                &path("/peer"),
                &path("/c"),
                &path("/k"),
                &path("/ca")
            ]
        );
        let l = &c.limits;
        assert_eq!(
            (
                l.max_concurrent_scans,
                l.scan_queue_timeout,
                l.request_timeout
            ),
            (5, secs(6), secs(7))
        );
        assert_eq!(
            (
                l.max_filter_len,
                l.batch_rows,
                l.max_objects,
                l.max_concurrent_plans
            ),
            (99, 123, 11, 12)
        );
        assert_eq!(c.miss.policy, MissPolicy::Presign);
        assert_eq!(
            (c.miss.presign_expiry, c.miss.presign_min_bytes),
            (secs(540), ByteSize(1 << 20))
        );
        assert_eq!(c.telemetry.otlp_endpoint.as_deref(), Some("http://h:4317"));
    }
}
