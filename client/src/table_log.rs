//! Tables with a log (Delta Lake), as a node reads them: which directories
//! of a source are such tables (`tables`) and one version of one
//! (`table-snapshot`). The log is read by the node, with the node's
//! credentials; a client never needs access to the object store.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use base64::Engine;
use bytes::Bytes;
use futures::TryStreamExt;
use quiver_protocol::{SnapshotRequest, TableList, TableRoot, TableSnapshot, TablesRequest};

use crate::error::ClientError;
use crate::routing::QuiverClient;

/// A snapshot with its schema decoded.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub wire: TableSnapshot,
    /// Data columns, then partition columns.
    pub schema: SchemaRef,
}

impl QuiverClient {
    /// The Delta tables under `source`/`prefix` (`""` for the whole source).
    pub async fn tables(&self, source: &str, prefix: &str) -> Result<Vec<TableRoot>, ClientError> {
        let body = to_json(&TablesRequest {
            source: source.into(),
            path: prefix.into(),
        })?;
        let answer: TableList = from_json(&self.one_action("tables", body).await?)?;
        Ok(answer.tables)
    }

    /// The version of the table at `request.path` that `request` names.
    pub async fn table_snapshot(&self, request: &SnapshotRequest) -> Result<Snapshot, ClientError> {
        let body = to_json(request)?;
        let wire: TableSnapshot = from_json(&self.one_action("table-snapshot", body).await?)?;
        let ipc = base64::engine::general_purpose::STANDARD
            .decode(&wire.schema)
            .map_err(|e| ClientError::Decode(format!("a snapshot's schema: {e}")))?;
        let schema = Schema::try_from(arrow_flight::IpcMessage(ipc.into()))
            .map_err(|e| ClientError::Decode(format!("a snapshot's schema: {e}")))?;
        Ok(Snapshot {
            wire,
            schema: Arc::new(schema),
        })
    }

    async fn one_action(&self, kind: &'static str, body: Bytes) -> Result<Bytes, ClientError> {
        let results: Vec<Bytes> = self
            .on_any_node(|mut c| {
                let body = body.clone();
                async move {
                    let s = c.do_action(arrow_flight::Action::new(kind, body)).await?;
                    Ok(s.try_collect().await?)
                }
            })
            .await?;
        results
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Decode(format!("{kind} returned nothing")))
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Bytes, ClientError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ClientError::Decode(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))
}
