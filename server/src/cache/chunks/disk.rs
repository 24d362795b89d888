//! Bootstrap of the disk tier: the lock on its directory, its device and
//! block engine, the space reserved for its files, and the memory-only
//! node a disk without room for the tier degrades to.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use foyer::{BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, PsyncIoEngineConfig, RecoverMode};

use super::eviction::memory_builder;
use super::{holds_any, ChunkCache, Inner, PeerChunks, MAX_ORIGIN_FETCHES};
use crate::cache::catalog::Catalog;
use crate::cache::disk_budget;
use crate::config::CacheConfig;
use crate::error::{QuiverError, Result};
use crate::metrics::Metrics;

/// Disk blocks are the unit foyer reclaims; 16 MiB unless the tier is small.
const MAX_DISK_BLOCK: u64 = 16 << 20;

/// The file in `disk_dir` that a node holds an exclusive lock on for as long
/// as its disk tier is open.
pub const LOCK_FILE: &str = "quiver.lock";

impl ChunkCache {
    /// Opens the cache, recovering the disk tier left by a previous run.
    /// The tier's size is `cache.disk`, or, when no setting gave one, what
    /// its disk can spare (`disk_budget`).
    ///
    /// The disk tier's files are allocated in full before it is used, so a
    /// disk that fills up later cannot fail the tier's writes (foyer panics
    /// in its flusher when a write meets ENOSPC). A disk without room for
    /// the whole tier is a warning and a memory-only node, not a failed
    /// start: the node serves from memory and the origin, and `health` says
    /// why.
    ///
    /// `peers`, when given, is asked for missing chunks before the origin.
    pub(super) async fn open_with(
        cfg: &CacheConfig,
        metrics: Arc<Metrics>,
        peers: Option<Arc<dyn PeerChunks>>,
    ) -> Result<Self> {
        let chunk = cfg.chunk.0;
        let disk = disk_budget::decide(cfg);
        let block = (disk / 16).clamp(chunk * 2, MAX_DISK_BLOCK.max(chunk * 2));
        let mut disk_problem = None;
        let (cache, disk_dir, lock_file) = if disk == 0 {
            (memory_builder(cfg).build().await, None, None)
        } else {
            std::fs::create_dir_all(&cfg.disk_dir).map_err(|e| {
                QuiverError::Internal(format!(
                    "cannot create the disk cache directory {}: {e}",
                    cfg.disk_dir.display()
                ))
            })?;
            // Before foyer touches a file: two nodes writing the same block
            // files would corrupt each other's entries.
            let lock_file = lock_dir(&cfg.disk_dir)?;
            let device = FsDeviceBuilder::new(&cfg.disk_dir)
                .with_capacity(disk as usize)
                .build()
                .map_err(|e| QuiverError::Internal(format!("cannot open the disk tier: {e}")))?;
            // The tombstone log records removals on disk: without it an
            // evicted chunk is recovered from its block after a restart.
            let engine = BlockEngineConfig::new(device)
                .with_tombstone_log(true)
                .with_block_size(block as usize)
                .with_flushers(2)
                .with_buffer_pool_size((2 * block) as usize)
                .with_submit_queue_size_threshold((2 * block) as usize);
            let cache = memory_builder(cfg)
                .with_io_engine_config(PsyncIoEngineConfig::new())
                .with_engine_config(engine)
                .with_recover_mode(RecoverMode::Quiet)
                .build()
                .await;
            match (cache, reserve(&cfg.disk_dir)) {
                (Ok(cache), Ok(())) => (Ok(cache), Some(cfg.disk_dir.clone()), Some(lock_file)),
                (Ok(cache), Err(e)) => {
                    let problem = format!(
                        "the disk tier's {} MiB cannot be reserved in {} ({e}); the node runs memory-only",
                        disk >> 20,
                        cfg.disk_dir.display()
                    );
                    tracing::warn!(problem = %problem, "the disk tier is degraded");
                    let _ = cache.close().await;
                    drop(lock_file);
                    disk_problem = Some(problem);
                    (memory_builder(cfg).build().await, None, None)
                }
                (Err(e), _) => (Err(e), None, None),
            }
        };
        let cache =
            cache.map_err(|e| QuiverError::Internal(format!("cannot open the cache: {e}")))?;
        let catalog = match &disk_dir {
            Some(dir) => Catalog::open(dir, |id| holds_any(&cache, chunk, id)),
            None => Catalog::memory(),
        };
        metrics.memory_capacity.set(cfg.memory.0 as i64);
        metrics
            .disk_capacity
            .set(if disk_dir.is_some() { disk as i64 } else { 0 });
        Ok(ChunkCache {
            inner: Arc::new(Inner {
                cache,
                chunk,
                catalog,
                inflight: Mutex::default(),
                next_claim: AtomicU64::new(0),
                fetch_slots: tokio::sync::Semaphore::new(MAX_ORIGIN_FETCHES),
                peers,
                metrics,
                disk_dir,
                disk_capacity: disk,
                disk_problem,
                lock: Mutex::new(lock_file),
            }),
        })
    }
}

/// Allocates every block file of the disk tier in `dir` in full, so that
/// writes into them never need space the file system no longer has.
fn reserve(dir: &Path) -> std::io::Result<()> {
    use fs4::fs_std::FileExt;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_block = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("foyer-storage"));
        if !is_block {
            continue;
        }
        let file = OpenOptions::new().write(true).open(&path)?;
        let len = file.metadata()?.len();
        FileExt::allocate(&file, len)?;
    }
    Ok(())
}

/// Takes the exclusive lock on `dir/quiver.lock`, held until the cache is
/// closed (or the process exits, when the OS releases it), and records this
/// process's id in it for whoever finds the directory busy.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let cannot = |e: std::io::Error| {
        QuiverError::Internal(format!(
            "cannot lock the disk cache directory {}: {e}",
            dir.display()
        ))
    };
    // Not truncated on open: the file may hold the pid of the node that
    // owns the directory.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(cannot)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(QuiverError::FailedPrecondition(format!(
                "the disk cache directory {} is already in use by another Quiver node",
                dir.display()
            )))
        }
        Err(TryLockError::Error(e)) => return Err(cannot(e)),
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(cannot)?;
    Ok(file)
}
