//! The Flight SQL service: statements, prepared statements and the metadata
//! calls SQL tools browse with. The node's Flight adapter authenticates each
//! call and tags it with a request id before it arrives here.
//!
//! This module holds the service and its catalog; its calls are answered by
//! `statement` (running statements), `prepare` (prepared statements and
//! their parameters) and `browse` (the metadata commands), with the
//! Flight messages they share built by `encode`.

mod browse;
mod encode;
mod prepare;
mod statement;
mod worker_sessions;

pub use worker_sessions::WorkerSessions;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
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
    DoPutPreparedStatementResult, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use futures::stream::BoxStream;
use quiver_client::{ClientConfig, QuiverClient};
use tokio::sync::{Mutex, OnceCell, Semaphore};
use tonic::{Request, Response, Status, Streaming};

use datafusion::error::DataFusionError;

use crate::catalog::{self, DeclaredTable, Snapshot};
use crate::distributed::{DistributedOptions, Distribution};
use crate::error::client_status;
use crate::observe::StatementObserver;
use crate::prepared::Registry;
use browse::{answer, batch_stream, primary_keys_schema};

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
    /// Whether statements run in stages on the cluster's nodes.
    pub distributed: DistributedOptions,
}

pub struct QuiverSql {
    opts: SqlOptions,
    /// Distributed statements: this node's coordinating and worker sides.
    distribution: Distribution,
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
        let distribution = Distribution::new(
            &opts.distributed,
            &opts.client.connector,
            opts.client.local.clone(),
            opts.observer.clone(),
        )
        .map_err(Status::invalid_argument)?;
        Ok(QuiverSql {
            distribution,
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

    /// The session of one task of a distributed statement this node runs
    /// as a worker ([`WorkerSessions`]).
    pub(crate) async fn worker_session(
        &self,
        builder: datafusion::execution::SessionStateBuilder,
    ) -> Result<datafusion::execution::SessionState, DataFusionError> {
        let client = self
            .client()
            .await
            .map_err(|s| DataFusionError::External(Box::new(s)))?;
        self.distribution
            .worker_state(builder, client, self.opts.query_memory)
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
        self.statement_info(query, request).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.run_ticket(ticket).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.prepared_info(cmd, request).await
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.run_prepared(cmd).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.prepare(query).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.bind(cmd, request).await
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
        self.schemas(query).await
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
        self.table_list(query).await
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
