//! Node configuration: a TOML file, overridden field by field by command-line
//! flags and `QUIVER_*` environment variables, then validated once at start-up
//! so that a bad setting stops the node with one clear sentence instead of
//! failing a request later.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Deserializer};

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// A byte size written as `1GiB`, `512MiB`, `8MB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| ByteSize(b.as_u64()))
            .map_err(|_| format!("`{s}` is not a size (try 512MiB or 1GiB)"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written as `30s`, `15m`, `1h` or `0s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(Span)
            .map_err(|_| format!("`{s}` is not a duration (try 30s, 15m or 1h)"))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Cache eviction policies that foyer offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Eviction {
    Lru,
    Lfu,
    S3fifo,
    Fifo,
    Sieve,
}

impl Eviction {
    /// Every policy, in the order the docs list them.
    pub const ALL: [Eviction; 5] = [
        Eviction::Lru,
        Eviction::Lfu,
        Eviction::S3fifo,
        Eviction::Fifo,
        Eviction::Sieve,
    ];

    /// The name the configuration spells it with.
    pub fn name(self) -> &'static str {
        match self {
            Eviction::Lru => "lru",
            Eviction::Lfu => "lfu",
            Eviction::S3fifo => "s3fifo",
            Eviction::Fifo => "fifo",
            Eviction::Sieve => "sieve",
        }
    }
}

impl FromStr for Eviction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lru" => Ok(Eviction::Lru),
            "lfu" => Ok(Eviction::Lfu),
            "s3fifo" => Ok(Eviction::S3fifo),
            "fifo" => Ok(Eviction::Fifo),
            "sieve" => Ok(Eviction::Sieve),
            other => Err(format!(
                "`{other}` is not an eviction policy (lru, lfu, s3fifo, fifo or sieve)"
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The URL clients and peers use for this node; derived from `listen`
    /// when absent.
    pub advertise: Option<String>,
    /// Serve Flight beyond loopback without tokens. Off by default, like
    /// Redis's protected mode: a node without tokens on a public address
    /// would let anyone read the lake with the node's credentials.
    pub insecure: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            advertise: None,
            insecure: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub memory: ByteSize,
    /// Disk tier capacity; `0` runs memory-only. With `disk_auto`, the
    /// most the automatic size may take.
    pub disk: ByteSize,
    pub disk_dir: PathBuf,
    /// No file, flag or variable gave `disk`: the node sizes its disk tier
    /// at start-up to a quarter of the space its disk can spare, at most
    /// `disk` (`cache::disk_budget`). Set by [`Config::load`] and
    /// [`Config::from_toml`]; a configuration built in code keeps `disk`.
    #[serde(skip)]
    pub disk_auto: bool,
    pub chunk: ByteSize,
    pub eviction: Eviction,
    /// Memory kept for parsed Parquet footers and page indexes.
    pub metadata: ByteSize,
    /// Capacity of the hot tier of decoded Arrow arrays, above the memory
    /// tier; `0` turns it off.
    pub hot: ByteSize,
    /// Where to append one JSON line per read scans make (the trace
    /// `quiver-bench policies` replays); absent: no log.
    pub access_log: Option<PathBuf>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory: ByteSize(1 << 30),
            disk: ByteSize(10 << 30),
            disk_dir: PathBuf::from("./.quiver-cache"),
            disk_auto: false,
            chunk: ByteSize(1 << 20),
            // The fewest origin bytes and the lowest latency of the live
            // A/B of `quiver-bench policies` (docs/benchmarks.md,
            // "Eviction policies").
            eviction: Eviction::Lru,
            metadata: ByteSize(128 << 20),
            hot: ByteSize(1 << 30),
            access_log: None,
        }
    }
}

#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    /// `s3://bucket/prefix/` or `file:///dir/`.
    pub url: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// How long a LIST or HEAD answer (ETag, size) is trusted.
    #[serde(default = "default_validate")]
    pub validate: Span,
    /// Longest wait for a connection to the origin.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Span,
    /// Longest one origin request may take, body included.
    #[serde(default = "default_origin_timeout")]
    pub request_timeout: Span,
    /// Retries of a failed origin request (server errors, timeouts, resets),
    /// with exponential backoff from 100 ms up to 5 s.
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// Origin requests in a row that fail (after their retries) before the
    /// source's circuit opens and misses fail fast; 0 never opens it.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open circuit fails misses at once before one request
    /// probes the origin again.
    #[serde(default = "default_breaker_cooldown")]
    pub breaker_cooldown: Span,
    /// How long an object the origin said does not exist is remembered, so
    /// that repeated requests for it cost no origin request.
    #[serde(default = "default_missing_ttl")]
    pub missing_ttl: Span,
    /// Least time between two origin HEADs of one object forced by clients
    /// (a ticket naming an ETag the node has not seen).
    #[serde(default = "default_revalidate_interval")]
    pub revalidate_interval: Span,
}

fn default_breaker_failures() -> u32 {
    5
}

fn default_breaker_cooldown() -> Span {
    Span(Duration::from_secs(10))
}

fn default_missing_ttl() -> Span {
    Span(Duration::from_secs(5))
}

fn default_revalidate_interval() -> Span {
    Span(Duration::from_secs(1))
}

fn default_connect_timeout() -> Span {
    Span(Duration::from_secs(5))
}

fn default_origin_timeout() -> Span {
    Span(Duration::from_secs(60))
}

fn default_retries() -> usize {
    3
}

fn default_validate() -> Span {
    Span(Duration::from_secs(30))
}

/// Written by hand so that a logged or printed config never shows the
/// secret key.
impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "******"),
            )
            .field("validate", &self.validate)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retries", &self.retries)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("missing_ttl", &self.missing_ttl)
            .field("revalidate_interval", &self.revalidate_interval)
            .finish()
    }
}

