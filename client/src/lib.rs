//! Quiver's Rust client.
//!
//! - [`QuiverClient`] (`routing`) plans scans with any node and reads each
//!   endpoint straight from an owner of its slot (`topology`, `health`),
//!   failing over between replicas, following `MOVED`, and as a last resort
//!   reading the source directly (`failover`); [`ClientConfig`] (`config`)
//!   sets it up.
//! - [`QuiverTable`] (`table`, `exec`, `pushdown`) is a DataFusion table over
//!   a source path whose projection, filters and limit run on the nodes;
//!   [`QuiverCodec`] ships its scans through `datafusion-proto` physical
//!   plans, and [`QuiverLogicalCodec`] (`logical_codec`) the table itself
//!   through logical ones.
//! - [`AdminClient`] (`admin`) changes the cluster's membership through a
//!   node's `cluster-update` action, so the tool needs only the admin token,
//!   never write access to the object store.
//! - Every call carries the caller's OpenTelemetry trace context
//!   (`trace_context`), so a node's spans continue the caller's trace.

pub mod admin;
pub mod codec;
pub mod config;
pub mod connect;
pub mod direct;
pub mod error;
pub mod exec;
mod failover;
mod health;
pub mod literals;
pub mod logical_codec;
pub mod plan;
pub mod presigned;
pub mod pushdown;
pub mod results;
pub mod routing;
pub mod stream;
pub mod table;
pub mod table_log;
pub mod tls;
mod topology;
pub mod trace_context;

pub use admin::AdminClient;
pub use codec::QuiverCodec;
pub use config::{ClientConfig, Compression, Weights};
pub use connect::{Connector, Credentials, Tls};
pub use direct::DirectSource;
pub use error::ClientError;
pub use exec::{QuiverScanExec, ScanSpec};
pub use logical_codec::QuiverLogicalCodec;
pub use plan::{Endpoint, Plan};
pub use presigned::Presigned;
pub use results::{ObjectInfo, Scan, Served, Table};
pub use routing::QuiverClient;
pub use stream::BatchStream;
pub use table::QuiverTable;
pub use table_log::Snapshot;

/// A DataFusion session config that reads strings as the nodes send them
/// (plain Utf8, not DataFusion's view types), so answers read directly and
/// through Quiver have the same schema.
pub fn session_config() -> datafusion::prelude::SessionConfig {
    let mut config = datafusion::prelude::SessionConfig::new();
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    config
}
