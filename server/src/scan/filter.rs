//! What a filter may contain. A filter is a condition on one row, evaluated
//! for every row of a file on the node's CPU and memory, so it must be
//! shallow, free of subqueries, and use only functions whose output is
//! bounded by their input (no `repeat('x', 2147483647)`).

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, Like};
use quiver_client::pushdown::operator_count;

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
///
/// The count is the clients' own ([`operator_count`]), so a filter a client
/// pushes down is never refused here: a minus that is the sign of a number
/// (`x IN (-1, -2, ...)`) is part of the literal, not an operator.
pub fn check_text(filter: &str) -> Result<()> {
    let operators = operator_count(filter).map_err(|e| {
        QuiverError::invalid(format!("the filter `{}` is not valid: {e}", shown(filter)))
    })?;
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
            // DataFusion evaluates LIKE only with the backslash as escape
            // character, and SIMILAR TO with none; its physical planner's
            // error for any other neither names ESCAPE nor says what to write.
            Expr::Like(Like {
                escape_char: Some(c),
                ..
            }) if *c != '\\' => {
                return Err(QuiverError::invalid(format!(
                    "the filter `{}` uses LIKE with ESCAPE '{c}'; only the backslash escapes in a filter's patterns (`name LIKE 'a\\_%'`), so drop the ESCAPE clause",
                    shown(filter)
                )))
            }
            Expr::SimilarTo(Like {
                escape_char: Some(_),
                ..
            }) => {
                return Err(QuiverError::invalid(format!(
                    "the filter `{}` uses SIMILAR TO with ESCAPE, which is not supported",
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::DFSchema;
    use datafusion::prelude::SessionContext;

    use super::*;

    #[test]
    fn signs_of_numbers_are_not_operators() {
        let negatives: Vec<String> = (1..=300).map(|i| format!("-{i}")).collect();
        check_text(&format!("x IN ({})", negatives.join(", "))).unwrap();
        check_text(&format!("x NOT IN ({})", negatives.join(","))).unwrap();
        let err = check_text(&format!("x{} > 0", " - 1".repeat(300))).unwrap_err();
        assert!(err.to_string().contains("operators"), "{err}");
    }

    #[test]
    fn like_escapes_other_than_the_backslash_are_refused() {
        let schema = Schema::new(vec![Field::new("name", DataType::Utf8, true)]);
        let schema = DFSchema::try_from(schema).unwrap();
        let ctx = SessionContext::new();
        let checked = |filter: &str| check(&ctx.parse_sql_expr(filter, &schema).unwrap(), filter);
        for filter in [
            "name LIKE 'a!%' ESCAPE '!'",
            "NOT name ILIKE 'a' ESCAPE '$'",
            "name SIMILAR TO 'a' ESCAPE '!'",
        ] {
            let err = checked(filter).unwrap_err();
            assert!(
                matches!(err, QuiverError::InvalidArgument(_)),
                "{filter}: {err:?}"
            );
            assert!(err.to_string().contains("ESCAPE"), "{filter}: {err}");
        }
        checked(r"name LIKE 'a\%' ESCAPE '\'").unwrap();
        checked("name LIKE 'a%'").unwrap();
    }
}
