//! Writing a set of files whole or not at all: each goes to a temporary
//! file in its directory, created with its final permissions (a key is
//! never readable by others, not even for a moment), then renamed into
//! place. Without `overwrite`, an existing file is refused before anything
//! is written, and the rename itself never replaces one.

use std::io::Write;
use std::path::{Path, PathBuf};

use quiver_client::ClientError;

/// Who may read a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The owner only (0600): private keys.
    Secret,
    /// Everyone (0644): certificates.
    Public,
}

/// One file to write.
#[derive(Debug)]
pub struct Output<'a> {
    path: &'a Path,
    contents: &'a str,
    mode: Mode,
}

impl<'a> Output<'a> {
    pub fn new(path: &'a Path, contents: &'a str, mode: Mode) -> Output<'a> {
        Output {
            path,
            contents,
            mode,
        }
    }
}

fn failed(path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Refused(format!("cannot write {}: {e}", path.display()))
}

/// Writes every file of `outputs`, in order. If one fails, those this call
/// already created are removed again (replaced ones cannot be restored).
pub fn write_all(outputs: &[Output<'_>], overwrite: bool) -> Result<(), ClientError> {
    if !overwrite {
        if let Some(o) = outputs.iter().find(|o| o.path.exists()) {
            return Err(ClientError::Refused(format!(
                "{} already exists; pass --overwrite to replace it",
                o.path.display()
            )));
        }
    }
    let mut created: Vec<PathBuf> = Vec::new();
    for o in outputs {
        if let Err(e) = write_one(o, overwrite) {
            for path in &created {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        if !overwrite {
            created.push(o.path.to_path_buf());
        }
    }
    Ok(())
}

fn write_one(o: &Output<'_>, overwrite: bool) -> Result<(), ClientError> {
    let dir = match o.path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    // tempfile creates the file 0600 on Unix, before a byte is written.
    let mut tmp = tempfile::Builder::new()
        .prefix(".quiver-cert-")
        .tempfile_in(dir)
        .map_err(|e| failed(o.path, e))?;
    #[cfg(unix)]
    if o.mode == Mode::Public {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| failed(o.path, e))?;
    }
    tmp.write_all(o.contents.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| failed(o.path, e))?;
    let persisted = if overwrite {
        tmp.persist(o.path)
    } else {
        tmp.persist_noclobber(o.path)
    };
    persisted.map_err(|e| failed(o.path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_written_with_their_modes_and_never_replaced_unasked() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("sub/a.key");
        let cert = dir.path().join("sub/a.pem");
        let outputs = [
            Output::new(&key, "secret", Mode::Secret),
            Output::new(&cert, "public", Mode::Public),
        ];
        write_all(&outputs, false).unwrap();
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "secret");
        #[cfg(unix)]
        assert_eq!((mode(&key), mode(&cert)), (0o600, 0o644));

        // The certificate alone exists: nothing is written, the key stays.
        std::fs::remove_file(&key).unwrap();
        let again = [
            Output::new(&key, "other", Mode::Secret),
            Output::new(&cert, "other", Mode::Public),
        ];
        let err = write_all(&again, false).unwrap_err().to_string();
        assert!(err.contains("a.pem already exists"), "{err}");
        assert!(!key.exists());

        write_all(&again, true).unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), "other");
        #[cfg(unix)]
        assert_eq!((mode(&key), mode(&cert)), (0o600, 0o644));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".quiver-cert-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
