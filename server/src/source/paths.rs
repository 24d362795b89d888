//! What a client may name inside a source: paths that stay under the source
//! root and that the store will not silently rewrite into another key.

use object_store::path::Path;

use crate::error::{QuiverError, Result};

/// S3's longest key, in bytes.
pub const MAX_PATH: usize = 1024;

/// The longest file name local file systems take, in bytes.
pub const MAX_SEGMENT: usize = 255;

/// Refuses anything that could step outside the source root, that the
/// store would silently rewrite into another key, or that no store can hold
/// (a name so long that the origin fails instead of answering "not found",
/// which would count against the source's circuit breaker).
pub fn checked_path(raw: &str) -> Result<Path> {
    if raw.len() > MAX_PATH {
        return Err(QuiverError::invalid(format!(
            "a path of {} bytes is longer than the {MAX_PATH} bytes an object key may have",
            raw.len()
        )));
    }
    if raw.split('/').any(|p| p.len() > MAX_SEGMENT) {
        return Err(QuiverError::invalid(format!(
            "a path segment is longer than {MAX_SEGMENT} bytes"
        )));
    }
    for part in raw.split('/').filter(|p| !p.is_empty()) {
        if part == ".." || part == "." {
            return Err(QuiverError::invalid(format!(
                "path `{raw}` contains `{part}`; paths are relative to the source root"
            )));
        }
    }
    if raw.contains('\\') || raw.chars().any(char::is_control) {
        return Err(QuiverError::invalid(format!(
            "path `{}` contains a backslash or a control character",
            raw.escape_default()
        )));
    }
    if raw.contains("//") {
        return Err(QuiverError::invalid(format!(
            "path `{raw}` has an empty segment"
        )));
    }
    Path::parse(raw).map_err(|e| QuiverError::invalid(format!("path `{raw}` is not valid: {e}")))
}

/// Decodes the `%XX` escapes of a URL path; anything malformed or not UTF-8
/// is refused.
pub fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| QuiverError::invalid(format!("`{s}` has a bad % escape")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| QuiverError::invalid(format!("`{s}` is not UTF-8")))
}

/// Files whose name starts with `.` or `_` are markers (`_SUCCESS`,
/// `.quiver/`), not data.
pub fn is_data_file(path: &Path) -> bool {
    let hidden = path
        .parts()
        .any(|p| p.as_ref().starts_with('.') || p.as_ref().starts_with('_'));
    !hidden && path.as_ref().ends_with(".parquet")
}

/// The directory of the Delta table `path` belongs to the log of (`t/` for
/// `t/_delta_log/00000000000000000000.json`), ending in `/`. A log at the
/// source root names no table directory, as Parquet objects there belong
/// to none.
pub fn delta_root(path: &Path) -> Option<String> {
    // Every listed key passes here: find the segment before building
    // anything.
    let at = path.parts().position(|p| p.as_ref() == "_delta_log")?;
    (at > 0).then(|| {
        let mut root = String::new();
        for part in path.parts().take(at) {
            root.push_str(part.as_ref());
            root.push('/');
        }
        root
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_logs_name_their_table() {
        let root = |p: &str| delta_root(&Path::from(p));
        assert_eq!(
            root("s/t/_delta_log/00000000000000000000.json").as_deref(),
            Some("s/t/")
        );
        assert_eq!(root("t/_delta_log/_last_checkpoint").as_deref(), Some("t/"));
        assert_eq!(root("_delta_log/00000000000000000000.json"), None);
        assert_eq!(root("t/part-0.parquet"), None);
    }

    #[test]
    fn data_files_skip_markers() {
        assert!(is_data_file(&Path::from("t/a.parquet")));
        assert!(!is_data_file(&Path::from("t/_SUCCESS")));
        assert!(!is_data_file(&Path::from(".quiver/topology.json")));
        assert!(!is_data_file(&Path::from("t/_tmp/a.parquet")));
        assert!(!is_data_file(&Path::from("t/a.csv")));
    }

    #[test]
    fn paths_no_store_can_hold_are_refused() {
        assert!(checked_path(&"x".repeat(MAX_SEGMENT)).is_ok());
        assert!(checked_path(&"x".repeat(MAX_SEGMENT + 1)).is_err());
        let long = vec!["d"; MAX_PATH / 2 + 1].join("/");
        assert!(checked_path(&long).is_err());
    }

    #[test]
    fn percent_escapes_are_checked() {
        assert_eq!(percent_decode("a%20b").unwrap(), "a b");
        for bad in ["%", "%2", "%zz", "%ff%fe"] {
            assert!(percent_decode(bad).is_err(), "{bad}");
        }
    }
}
