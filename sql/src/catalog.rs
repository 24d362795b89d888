//! The lake's tables as SQL sees them (`docs/protocol.md`, "Flight SQL"):
//! catalog = source, and every directory of Parquet files is a table named
//! by its path, `<schema>/<table>/` or, at the source root, `default`.
//! Hive-style `key=value/` directories below a table are its partitions.
//! A directory holding `_delta_log/` is a Delta table, read from its log's
//! latest version (`quiver_client::table::delta_provider`), never also as
//! plain Parquet.
//!
//! The catalog is rebuilt from listings on an interval and on demand. A
//! table whose objects (paths and ETags) or Delta version did not change
//! keeps its provider; one whose files changed is read again, so its schema
//! and statistics are never stale for longer than one refresh. A table's files may differ in
//! schema: they are read with their schemas merged, and a table whose files
//! cannot be merged is still listed, failing with the reason when queried.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider, Session, TableProvider,
};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use quiver_client::table::{
    delta_provider, Partition, PartitionedTable, SchemaConflict, TableFiles,
};
use quiver_client::{ClientError, ObjectInfo, QuiverClient, QuiverTable};
use quiver_protocol::SnapshotRequest;

use crate::versioned::DeltaTable;

/// The schema name of tables directly under a source's root.
pub const DEFAULT_SCHEMA: &str = "default";

/// A table declared in the configuration rather than discovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredTable {
    /// The catalog (source) it is listed under.
    pub source: String,
    pub schema: String,
    pub name: String,
    /// An object key or a prefix ending in `/` inside the source.
    pub path: String,
}

/// Where a table's data lives, and the object versions its provider was
/// built from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableSource {
    source: String,
    /// The table's root prefix (ending in `/`), or a declared path.
    root: String,
    /// Partition columns, outermost first; empty for a plain table.
    partition_columns: Vec<String>,
    /// `(path, etag)` of every object: the version the provider was built
    /// from.
    objects: BTreeSet<(String, String)>,
    /// A Delta table's version the provider was built from (its files are
    /// immutable, so the version says it all).
    version: Option<u64>,
}

struct Entry {
    source: TableSource,
    provider: Arc<dyn TableProvider>,
    /// Why the table cannot be read, when it cannot: reported again at
    /// every refresh for as long as it lasts.
    problem: Option<String>,
}

/// `(catalog, schema, table)`.
pub type TableName = (String, String, String);

/// One snapshot of the catalog.
#[derive(Default)]
pub struct Snapshot {
    tables: BTreeMap<TableName, Entry>,
    /// Sources whose listing failed at the last refresh, with the reason.
    pub errors: Vec<String>,
}

impl Snapshot {
    pub fn names(&self) -> impl Iterator<Item = &TableName> {
        self.tables.keys()
    }

    pub fn provider(&self, name: &TableName) -> Option<&Arc<dyn TableProvider>> {
        self.tables.get(name).map(|e| &e.provider)
    }

    /// DataFusion's view of the snapshot: every source is a catalog, even
    /// one with no table yet.
    pub fn catalog_list(&self, sources: &[String]) -> Arc<dyn CatalogProviderList> {
        let list = MemoryCatalogProviderList::new();
        let mut catalogs: BTreeMap<String, Arc<MemoryCatalogProvider>> = BTreeMap::new();
        for source in sources {
            catalogs.insert(source.clone(), Arc::new(MemoryCatalogProvider::new()));
        }
        let mut schemas: BTreeMap<(String, String), Arc<MemorySchemaProvider>> = BTreeMap::new();
        for ((catalog, schema, table), entry) in &self.tables {
            let schema_provider = schemas
                .entry((catalog.clone(), schema.clone()))
                .or_insert_with(|| Arc::new(MemorySchemaProvider::new()))
                .clone();
            // Names are unique in the map, so registering cannot collide.
            let _ = schema_provider.register_table(table.clone(), entry.provider.clone());
        }
        for ((catalog, schema), provider) in schemas {
            let c = catalogs
                .entry(catalog)
                .or_insert_with(|| Arc::new(MemoryCatalogProvider::new()));
            let _ = c.register_schema(&schema, provider);
        }
        for (name, catalog) in catalogs {
            // Every catalog has a `default` schema, so the session default
            // always resolves.
            if catalog.schema(DEFAULT_SCHEMA).is_none() {
                let _ =
                    catalog.register_schema(DEFAULT_SCHEMA, Arc::new(MemorySchemaProvider::new()));
            }
            list.register_catalog(name, catalog);
        }
        Arc::new(list)
    }
}

