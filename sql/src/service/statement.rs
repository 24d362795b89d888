//! Running statements: planning with parameters bound, streaming the answer
//! while holding one of the node's query slots, and telling the observer how
//! each statement ended, including those that never planned.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::{CommandStatementQuery, TicketStatementQuery};
use arrow_flight::{FlightDescriptor, FlightInfo};
use datafusion::common::tree_node::TreeNode;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use datafusion_distributed::DistributedExec;
use futures::{StreamExt, TryStreamExt};
use tonic::{Request, Response, Status};

use super::encode::{any_bytes, info};
use super::{DoGetStream, QuiverSql};
use crate::error::{distributed_status, status};
use crate::observe::{Outcome, Watch};
use crate::session::{plain, plan, session};

/// `batch` with its columns cast to the types of `schema` ([`plain`]).
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, FlightError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    Ok(quiver_client::plan::to_wire(&batch, schema)?)
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, Status> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Status::invalid_argument(format!("{what} is not UTF-8")))
}

impl QuiverSql {
    async fn context(&self) -> Result<SessionContext, Status> {
        let snapshot = self.catalog().await?;
        let ctx = session(
            snapshot.catalog_list(&self.opts.sources),
            &self.opts.sources[0],
            self.opts.query_memory,
        )?;
        Ok(self
            .distribution
            .coordinate(ctx, self.client().await?)
            .await)
    }

    /// The plan of `sql` with `params` bound, and its session.
    #[tracing::instrument(name = "sql_plan", skip_all)]
    pub(super) async fn planned(
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
    pub(super) async fn execute(
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
        let mut distributed = false;
        let batches = match self
            .distribution
            .explain(&ctx, frame.logical_plan(), &schema)
            .await
            .map_err(status)?
        {
            Some(answer) => Box::pin(RecordBatchStreamAdapter::new(
                schema.clone(),
                futures::stream::once(async move { Ok(answer) }),
            )),
            None => {
                let physical = frame.create_physical_plan().await.map_err(status)?;
                distributed = physical
                    .exists(|p| Ok(p.is::<DistributedExec>()))
                    .map_err(status)?;
                if distributed {
                    if let Some(o) = self.distribution.observer() {
                        o.distributed();
                    }
                }
                execute_stream(physical, ctx.task_ctx()).map_err(status)?
            }
        };
        let out = schema.clone();
        let batches = batches.map(move |b| {
            let _slot = &permit;
            match b {
                Ok(b) => conform(b, &out),
                Err(e) if distributed => Err(FlightError::Tonic(Box::new(distributed_status(e)))),
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
    pub(super) async fn statement_schema(
        &self,
        sql: &str,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<SchemaRef, Status> {
        let (_, p) = self.refused_unless(self.planned(sql, params).await)?;
        Ok(plain(p.schema().as_arrow()))
    }

    /// `planned`, telling the observer of a statement that did not plan:
    /// it never reaches DoGet, so it would not be counted otherwise.
    pub(super) fn refused_unless<T>(&self, planned: Result<T, Status>) -> Result<T, Status> {
        if let (Err(_), Some(observer)) = (&planned, &self.opts.observer) {
            observer.refused();
        }
        planned
    }

    /// The FlightInfo of a statement, whose ticket is the statement itself.
    pub(super) async fn statement_info(
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

    /// Runs the statement a ticket carries.
    pub(super) async fn run_ticket(
        &self,
        ticket: TicketStatementQuery,
    ) -> Result<Response<DoGetStream>, Status> {
        let sql = utf8(&ticket.statement_handle, "the statement")?;
        self.execute(&sql, None).await
    }
}
