//! The Flight SQL service: statements, prepared statements and the metadata
//! calls SQL tools browse with. The node's Flight adapter authenticates each
//! call and tags it with a request id before it arrives here.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use quiver_client::{ClientConfig, QuiverClient};
use tokio::sync::{Mutex, OnceCell, Semaphore};
use tonic::{Request, Response, Status, Streaming};

use crate::catalog::{self, DeclaredTable, Snapshot};
use crate::error::{client_status, status};
use crate::observe::{Outcome, StatementObserver, Watch};
use crate::prepared::Registry;
use crate::session::{plain, plan, session};

/// How the SQL service is set up by its node.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// The node's sources, in configuration order: each is a catalog, and
    /// the first is the default.
    pub sources: Vec<String>,
    pub declared: Vec<DeclaredTable>,
    /// Memory one query may use (its joins, sorts and aggregates).
    pub query_memory: usize,
    /// Queries running at once; one more is answered ResourceExhausted.
    pub max_queries: usize,
    pub max_prepared: usize,
    /// How long a catalog listing is trusted before it is read again.
    pub refresh: Duration,
    /// How the engine reaches the cluster: the node's own URL, TLS, token.
    pub client: ClientConfig,
    /// Told of every statement run and how it ended (the node's metrics).
    pub observer: Option<Arc<dyn StatementObserver>>,
}

pub struct QuiverSql {
    opts: SqlOptions,
    client: OnceCell<QuiverClient>,
    snapshot: RwLock<(Option<Instant>, Arc<Snapshot>)>,
    /// Serialises refreshes, so a burst of queries lists the lake once.
    refreshing: Mutex<()>,
    prepared: Registry,
    queries: Arc<Semaphore>,
    sql_info: SqlInfoData,
    xdbc: XdbcTypeInfoData,
}

impl std::fmt::Debug for QuiverSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuiverSql")
            .field("sources", &self.opts.sources)
            .finish_non_exhaustive()
    }
}

type DoGetStream = <QuiverSql as FlightService>::DoGetStream;

fn any_bytes(message: impl ProstMessageExt) -> bytes::Bytes {
    message.as_any().encode_to_vec().into()
}

fn schema_bytes(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| {
            Status::internal(format!("cannot encode a schema: {e}"))
        })?;
    Ok(bytes)
}

fn info(
    schema: &Schema,
    ticket: bytes::Bytes,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("cannot encode a schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor))
}

/// The FlightInfo of a metadata command: its schema, and one endpoint whose
/// ticket is the command itself.
fn answer(
    schema: SchemaRef,
    command: impl ProstMessageExt,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    Ok(Response::new(info(
        &schema,
        any_bytes(command),
        request.into_inner(),
    )?))
}

/// One batch as a stream of Flight messages.
fn batch_stream(
    batch: Result<RecordBatch, impl std::fmt::Display>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| Status::internal(format!("cannot build the answer: {e}")))?;
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(stream)))
}

/// `batch` with its columns cast to the types of `schema` ([`plain`]).
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, FlightError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    Ok(quiver_client::plan::to_wire(&batch, schema)?)
}

fn read_only() -> Status {
    Status::invalid_argument(
        "writes are refused: Quiver serves the lake read-only (SELECT, WITH, EXPLAIN and SHOW only)",
    )
}

impl QuiverSql {
    pub fn new(opts: SqlOptions) -> Result<QuiverSql, Status> {
        if opts.sources.is_empty() {
            return Err(Status::internal("Flight SQL needs at least one source"));
        }
        Ok(QuiverSql {
            prepared: Registry::new(opts.max_prepared),
            queries: Arc::new(Semaphore::new(opts.max_queries)),
            client: OnceCell::new(),
            snapshot: RwLock::new((None, Arc::new(Snapshot::default()))),
            refreshing: Mutex::new(()),
            sql_info: crate::metadata::sql_info()?,
            xdbc: crate::metadata::xdbc_types()?,
            opts,
        })
    }

    /// The client the engine scans with, connected on first use (the node
    /// is serving by then).
    async fn client(&self) -> Result<&QuiverClient, Status> {
        self.client
            .get_or_try_init(|| QuiverClient::connect(self.opts.client.clone()))
            .await
            .map_err(|e| client_status(&e))
    }

    /// Reads the lake's listings again and swaps in the new catalog.
    pub async fn refresh(&self) -> Result<Arc<Snapshot>, Status> {
        let _one = self.refreshing.lock().await;
        self.refresh_now().await
    }