/// A directory holding Parquet objects, as found in a listing.
#[derive(Debug, Default)]
struct Found {
    partition_columns: Vec<String>,
    /// Partition values (in column order) to the prefix holding them.
    partitions: BTreeMap<Vec<String>, String>,
    objects: BTreeSet<(String, String)>,
    /// Partition layouts that disagree (e.g. `a=1/x.parquet` beside
    /// `b=2/y.parquet`): such a table is listed but unreadable.
    inconsistent: bool,
}

/// A `key=value` path segment.
fn hive(segment: &str) -> Option<(&str, &str)> {
    let (k, v) = segment.split_once('=')?;
    (!k.is_empty()).then_some((k, v))
}

/// The `(schema, table)` of the table directory `segments` (its path's
/// segments); `None` at the source root, which holds no table.
fn table_name(segments: &[&str]) -> Option<(String, String)> {
    let (table, parents) = segments.split_last()?;
    let schema = if parents.is_empty() {
        DEFAULT_SCHEMA.to_string()
    } else {
        parents.join("/")
    };
    Some((schema, table.to_string()))
}

/// Groups a source's listing into tables: `(schema, table) -> found`.
fn group(paths: &[(String, String)]) -> BTreeMap<(String, String), (String, Found)> {
    let mut out: BTreeMap<(String, String), (String, Found)> = BTreeMap::new();
    for (path, etag) in paths {
        let mut segments: Vec<&str> = path.split('/').collect();
        segments.pop(); // the file name
        let mut partition = Vec::new();
        while let Some((k, v)) = segments.last().and_then(|s| hive(s)) {
            partition.insert(0, (k.to_string(), v.to_string()));
            segments.pop();
        }
        // Objects at the source root belong to no table directory.
        let Some(name) = table_name(&segments) else {
            continue;
        };
        let root = format!("{}/", segments.join("/"));
        let (_, found) = out
            .entry(name)
            .or_insert_with(|| (root.clone(), Found::default()));
        let columns: Vec<String> = partition.iter().map(|(k, _)| k.clone()).collect();
        if found.objects.is_empty() {
            found.partition_columns = columns.clone();
        } else if found.partition_columns != columns {
            found.inconsistent = true;
        }
        if !partition.is_empty() {
            let prefix = format!(
                "{root}{}/",
                partition
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("/")
            );
            found
                .partitions
                .insert(partition.into_iter().map(|(_, v)| v).collect(), prefix);
        }
        found.objects.insert((path.clone(), etag.clone()));
    }
    out
}

/// A table the catalog lists but cannot read (its files' schemas conflict,
/// its partition directories disagree, its declared path cannot be listed):
/// it stays visible, and a query of it fails with the reason instead of a
/// "table does not exist" that would send the user looking in the wrong
/// place.
#[derive(Debug)]
struct Unreadable {
    /// What can be said of its columns (a conflicting one typed `Null`).
    schema: SchemaRef,
    code: tonic::Code,
    reason: String,
}

impl Unreadable {
    fn new(schema: SchemaRef, code: tonic::Code, reason: String) -> Unreadable {
        Unreadable {
            schema,
            code,
            reason,
        }
    }

    fn conflict(conflict: &SchemaConflict, partition_columns: &[String]) -> Unreadable {
        let mut fields: Vec<Field> = conflict
            .partial
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(
            partition_columns
                .iter()
                .map(|c| Field::new(c, DataType::Utf8, false)),
        );
        Unreadable::new(
            Arc::new(Schema::new(fields)),
            tonic::Code::InvalidArgument,
            conflict.to_string(),
        )
    }

    fn failed(e: &ClientError) -> Unreadable {
        let (code, reason) = match e {
            ClientError::Status { code, message, .. } => (*code, message.clone()),
            ClientError::Connect { .. } => (tonic::Code::Unavailable, e.to_string()),
            other => (tonic::Code::Internal, other.to_string()),
        };
        Unreadable::new(Arc::new(Schema::empty()), code, reason)
    }
}

#[async_trait]
impl TableProvider for Unreadable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::External(Box::new(ClientError::Status {
            code: self.code,
            message: format!("the table cannot be read: {}", self.reason),
            request_id: None,
        })))
    }
}

/// The listing entries under `prefix`, from a listing sorted by path.
fn under(listing: &[ObjectInfo], prefix: &str) -> Vec<ObjectInfo> {
    let start = listing.partition_point(|o| o.listing.path.as_str() < prefix);
    listing[start..]
        .iter()
        .take_while(|o| o.listing.path.starts_with(prefix))
        .cloned()
        .collect()
}

