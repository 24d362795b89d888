//! Delta Lake: a table's log read with `deltalake-core` over the source's
//! own object store (the node's credentials, its circuit breaker), never a
//! hand-written log reader.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use deltalake_core::kernel::engine::arrow_conversion::TryIntoArrow;
use deltalake_core::kernel::{
    ColumnMetadataKey, DataType, DeletionVectorDescriptor, MetadataValue, StorageType, StructType,
};
use deltalake_core::logstore::{
    default_logstore, logstore_factories, LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig,
};
use deltalake_core::{DeltaResult, DeltaTableBuilder, DeltaTableError};
use quiver_protocol::{
    DeletionVector, DeletionVectorStorage, TableFile, TableFormat, TableSnapshot,
};
use url::Url;

use super::{encode_schema, At};
use crate::error::{QuiverError, Result};
use crate::source::Source;

/// The URL scheme under which a source's store is handed to
/// `deltalake-core`: its own registry only knows `file://` and `memory://`
/// without the cloud crates, and the node's store already is the right one.
const SCHEME: &str = "quiver";

/// Reader features a read of the live files honours: deletion vectors
/// travel with their files to the scans, which drop the rows they delete;
/// column mapping by name travels with the snapshot, whose readers rename
/// the files' physical columns; the others need the checks below, as they
/// depend on the table's state: column mapping (mode `none` or `name`) and
/// variant columns (none in the schema; delta-rs lists the feature on
/// every table it creates with deletion vectors enabled).
const HONOURED: [&str; 7] = [
    "timestampNtz",
    "v2Checkpoint",
    "vacuumProtocolCheck",
    "deletionVectors",
    "columnMapping",
    "variantType",
    "variantType-preview",
];

/// Hands `deltalake-core` the store it is given, rooted at the table.
struct SourceStores;

impl LogStoreFactory for SourceStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_scheme() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| match Url::parse(&format!("{SCHEME}://")) {
        Ok(url) => {
            logstore_factories().insert(url, Arc::new(SourceStores));
            true
        }
        Err(_) => false,
    });
    ok.then_some(())
        .ok_or_else(|| QuiverError::Internal("cannot register the Delta log store".into()))
}

