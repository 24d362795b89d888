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

/// Turns a Flight location (`grpc://`, `grpc+tls://`) into the URL tonic
/// dials.
pub fn endpoint_url(url: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| ClientError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("it has no scheme"))?;
    let scheme = match scheme {
        "grpc" | "grpc+tcp" | "http" => "http",
        "grpc+tls" | "https" => "https",
        _ => return Err(bad("use grpc://, grpc+tls://, http:// or https://")),
    };
    if rest.is_empty() {
        return Err(bad("it has no host"));
    }
    Ok(format!("{scheme}://{rest}"))
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

#[cfg(test)]
mod tests {
    use super::endpoint_url;

    #[test]
    fn flight_locations_map_to_dial_urls() {
        assert_eq!(endpoint_url("grpc://h:1").unwrap(), "http://h:1");
        assert_eq!(endpoint_url("grpc+tls://h:1").unwrap(), "https://h:1");
        assert!(endpoint_url("h:1").is_err());
        assert!(endpoint_url("ftp://h").is_err());
        assert!(endpoint_url("grpc://").is_err());
    }
}
