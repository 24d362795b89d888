//! Where the topology document is kept, and compare-and-swap writes to it.
//!
//! An object store is the shared, durable place every node already reaches,
//! so no coordination service is needed: conditional PUTs (`If-None-Match:
//! *` to create, `If-Match: <etag>` to replace) make concurrent edits safe.
//! A local file serves one machine; a lock file plays the part of the ETag
//! check there.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};

use crate::error::{QuiverError, Result};

/// The document's bytes and the version a replacing write must name.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub bytes: Bytes,
    pub version: String,
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Someone else wrote first; re-read and retry.
    #[error("the topology document changed while it was being updated")]
    Conflict,
    #[error(transparent)]
    Other(#[from] QuiverError),
}

pub enum DocumentStore {
    Object {
        store: Arc<dyn ObjectStore>,
        path: Path,
        url: String,
    },
    File(PathBuf),
}

impl std::fmt::Display for DocumentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocumentStore::Object { url, .. } => f.write_str(url),
            DocumentStore::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A content version for local files: they have no ETag.
fn digest(bytes: &[u8]) -> String {
    const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_ECMA_182);
    format!("{:016x}-{}", CRC64.checksum(bytes), bytes.len())
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> QuiverError {
    QuiverError::Unavailable(format!("cannot {what} the topology: {e}"))
}

impl DocumentStore {
    pub async fn read(&self) -> Result<Option<Versioned>> {
        match self {
            DocumentStore::Object { store, path, .. } => match store.get(path).await {
                Ok(got) => {
                    let version = got.meta.e_tag.clone().unwrap_or_default();
                    let bytes = got.bytes().await.map_err(|e| unavailable("read", e))?;
                    Ok(Some(Versioned { bytes, version }))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(unavailable("read", e)),
            },
            DocumentStore::File(path) => match tokio::fs::read(path).await {
                Ok(bytes) => Ok(Some(Versioned {
                    version: digest(&bytes),
                    bytes: bytes.into(),
                })),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(unavailable("read", e)),
            },
        }
    }

    /// Writes `bytes` if the document is still at `expected` (`None`: if
    /// there is no document yet).
    pub async fn write(
        &self,
        bytes: Bytes,
        expected: Option<&str>,
    ) -> std::result::Result<(), WriteError> {
        match self {
            DocumentStore::Object { store, path, .. } => {
                let mode = match expected {
                    None => PutMode::Create,
                    Some(etag) => PutMode::Update(UpdateVersion {
                        e_tag: Some(etag.to_string()),
                        version: None,
                    }),
                };
                let opts = PutOptions {
                    mode,
                    ..Default::default()
                };
                match store.put_opts(path, bytes.into(), opts).await {
                    Ok(_) => Ok(()),
                    Err(
                        object_store::Error::Precondition { .. }
                        | object_store::Error::AlreadyExists { .. },
                    ) => Err(WriteError::Conflict),
                    Err(e) => Err(unavailable("write", e).into()),
                }
            }
            DocumentStore::File(path) => {
                let path = path.clone();
                let expected = expected.map(str::to_string);
                tokio::task::spawn_blocking(move || write_file(&path, &bytes, expected.as_deref()))
                    .await
                    .map_err(|e| WriteError::Other(QuiverError::Internal(e.to_string())))?
            }
        }
    }
}

/// Check-and-replace under an exclusive lock on a sibling lock file; the
/// new content goes to a temporary file first and is renamed into place,
/// so readers never see half a document.
fn write_file(
    path: &std::path::Path,
    bytes: &[u8],
    expected: Option<&str>,
) -> std::result::Result<(), WriteError> {
    let io = |e: std::io::Error| WriteError::Other(unavailable("write", e));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("lock"))
        .map_err(io)?;
    lock.lock().map_err(io)?;
    let current = match std::fs::read(path) {
        Ok(b) => Some(digest(&b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    if current.as_deref() != expected {
        return Err(WriteError::Conflict);
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_writes_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let store = DocumentStore::File(dir.path().join("t/topology.json"));
        assert!(store.read().await.unwrap().is_none());
        store.write(Bytes::from("one"), None).await.unwrap();
        assert!(matches!(
            store.write(Bytes::from("again"), None).await,
            Err(WriteError::Conflict)
        ));
        let v1 = store.read().await.unwrap().unwrap();
        assert_eq!(v1.bytes, "one");
        store
            .write(Bytes::from("two"), Some(&v1.version))
            .await
            .unwrap();
        assert!(matches!(
            store.write(Bytes::from("stale"), Some(&v1.version)).await,
            Err(WriteError::Conflict)
        ));
        assert_eq!(store.read().await.unwrap().unwrap().bytes, "two");
    }
}
