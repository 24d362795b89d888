//! Single-flight filling of missing bytes: bytes of a chunk being fetched
//! are awaited by every reader that wants them instead of being fetched
//! again, and the rest of what one read lacks is fetched exactly, from a
//! peer during a hand-off or else with ranged GETs to the origin that join
//! parts lying close together, in parallel.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::{FuturesUnordered, StreamExt};
use object_store::ObjectStore;
use tracing::Instrument;

use super::origin::fetch_origin;
use super::piece::{minus, Piece};
use super::{lock, ChunkCache, MAX_RUN_CHUNKS};
use crate::error::{QuiverError, Result};
use crate::metrics::Tier;
use crate::source::ObjectId;

/// A fill of one chunk, shared by every reader waiting for it: the chunk's
/// entry once the fill stored it.
pub(super) type Pending = Shared<BoxFuture<'static, Result<Piece>>>;

/// A fill of some ranges of a chunk in flight, and the claim that started
/// it: only that claim's fill clears it, and other claims of the same
/// chunk (for other ranges) keep theirs.
pub(super) struct InFlight {
    claim: u64,
    ranges: Vec<Range<u64>>,
    pending: Pending,
}

/// One chunk a read still lacks bytes of.
pub(super) struct Need {
    pub index: u64,
    /// The ranges of the chunk the read wants, from the chunk's start.
    pub want: Vec<Range<u64>>,
    /// What the read has of the chunk so far.
    pub have: Piece,
}

impl Need {
    pub fn met(&self) -> bool {
        self.have.missing(&self.want).is_empty()
    }
}

/// What a claim fetches of one chunk.
struct Fill {
    index: u64,
    /// The chunk's entry when it was claimed, kept in the stored entry.
    base: Piece,
    missing: Vec<Range<u64>>,
}

/// One ranged GET, and which fill each of its parts belongs to.
struct Get {
    range: Range<u64>,
    parts: Vec<(usize, Range<u64>)>,
}

impl ChunkCache {
    /// For each need not yet met: take what the memory tier gained since
    /// the read's lookup, await the fills in flight that fetch any of the
    /// rest, and fill what nobody is fetching in one claim of this read's
    /// own. Returns the fills to await, by position in `needs`.
    pub(super) fn claim(
        &self,
        id: &ObjectId,
        origin: &Arc<dyn ObjectStore>,
        needs: &mut [Need],
    ) -> Vec<(usize, Pending)> {
        let mut inflight = lock(&self.inner.inflight);
        let mut out = Vec::with_capacity(needs.len());
        let mut mine = Vec::new();
        for (i, need) in needs.iter_mut().enumerate() {
            let key = self.key(id, need.index);
            if let Some(p) = self.peek(id, need.index) {
                need.have = need.have.join(&p);
            }
            let mut missing = need.have.missing(&need.want);
            if missing.is_empty() {
                self.inner.metrics.hit(Tier::Memory);
                continue;
            }
            for fill in inflight.get(&key).into_iter().flatten() {
                let rest = minus(&missing, &fill.ranges);
                if rest != missing {
                    out.push((i, fill.pending.clone()));
                    missing = rest;
                }
            }
            if !missing.is_empty() {
                mine.push((i, missing));
            }
        }
        if mine.is_empty() {
            return out;
        }
        let claim = self.inner.next_claim.fetch_add(1, Ordering::Relaxed);
        let fills = mine
            .iter()
            .map(|(i, missing)| Fill {
                index: needs[*i].index,
                base: needs[*i].have.clone(),
                missing: missing.clone(),
            })
            .collect();
        let pendings = self.spawn_fill(id, origin, claim, fills);
        for ((i, ranges), pending) in mine.into_iter().zip(pendings) {
            inflight
                .entry(self.key(id, needs[i].index))
                .or_default()
                .push(InFlight {
                    claim,
                    ranges,
                    pending: pending.clone(),
                });
            out.push((i, pending));
        }
        out
    }

