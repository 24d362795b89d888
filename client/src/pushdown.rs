//! Which DataFusion filters a node evaluates exactly, and their filter text
//! (`docs/protocol.md` §1, "Filters").
//!
//! A filter is pushed only when the node will accept it and compute the same
//! answer DataFusion would: every node kind is one the protocol allows,
//! every function is on the shared allowlist, and every literal keeps its
//! type when the node parses the text again. The text is produced by
//! DataFusion's SQL unparser, never assembled by hand.

use arrow::datatypes::{DataType, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Cast, Expr};
use datafusion::sql::unparser::dialect::CustomDialectBuilder;
use datafusion::sql::unparser::Unparser;
use quiver_protocol::{FILTER_FUNCTIONS, MAX_FILTER_DEPTH, MAX_FILTER_OPERATORS};

/// Longest filter text pushed for one DataFusion filter; the node accepts
/// 16 KiB in all by default, and a query's filters are sent together.
pub const MAX_PUSHED_FILTER: usize = 4096;

/// The filter text for `expr` if the node evaluates it exactly against a
/// file with `schema`; `None` keeps the filter in DataFusion.
pub fn filter_text(expr: &Expr, schema: &Schema) -> Option<String> {
    if !supported(expr, schema) {
        return None;
    }
    let typed = expr
        .clone()
        .transform(|e| {
            Ok(match e {
                // The node resolves names against one file: no qualifiers.
                Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                Expr::Literal(value, meta) => match typed_literal(&value) {
                    Some(cast) => Transformed::yes(cast),
                    None => Transformed::no(Expr::Literal(value, meta)),
                },
                other => Transformed::no(other),
            })
        })
        .ok()?
        .data;
    // Quoting every identifier keeps mixed-case names (the node lower-cases
    // unquoted ones).
    let dialect = CustomDialectBuilder::new()
        .with_identifier_quote_style('"')
        .build();
    let text = Unparser::new(&dialect)
        .expr_to_sql(&typed)
        .ok()?
        .to_string();
    (text.len() <= MAX_PUSHED_FILTER).then_some(text)
}

/// A literal whose SQL form would be read back as another type, wrapped in
/// a cast to its own type. Integers and floats of 64 bits, strings, booleans
/// and dates (which the unparser already casts) read back as they are.
fn typed_literal(value: &ScalarValue) -> Option<Expr> {
    let ty = value.data_type();
    match value {
        ScalarValue::Int64(_)
        | ScalarValue::Float64(_)
        | ScalarValue::Utf8(_)
        | ScalarValue::Utf8View(_)
        | ScalarValue::LargeUtf8(_)
        | ScalarValue::Boolean(_)
        | ScalarValue::Date32(_)
        | ScalarValue::Null => None,
        // A decimal goes through its exact text, never through a float.
        ScalarValue::Decimal128(Some(_), ..) | ScalarValue::Decimal256(Some(_), ..) => {
            let text = Expr::Literal(ScalarValue::Utf8(Some(value.to_string())), None);
            Some(Expr::Cast(Cast::new(Box::new(text), ty)))
        }
        _ => Some(Expr::Cast(Cast::new(
            Box::new(Expr::Literal(value.clone(), None)),
            ty,
        ))),
    }
}

