//! The sessions this node's worker service runs distributed statements'
//! stage tasks in: built by the node's Flight SQL service, so a task sees
//! the same client, aggregates and memory budget as a statement the node
//! coordinates (`crate::distributed`, docs/architecture.md "Distributed
//! SQL").

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::Result as DfResult;
use datafusion::execution::SessionState;
use datafusion_distributed::{WorkerQueryContext, WorkerSessionBuilder};

use super::QuiverSql;

/// Builds the session of every task this node's worker service runs.
pub struct WorkerSessions(pub Arc<QuiverSql>);

#[async_trait]
impl WorkerSessionBuilder for WorkerSessions {
    async fn build_session_state(&self, ctx: WorkerQueryContext) -> DfResult<SessionState> {
        self.0.worker_session(ctx.builder).await
    }
}
