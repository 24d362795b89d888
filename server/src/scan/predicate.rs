//! A request's filter, planned once per scan into the one expression every
//! path evaluates: the Parquet decoder's row filter, the hot tier's kernels
//! and row-group pruning all start from it, so no two of them can answer
//! the same request differently.
//!
//! Planning parses the text against the file's schema, coerces its types,
//! rewrites every float comparison to compare keys (`float_key`), folds
//! constant subexpressions with checked arithmetic, and lets DataFusion's
//! simplifier normalise the rest. Physical expressions made from it check
//! integer arithmetic for overflow instead of wrapping.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::array::RecordBatchOptions;
use arrow::datatypes::{DataType, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::expr::{Case, InList, ScalarFunction};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, ExprSchemable, Operator, ScalarUDF};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::expressions::BinaryExpr as PhysicalBinary;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use quiver_client::literals::floats_beside_floats;

use super::decimal_fits;
use super::errors::message;
use super::filter;
use super::float_key;
use crate::error::{QuiverError, Result};

/// A filter as the node evaluates it.
#[derive(Debug, Clone)]
pub struct Predicate {
    expr: Expr,
}

impl Predicate {
    /// Plans `text` against `schema`, the whole file's. `what` names the
    /// object in errors.
    pub fn plan(state: &SessionState, text: &str, schema: &Schema, what: &str) -> Result<Self> {
        let invalid = |e: &datafusion::error::DataFusionError| {
            QuiverError::invalid(format!(
                "the filter `{}` is not valid: {}",
                filter::shown(text),
                message(e)
            ))
        };
        let cannot = |e: &datafusion::error::DataFusionError| {
            QuiverError::invalid(format!(
                "the filter `{}` cannot be applied to {what}: {}",
                filter::shown(text),
                message(e)
            ))
        };
        filter::check_text(text)?;
        let df_schema = dfschema(schema)?;
        let expr = state
            .create_logical_expr(&approximate_numbers(text)?, &df_schema)
            .map_err(|e| invalid(&e))?;
        filter::check(&expr, text)?;
        let expr = floats_beside_floats(expr, &df_schema).map_err(|e| cannot(&e))?;
        let simplifier = ExprSimplifier::new(
            SimplifyContext::builder()
                .with_schema(Arc::new(df_schema.clone()))
                .with_config_options(state.config_options().clone())
                .build(),
        );
        let expr = simplifier
            .coerce(expr, &df_schema)
            .map_err(|e| cannot(&e))?;
        let key = float_key::udf();
        let expr = compare_by_key(expr, &df_schema, &key).map_err(|e| cannot(&e))?;
        let expr = checked_negation(expr, &df_schema).map_err(|e| cannot(&e))?;
        let expr = decimals_that_fit(expr, &df_schema).map_err(|e| cannot(&e))?;
        let expr = fold_constants(state, expr).map_err(|e| {
            QuiverError::invalid(format!(
                "the filter `{}` cannot be evaluated: {}",
                filter::shown(text),
                message(&e)
            ))
        })?;
        let expr = simplifier.simplify(expr).map_err(|e| cannot(&e))?;
        let ty = expr.get_type(&df_schema).map_err(|e| invalid(&e))?;
        if !matches!(ty, DataType::Boolean | DataType::Null) {
            return Err(QuiverError::invalid(format!(
                "the filter `{}` is of type {ty}, not a boolean condition",
                filter::shown(text)
            )));
        }
        Ok(Predicate { expr })
    }

    /// The names of the columns the filter reads.
    pub fn columns(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .expr
            .column_refs()
            .into_iter()
            .map(|c| c.name.clone())
            .collect();
        names.sort_unstable();
        names
    }

    /// The filter over batches of `schema`, with checked integer arithmetic.
    pub fn physical(&self, state: &SessionState, schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
        let expr = state
            .create_physical_expr(self.expr.clone(), &dfschema(schema)?)
            .map_err(|e| {
                QuiverError::invalid(format!("the filter cannot be planned: {}", message(&e)))
            })?;
        checked_arithmetic(expr)
            .map_err(|e| QuiverError::Internal(format!("checking the filter's arithmetic: {e}")))
    }

    /// The filter as statistics-based pruning reads it: comparisons of a
    /// float column compare the column itself, whose statistics
    /// (`RowGroupStats`) are widened to hold for its keys.
    pub fn pruning(&self, state: &SessionState, schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
        let expr = self
            .expr
            .clone()
            .transform_up(|e| {
                Ok(match e {
                    Expr::ScalarFunction(f) if f.func.name() == float_key::NAME => {
                        match f.args.as_slice() {
                            [arg @ (Expr::Column(_) | Expr::Cast(_))] => {
                                Transformed::yes(arg.clone())
                            }
                            _ => Transformed::no(Expr::ScalarFunction(f)),
                        }
                    }
                    other => Transformed::no(other),
                })
            })
            .map_err(|e| QuiverError::Internal(format!("the pruning predicate: {e}")))?
            .data;
        state
            .create_physical_expr(expr, &dfschema(schema)?)
            .map_err(|e| QuiverError::Internal(format!("the pruning predicate: {}", message(&e))))
    }
}

