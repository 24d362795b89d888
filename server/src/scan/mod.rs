//! Evaluating a scan request against one Parquet object with DataFusion:
//! projection, SQL filter and limit pushed into the Parquet decoder, reading
//! bytes through the cache.

mod errors;
pub mod filter;
mod provider;
mod reader;

use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::file::metadata::ParquetMetaData;
use quiver_protocol::ScanRequest;
use tokio::sync::Semaphore;

pub use errors::classify;
use provider::ObjectTable;
pub use reader::column_chunk_range;
use reader::PinnedReaderFactory;

use crate::access_log::AccessLog;
use crate::cache::{CachingObjectStore, FooterCache};
use crate::error::{QuiverError, Result};
use crate::source::ObjectId;

/// Limits that protect the node from expensive requests.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    pub max_filter_len: usize,
    pub batch_rows: usize,
}

/// Plans and runs scans. One per node; cheap to share.
pub struct Scanner {
    ctx: SessionContext,
    footers: FooterCache,
    limits: ScanLimits,
    read_ahead: Arc<Semaphore>,
    access_log: Option<Arc<AccessLog>>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("limits", &self.limits)
            .finish()
    }
}

/// The object-store URL under which DataFusion finds a source's store.
pub fn store_url(source: &str) -> Result<ObjectStoreUrl> {
    ObjectStoreUrl::parse(format!("quiver://{source}"))
        .map_err(|e| QuiverError::Internal(format!("source name {source} makes no URL: {e}")))
}

impl Scanner {
    pub fn new(
        stores: &[Arc<CachingObjectStore>],
        footers: FooterCache,
        limits: ScanLimits,
    ) -> Result<Self> {
        let mut config = SessionConfig::new()
            // One object is one partition: order is the file's, and the node's
            // parallelism comes from serving many scans at once.
            .with_target_partitions(1)
            .with_repartition_file_scans(false)
            .with_batch_size(limits.batch_rows)
            .with_parquet_pruning(true)
            .with_parquet_page_index_pruning(true)
            .with_parquet_bloom_filter_pruning(true);
        let parquet = &mut config.options_mut().execution.parquet;
        parquet.pushdown_filters = true;
        parquet.reorder_filters = true;
        let ctx = SessionContext::new_with_config(config);
        for store in stores {
            let url = store_url(&store.source().name)?;
            ctx.register_object_store(url.as_ref(), store.clone());
        }
        Ok(Scanner {
            ctx,
            footers,
            limits,
            access_log: None,
            read_ahead: Arc::new(Semaphore::new(reader::READ_AHEAD_BUDGET_KIB)),
        })
    }

    /// Makes every scan record its reads in `log`.
    pub fn with_access_log(mut self, log: Arc<AccessLog>) -> Self {
        self.access_log = Some(log);
        self
    }

    pub fn footers(&self) -> &FooterCache {
        &self.footers
    }

    pub async fn metadata(
        &self,
        store: &CachingObjectStore,
        id: &ObjectId,
    ) -> Result<Arc<ParquetMetaData>> {
        self.footers.get(store, id).await
    }

    /// The Arrow schema of a file, exactly as its footer declares it.
    pub async fn file_schema(
        &self,
        store: &CachingObjectStore,
        id: &ObjectId,
    ) -> Result<SchemaRef> {
        let metadata = self.metadata(store, id).await?;
        arrow_schema(metadata, id)
    }

