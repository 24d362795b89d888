//! Evaluating a scan request against one Parquet object with DataFusion:
//! projection, SQL filter and limit pushed into the Parquet decoder, reading
//! bytes through the cache.

mod columns;
mod conjunct;
mod decimal_fits;
mod deleted_rows;
mod errors;
mod fill;
pub mod filter;
mod float_key;
mod hot;
mod parquet_plan;
mod predicate;
mod reader;
mod row_group_stats;
mod row_groups;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_expr::{split_conjunction, PhysicalExpr};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{execute_stream, ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use parquet::file::metadata::ParquetMetaData;
use quiver_protocol::ScanRequest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use columns::column_ranges;
use columns::{arrow_schema, check_columns, chunks_of, holds_columns};
use conjunct::fuse;
use deleted_rows::DeletedRows;
pub use errors::classify;
use fill::{FillGate, HotFill};
use hot::Job;
use parquet_plan::ParquetPlan;
use predicate::Predicate;
pub use reader::column_chunk_range;
use reader::PinnedReaderFactory;
use row_group_stats::RowGroupStats;
use row_groups::{OpenParquet, Part, PartTasks, RowGroupScan};

use crate::access_log::AccessLog;
use crate::cache::{CachingObjectStore, DecodedCache, FooterCache, Lookup};
use crate::error::{QuiverError, Result};
use crate::metrics::Metrics;
use crate::source::ObjectId;
use crate::table_format::deletion_vector::DeletionVectors;

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
    /// Row groups being read from Parquet on tasks of their own.
    parts: PartTasks,
    /// What the row groups scans read at once may hold; see [`Scanner::window`].
    parts_budget: Arc<Semaphore>,
    /// Deletion vectors read, by identity.
    deletion_vectors: DeletionVectors,
}

/// What a scan of one object would produce, and what it would read.
pub struct Projected {
    /// The batches' schema.
    pub schema: SchemaRef,
    /// Compressed bytes of the column chunks it reads (projection and
    /// filter), by row group: what splitting the object's endpoints counts.
    pub read_bytes: Vec<u64>,
}

/// A scan checked against its file and planned once: the Parquet path's
/// plan, and what the hot tier needs to answer the same request.
struct Planned {
    /// The Parquet path, over every row group kept.
    plan: Arc<dyn ExecutionPlan>,
    /// The same path, to be built for one row group at a time.
    parquet: ParquetPlan,
    /// What the client receives.
    output: SchemaRef,
    metadata: Arc<ParquetMetaData>,
    /// The file's columns the scan reads (projection and filter), ascending.
    read: Vec<usize>,
    /// The schema of those columns.
    input: SchemaRef,
    /// Which of the columns read the client gets, in its order.
    projection: Vec<usize>,
    /// The filter over `input`: the expression both paths evaluate.
    predicate: Option<Arc<dyn PhysicalExpr>>,
    /// The row groups statistics cannot rule out, in file order.
    row_groups: Vec<usize>,
    /// Rows the table's log deletes.
    deleted: Option<Arc<DeletedRows>>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("limits", &self.limits)
            .finish()
    }
}

/// Compressed bytes of column chunks that the row groups scans read at once
/// may hold, node-wide, in KiB: like read-ahead, a fixed amount beyond the
/// tiers however many scans run.
const PARTS_BUDGET_KIB: usize = 128 * 1024;

/// Memory for the deletion vectors scans have read: a vector is a
/// compressed bitmap, a few bytes per deleted row at most.
const DELETION_VECTOR_BYTES: u64 = 64 << 20;

/// Row groups one scan reads at once, at most: enough to keep a slow
/// origin's link busy.
const MAX_PARTS: usize = 16;

