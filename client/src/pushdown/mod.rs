//! Which DataFusion filters a node evaluates exactly, and their filter text
//! (`docs/protocol.md` §1, "Filters").
//!
//! A filter is pushed only when the node will accept it and compute the same
//! answer DataFusion would: every node kind is one the protocol allows,
//! every function is on the shared allowlist, every literal reads back as
//! the same value of the same type, and the text passes the node's operator
//! count and its parser. The text is produced by DataFusion's SQL unparser,
//! never assembled by hand.
//!
//! - `supported`: which expressions and casts can be pushed, and why.
//! - `literal`: how each literal is written so it reads back exactly.
//! - `render`: the filter text of one DataFusion filter, or none.
//! - `node_checks`: the node's own limits on a filter (length, operators,
//!   parser nesting), applied before anything is sent.
//! - `budget`: which filters of one query fit one request together.

mod budget;
mod literal;
mod node_checks;
mod render;
mod supported;
#[cfg(test)]
mod test_support;

pub use budget::{all_of, PushBudget};
pub use node_checks::{operator_count, MAX_PUSHED_FILTER, MAX_REQUEST_FILTER};
pub use render::filter_text;