/// Whether every node of `expr` is one the node's filter rules accept, with
/// room to spare under its depth and operator caps.
fn supported(expr: &Expr, schema: &Schema) -> bool {
    let mut inner_nodes = 0usize;
    let mut stack = vec![(expr, 1usize)];
    while let Some((e, depth)) = stack.pop() {
        if depth > MAX_FILTER_DEPTH / 2 {
            return false;
        }
        let allowed = match e {
            Expr::Column(c) => schema.field_with_name(&c.name).is_ok(),
            Expr::Literal(value, _) => literal_ok(value),
            Expr::BinaryExpr(_)
            | Expr::Not(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNotFalse(_)
            | Expr::IsUnknown(_)
            | Expr::IsNotUnknown(_)
            | Expr::Negative(_)
            | Expr::Between(_)
            | Expr::Case(_)
            | Expr::InList(_) => true,
            Expr::Like(l) => l.escape_char.is_none(),
            Expr::Cast(c) => cast_ok(c.field.data_type()),
            Expr::TryCast(c) => cast_ok(c.field.data_type()),
            Expr::ScalarFunction(f) => FILTER_FUNCTIONS.contains(&f.name()),
            _ => false,
        };
        if !allowed {
            return false;
        }
        // Each inner node costs the node's token count at most an operator
        // and a parenthesis.
        if !matches!(e, Expr::Column(_) | Expr::Literal(..)) {
            inner_nodes += 1;
            if inner_nodes.saturating_mul(2) > MAX_FILTER_OPERATORS {
                return false;
            }
        }
        let walked = e.apply_children(|child| {
            stack.push((child, depth + 1));
            Ok(TreeNodeRecursion::Continue)
        });
        if walked.is_err() {
            return false;
        }
    }
    true
}

/// Literals the unparser writes in a form the node reads back exactly.
fn literal_ok(value: &ScalarValue) -> bool {
    use ScalarValue::*;
    matches!(
        value,
        Null | Boolean(_)
            | Int8(_)
            | Int16(_)
            | Int32(_)
            | Int64(_)
            | UInt8(_)
            | UInt16(_)
            | UInt32(_)
            | UInt64(_)
            | Float32(_)
            | Float64(_)
            | Decimal128(..)
            | Utf8(_)
            | Utf8View(_)
            | LargeUtf8(_)
            | Date32(_)
    )
}

/// Casts to types whose SQL names read back as the same Arrow type.
fn cast_ok(ty: &DataType) -> bool {
    use DataType::*;
    matches!(
        ty,
        Boolean | Int8 | Int16 | Int32 | Int64 | Float32 | Float64 | Decimal128(..) | Utf8 | Date32
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::*;
    use datafusion::scalar::ScalarValue;

    use super::*;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("UserId", DataType::Int64, true),
            Field::new("price", DataType::Decimal128(15, 2), true),
            Field::new("name", DataType::Utf8, true),
            Field::new("day", DataType::Date32, true),
            Field::new("small", DataType::Int32, true),
        ]))
    }

    #[test]
    fn quotes_names_and_keeps_literal_types() {
        let s = schema();
        let e = Expr::Column(Column::new_unqualified("UserId")).gt(lit(3i64));
        assert!(supported(&e, &s), "{e:?}");
        assert_eq!(filter_text(&e, &s).unwrap(), r#"("UserId" > 3)"#);
        let e = col("price").lt(lit(ScalarValue::Decimal128(Some(5), 15, 2)));
        let text = filter_text(&e, &s).unwrap();
        assert!(text.contains("CAST('0.05' AS DECIMAL(15,2))"), "{text}");
        let e = col("small").eq(lit(ScalarValue::Int32(Some(7))));
        let text = filter_text(&e, &s).unwrap();
        assert!(text.contains("CAST(7 AS INT"), "{text}");
    }

    #[test]
    fn strips_qualifiers() {
        let s = schema();
        let e = Expr::Column(Column::new(Some("t"), "name")).like(lit("a%"));
        assert_eq!(filter_text(&e, &s).unwrap(), r#""name" LIKE 'a%'"#);
    }

    #[test]
    fn refuses_what_the_node_would_refuse() {
        let s = schema();
        // A column the file does not have (e.g. a partition column).
        assert!(filter_text(&col("year").eq(lit(1i64)), &s).is_none());
        // A function outside the allowlist.
        let e = datafusion::functions::string::expr_fn::repeat(col("name"), lit(3i64)).eq(lit("x"));
        assert!(filter_text(&e, &s).is_none());
        // A deep chain.
        let mut e = col("UserId").eq(lit(0i64));
        for i in 1..200i64 {
            e = e.or(col("UserId").eq(lit(i)));
        }
        assert!(filter_text(&e, &s).is_none());
    }
}
