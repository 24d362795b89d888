//! Single-flight fetching of missing chunks: a chunk being fetched is
//! awaited by every reader that wants it instead of being fetched again,
//! and adjacent missing chunks are fetched together, from a peer during a
//! hand-off or else with one ranged GET to the origin.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};
use object_store::ObjectStore;
use tracing::Instrument;

use super::origin::fetch_origin;
use super::{lock, ChunkCache, MAX_RUN_CHUNKS};
use crate::error::{QuiverError, Result};
use crate::source::ObjectId;

/// A fetch of one chunk, shared by every reader waiting for it.
pub(super) type Pending = Shared<BoxFuture<'static, Result<Bytes>>>;

impl ChunkCache {
    /// For each missing chunk: join the fetch already in flight, or start one
    /// for each run of adjacent chunks nobody is fetching yet. With
    /// `trust_cache`, chunks that a fetch filled since the caller's lookup
    /// are returned apart, to be looked up again: a fill inserts its chunks
    /// and leaves the in-flight map under the same lock, so a chunk is
    /// always either in flight or in the cache by the time it is claimed.
    pub(super) fn claim(
        &self,
        id: &ObjectId,
        origin: &Arc<dyn ObjectStore>,
        missing: &[u64],
        trust_cache: bool,
    ) -> (Vec<(u64, Pending)>, Vec<u64>) {
        let mut inflight = lock(&self.inner.inflight);
        let mut out = Vec::with_capacity(missing.len());
        let mut mine: Vec<u64> = Vec::new();
        let mut filled: Vec<u64> = Vec::new();
        for &index in missing {
            let key = self.key(id, index);
            match inflight.get(&key) {
                Some(p) => out.push((index, p.clone())),
                None if trust_cache && self.inner.cache.contains(&key) => filled.push(index),
                None => mine.push(index),
            }
        }
        for run in runs(&mine) {
            let fetch = self.spawn_fetch(id, origin, run.clone());
            for index in run {
                let offset = ((index - run_start(&fetch.1)) * self.inner.chunk) as usize;
                let len = self.chunk_len(id, index) as usize;
                let part: Pending = fetch
                    .0
                    .clone()
                    .map(move |r| r.map(|b| b.slice(offset..offset + len)))
                    .boxed()
                    .shared();
                inflight.insert(self.key(id, index), part.clone());
                out.push((index, part));
            }
        }
        (out, filled)
    }

    /// Fetches chunks `run` with one GET in a task of its own, so that the
    /// fetch completes (and the in-flight entries are cleared) even if every
    /// reader that wanted it has gone away.
    fn spawn_fetch(
        &self,
        id: &ObjectId,
        origin: &Arc<dyn ObjectStore>,
        run: Range<u64>,
    ) -> (Pending, Range<u64>) {
        let this = self.clone();
        let id = id.clone();
        let origin = origin.clone();
        let r = run.clone();
        let task = tokio::spawn(
            async move {
                let chunk = this.inner.chunk;
                if let Some(parts) = this.peer_chunks(&id, r.clone()).await {
                    let mut inflight = lock(&this.inner.inflight);
                    this.inner.metrics.miss(r.end - r.start);
                    let mut run = BytesMut::new();
                    for (index, part) in r.clone().zip(parts) {
                        run.extend_from_slice(&part);
                        this.store(&id, index, part);
                        inflight.remove(&this.key(&id, index));
                    }
                    return Ok(run.freeze());
                }
                let bytes_range = r.start * chunk..(r.end * chunk).min(id.size);
                let result = match this.inner.fetch_slots.acquire().await {
                    Ok(_slot) => fetch_origin(&origin, &id, bytes_range, &this.inner.metrics).await,
                    Err(_) => Err(QuiverError::Internal(
                        "the origin fetch limiter was closed".into(),
                    )),
                };
                let mut inflight = lock(&this.inner.inflight);
                if let Ok(bytes) = &result {
                    this.inner.metrics.miss(r.end - r.start);
                    for index in r.clone() {
                        let start = ((index - r.start) * chunk) as usize;
                        let len = this.chunk_len(&id, index) as usize;
                        // Copy so that each entry owns exactly its bytes, not the
                        // whole run's buffer.
                        let value = Bytes::copy_from_slice(&bytes[start..start + len]);
                        this.store(&id, index, value);
                    }
                }
                for index in r {
                    inflight.remove(&this.key(&id, index));
                }
                result
            }
            // Within the lookup that started it: its peer fill or origin GET
            // shows up in that request's trace.
            .in_current_span(),
        );
        let fut: Pending = async move {
            task.await.unwrap_or_else(|e| {
                Err(QuiverError::Internal(format!(
                    "a cache fill task failed: {e}"
                )))
            })
        }
        .boxed()
        .shared();
        (fut, run)
    }

    /// Chunks `run` from a peer, when one is set and has every one of them
    /// at its right length; anything less and the origin is read instead.
    async fn peer_chunks(&self, id: &ObjectId, run: Range<u64>) -> Option<Vec<Bytes>> {
        let peers = self.inner.peers.as_ref()?;
        let parts = peers
            .fetch(id.clone(), self.inner.chunk, run.clone())
            .await?;
        let complete = parts.len() as u64 == run.end - run.start
            && run
                .clone()
                .zip(&parts)
                .all(|(index, part)| part.len() as u64 == self.chunk_len(id, index));
        if !complete {
            tracing::warn!(
                source = %id.source, path = %id.path,
                "a peer sent chunks of the wrong number or length; reading the origin"
            );
            return None;
        }
        let bytes: u64 = parts.iter().map(|p| p.len() as u64).sum();
        self.inner.metrics.peer_fill_bytes.inc_by(bytes);
        Some(parts)
    }
}

fn run_start(run: &Range<u64>) -> u64 {
    run.start
}

/// Groups sorted chunk indices into runs of adjacent indices, at most
/// `MAX_RUN_CHUNKS` long.
fn runs(sorted: &[u64]) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for &i in sorted {
        match out.last_mut() {
            Some(r) if r.end == i && r.end - r.start < MAX_RUN_CHUNKS => r.end += 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_adjacent_and_cap_length() {
        assert_eq!(runs(&[1, 2, 3, 7, 9, 10]), vec![1..4, 7..8, 9..11]);
        let long: Vec<u64> = (0..20).collect();
        assert_eq!(runs(&long), vec![0..8, 8..16, 16..20]);
        assert!(runs(&[]).is_empty());
    }
}
