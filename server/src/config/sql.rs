//! The `[sql]` section: Flight SQL's switch, its memory and concurrency
//! bounds, the catalog refresh, and the tables declared beside the
//! discovered ones.

use std::time::Duration;

use quiver_sql::DistributedMode;
use serde::Deserialize;

use super::error::{invalid, ConfigError};
use super::section::section;
use super::sources::SourceConfig;
use super::values::{ByteSize, Span};

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

section! {
    /// Flight SQL on the Flight port.
    pub struct SqlConfig / SqlFlags {
        /// Serve Flight SQL beside Quiver's own protocol.
        enabled: bool = true, [skip];
        /// Whether statements run in distributed stages on the cluster's
        /// nodes: auto, on or off (docs/architecture.md "Distributed SQL").
        distributed: DistributedMode = DistributedMode::Auto,
            [long = "sql-distributed", env = "QUIVER_SQL_DISTRIBUTED"];
        /// Memory one query may use for joins, sorts and aggregates; a query
        /// over it fails with ResourceExhausted.
        query_memory: ByteSize = ByteSize(1 << 30), [skip];
        /// SQL queries running at once.
        max_queries: usize = 16, [skip];
        /// Prepared statements held at once.
        max_prepared: usize = 1024, [skip];
        /// How long a catalog listing is trusted before the lake is listed again.
        refresh: Span = Span(Duration::from_secs(60)), [skip];
        /// Tables declared beside the discovered ones (`[[sql.table]]`).
        #[serde(rename = "table")]
        tables: Vec<SqlTableConfig> = Vec::new(), [skip];
    }
}

impl SqlConfig {
    /// `sources` are the configured ones each declared table must name.
    pub(super) fn validate(&self, sources: &[SourceConfig]) -> Result<(), ConfigError> {
        if self.query_memory.0 < (16 << 20) {
            return Err(invalid("sql.query_memory", "must be at least 16MiB"));
        }
        if self.max_queries == 0 || self.max_prepared == 0 {
            return Err(invalid(
                "sql.max_queries",
                "max_queries and max_prepared must be at least 1",
            ));
        }
        if self.refresh.0 < Duration::from_secs(1) {
            return Err(invalid("sql.refresh", "must be at least 1s"));
        }
        for t in &self.tables {
            if !sources.iter().any(|s| s.name == t.source) {
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
        Ok(())
    }
}
