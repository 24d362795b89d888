//! A Delta table as SQL sees it: the live files of one snapshot (never the
//! others under its directory), each partition's values typed by the
//! table's schema, and the table's columns even where no file has them yet
//! (read as NULL, as after an added column).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::datasource::empty::EmptyTable;
use quiver_client::table::TableFiles;
use quiver_client::{ObjectInfo, QuiverClient, QuiverTable, Snapshot};

use crate::partitioned::{Partition, PartitionedTable};

/// Why a snapshot cannot be served as a table: a gRPC code and a sentence.
pub type Problem = (tonic::Code, String);

/// The provider for `snapshot` of a table in `source`, whose objects'
/// schemas come from `listing` (the source's listing, sorted by path).
pub fn provider(
    client: &QuiverClient,
    source: &str,
    snapshot: &Snapshot,
    listing: &[ObjectInfo],
) -> Result<Arc<dyn TableProvider>, Problem> {
    let wire = &snapshot.wire;
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
            (
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
        let files = TableFiles::named(source, &wire.path, objects)
            .map_err(|e| (tonic::Code::Internal, e.to_string()))?;
        parts.push((values, files));
    }
    let all: Vec<&TableFiles> = parts.iter().map(|(_, f)| f).collect();
    let merged = TableFiles::merged_schema(&all)
        .map_err(|c| (tonic::Code::InvalidArgument, c.to_string()))?;
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
        .collect::<Result<Vec<_>, Problem>>()?;
    let table = PartitionedTable::try_new(partition_fields, partitions)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Arc::new(table))
}

/// A partition value as the log writes it, typed as its column.
fn typed(value: Option<String>, field: &Field) -> Result<ScalarValue, Problem> {
    match value {
        None => ScalarValue::try_from(field.data_type()),
        Some(text) => ScalarValue::try_from_string(text, field.data_type()),
    }
    .map_err(|e| {
        invalid(format!(
            "a value of partition column `{}` is not a {}: {e}",
            field.name(),
            field.data_type()
        ))
    })
}

fn invalid(message: String) -> Problem {
    (tonic::Code::InvalidArgument, message)
}
