//! Flight SQL errors as the protocol's status codes (`docs/protocol.md` §4):
//! a statement that does not parse or plan is InvalidArgument with
//! DataFusion's own message, a query over its memory budget is
//! ResourceExhausted, and errors from the nodes keep their codes.

use datafusion::error::DataFusionError;
use quiver_client::ClientError;
use tonic::Status;

/// The status for an error met planning or running a statement.
pub fn status(e: DataFusionError) -> Status {
    let root = e.find_root();
    if let Some(s) = worker_error(root) {
        return worker_status(s);
    }
    match root {
        DataFusionError::ResourcesExhausted(m) => Status::resource_exhausted(format!(
            "the query needs more memory than this node gives one query: {m}"
        )),
        DataFusionError::External(inner) => match inner.downcast_ref::<ClientError>() {
            Some(c) => client_status(c),
            None => Status::internal(root.message().to_string()),
        },
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_) => Status::invalid_argument(root.message().to_string()),
        // A cast or arithmetic fault on the data is the query's, not the
        // node's.
        DataFusionError::ArrowError(..) | DataFusionError::Execution(_) => {
            Status::invalid_argument(root.message().to_string())
        }
        _ => Status::internal(root.message().to_string()),
    }
}

/// [`status`] of an error of a statement that ran in distributed stages. A
/// worker sends its errors back as text when DataFusion-distributed does
/// not know their type: a stage that lost the worker below it, or a
/// Quiver scan's error on a worker. Those are the workers' failures,
/// Unavailable with their text, not the node's bugs.
pub fn distributed_status(e: DataFusionError) -> Status {
    let external = matches!(e.find_root(), DataFusionError::External(_));
    let s = status(e);
    if external && s.code() == tonic::Code::Internal {
        return worker_status(&s);
    }
    s
}

/// The gRPC status of a call to another node's worker that `e` carries, at
/// any depth (DataFusion-distributed wraps it in DataFusion's and Arrow's
/// external errors). Quiver's own scans report [`ClientError`]s, not bare
/// statuses.
fn worker_error(e: &DataFusionError) -> Option<&Status> {
    let mut at: Option<&(dyn std::error::Error + 'static)> = match e {
        DataFusionError::External(inner) => Some(inner.as_ref()),
        DataFusionError::ArrowError(inner, _) => Some(inner.as_ref()),
        _ => None,
    };
    while let Some(err) = at {
        if err.is::<ClientError>() {
            return None;
        }
        if let Some(s) = err.downcast_ref::<Status>() {
            return Some(s);
        }
        at = err.source();
    }
    None
}

/// A call to another node's worker failed while a distributed statement
/// ran. The statement fails whole (the rows it sent before are not an
/// answer); a worker that vanished or broke its stream is Unavailable, and
/// the next statement is planned without it. A worker's own refusal
/// (credentials, memory) keeps its code.
fn worker_status(s: &Status) -> Status {
    use tonic::Code;
    match s.code() {
        Code::Unknown | Code::Unavailable | Code::Cancelled | Code::Internal | Code::Aborted => {
            Status::unavailable(format!(
                "a node running part of this distributed statement failed ({}); run the statement again: the next plan leaves out nodes that do not answer",
                s.message()
            ))
        }
        code => Status::new(
            code,
            format!("a node running part of this distributed statement refused it: {}", s.message()),
        ),
    }
}

/// A node's answer keeps its code and message; an unreachable node is
/// Unavailable.
pub fn client_status(e: &ClientError) -> Status {
    match e {
        ClientError::Status { code, message, .. } => Status::new(*code, message.clone()),
        ClientError::Connect { .. } => Status::unavailable(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}
