//! Delta deletion vectors: the rows one vector deletes from a data file,
//! read by the Delta kernel's own reader (framing, size, magic and CRC
//! checks, the Roaring bitmap) from bytes the node fetched itself, through
//! its cache and with its origin's timeouts, and kept by the vector's
//! identity so that every scan of the file does not read it again.
//!
//! A scan request names the vector (`docs/protocol.md`, "Deletion
//! vectors"): anyone may send one, so nothing of it is trusted. A stored
//! vector must be a `deletion_vector_<uuid>.bin` file inside the table's
//! directory and is read as two ranges of it (the version byte, and the
//! vector itself); its size, an inline vector's length and the table path
//! are capped, and the cache weighs what it keeps of the request too; the
//! rows it holds must be as many as it claims.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use delta_kernel::actions::deletion_vector::{DeletionVectorDescriptor, DeletionVectorStorageType};
use delta_kernel::{DeltaResult, Error as KernelError, FileMeta, FileSlice, StorageHandler};
use foyer::{Cache, CacheBuilder};
use object_store::path::Path;
use quiver_protocol::{DeletionVector, DeletionVectorStorage};
use roaring::RoaringTreemap;
use url::Url;

use crate::cache::CachingObjectStore;
use crate::error::{QuiverError, Result};

/// The largest vector read, the whole budget of the vector cache: a
/// Roaring bitmap of hundreds of millions of deleted rows, far beyond
/// what one data file of a table holds.
const MAX_VECTOR_BYTES: u32 = 64 << 20;

/// The longest inline vector accepted, in Z85 characters: writers inline
/// only small vectors and store the rest in files.
const MAX_INLINE_CHARS: usize = 1 << 20;

/// The longest table path accepted: S3's longest key.
const MAX_TABLE_CHARS: usize = 1024;

/// The longest reading one vector may take, past the origin's own
/// per-request timeouts: a stuck read fails the scan, never hangs it.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The scheme of the URLs the kernel is handed: only used to name the one
/// file it reads, which [`FetchedVector`] serves.
const SCHEME: &str = "quiver";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct VectorKey {
    source: Arc<str>,
    table: String,
    /// The kernel's identity of the vector: storage type, path (or the
    /// inline vector) and offset.
    id: String,
    /// Checked against the file when it is read: a request naming the
    /// same vector with another size is read (and refused) on its own.
    size: u32,
}

/// Deletion vectors read, by identity, within a memory budget.
#[derive(Clone)]
pub struct DeletionVectors {
    cache: Cache<VectorKey, Arc<RoaringTreemap>>,
}

impl std::fmt::Debug for DeletionVectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeletionVectors")
            .field("usage", &self.cache.usage())
            .finish()
    }
}

impl DeletionVectors {
    /// Keeps vectors up to `capacity` bytes (their serialized size).
    pub fn new(capacity: u64) -> Self {
        let cache = CacheBuilder::new(usize::try_from(capacity).unwrap_or(usize::MAX))
            .with_weighter(|key: &VectorKey, rows: &Arc<RoaringTreemap>| {
                // What the request put in the key counts too: an inline
                // vector's text can be far larger than the rows it holds.
                rows.serialized_size()
                    .saturating_add(key.table.len())
                    .saturating_add(key.id.len())
            })
            .build();
        DeletionVectors { cache }
    }

    /// The rows `dv` deletes from a file of `store`'s source.
    pub async fn rows(
        &self,
        store: &CachingObjectStore,
        dv: &DeletionVector,
    ) -> Result<Arc<RoaringTreemap>> {
        let what = format!(
            "the deletion vector of {}/{}",
            store.source().name,
            dv.table
        );
        let descriptor = descriptor(dv, &what)?;
        let key = VectorKey {
            source: store.source().name.clone(),
            table: dv.table.clone(),
            id: descriptor.unique_id(),
            size: dv.size_in_bytes,
        };
        let rows = match self.cache.get(&key) {
            Some(entry) => entry.value().clone(),
            None => {
                let rows = tokio::time::timeout(READ_TIMEOUT, read(store, dv, descriptor, &what))
                    .await
                    .map_err(|_| {
                        QuiverError::Unavailable(format!(
                            "reading {what} took longer than {}s",
                            READ_TIMEOUT.as_secs()
                        ))
                    })??;
                let rows = Arc::new(rows);
                self.cache.insert(key, rows.clone());
                rows
            }
        };
        // Checked on every use: two requests may name the same vector with
        // different counts, and only one of them read it.
        if rows.len() != dv.cardinality {
            return Err(QuiverError::DataLoss(format!(
                "{what} deletes {} rows, not the {} its log says",
                rows.len(),
                dv.cardinality
            )));
        }
        Ok(rows)
    }
}

