//! What one cache entry holds of its chunk, and which bytes of a chunk a
//! read wants.
//!
//! A chunk is the unit the cache stores, evicts and hands off, not the unit
//! it reads: a miss fetches the bytes the read asked for (widened only over
//! holes too small to be worth leaving), so a scan of two narrow columns
//! does not pay for the neighbouring columns that share their chunks. An
//! entry is the parts of its chunk fetched so far; later reads add to it.

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// The parts of one chunk a cache entry holds: sorted by offset, non-empty,
/// and apart (parts that meet are joined into one), offsets counted from
/// the chunk's first byte.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Piece {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Part {
    start: u64,
    bytes: Bytes,
}

impl Part {
    fn end(&self) -> u64 {
        self.start.saturating_add(self.bytes.len() as u64)
    }
}

impl Piece {
    /// Bytes of a chunk from offset `start`.
    pub fn part(start: u64, bytes: Bytes) -> Self {
        if bytes.is_empty() {
            return Piece::default();
        }
        Piece {
            parts: vec![Part { start, bytes }],
        }
    }

    /// Each part's offset in the chunk and bytes, in order.
    pub fn parts(&self) -> impl Iterator<Item = (u64, &Bytes)> {
        self.parts.iter().map(|p| (p.start, &p.bytes))
    }

    /// How many parts this holds.
    pub fn part_count(&self) -> usize {
        self.parts.len()
    }

    /// Bytes held.
    pub fn held(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes.len() as u64).sum()
    }

    /// Whether this is a well-formed piece of a chunk of `len` bytes: what
    /// an entry read back from disk must be before any of it is served.
    pub fn fits(&self, len: u64) -> bool {
        let mut end = None;
        for p in &self.parts {
            let Some(p_end) = p.start.checked_add(p.bytes.len() as u64) else {
                return false;
            };
            if p.bytes.is_empty() || p_end > len || end.is_some_and(|e| p.start <= e) {
                return false;
            }
            end = Some(p_end);
        }
        true
    }

    /// The chunk's `len` bytes, when this holds all of them.
    pub fn whole_bytes(&self, len: u64) -> Option<&Bytes> {
        match self.parts.as_slice() {
            [p] if p.start == 0 && p.bytes.len() as u64 == len => Some(&p.bytes),
            _ => None,
        }
    }

    /// The ranges of `want` (sorted, apart) this does not hold.
    pub fn missing(&self, want: &[Range<u64>]) -> Vec<Range<u64>> {
        let held: Vec<Range<u64>> = self.parts.iter().map(|p| p.start..p.end()).collect();
        minus(want, &held)
    }

    /// Bytes `range` of the chunk, without copying, when one part holds
    /// them all (as a read's range always is once it was filled, since
    /// parts that meet are joined).
    pub fn slice(&self, range: Range<u64>) -> Option<Bytes> {
        let p = self
            .parts
            .iter()
            .find(|p| p.start <= range.start && range.end <= p.end())?;
        let from = usize::try_from(range.start - p.start).ok()?;
        let to = usize::try_from(range.end - p.start).ok()?;
        Some(p.bytes.slice(from..to))
    }

    /// Everything either piece holds. Both are of the same object version,
    /// so where they overlap their bytes are the same; parts that overlap
    /// or meet become one (a copy of their bytes).
    pub fn join(&self, other: &Piece) -> Piece {
        if other.parts.is_empty() {
            return self.clone();
        }
        if self.parts.is_empty() {
            return other.clone();
        }
        let mut all: Vec<&Part> = self.parts.iter().chain(&other.parts).collect();
        all.sort_by_key(|p| p.start);
        let mut parts = Vec::new();
        let mut run: Vec<Bytes> = Vec::new();
        let (mut start, mut end) = (0, 0);
        for p in all {
            if !run.is_empty() && p.start <= end {
                if p.end() > end {
                    let skip = usize::try_from(end - p.start).unwrap_or(usize::MAX);
                    run.push(p.bytes.slice(skip.min(p.bytes.len())..));
                    end = p.end();
                }
                continue;
            }
            flush(&mut parts, start, &mut run);
            (start, end) = (p.start, p.end());
            run.push(p.bytes.clone());
        }
        flush(&mut parts, start, &mut run);
        Piece { parts }
    }
}

/// The ranges of `want` outside every range of `held` (both sorted by
/// start, each apart).
pub(super) fn minus(want: &[Range<u64>], held: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for w in want {
        let mut from = w.start;
        for h in held.iter().filter(|h| h.end > w.start && h.start < w.end) {
            if h.start > from {
                out.push(from..h.start);
            }
            from = from.max(h.end);
        }
        if from < w.end {
            out.push(from..w.end);
        }
    }
    out
}

/// Ends one run of meeting parts as a single part.
fn flush(parts: &mut Vec<Part>, start: u64, run: &mut Vec<Bytes>) {
    let bytes = match run.len() {
        0 => return,
        1 => run.pop().unwrap_or_default(),
        _ => {
            let mut joined = BytesMut::with_capacity(run.iter().map(Bytes::len).sum());
            for b in run.drain(..) {
                joined.extend_from_slice(&b);
            }
            joined.freeze()
        }
    };
    parts.push(Part { start, bytes });
}

