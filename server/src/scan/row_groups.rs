//! A scan's row groups read several at once and sent in file order, each
//! from wherever it is cheapest: the hot tier's decoded arrays when it holds
//! every column the scan reads in that row group, Parquet through the cache
//! otherwise.
//!
//! One decoder per object reads its row groups one after another, so a cold
//! scan waits on the origin once per row group and decodes on one core. Here
//! each Parquet row group is its own plan, run on a task of its own that
//! fetches and decodes while earlier row groups are still being sent; a
//! bounded channel per row group keeps backpressure, and at most `window`
//! row groups are in flight. Hot row groups are evaluated on the blocking
//! pool, as many at once as the window allows. A row group the hot tier
//! holds but cannot evaluate (an expression fails on rows an earlier
//! conjunct ruled out) is read from Parquet instead, so the client sees what
//! the Parquet path would have told it.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::stream::{self, BoxStream, Stream, StreamExt};
use futures::FutureExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::hot::Job;

/// Starts the Parquet read of one row group, by its index in the file.
pub type OpenParquet = Arc<dyn Fn(usize) -> DfResult<SendableRecordBatchStream> + Send + Sync>;

/// Where one row group of a scan is read from.
pub enum Part {
    /// The hot tier holds its arrays of every column the scan reads.
    Hot {
        arrays: Vec<ArrayRef>,
        rows: usize,
        /// The rows the table's log keeps, when it deletes some.
        keep: Option<BooleanArray>,
    },
    Parquet,
}

/// Batches a Parquet row group may decode ahead of the client.
const PART_BATCHES: usize = 2;

/// Counts the row-group tasks still running, so a stopping node can wait
/// for them before it closes the cache they read.
#[derive(Debug, Clone, Default)]
pub struct PartTasks(Arc<AtomicUsize>);

impl PartTasks {
    pub fn idle(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }

    fn start(&self) -> PartGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        PartGuard(self.0.clone())
    }
}

struct PartGuard(Arc<AtomicUsize>);

impl Drop for PartGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A scan split by row group.
pub struct RowGroupScan {
    /// The row groups the scan keeps, in file order, with where each is read.
    pub parts: Vec<(usize, Part)>,
    /// Evaluates hot row groups.
    pub job: Arc<Job>,
    pub open: OpenParquet,
    pub output: SchemaRef,
    pub limit: Option<usize>,
    /// Row groups in flight at once, at least one.
    pub window: usize,
    pub tasks: PartTasks,
    /// The scan's share of the node's budget for row groups in flight,
    /// returned when the scan ends or is dropped.
    pub budget: Option<OwnedSemaphorePermit>,
}

type Batches = BoxStream<'static, DfResult<RecordBatch>>;

impl RowGroupScan {
    /// The scan's batches, in file order, at most `limit` rows.
    pub fn stream(self) -> SendableRecordBatchStream {
        let RowGroupScan {
            parts,
            job,
            open,
            output,
            limit,
            window,
            tasks,
            budget,
        } = self;
        let span = tracing::Span::current();
        let ordered = stream::iter(parts)
            .map(move |(group, part)| {
                let (job, open, tasks) = (job.clone(), open.clone(), tasks.clone());
                match part {
                    Part::Parquet => {
                        futures::future::ready(spawn_part(open(group), &tasks, &span)).boxed()
                    }
                    Part::Hot { arrays, rows, keep } => {
                        let span = span.clone();
                        async move {
                            let evaluated =
                                tokio::task::spawn_blocking(move || job.evaluate(arrays, rows, keep))
                                    .await
                                    .unwrap_or_else(|e| {
                                        Err(DataFusionError::Execution(format!(
                                            "evaluating a row group failed: {e}"
                                        )))
                                    });
                            match evaluated {
                                Ok(batches) => stream::iter(batches.into_iter().map(Ok)).boxed(),
                                Err(e) => {
                                    tracing::debug!(
                                        row_group = group,
                                        error = %e,
                                        "the filter failed on hot arrays; the row group reads Parquet"
                                    );
                                    spawn_part(open(group), &tasks, &span)
                                }
                            }
                        }
                        .boxed()
                    }
                }
            })
            .buffered(window.max(1))
            .flatten()
            .boxed();
        Box::pin(RecordBatchStreamAdapter::new(
            output,
            limited(ordered, limit, budget),
        ))
    }
}

