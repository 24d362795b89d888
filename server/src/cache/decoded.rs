//! The hot tier: decoded Arrow arrays, one per (object version, row group,
//! top-level column), above the byte-range tier.
//!
//! A warm hit on the byte-range tier still decompresses and decodes every
//! Parquet page it reads; a hit here hands the scanner the arrays themselves,
//! so a projection is a pointer copy and a filter runs Arrow kernels over
//! memory. Entries are weighed by the arrays' memory, so the tier holds its
//! configured bytes, not a number of entries. Keys carry the object's ETag
//! and size like the byte-range tier's: a rewritten object misses here and
//! its old arrays age out.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use foyer::{Cache, CacheBuilder, Event, EventListener};

use crate::cache::{eviction, MEMORY_SHARDS};
use crate::config::Eviction;
use crate::metrics::Metrics;
use crate::source::ObjectId;

/// One column chunk, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecodedKey {
    pub object: Arc<ObjectId>,
    pub row_group: usize,
    /// Index of the top-level column in the file's Arrow schema.
    pub column: usize,
}

/// Bytes an entry costs beyond its arrays: the key and foyer's record.
fn key_weight(key: &DecodedKey) -> usize {
    key.object.path.as_ref().len() + key.object.etag.len() + key.object.source.len() + 96
}

/// Counts the entries foyer drops to make room, for `stats` and `/metrics`.
struct Evictions(Arc<Metrics>);

impl EventListener for Evictions {
    type Key = DecodedKey;
    type Value = ArrayRef;

    fn on_leave(&self, reason: Event, _key: &DecodedKey, _value: &ArrayRef) {
        if reason == Event::Evict {
            self.0.hot_evictions.inc();
        }
    }
}

/// The hot tier. Cheap to clone; `None` inside when it is configured off.
#[derive(Clone)]
pub struct DecodedCache {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    cache: Cache<DecodedKey, ArrayRef>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for DecodedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedCache")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

/// What the tier held of one scan's row groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Every row group: no Parquet read.
    Hit,
    /// Some row groups; the rest were read from Parquet.
    Partial,
    /// None.
    Miss,
}

impl DecodedCache {
    /// A tier of `capacity` bytes; `0` turns it off.
    pub fn new(capacity: u64, policy: Eviction, metrics: Arc<Metrics>) -> Self {
        metrics
            .hot_capacity
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
        if capacity == 0 {
            return DecodedCache { inner: None };
        }
        let cache = CacheBuilder::new(usize::try_from(capacity).unwrap_or(usize::MAX))
            .with_name("quiver-hot")
            .with_shards(MEMORY_SHARDS)
            .with_eviction_config(eviction(policy, capacity, 0))
            .with_weighter(|k: &DecodedKey, v: &ArrayRef| {
                v.get_array_memory_size().saturating_add(key_weight(k))
            })
            .with_event_listener(Arc::new(Evictions(metrics.clone())))
            .build();
        DecodedCache {
            inner: Some(Arc::new(Inner { cache, metrics })),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn capacity(&self) -> u64 {
        self.inner.as_ref().map_or(0, |i| i.cache.capacity() as u64)
    }

    /// Bytes held now; also refreshes the usage gauge of `/metrics`.
    pub fn usage(&self) -> u64 {
        let Some(inner) = &self.inner else { return 0 };
        let usage = inner.cache.usage() as u64;
        inner
            .metrics
            .hot_usage
            .set(i64::try_from(usage).unwrap_or(i64::MAX));
        usage
    }

    /// The arrays of `columns` in one row group if every one is here, or
    /// else the columns that are not (never none): a row group is answered
    /// from memory or not at all. One call decides both, so a fill that
    /// lands while the row group is looked up cannot make it look neither
    /// here nor missing. The first absent column ends the uses counted; the
    /// rest are only checked.
    pub fn row_group(
        &self,
        object: &Arc<ObjectId>,
        row_group: usize,
        columns: &[usize],
    ) -> Result<Vec<ArrayRef>, Vec<usize>> {
        let Some(inner) = &self.inner else {
            return Err(columns.to_vec());
        };
        let key = |column| DecodedKey {
            object: object.clone(),
            row_group,
            column,
        };
        let mut arrays = Vec::with_capacity(columns.len());
        for (i, &column) in columns.iter().enumerate() {
            match inner.cache.get(&key(column)) {
                Some(entry) => arrays.push(entry.value().clone()),
                None => {
                    let rest = &columns[i + 1..];
                    let mut absent = vec![column];
                    absent.extend(rest.iter().filter(|&&c| !inner.cache.contains(&key(c))));
                    return Err(absent);
                }
            }
        }
        Ok(arrays)
    }

    pub fn insert(&self, object: &Arc<ObjectId>, row_group: usize, column: usize, array: ArrayRef) {
        if let Some(inner) = &self.inner {
            inner.cache.insert(
                DecodedKey {
                    object: object.clone(),
                    row_group,
                    column,
                },
                array,
            );
        }
    }

    /// Drops every array of `object`, which has `row_groups` row groups and
    /// `columns` top-level columns; returns the bytes freed.
    pub fn evict(&self, object: &ObjectId, row_groups: usize, columns: usize) -> u64 {
        let Some(inner) = &self.inner else { return 0 };
        let object = Arc::new(object.clone());
        let mut freed = 0u64;
        for row_group in 0..row_groups {
            for column in 0..columns {
                let key = DecodedKey {
                    object: object.clone(),
                    row_group,
                    column,
                };
                if let Some(entry) = inner.cache.remove(&key) {
                    freed = freed.saturating_add(entry.weight() as u64);
                }
            }
        }
        freed
    }

    /// Counts one scan's lookup.
    pub fn record(&self, lookup: Lookup) {
        if let Some(inner) = &self.inner {
            match lookup {
                Lookup::Hit => inner.metrics.hot_hits.inc(),
                Lookup::Partial => inner.metrics.hot_partial.inc(),
                Lookup::Miss => inner.metrics.hot_misses.inc(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;

    use super::*;

    fn object() -> Arc<ObjectId> {
        Arc::new(ObjectId {
            source: Arc::from("s"),
            path: "t/data.parquet".into(),
            etag: "\"e\"".into(),
            size: 10,
            last_modified: chrono::DateTime::from_timestamp_millis(1_000).unwrap(),
        })
    }

    fn array(v: i64) -> ArrayRef {
        Arc::new(Int64Array::from(vec![v; 4]))
    }

    /// A row group comes back whole or with exactly the columns it lacks,
    /// whichever of them is the first absent one: a scan told neither would
    /// leave the row group out of its answer.
    #[test]
    fn a_row_group_is_whole_or_names_what_it_lacks() {
        let tier = DecodedCache::new(1 << 20, Eviction::Lru, Arc::new(Metrics::new()));
        let o = object();
        for column in [0, 2, 3] {
            tier.insert(&o, 1, column, array(column as i64));
        }
        let whole = tier.row_group(&o, 1, &[0, 2, 3]).unwrap();
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[1].as_ref(), array(2).as_ref());
        assert_eq!(
            tier.row_group(&o, 1, &[0, 1, 2, 4]).unwrap_err(),
            vec![1, 4]
        );
        assert_eq!(tier.row_group(&o, 1, &[5, 0]).unwrap_err(), vec![5]);
        assert_eq!(tier.row_group(&o, 0, &[0, 2]).unwrap_err(), vec![0, 2]);
        let off = DecodedCache::new(0, Eviction::Lru, Arc::new(Metrics::new()));
        assert_eq!(off.row_group(&o, 1, &[0, 2]).unwrap_err(), vec![0, 2]);
    }
}
