//! The objects a table is made of: one listing of a source path, each
//! object with the schema a node sends for it, and the statistics the
//! listing gives (row counts from the footers, the Parquet size).

use arrow::datatypes::SchemaRef;
use quiver_protocol::DeletionVector;

use super::file_stats::FileStats;
use super::schema_merge::{merge_schemas, SchemaConflict};
use crate::error::ClientError;
use crate::results::ObjectInfo;
use crate::routing::QuiverClient;

/// One object of a table and the schema a node sends for it.
#[derive(Debug, Clone)]
pub(super) struct TableObject {
    pub(super) path: String,
    pub(super) schema: SchemaRef,
    /// What a table's log says of its values, when it says anything.
    pub(super) stats: Option<FileStats>,
    /// The rows of it a table's log deletes: sent with every scan of it.
    pub(super) deletion_vector: Option<DeletionVector>,
    /// A table's log names it, so it is never rewritten under its path:
    /// its scans tell the node not to ask the origin again.
    pub(super) immutable: bool,
}

/// The objects under a source path, with their schemas, as one listing saw
/// them: what a [`QuiverTable`] is built from.
#[derive(Debug, Clone)]
pub struct TableFiles {
    pub(super) source: String,
    pub(super) path: String,
    pub(super) objects: Vec<TableObject>,
    pub(super) rows: Option<u64>,
    pub(super) bytes: Option<u64>,
    /// The objects are every Parquet object under `path` (a listing), so a
    /// scan may be planned as one request for the path. False for a set
    /// named by a table's log, which holds only some of them.
    pub(super) whole: bool,
}

impl TableFiles {
    /// Lists `source`/`path` (one object, or every Parquet object under a
    /// prefix ending in `/`) with one ListFlights call.
    pub async fn list(
        client: &QuiverClient,
        source: &str,
        path: &str,
    ) -> Result<TableFiles, ClientError> {
        let objects = client.list(source, path).await?;
        TableFiles::new(source, path, objects)
    }

    /// The files of `source`/`path` from a listing the caller already has
    /// (every entry must lie under `path`, and every Parquet object under
    /// it must be there). Fails with NotFound when there is none, as
    /// planning the path would.
    pub fn new(
        source: &str,
        path: &str,
        objects: Vec<ObjectInfo>,
    ) -> Result<TableFiles, ClientError> {
        TableFiles::build(source, path, objects, true)
    }

    /// Some of the objects under `source`/`path`: those a table's log names
    /// (the others are removed files or another version's). A scan of them
    /// is planned object by object, never as the whole path.
    pub fn named(
        source: &str,
        path: &str,
        objects: Vec<ObjectInfo>,
    ) -> Result<TableFiles, ClientError> {
        TableFiles::build(source, path, objects, false)
    }

    /// Files as a plan encoded them (`QuiverLogicalCodec`): each object's
    /// path, schema, deletion vector and immutability, and the listing's
    /// row and byte counts, without listing again.
    pub fn decoded(
        source: &str,
        path: &str,
        objects: Vec<(String, SchemaRef, Option<DeletionVector>, bool)>,
        rows: Option<u64>,
        bytes: Option<u64>,
        whole: bool,
    ) -> Result<TableFiles, ClientError> {
        if objects.is_empty() {
            return Err(ClientError::Decode(format!(
                "the encoded table {source}/{path} has no objects"
            )));
        }
        Ok(TableFiles {
            source: source.to_string(),
            path: path.to_string(),
            objects: objects
                .into_iter()
                .map(|(path, schema, deletion_vector, immutable)| TableObject {
                    path,
                    schema,
                    stats: None,
                    deletion_vector,
                    immutable,
                })
                .collect(),
            rows,
            bytes,
            whole,
        })
    }

    fn build(
        source: &str,
        path: &str,
        objects: Vec<ObjectInfo>,
        whole: bool,
    ) -> Result<TableFiles, ClientError> {
        if objects.is_empty() {
            return Err(ClientError::Status {
                code: tonic::Code::NotFound,
                message: format!("there are no Parquet objects under {source}/{path}"),
                request_id: None,
            });
        }
        let rows = objects
            .iter()
            .map(|o| o.rows)
            .try_fold(0u64, |sum, r| r.and_then(|r| sum.checked_add(r)));
        let bytes = objects
            .iter()
            .try_fold(0u64, |sum, o| sum.checked_add(o.listing.size));
        let objects = objects
            .into_iter()
            .map(|o| {
                let schema = o.schema.ok_or_else(|| {
                    ClientError::Decode(format!(
                        "the listing of {source}/{} has no readable schema",
                        o.listing.path
                    ))
                })?;
                Ok(TableObject {
                    path: o.listing.path,
                    schema,
                    stats: None,
                    deletion_vector: None,
                    immutable: false,
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(TableFiles {
            source: source.to_string(),
            path: path.to_string(),
            objects,
            rows,
            bytes,
            whole,
        })
    }

    /// The schema the objects of every one of `tables` are read with
    /// together (see [`merge_schemas`]).
    pub fn merged_schema(tables: &[&TableFiles]) -> Result<SchemaRef, Box<SchemaConflict>> {
        let objects: Vec<(String, SchemaRef)> = tables
            .iter()
            .flat_map(|t| {
                t.objects
                    .iter()
                    .map(|o| (format!("{}/{}", t.source, o.path), o.schema.clone()))
            })
            .collect();
        merge_schemas(&objects)
    }
}