    /// Fills `fills` in a task of its own, so that the fill completes (and
    /// the in-flight entries are cleared) even if every reader that wanted
    /// it has gone away. Each chunk's fill resolves as soon as its own
    /// parts are in, not when the whole claim is.
    fn spawn_fill(
        &self,
        id: &ObjectId,
        origin: &Arc<dyn ObjectStore>,
        claim: u64,
        fills: Vec<Fill>,
    ) -> Vec<Pending> {
        let (senders, pendings): (Vec<_>, Vec<_>) = fills
            .iter()
            .map(|_| {
                let (tx, rx) = oneshot::channel::<Result<Piece>>();
                let pending: Pending = rx
                    .map(|r| {
                        r.unwrap_or_else(|_| {
                            Err(QuiverError::Internal(
                                "a cache fill stopped before it finished".into(),
                            ))
                        })
                    })
                    .boxed()
                    .shared();
                (Some(tx), pending)
            })
            .unzip();
        let mut filling = Filling {
            cache: self.clone(),
            id: id.clone(),
            claim,
            got: vec![Piece::default(); fills.len()],
            fills,
            senders,
        };
        let origin = origin.clone();
        // Within the lookup that started it: its peer fill or origin GETs
        // show up in that request's trace.
        tokio::spawn(async move { filling.run(&origin).await }.in_current_span());
        pendings
    }

    /// What a peer holds of chunks `run`, when one is set, as pieces by
    /// chunk index. A part outside the run or its chunk discards the whole
    /// answer, and the origin is read instead.
    async fn peer_pieces(&self, id: &ObjectId, run: Range<u64>) -> Vec<(u64, Piece)> {
        let Some(peers) = self.inner.peers.as_ref() else {
            return Vec::new();
        };
        let Some(parts) = peers.fetch(id.clone(), self.inner.chunk, run.clone()).await else {
            return Vec::new();
        };
        let mut pieces = Vec::with_capacity(parts.len());
        let mut bytes = 0u64;
        for (index, offset, part) in parts {
            let len = part.len() as u64;
            match self.peer_piece(id, index, offset, part) {
                Ok(piece) if run.contains(&index) => {
                    bytes += len;
                    pieces.push((index, piece));
                }
                _ => {
                    tracing::warn!(
                        source = %id.source, path = %id.path, index, offset,
                        "a peer sent a part outside the chunks asked for; reading the origin"
                    );
                    return Vec::new();
                }
            }
        }
        self.inner.metrics.peer_fill_bytes.inc_by(bytes);
        pieces
    }
}

/// One claim's fill under way. Dropping it (the task ended, panicked or
/// was cancelled) fails every chunk it has not finished and clears its
/// in-flight entries, so no reader waits on a fill that will never come.
struct Filling {
    cache: ChunkCache,
    id: ObjectId,
    claim: u64,
    fills: Vec<Fill>,
    /// What each fill has fetched so far.
    got: Vec<Piece>,
    senders: Vec<Option<oneshot::Sender<Result<Piece>>>>,
}

impl Filling {
    async fn run(&mut self, origin: &Arc<dyn ObjectStore>) {
        self.ask_peers().await;
        let chunk = self.cache.inner.chunk;
        let gets = plan_gets(
            self.fills
                .iter()
                .enumerate()
                .filter(|(k, _)| self.senders[*k].is_some())
                .flat_map(|(k, f)| {
                    let base = f.index * chunk;
                    f.missing
                        .iter()
                        .map(move |m| (k, base + m.start..base + m.end))
                }),
            MAX_RUN_CHUNKS * chunk,
        );
        let mut outstanding = vec![0usize; self.fills.len()];
        for get in &gets {
            for (k, _) in &get.parts {
                outstanding[*k] += 1;
            }
        }
        let (cache, id) = (self.cache.clone(), self.id.clone());
        let (cache, id) = (&cache, &id);
        let mut running: FuturesUnordered<_> = gets
            .into_iter()
            .map(|get| async move {
                let result = match cache.inner.fetch_slots.acquire().await {
                    Ok(_slot) => {
                        fetch_origin(origin, id, get.range.clone(), &cache.inner.metrics).await
                    }
                    Err(_) => Err(QuiverError::Internal(
                        "the origin fetch limiter was closed".into(),
                    )),
                };
                (get, result)
            })
            .collect();
        let mut done = Vec::new();
        while let Some((get, result)) = running.next().await {
            for (k, abs) in get.parts {
                let part = result.as_ref().map(|bytes| {
                    let from = (abs.start - get.range.start) as usize;
                    let to = (abs.end - get.range.start) as usize;
                    // A copy, so that each entry owns exactly its bytes, not
                    // the whole GET's buffer.
                    Bytes::copy_from_slice(&bytes[from..to])
                });
                match part {
                    Ok(part) => {
                        let base = self.fills[k].index * chunk;
                        self.got[k] = self.got[k].join(&Piece::part(abs.start - base, part));
                        outstanding[k] -= 1;
                        if outstanding[k] == 0 {
                            done.push((k, Ok(std::mem::take(&mut self.got[k]))));
                        }
                    }
                    Err(e) => done.push((k, Err(e.clone()))),
                }
            }
            for (k, result) in done.drain(..) {
                self.finish(k, result);
            }
        }
    }

