//! The command line: the flags that belong to no section (the file, the
//! sources, the embedded sample, the log format), each section's own flags
//! (declared with its options, `super::section`), and how the given ones
//! override the file's settings.

use std::path::PathBuf;

use clap::Parser;

use super::auth::AuthFlags;
use super::cache::CacheFlags;
use super::cluster::ClusterFlags;
use super::error::{invalid, ConfigError};
use super::limits::LimitsFlags;
use super::miss::MissFlags;
use super::server::ServerFlags;
use super::sources::SourceConfig;
use super::sql::SqlFlags;
use super::telemetry::TelemetryFlags;
use super::Config;

/// Command-line flags; each also reads `QUIVER_<FLAG>` from the
/// environment and, when given, wins over the config file.
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
    #[command(flatten)]
    pub server: ServerFlags,
    /// Listen beyond loopback although no tokens are configured (a trusted
    /// network only).
    #[arg(long, env = "QUIVER_INSECURE")]
    pub insecure: bool,
    /// A source as NAME=URL (repeatable; replaces the file's sources).
    #[arg(long = "source", env = "QUIVER_SOURCE", value_delimiter = ',')]
    pub sources: Vec<String>,
    /// With no source configured: the directory served as source `local`.
    #[arg(long, env = "QUIVER_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// TPC-H scale factor of the sample written to an empty data directory.
    #[arg(long, env = "QUIVER_SAMPLE_SCALE", default_value_t = 0.01)]
    pub sample_scale: f64,
    /// Log format: text or json.
    #[arg(long, env = "QUIVER_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    #[command(flatten, next_help_heading = "Cache")]
    pub cache: CacheFlags,
    #[command(flatten, next_help_heading = "Cluster")]
    pub cluster: ClusterFlags,
    #[command(flatten, next_help_heading = "Auth and TLS")]
    pub auth: AuthFlags,
    #[command(flatten, next_help_heading = "Limits")]
    pub limits: LimitsFlags,
    #[command(flatten, next_help_heading = "Misses")]
    pub miss: MissFlags,
    #[command(flatten, next_help_heading = "SQL")]
    pub sql: SqlFlags,
    #[command(flatten, next_help_heading = "Telemetry")]
    pub telemetry: TelemetryFlags,
}

impl Config {
    /// Writes every flag or variable that was given over the setting it
    /// names, then the flags with rules of their own.
    pub(super) fn apply(&mut self, f: &Flags) -> Result<(), ConfigError> {
        f.server.apply(&mut self.server);
        f.cache.apply(&mut self.cache);
        f.cluster.apply(&mut self.cluster);
        f.auth.apply(&mut self.auth);
        f.limits.apply(&mut self.limits);
        f.miss.apply(&mut self.miss);
        f.sql.apply(&mut self.sql);
        f.telemetry.apply(&mut self.telemetry);
        self.server.insecure |= f.insecure;
        // A disk tier sized by a flag is no longer sized automatically.
        self.cache.disk_auto &= f.cache.disk.is_none();
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

    use super::super::values::{ByteSize, Eviction, MissPolicy, Span};
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
            "--sql-distributed=on",
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
        assert_eq!(c.sql.distributed, quiver_sql::DistributedMode::On);
    }
}