/// The snapshot of the Delta table at `root` (a directory of `source`,
/// ending in `/`) at `at`.
pub async fn snapshot(source: &Source, root: &str, at: At) -> Result<TableSnapshot> {
    register_scheme()?;
    let table = source.describe(&object_store::path::Path::from(root));
    let mut location = Url::parse(&format!("{SCHEME}:///"))
        .map_err(|e| QuiverError::Internal(format!("cannot build the table URL: {e}")))?;
    location.set_path(&format!("/{root}"));
    let mut loaded = DeltaTableBuilder::from_url(location.clone())
        .map_err(|e| log_error(&table, e))?
        .with_storage_backend(source.origin.clone(), location)
        .build()
        .map_err(|e| log_error(&table, e))?;
    let read = match at {
        At::Latest => loaded.load().await,
        At::Version(v) => {
            // The kernel's own answer for a version past the end names its
            // log segment; a reader wants to know what the latest is.
            let latest = loaded
                .get_latest_version()
                .await
                .map_err(|e| log_error(&table, e))?;
            if v > latest {
                return Err(QuiverError::NotFound(format!(
                    "{table} has no version {v}; its latest is {latest}"
                )));
            }
            loaded.load_version(v).await
        }
        At::Time(t) => loaded.load_with_datetime(t).await,
    };
    read.map_err(|e| log_error(&table, e))?;
    let state = loaded.snapshot().map_err(|e| log_error(&table, e))?;
    let mapped = check_features(&table, state)?;
    let kernel_schema = state.schema();
    let column_mapping = if mapped {
        physical_names(&table, kernel_schema.as_ref())?
    } else {
        BTreeMap::new()
    };
    let partition_columns: Vec<String> = state.metadata().partition_columns().to_vec();
    let arrow: arrow::datatypes::Schema = kernel_schema.as_ref().try_into_arrow().map_err(|e| {
        QuiverError::Internal(format!("{table}: cannot map its schema to Arrow: {e}"))
    })?;
    // Data columns first, then partition columns, as the table is read.
    let (mut fields, partitions): (Vec<_>, Vec<_>) = arrow
        .fields()
        .iter()
        .cloned()
        .partition(|f| !partition_columns.contains(f.name()));
    fields.extend(
        partition_columns
            .iter()
            .filter_map(|c| partitions.iter().find(|f| f.name() == c).cloned()),
    );
    // Column mapping's annotations travel as `column_mapping`; left on the
    // fields, they would make the table's columns differ from the files'.
    let fields: Vec<_> = fields
        .into_iter()
        .map(|f| {
            let mut metadata = f.metadata().clone();
            metadata.retain(|k, _| !k.starts_with("delta.columnMapping."));
            Arc::new(f.as_ref().clone().with_metadata(metadata))
        })
        .collect();
    let schema = arrow::datatypes::Schema::new(fields);
    let mut files = Vec::new();
    for file in state.log_data().iter() {
        let relative = file.path().into_owned();
        let escapes = relative.split('/').any(|part| part == ".." || part == ".");
        if relative.contains("://") || relative.starts_with('/') || escapes {
            return Err(QuiverError::FailedPrecondition(format!(
                "{table} names data file `{relative}` outside its directory (a shallow clone or a `..` path); only files inside the table are read"
            )));
        }
        let size = u64::try_from(file.size()).map_err(|_| {
            QuiverError::DataLoss(format!(
                "{table}: the log gives `{relative}` a negative size"
            ))
        })?;
        files.push(TableFile {
            path: format!("{root}{relative}"),
            size,
            rows: file.num_records().and_then(|r| u64::try_from(r).ok()),
            partition_values: file
                .partition_values_map()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            stats: file.stats().and_then(|s| serde_json::from_str(&s).ok()),
            deletion_vector: file
                .deletion_vector_descriptor()
                .map(|dv| deletion_vector(&table, root, &relative, dv))
                .transpose()?,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(TableSnapshot {
        format: TableFormat::Delta,
        path: root.to_string(),
        version: state.version(),
        schema: encode_schema(&schema)?,
        partition_columns,
        files,
        column_mapping,
    })
}

/// Each top-level column's physical name, by its name, for a table that
/// maps columns by name. A nested column's fields have physical names of
/// their own, which the scans would have to map inside each value: such a
/// table is refused.
fn physical_names(table: &str, schema: &StructType) -> Result<BTreeMap<String, String>> {
    let mut names = BTreeMap::new();
    for field in schema.fields() {
        if !matches!(field.data_type(), DataType::Primitive(_)) {
            return Err(QuiverError::FailedPrecondition(format!(
                "{table} maps columns and column `{}` is nested ({}), whose fields this node cannot map yet; it is never read naively",
                field.name(),
                field.data_type()
            )));
        }
        let physical = match field.get_config_value(&ColumnMetadataKey::ColumnMappingPhysicalName) {
            Some(MetadataValue::String(name)) => name.clone(),
            _ => {
                return Err(QuiverError::DataLoss(format!(
                    "{table} maps columns but its log gives column `{}` no physical name",
                    field.name()
                )))
            }
        };
        names.insert(field.name().clone(), physical);
    }
    Ok(names)
}

/// The wire form of the deletion vector of data file `relative`: one
/// stored at an absolute path, which may lie outside the table (or the
/// source), is refused as a data file there would be.
fn deletion_vector(
    table: &str,
    root: &str,
    relative: &str,
    dv: DeletionVectorDescriptor,
) -> Result<DeletionVector> {
    let storage_type = match dv.storage_type {
        StorageType::UuidRelativePath => DeletionVectorStorage::File,
        StorageType::Inline => DeletionVectorStorage::Inline,
        StorageType::AbsolutePath => {
            return Err(QuiverError::FailedPrecondition(format!(
                "{table} keeps the deletion vector of `{relative}` at an absolute path, outside its directory; only vectors inside the table are read"
            )))
        }
    };
    let malformed = |field: &str| {
        QuiverError::DataLoss(format!(
            "{table}: the deletion vector of `{relative}` has a negative {field}"
        ))
    };
    Ok(DeletionVector {
        table: root.to_string(),
        storage_type,
        path_or_inline_dv: dv.path_or_inline_dv,
        offset: dv
            .offset
            .map(|o| u32::try_from(o).map_err(|_| malformed("offset")))
            .transpose()?,
        size_in_bytes: u32::try_from(dv.size_in_bytes).map_err(|_| malformed("size"))?,
        cardinality: u64::try_from(dv.cardinality).map_err(|_| malformed("cardinality"))?,
    })
}

/// Refuses a table that needs a reader feature a plain read of its live
/// files would get wrong, naming it; whether it maps columns by name.
fn check_features(
    table: &str,
    state: &deltalake_core::table::state::DeltaTableState,
) -> Result<bool> {
    let protocol = state.protocol();
    if protocol.min_reader_version() > 3 {
        return Err(QuiverError::FailedPrecondition(format!(
            "{table} needs Delta reader version {}, above the 3 this node reads",
            protocol.min_reader_version()
        )));
    }
    for feature in protocol.reader_features().unwrap_or_default() {
        let name = feature.to_string();
        if !HONOURED.contains(&name.as_str()) {
            return Err(QuiverError::FailedPrecondition(format!(
                "{table} uses Delta reader feature `{name}`, which this node cannot honour yet; it is never read naively"
            )));
        }
    }
    // A variant column's type, as the log's schema writes it.
    let schema = state.metadata().schema_string();
    if schema.contains(r#""type":"variant""#) {
        return Err(QuiverError::FailedPrecondition(format!(
            "{table} has a variant column (reader feature `variantType`), which this node cannot read yet"
        )));
    }
    // The table property the Delta protocol defines for column mapping:
    // by name, the files hold each column under its physical name; by id,
    // under a field id, which a read by name would not honour.
    let mode = state
        .metadata()
        .configuration()
        .get("delta.columnMapping.mode")
        .map(String::as_str)
        .unwrap_or("none");
    match mode {
        "none" => Ok(false),
        "name" => Ok(true),
        other => Err(QuiverError::FailedPrecondition(format!(
            "{table} maps columns by {other} (delta.columnMapping.mode, reader feature `columnMapping`); this node reads only mode `name`, and never reads another naively"
        ))),
    }
}

/// A log that cannot be read: no log at all is NotFound, an origin that
/// failed is Unavailable, a log that makes no sense is DataLoss.
fn log_error(table: &str, e: DeltaTableError) -> QuiverError {
    match e {
        DeltaTableError::NotATable(_) | DeltaTableError::InvalidTableLocation(_) => {
            QuiverError::NotFound(format!(
                "{table} is not a Delta table: no readable _delta_log/"
            ))
        }
        DeltaTableError::ObjectStore { source } => {
            QuiverError::Unavailable(format!("{table}: reading its log failed: {source}"))
        }
        DeltaTableError::InvalidVersion(v) => {
            QuiverError::NotFound(format!("{table} has no version {v}"))
        }
        other => QuiverError::InvalidArgument(format!("{table}: {other}")),
    }
}
