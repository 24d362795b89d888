//! `quiver cert`: the certificates a TLS cluster needs, without openssl.
//!
//! `create-ca` makes the cluster's CA; `create-node` makes a node's
//! certificate signed by it, for the names and addresses peers and clients
//! dial. Keys are ECDSA P-256, written 0600; every file is written whole
//! (a temporary file renamed into place) and an existing one is only
//! replaced with `--overwrite`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use quiver_client::ClientError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;

use super::secret_file::{write_all, Mode, Output};

/// How long before now a certificate starts to be valid, so a node whose
/// clock is a little behind the one that made it accepts it at once.
const BACKDATE: time::Duration = time::Duration::hours(1);

/// Longest validity accepted, in days (about a century).
const MAX_DAYS: u32 = 36_500;

#[derive(Subcommand, Clone, Debug)]
pub enum CertOp {
    /// Create the cluster's CA: DIR/ca.pem (give it to every node and
    /// client as the CA file) and its key (keep it off the nodes).
    #[command(
        after_help = "Example:\n  quiver cert create-ca --certs-dir certs --ca-key safe/ca.key"
    )]
    CreateCa {
        /// Directory the CA certificate is written to.
        #[arg(long, default_value = "certs")]
        certs_dir: PathBuf,
        /// The CA's private key (default: CERTS_DIR/ca.key).
        #[arg(long)]
        ca_key: Option<PathBuf>,
        /// Days the CA is valid.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Replace files that already exist.
        #[arg(long)]
        overwrite: bool,
    },
    /// Create a node's certificate, signed by the CA: DIR/NAME.pem (the
    /// node's certificate, then the CA's) and DIR/NAME.key, for the node's
    /// tls_cert and tls_key. The same certificate serves clients and peers.
    #[command(
        after_help = "Example:\n  quiver cert create-node --certs-dir certs --ca-key safe/ca.key --host node1.internal --ip 10.0.0.1"
    )]
    CreateNode {
        /// Directory holding ca.pem, where the node's files are written.
        #[arg(long, default_value = "certs")]
        certs_dir: PathBuf,
        /// The CA's private key (default: CERTS_DIR/ca.key).
        #[arg(long)]
        ca_key: Option<PathBuf>,
        /// A DNS name clients and peers reach the node at (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// An IP address clients and peers reach the node at (repeatable).
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// Also name localhost and 127.0.0.1 (nodes and clients on one
        /// machine).
        #[arg(long)]
        localhost: bool,
        /// Base name of the files written.
        #[arg(long, default_value = "node")]
        name: String,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Replace files that already exist.
        #[arg(long)]
        overwrite: bool,
    },
}

fn refused(message: impl Into<String>) -> ClientError {
    ClientError::Refused(message.into())
}

fn rcgen_failed(what: &str) -> impl Fn(rcgen::Error) -> ClientError + '_ {
    move |e| refused(format!("{what}: {e}"))
}

pub fn run(op: CertOp) -> Result<(), ClientError> {
    match op {
        CertOp::CreateCa {
            certs_dir,
            ca_key,
            days,
            overwrite,
        } => {
            let key_path = ca_key.unwrap_or_else(|| certs_dir.join("ca.key"));
            let cert_path = certs_dir.join("ca.pem");
            let (cert, key, until) = create_ca(days)?;
            write_all(
                &[
                    Output::new(&key_path, &key, Mode::Secret),
                    Output::new(&cert_path, &cert, Mode::Public),
                ],
                overwrite,
            )?;
            println!(
                "Wrote the CA certificate {} (valid until {until}) and its key {}.\n\
                 Give ca.pem to every node (auth.tls_ca) and client (--tls-ca); keep the key off the nodes.",
                cert_path.display(),
                key_path.display()
            );
            Ok(())
        }
        CertOp::CreateNode {
            certs_dir,
            ca_key,
            hosts,
            ips,
            localhost,
            name,
            days,
            overwrite,
        } => {
            let names = Names::new(hosts, ips, localhost)?;
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(refused(format!(
                    "--name `{name}` must be a plain file name"
                )));
            }
            let key_path = ca_key.unwrap_or_else(|| certs_dir.join("ca.key"));
            let ca_pem = read(&certs_dir.join("ca.pem"))?;
            let ca_key = read(&key_path)?;
            let (chain, key, until) = create_node(&ca_pem, &ca_key, &names, days)?;
            let cert_path = certs_dir.join(format!("{name}.pem"));
            let node_key = certs_dir.join(format!("{name}.key"));
            write_all(
                &[
                    Output::new(&node_key, &key, Mode::Secret),
                    Output::new(&cert_path, &chain, Mode::Public),
                ],
                overwrite,
            )?;
            println!(
                "Wrote {} (for {}, valid until {until}) and its key {}.\n\
                 Set them as the node's auth.tls_cert and auth.tls_key, and auth.tls_ca to {}.",
                cert_path.display(),
                names.shown(),
                node_key.display(),
                certs_dir.join("ca.pem").display()
            );
            Ok(())
        }
    }
}

