//! What the node's requests did lately, kept for the admin status page:
//! the last requests that failed and the most requested objects. Both are
//! bounded in entries and in the length of what each entry holds, so no
//! amount of traffic, hostile or not, grows them.

mod errors;
mod objects;

use std::time::Instant;

pub use errors::{RecentError, RecentErrors, MAX_MESSAGE_CHARS, MAX_RECENT_ERRORS};
pub use objects::{HotObject, TopObjects, MAX_KEY_CHARS, TRACKED_OBJECTS};

/// The node's recent activity. The Flight adapter records into it; the
/// admin server reads it.
#[derive(Debug)]
pub struct Activity {
    /// When the node started, for its uptime.
    pub started: Instant,
    pub errors: RecentErrors,
    pub objects: TopObjects,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            started: Instant::now(),
            errors: RecentErrors::default(),
            objects: TopObjects::default(),
        }
    }
}

/// `text` cut to at most `max` characters, with an ellipsis when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clip_cuts_on_characters() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc…");
        assert_eq!(clip("ééé", 2), "éé…");
        assert_eq!(clip("", 2), "");
    }
}
