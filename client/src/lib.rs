//! Quiver's Rust client.
//!
//! `routing` reads objects from a cluster: straight to an owner of each
//! object's slot, failing over between replicas and, as a last resort,
//! reading the source directly.
//!
//! `admin` changes the cluster's membership through a node's
//! `cluster-update` action, so the tool needs only the admin token, never
//! write access to the object store.

pub mod admin;
pub mod connect;
pub mod routing;

pub use admin::AdminClient;
pub use connect::ClientError;
pub use routing::{ClientConfig, DirectSource, QuiverClient, Scan, Served, Weights};