    /// The refresh itself; the caller holds `refreshing`.
    async fn refresh_now(&self) -> Result<Arc<Snapshot>, Status> {
        let client = self.client().await?;
        let previous = self.current().1;
        let next = Arc::new(
            catalog::refresh(client, &self.opts.sources, &self.opts.declared, &previous).await,
        );
        for e in &next.errors {
            tracing::warn!(error = %e, "SQL catalog");
        }
        let mut slot = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        *slot = (Some(Instant::now()), next.clone());
        Ok(next)
    }

    fn current(&self) -> (Option<Instant>, Arc<Snapshot>) {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current snapshot if it is younger than the refresh interval.
    fn fresh(&self) -> Option<Arc<Snapshot>> {
        match self.current() {
            (Some(at), snapshot) if at.elapsed() < self.opts.refresh => Some(snapshot),
            _ => None,
        }
    }

    /// The catalog, refreshed first when it is older than the interval. A
    /// burst of statements finding it stale lists the lake once: the others
    /// wait for that refresh and use its result.
    async fn catalog(&self) -> Result<Arc<Snapshot>, Status> {
        if let Some(s) = self.fresh() {
            return Ok(s);
        }
        let _one = self.refreshing.lock().await;
        match self.fresh() {
            Some(s) => Ok(s),
            None => self.refresh_now().await,
        }
    }

    async fn context(&self) -> Result<SessionContext, Status> {
        let snapshot = self.catalog().await?;
        session(
            snapshot.catalog_list(&self.opts.sources),
            &self.opts.sources[0],
            self.opts.query_memory,
        )
    }

    /// The plan of `sql` with `params` bound, and its session.
    #[tracing::instrument(name = "sql_plan", skip_all)]
    async fn planned(
        &self,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<(SessionContext, datafusion::logical_expr::LogicalPlan), Status> {
        let ctx = self.context().await?;
        let mut p = plan(&ctx, sql).await?;
        if let Some(values) = params {
            let wanted = p.get_parameter_types().map_err(status)?.len();
            if values.len() != wanted {
                return Err(Status::invalid_argument(format!(
                    "the statement has {wanted} parameter(s) (`?` or $1, $2, ...) but {} value(s) were bound",
                    values.len()
                )));
            }
            p = p.with_param_values(values).map_err(status)?;
        }
        Ok((ctx, p))
    }

    /// Runs a statement and streams its answer as the client reads it,
    /// reporting it to the observer when the answer ends.
    async fn execute(
        &self,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut watch = Watch::start(self.opts.observer.clone());
        match self.answer(sql, params).await {
            Ok(stream) => Ok(Response::new(watch.follow(stream))),
            Err(e) => {
                watch.finish(Outcome::Error);
                Err(e)
            }
        }
    }

    /// A statement's answer, holding one of `max_queries` slots until the
    /// stream ends. Its span lasts as long, and the stream is read inside
    /// it, so the scans the statement sends to the nodes join its trace.
    #[tracing::instrument(name = "sql_execute", skip_all)]
    async fn answer(
        &self,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<DoGetStream, Status> {
        let permit = self.queries.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this node is already running its maximum of {} SQL queries; retry shortly",
                self.opts.max_queries
            ))
        })?;
        let (ctx, p) = self.planned(sql, params).await?;
        let frame = ctx.execute_logical_plan(p).await.map_err(status)?;
        let schema = plain(frame.schema().as_arrow());
        let batches = frame.execute_stream().await.map_err(status)?;
        let out = schema.clone();
        let batches = batches.map(move |b| {
            let _slot = &permit;
            match b {
                Ok(b) => conform(b, &out),
                Err(e) => Err(FlightError::Tonic(Box::new(status(e)))),
            }
        });
        let mut stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        let span = tracing::Span::current();
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            let _in = span.enter();
            stream.poll_next_unpin(cx)
        })))
    }

    /// The schema of a statement's answer, when a client asks before
    /// running it.
    async fn statement_schema(
        &self,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<SchemaRef, Status> {
        let (_, p) = self.refused_unless(self.planned(sql, params).await)?;
        Ok(plain(p.schema().as_arrow()))
    }

    /// `planned`, telling the observer of a statement that did not plan:
    /// it never reaches DoGet, so it would not be counted otherwise.
    fn refused_unless<T>(&self, planned: Result<T, Status>) -> Result<T, Status> {
        if let (Err(_), Some(observer)) = (&planned, &self.opts.observer) {
            observer.refused();
        }
        planned
    }

    /// Every table of the current catalog, with its Arrow schema.
    async fn tables(&self) -> Result<Vec<(catalog::TableName, SchemaRef)>, Status> {
        let snapshot = self.catalog().await?;
        Ok(snapshot
            .names()
            .filter_map(|n| snapshot.provider(n).map(|p| (n.clone(), p.schema())))
            .collect())
    }
}

fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, Status> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Status::invalid_argument(format!("{what} is not UTF-8")))
}

#[tonic::async_trait]
impl FlightSqlService for QuiverSql {
    type FlightService = QuiverSql;

    /// The node answers handshakes itself (Basic -> Bearer); this is never
    /// reached through it.
    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<BoxStream<'static, Result<HandshakeResponse, Status>>>, Status> {
        Err(Status::unimplemented("the node answers handshakes"))
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.statement_schema(&query.query, None).await?;
        // The ticket is the statement itself: any node can run it, and
        // nothing is kept between the two calls.
        let ticket = any_bytes(TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        });
        Ok(Response::new(info(&schema, ticket, request.into_inner())?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let sql = utf8(&ticket.statement_handle, "the statement")?;
        self.execute(&sql, None).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let prepared = self.prepared.get(&cmd.prepared_statement_handle)?;
        let schema = self
            .statement_schema(&prepared.sql, prepared.params)
            .await?;
        Ok(Response::new(info(
            &schema,
            any_bytes(cmd),
            request.into_inner(),
        )?))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let prepared = self.prepared.get(&cmd.prepared_statement_handle)?;
        self.execute(&prepared.sql, prepared.params).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let (_, p) = self.refused_unless(self.planned(&query.query, None).await)?;
        let mut params: Vec<(usize, Option<DataType>)> = p
            .get_parameter_types()
            .map_err(status)?
            .into_iter()
            .filter_map(|(name, ty)| Some((name.strip_prefix('$')?.parse().ok()?, ty)))
            .collect();
        params.sort_by_key(|(n, _)| *n);
        let parameter_schema = Schema::new(
            params
                .iter()
                .map(|(n, ty)| {
                    Field::new(format!("${n}"), ty.clone().unwrap_or(DataType::Null), true)
                })
                .collect::<Vec<_>>(),
        );
        // Without parameters the plan's schema is final; with them it is
        // what DataFusion inferred, which binding may refine.
        let dataset_schema = plain(p.schema().as_arrow());
        let handle = self.prepared.create(query.query)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: schema_bytes(&dataset_schema)?,
            parameter_schema: schema_bytes(&parameter_schema)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let flight_data = request.into_inner().map_err(FlightError::from);
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(flight_data)
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("cannot read the parameters: {e}")))?;
        self.prepared
            .bind(&cmd.prepared_statement_handle, &batches)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(cmd.prepared_statement_handle),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        self.prepared.close(&query.prepared_statement_handle)
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn do_put_statement_ingest(
        &self,
        _ticket: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(Status::unimplemented(
            "transactions are not supported: Quiver serves the lake read-only",
        ))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        answer(query.into_builder().schema(), query, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut b = query.into_builder();
        for source in &self.opts.sources {
            b.append(source);
        }
        batch_stream(b.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        answer(query.clone().into_builder().schema(), query, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tables = self.tables().await?;
        let mut b = query.into_builder();
        let mut seen = std::collections::BTreeSet::new();
        for source in &self.opts.sources {
            seen.insert((source.clone(), catalog::DEFAULT_SCHEMA.to_string()));
        }
        for ((c, s, _), _) in tables {
            seen.insert((c, s));
        }
        for (c, s) in seen {
            b.append(c, s);
        }
        batch_stream(b.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        answer(query.clone().into_builder().schema(), query, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tables = self.tables().await?;
        let mut b = query.into_builder();
        for ((c, s, t), schema) in tables {
            b.append(c, s, &t, "TABLE", &schema)
                .map_err(|e| Status::internal(format!("cannot list table {t}: {e}")))?;
        }
        batch_stream(b.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        answer(query.into_builder().schema(), query, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut b = query.into_builder();
        b.append("TABLE");
        batch_stream(b.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        answer(
            query.clone().into_builder(&self.sql_info).schema(),
            query,
            request,
        )
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        batch_stream(query.into_builder(&self.sql_info).build())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        answer(query.into_builder(&self.xdbc).schema(), query, request)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        batch_stream(query.into_builder(&self.xdbc).build())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        answer(primary_keys_schema(), query, request)
    }

    /// The lake's tables declare no keys: always empty.
    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        batch_stream(Ok::<_, Status>(RecordBatch::new_empty(
            primary_keys_schema(),
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
