//! A planned scan: what GetFlightInfo answered, in the client's terms.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow_flight::FlightInfo;
use quiver_protocol::{PresignedEndpoint, ScanRequest};
use serde::{Deserialize, Serialize};

use crate::error::ClientError;
use crate::presigned::Presigned;

/// One part of a scan: a ticket naming one object (or a row-group range of
/// it) and the nodes that own it, primary first; or, for a cold object the
/// node sent to the origin, a pre-signed URL (then `locations` is empty and
/// the ticket is what to plan again with when the URL has expired).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ticket: ScanRequest,
    pub locations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presigned: Option<Presigned>,
}

/// The endpoints of a scan, with the projected schema they all return.
#[derive(Debug, Clone)]
pub struct Plan {
    pub schema: SchemaRef,
    pub endpoints: Vec<Endpoint>,
    /// Exact rows the endpoints return together, when the node knows it
    /// (no filter).
    pub total_records: Option<u64>,
    /// The request's row cap over all endpoints: with a filter every ticket
    /// carries the whole limit, so a reader of several must stop itself.
    pub limit: Option<u64>,
}

impl Plan {
    pub fn from_flight_info(info: FlightInfo, limit: Option<u64>) -> Result<Plan, ClientError> {
        let schema: Schema = info
            .clone()
            .try_decode_schema()
            .map_err(|e| ClientError::Decode(format!("the plan's schema: {e}")))?;
        let endpoints = info
            .endpoint
            .into_iter()
            .map(|e| {
                let ticket = e
                    .ticket
                    .ok_or_else(|| ClientError::Decode("an endpoint has no ticket".into()))?;
                let ticket = ScanRequest::from_bytes(&ticket.ticket)
                    .map_err(|err| ClientError::Decode(format!("an endpoint's ticket: {err}")))?;
                let locations: Vec<String> = e.location.into_iter().map(|l| l.uri).collect();
                let object = PresignedEndpoint::parse(&e.app_metadata);
                let url = locations
                    .iter()
                    .find(|l| l.starts_with("http://") || l.starts_with("https://"));
                Ok(match (object, url) {
                    (Some(object), Some(url)) => Endpoint {
                        ticket,
                        presigned: Some(Presigned {
                            url: url.clone(),
                            object,
                        }),
                        locations: Vec::new(),
                    },
                    _ => Endpoint {
                        ticket,
                        locations,
                        presigned: None,
                    },
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(Plan {
            schema: Arc::new(schema),
            endpoints,
            total_records: u64::try_from(info.total_records).ok(),
            limit,
        })
    }
}
