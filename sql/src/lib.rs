//! Flight SQL for Quiver (`quiver-sql`).
//!
//! BI tools and SQL clients (ADBC, JDBC, Polars, `flight_sql_client`) speak
//! Flight SQL. A node serves it on the same port as Quiver's own JSON
//! protocol: the node's Flight adapter hands every Flight SQL message
//! (protobuf `Any`) to [`QuiverSql`]. Statements are planned by DataFusion
//! over the lake's tables ([`catalog`]), and every table scan goes through
//! `quiver-client`, so projections and filters reach the nodes that own the
//! data. In a cluster, joins and aggregates run in stages on the nodes
//! themselves ([`distributed`]), only the final one on the node that
//! received the query.

pub mod catalog;
pub mod distributed;
pub mod error;
mod exact_aggregates;
pub mod metadata;
pub mod observe;
pub mod prepared;
pub mod service;
pub mod session;
pub mod versioned;

pub use catalog::DeclaredTable;
pub use distributed::{DistributedMode, DistributedOptions};
pub use observe::{Outcome, Role, StatementObserver};
pub use service::{QuiverSql, SqlOptions, WorkerSessions};
