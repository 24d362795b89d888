use serde::{Deserialize, Serialize};

use crate::{DeletionVector, IpcCompression};

/// What a client can follow when an object is cold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accept {
    /// Arrow record batches from a Quiver node.
    Flight,
    /// A short-lived pre-signed GET URL that the client reads itself.
    Presigned,
}

/// A scan of Parquet data: the `CMD` of a FlightDescriptor, and the ticket of
/// a DoGet.
///
/// Unknown fields are rejected so that a typo (say `colums`) is an error
/// rather than a silent full scan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Alternative to `source` + `path`: `s3://bucket/key` or `file:///dir/key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<Vec<Accept>>,
    /// Set by the server in tickets: the identity the plan was made against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Set by the server in tickets that split one object by row groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_groups: Option<Vec<usize>>,
    /// How the DoGet's IPC bodies are compressed; none when absent. Copied
    /// from a descriptor into the tickets GetFlightInfo returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<IpcCompression>,
    /// Rows of the object a table's log deletes: they are never returned.
    /// Only with a `path` naming one object; copied into its tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_vector: Option<DeletionVector>,
    /// The object is never rewritten under its path (a data file a table's
    /// log names): the node may use whatever identity it has for it,
    /// however old, instead of asking the origin again. Only with a `path`
    /// naming one object; copied into its tickets.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub immutable: bool,
}

/// The `app_metadata` of a pre-signed endpoint: which object version the URL
/// reads, so the client can check every response against `etag` and knows
/// the size without a HEAD (the URL allows GET only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresignedEndpoint {
    /// Always `presigned`.
    pub kind: String,
    pub source: String,
    pub path: String,
    pub etag: String,
    pub size: u64,
    /// Always `parquet`.
    pub format: String,
}

impl PresignedEndpoint {
    pub const KIND: &'static str = "presigned";

    pub fn new(source: &str, path: &str, etag: &str, size: u64) -> Self {
        PresignedEndpoint {
            kind: Self::KIND.into(),
            source: source.into(),
            path: path.into(),
            etag: etag.into(),
            size,
            format: "parquet".into(),
        }
    }

    /// The metadata of a pre-signed endpoint, or `None` for anything else
    /// (a Flight endpoint's app_metadata is empty).
    pub fn parse(app_metadata: &[u8]) -> Option<Self> {
        serde_json::from_slice::<Self>(app_metadata)
            .ok()
            .filter(|m| m.kind == Self::KIND)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Why bytes could not be read as a [`ScanRequest`].
#[derive(Debug, thiserror::Error)]
pub enum ScanRequestError {
    #[error("the request is not valid UTF-8")]
    NotUtf8,
    #[error("the request is not a valid scan request: {0}")]
    Json(#[from] serde_json::Error),
}

impl ScanRequest {
    /// Parses a ticket or descriptor command.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ScanRequestError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ScanRequestError::NotUtf8)?;
        Ok(serde_json::from_str(text)?)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings, numbers and enums cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The endpoint kinds the client can follow; `["flight"]` when absent so
    /// that plain Flight clients never receive a URL they cannot use.
    pub fn accepts(&self, kind: Accept) -> bool {
        match &self.accept {
            Some(kinds) => kinds.contains(&kind),
            None => kind == Accept::Flight,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_fields() {
        let json = r#"{"source":"lake","path":"t/a.parquet","columns":["x"],"filter":"x > 3","limit":10,"accept":["flight","presigned"]}"#;
        let req = ScanRequest::from_bytes(json.as_bytes()).unwrap();
        assert_eq!(req.source.as_deref(), Some("lake"));
        assert!(req.accepts(Accept::Presigned));
        assert_eq!(ScanRequest::from_bytes(&req.to_bytes()).unwrap(), req);

        let typo = r#"{"source":"lake","path":"t/a.parquet","colums":["x"]}"#;
        let err = ScanRequest::from_bytes(typo.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("colums"), "{err}");
    }

    #[test]
    fn accept_defaults_to_flight_only() {
        let req = ScanRequest::default();
        assert!(req.accepts(Accept::Flight));
        assert!(!req.accepts(Accept::Presigned));
    }

    #[test]
    fn rejects_non_utf8_and_bad_accept() {
        assert!(matches!(
            ScanRequest::from_bytes(&[0xff, 0xfe]),
            Err(ScanRequestError::NotUtf8)
        ));
        assert!(ScanRequest::from_bytes(br#"{"accept":["carrier-pigeon"]}"#).is_err());
        assert!(ScanRequest::from_bytes(br#"{"limit":-1}"#).is_err());
        assert!(ScanRequest::from_bytes(br#"{"compression":"gzip"}"#).is_err());
        let zstd = ScanRequest::from_bytes(br#"{"compression":"zstd"}"#).unwrap();
        assert_eq!(zstd.compression, Some(IpcCompression::Zstd));
    }
}