/// For every chunk (of `chunk` bytes, of an object of `size`) that `ranges`
/// touch, the ranges of it to read, counted from the chunk's start: what
/// the ranges cover, with holes of at most `hole` bytes between them, or
/// at either end of the chunk, filled in. Ranges must lie within the
/// object.
pub(super) fn wants(
    ranges: &[Range<u64>],
    chunk: u64,
    size: u64,
    hole: u64,
) -> BTreeMap<u64, Vec<Range<u64>>> {
    let mut out: BTreeMap<u64, Vec<Range<u64>>> = BTreeMap::new();
    for r in ranges.iter().filter(|r| r.start < r.end) {
        for index in r.start / chunk..r.end.div_ceil(chunk) {
            let base = index * chunk;
            out.entry(index)
                .or_default()
                .push(r.start.max(base) - base..r.end.min(base + chunk) - base);
        }
    }
    for (index, want) in out.iter_mut() {
        let base = index * chunk;
        let len = base.saturating_add(chunk).min(size) - base;
        want.sort_by_key(|w| w.start);
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(want.len());
        for w in want.drain(..) {
            match merged.last_mut() {
                Some(m) if w.start <= m.end.saturating_add(hole) => m.end = m.end.max(w.end),
                _ => merged.push(w),
            }
        }
        if let Some(first) = merged.first_mut() {
            if first.start <= hole {
                first.start = 0;
            }
        }
        if let Some(last) = merged.last_mut() {
            if len - last.end <= hole {
                last.end = len;
            }
        }
        *want = merged;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(range: Range<u64>) -> Bytes {
        range.map(|i| i as u8).collect()
    }

    fn one(range: Range<u64>) -> Vec<Range<u64>> {
        vec![range]
    }

    fn part(range: Range<u64>) -> Piece {
        Piece::part(range.start, bytes(range))
    }

    #[test]
    fn joined_parts_hold_the_bytes_of_both() {
        let p = part(10..20).join(&part(40..50)).join(&part(15..30));
        assert_eq!(p.missing(&one(0..60)), vec![0..10, 30..40, 50..60]);
        assert_eq!(p.slice(12..28), Some(bytes(12..28)));
        assert_eq!(p.slice(25..45), None, "30..40 is not held");
        // Meeting parts become one, so a range across them is one slice.
        let p = p.join(&part(30..40));
        assert_eq!(p.parts.len(), 1);
        assert_eq!(p.slice(10..50), Some(bytes(10..50)));
        assert!(p.fits(50));
        assert!(!p.fits(49));
        assert_eq!(p.held(), 40);
    }

    #[test]
    fn a_whole_chunk_is_recognised_and_nothing_is_missing() {
        let p = part(0..8).join(&part(8..16));
        assert_eq!(p.whole_bytes(16), Some(&bytes(0..16)));
        assert_eq!(p.whole_bytes(17), None);
        assert!(p.missing(&one(0..16)).is_empty());
        assert_eq!(Piece::default().missing(&one(3..5)), vec![3..5]);
    }

    #[test]
    fn malformed_pieces_do_not_fit() {
        let overlapping = Piece {
            parts: vec![
                Part {
                    start: 0,
                    bytes: bytes(0..10),
                },
                Part {
                    start: 5,
                    bytes: bytes(5..10),
                },
            ],
        };
        assert!(!overlapping.fits(100));
        let empty = Piece {
            parts: vec![Part {
                start: 3,
                bytes: Bytes::new(),
            }],
        };
        assert!(!empty.fits(100));
        let past = Piece {
            parts: vec![Part {
                start: u64::MAX - 1,
                bytes: bytes(0..10),
            }],
        };
        assert!(!past.fits(u64::MAX));
    }

    #[test]
    fn minus_leaves_what_is_not_held() {
        assert_eq!(
            minus(&[0..10, 20..30], &[5..8, 9..22, 25..26]),
            vec![0..5, 8..9, 22..25, 26..30]
        );
        assert!(minus(&one(3..4), &one(0..10)).is_empty());
        assert_eq!(minus(&one(3..4), &[]), one(3..4));
    }

    #[test]
    fn wants_are_cut_at_chunks_and_fill_only_small_holes() {
        // Chunks of 100 bytes, an object of 250; holes of up to 5 filled.
        let w = wants(&[20..30, 33..40, 60..130, 247..249], 100, 250, 5);
        assert_eq!(w[&0], vec![20..40, 60..100]);
        assert_eq!(w[&1], vec![0..30]);
        // The last chunk is 50 bytes; 247..249 is within 5 of its end.
        assert_eq!(w[&2], vec![47..50]);
        let edges = wants(&one(3..96), 100, 250, 5);
        assert_eq!(edges[&0], vec![0..100]);
        assert!(wants(&one(7..7), 100, 250, 5).is_empty());
    }
}
