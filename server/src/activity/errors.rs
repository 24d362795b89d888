//! The last requests that failed: a ring of the newest
//! [`MAX_RECENT_ERRORS`], each with its time, request id, gRPC code and
//! message, so an operator can find them in the logs by request id.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::SecondsFormat;
use serde::Serialize;

use super::clip;

/// Failed requests kept; older ones fall out.
pub const MAX_RECENT_ERRORS: usize = 50;

/// Longest message kept, in characters. Messages can quote what a client
/// sent (a filter, a path), so they are cut rather than trusted to be short.
pub const MAX_MESSAGE_CHARS: usize = 512;

/// Longest request id kept, in characters. The Flight adapter already
/// refuses longer ones; this keeps the ring bounded on its own.
const MAX_REQUEST_ID_CHARS: usize = 64;

/// One failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentError {
    /// When it failed: RFC 3339, UTC, milliseconds.
    pub time: String,
    pub request_id: String,
    /// The gRPC code, spelled as the `code` label of `quiver_errors_total`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct RecentErrors(Mutex<VecDeque<RecentError>>);

impl RecentErrors {
    pub fn record(&self, request_id: &str, code: tonic::Code, message: &str) {
        let entry = RecentError {
            time: chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            request_id: clip(request_id, MAX_REQUEST_ID_CHARS),
            code: format!("{code:?}"),
            message: clip(message, MAX_MESSAGE_CHARS),
        };
        let mut ring = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while ring.len() >= MAX_RECENT_ERRORS {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    /// The kept errors, newest first.
    pub fn newest_first(&self) -> Vec<RecentError> {
        let ring = self.0.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_cuts_long_messages() {
        let errors = RecentErrors::default();
        for i in 0..MAX_RECENT_ERRORS + 7 {
            errors.record(&format!("rid-{i}"), tonic::Code::NotFound, "gone");
        }
        errors.record("last", tonic::Code::InvalidArgument, &"x".repeat(10_000));
        let kept = errors.newest_first();
        assert_eq!(kept.len(), MAX_RECENT_ERRORS);
        assert_eq!(kept[0].request_id, "last");
        assert_eq!(kept[0].code, "InvalidArgument");
        assert_eq!(kept[0].message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(kept[1].request_id, format!("rid-{}", MAX_RECENT_ERRORS + 6));
        assert_eq!(kept[1].code, "NotFound");
        // The oldest fell out.
        assert!(!kept.iter().any(|e| e.request_id == "rid-0"));
        assert!(chrono::DateTime::parse_from_rfc3339(&kept[0].time).is_ok());
    }
}
