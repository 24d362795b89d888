//! Bearer-token authentication: reader tokens, the admin token, the peer
//! token nodes present to each other, and the Flight handshake that trades
//! HTTP Basic credentials for a bearer token (what Flight SQL clients such
//! as ADBC and JDBC do).

use std::collections::HashSet;
use std::path::Path;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// Basic credentials with or without `=` padding: Go's Flight client (and so
/// the ADBC Flight SQL driver) sends them unpadded, pyarrow and JDBC padded.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
use quiver_protocol::Caller;
use tonic::metadata::MetadataMap;

use crate::config::{AuthConfig, ConfigError};
use crate::error::{QuiverError, Result};

#[derive(Default)]
pub struct Auth {
    /// `None`: any caller may read.
    tokens: Option<HashSet<String>>,
    /// `None`: admin actions need only what reads need.
    admin: Option<String>,
    /// What nodes present to each other for hand-off and warm-ups. Reader
    /// tokens never pass for it, so a reader cannot pull a slot's cache.
    peer: Option<String>,
}

impl std::fmt::Debug for Auth {
    // Never print tokens, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.as_ref().map(HashSet::len))
            .field("admin", &self.admin.is_some())
            .field("peer", &self.peer.is_some())
            .finish()
    }
}

fn read_tokens(path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    if tokens.is_empty() {
        return Err(ConfigError::Invalid {
            key: "auth".into(),
            message: format!("{} holds no token", path.display()),
        });
    }
    Ok(tokens)
}

/// Compares without an early exit, so response time does not reveal how
/// much of a guessed token was right.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (*a.get(i).unwrap_or(&0) ^ *b.get(i).unwrap_or(&0)) as usize;
    }
    diff == 0
}

impl Auth {
    pub fn load(cfg: &AuthConfig) -> Result<Self, ConfigError> {
        let tokens = match &cfg.tokens_file {
            Some(p) => Some(read_tokens(p)?.into_iter().collect()),
            None => None,
        };
        let first = |p: &Option<std::path::PathBuf>| match p {
            Some(p) => read_tokens(p).map(|t| t.into_iter().next()),
            None => Ok(None),
        };
        Ok(Auth {
            tokens,
            admin: first(&cfg.admin_token_file)?,
            peer: first(&cfg.peer_token_file)?,
        })
    }

    pub fn enabled(&self) -> bool {
        self.tokens.is_some() || self.admin.is_some() || self.peer.is_some()
    }

    /// The credential this node presents to its peers for hand-off and
    /// warm-ups: the peer token, else the admin token (which peers also
    /// accept). `None` with only reader tokens: peers refuse hand-off then.
    pub fn peer_credential(&self) -> Option<String> {
        self.peer.clone().or_else(|| self.admin.clone())
    }

    /// The token this node reads from the cluster with (Flight SQL scans
    /// routed to the owners): its peer credential, else any reader token.
    pub fn scan_token(&self) -> Option<String> {
        self.peer_credential()
            .or_else(|| self.tokens.as_ref().and_then(|t| t.iter().next().cloned()))
    }

    fn is_admin(&self, token: &str) -> bool {
        self.admin.as_deref().is_some_and(|a| same(a, token))
    }

    fn is_peer(&self, token: &str) -> bool {
        self.peer.as_deref().is_some_and(|p| same(p, token)) || self.is_admin(token)
    }

    fn is_reader(&self, token: &str) -> bool {
        match &self.tokens {
            Some(tokens) => {
                tokens.iter().fold(false, |ok, t| ok | same(t, token)) || self.is_peer(token)
            }
            None => true,
        }
    }

    /// Checks the bearer token of a call made by `caller`'s kind: readers
    /// need any valid token, admin calls the admin token when one is
    /// configured, and peer calls the peer (or admin) token whenever auth
    /// is on at all.
    pub fn check(&self, metadata: &MetadataMap, caller: Caller) -> Result<()> {
        let needs_token = match caller {
            Caller::Reader => self.tokens.is_some(),
            Caller::Admin => self.tokens.is_some() || self.admin.is_some(),
            Caller::Peer => self.enabled(),
        };
        if !needs_token {
            return Ok(());
        }
        let token = bearer(metadata).ok_or_else(|| {
            QuiverError::Unauthenticated(
                "this node requires a bearer token (authorization: Bearer <token>)".into(),
            )
        })?;
        if caller == Caller::Peer {
            if self.is_peer(&token) {
                return Ok(());
            }
            return Err(if self.is_reader(&token) && self.tokens.is_some() {
                QuiverError::PermissionDenied(
                    "this action is for the cluster's nodes: it needs the peer token (auth.peer_token_file)"
                        .into(),
                )
            } else {
                QuiverError::Unauthenticated("the bearer token is not valid".into())
            });
        }
        if caller == Caller::Admin && self.admin.is_some() {
            if self.is_admin(&token) {
                return Ok(());
            }
            return Err(if self.tokens.is_some() && self.is_reader(&token) {
                QuiverError::PermissionDenied("this action needs the admin token".into())
            } else {
                QuiverError::Unauthenticated("the bearer token is not valid".into())
            });
        }
        if self.is_reader(&token) {
            Ok(())
        } else {
            Err(QuiverError::Unauthenticated(
                "the bearer token is not valid".into(),
            ))
        }
    }