/// Runs one row group's Parquet stream on a task of its own, so it fetches
/// and decodes while the client still reads earlier row groups. The task
/// ends when its batches are all sent, on its first error, or when the scan
/// is dropped.
fn spawn_part(
    opened: DfResult<SendableRecordBatchStream>,
    tasks: &PartTasks,
    span: &tracing::Span,
) -> Batches {
    let mut source = match opened {
        Ok(s) => s,
        Err(e) => return stream::iter([Err(e)]).boxed(),
    };
    let (tx, rx) = mpsc::channel(PART_BATCHES);
    let guard = tasks.start();
    let task = tokio::spawn(
        async move {
            let _guard = guard;
            loop {
                let item = tokio::select! {
                    _ = tx.closed() => break,
                    item = source.next() => item,
                };
                let Some(item) = item else { break };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        }
        .instrument(span.clone()),
    );
    PartStream { rx, task }.boxed()
}

/// The batches of a row group read on its own task; dropping it stops the
/// task.
struct PartStream {
    rx: mpsc::Receiver<DfResult<RecordBatch>>,
    task: JoinHandle<()>,
}

impl Stream for PartStream {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for PartStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What [`limited`] carries from one batch to the next.
struct Limited {
    batches: Batches,
    left: Option<usize>,
    /// Held until the scan ends.
    _budget: Option<OwnedSemaphorePermit>,
}

/// `batches` cut to at most `limit` rows, ending at the first error. The
/// end comes as soon as the limit is reached, without waiting for another
/// row group; `budget` is returned then.
fn limited(
    batches: Batches,
    limit: Option<usize>,
    budget: Option<OwnedSemaphorePermit>,
) -> Batches {
    let state = Limited {
        batches,
        left: limit,
        _budget: budget,
    };
    stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        if state.left == Some(0) {
            return None;
        }
        match state.batches.next().await? {
            Ok(batch) => {
                let batch = match state.left {
                    Some(left) if batch.num_rows() >= left => {
                        state.left = Some(0);
                        batch.slice(0, left)
                    }
                    Some(left) => {
                        state.left = Some(left - batch.num_rows());
                        batch
                    }
                    None => batch,
                };
                Some((Ok(batch), Some(state)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use futures::TryStreamExt;
    use tokio::sync::Semaphore;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]))
    }

    fn batch(values: std::ops::Range<i64>) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![Arc::new(Int64Array::from_iter_values(values))],
        )
        .unwrap()
    }

    /// Row group `g` holds `g*100 .. g*100+100`; Parquet row groups come in
    /// four batches (more than a task may send ahead), after a delay that
    /// makes later ones finish first.
    fn open() -> OpenParquet {
        Arc::new(|g: usize| {
            let g = g as i64;
            let batches = stream::once(async move {
                tokio::time::sleep(std::time::Duration::from_millis(40 - 4 * g as u64)).await;
                stream::iter(
                    (0..4).map(move |q| Ok(batch(g * 100 + q * 25..g * 100 + q * 25 + 25))),
                )
            })
            .flatten();
            Ok(Box::pin(RecordBatchStreamAdapter::new(schema(), batches))
                as SendableRecordBatchStream)
        })
    }

    fn scan(hot: &[usize], limit: Option<usize>, window: usize, tasks: &PartTasks) -> RowGroupScan {
        let parts = (0..8)
            .map(|g| {
                let part = if hot.contains(&g) {
                    let values = g as i64 * 100..g as i64 * 100 + 100;
                    Part::Hot {
                        arrays: vec![Arc::new(Int64Array::from_iter_values(values))],
                        rows: 100,
                        keep: None,
                    }
                } else {
                    Part::Parquet
                };
                (g, part)
            })
            .collect();
        RowGroupScan {
            parts,
            job: Arc::new(Job {
                input: schema(),
                conjuncts: Vec::new(),
                projection: vec![0],
                output: schema(),
                batch_rows: 30,
            }),
            open: open(),
            output: schema(),
            limit,
            window,
            tasks: tasks.clone(),
            budget: None,
        }
    }

    async fn values(scan: RowGroupScan) -> Vec<i64> {
        let batches: Vec<RecordBatch> = scan.stream().try_collect().await.unwrap();
        batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    /// Whatever mix of hot and Parquet row groups and whatever window, the
    /// rows come in file order, each once, cut at the limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn row_groups_arrive_in_file_order_whatever_finishes_first() {
        let tasks = PartTasks::default();
        let all: Vec<i64> = (0..800).collect();
        for hot in [&[][..], &[0, 1, 2, 3, 4, 5, 6, 7], &[1, 4, 5], &[0, 7]] {
            for window in [1, 3, 8, 20] {
                assert_eq!(values(scan(hot, None, window, &tasks)).await, all);
                for limit in [0, 1, 49, 50, 130, 799, 800, 5000] {
                    let want: Vec<i64> = all.iter().copied().take(limit).collect();
                    let got = values(scan(hot, Some(limit), window, &tasks)).await;
                    assert_eq!(got, want, "hot {hot:?} window {window} limit {limit}");
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(tasks.idle(), "row-group tasks outlived their scans");
    }

    /// A scan dropped before its end stops the row groups it started and
    /// returns its budget.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_a_scan_stops_its_row_group_tasks_and_frees_its_budget() {
        let tasks = PartTasks::default();
        let budget = Arc::new(Semaphore::new(10));
        let mut scan = scan(&[], None, 8, &tasks);
        scan.budget = Some(budget.clone().try_acquire_many_owned(10).unwrap());
        let mut stream = scan.stream();
        stream.next().await.unwrap().unwrap();
        assert!(!tasks.idle());
        assert_eq!(budget.available_permits(), 0);
        drop(stream);
        assert_eq!(budget.available_permits(), 10);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !tasks.idle() {
            assert!(std::time::Instant::now() < deadline, "tasks still running");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// A scan read to its end returns its budget at once.
    #[tokio::test]
    async fn a_finished_scan_returns_its_budget() {
        let budget = Arc::new(Semaphore::new(10));
        let mut scan = scan(&[2], Some(130), 4, &PartTasks::default());
        scan.budget = Some(budget.clone().try_acquire_many_owned(10).unwrap());
        let mut stream = scan.stream();
        while let Some(b) = stream.next().await {
            b.unwrap();
        }
        assert_eq!(budget.available_permits(), 10);
    }

    /// An error ends the scan: nothing after it is sent.
    #[tokio::test]
    async fn the_first_error_ends_the_scan() {
        let mut scan = scan(&[0], None, 4, &PartTasks::default());
        scan.open = Arc::new(|g| {
            if g == 2 {
                Err(DataFusionError::Execution("broken row group".into()))
            } else {
                Ok(Box::pin(RecordBatchStreamAdapter::new(
                    schema(),
                    stream::iter([Ok(batch(g as i64 * 100..g as i64 * 100 + 100))]),
                )) as SendableRecordBatchStream)
            }
        });
        let items: Vec<DfResult<RecordBatch>> = scan.stream().collect().await;
        // Row group 0 in 4 batches of at most 30 rows, 1 in one, then 2's error.
        assert_eq!(items.len(), 4 + 1 + 1, "{items:?}");
        assert!(items.last().unwrap().is_err());
        assert!(items[..items.len() - 1].iter().all(|i| i.is_ok()));
    }
}
