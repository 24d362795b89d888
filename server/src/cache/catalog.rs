//! Which object versions the chunk cache holds chunks of.
//!
//! foyer cannot list its keys, yet a hand-off donor must offer what its
//! cache actually holds, including a disk tier it recovered after a
//! restart, when the node has not yet seen those objects again. So the
//! cache records each object version when it first stores one of its
//! chunks: in memory, and with a disk tier as one JSON line appended to
//! `disk_dir/objects.jsonl`. On open the log is read back (a torn or
//! damaged line is skipped), versions with no chunk left are dropped, and
//! the log is rewritten compact.
//!
//! The catalog only says where to look: a donor still probes the cache for
//! each chunk, and the importer checks every offer against the origin.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::source::ObjectId;

/// The log's file name in `disk_dir`.
pub const CATALOG_FILE: &str = "objects.jsonl";

/// Most object versions recorded. Past it, versions with nothing cached are
/// pruned; if none can be, new versions go unrecorded (and a new owner
/// reads them from the origin instead of from this node).
const MAX_ENTRIES: usize = 1 << 20;

/// One object version, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Entry {
    source: String,
    path: String,
    etag: String,
    size: u64,
    last_modified_ms: i64,
}

impl Entry {
    fn of(id: &ObjectId) -> Entry {
        Entry {
            source: id.source.to_string(),
            path: id.path.to_string(),
            etag: id.etag.clone(),
            size: id.size,
            last_modified_ms: id.last_modified.timestamp_millis(),
        }
    }

    fn id(&self) -> ObjectId {
        ObjectId {
            source: Arc::from(self.source.as_str()),
            path: object_store::path::Path::from(self.path.as_str()),
            etag: self.etag.clone(),
            size: self.size,
            last_modified: chrono::DateTime::from_timestamp_millis(self.last_modified_ms)
                .unwrap_or_default(),
        }
    }
}

struct State {
    entries: HashSet<Entry>,
    log: Option<File>,
    /// A full catalog was reported once.
    full_reported: bool,
}

pub struct Catalog {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn read_log(path: &Path) -> Vec<Entry> {
    let Ok(text) = std::fs::read(path) else {
        return Vec::new();
    };
    text.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .filter_map(|line| serde_json::from_slice::<Entry>(line).ok())
        .collect()
}

fn line(entry: &Entry) -> Vec<u8> {
    let mut line = serde_json::to_vec(entry).unwrap_or_default();
    line.push(b'\n');
    line
}

impl Catalog {
    /// A catalog kept in memory only.
    pub fn memory() -> Catalog {
        Catalog {
            path: None,
            state: Mutex::new(State {
                entries: HashSet::new(),
                log: None,
                full_reported: false,
            }),
        }
    }

    /// The catalog logged in `dir`, keeping the versions `held` says still
    /// have chunks cached. The log is rewritten with just those; a log that
    /// cannot be written leaves an in-memory catalog, with a warning.
    pub fn open(dir: &Path, held: impl Fn(&ObjectId) -> bool) -> Catalog {
        let path = dir.join(CATALOG_FILE);
        let entries: HashSet<Entry> = read_log(&path)
            .into_iter()
            .filter(|e| held(&e.id()))
            .take(MAX_ENTRIES)
            .collect();
        let log = Self::rewrite(&path, &entries)
            .map_err(|e| {
                tracing::warn!(path = %path.display(), error = %e, "the cache catalog cannot be written; a restart will not offer this node's disk tier for hand-off");
            })
            .ok();
        Catalog {
            path: Some(path),
            state: Mutex::new(State {
                entries,
                log,
                full_reported: false,
            }),
        }
    }

    /// Writes `entries` to a new file and moves it over the log, so a crash
    /// leaves the old log or the new one, never half of one.
    fn rewrite(path: &Path, entries: &HashSet<Entry>) -> std::io::Result<File> {
        let tmp = path.with_extension("jsonl.tmp");
        let mut file = File::create(&tmp)?;
        for e in entries {
            file.write_all(&line(e))?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        OpenOptions::new().append(true).open(path)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that the cache now holds a chunk of `id`. `held` prunes a
    /// full catalog.
    pub fn record(&self, id: &ObjectId, held: impl Fn(&ObjectId) -> bool) {
        let entry = Entry::of(id);
        let mut state = self.state();
        if state.entries.contains(&entry) {
            return;
        }
        if state.entries.len() >= MAX_ENTRIES {
            state.entries.retain(|e| held(&e.id()));
            if let (Some(path), true) = (&self.path, state.log.is_some()) {
                state.log = Self::rewrite(path, &state.entries).ok();
            }
            if state.entries.len() >= MAX_ENTRIES {
                if !state.full_reported {
                    tracing::warn!(
                        entries = MAX_ENTRIES,
                        "the cache catalog is full; objects cached from now on are not offered for hand-off"
                    );
                    state.full_reported = true;
                }
                return;
            }
        }
        if let Some(log) = state.log.as_mut() {
            if let Err(e) = log.write_all(&line(&entry)) {
                tracing::warn!(error = %e, "the cache catalog cannot be appended to");
                state.log = None;
            }
        }
        state.entries.insert(entry);
    }

    /// Every recorded version, sorted by source and path (the order
    /// `handoff-list` pages in).
    pub fn objects(&self) -> Vec<ObjectId> {
        let mut ids: Vec<ObjectId> = self.state().entries.iter().map(Entry::id).collect();
        ids.sort_by(|a, b| (&*a.source, a.path.as_ref()).cmp(&(&*b.source, b.path.as_ref())));
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(path: &str) -> ObjectId {
        ObjectId {
            source: Arc::from("s"),
            path: path.into(),
            etag: "\"e\"".into(),
            size: 10,
            last_modified: chrono::DateTime::from_timestamp_millis(1_000).unwrap(),
        }
    }

    #[test]
    fn the_log_survives_a_reopen_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path(), |_| true);
        catalog.record(&id("b"), |_| true);
        catalog.record(&id("a"), |_| true);
        catalog.record(&id("a"), |_| true);
        drop(catalog);
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.path().join(CATALOG_FILE))
            .unwrap();
        log.write_all(b"{\"source\":\"s\",\"pa").unwrap();
        drop(log);
        let reopened = Catalog::open(dir.path(), |_| true);
        assert_eq!(reopened.objects(), vec![id("a"), id("b")]);
        // Versions without chunks are dropped at open.
        drop(reopened);
        let pruned = Catalog::open(dir.path(), |i| i.path.as_ref() == "b");
        assert_eq!(pruned.objects(), vec![id("b")]);
        drop(pruned);
        let text = std::fs::read_to_string(dir.path().join(CATALOG_FILE)).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
