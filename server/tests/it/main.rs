//! Integration tests of one node, in one binary so that DataFusion is linked
//! once.

mod access_log;
mod bad_input;
mod cache;
mod chunk_reads;
mod cluster;
mod common;
mod compression;
mod differential;
mod disk;
mod faults;
mod flight_api;
mod fuzz;
mod hot;
mod rewrite;
mod schemas;
mod semantics;
mod sources;
mod status_page;
mod tracing;
