//! A local directory as an origin, with a version that no rewrite keeps.
//!
//! object_store's `LocalFileSystem` derives a file's ETag from its inode,
//! its modification time in microseconds and its size. All three survive an
//! in-place rewrite to the same size whose modification time is put back
//! (`touch -r`, `os.utime(path, ns=...)`, a restore that keeps times), and
//! every cache key contains the ETag: the node would go on answering the old
//! bytes, or the old version's cached columns beside the new file's others.
//!
//! [`LocalOrigin`] is that store with another ETag: device, inode, size, and
//! the modification and change times to the nanosecond. The kernel sets the
//! change time (ctime) to the current time on every write, truncation,
//! `utime`, `chmod` or rename, and no system call sets it to a chosen value,
//! so a rewrite always gives a new ETag.
//!
//! An ETag that is right when it is taken is not enough: a file can change
//! while the node reads it. So every read stats the open file after reading
//! and fails with `Precondition` (as S3 answers an `If-Match` that no longer
//! holds) when the version is no longer the one the read began with. The
//! chunk cache pins each read to the ETag its scan was planned with, so a
//! scan gets bytes of its one version or fails with `CHANGED`.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::ErrorKind;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result as OsResult,
};

/// The name errors of this store carry.
const STORE: &str = "LocalOrigin";

/// Bytes read per blocking call. A read of more is streamed in pieces of
/// this size, each checked against the version, so a full GET of a large
/// file does not have to fit in memory at once. The chunk cache's reads
/// (runs of at most 8 chunks) are one piece, checked before `get_opts`
/// returns.
const PIECE: u64 = 64 << 20;

/// Listed entries re-described per blocking call.
const LIST_BATCH: usize = 256;

/// A local directory whose ETags change with every rewrite of a file, and
/// whose reads fail rather than return bytes of a file that changed while
/// they ran.
#[derive(Debug)]
pub struct LocalOrigin {
    fs: LocalFileSystem,
}

impl LocalOrigin {
    pub fn new(fs: LocalFileSystem) -> Self {
        LocalOrigin { fs }
    }
}

impl fmt::Display for LocalOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalOrigin({})", self.fs)
    }
}

/// A file's version: device and inode (which file), size, and modification
/// and change times in nanoseconds (which bytes). Any field changing means
/// other bytes may be behind the same name.
fn version(m: &Metadata) -> String {
    format!(
        "{:x}-{:x}-{:x}-{}.{:09}-{}.{:09}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

fn object_meta(location: &Path, m: &Metadata) -> OsResult<ObjectMeta> {
    let modified = m.modified().map_err(|e| io_error(location, e))?;
    Ok(ObjectMeta {
        location: location.clone(),
        last_modified: modified.into(),
        size: m.size(),
        e_tag: Some(version(m)),
        version: None,
    })
}

fn io_error(location: &Path, e: std::io::Error) -> object_store::Error {
    match e.kind() {
        ErrorKind::NotFound => object_store::Error::NotFound {
            path: location.to_string(),
            source: Box::new(e),
        },
        _ => object_store::Error::Generic {
            store: STORE,
            source: Box::new(e),
        },
    }
}

/// The answer for a file that is no longer the version a read began with.
fn changed(location: &Path) -> object_store::Error {
    object_store::Error::Precondition {
        path: location.to_string(),
        source: "the file changed while it was read".into(),
    }
}

/// Runs file system calls off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> OsResult<T> + Send + 'static,
) -> OsResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| object_store::Error::Generic {
            store: STORE,
            source: Box::new(e),
        })?
}

/// An open file and the version it had when it was opened.
struct Opened {
    file: File,
    location: Path,
    meta: ObjectMeta,
}

impl Opened {
    fn open(path: &std::path::Path, location: &Path) -> OsResult<Opened> {
        let file = File::open(path).map_err(|e| io_error(location, e))?;
        let stat = file.metadata().map_err(|e| io_error(location, e))?;
        if stat.is_dir() {
            return Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: "it is a directory".into(),
            });
        }
        Ok(Opened {
            meta: object_meta(location, &stat)?,
            file,
            location: location.clone(),
        })
    }

    /// Bytes `range` of the version the file was opened at. A short read or
    /// a version that changed before the bytes were all read is `changed`,
    /// never bytes of two versions.
    fn read(&self, range: Range<u64>) -> OsResult<Bytes> {
        let len =
            usize::try_from(range.end - range.start).map_err(|e| object_store::Error::Generic {
                store: STORE,
                source: Box::new(e),
            })?;
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match self
                .file
                .read_at(&mut buf[filled..], range.start + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(&self.location, e)),
            }
        }
        let now = self
            .file
            .metadata()
            .map_err(|e| io_error(&self.location, e))?;
        if filled < len || Some(version(&now)) != self.meta.e_tag {
            return Err(changed(&self.location));
        }
        Ok(buf.into())
    }
}