/// Most digits an unquoted number may have and still be read as an exact
/// decimal: the widest 128-bit decimal's.
const EXACT_DIGITS: usize = 38;

/// Rewrites each unquoted number with an exponent (`1e300`), or with more
/// digits than a decimal holds, to `CAST('…' AS DOUBLE)`: SQL reads such an
/// approximate numeric literal as a float, and DataFusion, told to read
/// numbers as decimals, would refuse it instead.
fn approximate_numbers(text: &str) -> Result<String> {
    let tokens = Tokenizer::new(&GenericDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| {
            QuiverError::invalid(format!(
                "the filter `{}` is not valid: {e}",
                filter::shown(text)
            ))
        })?;
    let approximate = |n: &str| {
        n.contains(['e', 'E']) || n.chars().filter(char::is_ascii_digit).count() > EXACT_DIGITS
    };
    // Where each such number starts (line and column, counted in
    // characters from 1, as the tokenizer counts) and how many characters
    // it spans in the text.
    let mut numbers = tokens
        .iter()
        .filter_map(|t| match &t.token {
            Token::Number(n, long) if approximate(n) => Some((
                t.span.start,
                n.clone(),
                n.chars().count() + usize::from(*long),
            )),
            _ => None,
        })
        .peekable();
    if numbers.peek().is_none() {
        return Ok(text.to_string());
    }
    // The rest of the text is copied as it is, so quoting and escapes are
    // untouched.
    let mut out = String::with_capacity(text.len() + 32);
    let (mut line, mut column) = (1u64, 1u64);
    let mut skip = 0usize;
    for c in text.chars() {
        match numbers.peek() {
            _ if skip > 0 => skip -= 1,
            Some((at, n, len)) if at.line == line && at.column == column => {
                out.push_str(&format!("CAST('{n}' AS DOUBLE)"));
                skip = len.saturating_sub(1);
                numbers.next();
            }
            _ => out.push(c),
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    Ok(out)
}

fn dfschema(schema: &Schema) -> Result<DFSchema> {
    DFSchema::try_from(schema.clone())
        .map_err(|e| QuiverError::Internal(format!("the file schema: {e}")))
}

/// Whether `op` compares its operands by order or equality.
fn compares(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

/// Rewrites every comparison of floats to compare their keys: binary
/// comparisons, IN lists, BETWEEN and `CASE x WHEN …`.
fn compare_by_key(expr: Expr, schema: &DFSchema, key: &Arc<ScalarUDF>) -> DfResult<Expr> {
    let keyed = |e: Expr| Expr::ScalarFunction(ScalarFunction::new_udf(key.clone(), vec![e]));
    let is_float = |e: &Expr| -> DfResult<bool> { Ok(float_key::is_float(&e.get_type(schema)?)) };
    Ok(expr
        .transform_up(|e| {
            Ok(match e {
                Expr::BinaryExpr(b) if compares(b.op) && is_float(&b.left)? => {
                    Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                        Box::new(keyed(*b.left)),
                        b.op,
                        Box::new(keyed(*b.right)),
                    )))
                }
                Expr::InList(l) if is_float(&l.expr)? => {
                    Transformed::yes(Expr::InList(InList::new(
                        Box::new(keyed(*l.expr)),
                        l.list.into_iter().map(keyed).collect(),
                        l.negated,
                    )))
                }
                Expr::Between(b) if is_float(&b.expr)? => {
                    Transformed::yes(Expr::Between(Between::new(
                        Box::new(keyed(*b.expr)),
                        b.negated,
                        Box::new(keyed(*b.low)),
                        Box::new(keyed(*b.high)),
                    )))
                }
                Expr::Case(c) if c.expr.as_deref().map(is_float).transpose()? == Some(true) => {
                    let base = c.expr.map(|b| Box::new(keyed(*b)));
                    let whens = c
                        .when_then_expr
                        .into_iter()
                        .map(|(w, t)| (Box::new(keyed(*w)), t))
                        .collect();
                    Transformed::yes(Expr::Case(Case::new(base, whens, c.else_expr)))
                }
                other => Transformed::no(other),
            })
        })?
        .data)
}

/// Wraps every decimal arithmetic in `quiver_decimal_fits`, so a result with
/// more digits than its type declares is an overflow, not a value.
fn decimals_that_fit(expr: Expr, schema: &DFSchema) -> DfResult<Expr> {
    let fits = decimal_fits::udf();
    Ok(expr
        .transform_up(|e| {
            let arithmetic = matches!(
                &e,
                Expr::BinaryExpr(b) if matches!(
                    b.op,
                    Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide | Operator::Modulo
                )
            );
            if arithmetic && decimal_fits::is_decimal(&e.get_type(schema)?) {
                Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                    fits.clone(),
                    vec![e],
                ))))
            } else {
                Ok(Transformed::no(e))
            }
        })?
        .data)
}

