//! The node's one error type. Each variant is a protocol error class
//! (docs/protocol.md §4), so the Flight adapter never has to guess a status
//! code, and each message is a single sentence a user can act on.

use std::sync::Arc;

use quiver_protocol::ErrorCode;

/// Why a source's circuit breaker did not let an origin call through. It
/// travels inside an `object_store::Error`, where [`QuiverError::from_store`]
/// finds it by type.
#[derive(Debug, thiserror::Error)]
#[error(
    "the origin of source `{name}` failed {failures} times in a row, so uncached reads fail at once for now (the next attempt in {retry_in_ms} ms)"
)]
pub struct CircuitOpen {
    pub name: Arc<str>,
    pub failures: u32,
    pub retry_in_ms: u128,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum QuiverError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// The object changed since the ticket was issued; carries the new ETag.
    #[error("{}", changed_message(.0))]
    Changed(String),
    /// This node does not own the slot; the client should go to `url`.
    #[error("{}", moved_message(.slot, .epoch, .url))]
    Moved { slot: u16, epoch: u64, url: String },
    /// The request cannot apply to the current state (e.g. a topology
    /// update against an epoch that has moved on).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DataLoss(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = QuiverError> = std::result::Result<T, E>;

/// A `CHANGED` answer's message, in the protocol's one spelling.
fn changed_message(etag: &str) -> String {
    quiver_protocol::Changed { etag: etag.into() }.to_string()
}

/// A `MOVED` redirect's message, in the protocol's one spelling.
fn moved_message(slot: &u16, epoch: &u64, url: &str) -> String {
    quiver_protocol::Moved {
        slot: *slot,
        epoch: *epoch,
        url: url.into(),
    }
    .to_string()
}

impl QuiverError {
    pub fn code(&self) -> ErrorCode {
        match self {
            QuiverError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            QuiverError::NotFound(_) => ErrorCode::NotFound,
            QuiverError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            QuiverError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            QuiverError::Changed(_)
            | QuiverError::Moved { .. }
            | QuiverError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            QuiverError::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            QuiverError::Unavailable(_) => ErrorCode::Unavailable,
            QuiverError::DataLoss(_) => ErrorCode::DataLoss,
            QuiverError::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        QuiverError::InvalidArgument(msg.into())
    }

    /// Classifies an object store failure for `what` (a user-facing name of
    /// the object). Anything that is not a definite answer from the origin
    /// means the origin could not be reached.
    pub fn from_store(what: &str, err: &object_store::Error) -> Self {
        use object_store::Error as E;
        match err {
            E::NotFound { .. } => QuiverError::NotFound(format!("object {what} does not exist")),
            // The store did not say what the object is now.
            E::Precondition { .. } => QuiverError::Changed("unknown".into()),
            E::InvalidPath { .. } => QuiverError::invalid(format!("{what} is not a valid path")),
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => QuiverError::Unavailable(
                format!("the origin refused access to {what}: check the node's credentials"),
            ),
            // The source's circuit is open: say so, and that cached data is
            // still served.
            E::Generic { source, .. } if source.is::<CircuitOpen>() => {
                QuiverError::Unavailable(format!("{what} is not cached and {source}"))
            }
            // The store's error names its endpoint and request; that is for
            // the log, not for clients.
            other => {
                tracing::warn!(object = what, error = %other, "an origin request failed");
                QuiverError::Unavailable(format!(
                    "the origin could not be read for {what} and the data is not cached"
                ))
            }
        }
    }
}

impl From<QuiverError> for tonic::Status {
    fn from(err: QuiverError) -> Self {
        let code = match err.code() {
            ErrorCode::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
            ErrorCode::FailedPrecondition => tonic::Code::FailedPrecondition,
            ErrorCode::ResourceExhausted => tonic::Code::ResourceExhausted,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::DataLoss => tonic::Code::DataLoss,
            ErrorCode::Internal => tonic::Code::Internal,
        };
        tonic::Status::new(code, err.to_string())
    }
}