/// Builds the next snapshot from the sources' listings, reusing every
/// provider of `previous` whose objects did not change. A table that cannot
/// be read is listed anyway (see [`Unreadable`]) and its reason recorded in
/// the snapshot's errors.
pub async fn refresh(
    client: &QuiverClient,
    sources: &[String],
    declared: &[DeclaredTable],
    previous: &Snapshot,
) -> Snapshot {
    let mut next = Snapshot::default();
    for source in sources {
        let listed = match client.list(source, "").await {
            Ok(listing) => client.tables(source, "").await.map(|t| (listing, t)),
            Err(e) => Err(e),
        };
        let (mut listing, delta_roots) = match listed {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(source = %source, error = %e, "cannot list the source for the SQL catalog; keeping its tables");
                next.errors.push(format!("{source}: {e}"));
                for (name, entry) in &previous.tables {
                    if &name.0 == source {
                        next.tables.insert(
                            name.clone(),
                            Entry {
                                source: entry.source.clone(),
                                provider: entry.provider.clone(),
                                problem: entry.problem.clone(),
                            },
                        );
                    }
                }
                continue;
            }
        };
        listing.sort_by(|a, b| a.listing.path.cmp(&b.listing.path));
        // A Delta table's directory is read through its log only, never
        // also as plain Parquet (it holds removed files).
        let in_delta = |path: &str| delta_roots.iter().any(|t| path.starts_with(&t.path));
        let paths: Vec<(String, String)> = listing
            .iter()
            .filter(|o| !in_delta(&o.listing.path))
            .map(|o| (o.listing.path.clone(), o.listing.etag.clone()))
            .collect();
        for ((schema, table), (root, found)) in group(&paths) {
            let name = (source.clone(), schema, table);
            let wanted = TableSource {
                source: source.clone(),
                root: root.clone(),
                partition_columns: found.partition_columns.clone(),
                objects: found.objects.clone(),
                version: None,
            };
            let (provider, problem) = match previous.tables.get(&name) {
                Some(p) if p.source == wanted => (p.provider.clone(), p.problem.clone()),
                _ => match build(client, &wanted, &found, &listing) {
                    Ok(provider) => (provider, None),
                    Err(unreadable) => {
                        let problem = Some(format!("{source}/{root}: {}", unreadable.reason));
                        (Arc::new(unreadable) as Arc<dyn TableProvider>, problem)
                    }
                },
            };
            next.errors.extend(problem.clone());
            next.tables.insert(
                name,
                Entry {
                    source: wanted,
                    provider,
                    problem,
                },
            );
        }
        for root in &delta_roots {
            let segments: Vec<&str> = root.path.trim_end_matches('/').split('/').collect();
            let Some((schema, table)) = table_name(&segments) else {
                continue;
            };
            let name = (source.clone(), schema, table);
            let (entry_source, provider, problem) = delta_table(
                client,
                source,
                &root.path,
                &listing,
                previous.tables.get(&name),
            )
            .await;
            next.errors.extend(problem.clone());
            next.tables.insert(
                name,
                Entry {
                    source: entry_source,
                    provider,
                    problem,
                },
            );
        }
    }
    for d in declared {
        let name = (d.source.clone(), d.schema.clone(), d.name.clone());
        let wanted = TableSource {
            source: d.source.clone(),
            root: d.path.clone(),
            partition_columns: Vec::new(),
            objects: BTreeSet::new(),
            version: None,
        };
        let (provider, problem): (Arc<dyn TableProvider>, _) = match declared_table(client, d).await
        {
            Ok(t) => (Arc::new(t), None),
            Err(unreadable) => {
                let problem = format!(
                    "declared table {}.{}.{}: {}",
                    d.source, d.schema, d.name, unreadable.reason
                );
                (Arc::new(unreadable), Some(problem))
            }
        };
        next.errors.extend(problem.clone());
        next.tables.insert(
            name,
            Entry {
                source: wanted,
                provider,
                problem,
            },
        );
    }
    next
}

/// The latest snapshot of the Delta table at `root`, as a provider: the
/// previous one while the version is the same, a new one otherwise, or an
/// [`Unreadable`] saying why the log cannot be served.
async fn delta_table(
    client: &QuiverClient,
    source: &str,
    root: &str,
    listing: &[ObjectInfo],
    previous: Option<&Entry>,
) -> (TableSource, Arc<dyn TableProvider>, Option<String>) {
    let mut wanted = TableSource {
        source: source.to_string(),
        root: root.to_string(),
        partition_columns: Vec::new(),
        objects: BTreeSet::new(),
        version: None,
    };
    let request = SnapshotRequest {
        source: source.to_string(),
        path: root.to_string(),
        ..Default::default()
    };
    let built = match client.table_snapshot(&request).await {
        Ok(snapshot) => {
            wanted.version = Some(snapshot.wire.version);
            wanted.partition_columns = snapshot.wire.partition_columns.clone();
            match previous {
                Some(p) if p.source == wanted => {
                    return (wanted, p.provider.clone(), p.problem.clone());
                }
                _ => delta_provider(client, source, &snapshot, listing)
                    .map(|latest| {
                        Arc::new(DeltaTable::new(latest, client.clone(), source, root))
                            as Arc<dyn TableProvider>
                    })
                    .map_err(|e| Unreadable::failed(&e)),
            }
        }
        Err(e) => Err(Unreadable::failed(&e)),
    };
    match built {
        Ok(provider) => (wanted, provider, None),
        Err(unreadable) => {
            let problem = Some(format!("{source}/{root}: {}", unreadable.reason));
            (wanted, Arc::new(unreadable), problem)
        }
    }
}