/// The kernel's descriptor of `dv`, after the checks the kernel leaves to
/// its caller.
fn descriptor(dv: &DeletionVector, what: &str) -> Result<DeletionVectorDescriptor> {
    if dv.size_in_bytes > MAX_VECTOR_BYTES {
        return Err(QuiverError::ResourceExhausted(format!(
            "{what} is {} bytes; this node reads vectors of at most {MAX_VECTOR_BYTES}",
            dv.size_in_bytes
        )));
    }
    if dv.table.len() > MAX_TABLE_CHARS
        || !dv.table.ends_with('/')
        || dv.table.split('/').any(|p| p == ".." || p == ".")
    {
        return Err(QuiverError::invalid(format!(
            "a deletion vector's table must be a directory ending in `/` without `.` or `..`, not `{}`",
            dv.table
        )));
    }
    let (storage, offset) = match dv.storage_type {
        DeletionVectorStorage::File => (
            DeletionVectorStorageType::PersistedRelative,
            Some(dv.offset.unwrap_or(1)),
        ),
        DeletionVectorStorage::Inline => {
            if dv.offset.is_some() || dv.path_or_inline_dv.len() > MAX_INLINE_CHARS {
                return Err(QuiverError::invalid(format!(
                    "{what} is inline, so it has no offset and at most {MAX_INLINE_CHARS} characters"
                )));
            }
            // The kernel takes the first four bytes of the decoded vector
            // as its magic without checking there are four.
            let decoded = z85::decode(&dv.path_or_inline_dv)
                .map_err(|e| QuiverError::invalid(format!("{what} is not Z85: {e}")))?;
            let size = usize::try_from(dv.size_in_bytes).unwrap_or(usize::MAX);
            if decoded.len() < 4 || decoded.len() < size {
                return Err(QuiverError::invalid(format!(
                    "{what} decodes to {} bytes, not the {size} (and at least 4) it claims",
                    decoded.len()
                )));
            }
            (DeletionVectorStorageType::Inline, None)
        }
    };
    let offset = offset
        .map(|o| {
            i32::try_from(o)
                .map_err(|_| QuiverError::invalid(format!("{what}: offset {o} is too large")))
        })
        .transpose()?;
    // Both fit: the size is capped above, the cardinality checked later.
    let size = i32::try_from(dv.size_in_bytes).unwrap_or(i32::MAX);
    let cardinality = i64::try_from(dv.cardinality).unwrap_or(i64::MAX);
    DeletionVectorDescriptor::try_new(
        storage,
        dv.path_or_inline_dv.clone(),
        offset,
        size,
        cardinality,
    )
    .map_err(|e| QuiverError::invalid(format!("{what} is malformed: {e}")))
}

