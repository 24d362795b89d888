//! One DataFusion session per statement: the current catalog snapshot, a
//! memory pool of its own (so one query over budget fails alone, with
//! ResourceExhausted, instead of taking the node down), and SQL checked to
//! be read-only before it is planned.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::CatalogProviderList;
use datafusion::config::Dialect;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use tonic::Status;

use crate::catalog::DEFAULT_SCHEMA;
use crate::error::status;

/// The runtime of one query (or one task of a distributed query): a
/// memory pool of its own of `memory` bytes, and no spilling.
pub fn runtime(memory: usize) -> Result<Arc<RuntimeEnv>, DataFusionError> {
    let pool = TrackConsumersPool::new(
        GreedyMemoryPool::new(memory),
        std::num::NonZeroUsize::new(3).unwrap_or(std::num::NonZeroUsize::MIN),
    );
    // No spilling: a cache node's disk belongs to the cache tier, so a query
    // over its budget fails (ResourceExhausted) rather than filling it.
    RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(pool))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
}

/// A session over `catalogs` whose queries may use `memory` bytes.
pub fn session(
    catalogs: Arc<dyn CatalogProviderList>,
    default_catalog: &str,
    memory: usize,
) -> Result<SessionContext, Status> {
    let runtime = runtime(memory).map_err(status)?;
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(default_catalog, DEFAULT_SCHEMA)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true);
    // Plain strings, as every Flight SQL client (JDBC included) reads them.
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_catalog_list(catalogs)
        .with_default_features()
        .build();
    Ok(with_exact_numbers(SessionContext::new_with_state(state)))
}

/// `ctx` with the number semantics of Flight SQL (`docs/protocol.md`,
/// "Semantics"): `0.07` and integers past 64 bits are exact decimals, as in
/// standard SQL, and become doubles only beside a float
/// (`quiver_client::literals`); sums and averages are exact or an overflow
/// error, never wrapped (`exact_aggregates`).
pub fn with_exact_numbers(ctx: SessionContext) -> SessionContext {
    let mut state = ctx.state();
    state
        .config_mut()
        .options_mut()
        .sql_parser
        .parse_float_as_decimal = true;
    let mut builder = SessionStateBuilder::new_from_existing(state);
    *builder.analyzer() = Some(quiver_client::literals::analyzer());
    let ctx = SessionContext::new_with_state(builder.build());
    for aggregate in crate::exact_aggregates::udafs() {
        ctx.register_udaf(aggregate);
    }
    ctx
}

/// Refuses anything but a query (or EXPLAIN of one): Quiver is a read-only
/// cache, and a write must never look as if it had succeeded.
fn check_read_only(statement: &Statement) -> Result<(), Status> {
    let refused = |what: &str| {
        Err(Status::invalid_argument(format!(
            "{what} statements are refused: Quiver serves the lake read-only (SELECT, WITH, EXPLAIN and SHOW only)"
        )))
    };
    match statement {
        Statement::Statement(s) => match s.as_ref() {
            ast::Statement::Query(_) => Ok(()),
            ast::Statement::Explain { statement, .. } => match statement.as_ref() {
                ast::Statement::Query(_) => Ok(()),
                _ => refused("EXPLAIN of non-query"),
            },
            ast::Statement::ShowTables { .. } | ast::Statement::ShowColumns { .. } => Ok(()),
            ast::Statement::Insert(_) => refused("INSERT"),
            ast::Statement::Update { .. } => refused("UPDATE"),
            ast::Statement::Delete(_) => refused("DELETE"),
            ast::Statement::Copy { .. } => refused("COPY"),
            ast::Statement::CreateTable(_) | ast::Statement::CreateView { .. } => refused("CREATE"),
            ast::Statement::Drop { .. } => refused("DROP"),
            _ => refused("this kind of"),
        },
        Statement::CreateExternalTable(_) => refused("CREATE EXTERNAL TABLE"),
        Statement::CopyTo(_) => refused("COPY"),
        Statement::Explain(e) => check_read_only(&e.statement),
        _ => refused("this kind of"),
    }
}

