//! The worker side: the session each stage task of a distributed
//! statement runs in on this node.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::{FunctionRegistry, SessionState};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{
    DistributedExt, WorkerPlanRewriteEvent, WorkerPlanRewriteEventResponse,
};
use quiver_client::exec::as_quiver_scan;
use quiver_client::{QuiverClient, QuiverCodec};

use super::admission::admit;
use super::workers::worker_url;
use super::Distribution;

impl Distribution {
    /// A task's session: the engine's runtime with `memory` for this task
    /// alone, Quiver's scans (read through `client`, this node first) and
    /// exact aggregates, calls to other workers with the peer credential,
    /// only plans a Quiver statement could make ([`admit`]), and every task
    /// counted.
    pub(crate) fn worker_state(
        &self,
        builder: datafusion::execution::SessionStateBuilder,
        client: &QuiverClient,
        memory: usize,
    ) -> DfResult<SessionState> {
        let observer = self.observer.clone();
        let local = self.local.as_deref().and_then(worker_url);
        let mut state = builder
            .with_runtime_env(crate::session::runtime(memory)?)
            .with_distributed_user_codec(QuiverCodec::new(client.clone()))
            .with_distributed_channel_resolver(self.worker.clone())
            .with_distributed_worker_plan_rewrite_handler(move |ev: WorkerPlanRewriteEvent| {
                admit(&ev.plan)?;
                if let Some(o) = &observer {
                    let (scans, local) = reads(&ev.plan, local.as_ref())?;
                    o.task(scans, local);
                }
                Ok(WorkerPlanRewriteEventResponse::new(ev.plan))
            })
            .build();
        for aggregate in crate::exact_aggregates::udafs() {
            state.register_udaf(Arc::new(aggregate))?;
        }
        Ok(state)
    }
}

/// Whether `plan` reads Quiver endpoints, and whether `local` owns the
/// slot of every one it reads.
fn reads(
    plan: &Arc<dyn ExecutionPlan>,
    local: Option<&url::Url>,
) -> Result<(bool, bool), DataFusionError> {
    let (mut scans, mut owned) = (false, true);
    plan.apply(|node| {
        if let Some(scan) = as_quiver_scan(node.as_ref()) {
            scans = true;
            owned &= scan.spec().endpoints.iter().all(|e| {
                e.locations
                    .iter()
                    .filter_map(|l| worker_url(l))
                    .any(|u| Some(&u) == local)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok((scans, scans && owned))
}
