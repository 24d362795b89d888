//! Node configuration: a TOML file, overridden field by field by command-line
//! flags and `QUIVER_*` environment variables, then validated once at start-up
//! so that a bad setting stops the node with one clear sentence instead of
//! failing a request later.
//!
//! This module holds the whole file's shape and the order of start-up:
//! read, override, validate. Each section (`server`, `cache`, `sources`,
//! `cluster`, `auth`, `limits`, `sql`, `miss`, `telemetry`) is a file with
//! its options, declared once each with `section!` (field, default, doc,
//! flag and variable), and its checks; `values` holds the sizes, durations
//! and policies they are written in, and `flags` the command line.

mod auth;
mod cache;
mod cluster;
mod error;
mod flags;
mod limits;
mod miss;
mod section;
mod server;
mod sources;
mod sql;
mod telemetry;
mod values;

use std::path::Path;

use serde::Deserialize;

pub use auth::AuthConfig;
pub use cache::{CacheConfig, MAX_CHUNK};
pub use cluster::ClusterConfig;
pub use error::ConfigError;
pub use flags::Flags;
pub use limits::LimitsConfig;
pub use miss::{MissConfig, MAX_PRESIGN_EXPIRY, MAX_WARM_FETCHES};
pub use server::ServerConfig;
pub use sources::SourceConfig;
pub use sql::{SqlConfig, SqlTableConfig};
pub use telemetry::TelemetryConfig;
pub use values::{ByteSize, Eviction, MissPolicy, Span};

use error::invalid;

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

    /// Checks everything that can be checked without touching the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cache.validate()?;
        sources::validate_sources(&self.sources)?;
        self.auth.validate()?;
        self.limits.validate()?;
        // The checks below span sections.
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
        self.miss.validate()?;
        self.sql.validate(&self.sources)?;
        self.cluster.validate(&self.sources)?;
        self.telemetry.validate()?;
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
    use std::path::PathBuf;
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use quiver_sql::DistributedMode;

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
                cache: cache::CacheFlags {
                    disk: Some(ByteSize(1 << 30)),
                    ..Default::default()
                },
                ..Flags::default()
            })
            .unwrap();
        assert!(!flagged.cache.disk_auto);
        let mut other_flag = unset;
        other_flag
            .apply(&Flags {
                cache: cache::CacheFlags {
                    memory: Some(ByteSize(1 << 30)),
                    ..Default::default()
                },
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
    fn sql_distributed_is_auto_unless_set() {
        assert_eq!(Config::default().sql.distributed, DistributedMode::Auto);
        let c = Config::from_toml("[sql]\ndistributed = \"off\"").unwrap();
        assert_eq!(c.sql.distributed, DistributedMode::Off);
        let err = Config::from_toml("[sql]\ndistributed = \"always\"").unwrap_err();
        assert!(err.contains("always"), "{err}");
        assert_eq!("ON".parse::<DistributedMode>(), Ok(DistributedMode::On));
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
