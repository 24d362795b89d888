//! Exact numbers in SQL text, and floats where a float is compared.
//!
//! SQL reads an unquoted number with a fraction (`0.07`) as an exact
//! decimal, and so do the node's filters and Flight SQL (DataFusion's
//! `parse_float_as_decimal`): `d = 1.2345` is then exact for a decimal
//! column and `u64 = 18446744073709551616` finds nothing, where a double
//! would round. Beside a float, though, DataFusion would cast the
//! float to a decimal, which no NaN or infinity survives; so a decimal
//! literal that meets a float becomes the float nearest its exact value, as
//! SQL's float comparison expects.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::{Case, InList};
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, ExprSchemable, LogicalPlan};
use datafusion::optimizer::analyzer::{Analyzer, AnalyzerRule};

/// Whether values of `ty` are floats.
fn is_float(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::Float16 | DataType::Float32 | DataType::Float64
    )
}

/// `expr` (over `schema`) with every decimal literal that meets a float,
/// in a comparison, arithmetic, `IN`, `BETWEEN` or `CASE x WHEN`, made a
/// double.
pub fn floats_beside_floats(expr: Expr, schema: &DFSchema) -> Result<Expr> {
    Ok(rewrite(expr, schema)?.data)
}

fn rewrite(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let is_float = |e: &Expr| e.get_type(schema).is_ok_and(|t| is_float(&t));
    let to_float = |e: Expr| -> Result<Expr> {
        Ok(match e {
            Expr::Literal(
                v @ (ScalarValue::Decimal128(..) | ScalarValue::Decimal256(..)),
                meta,
            ) => {
                let value = if v.is_null() {
                    None
                } else {
                    Some(v.to_string().parse::<f64>().map_err(|err| {
                        DataFusionError::Plan(format!("the number {v} is not a float: {err}"))
                    })?)
                };
                Expr::Literal(ScalarValue::Float64(value), meta)
            }
            other => other,
        })
    };
    expr.transform_up(|e| {
        Ok(match e {
            Expr::BinaryExpr(b) if is_float(&b.left) || is_float(&b.right) => {
                Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(to_float(*b.left)?),
                    b.op,
                    Box::new(to_float(*b.right)?),
                )))
            }
            Expr::InList(l) if is_float(&l.expr) => Transformed::yes(Expr::InList(InList::new(
                l.expr,
                l.list.into_iter().map(to_float).collect::<Result<_>>()?,
                l.negated,
            ))),
            Expr::Between(b) if is_float(&b.expr) => Transformed::yes(Expr::Between(Between::new(
                b.expr,
                b.negated,
                Box::new(to_float(*b.low)?),
                Box::new(to_float(*b.high)?),
            ))),
            Expr::Case(c) if c.expr.as_deref().is_some_and(is_float) => {
                let whens = c
                    .when_then_expr
                    .into_iter()
                    .map(|(w, t)| Ok((Box::new(to_float(*w)?), t)))
                    .collect::<Result<_>>()?;
                Transformed::yes(Expr::Case(Case::new(c.expr, whens, c.else_expr)))
            }
            other => Transformed::no(other),
        })
    })
}

/// The analyzer rule that applies [`floats_beside_floats`] to every
/// expression of a plan, before type coercion.
#[derive(Debug, Default)]
pub struct FloatsBesideFloats;

impl AnalyzerRule for FloatsBesideFloats {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        Ok(plan
            .transform_up_with_subqueries(|node| {
                let schema = merge_schema(&node.inputs());
                node.map_expressions(|e| rewrite(e, &schema))
            })?
            .data)
    }

    fn name(&self) -> &str {
        "quiver_floats_beside_floats"
    }
}

/// DataFusion's analyzer with [`FloatsBesideFloats`] first, ahead of its
/// type coercion.
pub fn analyzer() -> Analyzer {
    let mut rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>> = vec![Arc::new(FloatsBesideFloats)];
    rules.extend(Analyzer::new().rules);
    Analyzer::with_rules(rules)
}