fn get(path: PathBuf, location: Path, options: GetOptions) -> OsResult<GetResult> {
    let opened = Opened::open(&path, &location)?;
    options.check_preconditions(&opened.meta)?;
    let size = opened.meta.size;
    let range = match &options.range {
        Some(r) => r.as_range(size).map_err(|e| object_store::Error::Generic {
            store: STORE,
            source: Box::new(e),
        })?,
        None => 0..size,
    };
    let meta = opened.meta.clone();
    if options.head {
        return Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::empty().boxed()),
            meta,
            range,
            attributes: Default::default(),
        });
    }
    // The first piece is read now, so that a read of one piece (every
    // read of the chunk cache) fails here, before any byte is handed out.
    let first_end = range.end.min(range.start.saturating_add(PIECE));
    let first = opened.read(range.start..first_end)?;
    let opened = Arc::new(opened);
    let end = range.end;
    let rest = futures::stream::try_unfold(first_end, move |at| {
        let opened = opened.clone();
        async move {
            if at >= end {
                return Ok(None);
            }
            let to = end.min(at.saturating_add(PIECE));
            let piece = blocking(move || opened.read(at..to)).await?;
            Ok(Some((piece, to)))
        }
    });
    Ok(GetResult {
        payload: GetResultPayload::Stream(
            futures::stream::once(async { Ok(first) })
                .chain(rest)
                .boxed(),
        ),
        meta,
        range,
        attributes: Default::default(),
    })
}

/// Describes listed files with this store's ETag; files that vanished
/// since the listing are left out, as the listing itself would have.
fn describe_all(fs: &LocalFileSystem, metas: Vec<ObjectMeta>) -> OsResult<Vec<ObjectMeta>> {
    let mut out = Vec::with_capacity(metas.len());
    for listed in metas {
        let path = fs.path_to_filesystem(&listed.location)?;
        match std::fs::metadata(&path) {
            Ok(m) => out.push(object_meta(&listed.location, &m)?),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&listed.location, e)),
        }
    }
    Ok(out)
}

#[async_trait]
impl ObjectStore for LocalOrigin {
    async fn put_opts(&self, p: &Path, data: PutPayload, o: PutOptions) -> OsResult<PutResult> {
        self.fs.put_opts(p, data, o).await
    }

    async fn put_multipart_opts(
        &self,
        p: &Path,
        o: PutMultipartOptions,
    ) -> OsResult<Box<dyn MultipartUpload>> {
        self.fs.put_multipart_opts(p, o).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> OsResult<GetResult> {
        let path = self.fs.path_to_filesystem(location)?;
        let location = location.clone();
        blocking(move || get(path, location, options)).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, OsResult<Path>>,
    ) -> BoxStream<'static, OsResult<Path>> {
        self.fs.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
        let fs = self.fs.clone();
        self.fs
            .list(prefix)
            .chunks(LIST_BATCH)
            .then(move |batch| {
                let fs = fs.clone();
                async move {
                    let listed: OsResult<Vec<ObjectMeta>> = batch.into_iter().collect();
                    let described = match listed {
                        Ok(metas) => blocking(move || describe_all(&fs, metas)).await,
                        Err(e) => Err(e),
                    };
                    match described {
                        Ok(metas) => metas.into_iter().map(Ok).collect(),
                        Err(e) => vec![Err(e)],
                    }
                }
            })
            .flat_map(futures::stream::iter)
            .boxed()
    }

