/// The metadata key under which every response carries its request id, so a
/// user can quote it and an operator can find the matching log lines.
pub const REQUEST_ID_HEADER: &str = "x-quiver-request-id";

/// The error classes of the protocol, each with a fixed gRPC status code.
///
/// Kept free of any gRPC crate so that the contract does not drag a transport
/// into every dependant; the server maps these onto `tonic::Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    Unauthenticated,
    PermissionDenied,
    /// `MOVED <slot> <epoch> <url>` or `CHANGED <etag>`.
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    DataLoss,
    Internal,
}
