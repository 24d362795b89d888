//! Which DataFusion expressions a node evaluates exactly: the node kinds
//! the protocol's filter rules allow, the allowlisted functions, the casts
//! whose SQL names read back as the same type, and no `NOT` where its
//! printed text would read back as another filter.

use arrow::datatypes::{DataType, Schema};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, Operator};
use quiver_protocol::{FILTER_FUNCTIONS, MAX_FILTER_DEPTH};

use super::literal::literal_sql;
use super::node_checks::MAX_PUSHED_FILTER;

/// Whether every node of `expr` is one the node's filter rules accept, with
/// room to spare under its depth cap.
pub(super) fn supported(expr: &Expr, schema: &Schema) -> bool {
    let mut nodes = 0usize;
    // Whether a `NOT` may stand here as the unparser prints it. It writes
    // `(NOT a) IS NOT DISTINCT FROM true` as `NOT a IS NOT DISTINCT FROM
    // true`, which SQL reads as `NOT (a IS NOT DISTINCT FROM true)`: under
    // any operator that binds tighter than NOT the node would read another
    // filter, so such a filter stays in DataFusion.
    let mut stack = vec![(expr, 1usize, true)];
    while let Some((e, depth, not_here)) = stack.pop() {
        if matches!(e, Expr::Not(_)) && !not_here {
            return false;
        }
        // The text adds a cast around some literals, so the node's tree is
        // a little deeper than this one.
        if depth > MAX_FILTER_DEPTH / 2 {
            return false;
        }
        // Every node takes at least a byte of text: no need to write out a
        // filter that cannot fit.
        nodes += 1;
        if nodes > MAX_PUSHED_FILTER {
            return false;
        }
        let allowed = match e {
            Expr::Column(c) => schema.field_with_name(&c.name).is_ok(),
            Expr::Literal(value, _) => literal_sql(value).is_some(),
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
        let not_below = matches!(e, Expr::Not(_) | Expr::Case(_))
            || matches!(e, Expr::BinaryExpr(b) if matches!(b.op, Operator::And | Operator::Or));
        let walked = e.apply_children(|child| {
            stack.push((child, depth + 1, not_below));
            Ok(TreeNodeRecursion::Continue)
        });
        if walked.is_err() {
            return false;
        }
    }
    true
}

/// Casts to types whose SQL names read back as the same Arrow type (a
/// decimal of negative scale would be written as one of scale 0), or, for
/// `VARCHAR`, as its view type, which holds the same values.
fn cast_ok(ty: &DataType) -> bool {
    use DataType::*;
    match ty {
        Boolean | Int8 | Int16 | Int32 | Int64 | Float32 | Float64 | Utf8 | Date32 => true,
        Decimal128(_, scale) => *scale >= 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::*;
    use datafusion::scalar::ScalarValue;

    use super::*;
    use crate::pushdown::filter_text;
    use crate::pushdown::test_support::schema;

    /// `(NOT x) IS NOT DISTINCT FROM true`, as DataFusion's simplifier
    /// writes a `CASE WHEN NOT x`, is unparsed without the parentheses SQL
    /// needs; pushed, the node would read `NOT (x IS NOT DISTINCT FROM
    /// true)` and keep the NULL rows the query excludes.
    #[test]
    fn a_filter_whose_text_reads_back_otherwise_is_not_pushed() {
        let s = schema();
        let not_small = Expr::Not(Box::new(col("small").gt(lit(ScalarValue::Int32(Some(1))))));
        let e = Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
            Box::new(not_small.clone()),
            Operator::IsNotDistinctFrom,
            Box::new(lit(true)),
        ));
        assert_eq!(filter_text(&e, &s), None);
        // Alone, the same NOT reads back as it was printed and is pushed.
        assert!(filter_text(&not_small, &s).is_some());
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
