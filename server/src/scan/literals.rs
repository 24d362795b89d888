//! Exact numbers in a filter, and floats where a float is compared.
//!
//! SQL reads an unquoted number with a fraction (`0.07`) as an exact
//! decimal, and so does the node (DataFusion's `parse_float_as_decimal`): `d = 1.2345` is then exact for a decimal
//! column and `u64 = 18446744073709551616` finds nothing, where a double
//! would round. Beside a float, though, DataFusion would cast the
//! float to a decimal, which no NaN or infinity survives; so a decimal
//! literal that meets a float becomes the float nearest its exact value, as
//! SQL's float comparison expects.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::{Case, InList};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, ExprSchemable};

use super::float_key;

/// `expr` (over `schema`) with every decimal literal that meets a float,
/// in a comparison, arithmetic, `IN`, `BETWEEN` or `CASE x WHEN`, made a
/// double.
pub fn floats_beside_floats(expr: Expr, schema: &DFSchema) -> Result<Expr> {
    let is_float = |e: &Expr| e.get_type(schema).is_ok_and(|t| float_key::is_float(&t));
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
    Ok(expr
        .transform_up(|e| {
            Ok(match e {
                Expr::BinaryExpr(b) if is_float(&b.left) || is_float(&b.right) => {
                    Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                        Box::new(to_float(*b.left)?),
                        b.op,
                        Box::new(to_float(*b.right)?),
                    )))
                }
                Expr::InList(l) if is_float(&l.expr) => {
                    Transformed::yes(Expr::InList(InList::new(
                        l.expr,
                        l.list.into_iter().map(to_float).collect::<Result<_>>()?,
                        l.negated,
                    )))
                }
                Expr::Between(b) if is_float(&b.expr) => {
                    Transformed::yes(Expr::Between(Between::new(
                        b.expr,
                        b.negated,
                        Box::new(to_float(*b.low)?),
                        Box::new(to_float(*b.high)?),
                    )))
                }
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
        })?
        .data)
}
