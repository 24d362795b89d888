//! The lake's tables as SQL sees them (`docs/protocol.md`, "Flight SQL"):
//! catalog = source, and every directory of Parquet files is a table named
//! by its path, `<schema>/<table>/` or, at the source root, `default`.
//! Hive-style `key=value/` directories below a table are its partitions.
//!
//! The catalog is rebuilt from listings on an interval and on demand. A
//! table whose objects (paths and ETags) did not change keeps its provider;
//! one whose files changed is read again, so its schema and statistics are
//! never stale for longer than one refresh.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider, TableProvider,
};
use quiver_client::{ClientError, QuiverClient, QuiverTable};

use crate::partitioned::{HiveTable, Partition};

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
}

struct Entry {
    source: TableSource,
    provider: Arc<dyn TableProvider>,
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
    /// `b=2/y.parquet`): such a table is skipped with a reason.
    inconsistent: bool,
}

/// A `key=value` path segment.
fn hive(segment: &str) -> Option<(&str, &str)> {
    let (k, v) = segment.split_once('=')?;
    (!k.is_empty()).then_some((k, v))
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
        let Some((table, parents)) = segments.split_last() else {
            continue;
        };
        let schema = if parents.is_empty() {
            DEFAULT_SCHEMA.to_string()
        } else {
            parents.join("/")
        };
        let root = format!("{}/", segments.join("/"));
        let (_, found) = out
            .entry((schema, table.to_string()))
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

/// Builds the next snapshot from the sources' listings, reusing every
/// provider of `previous` whose objects did not change.
pub async fn refresh(
    client: &QuiverClient,
    sources: &[String],
    declared: &[DeclaredTable],
    previous: &Snapshot,
) -> Snapshot {
    let mut next = Snapshot::default();
    for source in sources {
        let listing = match client.list(source, "").await {
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
                            },
                        );
                    }
                }
                continue;
            }
        };
        let paths: Vec<(String, String)> = listing
            .iter()
            .map(|o| (o.listing.path.clone(), o.listing.etag.clone()))
            .collect();
        for ((schema, table), (root, found)) in group(&paths) {
            let name = (source.clone(), schema, table);
            if found.inconsistent {
                next.errors.push(format!(
                    "{source}/{root}: partition directories do not share one layout; the table is left out"
                ));
                continue;
            }
            let wanted = TableSource {
                source: source.clone(),
                root: root.clone(),
                partition_columns: found.partition_columns.clone(),
                objects: found.objects.clone(),
            };
            match build(client, &wanted, &found, previous.tables.get(&name)).await {
                Ok(provider) => {
                    next.tables.insert(
                        name,
                        Entry {
                            source: wanted,
                            provider,
                        },
                    );
                }
                Err(e) => next.errors.push(format!("{source}/{root}: {e}")),
            }
        }
    }
    for d in declared {
        let name = (d.source.clone(), d.schema.clone(), d.name.clone());
        let wanted = TableSource {
            source: d.source.clone(),
            root: d.path.clone(),
            partition_columns: Vec::new(),
            objects: BTreeSet::new(),
        };
        match QuiverTable::try_new(client.clone(), &d.source, &d.path).await {
            Ok(t) => {
                next.tables.insert(
                    name,
                    Entry {
                        source: wanted,
                        provider: Arc::new(t),
                    },
                );
            }
            Err(e) => next.errors.push(format!(
                "declared table {}.{}.{}: {e}",
                d.source, d.schema, d.name
            )),
        }
    }
    next
}

/// The provider for a discovered table: the previous one if its objects did
/// not change, else a new one.
async fn build(
    client: &QuiverClient,
    wanted: &TableSource,
    found: &Found,
    previous: Option<&Entry>,
) -> Result<Arc<dyn TableProvider>, ClientError> {
    if let Some(p) = previous.filter(|p| &p.source == wanted) {
        return Ok(p.provider.clone());
    }
    if wanted.partition_columns.is_empty() {
        let table = QuiverTable::try_new(client.clone(), &wanted.source, &wanted.root).await?;
        return Ok(Arc::new(table));
    }
    let mut partitions = Vec::new();
    for (values, prefix) in &found.partitions {
        let table = QuiverTable::try_new(client.clone(), &wanted.source, prefix).await?;
        partitions.push(Partition {
            values: values.clone(),
            table: Arc::new(table),
        });
    }
    Ok(Arc::new(HiveTable::try_new(
        wanted.partition_columns.clone(),
        partitions,
    )?))
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
