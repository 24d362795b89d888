//! Tables with a log: which directories of a source are tables of a format
//! (Delta Lake today) and what one version of such a table is made of.
//!
//! A table format answers with a [`TableSnapshot`]: the schema, the
//! partition columns and the live data files with their partition values.
//! Everything downstream (planning, the caches, the scans) sees only plain
//! Parquet objects of the source, so a format plugs in here and nowhere
//! else: Iceberg will be a second implementation of [`snapshot`]'s match
//! once `iceberg` is released on arrow 59 (`docs/architecture.md`, "Table
//! formats").

pub mod deletion_vector;
mod delta;

use std::time::Duration;

use bytes::Bytes;
use quiver_protocol::{SnapshotRequest, TableFormat, TableList, TableRoot, TablesRequest};

use crate::error::{QuiverError, Result};
use crate::node_core::NodeCore;
use crate::source::Target;

/// The longest reading one table's log may take: a log is small next to
/// its data, so this bounds a stuck origin rather than a slow table.
const LOG_TIMEOUT: Duration = Duration::from_secs(60);

/// `tables`: the Delta tables under a prefix of a source, from the same
/// (cached) listing ListFlights uses.
pub async fn tables(core: &NodeCore, body: &[u8]) -> Result<Bytes> {
    let req: TablesRequest = parse(body, "tables takes {\"source\", \"path\"}")?;
    let Target::Prefix { source, prefix } = core.sources.resolve_named(&req.source, &req.path)?
    else {
        return Err(QuiverError::invalid(format!(
            "`{}` is an object key; `tables` takes a prefix ending in `/` (or \"\")",
            req.path
        )));
    };
    let tables = source
        .delta_roots(&prefix)
        .await?
        .into_iter()
        .map(|path| TableRoot {
            path,
            format: TableFormat::Delta,
        })
        .collect();
    Ok(json(&TableList { tables }))
}

/// `table-snapshot`: one version of the table at a directory.
pub async fn snapshot(core: &NodeCore, body: &[u8]) -> Result<Bytes> {
    let req: SnapshotRequest = parse(
        body,
        "table-snapshot takes {\"source\", \"path\", \"version\"?, \"timestamp\"?}",
    )?;
    let at = At::of(&req)?;
    let root = format!("{}/", req.path.trim_end_matches('/'));
    let Target::Prefix { source, prefix } = core.sources.resolve_named(&req.source, &root)? else {
        return Err(QuiverError::invalid(format!(
            "`{}` does not name a table directory",
            req.path
        )));
    };
    if prefix.as_ref().is_empty() {
        return Err(QuiverError::invalid(
            "a table's directory is inside the source, not its root",
        ));
    }
    let snapshot = tokio::time::timeout(LOG_TIMEOUT, delta::snapshot(&source, &root, at))
        .await
        .map_err(|_| {
            QuiverError::Unavailable(format!(
                "reading the log of {} took longer than {}s",
                source.describe(&prefix),
                LOG_TIMEOUT.as_secs()
            ))
        })??;
    Ok(json(&snapshot))
}

/// Which version of a table to read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum At {
    Latest,
    Version(u64),
    /// The latest version committed at or before this time.
    Time(chrono::DateTime<chrono::Utc>),
}

impl At {
    fn of(req: &SnapshotRequest) -> Result<At> {
        match (req.version, &req.timestamp) {
            (None, None) => Ok(At::Latest),
            (Some(v), None) => Ok(At::Version(v)),
            (None, Some(t)) => chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| At::Time(t.with_timezone(&chrono::Utc)))
                .map_err(|e| {
                    QuiverError::invalid(format!(
                        "timestamp `{t}` is not RFC 3339 (e.g. 2026-12-01T00:00:00Z): {e}"
                    ))
                }),
            (Some(_), Some(_)) => Err(QuiverError::invalid(
                "give a version or a timestamp, not both",
            )),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| QuiverError::invalid(format!("{shape}: {e}")))
}

fn json<T: serde::Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// The snapshot's schema as the wire carries it: an Arrow IPC schema
/// message (as in a FlightInfo), base64.
fn encode_schema(schema: &arrow::datatypes::Schema) -> Result<String> {
    use base64::Engine;
    let options = arrow::ipc::writer::IpcWriteOptions::default();
    let message =
        arrow_flight::IpcMessage::try_from(arrow_flight::SchemaAsIpc::new(schema, &options))
            .map_err(|e| QuiverError::Internal(format!("cannot encode the table's schema: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(message.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_times_are_exclusive() {
        let req = |version, timestamp: Option<&str>| SnapshotRequest {
            source: "s".into(),
            path: "t/".into(),
            version,
            timestamp: timestamp.map(String::from),
        };
        assert_eq!(At::of(&req(None, None)).unwrap(), At::Latest);
        assert_eq!(At::of(&req(Some(2), None)).unwrap(), At::Version(2));
        assert!(matches!(
            At::of(&req(None, Some("2026-12-01T00:00:00Z"))).unwrap(),
            At::Time(_)
        ));
        assert!(At::of(&req(None, Some("yesterday"))).is_err());
        assert!(At::of(&req(Some(1), Some("2026-12-01T00:00:00Z"))).is_err());
    }
}
