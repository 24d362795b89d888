//! The filter text of one DataFusion filter: a supported filter with its
//! columns unqualified and its literals written exactly, unparsed by
//! DataFusion's SQL unparser (never assembled by hand) and checked as the
//! node will check it. A filter with a text is declared `Exact`.

use arrow::datatypes::Schema;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{plan_err, Column};
use datafusion::logical_expr::Expr;
use datafusion::sql::unparser::dialect::CustomDialectBuilder;
use datafusion::sql::unparser::Unparser;

use super::literal::{literal_sql, LiteralSql};
use super::node_checks::{node_accepts, MAX_PUSHED_FILTER};
use super::supported::supported;

/// The filter text for `expr` if the node evaluates it exactly against a
/// file with `schema`; `None` keeps the filter in DataFusion.
pub fn filter_text(expr: &Expr, schema: &Schema) -> Option<String> {
    if !supported(expr, schema) {
        return None;
    }
    let typed = expr
        .clone()
        .transform(|e| match e {
            // The node resolves names against one file: no qualifiers.
            Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                c.name,
            )))),
            Expr::Literal(value, meta) => match literal_sql(&value) {
                Some(LiteralSql::AsIs) => Ok(Transformed::no(Expr::Literal(value, meta))),
                Some(LiteralSql::Rewritten(e)) => Ok(Transformed::yes(e)),
                None => plan_err!("the literal {value:?} has no exact SQL form"),
            },
            other => Ok(Transformed::no(other)),
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
    node_accepts(&text, MAX_PUSHED_FILTER).then_some(text)
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::*;
    use datafusion::scalar::ScalarValue;

    use super::*;
    use crate::pushdown::test_support::schema;

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
}