/// Reads the vector: a stored one's two ranges fetched through the cache,
/// then the kernel's reader over them on the blocking pool (a vector can
/// be megabytes of bitmap).
async fn read(
    store: &CachingObjectStore,
    dv: &DeletionVector,
    descriptor: DeletionVectorDescriptor,
    what: &str,
) -> Result<RoaringTreemap> {
    let mut table = Url::parse(&format!("{SCHEME}:///"))
        .map_err(|e| QuiverError::Internal(format!("cannot build the table URL: {e}")))?;
    table.set_path(&format!("/{}", dv.table));
    let malformed = |e: KernelError| QuiverError::DataLoss(format!("{what} is unreadable: {e}"));
    let fetched = match descriptor
        .absolute_path(&table)
        .map_err(|e| QuiverError::invalid(format!("{what} is malformed: {e}")))?
    {
        None => FetchedVector::default(),
        Some(url) => {
            // The kernel joins the prefix as a relative URL: a `?`, `#` or
            // `..` in it would name another object than a vector's file.
            let named = url
                .path_segments()
                .and_then(|mut segments| segments.next_back())
                .is_some_and(|name| name.starts_with("deletion_vector_") && name.ends_with(".bin"));
            if !url.path().starts_with(table.path())
                || url.query().is_some()
                || url.fragment().is_some()
                || !named
            {
                return Err(QuiverError::invalid(format!(
                    "{what} names another file than a deletion vector of its table"
                )));
            }
            let path = Path::from_url_path(url.path())
                .map_err(|e| QuiverError::invalid(format!("{what} names no object: {e}")))?;
            let start = u64::from(dv.offset.unwrap_or(1));
            // The vector: its size, then its bytes, then its checksum.
            let end = start
                .checked_add(u64::from(dv.size_in_bytes))
                .and_then(|e| e.checked_add(8))
                .ok_or_else(|| QuiverError::invalid(format!("{what}: offset and size overflow")))?;
            // A vector's file is written once, as a data file is.
            let id = store.source().version_for(&path, None, true).await?;
            if end > id.size {
                return Err(QuiverError::DataLoss(format!(
                    "{what} runs to byte {end} of {path}, which has {}",
                    id.size
                )));
            }
            let mut parts = store.read_pinned(&id, &[0..1, start..end]).await?;
            let (Some(vector), Some(version)) = (parts.pop(), parts.pop()) else {
                return Err(QuiverError::DataLoss(format!(
                    "{what}: its file answered nothing"
                )));
            };
            // The kernel reads the version at the start and the vector at
            // its offset: with the bytes between left out, the vector
            // sits right after the version.
            let mut bytes = Vec::with_capacity(vector.len().saturating_add(1));
            bytes.extend_from_slice(&version);
            bytes.extend_from_slice(&vector);
            FetchedVector {
                url: Some(url),
                bytes: Bytes::from(bytes),
            }
        }
    };
    let descriptor = match descriptor.storage_type {
        DeletionVectorStorageType::Inline => descriptor,
        _ => DeletionVectorDescriptor::try_new(
            descriptor.storage_type,
            descriptor.path_or_inline_dv,
            Some(1),
            descriptor.size_in_bytes,
            descriptor.cardinality,
        )
        .map_err(malformed)?,
    };
    tokio::task::spawn_blocking(move || descriptor.read(Arc::new(fetched), &table))
        .await
        .map_err(|e| QuiverError::DataLoss(format!("{what} could not be decoded: {e}")))?
        .map_err(malformed)
}

/// The one file the kernel reads for a vector, already fetched: the
/// kernel's reader takes a storage handler, and the node reads the origin
/// itself (cache, breaker, timeouts). Anything else the kernel might ask
/// of storage is refused.
#[derive(Debug, Default)]
struct FetchedVector {
    url: Option<Url>,
    bytes: Bytes,
}

impl FetchedVector {
    fn refuse<T>(&self, what: &str) -> DeltaResult<T> {
        Err(KernelError::generic(format!(
            "reading a deletion vector does not {what}"
        )))
    }
}

impl StorageHandler for FetchedVector {
    fn list_from(&self, _: &Url) -> DeltaResult<Box<dyn Iterator<Item = DeltaResult<FileMeta>>>> {
        self.refuse("list")
    }

    fn read_files(
        &self,
        files: Vec<FileSlice>,
    ) -> DeltaResult<Box<dyn Iterator<Item = DeltaResult<Bytes>>>> {
        let answers: Vec<DeltaResult<Bytes>> = files
            .into_iter()
            .map(|(url, range)| match (&self.url, range) {
                (Some(own), None) if *own == url => Ok(self.bytes.clone()),
                _ => self.refuse(&format!("read {url} or a range of it")),
            })
            .collect();
        Ok(Box::new(answers.into_iter()))
    }

    fn copy_atomic(&self, _: &Url, _: &Url) -> DeltaResult<()> {
        self.refuse("copy")
    }

    fn put(&self, _: &Url, _: Bytes, _: bool) -> DeltaResult<()> {
        self.refuse("write")
    }

    fn head(&self, _: &Url) -> DeltaResult<FileMeta> {
        self.refuse("stat")
    }

    fn delete(&self, _: &Url) -> DeltaResult<()> {
        self.refuse("delete")
    }
}