fn read(path: &Path) -> Result<String, ClientError> {
    std::fs::read_to_string(path).map_err(|e| {
        refused(format!(
            "cannot read {}: {e} (create the CA first with `quiver cert create-ca`)",
            path.display()
        ))
    })
}

/// The names a node certificate is for.
#[derive(Debug)]
struct Names {
    hosts: Vec<String>,
    ips: Vec<IpAddr>,
}

impl Names {
    fn new(
        hosts: Vec<String>,
        mut ips: Vec<IpAddr>,
        localhost: bool,
    ) -> Result<Names, ClientError> {
        let mut dns = Vec::new();
        for host in hosts {
            let host = host.trim().to_string();
            // An address given as a host is what the user meant by --ip.
            match host.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) if is_dns_name(&host) => dns.push(host),
                Err(_) => {
                    return Err(refused(format!(
                        "--host `{host}` is not a DNS name (letters, digits, - and . ; a leading *. for a wildcard)"
                    )))
                }
            }
        }
        if localhost {
            dns.push("localhost".into());
            ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        dns.dedup();
        ips.dedup();
        if dns.is_empty() && ips.is_empty() {
            return Err(refused(
                "a node certificate needs the names it is reached at: give --host NAME and/or --ip ADDR (--localhost for one machine)",
            ));
        }
        Ok(Names { hosts: dns, ips })
    }

    fn shown(&self) -> String {
        self.hosts
            .iter()
            .cloned()
            .chain(self.ips.iter().map(IpAddr::to_string))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn is_dns_name(host: &str) -> bool {
    let host = host.strip_prefix("*.").unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// From an hour ago to `days` from now, and the last day shown to the user.
fn validity(params: &mut CertificateParams, days: u32) -> Result<time::Date, ClientError> {
    if days == 0 || days > MAX_DAYS {
        return Err(refused(format!("--days must be between 1 and {MAX_DAYS}")));
    }
    let now = OffsetDateTime::now_utc();
    let until = now
        .checked_add(time::Duration::days(i64::from(days)))
        .ok_or_else(|| refused("--days is too large"))?;
    params.not_before = now - BACKDATE;
    params.not_after = until;
    Ok(until.date())
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Quiver");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A new CA: its certificate and key (PEM), and its last valid day.
fn create_ca(days: u32) -> Result<(String, String, time::Date), ClientError> {
    let key = KeyPair::generate().map_err(rcgen_failed("generating the CA key"))?;
    let mut params = CertificateParams::default();
    let until = validity(&mut params, days)?;
    params.distinguished_name = subject("Quiver CA");
    // Signs node certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_failed("signing the CA certificate"))?;
    Ok((cert.pem(), key.serialize_pem(), until))
}

/// A node certificate signed by the CA (`ca_pem`, `ca_key_pem`): the
/// certificate followed by the CA file (so a node given no tls_ca trusts
/// peers signed by the same CA), its key, and its last valid day.
fn create_node(
    ca_pem: &str,
    ca_key_pem: &str,
    names: &Names,
    days: u32,
) -> Result<(String, String, time::Date), ClientError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)
        .map_err(|e| refused(format!("the CA key is not a usable PEM private key: {e}")))?;
    check_ca(ca_pem, &ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)
        .map_err(|e| refused(format!("the CA certificate cannot be read: {e}")))?;
    let mut params = CertificateParams::default();
    let until = validity(&mut params, days)?;
    let common_name = names
        .hosts
        .first()
        .cloned()
        .or_else(|| names.ips.first().map(IpAddr::to_string))
        .unwrap_or_default();
    params.distinguished_name = subject(&common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Serves clients and peers; clientAuth lets the same pair be a
    // client certificate should a peer ever be asked for one.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    for host in &names.hosts {
        let name = host
            .as_str()
            .try_into()
            .map_err(|e| refused(format!("--host `{host}`: {e}")))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params
        .subject_alt_names
        .extend(names.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let key = KeyPair::generate().map_err(rcgen_failed("generating the node key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(rcgen_failed("signing the node certificate"))?;
    let chain = format!("{}{}\n", cert.pem(), ca_pem.trim_end());
    Ok((chain, key.serialize_pem(), until))
}

/// The CA file must hold a CA certificate for `key`: signing with another
/// key, or as a certificate that is no CA, makes certificates no one
/// accepts, found only when a node cannot be reached.
fn check_ca(ca_pem: &str, key: &KeyPair) -> Result<(), ClientError> {
    let der = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| refused(format!("the CA file holds no PEM certificate ({e})")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| refused(format!("the CA certificate cannot be read: {e}")))?;
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if !is_ca {
        return Err(refused(
            "the CA file's certificate is not a CA certificate (basicConstraints CA:TRUE)",
        ));
    }
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(refused(
            "the CA key is not the key of the CA certificate; give the key `quiver cert create-ca` wrote with it",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    fn names() -> Names {
        Names::new(
            vec!["node1.internal".into(), "10.0.0.7".into()],
            vec!["10.0.0.1".parse().unwrap()],
            false,
        )
        .unwrap()
    }

    #[test]
    fn node_certificates_verify_against_the_ca_for_their_names_only() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, ca_key, _) = create_ca(10).unwrap();
        let (chain, _, until) = create_node(&ca, &ca_key, &names(), 30).unwrap();
        assert!(until > OffsetDateTime::now_utc().date());
        std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
        let verifier =
            quiver_client::tls::CaFileVerifier::from_file(&dir.path().join("ca.pem")).unwrap();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(certs.len(), 2, "the node's certificate, then the CA's");
        let verify = |name: &str| {
            verifier.verify_server_cert(
                &certs[0],
                &certs[1..],
                &ServerName::try_from(name.to_string()).unwrap(),
                &[],
                UnixTime::now(),
            )
        };
        for ok in ["node1.internal", "10.0.0.1", "10.0.0.7"] {
            verify(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for not in ["localhost", "127.0.0.1", "node2.internal"] {
            assert!(verify(not).is_err(), "{not}");
        }
    }

    #[test]
    fn a_node_certificate_needs_the_ca_s_own_key_and_a_name() {
        let (ca, _, _) = create_ca(10).unwrap();
        let (_, other_key, _) = create_ca(10).unwrap();
        let err = create_node(&ca, &other_key, &names(), 30).unwrap_err();
        assert!(err.to_string().contains("not the key of the CA"), "{err}");
        let err = Names::new(vec![], vec![], false).unwrap_err();
        assert!(err.to_string().contains("--host NAME"), "{err}");
        assert!(Names::new(vec!["bad name".into()], vec![], false).is_err());
        let local = Names::new(vec![], vec![], true).unwrap();
        assert_eq!(local.shown(), "localhost, 127.0.0.1");
        let mut params = CertificateParams::default();
        assert!(validity(&mut params, 0).is_err());
        assert!(validity(&mut params, MAX_DAYS + 1).is_err());
    }

    #[test]
    fn a_leaf_certificate_cannot_sign_nodes() {
        let (ca, ca_key, _) = create_ca(10).unwrap();
        let (chain, key, _) = create_node(&ca, &ca_key, &names(), 30).unwrap();
        let err = create_node(&chain, &key, &names(), 30).unwrap_err();
        assert!(err.to_string().contains("not a CA certificate"), "{err}");
    }
}