    /// Flight handshake: Basic `user:token` in, the token back as a bearer.
    /// With auth off there is nothing to trade and the handshake succeeds.
    pub fn handshake(&self, metadata: &MetadataMap) -> Result<Option<String>> {
        if !self.enabled() {
            return Ok(None);
        }
        if let Some(token) = bearer(metadata) {
            if self.is_reader(&token) && (self.tokens.is_some() || self.is_peer(&token)) {
                return Ok(Some(token));
            }
            return Err(QuiverError::Unauthenticated(
                "the bearer token is not valid".into(),
            ));
        }
        let header = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                QuiverError::Unauthenticated("the handshake carries no credentials".into())
            })?;
        let encoded = header.strip_prefix("Basic ").ok_or_else(|| {
            QuiverError::Unauthenticated("the handshake needs Basic or Bearer credentials".into())
        })?;
        let decoded = BASIC
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                QuiverError::Unauthenticated("the Basic credentials are not valid base64".into())
            })?;
        let password = decoded.split_once(':').map(|(_, p)| p).unwrap_or(&decoded);
        if self.is_reader(password) && (self.tokens.is_some() || self.is_peer(password)) {
            Ok(Some(password.to_string()))
        } else {
            Err(QuiverError::Unauthenticated(
                "the credentials are not valid".into(),
            ))
        }
    }
}

fn bearer(metadata: &MetadataMap) -> Option<String> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(auth: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", auth.parse().unwrap());
        m
    }

    fn auth(tokens: &[&str], admin: Option<&str>) -> Auth {
        Auth {
            tokens: (!tokens.is_empty()).then(|| tokens.iter().map(|s| s.to_string()).collect()),
            admin: admin.map(String::from),
            peer: None,
        }
    }

    #[test]
    fn open_node_lets_everyone_in() {
        let a = Auth::default();
        assert!(a.check(&MetadataMap::new(), Caller::Admin).is_ok());
        assert_eq!(a.handshake(&MetadataMap::new()).unwrap(), None);
    }

    #[test]
    fn tokens_and_admin() {
        let a = auth(&["reader"], Some("boss"));
        assert!(matches!(
            a.check(&MetadataMap::new(), Caller::Reader),
            Err(QuiverError::Unauthenticated(_))
        ));
        assert!(matches!(
            a.check(&md("Bearer nope"), Caller::Reader),
            Err(QuiverError::Unauthenticated(_))
        ));
        assert!(a.check(&md("Bearer reader"), Caller::Reader).is_ok());
        assert!(a.check(&md("Bearer boss"), Caller::Reader).is_ok());
        assert!(matches!(
            a.check(&md("Bearer reader"), Caller::Admin),
            Err(QuiverError::PermissionDenied(_))
        ));
        assert!(a.check(&md("Bearer boss"), Caller::Admin).is_ok());
    }

    #[test]
    fn admin_only_protects_admin_actions() {
        let a = auth(&[], Some("boss"));
        assert!(a.check(&MetadataMap::new(), Caller::Reader).is_ok());
        assert!(matches!(
            a.check(&MetadataMap::new(), Caller::Admin),
            Err(QuiverError::Unauthenticated(_))
        ));
        assert!(matches!(
            a.check(&md("Bearer x"), Caller::Admin),
            Err(QuiverError::Unauthenticated(_))
        ));
    }

    #[test]
    fn basic_handshake_returns_the_token() {
        let a = auth(&["reader"], None);
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("user:reader")
        );
        assert_eq!(a.handshake(&md(&basic)).unwrap().as_deref(), Some("reader"));
        let wrong = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("user:x")
        );
        assert!(a.handshake(&md(&wrong)).is_err());
        assert!(a.handshake(&md("Basic %%%")).is_err());
        // "bob:reader" is 10 bytes: padded, its base64 ends in "==".
        let unpadded = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode("bob:reader")
        );
        assert_eq!(
            a.handshake(&md(&unpadded)).unwrap().as_deref(),
            Some("reader")
        );
    }

    #[test]
    fn peer_actions_need_the_peer_token_never_a_reader_token() {
        let a = Auth {
            peer: Some("node".into()),
            ..auth(&["reader"], Some("boss"))
        };
        assert!(a.check(&md("Bearer node"), Caller::Peer).is_ok());
        assert!(a.check(&md("Bearer boss"), Caller::Peer).is_ok());
        assert!(matches!(
            a.check(&md("Bearer reader"), Caller::Peer),
            Err(QuiverError::PermissionDenied(_))
        ));
        assert!(matches!(
            a.check(&MetadataMap::new(), Caller::Peer),
            Err(QuiverError::Unauthenticated(_))
        ));
        // The peer token reads (a node scans through its peers) but is not
        // the admin token.
        assert!(a.check(&md("Bearer node"), Caller::Reader).is_ok());
        assert!(matches!(
            a.check(&md("Bearer node"), Caller::Admin),
            Err(QuiverError::PermissionDenied(_))
        ));
        assert_eq!(a.peer_credential().as_deref(), Some("node"));

        // Reader tokens alone: no credential qualifies, so hand-off is
        // closed rather than open to every reader.
        let readers = auth(&["reader"], None);
        assert!(matches!(
            readers.check(&md("Bearer reader"), Caller::Peer),
            Err(QuiverError::PermissionDenied(_))
        ));
        assert_eq!(readers.peer_credential(), None);
        assert_eq!(readers.scan_token().as_deref(), Some("reader"));
        // Auth off: the loopback-only node lets its peers in.
        assert!(Auth::default()
            .check(&MetadataMap::new(), Caller::Peer)
            .is_ok());
    }

    #[test]
    fn constant_time_compare() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert!(!same("", "a"));
    }
}
