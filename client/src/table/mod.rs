//! A DataFusion table over the Parquet objects under one source path, read
//! through Quiver: projection, filters and limit go to the owning nodes, and
//! only the matching rows cross the network.
//!
//! The objects of a table need not share one schema (`docs/protocol.md`,
//! "Schema merging"): the table's schema is their schemas merged, and each
//! object is asked for the columns it has, with only the filters it can
//! evaluate exactly as the table does; the scan fills and widens the rest.
//!
//! The table is listed by `files` and its schemas merged by
//! `schema_merge`; `provider` is its DataFusion `TableProvider`, which
//! plans each scan with `scan_plan` and streams it with
//! [`QuiverScanExec`](crate::exec::QuiverScanExec). `partitioned` puts
//! tables of partitions together, and `delta` builds one from a Delta
//! table's snapshot (`renamed` showing a table that maps columns under its
//! own names).

mod delta;
mod file_stats;
mod files;
mod partitioned;
mod provider;
mod renamed;
mod scan_plan;
mod schema_merge;

use arrow::datatypes::SchemaRef;
use datafusion::common::stats::Precision;
use datafusion::common::Statistics;

use quiver_protocol::DeletionVector;

use crate::error::ClientError;
use crate::routing::QuiverClient;
use files::TableObject;

pub use delta::{delta_provider, AsOf};
pub use files::TableFiles;
pub use partitioned::{Partition, PartitionedTable};
pub use schema_merge::{merge_schemas, SchemaConflict};

#[derive(Debug)]
pub struct QuiverTable {
    client: QuiverClient,
    source: String,
    path: String,
    schema: SchemaRef,
    /// The objects as listed when the table was made, in key order.
    objects: Vec<TableObject>,
    /// `objects` are all those under `path` (see [`TableFiles::named`]).
    whole: bool,
    statistics: Statistics,
}

impl QuiverTable {
    /// A table of `source`/`path`: one object, or every Parquet object under
    /// a prefix ending in `/`, read with their schemas merged
    /// ([`merge_schemas`]). Fails now, with the node's message, if the
    /// source or path does not exist, or names the two objects and the
    /// column when their schemas cannot be merged.
    pub async fn try_new(
        client: QuiverClient,
        source: impl Into<String>,
        path: impl Into<String>,
    ) -> Result<QuiverTable, ClientError> {
        let files = TableFiles::list(&client, &source.into(), &path.into()).await?;
        let schema = TableFiles::merged_schema(&[&files])
            .map_err(|conflict| ClientError::Refused(conflict.to_string()))?;
        Ok(QuiverTable::from_files(client, files, schema))
    }

    /// A table of `files` read with `schema`, which must be their merged
    /// schema or that of a set of objects holding them
    /// ([`TableFiles::merged_schema`]): the partitions of one table share
    /// the schema of all of them.
    pub fn from_files(client: QuiverClient, files: TableFiles, schema: SchemaRef) -> QuiverTable {
        let mut statistics = Statistics::new_unknown(&schema);
        if let Some(rows) = files.rows.and_then(|r| usize::try_from(r).ok()) {
            statistics.num_rows = Precision::Exact(rows);
        }
        // Parquet is compressed: the decoded size is larger, so this is a
        // lower bound for join planning, not an exact figure.
        if let Some(bytes) = files.bytes.and_then(|b| usize::try_from(b).ok()) {
            statistics.total_byte_size = Precision::Inexact(bytes);
        }
        QuiverTable {
            client,
            source: files.source,
            path: files.path,
            schema,
            objects: files.objects,
            whole: files.whole,
            statistics,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the table is every Parquet object under its path.
    pub(crate) fn is_whole(&self) -> bool {
        self.whole
    }

    /// The rows and Parquet bytes its listing counted, when it counted them.
    pub(crate) fn listed_size(&self) -> (Option<u64>, Option<u64>) {
        let rows = match self.statistics.num_rows {
            Precision::Exact(n) => u64::try_from(n).ok(),
            _ => None,
        };
        let bytes = match self.statistics.total_byte_size {
            Precision::Exact(n) | Precision::Inexact(n) => u64::try_from(n).ok(),
            Precision::Absent => None,
        };
        (rows, bytes)
    }

    /// Each object: its path, schema, deletion vector and whether it is
    /// immutable.
    pub(crate) fn encoded_objects(
        &self,
    ) -> impl Iterator<Item = (&str, &SchemaRef, Option<&DeletionVector>, bool)> {
        self.objects.iter().map(|o| {
            (
                o.path.as_str(),
                &o.schema,
                o.deletion_vector.as_ref(),
                o.immutable,
            )
        })
    }
}
