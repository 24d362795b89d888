//! A panic in the node's own code (or in a library it calls) while serving a
//! request fails that request with `Internal`, naming its request id, instead
//! of tearing down the client's connection and leaking the request's slot
//! and gauges.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use crate::error::{QuiverError, Result};

/// Runs `work`, turning a panic into an `Internal` error.
///
/// `AssertUnwindSafe` is sound here because nothing `work` touched is used
/// again after a panic except through locks that recover from poisoning and
/// counters that are released by their guards.
pub async fn caught<T>(rid: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(payload) => Err(panicked(rid, payload.as_ref())),
    }
}

/// Logs a panic with its request id and says what the client sees.
pub fn panicked(rid: &str, payload: &(dyn Any + Send)) -> QuiverError {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    tracing::error!(request_id = rid, panic = %what, "a request panicked");
    internal(rid)
}

/// What a client is told about a request that panicked.
pub fn internal(rid: &str) -> QuiverError {
    QuiverError::Internal(format!(
        "the node failed while serving request {rid}; this is a bug: please report it with the request id"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_an_internal_error_with_the_request_id() {
        let err = caught::<()>("rid-42", async { panic!("boom") })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, QuiverError::Internal(m) if m.contains("rid-42")),
            "{err:?}"
        );
        let ok = caught("rid-43", async { Ok(7) }).await.unwrap();
        assert_eq!(ok, 7);
    }
}