    /// In key order, as S3 lists: readers that page by offset (a Delta
    /// log's reader among them) take the first key after a gap as the end.
    /// The file system lists in directory order, so the keys after the
    /// offset are gathered and sorted; a log directory is small.
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, OsResult<ObjectMeta>> {
        let offset = offset.clone();
        let listed = self.list(prefix);
        futures::stream::once(async move {
            let mut metas: Vec<ObjectMeta> = listed
                .try_filter(|m| futures::future::ready(m.location > offset))
                .try_collect()
                .await?;
            metas.sort_by(|a, b| a.location.cmp(&b.location));
            Ok::<_, object_store::Error>(futures::stream::iter(metas.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
        let listed = self.fs.list_with_delimiter(prefix).await?;
        let fs = self.fs.clone();
        let objects = blocking(move || describe_all(&fs, listed.objects)).await?;
        Ok(ListResult {
            common_prefixes: listed.common_prefixes,
            objects,
        })
    }

    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> OsResult<()> {
        self.fs.copy_opts(from, to, o).await
    }
}

#[cfg(test)]
mod tests {
    use std::fs::FileTimes;

    use object_store::ObjectStoreExt;

    use super::*;

    fn origin(dir: &std::path::Path) -> LocalOrigin {
        LocalOrigin::new(LocalFileSystem::new_with_prefix(dir).unwrap())
    }

    /// Rewrites `file` in place with `bytes` and puts its times back. It
    /// waits a little first: kernels before Linux 6.13 stamp times with a
    /// clock of one tick (up to 10 ms), and a rewrite within the tick of
    /// the first write could keep its change time.
    fn rewrite_keeping_times(file: &std::path::Path, bytes: &[u8]) {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let before = std::fs::metadata(file).unwrap();
        std::fs::write(file, bytes).unwrap();
        let times = FileTimes::new()
            .set_accessed(before.accessed().unwrap())
            .set_modified(before.modified().unwrap());
        File::options()
            .write(true)
            .open(file)
            .unwrap()
            .set_times(times)
            .unwrap();
    }

    #[tokio::test]
    async fn a_rewrite_that_keeps_size_inode_and_mtime_is_a_new_version() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.parquet");
        std::fs::write(&file, b"version one").unwrap();
        let store = origin(dir.path());
        let loc = Path::from("a.parquet");
        let one = store.head(&loc).await.unwrap();

        // object_store's own ETag cannot tell the versions apart.
        let weak = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let weak_one = weak.head(&loc).await.unwrap().e_tag;
        rewrite_keeping_times(&file, b"version two");
        assert_eq!(weak.head(&loc).await.unwrap().e_tag, weak_one);

        let two = store.head(&loc).await.unwrap();
        assert_eq!((two.size, two.last_modified), (one.size, one.last_modified));
        assert_ne!(two.e_tag, one.e_tag);

        // A read pinned to the old version is refused, as S3 refuses a
        // stale If-Match; pinned to the new one it reads the new bytes.
        let pinned = |etag: Option<String>| GetOptions {
            if_match: etag,
            range: Some((0..7).into()),
            ..Default::default()
        };
        let err = store.get_opts(&loc, pinned(one.e_tag)).await.unwrap_err();
        assert!(
            matches!(err, object_store::Error::Precondition { .. }),
            "{err}"
        );
        let got = store.get_opts(&loc, pinned(two.e_tag)).await.unwrap();
        assert_eq!(got.bytes().await.unwrap(), Bytes::from_static(b"version"));
    }

    #[tokio::test]
    async fn listings_from_an_offset_are_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t/_delta_log")).unwrap();
        for i in [3, 0, 7, 1, 5, 2] {
            std::fs::write(dir.path().join(format!("t/_delta_log/{i:020}.json")), b"{}").unwrap();
        }
        let store = origin(dir.path());
        let offset = Path::from(format!("t/_delta_log/{:020}.json", 1));
        let keys: Vec<String> = store
            .list_with_offset(Some(&Path::from("t/_delta_log")), &offset)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        let want: Vec<String> = [2, 3, 5, 7]
            .iter()
            .map(|i| format!("t/_delta_log/{i:020}.json"))
            .collect();
        assert_eq!(keys, want);
    }

    #[tokio::test]
    async fn listings_carry_the_same_etag_as_head() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t")).unwrap();
        std::fs::write(dir.path().join("t/a.parquet"), b"abc").unwrap();
        let store = origin(dir.path());
        let head = store.head(&Path::from("t/a.parquet")).await.unwrap();
        let listed: Vec<ObjectMeta> = store
            .list(Some(&Path::from("t")))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<OsResult<_>>()
            .unwrap();
        assert_eq!(listed, vec![head.clone()]);
        let shallow = store
            .list_with_delimiter(Some(&Path::from("t")))
            .await
            .unwrap();
        assert_eq!(shallow.objects, vec![head]);
    }

    #[test]
    fn a_read_of_a_file_that_changes_meanwhile_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.parquet");
        std::fs::write(&file, b"0123456789").unwrap();
        let loc = Path::from("a.parquet");
        let opened = Opened::open(&file, &loc).unwrap();
        assert_eq!(opened.read(2..5).unwrap(), Bytes::from_static(b"234"));
        // Same size, times put back: the change time still moves.
        rewrite_keeping_times(&file, b"abcdefghij");
        let err = opened.read(2..5).unwrap_err();
        assert!(
            matches!(err, object_store::Error::Precondition { .. }),
            "{err}"
        );
        // Shortened: a short read is never returned as the old version's.
        let opened = Opened::open(&file, &loc).unwrap();
        std::fs::write(&file, b"abc").unwrap();
        assert!(opened.read(0..10).is_err());
    }

    #[tokio::test]
    async fn large_reads_stream_in_checked_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let size = PIECE as usize + 1000;
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("big.parquet"), &data).unwrap();
        let store = origin(dir.path());
        let got = store
            .get(&Path::from("big.parquet"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.as_ref(), data.as_slice());
    }
}
