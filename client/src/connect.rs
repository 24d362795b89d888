//! Channels to nodes, with the bearer token every call carries.

use arrow_flight::FlightClient;
use tonic::transport::Channel;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad node URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The node answered with an error status.
    #[error("the node refused: {message} ({code:?})")]
    Status { code: tonic::Code, message: String },
    #[error("{0}")]
    Flight(arrow_flight::error::FlightError),
    #[error("the node sent an answer this client cannot read: {0}")]
    Decode(String),
    #[error("{0}")]
    Topology(#[from] quiver_protocol::TopologyError),
    #[error("{0}")]
    Refused(String),
}

impl From<arrow_flight::error::FlightError> for ClientError {
    fn from(e: arrow_flight::error::FlightError) -> Self {
        match e {
            arrow_flight::error::FlightError::Tonic(status) => ClientError::Status {
                code: status.code(),
                message: status.message().to_string(),
            },
            other => ClientError::Flight(other),
        }
    }
}

/// The URL tonic dials for a Flight location, or a clear error.
pub fn endpoint_url(url: &str) -> Result<String, ClientError> {
    quiver_protocol::dial_url(url).ok_or_else(|| ClientError::BadUrl {
        url: url.to_string(),
        reason: "use grpc://, grpc+tls://, http:// or https:// with a host".into(),
    })
}

/// A Flight client for `url`, sending `token` as a bearer token if given.
pub async fn flight_client(url: &str, token: Option<&str>) -> Result<FlightClient, ClientError> {
    let endpoint = endpoint_url(url)?;
    let channel = Channel::from_shared(endpoint)
        .map_err(|e| ClientError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?
        .connect()
        .await
        .map_err(|e| ClientError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let mut client = FlightClient::new(channel);
    if let Some(token) = token {
        client
            .add_header("authorization", &format!("Bearer {token}"))
            .map_err(|e| ClientError::Decode(e.to_string()))?;
    }
    Ok(client)
}
