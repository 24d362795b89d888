//! Table formats on the wire: which directories of a source are tables with
//! a log (Delta Lake today), and the snapshot of one at a version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The table formats a node reads the log of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    Delta,
}

/// Body of `tables`: the source, and a prefix inside it (`""` for all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TablesRequest {
    pub source: String,
    #[serde(default)]
    pub path: String,
}

/// One table with a log under the prefix `tables` was asked about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRoot {
    /// The table's directory inside the source, ending in `/`.
    pub path: String,
    pub format: TableFormat,
}

/// Answer of `tables`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableList {
    pub tables: Vec<TableRoot>,
}

/// Body of `table-snapshot`: a table's directory and, for time travel,
/// the version or the time to read it at (at most one; neither reads the
/// latest version).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    pub source: String,
    /// The table's directory, with or without its final `/`.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// RFC 3339, e.g. `2026-12-01T00:00:00Z`: the latest version committed
    /// at or before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// Answer of `table-snapshot`: what one version of a table is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSnapshot {
    pub format: TableFormat,
    /// The table's directory inside the source, ending in `/`.
    pub path: String,
    pub version: u64,
    /// The table's schema, data columns then partition columns, as an
    /// Arrow IPC schema message, base64 (standard alphabet, padded).
    pub schema: String,
    /// Partition columns, in the table's order; their values are in each
    /// file's `partition_values`.
    pub partition_columns: Vec<String>,
    /// The live data files of this version, in path order.
    pub files: Vec<TableFile>,
    /// When the table maps columns (Delta's column mapping, mode `name`):
    /// each column's physical name, by its name in `schema`. The data
    /// files, `partition_values` and `stats` use the physical names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub column_mapping: BTreeMap<String, String>,
}

/// One live data file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFile {
    /// The object's key inside the source.
    pub path: String,
    pub size: u64,
    /// Row count from the log's statistics, when it has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Each partition column's value as the log writes it (a string in
    /// Delta's partition value format); `null` for a null value.
    #[serde(default)]
    pub partition_values: BTreeMap<String, Option<String>>,
    /// The log's statistics of the file as it writes them (for Delta,
    /// `{"numRecords", "minValues", "maxValues", "nullCount"}`), when it
    /// has them: what lets a reader skip the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<serde_json::Value>,
    /// The rows of the file this version deletes, when a deletion vector
    /// deletes some: a reader must drop them (`rows` and `stats` count
    /// them still).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_vector: Option<DeletionVector>,
}

/// Where a Delta deletion vector keeps the rows it deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeletionVectorStorage {
    /// In a file of the table's directory, named from `path_or_inline_dv`
    /// (Delta's storage type `u`).
    #[serde(rename = "u")]
    File,
    /// In `path_or_inline_dv` itself, Z85-encoded (Delta's `i`).
    #[serde(rename = "i")]
    Inline,
}

/// The rows a Delta deletion vector deletes from one data file, as the
/// table's log describes them (the Delta protocol's deletion vector
/// descriptor): a reference the node that scans the file resolves, reads
/// with the Delta kernel and keeps by its identity. Vectors stored at an
/// absolute path (Delta's `p`) are refused when the snapshot is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionVector {
    /// The table's directory inside the source, ending in `/`: a stored
    /// vector's file is inside it.
    pub table: String,
    pub storage_type: DeletionVectorStorage,
    /// For a file, an optional prefix (its subdirectory) and the Z85 of
    /// its UUID; for an inline vector, the vector in Z85.
    pub path_or_inline_dv: String,
    /// Where the vector starts in its file; absent for an inline one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
    /// The serialized vector's size, before Z85.
    pub size_in_bytes: u32,
    /// How many rows it deletes.
    pub cardinality: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_requests_refuse_unknown_fields() {
        let ok: SnapshotRequest =
            serde_json::from_str(r#"{"source":"s","path":"t/","version":3}"#).unwrap();
        assert_eq!(ok.version, Some(3));
        assert!(
            serde_json::from_str::<SnapshotRequest>(r#"{"source":"s","path":"t/","v":3}"#).is_err()
        );
        let tables: TableList =
            serde_json::from_str(r#"{"tables":[{"path":"t/","format":"delta"}]}"#).unwrap();
        assert_eq!(tables.tables[0].format, TableFormat::Delta);
    }

    #[test]
    fn deletion_vectors_use_delta_storage_letters() {
        let dv: DeletionVector = serde_json::from_str(
            r#"{"table":"t/","storage_type":"u","path_or_inline_dv":"ab^-aqEH.-t@S}K{vb[*k^","offset":1,"size_in_bytes":36,"cardinality":5}"#,
        )
        .unwrap();
        assert_eq!(dv.storage_type, DeletionVectorStorage::File);
        let inline = serde_json::to_string(&DeletionVector {
            storage_type: DeletionVectorStorage::Inline,
            offset: None,
            ..dv
        })
        .unwrap();
        assert!(inline.contains(r#""storage_type":"i""#), "{inline}");
        assert!(!inline.contains("offset"), "{inline}");
        let absolute = r#"{"table":"t/","storage_type":"p","path_or_inline_dv":"s3://b/x","size_in_bytes":1,"cardinality":1}"#;
        assert!(serde_json::from_str::<DeletionVector>(absolute).is_err());
        let negative = r#"{"table":"t/","storage_type":"i","path_or_inline_dv":"x","size_in_bytes":-1,"cardinality":1}"#;
        assert!(serde_json::from_str::<DeletionVector>(negative).is_err());
    }
}
