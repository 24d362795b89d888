//! The most requested objects, estimated in fixed memory with the
//! Space-Saving algorithm (Metwally, Agrawal and El Abbadi, 2005): it keeps
//! [`TRACKED_OBJECTS`] counters; an object without one takes over the
//! smallest, inheriting its count as a possible overestimate. Any object
//! requested more often than 1/`TRACKED_OBJECTS` of all requests is
//! guaranteed a counter, and a counter never undercounts, so the top of the
//! list is right for the skewed traffic a cache sees, at a bounded cost
//! whatever the number of distinct objects.

use std::sync::Mutex;

use serde::Serialize;

use super::clip;

/// Counters kept. Each lookup scans them, which at this size costs less
/// than hashing the key.
pub const TRACKED_OBJECTS: usize = 64;

/// Longest `source/path` kept, in characters; longer names are cut (two
/// names alike up to here would share a counter).
pub const MAX_KEY_CHARS: usize = 512;

#[derive(Debug)]
struct Counter {
    object: String,
    count: u64,
    /// How much of `count` may belong to the objects this counter tracked
    /// before.
    overestimate: u64,
}

/// One of the most requested objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HotObject {
    /// `source/path`.
    pub object: String,
    /// Requests counted, an upper bound of the true number.
    pub requests: u64,
    /// A lower bound of the true number.
    pub at_least: u64,
}

#[derive(Debug, Default)]
pub struct TopObjects(Mutex<Vec<Counter>>);

impl TopObjects {
    /// Counts one request of `path` in `source`.
    pub fn record(&self, source: &str, path: &str) {
        let object = clip(&format!("{source}/{path}"), MAX_KEY_CHARS);
        let mut counters = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = counters.iter_mut().find(|c| c.object == object) {
            c.count = c.count.saturating_add(1);
            return;
        }
        if counters.len() < TRACKED_OBJECTS {
            counters.push(Counter {
                object,
                count: 1,
                overestimate: 0,
            });
            return;
        }
        if let Some(least) = counters.iter_mut().min_by_key(|c| c.count) {
            let floor = least.count;
            *least = Counter {
                object,
                count: floor.saturating_add(1),
                overestimate: floor,
            };
        }
    }

    /// The `n` most requested objects, most requested first.
    pub fn top(&self, n: usize) -> Vec<HotObject> {
        let counters = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<HotObject> = counters
            .iter()
            .map(|c| HotObject {
                object: c.object.clone(),
                requests: c.count,
                at_least: c.count.saturating_sub(c.overestimate),
            })
            .collect();
        drop(counters);
        out.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| a.object.cmp(&b.object))
        });
        out.truncate(n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_exactly_while_there_is_room() {
        let top = TopObjects::default();
        for _ in 0..3 {
            top.record("lake", "a.parquet");
        }
        top.record("lake", "b.parquet");
        assert_eq!(
            top.top(10),
            vec![
                HotObject {
                    object: "lake/a.parquet".into(),
                    requests: 3,
                    at_least: 3
                },
                HotObject {
                    object: "lake/b.parquet".into(),
                    requests: 1,
                    at_least: 1
                },
            ]
        );
        assert_eq!(top.top(1).len(), 1);
    }

    #[test]
    fn a_heavy_object_stays_on_top_of_a_long_tail_in_bounded_memory() {
        let top = TopObjects::default();
        for i in 0..10_000u32 {
            top.record("lake", &format!("tail/{i}.parquet"));
            if i % 4 == 0 {
                top.record("lake", "hot.parquet");
            }
        }
        assert_eq!(top.0.lock().unwrap().len(), TRACKED_OBJECTS);
        let first = &top.top(1)[0];
        assert_eq!(first.object, "lake/hot.parquet");
        // Never undercounted, and the lower bound holds too.
        assert!(first.requests >= 2_500, "{first:?}");
        assert!(first.at_least <= 2_500, "{first:?}");
    }

    #[test]
    fn long_names_are_cut() {
        let top = TopObjects::default();
        top.record("lake", &"p".repeat(10 * MAX_KEY_CHARS));
        let kept = &top.top(1)[0].object;
        assert_eq!(kept.chars().count(), MAX_KEY_CHARS + 1);
    }
}
