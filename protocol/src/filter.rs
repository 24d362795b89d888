//! What a filter (`docs/protocol.md` §1, "Filters") may contain, shared by
//! the node that enforces it and the clients that decide what to push down.
//!
//! A filter runs for every row of a file on the node's CPU and memory, so it
//! must be shallow, free of subqueries, and call only functions whose output
//! is bounded by their input (no `repeat('x', 2147483647)`). A client that
//! pushes only what passes these rules never sees its query refused.

/// Deeper expression trees are refused before DataFusion walks them
/// recursively, which would overflow a worker thread's stack.
pub const MAX_FILTER_DEPTH: usize = 128;

/// Most operators and opening parentheses a filter may hold, counted on
/// tokens before parsing: a chain of thousands of `OR`s must never be
/// parsed. A minus that is the sign of a number (`x IN (-1, -2)`) belongs to
/// the number and is not counted. Nodes and the Rust client count with the
/// same function (`quiver_client::pushdown::operator_count`), so a filter the
/// client pushes is never refused.
pub const MAX_FILTER_OPERATORS: usize = 256;

/// Scalar functions a filter may call (lower-case, as DataFusion names them).
pub const FILTER_FUNCTIONS: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "round",
    "trunc",
    "signum",
    "sqrt",
    "cbrt",
    "exp",
    "ln",
    "log",
    "log2",
    "log10",
    "power",
    "pow",
    "greatest",
    "least",
    "coalesce",
    "nullif",
    "nvl",
    "nvl2",
    "isnan",
    "iszero",
    "lower",
    "upper",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "btrim",
    "trim",
    "ltrim",
    "rtrim",
    "substr",
    "substring",
    "left",
    "right",
    "starts_with",
    "ends_with",
    "strpos",
    "instr",
    "contains",
    "reverse",
    "initcap",
    "ascii",
    "split_part",
    "concat",
    "concat_ws",
    "regexp_like",
    "regexp_count",
    "date_trunc",
    "date_part",
    "datepart",
    "date_bin",
    "make_date",
    "to_date",
    "to_timestamp",
    "to_timestamp_seconds",
    "to_timestamp_millis",
    "to_timestamp_micros",
    "to_timestamp_nanos",
    "from_unixtime",
    "to_unixtime",
    "now",
    "current_date",
    "current_time",
    "arrow_cast",
];
