//! Which filters of one query are pushed together: a request carries them
//! ANDed as one filter, so the ones taken must still pass the node's checks
//! as a whole.

use super::node_checks::{node_accepts, MAX_REQUEST_FILTER};

/// The filters of one request as the node receives them: one filter, or
/// each parenthesised and joined with `AND`.
pub fn all_of(texts: &[&str]) -> Option<String> {
    match texts {
        [] => None,
        [one] => Some(one.to_string()),
        many => Some(
            many.iter()
                .map(|t| format!("({t})"))
                .collect::<Vec<_>>()
                .join(" AND "),
        ),
    }
}

/// Which filters of one query are pushed: each passes alone
/// ([`filter_text`]), and the ones taken, in order, must still pass
/// together, since a request carries them ANDed as one filter. A filter
/// past that stays in DataFusion, so no number of filters makes a node
/// refuse the query.
#[derive(Debug, Default)]
pub struct PushBudget {
    taken: Vec<String>,
}

impl PushBudget {
    /// Takes `text` if the filters taken so far and it fit one request.
    pub fn admit(&mut self, text: &str) -> bool {
        let mut trial: Vec<&str> = self.taken.iter().map(String::as_str).collect();
        trial.push(text);
        let fits = all_of(&trial).is_some_and(|all| node_accepts(&all, MAX_REQUEST_FILTER));
        if fits {
            self.taken.push(text.to_string());
        }
        fits
    }
}
