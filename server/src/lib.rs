//! One Quiver cache node.
//!
//! A node serves Parquet objects from configured sources over Arrow Flight,
//! evaluating each request's projection, filter and limit with DataFusion
//! against a hybrid memory/disk cache of the objects' bytes. `flight` is the
//! thin protocol adapter; the other modules each do one job.

pub mod access_log;
pub mod actions;
pub mod activity;
pub mod admin;
pub mod auth;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod error;
pub mod flight;
pub mod flight_info;
pub mod metrics;
pub mod miss;
pub mod node;
pub mod node_core;
pub mod panics;
pub mod scan;
pub mod source;
pub mod table_format;
pub mod telemetry;

pub use config::Config;
pub use error::QuiverError;
pub use node::RunningNode;
