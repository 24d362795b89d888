//! What a filter may contain. A filter is a condition on one row, evaluated
//! for every row of a file on the node's CPU and memory, so it must be
//! shallow, free of subqueries, and use only functions whose output is
//! bounded by their input (no `repeat('x', 2147483647)`).

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::Expr;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use quiver_protocol::{
    FILTER_FUNCTIONS as FUNCTIONS, MAX_FILTER_DEPTH as MAX_DEPTH,
    MAX_FILTER_OPERATORS as MAX_OPERATORS,
};

use crate::error::{QuiverError, Result};

/// The filter as quoted in messages: long filters are cut.
pub fn shown(filter: &str) -> String {
    const MAX: usize = 120;
    match filter.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &filter[..i]),
        None => filter.to_string(),
    }
}

/// Refuses filters too deep to parse safely, looking only at their tokens.
pub fn check_text(filter: &str) -> Result<()> {
    let tokens = Tokenizer::new(&GenericDialect {}, filter)
        .tokenize()
        .map_err(|e| {
            QuiverError::invalid(format!("the filter `{}` is not valid: {e}", shown(filter)))
        })?;
    let operators = tokens
        .iter()
        .filter(|t| match t {
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
        })
        .count();
    if operators > MAX_OPERATORS {
        return Err(QuiverError::invalid(format!(
            "the filter `{}` has {operators} operators; at most {MAX_OPERATORS} are accepted (use IN lists instead of long chains of OR)",
            shown(filter)
        )));
    }
    Ok(())
}

/// Walks `expr` without recursion and refuses anything a row filter must
/// not contain.
pub fn check(expr: &Expr, filter: &str) -> Result<()> {
    let mut stack = vec![(expr, 1usize)];
    while let Some((e, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(QuiverError::invalid(format!(
                "the filter `{}` nests deeper than {MAX_DEPTH} levels; use IN lists instead of long chains of OR",
                shown(filter)
            )));
        }
        match e {
            Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_) | Expr::SetComparison(_) => {
                return Err(QuiverError::invalid(format!(
                    "the filter `{}` contains a subquery; filters are conditions on one row",
                    shown(filter)
                )))
            }
            Expr::AggregateFunction(_) | Expr::WindowFunction(_) => {
                return Err(QuiverError::invalid(format!(
                    "the filter `{}` uses an aggregate or window function; filters are conditions on one row",
                    shown(filter)
                )))
            }
            Expr::ScalarFunction(f) if !FUNCTIONS.contains(&f.name()) => {
                return Err(QuiverError::invalid(format!(
                    "function `{}` is not allowed in a filter; allowed are {}",
                    f.name(),
                    FUNCTIONS.join(", ")
                )))
            }
            _ => {}
        }
        e.apply_children(|child| {
            stack.push((child, depth + 1));
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|err| QuiverError::Internal(format!("walking the filter failed: {err}")))?;
    }
    Ok(())
}