    /// During a hand-off, what the slot's previous owner holds of the
    /// chunks, in runs of adjacent chunks asked for at once. A fill the
    /// peer answers in full is done; the origin is asked for the rest.
    async fn ask_peers(&mut self) {
        if self.cache.inner.peers.is_none() {
            return;
        }
        let mut indices: Vec<u64> = self.fills.iter().map(|f| f.index).collect();
        indices.sort_unstable();
        let cache = &self.cache;
        let id = &self.id;
        let answers = futures::future::join_all(
            runs(&indices)
                .into_iter()
                .map(|run| async move { cache.peer_pieces(id, run).await }),
        )
        .await;
        for (index, piece) in answers.into_iter().flatten() {
            let Some(k) = self.fills.iter().position(|f| f.index == index) else {
                continue;
            };
            self.got[k] = self.got[k].join(&piece);
            let rest = self.got[k].missing(&self.fills[k].missing);
            if rest.is_empty() {
                let got = std::mem::take(&mut self.got[k]);
                self.finish(k, Ok(got));
            } else {
                self.fills[k].missing = rest;
            }
        }
    }

    /// Ends fill `k`: on success its chunk's entry becomes what it held at
    /// the claim, what the memory tier holds now (other fills of the chunk
    /// that finished first) and what was fetched.
    fn finish(&mut self, k: usize, result: Result<Piece>) {
        let Some(tx) = self.senders[k].take() else {
            return;
        };
        let cache = &self.cache;
        let fill = &self.fills[k];
        let key = cache.key(&self.id, fill.index);
        let mut inflight = lock(&cache.inner.inflight);
        let result = result.map(|fetched| {
            let mut entry = fill.base.join(&fetched);
            if let Some(now) = cache.peek(&self.id, fill.index) {
                entry = entry.join(&now);
            }
            cache.inner.metrics.miss(1);
            cache.store(&self.id, fill.index, entry.clone());
            entry
        });
        if let Some(fills) = inflight.get_mut(&key) {
            fills.retain(|f| f.claim != self.claim);
            if fills.is_empty() {
                inflight.remove(&key);
            }
        }
        drop(inflight);
        // The reader may have gone away; the entry is stored all the same.
        let _ = tx.send(result);
    }
}

impl Drop for Filling {
    fn drop(&mut self) {
        for k in 0..self.fills.len() {
            self.finish(
                k,
                Err(QuiverError::Internal(
                    "a cache fill stopped before it finished".into(),
                )),
            );
        }
    }
}

/// The GETs that read `parts` (each a fill's position and a byte range;
/// apart from each other): parts in order of offset, joined into one GET
/// while the next begins where the GET ends and the GET stays within `max`
/// bytes. Small holes were filled when the read's wants were (`piece::
/// wants`); what lies between parts now is held or being fetched by
/// another fill, and is not fetched again. A part is never longer than a
/// chunk, so never longer than `max`.
fn plan_gets(parts: impl Iterator<Item = (usize, Range<u64>)>, max: u64) -> Vec<Get> {
    let mut parts: Vec<(usize, Range<u64>)> = parts.collect();
    parts.sort_by_key(|(_, r)| r.start);
    let mut gets: Vec<Get> = Vec::new();
    for (k, r) in parts {
        match gets.last_mut() {
            Some(g) if r.start == g.range.end && r.end - g.range.start <= max => {
                g.range.end = g.range.end.max(r.end);
                g.parts.push((k, r));
            }
            _ => gets.push(Get {
                range: r.clone(),
                parts: vec![(k, r)],
            }),
        }
    }
    gets
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

    #[test]
    fn gets_join_adjacent_parts_up_to_a_size() {
        let parts = vec![(1, 100..150), (0, 0..100), (2, 150..200), (3, 210..240)];
        let gets = plan_gets(parts.into_iter(), 1000);
        let ranges: Vec<_> = gets.iter().map(|g| g.range.clone()).collect();
        assert_eq!(ranges, vec![0..200, 210..240], "a hole is not fetched");
        assert_eq!(gets[0].parts.len(), 3);
        let capped = plan_gets(vec![(0, 0..100), (1, 100..200)].into_iter(), 150);
        assert_eq!(capped.len(), 2, "a GET stays within its size");
    }
}
