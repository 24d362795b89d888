//! The `quiver` command line: arguments, and one module per group of
//! subcommands.

pub mod cache;
pub mod cert;
pub mod cluster;
pub mod data;
pub mod output;
pub mod secret_file;
pub mod target;
