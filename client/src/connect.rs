//! Channels to nodes: the URL schemes of `docs/protocol.md` §5, TLS for
//! `grpc+tls://` and `https://` (a CA file, or the system's roots), and the
//! credentials every call carries.

use std::path::PathBuf;
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightClient, HandshakeRequest};
use base64::Engine;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

pub use crate::error::ClientError;
use crate::tls::CaFileVerifier;

/// How long dialling a node may take before the next owner is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a Basic handshake may take: a node that accepts the connection
/// but never answers must not hang the client.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP/2 pings on idle connections, so a node that vanished is noticed
/// without waiting for a read to time out.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// How a client proves who it is. With auth off on the node, `None`.
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    None,
    /// `authorization: Bearer <token>` on every call.
    Bearer(String),
    /// Flight Handshake with `authorization: Basic base64(user:password)`;
    /// the node answers with the bearer token later calls carry.
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Credentials {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
        }
    }
}

/// TLS trust for `grpc+tls://` and `https://` nodes.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// A PEM file of CA certificates to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
}

/// Everything needed to open channels to the nodes of one cluster.
#[derive(Debug, Clone, Default)]
pub struct Connector {
    pub tls: Tls,
    pub credentials: Credentials,
}

/// The URL tonic dials for a Flight location, or a clear error.
pub fn endpoint_url(url: &str) -> Result<String, ClientError> {
    quiver_protocol::dial_url(url).ok_or_else(|| ClientError::BadUrl {
        url: url.to_string(),
        reason: "use grpc://, grpc+tls://, http:// or https:// with a host".into(),
    })
}

fn is_tls(url: &str) -> bool {
    url.starts_with("grpc+tls://") || url.starts_with("https://")
}

impl Connector {
    /// `endpoint` speaking TLS to `url`: nodes' certificates are checked
    /// against the CA file when one is given (by [`CaFileVerifier`], which
    /// says what to do about a CA certificate served as a node's own), else
    /// against the system's roots.
    fn secure(&self, endpoint: Endpoint, url: &str) -> Result<Endpoint, ClientError> {
        let failed = |e: tonic::transport::Error| ClientError::Tls(format!("{url}: {e}"));
        match &self.tls.ca_file {
            Some(path) => endpoint
                .tls_config_with_verifier(ClientTlsConfig::new(), CaFileVerifier::from_file(path)?)
                .map_err(failed),
            None => endpoint
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(failed),
        }
    }

    /// A channel to `url` that connects on first use, with TLS when the URL
    /// asks for it. A CA file given for a plain `grpc://` URL is an error,
    /// so a typo never silently sends tokens in clear text.
    pub fn channel(&self, url: &str) -> Result<Channel, ClientError> {
        crate::tls::use_ring_provider();
        let mut endpoint = Endpoint::from_shared(endpoint_url(url)?)
            .map_err(|e| ClientError::BadUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .tcp_keepalive(Some(KEEPALIVE));
        if is_tls(url) {
            endpoint = self.secure(endpoint, url)?;
        } else if self.tls.ca_file.is_some() {
            return Err(ClientError::Tls(format!(
                "a CA file was given but {url} is not a TLS URL; use grpc+tls://"
            )));
        }
        Ok(endpoint.connect_lazy())
    }

    /// The bearer token calls carry: the configured one, or the one a Basic
    /// handshake with `url` returns.
    pub async fn token(&self, url: &str) -> Result<Option<String>, ClientError> {
        match &self.credentials {
            Credentials::None => Ok(None),
            Credentials::Bearer(t) => Ok(Some(t.clone())),
            Credentials::Basic { user, password } => {
                let handshake = handshake_basic(self.channel(url)?, user, password);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(token) => token.map(Some).map_err(|e| e.at(url)),
                    Err(_) => Err(ClientError::Connect {
                        url: url.to_string(),
                        reason: format!("the handshake got no answer within {HANDSHAKE_TIMEOUT:?}"),
                    }),
                }
            }
        }
    }

    /// A Flight client for `url` that sends the credentials.
    pub async fn flight_client(&self, url: &str) -> Result<FlightClient, ClientError> {
        let token = self.token(url).await?;
        flight_client_with(self.channel(url)?, token.as_deref())
    }
}

/// A Flight client on `channel` sending `token` as a bearer token and the
/// current trace context.
pub fn flight_client_with(
    channel: Channel,
    token: Option<&str>,
) -> Result<FlightClient, ClientError> {
    let mut client = FlightClient::new(channel);
    crate::trace_context::inject(client.metadata_mut());
    if let Some(token) = token {
        client
            .add_header("authorization", &format!("Bearer {token}"))
            .map_err(|_| ClientError::Refused("the token is not valid header text".into()))?;
    }
    Ok(client)
}

/// Flight Handshake with Basic credentials; returns the bearer token the
/// node answers with (in the `authorization` header, else the payload).
pub async fn handshake_basic(
    channel: Channel,
    user: &str,
    password: &str,
) -> Result<String, ClientError> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut request = tonic::Request::new(futures::stream::iter([HandshakeRequest::default()]));
    let value = format!("Basic {basic}")
        .parse()
        .map_err(|_| ClientError::Refused("the credentials are not valid header text".into()))?;
    request.metadata_mut().insert("authorization", value);
    let mut client = FlightServiceClient::new(channel);
    let response = client.handshake(request).await?;
    let header = response
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(String::from);
    if let Some(token) = header {
        return Ok(token);
    }
    let mut stream = response.into_inner();
    match stream.message().await? {
        Some(reply) if !reply.payload.is_empty() => String::from_utf8(reply.payload.to_vec())
            .map_err(|_| ClientError::Decode("the handshake token is not UTF-8".into())),
        _ => Err(ClientError::Decode(
            "the handshake returned no bearer token".into(),
        )),
    }
}

/// A Flight client for `url` with an optional bearer token and no TLS
/// options beyond the system roots.
pub async fn flight_client(url: &str, token: Option<&str>) -> Result<FlightClient, ClientError> {
    let connector = Connector {
        credentials: token
            .map(|t| Credentials::Bearer(t.to_string()))
            .unwrap_or_default(),
        ..Default::default()
    };
    connector.flight_client(url).await
}
