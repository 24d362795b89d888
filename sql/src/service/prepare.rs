//! Prepared statements: creating one with its parameter and answer schemas,
//! binding its parameters from DoPut, and planning or running it with them.

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    CommandPreparedStatementQuery, DoPutPreparedStatementResult,
};
use arrow_flight::{FlightDescriptor, FlightInfo};
use futures::TryStreamExt;
use tonic::{Request, Response, Status};

use super::encode::{any_bytes, info, schema_bytes};
use super::{DoGetStream, QuiverSql};
use crate::error::status;
use crate::session::plain;

impl QuiverSql {
    /// The FlightInfo of a prepared statement with the parameters bound so
    /// far; its ticket is the command itself.
    pub(super) async fn prepared_info(
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

    /// Runs a prepared statement with its bound parameters.
    pub(super) async fn run_prepared(
        &self,
        cmd: CommandPreparedStatementQuery,
    ) -> Result<Response<DoGetStream>, Status> {
        let prepared = self.prepared.get(&cmd.prepared_statement_handle)?;
        self.execute(&prepared.sql, prepared.params).await
    }

    /// Plans `query` and keeps it as a prepared statement, answering with
    /// its handle, the schema of its answer and that of its parameters.
    pub(super) async fn prepare(
        &self,
        query: ActionCreatePreparedStatementRequest,
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

    /// Binds the parameters a DoPut carries to a prepared statement.
    pub(super) async fn bind(
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
}
