//! The benchmark workloads; each measures Quiver against its baselines in
//! the same run, and each owns its flags (`XArgs`), its run, and its
//! report.

pub mod cluster;
pub mod delta;
pub mod hot;
pub mod load;
pub mod node;
pub mod policies;
pub mod presign;
pub mod pushdown;
pub mod suite;
pub mod tpch;
pub mod trace;