    /// Checks `req` against the file and returns the projected schema and a
    /// ready-to-run stream of matching batches.
    pub async fn scan(
        &self,
        store: &Arc<CachingObjectStore>,
        id: &ObjectId,
        req: &ScanRequest,
        client: &str,
    ) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let df = self.plan(store, id, req, Some(client)).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let what = format!("{}/{}", id.source, id.path);
        let stream = df
            .execute_stream()
            .await
            .map_err(|e| classify(e, &what, req.filter.is_some()))?;
        Ok((schema, stream))
    }

    /// The projected schema a scan would produce, without running it.
    pub async fn projected_schema(
        &self,
        store: &Arc<CachingObjectStore>,
        id: &ObjectId,
        req: &ScanRequest,
    ) -> Result<SchemaRef> {
        let df = self.plan(store, id, req, None).await?;
        Ok(Arc::new(df.schema().as_arrow().clone()))
    }

    async fn plan(
        &self,
        store: &Arc<CachingObjectStore>,
        id: &ObjectId,
        req: &ScanRequest,
        client: Option<&str>,
    ) -> Result<datafusion::dataframe::DataFrame> {
        let what = format!("{}/{}", id.source, id.path);
        let fail = |e| classify(e, &what, req.filter.is_some());
        let metadata = self.metadata(store, id).await?;
        let schema = arrow_schema(metadata.clone(), id)?;
        let access = match (&self.access_log, client) {
            (Some(log), Some(client)) => Some((log.clone(), Arc::from(client))),
            _ => None,
        };
        let factory = Arc::new(PinnedReaderFactory::new(
            store.clone(),
            self.footers.clone(),
            self.read_ahead.clone(),
            access,
        ));
        let table = ObjectTable::new(
            schema.clone(),
            id,
            store_url(&id.source)?,
            factory,
            req.row_groups.as_deref(),
            metadata.num_row_groups(),
        )?;
        let mut df = self.ctx.read_table(Arc::new(table)).map_err(fail)?;
        if let Some(filter) = &req.filter {
            if filter.len() > self.limits.max_filter_len {
                return Err(QuiverError::ResourceExhausted(format!(
                    "the filter is {} bytes long; this node accepts at most {}",
                    filter.len(),
                    self.limits.max_filter_len
                )));
            }
            filter::check_text(filter)?;
            let expr = df.parse_sql_expr(filter).map_err(|e| {
                QuiverError::invalid(format!(
                    "the filter `{}` is not valid: {}",
                    filter::shown(filter),
                    errors::message(&e)
                ))
            })?;
            filter::check(&expr, filter)?;
            let ty = expr.get_type(df.schema()).map_err(|e| {
                QuiverError::invalid(format!(
                    "the filter `{}` is not valid: {}",
                    filter::shown(filter),
                    errors::message(&e)
                ))
            })?;
            if !matches!(ty, DataType::Boolean | DataType::Null) {
                return Err(QuiverError::invalid(format!(
                    "the filter `{}` is of type {ty}, not a boolean condition",
                    filter::shown(filter)
                )));
            }
            df = df.filter(expr).map_err(|e| {
                QuiverError::invalid(format!(
                    "the filter `{}` is not valid: {}",
                    filter::shown(filter),
                    errors::message(&e)
                ))
            })?;
            // Type coercion runs in the analyzer, after `filter` accepted
            // the expression; some filters that cannot be coerced (`id
            // BETWEEN TRUE AND 1`) fail only there, with an error DataFusion
            // calls internal. Analysing now blames the filter, as it should.
            df.clone().into_optimized_plan().map_err(|e| {
                QuiverError::invalid(format!(
                    "the filter `{}` cannot be applied to {what}: {}",
                    filter::shown(filter),
                    errors::message(&e)
                ))
            })?;
        }
        if let Some(columns) = &req.columns {
            check_columns(columns, &schema)?;
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            df = df.select_columns(&names).map_err(fail)?;
        }
        if let Some(limit) = req.limit {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            df = df.limit(0, Some(limit)).map_err(fail)?;
        }
        Ok(df)
    }
}

impl Scanner {
    /// The top-level columns a request reads: its projection (every column
    /// when it has none) and the columns its filter names.
    pub async fn needed_columns(
        &self,
        store: &CachingObjectStore,
        id: &ObjectId,
        req: &ScanRequest,
    ) -> Result<Vec<String>> {
        let schema = self.file_schema(store, id).await?;
        let mut names: Vec<String> = match &req.columns {
            Some(columns) => columns.clone(),
            None => schema.fields().iter().map(|f| f.name().clone()).collect(),
        };
        if let Some(filter) = &req.filter {
            let df_schema = DFSchema::try_from(schema.as_ref().clone())
                .map_err(|e| QuiverError::Internal(format!("the file schema: {e}")))?;
            let expr = self.ctx.parse_sql_expr(filter, &df_schema).map_err(|e| {
                QuiverError::invalid(format!(
                    "the filter `{}` is not valid: {}",
                    filter::shown(filter),
                    errors::message(&e)
                ))
            })?;
            for column in expr.column_refs() {
                if !names.contains(&column.name) {
                    names.push(column.name.clone());
                }
            }
        }
        Ok(names)
    }
}

/// The byte ranges of `columns`' chunks in every row group of `id`.
pub fn column_ranges(
    metadata: &ParquetMetaData,
    id: &ObjectId,
    columns: &[String],
) -> Result<Vec<Range<u64>>> {
    let schema = metadata.file_metadata().schema_descr();
    for c in columns {
        if !schema
            .columns()
            .iter()
            .any(|col| col.path().parts()[0] == *c)
        {
            return Err(QuiverError::invalid(format!(
                "unknown column `{c}` in {}/{}",
                id.source, id.path
            )));
        }
    }
    let mut ranges = Vec::new();
    for rg in metadata.row_groups() {
        for col in rg.columns() {
            if columns.iter().any(|c| col.column_path().parts()[0] == *c) {
                let range = column_chunk_range(col, id.size).ok_or_else(|| {
                    QuiverError::DataLoss(format!(
                        "object {}/{} has a corrupt footer: a column chunk lies outside the file",
                        id.source, id.path
                    ))
                })?;
                ranges.push(range);
            }
        }
    }
    Ok(ranges)
}

fn arrow_schema(metadata: Arc<ParquetMetaData>, id: &ObjectId) -> Result<SchemaRef> {
    ArrowReaderMetadata::try_new(metadata, ArrowReaderOptions::new())
        .map(|m| m.schema().clone())
        .map_err(|e| {
            QuiverError::DataLoss(format!(
                "object {}/{} has a schema Arrow cannot read: {e}",
                id.source, id.path
            ))
        })
}

fn check_columns(columns: &[String], schema: &SchemaRef) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for c in columns {
        if schema.field_with_name(c).is_err() {
            let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(QuiverError::invalid(format!(
                "unknown column `{c}`; the file has columns {}",
                known.join(", ")
            )));
        }
        if !seen.insert(c) {
            return Err(QuiverError::invalid(format!(
                "column `{c}` is listed twice"
            )));
        }
    }
    Ok(())
}
