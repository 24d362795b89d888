//! A circuit breaker per source, as an `ObjectStore` around the origin.
//!
//! While the origin answers, every call goes through. After
//! `breaker_failures` calls in a row fail (each after its own retries), the
//! circuit opens: for `breaker_cooldown` every call fails at once, so a dead
//! origin costs a miss microseconds instead of the whole retry budget, and
//! scans of cached data, which never reach this store, go on. Then one call
//! probes the origin; its success closes the circuit, its failure opens it
//! for another cooldown.
//!
//! Only answers that say the origin is unwell count as failures: a missing
//! object, a refused precondition or a denied permission is a definite answer
//! from a healthy origin.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result as OsResult,
};
use prometheus::{IntCounter, IntGauge};

use crate::error::CircuitOpen;

/// The `store` name of the error an open circuit answers with; its source
/// is a [`CircuitOpen`], by which
/// [`crate::error::QuiverError::from_store`] recognises it.
const OPEN_STORE: &str = "quiver-circuit";

/// Where a breaker reports its state.
#[derive(Debug, Clone)]
pub struct BreakerMetrics {
    /// 1 while the circuit is open.
    pub open: IntGauge,
    /// Calls answered at once because the circuit was open.
    pub refused: IntCounter,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

#[derive(Debug)]
pub struct Breaker {
    source: Arc<str>,
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
    metrics: BreakerMetrics,
}

/// A call let through; it must report how it went. A call dropped without a
/// verdict (its caller went away) frees the probe slot without closing or
/// opening anything.
struct Call<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Call<'_> {
    fn settle<T>(mut self, result: &OsResult<T>) {
        self.settled = true;
        self.breaker.record(result.as_ref().err(), self.probe);
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            self.breaker.lock().probing = false;
        }
    }
}