impl SourceConfig {
    pub fn new(name: &str, url: &str) -> Self {
        SourceConfig {
            name: name.to_string(),
            url: url.to_string(),
            region: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            validate: default_validate(),
            connect_timeout: default_connect_timeout(),
            request_timeout: default_origin_timeout(),
            retries: default_retries(),
            breaker_failures: default_breaker_failures(),
            breaker_cooldown: default_breaker_cooldown(),
            missing_ttl: default_missing_ttl(),
            revalidate_interval: default_revalidate_interval(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub node_id: Option<String>,
    /// Where the topology document lives: `s3://bucket/key` or a local
    /// path. Absent: the node runs alone and owns every slot.
    pub topology: Option<String>,
    /// The source whose endpoint, region and keys reach an `s3://`
    /// topology; default: a source in the same bucket, else the AWS
    /// environment.
    pub topology_source: Option<String>,
    /// How often the topology is re-read.
    pub reload: Span,
    /// How long a node keeps serving slots it gave up, while their new
    /// owner warms from its cache.
    pub handoff_grace: Span,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: None,
            topology: None,
            topology_source: None,
            reload: Span(Duration::from_secs(2)),
            handoff_grace: Span(Duration::from_secs(60)),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub tokens_file: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    /// The token every node of a cluster presents to the others for
    /// hand-off and warm-ups, and the only one (with the admin token) those
    /// actions accept. Reader tokens never pass for it.
    pub peer_token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA certificates this node trusts when it calls a `grpc+tls://` node
    /// (a peer, or itself for Flight SQL scans); default: the certificates of
    /// `tls_cert` (its issuers, or itself when it is self-signed).
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Scans running at once. Each holds about one row group of the
    /// columns it reads in memory, so this bounds the node's scan memory;
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

/// A table declared in the config, beside the discovered ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlTableConfig {
    /// The source (catalog) it belongs to.
    pub source: String,
    #[serde(default = "default_sql_schema")]
    pub schema: String,
    pub name: String,
    /// An object key or a prefix ending in `/` inside the source.
    pub path: String,
}

fn default_sql_schema() -> String {
    "default".into()
}

/// Flight SQL on the Flight port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlConfig {
    /// Serve Flight SQL beside Quiver's own protocol.
    pub enabled: bool,
    /// Memory one query may use for joins, sorts and aggregates; a query
    /// over it fails with ResourceExhausted.
    pub query_memory: ByteSize,
    /// SQL queries running at once.
    pub max_queries: usize,
    /// Prepared statements held at once.
    pub max_prepared: usize,
    /// How long a catalog listing is trusted before the lake is listed again.
    pub refresh: Span,
    #[serde(rename = "table")]
    pub tables: Vec<SqlTableConfig>,
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            enabled: true,
            query_memory: ByteSize(1 << 30),
            max_queries: 16,
            max_prepared: 1024,
            refresh: Span(Duration::from_secs(60)),
            tables: Vec::new(),
        }
    }
}

