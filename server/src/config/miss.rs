//! The `[miss]` section: what a scan of cold bytes does (read through, or
//! a pre-signed URL and background warming), and its bounds.

use std::time::Duration;

use serde::Deserialize;

use super::error::{invalid, ConfigError};
use super::values::{ByteSize, MissPolicy, Span};

/// Most origin fetches warming may hold: half of the node's 32
/// (`cache::MAX_ORIGIN_FETCHES`), so demand reads always keep the other half.
pub const MAX_WARM_FETCHES: usize = 16;

/// Longest life S3 allows a pre-signed URL (SigV4): seven days.
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The miss policy: pre-signed URLs for cold objects, and the background
/// warming that follows each one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MissConfig {
    pub policy: MissPolicy,
    /// How long a pre-signed URL works.
    pub presign_expiry: Span,
    /// With `auto`, objects up to this size are read through even when cold:
    /// a small object costs less through the node than a second connection.
    pub presign_min_bytes: ByteSize,
    /// Warm-ups waiting at once; one more is dropped (and counted).
    pub warm_queue: usize,
    /// Origin fetches warming may hold at once, out of the node's 32: the
    /// rest always stay for demand reads.
    pub warm_fetches: usize,
}

impl Default for MissConfig {
    fn default() -> Self {
        MissConfig {
            policy: MissPolicy::Auto,
            presign_expiry: Span(Duration::from_secs(15 * 60)),
            presign_min_bytes: ByteSize(8 << 20),
            warm_queue: 256,
            warm_fetches: 4,
        }
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