impl Breaker {
    /// `threshold` 0 never opens.
    pub fn new(
        source: Arc<str>,
        threshold: u32,
        cooldown: Duration,
        metrics: BreakerMetrics,
    ) -> Self {
        Breaker {
            source,
            threshold,
            cooldown,
            state: Mutex::default(),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether misses currently fail fast.
    pub fn is_open(&self) -> bool {
        self.lock().open_until.is_some()
    }

    fn admit(&self) -> Result<Call<'_>, object_store::Error> {
        let mut state = self.lock();
        let Some(until) = state.open_until else {
            return Ok(Call {
                breaker: self,
                probe: false,
                settled: false,
            });
        };
        let now = Instant::now();
        if now >= until && !state.probing {
            state.probing = true;
            return Ok(Call {
                breaker: self,
                probe: true,
                settled: false,
            });
        }
        self.metrics.refused.inc();
        Err(object_store::Error::Generic {
            store: OPEN_STORE,
            source: Box::new(CircuitOpen {
                name: self.source.clone(),
                failures: state.failures,
                retry_in_ms: until.saturating_duration_since(now).as_millis(),
            }),
        })
    }

    fn record(&self, error: Option<&object_store::Error>, probe: bool) {
        let mut state = self.lock();
        if probe {
            state.probing = false;
        }
        match error {
            Some(e) if unwell(e) => {
                state.failures = state.failures.saturating_add(1);
                let opens = self.threshold > 0 && state.failures >= self.threshold;
                if opens && (probe || state.open_until.is_none()) {
                    if state.open_until.is_none() {
                        tracing::warn!(
                            source = %self.source,
                            failures = state.failures,
                            "the origin keeps failing: uncached reads fail fast until it recovers"
                        );
                    }
                    state.open_until = Some(Instant::now() + self.cooldown);
                    self.metrics.open.set(1);
                }
            }
            _ => {
                if state.open_until.is_some() {
                    tracing::info!(source = %self.source, "the origin answers again");
                }
                *state = State::default();
                self.metrics.open.set(0);
            }
        }
    }
}

/// Errors that say the origin could not be reached or is overloaded.
fn unwell(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    !matches!(
        e,
        E::NotFound { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::AlreadyExists { .. }
    )
}

/// The origin store behind its breaker.
#[derive(Debug)]
pub struct Guarded {
    inner: Arc<dyn ObjectStore>,
    breaker: Arc<Breaker>,
}

impl Guarded {
    pub fn new(inner: Arc<dyn ObjectStore>, breaker: Arc<Breaker>) -> Self {
        Guarded { inner, breaker }
    }

    /// A listing behind the breaker. Pages arrive after this returns, so
    /// a listing only counts its failures; its successes are counted by
    /// the calls around it.
    fn guard_listing(
        &self,
        list: impl FnOnce(&dyn ObjectStore) -> BoxStream<'static, OsResult<ObjectMeta>>,
    ) -> BoxStream<'static, OsResult<ObjectMeta>> {
        if let Err(e) = self.breaker.admit() {
            return futures::stream::once(async { Err(e) }).boxed();
        }
        let breaker = self.breaker.clone();
        list(self.inner.as_ref())
            .inspect(move |item| {
                if let Err(e) = item {
                    breaker.record(Some(e), false);
                }
            })
            .boxed()
    }
}

impl fmt::Display for Guarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guarded({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Guarded {
    async fn put_opts(&self, p: &Path, data: PutPayload, o: PutOptions) -> OsResult<PutResult> {
        let call = self.breaker.admit()?;
        let result = self.inner.put_opts(p, data, o).await;
        call.settle(&result);
        result
    }

    async fn put_multipart_opts(
        &self,
        p: &Path,
        o: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(p, o).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        let call = self.breaker.admit()?;
        let result = self.inner.get_opts(location, options).await;
        call.settle(&result);
        let mut result = result?;
        // A body that breaks off is a failure too; a body read to its end
        // is not counted twice.
        if let GetResultPayload::Stream(stream) = result.payload {
            let breaker = self.breaker.clone();
            result.payload = GetResultPayload::Stream(
                stream
                    .inspect(move |item| {
                        if let Err(e) = item {
                            breaker.record(Some(e), false);
                        }
                    })
                    .boxed(),
            );
        }
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> OsResult<Vec<Bytes>> {
        let call = self.breaker.admit()?;
        let result = self.inner.get_ranges(location, ranges).await;
        call.settle(&result);
        result
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.guard_listing(|inner| inner.list(prefix))
    }

    /// Forwarded rather than left to the default (a full listing, then
    /// filtered): S3 starts after the offset itself, and a Delta log is
    /// read page by page this way.
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, OsResult<ObjectMeta>> {
        self.guard_listing(|inner| inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        let call = self.breaker.admit()?;
        let result = self.inner.list_with_delimiter(prefix).await;
        call.settle(&result);
        result
    }

    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> OsResult<()> {
        self.inner.copy_opts(from, to, o).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: "connection reset".into(),
        }
    }

    fn breaker(threshold: u32, cooldown_ms: u64) -> Breaker {
        Breaker::new(
            Arc::from("lake"),
            threshold,
            Duration::from_millis(cooldown_ms),
            BreakerMetrics {
                open: IntGauge::new("open", "open").unwrap(),
                refused: IntCounter::new("refused", "refused").unwrap(),
            },
        )
    }

    fn fail(b: &Breaker) {
        b.admit().unwrap().settle::<()>(&Err(failure()));
    }

    #[test]
    fn opens_after_failures_in_a_row_and_closes_after_a_good_probe() {
        let b = breaker(3, 50);
        fail(&b);
        fail(&b);
        // A success in between resets the count.
        b.admit().unwrap().settle(&Ok(()));
        fail(&b);
        fail(&b);
        assert!(!b.is_open());
        fail(&b);
        assert!(b.is_open());
        let err = b.admit().err().unwrap();
        assert!(err.to_string().contains("failed 3 times in a row"), "{err}");
        std::thread::sleep(Duration::from_millis(60));
        // One probe at a time.
        let probe = b.admit().unwrap();
        assert!(b.admit().is_err());
        probe.settle(&Ok(()));
        assert!(!b.is_open());
        assert!(b.admit().is_ok());
    }

    #[test]
    fn a_failed_probe_opens_again_and_a_dropped_one_frees_the_slot() {
        let b = breaker(1, 30);
        fail(&b);
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(40));
        drop(b.admit().unwrap());
        let probe = b.admit().unwrap();
        probe.settle::<()>(&Err(failure()));
        assert!(
            b.admit().is_err(),
            "a failed probe must open the circuit again"
        );
    }

    #[test]
    fn definite_answers_are_not_failures() {
        let b = breaker(1, 1000);
        let missing = object_store::Error::NotFound {
            path: "x".into(),
            source: "404".into(),
        };
        b.admit().unwrap().settle::<()>(&Err(missing));
        assert!(!b.is_open());
    }

    #[test]
    fn zero_never_opens() {
        let b = breaker(0, 1000);
        for _ in 0..100 {
            fail(&b);
        }
        assert!(!b.is_open());
    }
}
