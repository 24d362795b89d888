//! The `[auth]` section: the token files and the TLS certificate, key and
//! trusted CAs. Which tokens a cluster or a public address needs spans
//! other sections, so those checks are the whole configuration's.

use std::path::PathBuf;

use super::error::{invalid, ConfigError};
use super::section::section;

section! {
    /// Who may call the node, and its TLS identity and trust.
    pub struct AuthConfig / AuthFlags {
        /// File of bearer tokens, one per line; enables auth.
        tokens_file: Option<PathBuf> = None,
            [long = "tokens-file", env = "QUIVER_TOKENS_FILE"];
        /// File holding the admin token for prefetch and evict.
        admin_token_file: Option<PathBuf> = None,
            [long = "admin-token-file", env = "QUIVER_ADMIN_TOKEN_FILE"];
        /// File holding the token nodes present to each other (hand-off).
        ///
        /// The only one (with the admin token) hand-off and warm-ups
        /// accept; reader tokens never pass for it.
        peer_token_file: Option<PathBuf> = None,
            [long = "peer-token-file", env = "QUIVER_PEER_TOKEN_FILE"];
        /// PEM certificate chain; with --tls-key, serves TLS.
        tls_cert: Option<PathBuf> = None,
            [long = "tls-cert", env = "QUIVER_TLS_CERT"];
        /// PEM private key.
        tls_key: Option<PathBuf> = None,
            [long = "tls-key", env = "QUIVER_TLS_KEY"];
        /// PEM CA certificates trusted when calling TLS nodes (default: those of --tls-cert).
        ///
        /// Used for peers, and for this node itself for Flight SQL scans:
        /// the certificates of `tls_cert` are its issuers, or itself when
        /// it is self-signed.
        tls_ca: Option<PathBuf> = None,
            [long = "tls-ca", env = "QUIVER_TLS_CA"];
    }
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
