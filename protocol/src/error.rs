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

/// A `MOVED <slot> <epoch> <url>` redirect, the message of a
/// FailedPrecondition: the node does not own `slot` at `epoch`; `url` is the
/// primary. Its text is made (`Display`) and read ([`Moved::parse`]) only
/// here.
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

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MOVED {} {} {}", self.slot, self.epoch, self.url)
    }
}

/// A `CHANGED <etag>` answer, the message of a FailedPrecondition: the
/// object is no longer the version the ticket was planned against; `etag`
/// is its current one. Made and read only here, like [`Moved`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub etag: String,
}

impl Changed {
    /// `None` when `message` is not a `CHANGED` answer.
    pub fn parse(message: &str) -> Option<Changed> {
        let etag = message.strip_prefix("CHANGED ")?;
        (!etag.is_empty()).then(|| Changed { etag: etag.into() })
    }
}

impl std::fmt::Display for Changed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CHANGED {}", self.etag)
    }
}

#[cfg(test)]
mod tests {
    use super::{Changed, Moved};

    #[test]
    fn answers_read_back_what_they_print() {
        let moved = Moved {
            slot: 12,
            epoch: 7,
            url: "grpc+tls://n2:50051".into(),
        };
        assert_eq!(Moved::parse(&moved.to_string()), Some(moved));
        let changed = Changed {
            etag: "\"abc-1\"".into(),
        };
        assert_eq!(Changed::parse(&changed.to_string()), Some(changed));
        assert_eq!(Changed::parse("CHANGED "), None);
        assert_eq!(Changed::parse("MOVED 1 1 grpc://h:1"), None);
    }

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
