//! The metadata commands SQL tools browse the lake with (GetCatalogs,
//! GetDbSchemas, GetTables, GetTableTypes, GetSqlInfo, GetXdbcTypeInfo,
//! GetPrimaryKeys): each answered with one batch built from the current
//! catalog or the service's fixed descriptions.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, ProstMessageExt};
use arrow_flight::{FlightDescriptor, FlightInfo};
use futures::TryStreamExt;
use tonic::{Request, Response, Status};

use super::encode::{any_bytes, info};
use super::{DoGetStream, QuiverSql};
use crate::catalog;

/// The FlightInfo of a metadata command: its schema, and one endpoint whose
/// ticket is the command itself.
pub(super) fn answer(
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
pub(super) fn batch_stream(
    batch: Result<RecordBatch, impl std::fmt::Display>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| Status::internal(format!("cannot build the answer: {e}")))?;
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(stream)))
}

pub(super) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

impl QuiverSql {
    /// Every table of the current catalog, with its Arrow schema.
    async fn tables(&self) -> Result<Vec<(catalog::TableName, SchemaRef)>, Status> {
        let snapshot = self.catalog().await?;
        Ok(snapshot
            .names()
            .filter_map(|n| snapshot.provider(n).map(|p| (n.clone(), p.schema())))
            .collect())
    }

    /// Every source's default schema and every schema holding a table.
    pub(super) async fn schemas(
        &self,
        query: CommandGetDbSchemas,
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

    /// Every table of the catalog, with its schema.
    pub(super) async fn table_list(
        &self,
        query: CommandGetTables,
    ) -> Result<Response<DoGetStream>, Status> {
        let tables = self.tables().await?;
        let mut b = query.into_builder();
        for ((c, s, t), schema) in tables {
            b.append(c, s, &t, "TABLE", &schema)
                .map_err(|e| Status::internal(format!("cannot list table {t}: {e}")))?;
        }
        batch_stream(b.build())
    }
}
