//! How a node's certificate is checked against a CA file: rustls's WebPKI
//! verifier, unchanged, except that one refusal is explained.
//!
//! `openssl req -x509`, the usual one-line self-signed certificate, marks
//! its certificate as a CA (`basicConstraints CA:TRUE`). Served by a node
//! and trusted as the CA file, it is refused by WebPKI as a CA used as an
//! end entity, and rustls reports only `CaUsedAsEndEntity`. Quiver does not
//! relax the check; it replaces that report with what to do instead, for
//! the CLI, the Rust client and the nodes' calls to their peers alike (they
//! all dial through [`crate::Connector`]).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

use crate::error::ClientError;

/// What a client or a peer is told when a node serves a CA certificate as
/// its own.
pub const CA_SERVED_AS_NODE: &str = "the node's certificate is a CA certificate \
(basicConstraints CA:TRUE), as `openssl req -x509` makes by default, and Quiver's clients \
and peers do not accept a CA certificate as a node's own: make a CA and node certificates \
with `quiver cert create-ca` and `quiver cert create-node --host NAME --ip ADDR`, or add \
`-addext basicConstraints=critical,CA:FALSE` to the openssl command";

/// The refusal of a CA certificate served as a node's, in words.
#[derive(Debug)]
struct CaServedAsNode;

impl fmt::Display for CaServedAsNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(CA_SERVED_AS_NODE)
    }
}

impl std::error::Error for CaServedAsNode {}

/// WebPKI verification against the certificates of one CA file.
#[derive(Debug)]
pub struct CaFileVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl CaFileVerifier {
    /// A verifier trusting every certificate in the PEM file at `path`.
    /// A file without a certificate is refused here rather than failing
    /// every handshake later.
    pub fn from_file(path: &Path) -> Result<Arc<CaFileVerifier>, ClientError> {
        let pem = std::fs::read(path).map_err(|e| {
            ClientError::Tls(format!("cannot read the CA file {}: {e}", path.display()))
        })?;
        let bad =
            |reason: String| ClientError::Tls(format!("the CA file {}: {reason}", path.display()));
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| bad(format!("not PEM certificates ({e})")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("a certificate cannot be used: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad("holds no PEM certificate".into()));
        }
        // The provider tonic's connector uses, so both sides of the
        // handshake agree on the signature schemes.
        let provider = CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Arc::new(CaFileVerifier { inner }))
    }
}

/// `CaUsedAsEndEntity` from WebPKI becomes [`CA_SERVED_AS_NODE`]; every
/// other error is passed on as it is.
fn explain(err: rustls::Error) -> rustls::Error {
    let ca_as_node = matches!(
        &err,
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner)))
            if matches!(
                inner.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            )
    );
    if ca_as_node {
        rustls::Error::Other(OtherError(Arc::new(CaServedAsNode)))
    } else {
        err
    }
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(explain)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Makes ring, tonic's TLS backend, the process's rustls provider unless
/// one is set already. A process that also links aws-lc-rs (the node does:
/// `deltalake-core`'s HTTP client enables it) has two, and rustls then
/// refuses to choose, so every TLS configuration built without a provider
/// of its own (tonic's, object_store's) would panic. Cheap and idempotent:
/// called wherever a process may first use TLS.
pub fn use_ring_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why the first certificate of `cert_pem` (a node's `tls_cert`) will be
/// refused by clients and peers, when it is because it is a CA
/// certificate. A node logs it at start-up, before any peer tries.
pub fn served_certificate_problem(cert_pem: &[u8]) -> Option<&'static str> {
    let first = CertificateDer::pem_slice_iter(cert_pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&first).ok()?;
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => Some(CA_SERVED_AS_NODE),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `localhost` whose subject (and so
    /// issuer) is `common_name`.
    fn self_signed(ca: bool, common_name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.is_ca = if ca {
            rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
        } else {
            rcgen::IsCa::ExplicitNoCa
        };
        (params.self_signed(&key).unwrap(), key)
    }

    fn verify(ca_file: &Path, cert: &rcgen::Certificate) -> Result<(), rustls::Error> {
        let verifier = CaFileVerifier::from_file(ca_file).unwrap();
        verifier
            .verify_server_cert(
                cert.der(),
                &[],
                &ServerName::try_from("localhost").unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn a_pinned_ca_certificate_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let (ca_cert, _) = self_signed(true, "ca");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca_cert.pem()).unwrap();
        let err = verify(&path, &ca_cert).unwrap_err();
        assert_eq!(err.to_string(), format!("other error: {CA_SERVED_AS_NODE}"));
        assert_eq!(
            served_certificate_problem(ca_cert.pem().as_bytes()),
            Some(CA_SERVED_AS_NODE)
        );

        // Self-signed without CA:TRUE, pinned: accepted as WebPKI does.
        let (leaf, _) = self_signed(false, "leaf");
        std::fs::write(&path, leaf.pem()).unwrap();
        verify(&path, &leaf).unwrap();
        assert_eq!(served_certificate_problem(leaf.pem().as_bytes()), None);

        // Other refusals keep rustls's own words: an issuer the CA file
        // does not hold.
        let (other, _) = self_signed(false, "other");
        let err = verify(&path, &other).unwrap_err().to_string();
        assert!(err.contains("UnknownIssuer"), "{err}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = CaFileVerifier::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = CaFileVerifier::from_file(&missing).unwrap_err().to_string();
        assert!(err.contains("cannot read the CA file"), "{err}");
    }
}
