//! DataFusion runs parts of a query on tasks of its own (a Flight SQL
//! statement's partitions); without help their spans, and the scans they
//! send to the nodes, would start traces of their own. DataFusion's join
//! set tracer hook runs each such task inside the span that spawned it.

use std::any::Any;

use datafusion::common::runtime::{set_join_set_tracer, JoinSetTracer};
use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::Instrument;

/// Spawned futures and blocking closures inherit the spawner's span.
struct CurrentSpan;

impl JoinSetTracer for CurrentSpan {
    fn trace_future(
        &self,
        fut: BoxFuture<'static, Box<dyn Any + Send>>,
    ) -> BoxFuture<'static, Box<dyn Any + Send>> {
        fut.in_current_span().boxed()
    }

    fn trace_block(
        &self,
        f: Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>,
    ) -> Box<dyn FnOnce() -> Box<dyn Any + Send> + Send> {
        let span = tracing::Span::current();
        Box::new(move || span.in_scope(f))
    }
}

static CURRENT_SPAN: CurrentSpan = CurrentSpan;

/// Installs the hook; DataFusion takes one per process, so a second call
/// (another node in the same process) keeps the first, which is the same.
pub fn follow_datafusion_tasks() {
    let _ = set_join_set_tracer(&CURRENT_SPAN);
}