/// Arrow negates integers wrapping (`-i64::MIN` is `i64::MIN`); `0 - x` is
/// checked like every other subtraction.
fn checked_negation(expr: Expr, schema: &DFSchema) -> DfResult<Expr> {
    Ok(expr
        .transform_up(|e| {
            Ok(match e {
                Expr::Negative(inner) => {
                    let ty = inner.get_type(schema)?;
                    if ty.is_signed_integer()
                        || matches!(ty, DataType::Decimal128(..) | DataType::Decimal256(..))
                    {
                        let zero = ScalarValue::new_zero(&ty)?;
                        Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                            Box::new(Expr::Literal(zero, None)),
                            Operator::Minus,
                            inner,
                        )))
                    } else {
                        Transformed::no(Expr::Negative(inner))
                    }
                }
                other => Transformed::no(other),
            })
        })?
        .data)
}

/// Evaluates every subexpression that reads no column once, with checked
/// arithmetic, and puts its value in its place: DataFusion's own constant
/// folding would wrap `9223372036854775807 + 1` silently.
fn fold_constants(state: &SessionState, expr: Expr) -> DfResult<Expr> {
    let empty = DFSchema::empty();
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    Ok(expr
        .transform_down(|e| {
            let constant =
                !matches!(e, Expr::Literal(..)) && e.column_refs().is_empty() && !e.is_volatile();
            if !constant {
                return Ok(Transformed::no(e));
            }
            match evaluate_constant(state, e.clone(), &empty, &one_row) {
                Ok(value) => Ok(Transformed::new(
                    Expr::Literal(value, None),
                    true,
                    TreeNodeRecursion::Jump,
                )),
                // An overflow is the filter's error; anything else is left
                // for DataFusion's simplifier (`arrow_cast` must be
                // simplified before it can run), with the constants inside
                // it folded here.
                Err(err) if is_overflow(&err) => Err(err),
                Err(_) => Ok(Transformed::no(e)),
            }
        })?
        .data)
}

fn evaluate_constant(
    state: &SessionState,
    e: Expr,
    empty: &DFSchema,
    one_row: &RecordBatch,
) -> DfResult<ScalarValue> {
    let physical = checked_arithmetic(state.create_physical_expr(e, empty)?)?;
    match physical.evaluate(one_row)? {
        datafusion::logical_expr::ColumnarValue::Scalar(v) => Ok(v),
        datafusion::logical_expr::ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0),
    }
}

/// Whether `err` is an arithmetic overflow.
fn is_overflow(err: &datafusion::error::DataFusionError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if matches!(
            e.downcast_ref::<arrow::error::ArrowError>(),
            Some(arrow::error::ArrowError::ArithmeticOverflow(_))
        ) {
            return true;
        }
        current = e.source();
    }
    false
}

/// Makes every integer addition, subtraction and multiplication in `expr`
/// fail on overflow instead of wrapping.
fn checked_arithmetic(expr: Arc<dyn PhysicalExpr>) -> DfResult<Arc<dyn PhysicalExpr>> {
    Ok(expr
        .transform_up(|e| {
            let Some(b) = e.downcast_ref::<PhysicalBinary>() else {
                return Ok(Transformed::no(e));
            };
            if !matches!(
                b.op(),
                Operator::Plus | Operator::Minus | Operator::Multiply
            ) {
                return Ok(Transformed::no(e));
            }
            let checked = PhysicalBinary::new(b.left().clone(), *b.op(), b.right().clone())
                .with_fail_on_overflow(true);
            Ok(Transformed::yes(Arc::new(checked) as Arc<dyn PhysicalExpr>))
        })?
        .data)
}

#[cfg(test)]
mod tests {
    use super::approximate_numbers;

    #[test]
    fn approximate_numbers_become_doubles_and_the_rest_is_copied() {
        let cases = [
            ("x > 1.5", "x > 1.5"),
            (
                "name = 'it''s 1e3' AND x > 1e3",
                "name = 'it''s 1e3' AND x > CAST('1e3' AS DOUBLE)",
            ),
            (
                "x > -1E300 OR\n  \"c\" < 2.5e-3",
                "x > -CAST('1E300' AS DOUBLE) OR\n  \"c\" < CAST('2.5e-3' AS DOUBLE)",
            ),
            (
                "d = 1234567890123456789012345678901234567890",
                "d = CAST('1234567890123456789012345678901234567890' AS DOUBLE)",
            ),
            ("s = 'é' AND x=1e1", "s = 'é' AND x=CAST('1e1' AS DOUBLE)"),
        ];
        for (text, want) in cases {
            assert_eq!(approximate_numbers(text).unwrap(), want, "{text}");
        }
    }
}
