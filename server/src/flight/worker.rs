//! DataFusion-distributed's worker service, served beside the Flight
//! service on the Flight port: the stage tasks of distributed Flight SQL
//! statements (docs/architecture.md "Distributed SQL"). A task runs
//! whatever plan its coordinator sends, so only peers may call it: with
//! tokens configured every call must carry the peer (or admin) token, and a
//! reader token is refused.

use std::sync::Arc;

use datafusion_distributed::Worker;
use quiver_protocol::Caller;
use quiver_sql::{QuiverSql, WorkerSessions};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::request::{request_id, status};
use crate::node_core::NodeCore;

/// Largest message a coordinator may send a worker: a stage's plan, which
/// names every endpoint its scans read.
pub const MAX_TASK_BYTES: usize = 64 << 20;

/// The worker whose tasks run in sessions `sql` builds.
pub fn worker(sql: &Arc<QuiverSql>) -> Worker {
    Worker::from_session_builder(WorkerSessions(sql.clone()))
}

/// Refuses every call that does not carry a peer credential.
#[derive(Clone)]
pub struct PeersOnly(pub Arc<NodeCore>);

impl Interceptor for PeersOnly {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match self.0.auth.check(request.metadata(), Caller::Peer) {
            Ok(()) => Ok(request),
            Err(e) => Err(status(&self.0, &request_id(&request), e)),
        }
    }
}
