//! Which DataFusion filters a node evaluates exactly, and their filter text
//! (`docs/protocol.md` §1, "Filters").
//!
//! A filter is pushed only when the node will accept it and compute the same
//! answer DataFusion would: every node kind is one the protocol allows,
//! every function is on the shared allowlist, every literal reads back as
//! the same value of the same type, and the text passes the node's operator
//! count and its parser. The text is produced by DataFusion's SQL unparser,
//! never assembled by hand.

use arrow::datatypes::{DataType, Decimal128Type, Decimal256Type, DecimalType, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{plan_err, Column, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::functions::expr_fn::arrow_cast;
use datafusion::logical_expr::{Cast, Expr, Operator};
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, TokenizerError};
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

/// Longest filter one request sends, all its pushed filters together; a
/// node accepts 16 KiB by default (`limits.max_filter_len`).
pub const MAX_REQUEST_FILTER: usize = 12 * 1024;

/// Whether a node accepts `text` as a filter: at most `max_len` bytes, its
/// operator count, and its nesting under the node's SQL parser.
fn node_accepts(text: &str, max_len: usize) -> bool {
    if text.len() > max_len || operator_count(text).map_or(true, |n| n > MAX_FILTER_OPERATORS) {
        return false;
    }
    // The unparser parenthesises every binary operation, and a node's SQL
    // parser refuses nesting past its recursion limit (50 by default): a
    // chain of 49 ORs passes the depth and operator rules but not the parser.
    parsed(text).is_some()
}

/// The filters of one request as the node receives them: one filter, or
/// each parenthesised and joined with `AND`.
pub fn all_of(texts: &[&str]) -> Option<String> {
    match texts {
        [] => None,
        [one] => Some(one.to_string()),
        many => Some(
            many.iter()
                .map(|t| format!("({t})"))
                .collect::<Vec<_>>()
                .join(" AND "),
        ),
    }
}

/// Which filters of one query are pushed: each passes alone
/// ([`filter_text`]), and the ones taken, in order, must still pass
/// together, since a request carries them ANDed as one filter. A filter
/// past that stays in DataFusion, so no number of filters makes a node
/// refuse the query.
#[derive(Debug, Default)]
pub struct PushBudget {
    taken: Vec<String>,
}

impl PushBudget {
    /// Takes `text` if the filters taken so far and it fit one request.
    pub fn admit(&mut self, text: &str) -> bool {
        let mut trial: Vec<&str> = self.taken.iter().map(String::as_str).collect();
        trial.push(text);
        let fits = all_of(&trial).is_some_and(|all| node_accepts(&all, MAX_REQUEST_FILTER));
        if fits {
            self.taken.push(text.to_string());
        }
        fits
    }
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

/// How a literal is written in the filter text.
enum LiteralSql {
    /// The unparser's own form reads back exactly.
    AsIs,
    /// This expression reads back as the literal's value and type.
    Rewritten(Expr),
}

/// How `value` is written so that the node reads back the same value of the
/// same type; `None` when it cannot be, and the filter stays local.
///
/// The unparser writes a float as it prints (`NaN` and `inf` read back as
/// column names, and a node reads `1.5` as an exact decimal), an integer as
/// the type its digits parse to (i64, else u64), and a timestamp as text in
/// nanoseconds without its time zone, so those are written as casts of
/// their exact text or raw value instead.
fn literal_sql(value: &ScalarValue) -> Option<LiteralSql> {
    use ScalarValue::*;
    let ty = value.data_type();
    let text = |s: String| Expr::Literal(Utf8(Some(s)), None);
    let rewritten = match value {
        Null | Boolean(Some(_)) | Int64(Some(_)) | Utf8(Some(_)) => return Some(LiteralSql::AsIs),
        // A NaN of another sign or payload would read back as the canonical
        // one, which arrow's comparisons tell apart from it.
        Float64(Some(f)) if f.is_nan() && f.to_bits() != f64::NAN.to_bits() => return None,
        Float32(Some(f)) if f.is_nan() && f.to_bits() != f32::NAN.to_bits() => return None,
        // Arrow parses the shortest text that prints the float (`NaN`,
        // `-inf` and `-0` included) straight to a float of that width, so
        // an f32 is never rounded twice through an f64.
        Float64(Some(f)) => exact_cast(text(float_text(f)), ty),
        Float32(Some(f)) => exact_cast(text(float_text(f)), ty),
        // A date the unparser writes as `YYYY-MM-DD`, which arrow parses.
        Date32(Some(days)) if date_text_reads_back(*days) => return Some(LiteralSql::AsIs),
        Int8(Some(_)) | Int16(Some(_)) | Int32(Some(_)) | UInt8(Some(_)) | UInt16(Some(_))
        | UInt32(Some(_)) | UInt64(Some(_)) => exact_cast(Expr::Literal(value.clone(), None), ty),
        // A decimal goes through its exact text, never through a float;
        // arrow reads no text as a decimal of negative scale.
        Decimal128(Some(_), _, s) | Decimal256(Some(_), _, s) if *s < 0 => return None,
        Decimal128(Some(v), p, s) => {
            exact_cast(text(Decimal128Type::format_decimal(*v, *p, *s)), ty)
        }
        Decimal256(Some(v), p, s) => {
            exact_cast(text(Decimal256Type::format_decimal(*v, *p, *s)), ty)
        }
        Utf8View(Some(s)) | LargeUtf8(Some(s)) => exact_cast(text(s.clone()), ty),
        // The raw count of units since the epoch, which a cast from an
        // integer keeps as it is: exact for every unit, zone and year.
        TimestampSecond(Some(v), _)
        | TimestampMillisecond(Some(v), _)
        | TimestampMicrosecond(Some(v), _)
        | TimestampNanosecond(Some(v), _) => exact_cast(Expr::Literal(Int64(Some(*v)), None), ty),
        // A typed NULL keeps its type.
        v if v.is_null() && nameable(&ty) => exact_cast(Expr::Literal(Null, None), ty),
        _ => return None,
    };
    Some(LiteralSql::Rewritten(rewritten))
}

/// The shortest text that reads back as `f`: as printed (`0.25`, `NaN`,
/// `-inf`, `-0`), or in exponent form (`5e-324`) where that is shorter than
/// hundreds of digits.
fn float_text<F: std::fmt::Display + std::fmt::LowerExp>(f: F) -> String {
    let printed = f.to_string();
    let exponent = format!("{f:e}");
    if exponent.len() < printed.len() {
        exponent
    } else {
        printed
    }
}

/// Dates from year 1 to 9999, whose `YYYY-MM-DD` text arrow parses back.
fn date_text_reads_back(days: i32) -> bool {
    // 0001-01-01 and 9999-12-31, in days since 1970-01-01.
    (-719_162..=2_932_896).contains(&days)
}

/// The types [`literal_sql`] writes values of, and so typed NULLs of.
fn nameable(ty: &DataType) -> bool {
    use DataType::*;
    matches!(
        ty,
        Boolean
            | Int8
            | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float32
            | Float64
            | Decimal128(..)
            | Decimal256(..)
            | Utf8
            | Utf8View
            | LargeUtf8
            | Date32
            | Timestamp(..)
    )
}

/// `expr` cast to exactly `ty`: a SQL `CAST` when the name the unparser
/// writes for `ty` reads back as `ty` on a node, else `arrow_cast(expr,
/// '<ty>')`, which names any Arrow type. `DECIMAL(p, s)` is a Decimal128 up
/// to precision 38 and a Decimal256 above (of scale 0 when `s` is
/// negative), `VARCHAR` is a `Utf8View` (DataFusion maps SQL strings to
/// views), and `TIMESTAMP` has neither a unit nor a zone.
fn exact_cast(expr: Expr, ty: DataType) -> Expr {
    use DataType::*;
    let sql_names_it = match &ty {
        Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float32
        | Float64 | Date32 | Utf8View => true,
        Decimal128(_, s) => *s >= 0,
        Decimal256(p, s) => *p > 38 && *s >= 0,
        _ => false,
    };
    if sql_names_it {
        Expr::Cast(Cast::new(Box::new(expr), ty))
    } else {
        let name = Expr::Literal(ScalarValue::Utf8(Some(ty.to_string())), None);
        arrow_cast(expr, name)
    }
}

/// Whether every node of `expr` is one the node's filter rules accept, with
/// room to spare under its depth cap.
fn supported(expr: &Expr, schema: &Schema) -> bool {
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
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::simplify::SimplifyContext;
    use datafusion::optimizer::simplify_expressions::ExprSimplifier;
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

    /// `(NOT x) IS NOT DISTINCT FROM true`, as DataFusion's simplifier
    /// writes a `CASE WHEN NOT x`, is unparsed without the parentheses SQL
    /// needs; pushed, the node read `NOT (x IS NOT DISTINCT FROM true)` and
    /// kept the NULL rows the query excludes.
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

    /// A column `c` of `ty`, and a one-row batch of it.
    fn one_column(ty: &DataType) -> (Arc<Schema>, datafusion::common::DFSchema) {
        let schema = Arc::new(Schema::new(vec![Field::new("c", ty.clone(), true)]));
        let df = datafusion::common::DFSchema::try_from(schema.as_ref().clone()).unwrap();
        (schema, df)
    }

    /// The value and type the node reads back from the text of `c = value`,
    /// parsing and evaluating it as a node does: `Ok(None)` if it is not
    /// pushed, `Err` with the text if a node would refuse it.
    async fn read_back(value: &ScalarValue) -> Result<Option<ScalarValue>, String> {
        let ty = match value.data_type() {
            DataType::Null => DataType::Int64,
            ty => ty,
        };
        let (schema, df) = one_column(&ty);
        let e = col("c").eq(Expr::Literal(value.clone(), None));
        let Some(text) = filter_text(&e, &schema) else {
            return Ok(None);
        };
        let fail = |e: &dyn std::fmt::Display| format!("{text}: {e}");
        quiver_server::scan::filter::check_text(&text).map_err(|e| fail(&e))?;
        let ctx = node_context();
        let parsed = ctx.parse_sql_expr(&text, &df).map_err(|e| fail(&e))?;
        quiver_server::scan::filter::check(&parsed, &text).map_err(|e| fail(&e))?;
        let Expr::BinaryExpr(b) = parsed else {
            return Err(fail(&"not a comparison"));
        };
        // A node folds constants, and leaves `arrow_cast` to DataFusion's
        // simplifier, which makes it a cast.
        let simplifier = ExprSimplifier::new(
            SimplifyContext::builder()
                .with_schema(Arc::new(df.clone()))
                .build(),
        );
        let right = simplifier.simplify(*b.right).map_err(|e| fail(&e))?;
        let physical = ctx.create_physical_expr(right, &df).map_err(|e| fail(&e))?;
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![arrow::array::new_null_array(&ty, 1)],
        )
        .map_err(|e| fail(&e))?;
        let got = physical
            .evaluate(&batch)
            .and_then(|v| v.to_array(1))
            .and_then(|a| ScalarValue::try_from_array(&a, 0))
            .map_err(|e| fail(&e))?;
        Ok(Some(got))
    }

    /// A session that parses filters as a node does: unquoted numbers with
    /// a point or an exponent are exact decimals.
    fn node_context() -> SessionContext {
        let mut config = SessionConfig::new();
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        SessionContext::new_with_config(config)
    }

    /// Same type, and the same value down to the bits of a float.
    fn same(a: &ScalarValue, b: &ScalarValue) -> bool {
        match (a, b) {
            (ScalarValue::Float64(Some(x)), ScalarValue::Float64(Some(y))) => {
                x.to_bits() == y.to_bits()
            }
            (ScalarValue::Float32(Some(x)), ScalarValue::Float32(Some(y))) => {
                x.to_bits() == y.to_bits()
            }
            _ => a.data_type() == b.data_type() && a == b,
        }
    }

    fn every_literal_kind() -> Vec<ScalarValue> {
        use arrow::datatypes::{i256, TimeUnit};
        use ScalarValue::*;
        let max38 = 10i128.pow(38) - 1;
        let max76 = i256::from_string(&"9".repeat(76)).unwrap();
        let mut values = vec![
            Null,
            Boolean(Some(true)),
            Boolean(Some(false)),
            Boolean(None),
            Int8(Some(i8::MIN)),
            Int8(Some(i8::MAX)),
            Int16(Some(-3)),
            Int32(Some(i32::MIN)),
            Int32(Some(i32::MAX)),
            Int64(Some(i64::MIN)),
            Int64(Some(i64::MAX)),
            Int64(Some(-1)),
            Int64(None),
            UInt8(Some(u8::MAX)),
            UInt16(Some(u16::MAX)),
            UInt32(Some(u32::MAX)),
            UInt64(Some(u64::MAX)),
            UInt64(Some(i64::MAX as u64 + 1)),
            UInt64(Some(0)),
            UInt64(None),
            Decimal128(Some(5), 15, 2),
            Decimal128(Some(-5), 15, 2),
            Decimal128(Some(max38), 38, 10),
            Decimal128(Some(-max38), 38, 10),
            Decimal128(Some(max38), 38, 0),
            Decimal128(Some(max38), 38, 38),
            Decimal128(None, 38, 10),
            Decimal128(None, 5, -2),
            Decimal256(Some(max76), 76, 10),
            Decimal256(Some(max76.wrapping_neg()), 76, 76),
            Decimal256(None, 50, 3),
            Decimal256(Some(i256::from_i128(-12345)), 10, 2),
            Decimal256(Some(i256::from_i128(max38)), 38, 38),
            Utf8(Some("it's a \"name\", \\ 100% _?\n ünïcode".into())),
            Utf8(Some(String::new())),
            Utf8(None),
            Utf8View(Some("view".into())),
            Utf8View(None),
            LargeUtf8(Some("large".into())),
            LargeUtf8(None),
            Date32(Some(0)),
            Date32(Some(-719_162)),
            Date32(Some(2_932_896)),
            Date32(Some(19_000)),
            Date32(None),
        ];
        for f in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            1.5,
            -1.5,
            0.1,
            -3.0,
            1e300,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            5e-324,
            -5e-324,
            123_456_789.0,
            9_007_199_254_740_993.0,
        ] {
            values.push(Float64(Some(f)));
        }
        values.push(Float64(None));
        for f in [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            0.1,
            1.1,
            -2.989,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            f32::EPSILON,
            1e-45,
            16_777_216.0,
        ] {
            values.push(Float32(Some(f)));
        }
        values.push(Float32(None));
        for tz in [None, Some("UTC"), Some("+05:30"), Some("Europe/Paris")] {
            let tz: Option<Arc<str>> = tz.map(Into::into);
            for v in [0, -1, 1_700_000_000_123_456, i64::MIN, i64::MAX] {
                values.push(TimestampSecond(Some(v), tz.clone()));
                values.push(TimestampMillisecond(Some(v), tz.clone()));
                values.push(TimestampMicrosecond(Some(v), tz.clone()));
                values.push(TimestampNanosecond(Some(v), tz.clone()));
            }
            values.push(TimestampNanosecond(None, tz.clone()));
            values.push(ScalarValue::try_from(DataType::Timestamp(TimeUnit::Second, tz)).unwrap());
        }
        values
    }

    #[tokio::test]
    async fn every_literal_reads_back_as_the_same_value_and_type() {
        let mut wrong = Vec::new();
        for value in every_literal_kind() {
            match read_back(&value).await {
                Ok(Some(got)) if same(&got, &value) => {}
                Ok(Some(got)) => wrong.push(format!("{value:?} read back as {got:?}")),
                Ok(None) => wrong.push(format!("{value:?} was not pushed")),
                Err(e) => wrong.push(format!("{value:?} is refused: {e}")),
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[tokio::test]
    async fn random_floats_read_back_bit_for_bit() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(25);
        for _ in 0..300 {
            let values = [
                ScalarValue::Float64(Some(f64::from_bits(rng.random()))),
                ScalarValue::Float32(Some(f32::from_bits(rng.random()))),
            ];
            for value in values {
                match read_back(&value)
                    .await
                    .unwrap_or_else(|e| panic!("{value:?}: {e}"))
                {
                    Some(got) => assert!(same(&got, &value), "{value:?} read back as {got:?}"),
                    // Only a NaN of another sign or payload stays local.
                    None => assert!(
                        matches!(value, ScalarValue::Float64(Some(f)) if f.is_nan())
                            || matches!(value, ScalarValue::Float32(Some(f)) if f.is_nan()),
                        "{value:?} was not pushed"
                    ),
                }
            }
        }
    }

    #[test]
    fn literals_without_an_exact_form_stay_local() {
        use arrow::datatypes::i256;
        use ScalarValue::*;
        for value in [
            // Years past 9999 print with a sign arrow does not parse.
            Date32(Some(3_000_000)),
            // Read back as the canonical NaN.
            Float64(Some(-f64::NAN)),
            Float32(Some(f32::from_bits(0x7fc0_0001))),
            // Arrow reads no text as a decimal of negative scale.
            Decimal128(Some(123), 5, -2),
            Decimal256(Some(i256::from_i128(-99_999)), 50, -3),
            // Types whose literals are not written at all.
            Date64(Some(0)),
            Time64Microsecond(Some(1)),
            Binary(Some(vec![1, 2])),
            Binary(None),
            IntervalMonthDayNano(None),
        ] {
            let (schema, _) = one_column(&value.data_type());
            let e = col("c").eq(lit(value.clone()));
            assert_eq!(filter_text(&e, &schema), None, "{value:?}");
        }
    }

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
