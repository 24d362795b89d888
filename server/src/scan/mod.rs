//! Evaluating a scan request against one Parquet object with DataFusion:
//! projection, SQL filter and limit pushed into the Parquet decoder, reading
//! bytes through the cache.

mod errors;
mod fill;
pub mod filter;
mod hot;
mod provider;
mod reader;
mod row_group_stats;

use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::file::metadata::ParquetMetaData;
use quiver_protocol::ScanRequest;
use tokio::sync::Semaphore;

pub use errors::classify;
use fill::HotFill;
use hot::{Fallback, HotScan};
use provider::ObjectTable;
pub use reader::column_chunk_range;
use reader::PinnedReaderFactory;
use row_group_stats::RowGroupStats;

use crate::access_log::AccessLog;
use crate::cache::{CachingObjectStore, DecodedCache, FooterCache};
use crate::error::{QuiverError, Result};
use crate::metrics::Metrics;
use crate::source::ObjectId;

/// Limits that protect the node from expensive requests.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    pub max_filter_len: usize,
    pub batch_rows: usize,
}

/// Plans and runs scans. One per node; cheap to clone.
#[derive(Clone)]
pub struct Scanner {
    ctx: SessionContext,
    footers: FooterCache,
    limits: ScanLimits,
    read_ahead: Arc<Semaphore>,
    access_log: Option<Arc<AccessLog>>,
    hot: Arc<HotFill>,
    /// Row groups a hot scan evaluates at once: the machine's cores.
    parallelism: usize,
}

/// A scan checked against its file and planned on the Parquet path.
struct Planned {
    df: datafusion::dataframe::DataFrame,
    metadata: Arc<ParquetMetaData>,
    schema: SchemaRef,
    /// The parsed filter, its columns unqualified, for the hot tier.
    filter: Option<Expr>,
}

