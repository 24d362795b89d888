//! The benchmark workloads; each measures Quiver against its baselines in
//! the same run.

pub mod ab_live;
pub mod cluster;
pub mod hot;
pub mod load;
pub mod node;
pub mod policies;
pub mod presign;
pub mod pushdown;
pub mod tpch;
pub mod trace;
