//! Quiver's Rust client.
//!
//! `admin` changes the cluster's membership through a node's
//! `cluster-update` action, so the tool needs only the admin token, never
//! write access to the object store.

pub mod admin;
pub mod connect;

pub use admin::AdminClient;
pub use connect::ClientError;
