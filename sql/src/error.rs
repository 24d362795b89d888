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

/// A node's answer keeps its code and message; an unreachable node is
/// Unavailable.
pub fn client_status(e: &ClientError) -> Status {
    match e {
        ClientError::Status { code, message, .. } => Status::new(*code, message.clone()),
        ClientError::Connect { .. } => Status::unavailable(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}
