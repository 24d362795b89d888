//! The checks a node makes on a filter text before it evaluates it: its
//! length, its operator count and its nesting under the node's SQL parser.
//! The client makes the same checks, so a filter it pushes is never refused.

use datafusion::config::ConfigOptions;
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, TokenizerError};
use quiver_protocol::MAX_FILTER_OPERATORS;

/// Longest filter text pushed for one DataFusion filter; the node accepts
/// 16 KiB in all by default, and a query's filters are sent together.
pub const MAX_PUSHED_FILTER: usize = 4096;

/// Longest filter one request sends, all its pushed filters together; a
/// node accepts 16 KiB by default (`limits.max_filter_len`).
pub const MAX_REQUEST_FILTER: usize = 12 * 1024;

/// `text` as the node's SQL parser reads it.
fn parsed(text: &str) -> Option<datafusion::sql::sqlparser::ast::Expr> {
    let recursion_limit = ConfigOptions::default().sql_parser.recursion_limit.get();
    DFParserBuilder::new(text)
        .with_recursion_limit(recursion_limit)
        .build()
        .and_then(|mut parser| parser.parse_into_expr())
        .ok()
        .map(|e| e.expr)
}

/// Whether a node accepts `text` as a filter: at most `max_len` bytes, its
/// operator count, and its nesting under the node's SQL parser.
pub(super) fn node_accepts(text: &str, max_len: usize) -> bool {
    if text.len() > max_len || operator_count(text).map_or(true, |n| n > MAX_FILTER_OPERATORS) {
        return false;
    }
    // The unparser parenthesises every binary operation, and a node's SQL
    // parser refuses nesting past its recursion limit (50 by default): a
    // chain of 49 ORs passes the depth and operator rules but not the parser.
    parsed(text).is_some()
}

/// How many operators the node counts in `filter` against
/// [`MAX_FILTER_OPERATORS`]: `AND`, `OR`, `NOT`, opening parentheses and the
/// arithmetic, concatenation and comparison operators. A minus that is the
/// sign of a number (`x IN (-1, -2)`, `x > -1`, `CAST(-1 AS INT)`) is part of
/// that literal, not an operator: one follows the start of the filter, an
/// opening parenthesis, a comma or another operator, and precedes a number.
///
/// The node refuses filters with this very function, so a filter the client
/// pushes is never refused for its operators.
pub fn operator_count(filter: &str) -> Result<usize, TokenizerError> {
    let tokens = Tokenizer::new(&GenericDialect {}, filter).tokenize()?;
    let tokens: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut count = 0;
    for (i, token) in tokens.iter().enumerate() {
        let counted = match token {
            Token::Minus => {
                let after_operand = i
                    .checked_sub(1)
                    .and_then(|p| tokens.get(p))
                    .is_some_and(|p| !matches!(p, Token::Comma) && !is_operator(p));
                let before_number = matches!(tokens.get(i + 1), Some(Token::Number(..)));
                after_operand || !before_number
            }
            other => is_operator(other),
        };
        count += usize::from(counted);
    }
    Ok(count)
}