/// A declared table, listed and merged now.
async fn declared_table(
    client: &QuiverClient,
    d: &DeclaredTable,
) -> Result<QuiverTable, Unreadable> {
    let files = TableFiles::list(client, &d.source, &d.path)
        .await
        .map_err(|e| Unreadable::failed(&e))?;
    let schema = TableFiles::merged_schema(&[&files]).map_err(|c| Unreadable::conflict(&c, &[]))?;
    Ok(QuiverTable::from_files(client.clone(), files, schema))
}

/// The provider for a discovered table, from the source's listing (sorted
/// by path): its objects' schemas merged, each partition read with the
/// schema of them all.
fn build(
    client: &QuiverClient,
    wanted: &TableSource,
    found: &Found,
    listing: &[ObjectInfo],
) -> Result<Arc<dyn TableProvider>, Unreadable> {
    if found.inconsistent {
        return Err(Unreadable::new(
            Arc::new(Schema::empty()),
            tonic::Code::InvalidArgument,
            "its partition directories do not share one layout (e.g. `a=1/` beside `b=2/`)".into(),
        ));
    }
    let files = |prefix: &str| {
        TableFiles::new(&wanted.source, prefix, under(listing, prefix))
            .map_err(|e| Unreadable::failed(&e))
    };
    if wanted.partition_columns.is_empty() {
        let files = files(&wanted.root)?;
        let schema =
            TableFiles::merged_schema(&[&files]).map_err(|c| Unreadable::conflict(&c, &[]))?;
        return Ok(Arc::new(QuiverTable::from_files(
            client.clone(),
            files,
            schema,
        )));
    }
    let mut parts = Vec::new();
    for (values, prefix) in &found.partitions {
        parts.push((values.clone(), files(prefix)?));
    }
    let all: Vec<&TableFiles> = parts.iter().map(|(_, f)| f).collect();
    let schema = TableFiles::merged_schema(&all)
        .map_err(|c| Unreadable::conflict(&c, &wanted.partition_columns))?;
    let partitions = parts
        .into_iter()
        .map(|(values, files)| Partition {
            values: values
                .into_iter()
                .map(|v| ScalarValue::Utf8(Some(v)))
                .collect(),
            table: Arc::new(QuiverTable::from_files(
                client.clone(),
                files,
                schema.clone(),
            )),
        })
        .collect();
    let fields = wanted
        .partition_columns
        .iter()
        .map(|c| Field::new(c, DataType::Utf8, false))
        .collect();
    let table = PartitionedTable::try_new(fields, partitions).map_err(|e| {
        Unreadable::new(
            Arc::new(Schema::empty()),
            tonic::Code::InvalidArgument,
            e.to_string(),
        )
    })?;
    Ok(Arc::new(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(path: &str) -> (String, String) {
        (path.to_string(), "\"e\"".to_string())
    }

    #[test]
    fn directories_become_tables() {
        let g = group(&[
            p("tpch/lineitem/part-0.parquet"),
            p("tpch/lineitem/part-1.parquet"),
            p("orders/a.parquet"),
            p("root.parquet"),
            p("events/year=2024/month=1/x.parquet"),
            p("events/year=2024/month=2/y.parquet"),
            p("a/b/c/t.parquet"),
        ]);
        let keys: Vec<_> = g.keys().cloned().collect();
        assert_eq!(
            keys,
            vec![
                ("a/b".to_string(), "c".to_string()),
                ("default".to_string(), "events".to_string()),
                ("default".to_string(), "orders".to_string()),
                ("tpch".to_string(), "lineitem".to_string()),
            ]
        );
        let (root, events) = &g[&("default".to_string(), "events".to_string())];
        assert_eq!(root, "events/");
        assert_eq!(events.partition_columns, vec!["year", "month"]);
        assert_eq!(
            events
                .partitions
                .get(&vec!["2024".to_string(), "2".to_string()]),
            Some(&"events/year=2024/month=2/".to_string())
        );
        assert_eq!(
            g[&("tpch".to_string(), "lineitem".to_string())]
                .1
                .objects
                .len(),
            2
        );
    }

    #[test]
    fn mixed_partition_layouts_are_flagged() {
        let g = group(&[p("t/a=1/x.parquet"), p("t/b=2/y.parquet")]);
        assert!(g[&("default".to_string(), "t".to_string())].1.inconsistent);
    }
}