/// `stream`, holding `gate` until it is dropped: a fill the scan admitted
/// starts once the scan is over.
fn holding(stream: SendableRecordBatchStream, gate: Option<FillGate>) -> SendableRecordBatchStream {
    let Some(gate) = gate else {
        return stream;
    };
    let schema = stream.schema();
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        stream.inspect(move |_| {
            let _ = &gate;
        }),
    ))
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
            .with_parquet_page_index_pruning(true)
            .with_parquet_bloom_filter_pruning(true);
        let options = config.options_mut();
        options.execution.parquet.pushdown_filters = true;
        options.execution.parquet.reorder_filters = true;
        // `1.25` is the exact decimal, compared exactly with a decimal
        // column; against a float column it becomes that float.
        options.sql_parser.parse_float_as_decimal = true;
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
            parts: PartTasks::default(),
            parts_budget: Arc::new(Semaphore::new(PARTS_BUDGET_KIB)),
            deletion_vectors: DeletionVectors::new(DELETION_VECTOR_BYTES),
        })
    }

    pub fn hot(&self) -> &DecodedCache {
        self.hot.tier()
    }

    /// Whether no background read is running: neither read-ahead (each
    /// holds part of the budget until its reads are done), nor a row group
    /// of a scan whose client has gone, nor a fill of the hot tier.
    pub fn background_idle(&self) -> bool {
        self.read_ahead.available_permits() == reader::READ_AHEAD_BUDGET_KIB
            && self.parts.idle()
            && self.hot.idle()
    }

    /// Starts no more background work that would outlive the node's
    /// requests: fills end before their next row group.
    pub fn stop_background(&self) {
        self.hot.stop();
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
        let schema = planned.output.clone();
        let (parts, gate) = self.parts(&planned, store, id);
        let all_parquet = parts.iter().all(|(_, p)| matches!(p, Part::Parquet));
        let (window, budget) = self.window(&planned, req, !all_parquet);
        if all_parquet && (window <= 1 || parts.len() <= 1) {
            let what = format!("{}/{}", id.source, id.path);
            let stream = execute_stream(planned.plan, self.ctx.task_ctx())
                .map_err(|e| classify(e, &what, req.filter.is_some()))?;
            return Ok((schema, holding(stream, gate)));
        }
        let conjuncts = planned
            .predicate
            .as_ref()
            .map(|p| {
                fuse(
                    split_conjunction(p).into_iter().cloned().collect(),
                    &planned.input,
                )
            })
            .unwrap_or_default();
        let scan = RowGroupScan {
            parts,
            job: Arc::new(Job {
                input: planned.input.clone(),
                conjuncts,
                projection: planned.projection.clone(),
                output: planned.output.clone(),
                batch_rows: self.limits.batch_rows.max(1),
            }),
            open: self.open_parquet(&planned, id),
            output: planned.output,
            limit: req.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            window,
            tasks: self.parts.clone(),
            budget,
        };
        Ok((schema, holding(scan.stream(), gate)))
    }

    /// What a scan would produce and read, without running it.
    pub async fn projected_schema(
        &self,
        store: &Arc<CachingObjectStore>,
        id: &ObjectId,
        req: &ScanRequest,
    ) -> Result<Projected> {
        let planned = self.plan(store, id, req, None).await?;
        let read_bytes = (0..planned.metadata.num_row_groups())
            .map(|g| {
                chunks_of(&planned.metadata, &[g], &planned.read)
                    .map(|c| u64::try_from(c.compressed_size()).unwrap_or(0))
                    .fold(0u64, u64::saturating_add)
            })
            .collect();
        Ok(Projected {
            schema: planned.output,
            read_bytes,
        })
    }

    /// Reads one row group of `planned` from Parquet.
    fn open_parquet(&self, planned: &Planned, id: &ObjectId) -> OpenParquet {
        let template = planned.parquet.clone();
        let count = planned.metadata.num_row_groups();
        let ctx = self.ctx.clone();
        let id = id.clone();
        Arc::new(move |group| {
            let mut plan = template.clone();
            plan.row_groups = vec![group];
            let plan = plan
                .build(&id, count)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            execute_stream(plan, ctx.task_ctx())
        })
    }

    /// Where each row group `planned` keeps is read: from the hot tier when
    /// it holds all the columns the scan reads there, else from Parquet.
    /// Counts the scan as a hot hit, a partial hit or a miss, and lets the
    /// tier fill what it lacked.
    fn parts(
        &self,
        planned: &Planned,
        store: &Arc<CachingObjectStore>,
        id: &ObjectId,
    ) -> (Vec<(usize, Part)>, Option<FillGate>) {
        if !self.hot().is_enabled() {
            let parts = planned
                .row_groups
                .iter()
                .map(|&g| (g, Part::Parquet))
                .collect();
            return (parts, None);
        }
        let object = Arc::new(id.clone());
        let metadata = &planned.metadata;
        let mut parts = Vec::with_capacity(planned.row_groups.len());
        let mut missing = Vec::new();
        for &g in &planned.row_groups {
            let rows = metadata
                .row_groups()
                .get(g)
                .and_then(|rg| usize::try_from(rg.num_rows()).ok())
                .unwrap_or(0);
            match self.hot().row_group(&object, g, &planned.read) {
                Ok(arrays) => {
                    let keep = planned.deleted.as_ref().and_then(|d| d.keep(g, rows));
                    parts.push((g, Part::Hot { arrays, rows, keep }))
                }
                Err(absent) => {
                    missing.extend(absent.into_iter().map(|c| (g, c)));
                    parts.push((g, Part::Parquet));
                }
            }
        }
        let hot = parts
            .iter()
            .filter(|(_, p)| matches!(p, Part::Hot { .. }))
            .count();
        self.hot().record(if missing.is_empty() {
            Lookup::Hit
        } else if hot > 0 {
            Lookup::Partial
        } else {
            Lookup::Miss
        });
        let mut gate = None;
        if !missing.is_empty() {
            let factory = PinnedReaderFactory::new(
                store.clone(),
                self.footers.clone(),
                self.read_ahead.clone(),
                None,
            );
            gate = self.hot.missed(&object, metadata, &missing, factory);
        }
        (parts, gate)
    }

    /// Row groups a scan reads at once, and the share of the node's
    /// [`PARTS_BUDGET_KIB`] it holds for them until it ends. A limit without
    /// a filter is met by the first row groups, so they are read in order
    /// and no further. Else as many as hide the origin's latency, up to
    /// [`MAX_PARTS`], within what is left of the budget for their compressed
    /// column chunks: when many scans run, each reads fewer at once, down
    /// to one, which needs no budget. Hot row groups are evaluated on every
    /// core whatever the budget, since their bytes are already in memory.
    fn window(
        &self,
        planned: &Planned,
        req: &ScanRequest,
        any_hot: bool,
    ) -> (usize, Option<OwnedSemaphorePermit>) {
        let floor = if any_hot { self.parallelism } else { 1 };
        if req.limit.is_some() && planned.predicate.is_none() {
            return (floor, None);
        }
        let bytes: u64 = chunks_of(&planned.metadata, &planned.row_groups, &planned.read)
            .map(|c| u64::try_from(c.compressed_size()).unwrap_or(0))
            .fold(0, u64::saturating_add);
        let groups = planned.row_groups.len().max(1) as u64;
        let per_group_kib = (bytes / groups).div_ceil(1024).max(1);
        let mut window = planned.row_groups.len().min(MAX_PARTS);
        while window > 1 {
            let kib = per_group_kib.saturating_mul(window as u64);
            if let Some(permit) = u32::try_from(kib)
                .ok()
                .filter(|&k| k as usize <= PARTS_BUDGET_KIB)
                .and_then(|k| self.parts_budget.clone().try_acquire_many_owned(k).ok())
            {
                return (window.max(floor), Some(permit));
            }
            window /= 2;
        }
        (floor, None)
    }

    #[tracing::instrument(name = "scan_plan", skip_all, fields(source = %id.source, path = %id.path))]
    async fn plan(
        &self,
        store: &Arc<CachingObjectStore>,
        id: &ObjectId,
        req: &ScanRequest,
        client: Option<&str>,
    ) -> Result<Planned> {
        let what = format!("{}/{}", id.source, id.path);
        let metadata = self.metadata(store, id).await?;
        let schema = arrow_schema(metadata.clone(), id)?;
        let state = self.ctx.state();
        let predicate = match &req.filter {
            Some(filter) => {
                if filter.len() > self.limits.max_filter_len {
                    return Err(QuiverError::ResourceExhausted(format!(
                        "the filter is {} bytes long; this node accepts at most {}",
                        filter.len(),
                        self.limits.max_filter_len
                    )));
                }
                Some(Predicate::plan(&state, filter, &schema, &what)?)
            }
            None => None,
        };
        let projected: Vec<usize> = match &req.columns {
            Some(columns) => {
                check_columns(columns, &schema)?;
                columns
                    .iter()
                    .filter_map(|c| schema.index_of(c).ok())
                    .collect()
            }
            None => (0..schema.fields().len()).collect(),
        };
        let mut read = projected.clone();
        if let Some(predicate) = &predicate {
            for column in predicate.columns() {
                let index = schema.index_of(&column).map_err(|_| {
                    QuiverError::invalid(format!("the filter names unknown column `{column}`"))
                })?;
                read.push(index);
            }
        }
        read.sort_unstable();
        read.dedup();
        let input = Arc::new(schema.project(&read).map_err(|e| {
            QuiverError::Internal(format!("projecting the columns of {what}: {e}"))
        })?);
        let projection: Vec<usize> = projected
            .iter()
            .filter_map(|p| read.iter().position(|r| r == p))
            .collect();
        let count = metadata.num_row_groups();
        let deleted = match &req.deletion_vector {
            Some(dv) => {
                let rows = self.deletion_vectors.rows(store, dv).await?;
                Some(Arc::new(DeletedRows::new(rows, &metadata, &what)?))
            }
            None => None,
        };
        let mut row_groups = match &req.row_groups {
            Some(groups) => {
                if let Some(g) = groups.iter().find(|&&g| g >= count) {
                    return Err(QuiverError::invalid(format!(
                        "row group {g} does not exist; {what} has {count}"
                    )));
                }
                groups.clone()
            }
            None => (0..count).collect(),
        };
        if let Some(deleted) = &deleted {
            row_groups.retain(|&g| !deleted.all_deleted(g));
        }
        let (read_predicate, file_predicate) = match &predicate {
            Some(p) => {
                // A filter pruning cannot read keeps every row group.
                let kept = p.pruning(&state, &input).ok().and_then(|pruning| {
                    PruningPredicateBuilder::new()
                        .with_file_schema(input.clone())
                        .try_build(pruning)
                        .and_then(|p| p.prune(&RowGroupStats::new(&metadata, &row_groups, &schema)))
                        .ok()
                });
                if let Some(kept) = kept {
                    let mut keep = kept.into_iter();
                    row_groups.retain(|_| keep.next().unwrap_or(true));
                }
                (
                    Some(p.physical(&state, &input)?),
                    Some(p.physical(&state, &schema)?),
                )
            }
            None => (None, None),
        };
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
        let mut options = state.default_table_options().parquet;
        if predicate.is_some() && !holds_columns(store, id, &metadata, &row_groups, &read) {
            // A cold object is read in one round trip per row group: every
            // column the scan reads at once, filtered after decoding. With
            // the filter pushed into the decoder it would fetch the filter's
            // columns first and the rest's selected pages after them, two
            // trips to the origin for bytes it mostly has to fetch anyway.
            // Once the bytes are cached, pushing the filter down saves
            // decoding the rows it rules out.
            options.global.pushdown_filters = false;
            options.global.reorder_filters = false;
        }
        let parquet = ParquetPlan {
            schema: schema.clone(),
            store_url: store_url(&id.source)?,
            factory,
            row_groups: row_groups.clone(),
            read: read.clone(),
            file_predicate,
            read_predicate: read_predicate.clone(),
            projection: projection.clone(),
            limit: req.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            deleted: deleted.clone(),
            options,
        };
        let plan = parquet.clone().build(id, count)?;
        Ok(Planned {
            output: plan.schema(),
            plan,
            parquet,
            metadata,
            read,
            input,
            projection,
            predicate: read_predicate,
            row_groups,
            deleted,
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
            let what = format!("{}/{}", id.source, id.path);
            let predicate = Predicate::plan(&self.ctx.state(), filter, &schema, &what)?;
            for column in predicate.columns() {
                if !names.contains(&column) {
                    names.push(column);
                }
            }
        }
        Ok(names)
    }
}
