//! The `[miss]` section: what a scan of cold bytes does (read through, or
//! a pre-signed URL and background warming), and its bounds.

use std::time::Duration;

use super::error::{invalid, ConfigError};
use super::section::section;
use super::values::{ByteSize, MissPolicy, Span};

/// Most origin fetches warming may hold: half of the node's 32
/// (`cache::MAX_ORIGIN_FETCHES`), so demand reads always keep the other half.
pub const MAX_WARM_FETCHES: usize = 16;

/// Longest life S3 allows a pre-signed URL (SigV4): seven days.
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

section! {
    /// The miss policy: pre-signed URLs for cold objects, and the background
    /// warming that follows each one.
    pub struct MissConfig / MissFlags {
        /// What a cold scan does: read-through, presign or auto.
        policy: MissPolicy = MissPolicy::Auto,
            [long = "miss-policy", env = "QUIVER_MISS_POLICY"];
        /// How long a pre-signed URL works, e.g. 15m (at most 7 days).
        presign_expiry: Span = Span(Duration::from_secs(15 * 60)),
            [long = "presign-expiry", env = "QUIVER_PRESIGN_EXPIRY"];
        /// With `auto`, the smallest cold object handed out as a URL, e.g. 8MiB.
        ///
        /// Smaller objects are read through even when cold: a small object
        /// costs less through the node than a second connection.
        presign_min_bytes: ByteSize = ByteSize(8 << 20),
            [long = "presign-min-bytes", env = "QUIVER_PRESIGN_MIN_BYTES"];
        /// Warm-ups waiting at once; one more is dropped (and counted).
        warm_queue: usize = 256, [skip];
        /// Origin fetches warming may hold at once, out of the node's 32: the
        /// rest always stay for demand reads.
        warm_fetches: usize = 4, [skip];
    }
}

impl MissConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let expiry = self.presign_expiry.0;
        if expiry < Duration::from_secs(1) || expiry > MAX_PRESIGN_EXPIRY {
            return Err(invalid(
                "miss.presign_expiry",
                "must be between 1s and 7 days (the longest S3 accepts)",
            ));
        }
        if self.warm_queue == 0 {
            return Err(invalid("miss.warm_queue", "must be at least 1"));
        }
        if !(1..=MAX_WARM_FETCHES).contains(&self.warm_fetches) {
            return Err(invalid(
                "miss.warm_fetches",
                format!(
                    "must be between 1 and {MAX_WARM_FETCHES}, so demand reads keep most of the origin budget"
                ),
            ));
        }
        Ok(())
    }
}
