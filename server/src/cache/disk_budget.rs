//! The disk tier's size when no setting gives one: a share of what the
//! disk can spare, with a ceiling.
//!
//! The tier's files are allocated in full when it opens, so a fixed
//! default would take its whole size from whatever disk a first run lands
//! on, a nearly full laptop's included. Space the tier's own files already
//! hold counts as spare (the tier reuses them), so a restart finds the
//! same size as the run that allocated them and keeps what it cached.

use std::path::Path;

use crate::config::CacheConfig;

/// The share of the spare space an automatic tier takes: a quarter.
const SHARE_DIVISOR: u64 = 4;

/// The smallest disk tier a node runs (`cache.disk`'s lower bound).
pub const MIN_DISK: u64 = 64 << 20;

/// Automatic sizes are whole steps of this below 1 GiB, and whole GiB
/// above, so a little more or less free space between two starts does not
/// change the size (and the tier's block layout) each time.
const SMALL_STEP: u64 = 64 << 20;
const GIB: u64 = 1 << 30;

/// The automatic size out of `spare` bytes: a quarter of it, at most
/// `ceiling`; 0 (no disk tier) when that is under [`MIN_DISK`].
pub fn automatic_size(spare: u64, ceiling: u64) -> u64 {
    let share = (spare / SHARE_DIVISOR).min(ceiling);
    let step = if share >= GIB { GIB } else { SMALL_STEP };
    let size = share - share % step;
    if size < MIN_DISK {
        0
    } else {
        size
    }
}

/// Bytes the disk tier could use in `dir`: the space free to this user on
/// its file system (found through the nearest existing ancestor when `dir`
/// does not exist yet) plus what the files already in `dir` hold.
pub fn spare(dir: &Path) -> std::io::Result<u64> {
    let existing = dir
        .ancestors()
        .find(|a| !a.as_os_str().is_empty() && a.exists())
        .unwrap_or(Path::new("."));
    let free = fs4::available_space(existing)?;
    Ok(free.saturating_add(allocated_bytes(dir)))
}

fn shown(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// The disk tier's size for `cfg`, logged at start-up with where it goes
/// and how it was chosen: `cache.disk` as given, or, when no setting gave
/// it (`disk_auto`), [`automatic_size`] of the spare space with
/// `cache.disk` as the ceiling. 0: memory only.
pub fn decide(cfg: &CacheConfig) -> u64 {
    let dir = cfg.disk_dir.display();
    if !cfg.disk_auto {
        if cfg.disk.0 == 0 {
            tracing::info!("no disk tier (cache.disk = 0): the node caches in memory only");
        } else {
            tracing::info!(
                disk_dir = %dir, size = cfg.disk.0,
                "the disk tier reserves {} in {dir} (cache.disk)",
                shown(cfg.disk.0)
            );
        }
        return cfg.disk.0;
    }
    let spare = match spare(&cfg.disk_dir) {
        Ok(spare) => spare,
        Err(e) => {
            tracing::warn!(
                disk_dir = %dir,
                "cannot tell how much space {dir} has ({e}): no disk tier; set cache.disk to have one"
            );
            return 0;
        }
    };
    let size = automatic_size(spare, cfg.disk.0);
    if size == 0 {
        tracing::warn!(
            disk_dir = %dir, spare,
            "only {} is free for {dir}: no disk tier, the node caches in memory only; set cache.disk to have one",
            shown(spare)
        );
    } else {
        tracing::info!(
            disk_dir = %dir, size, spare,
            "the disk tier reserves {} in {dir}, sized automatically: a quarter of the {} free there, at most {}; set cache.disk to choose",
            shown(size),
            shown(spare),
            shown(cfg.disk.0)
        );
    }
    size
}

/// Blocks actually allocated by the files in the disk tier's directory
/// (its files are sparse until written).
pub(super) fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .fold(0u64, |total, m| {
                    total.saturating_add(m.blocks().saturating_mul(512))
                })
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_of_the_spare_space_in_steps_with_a_ceiling_and_a_floor() {
        let ceiling = 10 * GIB;
        assert_eq!(automatic_size(1000 * GIB, ceiling), ceiling);
        assert_eq!(automatic_size(20 * GIB, ceiling), 5 * GIB);
        assert_eq!(automatic_size(21 * GIB, ceiling), 5 * GIB);
        assert_eq!(automatic_size(2 * GIB, ceiling), 512 << 20);
        assert_eq!(automatic_size(2 * GIB + (100 << 20), ceiling), 512 << 20);
        assert_eq!(automatic_size(256 << 20, ceiling), 64 << 20);
        assert_eq!(automatic_size(255 << 20, ceiling), 0);
        assert_eq!(automatic_size(0, ceiling), 0);
        assert_eq!(automatic_size(u64::MAX, ceiling), ceiling);
        // A ceiling that is not a whole step is rounded down to one.
        assert_eq!(automatic_size(1000 * GIB, 100 << 20), 64 << 20);
    }

    #[test]
    fn spare_space_counts_the_tier_s_own_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(spare(&dir.path().join("not/yet")).unwrap() > 0);
        let size = 16u64 << 20;
        std::fs::write(dir.path().join("foyer-storage-1"), vec![7u8; size as usize]).unwrap();
        let before = fs4::available_space(dir.path()).unwrap();
        let with_file = spare(dir.path()).unwrap();
        let after = fs4::available_space(dir.path()).unwrap();
        // Free space read around the call, plus the file's blocks.
        assert!(
            with_file >= before.min(after) + size,
            "{with_file} of spare space, {before}..{after} free"
        );
    }
}