/// `sql` with its `?` placeholders numbered `$1`, `$2`, ... from left to
/// right, the form DataFusion binds.
///
/// JDBC, ODBC and DB-API drivers (ADBC's `paramstyle` is `qmark`) write
/// parameters as `?`, which DataFusion would take as one parameter with no
/// number. The tokenizer finds them, so a `?` inside a string, a quoted name
/// or a comment stays as it is. A statement that mixes `?` with numbered
/// (`$1`, `?1`) or named (`$name`) placeholders is refused, since what
/// each `?` stands for would be ambiguous. Text that does not tokenize is
/// left for the parser to report.
pub fn numbered_placeholders(sql: &str) -> Result<Cow<'_, str>, Status> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return Ok(Cow::Borrowed(sql));
    };
    let mut bare = Vec::new();
    let mut numbered = false;
    for t in &tokens {
        match &t.token {
            Token::Placeholder(p) if p == "?" => bare.push(t.span.start),
            Token::Placeholder(_) => numbered = true,
            _ => {}
        }
    }
    if bare.is_empty() {
        return Ok(Cow::Borrowed(sql));
    }
    if numbered {
        return Err(Status::invalid_argument(
            "the statement mixes `?` placeholders with numbered or named ones ($1, $name); use one style",
        ));
    }
    // The tokenizer's locations count characters, from line 1 column 1.
    let mut out = String::with_capacity(sql.len() + 2 * bare.len());
    let mut wanted = bare.iter().peekable();
    let (mut line, mut column) = (1u64, 1u64);
    let mut n = 0usize;
    for c in sql.chars() {
        match wanted.peek() {
            Some(at) if at.line == line && at.column == column && c == '?' => {
                wanted.next();
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
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
    if wanted.next().is_some() {
        return Err(Status::internal(
            "a `?` placeholder was not found where the tokenizer put it",
        ));
    }
    Ok(Cow::Owned(out))
}

/// Parses, checks and plans `sql`: InvalidArgument with DataFusion's message
/// when it does not parse or plan, NotFound for a table that does not
/// exist, InvalidArgument for a statement that writes. `?` placeholders are
/// numbered first ([`numbered_placeholders`]).
pub async fn plan(ctx: &SessionContext, sql: &str) -> Result<LogicalPlan, Status> {
    let sql = numbered_placeholders(sql)?;
    let state = ctx.state();
    let statement = state
        .sql_to_statement(&sql, &Dialect::Generic)
        .map_err(status)?;
    check_read_only(&statement)?;
    for table in state.resolve_table_references(&statement).map_err(status)? {
        let resolved = table.clone().resolve(
            &state.config_options().catalog.default_catalog,
            &state.config_options().catalog.default_schema,
        );
        let exists = ctx
            .catalog(&resolved.catalog)
            .and_then(|c| c.schema(&resolved.schema))
            .is_some_and(|s| s.table_exist(&resolved.table));
        // information_schema is DataFusion's own.
        if !exists
            && resolved.schema.as_ref() != "information_schema"
            && !crate::versioned::register_version(ctx, &resolved).await?
        {
            return Err(Status::not_found(format!(
                "table {table} does not exist (resolved as {}.{}.{}); list tables with GetTables or SHOW TABLES",
                resolved.catalog, resolved.schema, resolved.table
            )));
        }
    }
    let plan = state.statement_to_plan(statement).await.map_err(status)?;
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| Status::invalid_argument(e.message().to_string()))?;
    Ok(plan)
}

/// `schema` as a Flight SQL answer announces and streams it: the type
/// mapping of `docs/protocol.md` (dictionaries expanded, view and large
/// types plain), the one every Quiver answer follows and every client reads.
pub fn plain(schema: &Schema) -> SchemaRef {
    Arc::new(quiver_client::plan::wire_schema(schema))
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field};
    use datafusion::common::ScalarValue;

    use super::*;
    use crate::catalog::Snapshot;

    fn numbered(sql: &str) -> String {
        numbered_placeholders(sql).unwrap().into_owned()
    }

    #[test]
    fn question_marks_are_numbered_left_to_right() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE a = ? AND b < ?"),
            "SELECT a FROM t WHERE a = $1 AND b < $2"
        );
        // Inside strings, quoted names and comments a `?` is text.
        assert_eq!(
            numbered(
                "SELECT '?', \"why?\" -- really?\nFROM t /* ? */ WHERE x = ? AND y LIKE 'a?' AND z=?"
            ),
            "SELECT '?', \"why?\" -- really?\nFROM t /* ? */ WHERE x = $1 AND y LIKE 'a?' AND z=$2"
        );
        // Positions count characters, not bytes, over several lines.
        assert_eq!(
            numbered("SELECT 'ünï' AS \"é\",\n  ?\n, ?"),
            "SELECT 'ünï' AS \"é\",\n  $1\n, $2"
        );
        // Numbered and named ones, and text that does not tokenize, are
        // left as they are.
        for sql in ["SELECT $1, $2", "SELECT $a", "SELECT 'open", "SELECT 1"] {
            assert_eq!(numbered(sql), sql);
        }
    }

    #[test]
    fn mixed_placeholder_styles_are_refused() {
        for sql in [
            "SELECT ?, $2",
            "SELECT $1, ?",
            "SELECT ?, $name",
            "SELECT ?1, ?",
        ] {
            let err = numbered_placeholders(sql).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{sql}");
            assert!(err.message().contains("mixes"), "{}", err.message());
        }
    }

    #[tokio::test]
    async fn question_marks_bind_in_order() {
        let sources = vec!["local".to_string()];
        let ctx = session(Snapshot::default().catalog_list(&sources), "local", 1 << 26).unwrap();
        let p = plan(
            &ctx,
            "SELECT a, '?' AS q FROM (VALUES (1, 'x'), (41, 'y?'), (41, 'z')) AS t(a, b) WHERE a = ? AND b = ?",
        )
        .await
        .unwrap();
        let p = p
            .with_param_values(vec![
                ScalarValue::Int64(Some(41)),
                ScalarValue::Utf8(Some("y?".into())),
            ])
            .unwrap();
        let batches = ctx
            .execute_logical_plan(p)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            1,
            "{text}"
        );
        assert!(text.contains("| 41 | ? |"), "{text}");
    }

    /// A result column of any type is announced as it is streamed: a
    /// dictionary or a large string is not left as it is while the encoder
    /// sends it plain.
    #[test]
    fn plain_maps_every_type_the_encoder_sends_plain() {
        let schema = Schema::new(vec![
            Field::new(
                "d",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("l", DataType::LargeUtf8, true),
            Field::new("v", DataType::Utf8View, true),
            Field::new("i", DataType::Int64, false),
        ]);
        let types: Vec<DataType> = plain(&schema)
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            vec![
                DataType::Utf8,
                DataType::Utf8,
                DataType::Utf8,
                DataType::Int64
            ]
        );
    }
}