/// Where a scan the hot tier could not answer stands.
enum HotOutcome {
    Hit(HotScan),
    /// These (row group, column) pairs are missing.
    Miss(Vec<(usize, usize)>),
    /// The tier cannot evaluate this request (an expression it cannot
    /// build); the Parquet path answers it.
    Unsupported,
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
    /// `hot` answers scans where it can and is filled after misses;
    /// `metrics` counts its fills.
    pub fn new(
        stores: &[Arc<CachingObjectStore>],
        footers: FooterCache,
        hot: DecodedCache,
        metrics: Arc<Metrics>,
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
            hot: Arc::new(HotFill::new(hot, metrics)),
            parallelism: std::thread::available_parallelism().map_or(2, |n| n.get()),
        })
    }

    pub fn hot(&self) -> &DecodedCache {
        self.hot.tier()
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
        let planned = self.plan(store, id, req, Some(client)).await?;
        let schema = Arc::new(planned.df.schema().as_arrow().clone());
        if self.hot().is_enabled() {
            let object = Arc::new(id.clone());
            match self.hot_scan(&planned, &object, req, &schema) {
                HotOutcome::Hit(scan) => {
                    self.hot().record(true);
                    return Ok((schema, scan.stream(self.fallback(store, id, req))));
                }
                HotOutcome::Miss(missing) => {
                    self.hot().record(false);
                    let factory = PinnedReaderFactory::new(
                        store.clone(),
                        self.footers.clone(),
                        self.read_ahead.clone(),
                        None,
                    );
                    self.hot
                        .missed(&object, &planned.metadata, &missing, factory);
                }
                HotOutcome::Unsupported => self.hot().record(false),
            }
        }
        let what = format!("{}/{}", id.source, id.path);
        let stream = planned
            .df
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
        let planned = self.plan(store, id, req, None).await?;
        Ok(Arc::new(planned.df.schema().as_arrow().clone()))
    }

    /// Reads the rest of a hot scan from Parquet: the named row groups, with
    /// at most the given rows.
    fn fallback(
        &self,
        store: &Arc<CachingObjectStore>,
        id: &ObjectId,
        req: &ScanRequest,
    ) -> Fallback {
        let scanner = self.clone();
        let store = store.clone();
        let id = id.clone();
        let mut req = req.clone();
        Box::new(move |row_groups, limit| {
            Box::pin(async move {
                req.row_groups = Some(row_groups);
                req.limit = limit;
                let planned = scanner
                    .plan(&store, &id, &req, None)
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                planned.df.execute_stream().await
            })
        })
    }

    /// Whether the hot tier holds everything `req` reads, after skipping the
    /// row groups its filter rules out by statistics.
    fn hot_scan(
        &self,
        planned: &Planned,
        object: &Arc<ObjectId>,
        req: &ScanRequest,
        output: &SchemaRef,
    ) -> HotOutcome {
        let schema = &planned.schema;
        let metadata = &planned.metadata;
        let index = |name: &str| schema.index_of(name).ok();
        let projected: Vec<usize> = match &req.columns {
            Some(columns) => match columns.iter().map(|c| index(c)).collect() {
                Some(p) => p,
                None => return HotOutcome::Unsupported,
            },
            None => (0..schema.fields().len()).collect(),
        };
        let filter = planned.filter.as_ref();
        let mut read: Vec<usize> = projected.clone();
        if let Some(expr) = filter {
            for column in expr.column_refs() {
                match index(&column.name) {
                    Some(i) => read.push(i),
                    None => return HotOutcome::Unsupported,
                }
            }
        }
        read.sort_unstable();
        read.dedup();
        let Ok(input) = schema.project(&read) else {
            return HotOutcome::Unsupported;
        };
        let input = Arc::new(input);
        // The filter is built once over just the columns the scan reads;
        // its conjuncts run one after another, the whole prunes row groups.
        let predicate = match filter {
            Some(expr) => {
                let built = DFSchema::try_from(input.as_ref().clone())
                    .and_then(|df| self.ctx.create_physical_expr(expr.clone(), &df));
                match built {
                    Ok(p) => Some(p),
                    Err(_) => return HotOutcome::Unsupported,
                }
            }
            None => None,
        };
        let conjuncts: Vec<_> = predicate
            .as_ref()
            .map(|p| split_conjunction(p).into_iter().cloned().collect())
            .unwrap_or_default();
        let mut groups: Vec<usize> = match &req.row_groups {
            Some(g) => g.clone(),
            None => (0..metadata.num_row_groups()).collect(),
        };
        if let Some(predicate) = &predicate {
            let kept = PruningPredicateBuilder::new()
                .with_file_schema(input.clone())
                .try_build(predicate.clone())
                .and_then(|p| p.prune(&RowGroupStats::new(metadata, &groups, schema)));
            if let Ok(kept) = kept {
                let mut keep = kept.into_iter();
                groups.retain(|_| keep.next().unwrap_or(true));
            }
        }
        let mut row_groups = Vec::with_capacity(groups.len());
        let mut missing = Vec::new();
        for &g in &groups {
            let rows = metadata
                .row_groups()
                .get(g)
                .and_then(|rg| usize::try_from(rg.num_rows()).ok());
            let Some(rows) = rows else {
                return HotOutcome::Unsupported;
            };
            match self.hot().row_group(object, g, &read) {
                Ok(arrays) => row_groups.push((g, arrays, rows)),
                Err(absent) => missing.extend(absent.into_iter().map(|c| (g, c))),
            }
        }
        if !missing.is_empty() {
            return HotOutcome::Miss(missing);
        }
        let projection = projected
            .iter()
            .filter_map(|p| read.iter().position(|r| r == p))
            .collect();
        HotOutcome::Hit(HotScan {
            input,
            row_groups,
            conjuncts,
            projection,
            output: output.clone(),
            limit: req.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            batch_rows: self.limits.batch_rows,
            parallelism: self.parallelism,
        })
    }

    async fn plan(
        &self,
        store: &Arc<CachingObjectStore>,
        id: &ObjectId,
        req: &ScanRequest,
        client: Option<&str>,
    ) -> Result<Planned> {
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
        let mut hot_filter = None;
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
            hot_filter = Some(unnormalize_col(expr.clone()));
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
        Ok(Planned {
            df,
            metadata,
            schema,
            filter: hot_filter,
        })
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
