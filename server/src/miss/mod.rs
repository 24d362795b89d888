//! The miss policy (`[miss]`): which cold objects a plan hands out as
//! pre-signed URLs instead of reading them through the node, and the
//! background warming that follows each URL.
//!
//! The source signs the URLs (`source::presign`); `warm` loads what the
//! client was sent away for. This module only decides; planning
//! (`flight_info`) assembles endpoints.

pub mod warm;

use std::time::Duration;

use quiver_protocol::{Accept, ScanRequest};

use crate::config::{MissConfig, MissPolicy};

pub use warm::{WarmContext, WarmJob, Warmer};

/// The rules of `[miss]`, fixed at start-up.
#[derive(Debug, Clone, Copy)]
pub struct MissRules {
    pub policy: MissPolicy,
    pub expiry: Duration,
    pub min_bytes: u64,
}

impl From<&MissConfig> for MissRules {
    fn from(c: &MissConfig) -> Self {
        MissRules {
            policy: c.policy,
            expiry: c.presign_expiry.0,
            min_bytes: c.presign_min_bytes.0,
        }
    }
}

/// How the planner should describe one object to this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// A Flight endpoint naming the owners.
    Flight,
    /// Ask how much of the object is cached, then call [`MissRules::cold`].
    CheckCache,
    /// A pre-signed URL whatever the cache holds: the client accepts only
    /// URLs (its last resort when no owner can serve).
    Url,
}

impl MissRules {
    /// What the policy allows for `req` and an object of `size` bytes,
    /// before looking at the cache. A client that did not opt in, and a
    /// source that cannot sign, always get Flight endpoints.
    pub fn offer(&self, req: &ScanRequest, size: u64, can_sign: bool) -> Offer {
        if !can_sign || !req.accepts(Accept::Presigned) || self.policy == MissPolicy::ReadThrough {
            return Offer::Flight;
        }
        if !req.accepts(Accept::Flight) {
            return Offer::Url;
        }
        match self.policy {
            MissPolicy::Auto if size <= self.min_bytes => Offer::Flight,
            _ => Offer::CheckCache,
        }
    }

    /// An object is cold when the cache holds less than half of the bytes
    /// the request needs: reading the rest through the node would still
    /// pay the origin for most of the scan.
    pub fn cold(needed: u64, cached: u64) -> bool {
        cached.saturating_mul(2) < needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(policy: MissPolicy) -> MissRules {
        MissRules {
            policy,
            expiry: Duration::from_secs(900),
            min_bytes: 100,
        }
    }

    fn req(accept: Option<Vec<Accept>>) -> ScanRequest {
        ScanRequest {
            accept,
            ..Default::default()
        }
    }

    #[test]
    fn only_clients_that_opt_in_get_urls() {
        let both = req(Some(vec![Accept::Flight, Accept::Presigned]));
        for policy in [MissPolicy::Presign, MissPolicy::Auto] {
            assert_eq!(rules(policy).offer(&req(None), 1000, true), Offer::Flight);
            assert_eq!(
                rules(policy).offer(&req(Some(vec![Accept::Flight])), 1000, true),
                Offer::Flight
            );
            assert_eq!(rules(policy).offer(&both, 1000, false), Offer::Flight);
            assert_eq!(rules(policy).offer(&both, 1000, true), Offer::CheckCache);
        }
        assert_eq!(
            rules(MissPolicy::ReadThrough).offer(&both, 1000, true),
            Offer::Flight
        );
    }

    #[test]
    fn auto_reads_small_objects_through_and_url_only_clients_always_get_one() {
        let both = req(Some(vec![Accept::Flight, Accept::Presigned]));
        assert_eq!(
            rules(MissPolicy::Auto).offer(&both, 100, true),
            Offer::Flight
        );
        assert_eq!(
            rules(MissPolicy::Presign).offer(&both, 100, true),
            Offer::CheckCache
        );
        let only = req(Some(vec![Accept::Presigned]));
        assert_eq!(rules(MissPolicy::Auto).offer(&only, 1, true), Offer::Url);
        assert_eq!(
            rules(MissPolicy::ReadThrough).offer(&only, 1, true),
            Offer::Flight
        );
    }

    #[test]
    fn cold_means_less_than_half_cached() {
        assert!(MissRules::cold(100, 0));
        assert!(MissRules::cold(100, 49));
        assert!(!MissRules::cold(100, 50));
        assert!(!MissRules::cold(0, 0));
    }
}
