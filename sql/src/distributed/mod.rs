//! Flight SQL that uses the whole cluster (`sql.distributed`,
//! docs/architecture.md "Distributed SQL").
//!
//! A statement is planned by DataFusion as before; DataFusion-distributed
//! then cuts the physical plan into stages at its repartitions and
//! coalesces, and every node serves its worker service on the Flight port.
//! The receiving node coordinates: it runs only the head stage, and each
//! stage below runs as tasks on the nodes, the partial aggregates, filters
//! and projections next to the scans, so what crosses the network is
//! their output rather than every matching row.
//!
//! Quiver's part is placement and the plumbing: a scan is split by
//! endpoints among the nodes that own their slots and each part runs on
//! its owner ([`placement`]); workers are the nodes that answer when the
//! statement is planned ([`workers`]); a worker runs only plans that read
//! what a Quiver statement reads ([`admission`]); calls between nodes
//! carry the peer credential over the
//! cluster's TLS and are counted ([`channels`]); and a worker builds each
//! task's session as the coordinator built the statement's, with the same
//! aggregates, its own memory budget and a client that reads its own cache
//! first ([`worker`]).

mod admission;
mod channels;
mod explain;
mod mode;
mod placement;
mod worker;
mod workers;

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use datafusion_distributed::{
    DesiredTaskCountEvent, DistributedExt, ScaleUpLeafNodeEvent, SessionStateBuilderExt,
};
use quiver_client::{QuiverClient, QuiverCodec};

pub use mode::DistributedMode;

use crate::observe::{Role, StatementObserver};
use channels::PeerChannels;
use workers::{probe, Resolver};

/// How a node takes part in distributed statements.
#[derive(Debug, Clone, Default)]
pub struct DistributedOptions {
    pub mode: DistributedMode,
    /// What this node presents to other nodes' workers: the peer (or
    /// admin) token, when the cluster uses tokens.
    pub peer_token: Option<String>,
    /// The cluster uses tokens: without a peer credential no node would
    /// run this node's tasks, so statements are not distributed.
    pub tokens_required: bool,
}

/// The coordinating side, shared by the statements of one node.
pub(crate) struct Distribution {
    mode: DistributedMode,
    coordinator: PeerChannels,
    worker: PeerChannels,
    /// This node's own URL.
    local: Option<String>,
    observer: Option<Arc<dyn StatementObserver>>,
}

impl Distribution {
    /// Every node that serves SQL runs tasks as a worker, whatever its
    /// mode, so nodes with different settings still answer each other;
    /// `off`, or tokens without a peer credential (said once, at start),
    /// only stop this node from coordinating.
    pub(crate) fn new(
        opts: &DistributedOptions,
        connector: &quiver_client::Connector,
        local: Option<String>,
        observer: Option<Arc<dyn StatementObserver>>,
    ) -> Result<Distribution, String> {
        let mut mode = opts.mode;
        if mode != DistributedMode::Off && opts.tokens_required && opts.peer_token.is_none() {
            tracing::warn!(
                "sql.distributed is {mode} but this node has no peer token (auth.peer_token_file): statements run on the node that receives them"
            );
            mode = DistributedMode::Off;
        }
        let channels = |role| {
            PeerChannels::new(
                connector.clone(),
                opts.peer_token.as_deref(),
                observer.clone(),
                role,
            )
        };
        Ok(Distribution {
            mode,
            coordinator: channels(Role::Coordinator)?,
            worker: channels(Role::Worker)?,
            local,
            observer,
        })
    }

    /// `ctx` planning in distributed stages when more than one of the
    /// cluster's nodes answers; as it is otherwise.
    pub(crate) async fn coordinate(
        &self,
        ctx: SessionContext,
        client: &QuiverClient,
    ) -> SessionContext {
        if self.mode == DistributedMode::Off {
            return ctx;
        }
        let nodes: Vec<String> = client
            .topology()
            .nodes
            .iter()
            .map(|n| n.url.clone())
            .collect();
        let workers = probe(&nodes).await;
        if workers.len() < 2 {
            return ctx;
        }
        let mode = self.mode;
        let state = SessionStateBuilder::new_from_existing(ctx.state())
            .with_distributed_planner()
            .with_distributed_worker_resolver(Resolver(workers))
            .with_distributed_channel_resolver(self.coordinator.clone())
            .with_distributed_user_codec(QuiverCodec::new(client.clone()))
            .with_distributed_desired_task_count_handler(move |ev: DesiredTaskCountEvent<'_>| {
                placement::desired(ev, mode)
            })
            .with_distributed_scale_up_leaf_node_handler(move |ev: ScaleUpLeafNodeEvent<'_>| {
                placement::scale_up(ev, mode)
            })
            .with_distributed_route_tasks_handler(placement::route)
            .build();
        SessionContext::new_with_state(state)
    }

    /// A plain EXPLAIN of a statement that runs in stages, answered with
    /// its distributed plan ([`explain`]).
    pub(crate) async fn explain(
        &self,
        ctx: &SessionContext,
        plan: &datafusion::logical_expr::LogicalPlan,
        schema: &datafusion::arrow::datatypes::SchemaRef,
    ) -> datafusion::common::Result<Option<datafusion::arrow::array::RecordBatch>> {
        if self.mode == DistributedMode::Off {
            return Ok(None);
        }
        explain::explain(ctx, plan, schema).await
    }

    pub(crate) fn observer(&self) -> Option<&Arc<dyn StatementObserver>> {
        self.observer.as_ref()
    }
}
