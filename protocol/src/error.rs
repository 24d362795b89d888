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

/// A `MOVED <slot> <epoch> <url>` redirect, parsed from a FailedPrecondition
/// message: the node does not own `slot` at `epoch`; `url` is the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub slot: u16,
    pub epoch: u64,
    pub url: String,
}

impl Moved {
    /// `None` when `message` is not a well-formed redirect.
    pub fn parse(message: &str) -> Option<Moved> {
        let mut parts = message.strip_prefix("MOVED ")?.split(' ');
        let slot = parts.next()?.parse().ok()?;
        let epoch = parts.next()?.parse().ok()?;
        let url = parts.next()?.to_string();
        (parts.next().is_none() && slot < crate::SLOT_COUNT).then_some(Moved { slot, epoch, url })
    }
}

#[cfg(test)]
mod tests {
    use super::Moved;

    #[test]
    fn redirects_parse_strictly() {
        assert_eq!(
            Moved::parse("MOVED 3959 2 grpc://10.0.0.2:50051"),
            Some(Moved {
                slot: 3959,
                epoch: 2,
                url: "grpc://10.0.0.2:50051".into()
            })
        );
        for bad in [
            "CHANGED \"abc\"",
            "MOVED 16384 1 grpc://h:1",
            "MOVED x 1 grpc://h:1",
            "MOVED 1 1",
            "MOVED 1 1 grpc://h:1 extra",
        ] {
            assert_eq!(Moved::parse(bad), None, "{bad}");
        }
    }
}
