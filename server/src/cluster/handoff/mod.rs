//! Warm slot hand-off: when a topology change gives this node slots another
//! node owned, it copies that node's cached chunks of those slots instead of
//! reading them again from S3, while the previous owner keeps serving them
//! for the hand-off grace period.
//!
//! The donor side answers `handoff-list` (a page of the cached objects that
//! fall in the slots, and which of their chunks it holds, taken from the
//! cache's own catalog so a restarted donor offers its recovered disk tier)
//! and `handoff-read` (those chunks, from cache only, each with its
//! checksum). The importer runs in the background on every adopted change,
//! tries a slot's previous owners in order (its primary, then its
//! replicas) and leaves what none of them could give to the origin; it
//! reports its progress through `health`.
//!
//! `donor` answers the actions, `importer` runs the hand-off, and
//! `progress` is what it reports; the chunk frames are
//! `quiver_protocol::frame_chunk` and `unframe_chunk`.

mod donor;
mod importer;
pub mod progress;

use std::sync::Arc;

use object_store::path::Path;
use quiver_protocol::HandoffObject;

use crate::source::ObjectId;

pub use donor::{done, list, read};
pub use importer::run;
pub use progress::{HandoffStatus, Progress};

/// Chunks asked for in one `handoff-read`, so one stream stays bounded.
const READ_BATCH: usize = 16;

/// The object version an offer or a read names, as the cache keys it.
fn object_id(o: &HandoffObject) -> ObjectId {
    ObjectId {
        source: Arc::from(o.source.as_str()),
        path: Path::from(o.path.as_str()),
        etag: o.etag.clone(),
        size: o.size,
        last_modified: chrono::DateTime::from_timestamp_millis(o.last_modified_ms)
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod test_support {
    /// A memory-only node serving `dir` as source `local`.
    pub(super) async fn local_node(dir: &std::path::Path) -> crate::node::RunningNode {
        let mut config = crate::config::Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.admin_listen = "127.0.0.1:0".parse().unwrap();
        config.cache.disk = crate::config::ByteSize(0);
        let url = url::Url::from_directory_path(dir).unwrap();
        config.sources = vec![crate::config::SourceConfig::new("local", url.as_str())];
        crate::node::RunningNode::start(config).await.unwrap()
    }
}