/// The tokens [`operator_count`] counts, a minus included.
fn is_operator(token: &Token) -> bool {
    match token {
        // A quoted name is never a keyword.
        Token::Word(w) => matches!(w.keyword, Keyword::AND | Keyword::OR | Keyword::NOT),
        Token::LParen
        | Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::Mod
        | Token::StringConcat
        | Token::Eq
        | Token::DoubleEq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::*;
    use datafusion::scalar::ScalarValue;

    use super::*;
    use crate::pushdown::filter_text;
    use crate::pushdown::test_support::node_context;

    #[test]
    fn a_minus_sign_is_not_an_operator() {
        for (text, n) in [
            ("x > -1", 1),
            ("x - 1", 1),
            ("x-1", 1),
            ("x - -1", 1),
            ("(-1)", 1),
            ("x IN (-1, -2, -3)", 1),
            ("-x > 1", 2),
            ("- 1 < x", 1),
            ("1 -1 = x", 2),
            ("'a' - 1", 1),
            ("f(x) -1 > 0", 3),
            ("x = 1 AND -1 < y", 3),
            ("x = 1 AND - -1 < y", 4),
            ("\"AND\" - 1", 1),
            ("x = '-1' -- -1 - -2\n OR y", 2),
        ] {
            assert_eq!(operator_count(text).unwrap(), n, "{text}");
        }
    }

    /// Filter shapes DataFusion hands to a table: long IN lists of negative
    /// numbers of every type, chains of OR and AND, arithmetic, BETWEEN,
    /// CASE and NOT, from small to past every limit.
    fn shapes() -> (Arc<Schema>, Vec<Expr>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, true),
            Field::new("s", DataType::Int32, true),
            Field::new("d", DataType::Decimal128(15, 2), true),
            Field::new("f", DataType::Float64, true),
            Field::new("day", DataType::Date32, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let negative = |ty: &str, k: i64| -> Expr {
            match ty {
                "i" => lit(-k),
                "s" => lit(ScalarValue::Int32(Some(-(k as i32)))),
                "d" => lit(ScalarValue::Decimal128(Some(-(k as i128) * 101), 15, 2)),
                "f" => lit(-(k as f64) - 0.5),
                _ => lit(ScalarValue::Date32(Some(-(k as i32)))),
            }
        };
        let mut exprs = Vec::new();
        for n in [
            1, 2, 10, 25, 40, 48, 49, 50, 60, 64, 100, 127, 128, 129, 200, 255, 256, 257, 300, 500,
            1000,
        ] {
            for c in ["i", "s", "d", "f", "day"] {
                let list: Vec<Expr> = (1..=n).map(|k| negative(c, k)).collect();
                exprs.push(col(c).in_list(list.clone(), false));
                exprs.push(col(c).in_list(list, true));
            }
            let chain = |join: fn(Expr, Expr) -> Expr| {
                (1..=n).map(|k| col("i").eq(lit(-k))).reduce(join).unwrap()
            };
            exprs.push(chain(Expr::or));
            exprs.push(chain(Expr::and));
            exprs.push(
                (1..=n)
                    .map(|k| lit(-k))
                    .fold(col("i"), |acc, x| acc + x)
                    .gt(lit(0i64)),
            );
            exprs.push((1..=n).fold(col("i").gt(lit(-1i64)), |acc, _| Expr::Not(Box::new(acc))));
            exprs.push(
                (1..=n)
                    .map(|k| col("i").between(lit(-k), lit(k)))
                    .reduce(Expr::or)
                    .unwrap(),
            );
            exprs.push(
                (1..=n)
                    .map(|k| {
                        when(
                            col("s").lt(lit(ScalarValue::Int32(Some(-(k as i32))))),
                            lit(-k),
                        )
                        .otherwise(lit(k))
                        .unwrap()
                        .gt(col("i"))
                    })
                    .reduce(Expr::or)
                    .unwrap(),
            );
            exprs.push(
                (1..=n)
                    .map(|k| col("name").like(lit(format!("%{k}%"))))
                    .reduce(Expr::or)
                    .unwrap()
                    .and(
                        (1..=n)
                            .fold(-col("f"), |acc, k| acc - lit(k as f64))
                            .lt(lit(-1.5)),
                    ),
            );
        }
        (schema, exprs)
    }

    #[test]
    fn every_pushed_filter_passes_the_node_checks() {
        let (schema, exprs) = shapes();
        let df = datafusion::common::DFSchema::try_from(schema.as_ref().clone()).unwrap();
        let ctx = node_context();
        let mut pushed = 0;
        for e in &exprs {
            let Some(text) = filter_text(e, &schema) else {
                continue;
            };
            pushed += 1;
            quiver_server::scan::filter::check_text(&text).unwrap_or_else(|err| {
                panic!("{}: {err}", quiver_server::scan::filter::shown(&text))
            });
            let parsed = ctx.parse_sql_expr(&text, &df).unwrap_or_else(|err| {
                panic!("{}: {err}", quiver_server::scan::filter::shown(&text))
            });
            quiver_server::scan::filter::check(&parsed, &text).unwrap_or_else(|err| {
                panic!("{}: {err}", quiver_server::scan::filter::shown(&text))
            });
        }
        assert!(
            pushed > exprs.len() / 3,
            "only {pushed} of {} pushed",
            exprs.len()
        );
        // The case of issue 25: a long list of negative numbers is pushed.
        let list: Vec<Expr> = (1..=300i64).map(|k| lit(-k)).collect();
        assert!(filter_text(&col("i").in_list(list, false), &schema).is_some());
    }
}