/// What a node does when a scan needs bytes it does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissPolicy {
    /// The owner fetches from the origin, fills the cache and streams.
    ReadThrough,
    /// A cold object goes to a client that accepts URLs as a pre-signed GET
    /// URL, and the owner warms it in the background.
    Presign,
    /// As `presign`, for cold objects larger than `presign_min_bytes`.
    Auto,
}

impl FromStr for MissPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read-through" => Ok(MissPolicy::ReadThrough),
            "presign" => Ok(MissPolicy::Presign),
            "auto" => Ok(MissPolicy::Auto),
            other => Err(format!(
                "`{other}` is not a miss policy (read-through, presign or auto)"
            )),
        }
    }
}

/// Most origin fetches warming may hold: half of the node's 32
/// (`cache::MAX_ORIGIN_FETCHES`), so demand reads always keep the other half.
pub const MAX_WARM_FETCHES: usize = 16;

/// The largest `cache.chunk`: disk entries must fit in one 16 MiB block of
/// the disk tier, and peers size their messages by it.
pub const MAX_CHUNK: u64 = 8 << 20;

/// Longest life S3 allows a pre-signed URL (SigV4): seven days.
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The miss policy: pre-signed URLs for cold objects, and the background
/// warming that follows each one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MissConfig {
    pub policy: MissPolicy,
    /// How long a pre-signed URL works.
    pub presign_expiry: Span,
    /// With `auto`, objects up to this size are read through even when cold:
    /// a small object costs less through the node than a second connection.
    pub presign_min_bytes: ByteSize,
    /// Warm-ups waiting at once; one more is dropped (and counted).
    pub warm_queue: usize,
    /// Origin fetches warming may hold at once, out of the node's 32: the
    /// rest always stay for demand reads.
    pub warm_fetches: usize,
}

impl Default for MissConfig {
    fn default() -> Self {
        MissConfig {
            policy: MissPolicy::Auto,
            presign_expiry: Span(Duration::from_secs(15 * 60)),
            presign_min_bytes: ByteSize(8 << 20),
            warm_queue: 256,
            warm_fetches: 4,
        }
    }
}

/// Trace export (docs/operations.md, "Tracing"): off unless an endpoint
/// is set, so a node never dials a collector nobody asked for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// An OpenTelemetry collector's OTLP/gRPC endpoint, e.g.
    /// `http://127.0.0.1:4317` (`https://` for TLS with the system's roots).
    pub otlp_endpoint: Option<String>,
}

