//! Fixtures the pushdown tests share: a file's schema, and a session that
//! parses filters as a node does.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::{SessionConfig, SessionContext};

/// A file's columns: a mixed-case name, a decimal, a string, a date and a
/// narrower integer.
pub(super) fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("UserId", DataType::Int64, true),
        Field::new("price", DataType::Decimal128(15, 2), true),
        Field::new("name", DataType::Utf8, true),
        Field::new("day", DataType::Date32, true),
        Field::new("small", DataType::Int32, true),
    ]))
}

/// A session that parses filters as a node does: unquoted numbers with
/// a point or an exponent are exact decimals.
pub(super) fn node_context() -> SessionContext {
    let mut config = SessionConfig::new();
    config.options_mut().sql_parser.parse_float_as_decimal = true;
    SessionContext::new_with_config(config)
}
