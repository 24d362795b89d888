//! A Delta table read through Quiver: the live files of one snapshot of its
//! log (never the others under its directory, which the log removed), each
//! partition's values typed by the table's schema, and the table's columns
//! even where no file has them yet (read as NULL, as after an added
//! column). The node reads the log (`table-snapshot`); this builds the
//! DataFusion table from what it answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::datasource::empty::EmptyTable;
use quiver_protocol::{DeletionVector, SnapshotRequest};

use super::file_stats::FileStats;
use super::files::TableFiles;
use super::partitioned::{Partition, PartitionedTable};
use super::renamed::RenamedTable;
use super::QuiverTable;
use crate::error::ClientError;
use crate::results::ObjectInfo;
use crate::routing::QuiverClient;
use crate::table_log::Snapshot;

/// Which version of a Delta table to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AsOf {
    #[default]
    Latest,
    Version(u64),
    /// RFC 3339: the latest version committed at or before it.
    Time(String),
}

impl AsOf {
    /// `v3` is version 3; anything else is taken as an RFC 3339 time,
    /// which the node checks.
    pub fn parse(text: &str) -> AsOf {
        match text.strip_prefix('v').map(str::parse::<u64>) {
            Some(Ok(v)) => AsOf::Version(v),
            _ => AsOf::Time(text.to_string()),
        }
    }
}

impl QuiverTable {
    /// The Delta table whose directory is `source`/`path`, at `as_of`.
    /// Fails with NotFound when the directory has no log, and with the
    /// node's reason when the log needs what it cannot honour.
    pub async fn delta(
        client: QuiverClient,
        source: &str,
        path: &str,
        as_of: AsOf,
    ) -> Result<Arc<dyn TableProvider>, ClientError> {
        let snapshot = snapshot(&client, source, path, as_of).await?;
        from_snapshot(&client, source, &snapshot).await
    }

