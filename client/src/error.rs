//! The client's errors: what went wrong, in one sentence a user can act on,
//! with the node's status code and request id when a node answered.

use quiver_protocol::REQUEST_ID_HEADER;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad node URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The node answered with an error status (`docs/protocol.md` §4).
    #[error("{}", status_line(*code, message, request_id.as_deref()))]
    Status {
        code: tonic::Code,
        message: String,
        request_id: Option<String>,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("{0}")]
    Flight(arrow_flight::error::FlightError),
    #[error("the node sent an answer this client cannot read: {0}")]
    Decode(String),
    #[error("{0}")]
    Topology(#[from] quiver_protocol::TopologyError),
    /// The caller's request cannot be sent as asked.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    DataFusion(String),
    /// A pre-signed URL no longer works (expired, or refused by the store):
    /// plan again for a fresh one.
    #[error("the pre-signed URL for {0} was refused (it has expired or was altered)")]
    UrlRefused(String),
    /// The object behind a pre-signed URL is not the version planned.
    #[error("{0} changed since it was planned")]
    ObjectChanged(String),
    /// The store behind a pre-signed URL could not be read.
    #[error("reading {what} through its pre-signed URL failed: {reason}")]
    Origin { what: String, reason: String },
}

fn status_line(code: tonic::Code, message: &str, request_id: Option<&str>) -> String {
    let code = code_name(code);
    match request_id {
        Some(rid) => format!("{message} ({code}, request id {rid})"),
        None => format!("{message} ({code})"),
    }
}

/// The gRPC code as the protocol document names it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "Ok",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

impl ClientError {
    /// The node's status code, when a node answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The request id the node gave the failed call, for its logs.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ClientError::Status { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The node's one-sentence message, when a node answered.
    pub fn message(&self) -> Option<&str> {
        match self {
            ClientError::Status { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Errors that another owner would answer the same way: the request
    /// itself is wrong, so failing over would only repeat it.
    pub(crate) fn is_final(&self) -> bool {
        use tonic::Code::*;
        match self {
            ClientError::Status { code, message, .. } => {
                matches!(
                    code,
                    InvalidArgument | NotFound | DataLoss | Unauthenticated | PermissionDenied
                ) || quiver_protocol::Changed::parse(message).is_some()
            }
            ClientError::BadUrl { .. } | ClientError::Tls(_) | ClientError::Refused(_) => true,
            _ => false,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        let request_id = status
            .metadata()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        ClientError::Status {
            code: status.code(),
            message: status.message().to_string(),
            request_id,
        }
    }
}

impl ClientError {
    /// Names `url` in a failure that no node answered (tonic reports a
    /// refused connection as an Unavailable status without a request id).
    pub fn at(self, url: &str) -> ClientError {
        match self {
            ClientError::Status {
                code: tonic::Code::Unavailable | tonic::Code::Unknown,
                message,
                request_id: None,
            } => ClientError::Connect {
                url: url.to_string(),
                reason: message,
            },
            other => other,
        }
    }
}

impl From<arrow_flight::error::FlightError> for ClientError {
    fn from(e: arrow_flight::error::FlightError) -> Self {
        match e {
            arrow_flight::error::FlightError::Tonic(status) => ClientError::from(*status),
            other => ClientError::Flight(other),
        }
    }
}

impl From<datafusion::error::DataFusionError> for ClientError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        // A client error that travelled through DataFusion comes back whole.
        match e.find_root() {
            datafusion::error::DataFusionError::External(inner) => {
                if let Some(c) = inner.downcast_ref::<ClientError>() {
                    return c.clone_shallow();
                }
                ClientError::DataFusion(e.message().to_string())
            }
            _ => ClientError::DataFusion(e.message().to_string()),
        }
    }
}

impl ClientError {
    /// A copy that keeps everything a user is shown (FlightError is not
    /// `Clone`, so it is kept as its text).
    fn clone_shallow(&self) -> ClientError {
        match self {
            ClientError::BadUrl { url, reason } => ClientError::BadUrl {
                url: url.clone(),
                reason: reason.clone(),
            },
            ClientError::Connect { url, reason } => ClientError::Connect {
                url: url.clone(),
                reason: reason.clone(),
            },
            ClientError::Status {
                code,
                message,
                request_id,
            } => ClientError::Status {
                code: *code,
                message: message.clone(),
                request_id: request_id.clone(),
            },
            ClientError::Tls(m) => ClientError::Tls(m.clone()),
            ClientError::Flight(e) => ClientError::Decode(e.to_string()),
            ClientError::Decode(m) => ClientError::Decode(m.clone()),
            ClientError::Topology(t) => ClientError::Refused(t.to_string()),
            ClientError::Refused(m) => ClientError::Refused(m.clone()),
            ClientError::DataFusion(m) => ClientError::DataFusion(m.clone()),
            ClientError::UrlRefused(m) => ClientError::UrlRefused(m.clone()),
            ClientError::ObjectChanged(m) => ClientError::ObjectChanged(m.clone()),
            ClientError::Origin { what, reason } => ClientError::Origin {
                what: what.clone(),
                reason: reason.clone(),
            },
        }
    }
}

/// Turns a client error into a DataFusion error that can be turned back.
pub fn to_datafusion(e: ClientError) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}
