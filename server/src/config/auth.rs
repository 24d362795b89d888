//! The `[auth]` section: the token files and the TLS certificate, key and
//! trusted CAs. Which tokens a cluster or a public address needs spans
//! other sections, so those checks are the whole configuration's.

use std::path::PathBuf;

use serde::Deserialize;

use super::error::{invalid, ConfigError};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub tokens_file: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    /// The token every node of a cluster presents to the others for
    /// hand-off and warm-ups, and the only one (with the admin token) those
    /// actions accept. Reader tokens never pass for it.
    pub peer_token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA certificates this node trusts when it calls a `grpc+tls://` node
    /// (a peer, or itself for Flight SQL scans); default: the certificates of
    /// `tls_cert` (its issuers, or itself when it is self-signed).
    pub tls_ca: Option<PathBuf>,
}

impl AuthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid(
                "auth.tls_cert",
                "tls_cert and tls_key must be set together",
            ));
        }
        Ok(())
    }
}