/// The whole node configuration, in the shape of the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub cache: CacheConfig,
    #[serde(rename = "source")]
    pub sources: Vec<SourceConfig>,
    pub cluster: ClusterConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub sql: SqlConfig,
    pub miss: MissConfig,
    pub telemetry: TelemetryConfig,
}

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
    /// Reads the file named by the flags (if any), applies the flags over it
    /// and validates the result.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let mut config = match &flags.config {
            Some(path) => Config::from_file(path)?,
            None => Config {
                cache: CacheConfig {
                    disk_auto: true,
                    ..CacheConfig::default()
                },
                ..Config::default()
            },
        };
        config.apply(flags)?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        let mut config: Config = toml::from_str(text).map_err(|e| e.message().to_string())?;
        // Whether `cache.disk` was written, which the typed parse (with
        // its defaults) cannot tell.
        let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
        config.cache.disk_auto = table
            .get("cache")
            .and_then(|cache| cache.get("disk"))
            .is_none();
        Ok(config)
    }

    fn apply(&mut self, f: &Flags) -> Result<(), ConfigError> {
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

    /// Checks everything that can be checked without touching the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let chunk = self.cache.chunk.0;
        // Disk entries must fit in one 16 MiB block of the disk tier.
        if !(4096..=MAX_CHUNK).contains(&chunk) || !chunk.is_power_of_two() {
            return Err(invalid(
                "cache.chunk",
                "must be a power of two between 4KiB and 8MiB",
            ));
        }
        // The memory tier is split into 8 shards; a shard smaller than a
        // chunk would evict every entry the moment it is inserted.
        if self.cache.memory.0 < 8 * chunk {
            return Err(invalid("cache.memory", "must hold at least 8 chunks"));
        }
        // Each of the hot tier's 8 shards must hold a typical column chunk.
        if self.cache.hot.0 != 0 && self.cache.hot.0 < (64 << 20) {
            return Err(invalid("cache.hot", "must be 0 (off) or at least 64MiB"));
        }
        if self.cache.disk.0 != 0 && self.cache.disk.0 < (64 << 20) {
            return Err(invalid(
                "cache.disk",
                "must be 0 (memory only) or at least 64MiB",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.sources {
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(
                    "source.name",
                    format!("`{}` must be non-empty letters, digits, _ or -", s.name),
                ));
            }
            if !names.insert(s.name.as_str()) {
                return Err(invalid(
                    "source.name",
                    format!("`{}` is configured twice", s.name),
                ));
            }
            if s.connect_timeout.0.is_zero() || s.request_timeout.0.is_zero() {
                return Err(invalid(
                    "source.request_timeout",
                    format!(
                        "source {}: connect_timeout and request_timeout must be above zero",
                        s.name
                    ),
                ));
            }
            if s.retries > 10 {
                return Err(invalid(
                    "source.retries",
                    format!("source {}: at most 10 retries", s.name),
                ));
            }
            if s.breaker_failures > 0 && s.breaker_cooldown.0.is_zero() {
                return Err(invalid(
                    "source.breaker_cooldown",
                    format!(
                        "source {}: must be above zero while breaker_failures is set",
                        s.name
                    ),
                ));
            }
            if s.missing_ttl.0 > s.validate.0.max(Duration::from_secs(60)) {
                return Err(invalid(
                    "source.missing_ttl",
                    format!(
                        "source {}: at most validate or 1m, so a new object shows up soon",
                        s.name
                    ),
                ));
            }
            let url = url::Url::parse(&s.url).map_err(|e| {
                invalid(
                    "source.url",
                    format!("`{}` of source {}: {e}", s.url, s.name),
                )
            })?;
            if !matches!(url.scheme(), "s3" | "file") {
                return Err(invalid(
                    "source.url",
                    format!(
                        "`{}` of source {}: only s3:// and file:// are supported",
                        s.url, s.name
                    ),
                ));
            }
            if url.scheme() == "s3" && url.host_str().unwrap_or("").is_empty() {
                return Err(invalid(
                    "source.url",
                    format!("`{}` of source {} names no bucket", s.url, s.name),
                ));
            }
        }
        if self.auth.tls_cert.is_some() != self.auth.tls_key.is_some() {
            return Err(invalid(
                "auth.tls_cert",
                "tls_cert and tls_key must be set together",
            ));
        }
        if self.limits.max_concurrent_scans == 0 {
            return Err(invalid("limits.max_concurrent_scans", "must be at least 1"));
        }
        if self.limits.max_concurrent_plans == 0 {
            return Err(invalid("limits.max_concurrent_plans", "must be at least 1"));
        }
        if self.limits.max_objects == 0 {
            return Err(invalid("limits.max_objects", "must be at least 1"));
        }
        if self.limits.batch_rows == 0 {
            return Err(invalid("limits.batch_rows", "must be at least 1"));
        }
        if self.limits.request_timeout.0.is_zero() {
            return Err(invalid("limits.request_timeout", "must be above zero"));
        }
        if self.limits.stall_timeout.0.is_zero() {
            return Err(invalid("limits.stall_timeout", "must be above zero"));
        }
        if self.cluster.topology.is_some()
            && self.auth.tokens_file.is_some()
            && self.auth.peer_token_file.is_none()
            && self.auth.admin_token_file.is_none()
        {
            return Err(invalid(
                "auth.peer_token_file",
                "a cluster whose nodes take reader tokens needs a peer token (or an admin token) for hand-off between nodes; \
                 reader tokens are never accepted for it. Set auth.peer_token_file (--peer-token-file) to the same file on every node",
            ));
        }
        let tokens = self.auth.tokens_file.is_some() || self.auth.admin_token_file.is_some();
        if !tokens && !self.server.insecure && !self.server.listen.ip().is_loopback() {
            return Err(invalid(
                "server.listen",
                format!(
                    "{} is reachable from the network but no tokens are configured, so anyone there could read the lake; \
                     set auth.tokens_file (--tokens-file), listen on 127.0.0.1, or pass --insecure (server.insecure = true) on a trusted network",
                    self.server.listen
                ),
            ));
        }
        let expiry = self.miss.presign_expiry.0;
        if expiry < Duration::from_secs(1) || expiry > MAX_PRESIGN_EXPIRY {
            return Err(invalid(
                "miss.presign_expiry",
                "must be between 1s and 7 days (the longest S3 accepts)",
            ));
        }
        if self.miss.warm_queue == 0 {
            return Err(invalid("miss.warm_queue", "must be at least 1"));
        }
        if !(1..=MAX_WARM_FETCHES).contains(&self.miss.warm_fetches) {
            return Err(invalid(
                "miss.warm_fetches",
                format!(
                    "must be between 1 and {MAX_WARM_FETCHES}, so demand reads keep most of the origin budget"
                ),
            ));
        }
        if self.sql.query_memory.0 < (16 << 20) {
            return Err(invalid("sql.query_memory", "must be at least 16MiB"));
        }
        if self.sql.max_queries == 0 || self.sql.max_prepared == 0 {
            return Err(invalid(
                "sql.max_queries",
                "max_queries and max_prepared must be at least 1",
            ));
        }
        if self.sql.refresh.0 < Duration::from_secs(1) {
            return Err(invalid("sql.refresh", "must be at least 1s"));
        }
        for t in &self.sql.tables {
            if !self.sources.iter().any(|s| s.name == t.source) {
                return Err(invalid(
                    "sql.table.source",
                    format!(
                        "table {} names source `{}`, which is not configured",
                        t.name, t.source
                    ),
                ));
            }
            if t.name.is_empty() || t.schema.is_empty() {
                return Err(invalid(
                    "sql.table.name",
                    "name and schema must not be empty",
                ));
            }
        }
        if self.cluster.reload.0 < Duration::from_millis(100) {
            return Err(invalid("cluster.reload", "must be at least 100ms"));
        }
        if let Some(t) = &self.cluster.topology {
            if t.is_empty() {
                return Err(invalid("cluster.topology", "must not be empty"));
            }
            if let Some(name) = &self.cluster.topology_source {
                if !self.sources.iter().any(|s| &s.name == name) {
                    return Err(invalid(
                        "cluster.topology_source",
                        format!("`{name}` is not a configured source"),
                    ));
                }
            }
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint {
            let url = url::Url::parse(endpoint)
                .map_err(|e| invalid("telemetry.otlp_endpoint", format!("`{endpoint}`: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty)
            {
                return Err(invalid(
                    "telemetry.otlp_endpoint",
                    format!("`{endpoint}` is not an OTLP/gRPC endpoint; use http://host:4317 or https://host:4317"),
                ));
            }
        }
        Ok(())
    }

    /// This node's id: the configured one, or its listen address.
    pub fn node_id(&self) -> String {
        self.cluster
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{}", self.server.listen.port()))
    }

    pub fn advertise_url(&self) -> String {
        self.server.advertise.clone().unwrap_or_else(|| {
            let scheme = if self.auth.tls_cert.is_some() {
                "grpc+tls"
            } else {
                "grpc"
            };
            format!("{scheme}://{}", self.server.listen)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_tokens_means_loopback_only_unless_insecure() {
        let mut c = Config {
            sources: vec![SourceConfig::new("a", "file:///tmp/")],
            ..Default::default()
        };
        c.server.listen = "0.0.0.0:50051".parse().unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("--insecure") && err.contains("tokens"),
            "{err}"
        );
        c.server.insecure = true;
        c.validate().unwrap();
        c.server.insecure = false;
        c.auth.tokens_file = Some(PathBuf::from("/etc/quiver/tokens"));
        c.validate().unwrap();
        c.auth.tokens_file = None;
        c.server.listen = "[::1]:50051".parse().unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn a_cluster_with_reader_tokens_needs_a_peer_token() {
        let mut c = Config {
            sources: vec![SourceConfig::new("a", "file:///tmp/")],
            ..Default::default()
        };
        c.auth.tokens_file = Some(PathBuf::from("/etc/quiver/tokens"));
        c.validate().unwrap();
        c.cluster.topology = Some("/var/lib/quiver/topology.json".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("peer_token_file"), "{err}");
        c.auth.peer_token_file = Some(PathBuf::from("/etc/quiver/peer-token"));
        c.validate().unwrap();
        c.auth.peer_token_file = None;
        c.auth.admin_token_file = Some(PathBuf::from("/etc/quiver/admin-token"));
        c.validate().unwrap();
    }

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
[server]
listen = "127.0.0.1:50051"
admin_listen = "127.0.0.1:9090"
advertise = "grpc://127.0.0.1:50051"

[cache]
memory = "1GiB"
disk = "10GiB"
disk_dir = "./.quiver-cache"
chunk = "1MiB"
eviction = "lru"

[[source]]
name = "lake"
url = "s3://bucket/warehouse/"
region = "us-east-1"
endpoint = "http://127.0.0.1:9000"
validate = "30s"

[cluster]
node_id = "node-1"

[miss]
policy = "auto"
presign_expiry = "15m"
presign_min_bytes = "8MiB"

[limits]
request_timeout = "2m"
stall_timeout = "45s"
"#;
        let c = Config::from_toml(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.cache.memory, ByteSize(1 << 30));
        assert_eq!(c.cache.eviction, Eviction::Lru);
        assert_eq!(c.sources[0].validate, Span(Duration::from_secs(30)));
        assert_eq!(c.limits.request_timeout, Span(Duration::from_secs(120)));
        assert_eq!(c.limits.stall_timeout, Span(Duration::from_secs(45)));
        assert_eq!(c.node_id(), "node-1");
        assert_eq!(c.miss.policy, MissPolicy::Auto);
        assert_eq!(c.miss.presign_expiry, Span(Duration::from_secs(900)));
        assert_eq!(c.miss.presign_min_bytes, ByteSize(8 << 20));
    }

    #[test]
    fn the_disk_tier_is_sized_automatically_only_when_nothing_sets_it() {
        let unset = Config::from_toml("[cache]\nmemory = \"1GiB\"").unwrap();
        assert!(unset.cache.disk_auto);
        let set = Config::from_toml("[cache]\ndisk = \"2GiB\"").unwrap();
        assert!(!set.cache.disk_auto);
        assert_eq!(set.cache.disk, ByteSize(2 << 30));
        assert!(
            !Config::from_toml("[cache]\ndisk = 0")
                .unwrap()
                .cache
                .disk_auto
        );
        assert!(!Config::default().cache.disk_auto);

        let mut flagged = unset.clone();
        flagged
            .apply(&Flags {
                cache_disk: Some(ByteSize(1 << 30)),
                ..Flags::default()
            })
            .unwrap();
        assert!(!flagged.cache.disk_auto);
        let mut other_flag = unset;
        other_flag
            .apply(&Flags {
                cache_memory: Some(ByteSize(1 << 30)),
                ..Flags::default()
            })
            .unwrap();
        assert!(other_flag.cache.disk_auto);
        let loaded = Config::load(&Flags {
            sources: vec!["a=file:///tmp/".into()],
            ..Flags::default()
        })
        .unwrap();
        assert!(loaded.cache.disk_auto);
    }

    #[test]
    fn debug_output_hides_the_secret_key() {
        let mut s = SourceConfig::new("lake", "s3://bucket/");
        s.access_key_id = Some("AKIDEXAMPLE".into());
        s.secret_access_key = Some("wJalrXUtnFEMI-very-secret".into());
        let c = Config {
            sources: vec![s],
            ..Default::default()
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(!shown.contains("very-secret"), "{shown}");
    }

    #[test]
    fn miss_settings_are_checked() {
        let c = Config::from_toml("[miss]\npolicy = \"read-through\"").unwrap();
        assert_eq!(c.miss.policy, MissPolicy::ReadThrough);
        let err = Config::from_toml("[miss]\npolicy = \"sometimes\"").unwrap_err();
        assert!(err.contains("sometimes"), "{err}");
        assert_eq!("presign".parse::<MissPolicy>(), Ok(MissPolicy::Presign));
        let mut c = Config::default();
        c.miss.presign_expiry = Span(Duration::from_secs(8 * 24 * 3600));
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("7 days"), "{err}");
        c.miss.presign_expiry = Span(Duration::from_secs(60));
        c.miss.warm_fetches = 32;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("miss.warm_fetches"), "{err}");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let err = Config::from_toml("[cache]\nmemroy = \"1GiB\"").unwrap_err();
        assert!(err.contains("memroy"), "{err}");
        let err = Config::from_toml("[cache]\nmemory = \"lots\"").unwrap_err();
        assert!(err.contains("not a size"), "{err}");
        let err = Config::from_toml("[cache]\neviction = \"random\"").unwrap_err();
        assert!(err.contains("random"), "{err}");

        let mut c = Config::default();
        c.cache.chunk = ByteSize(3000);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("cache.chunk"));

        let mut c = Config::default();
        c.cache.hot = ByteSize(1 << 20);
        assert!(c.validate().unwrap_err().to_string().contains("cache.hot"));
        c.cache.hot = ByteSize(0);
        c.validate().unwrap();

        let c = Config {
            sources: vec![SourceConfig::new("a", "http://x/")],
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("s3://"));

        let c = Config {
            sources: vec![
                SourceConfig::new("a", "s3://b/"),
                SourceConfig::new("a", "s3://c/"),
            ],
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("twice"));
    }

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

    #[test]
    fn trace_export_is_off_by_default_and_its_endpoint_is_checked() {
        let c = Config::default();
        assert_eq!(c.telemetry.otlp_endpoint, None);
        let c =
            Config::from_toml("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4317\"").unwrap();
        c.validate().unwrap();
        assert!(Config::from_toml("[telemetry]\nendpoint = \"x\"").is_err());
        let flags = Flags::parse_from([
            "quiver-server",
            "--otlp-endpoint",
            "https://collector.example:4317",
        ]);
        let c = Config::load(&flags).unwrap();
        assert_eq!(
            c.telemetry.otlp_endpoint.as_deref(),
            Some("https://collector.example:4317")
        );
        for bad in [
            "collector:4317",
            "grpc://collector:4317",
            "http://",
            "not a url",
        ] {
            let flags = Flags::parse_from(["quiver-server", "--otlp-endpoint", bad]);
            let err = Config::load(&flags).unwrap_err().to_string();
            assert!(err.contains("telemetry.otlp_endpoint"), "{bad}: {err}");
        }
    }
}