    /// What `source`/`path` names: the Delta table when it is a directory
    /// with a log, else the Parquet objects under it (as [`try_new`]).
    /// Only a directory without a log is read as Parquet: a Delta table
    /// that cannot be served fails with the reason.
    ///
    /// [`try_new`]: QuiverTable::try_new
    pub async fn open(
        client: QuiverClient,
        source: &str,
        path: &str,
    ) -> Result<Arc<dyn TableProvider>, ClientError> {
        if path.ends_with('/') {
            match snapshot(&client, source, path, AsOf::Latest).await {
                Ok(snapshot) => return from_snapshot(&client, source, &snapshot).await,
                Err(ClientError::Status {
                    code: tonic::Code::NotFound,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Arc::new(QuiverTable::try_new(client, source, path).await?))
    }
}

async fn snapshot(
    client: &QuiverClient,
    source: &str,
    path: &str,
    as_of: AsOf,
) -> Result<Snapshot, ClientError> {
    let (version, timestamp) = match as_of {
        AsOf::Latest => (None, None),
        AsOf::Version(v) => (Some(v), None),
        AsOf::Time(t) => (None, Some(t)),
    };
    client
        .table_snapshot(&SnapshotRequest {
            source: source.to_string(),
            path: path.to_string(),
            version,
            timestamp,
        })
        .await
}

/// The table of `snapshot`, with its files' schemas from a listing of its
/// directory.
async fn from_snapshot(
    client: &QuiverClient,
    source: &str,
    snapshot: &Snapshot,
) -> Result<Arc<dyn TableProvider>, ClientError> {
    let listing = client.list(source, &snapshot.wire.path).await?;
    delta_provider(client, source, snapshot, &listing)
}

fn refused(code: tonic::Code, message: String) -> ClientError {
    ClientError::Status {
        code,
        message,
        request_id: None,
    }
}

/// The provider for `snapshot` of a table in `source`, whose objects'
/// schemas come from `listing` (a listing holding every live file). A
/// table that maps columns is built over its files' physical names, then
/// shown under the names its schema gives ([`RenamedTable`]).
pub fn delta_provider(
    client: &QuiverClient,
    source: &str,
    snapshot: &Snapshot,
    listing: &[ObjectInfo],
) -> Result<Arc<dyn TableProvider>, ClientError> {
    let names = &snapshot.wire.column_mapping;
    if names.is_empty() {
        return files_provider(client, source, snapshot, listing);
    }
    let physical = |name: &String| names.get(name).cloned().unwrap_or_else(|| name.clone());
    let schema = Schema::new(
        snapshot
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_name(physical(f.name())))
            .collect::<Vec<_>>(),
    );
    let mut wire = snapshot.wire.clone();
    wire.partition_columns = wire.partition_columns.iter().map(physical).collect();
    let inner = files_provider(
        client,
        source,
        &Snapshot {
            wire,
            schema: Arc::new(schema),
        },
        listing,
    )?;
    let shown: HashMap<String, String> =
        names.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    Ok(Arc::new(RenamedTable::try_new(inner, &shown)?))
}

/// The provider of `snapshot` whose column names are those of the files.
fn files_provider(
    client: &QuiverClient,
    source: &str,
    snapshot: &Snapshot,
    listing: &[ObjectInfo],
) -> Result<Arc<dyn TableProvider>, ClientError> {
    let wire = &snapshot.wire;
    let invalid = |message: String| refused(tonic::Code::InvalidArgument, message);
    let by_path: HashMap<&str, &ObjectInfo> = listing
        .iter()
        .map(|o| (o.listing.path.as_str(), o))
        .collect();
    let partition_fields: Vec<Field> = wire
        .partition_columns
        .iter()
        .map(|c| {
            snapshot
                .schema
                .field_with_name(c)
                .map(|f| f.clone().with_nullable(true))
                .map_err(|_| invalid(format!("partition column `{c}` is not in its schema")))
        })
        .collect::<Result<_, _>>()?;
    let mut groups: BTreeMap<Vec<Option<String>>, Vec<ObjectInfo>> = BTreeMap::new();
    for file in &wire.files {
        let object = by_path.get(file.path.as_str()).ok_or_else(|| {
            refused(
                tonic::Code::NotFound,
                format!(
                    "version {} of its log names `{}`, which the source does not hold (removed by VACUUM, or not yet visible)",
                    wire.version, file.path
                ),
            )
        })?;
        let key = wire
            .partition_columns
            .iter()
            .map(|c| file.partition_values.get(c).cloned().flatten())
            .collect();
        groups.entry(key).or_default().push((*object).clone());
    }
    if groups.is_empty() {
        return Ok(Arc::new(EmptyTable::new(snapshot.schema.clone())));
    }
    let mut parts = Vec::new();
    for (values, objects) in groups {
        parts.push((values, TableFiles::named(source, &wire.path, objects)?));
    }
    let all: Vec<&TableFiles> = parts.iter().map(|(_, f)| f).collect();
    let merged = TableFiles::merged_schema(&all).map_err(|c| invalid(c.to_string()))?;
    // The table's data columns in its order: as the files hold them when
    // some do, else as the log declares them (no file has the column yet).
    let file_schema = Arc::new(Schema::new(
        snapshot
            .schema
            .fields()
            .iter()
            .filter(|f| !wire.partition_columns.contains(f.name()))
            .map(|f| match merged.field_with_name(f.name()) {
                Ok(own) => own.clone(),
                Err(_) => f.as_ref().clone().with_nullable(true),
            })
            .collect::<Vec<_>>(),
    ));
    let stats: HashMap<&str, FileStats> = wire
        .files
        .iter()
        .filter_map(|f| {
            Some((
                f.path.as_str(),
                FileStats::from_delta(f.stats.as_ref()?, &file_schema),
            ))
        })
        .collect();
    let vectors: HashMap<&str, &DeletionVector> = wire
        .files
        .iter()
        .filter_map(|f| Some((f.path.as_str(), f.deletion_vector.as_ref()?)))
        .collect();
    for (_, files) in &mut parts {
        let mut deleted: u64 = 0;
        for object in &mut files.objects {
            object.stats = stats.get(object.path.as_str()).cloned();
            object.deletion_vector = vectors.get(object.path.as_str()).map(|dv| (*dv).clone());
            // Delta never rewrites a data file under its path.
            object.immutable = true;
            deleted = deleted.saturating_add(
                object
                    .deletion_vector
                    .as_ref()
                    .map_or(0, |dv| dv.cardinality),
            );
        }
        // The footers count the rows the log deletes.
        files.rows = files.rows.map(|r| r.saturating_sub(deleted));
    }
    if partition_fields.is_empty() {
        let Some((_, files)) = parts.pop() else {
            return Ok(Arc::new(EmptyTable::new(snapshot.schema.clone())));
        };
        return Ok(Arc::new(QuiverTable::from_files(
            client.clone(),
            files,
            file_schema,
        )));
    }
    let partitions = parts
        .into_iter()
        .map(|(values, files)| {
            let values = values
                .into_iter()
                .zip(&partition_fields)
                .map(|(v, f)| typed(v, f))
                .collect::<Result<_, _>>()?;
            Ok(Partition {
                values,
                table: Arc::new(QuiverTable::from_files(
                    client.clone(),
                    files,
                    file_schema.clone(),
                )),
            })
        })
        .collect::<Result<Vec<_>, ClientError>>()?;
    Ok(Arc::new(PartitionedTable::try_new(
        partition_fields,
        partitions,
    )?))
}

/// A partition value as the log writes it, typed as its column.
fn typed(value: Option<String>, field: &Field) -> Result<ScalarValue, ClientError> {
    match value {
        None => ScalarValue::try_from(field.data_type()),
        Some(text) => ScalarValue::try_from_string(text, field.data_type()),
    }
    .map_err(|e| {
        refused(
            tonic::Code::InvalidArgument,
            format!(
                "a value of partition column `{}` is not a {}: {e}",
                field.name(),
                field.data_type()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_times() {
        assert_eq!(AsOf::parse("v3"), AsOf::Version(3));
        assert_eq!(
            AsOf::parse("2026-12-01T00:00:00Z"),
            AsOf::Time("2026-12-01T00:00:00Z".into())
        );
        assert_eq!(AsOf::parse("vx"), AsOf::Time("vx".into()));
    }
}
