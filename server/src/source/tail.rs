//! Learning an object's identity with a GET of its last bytes instead of a
//! HEAD.
//!
//! A cold scan asks the origin what the object is (its ETag and size) and
//! then reads its footer, which is at its end: two round trips before the
//! first data byte. A GET of a suffix answers both at once, since the
//! response describes the object as a HEAD does (the ETag, and the size in
//! `Content-Range`).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore};

use super::identity::ObjectId;

/// The last bytes of an object, at `start`.
#[derive(Debug, Clone)]
pub struct Tail {
    pub start: u64,
    pub bytes: Bytes,
}

/// The identity of `path` and its last `len` bytes (all of it when it is
/// smaller). The bytes are left out when the answer is not exactly the
/// suffix asked for, so a store that ignores suffix ranges still describes
/// the object without handing the cache misplaced bytes.
pub async fn describe_with_tail(
    origin: &Arc<dyn ObjectStore>,
    source: &Arc<str>,
    path: &Path,
    len: u64,
) -> object_store::Result<(ObjectId, Option<Tail>)> {
    let options = GetOptions {
        range: Some(GetRange::Suffix(len)),
        ..Default::default()
    };
    let result = origin.get_opts(path, options).await?;
    // The id names the path asked for, as `Source::head` explains.
    let meta = ObjectMeta {
        location: path.clone(),
        ..result.meta.clone()
    };
    let range = result.range.clone();
    let bytes = result.bytes().await?;
    let id = ObjectId::from_meta(source, &meta);
    let tail = is_suffix(&range, bytes.len(), id.size, len).then_some(Tail {
        start: range.start,
        bytes,
    });
    Ok((id, tail))
}

/// Whether `range`, holding `received` bytes, is the last `len` bytes of an
/// object of `size` bytes (or all of a smaller one).
fn is_suffix(range: &Range<u64>, received: usize, size: u64, len: u64) -> bool {
    range.end == size
        && range.start == size.saturating_sub(len)
        && u64::try_from(received).is_ok_and(|r| r == range.end - range.start)
        && size > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_suffix_is_kept() {
        assert!(is_suffix(&(900..1000), 100, 1000, 100));
        assert!(is_suffix(&(0..50), 50, 50, 100), "a small object whole");
        assert!(
            !is_suffix(&(0..1000), 1000, 1000, 100),
            "the whole object of a store ignoring ranges"
        );
        assert!(!is_suffix(&(900..1000), 99, 1000, 100), "a short body");
        assert!(!is_suffix(&(900..999), 99, 1000, 100), "not at the end");
        assert!(
            !is_suffix(&(0..0), 0, 0, 100),
            "an empty object has no tail"
        );
    }
}
