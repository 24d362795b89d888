//! Flight calls straight to one node, for the workloads that start their
//! own nodes instead of a [`Rig`](crate::rig::Rig): a connection, the
//! node's `stats`, and a scan's batches.

use std::net::SocketAddr;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::{Action, FlightClient, Ticket};
use bytes::Bytes;
use futures::TryStreamExt;
use quiver_protocol::{ScanRequest, StatsReport};
use tonic::transport::Channel;

use crate::error::BoxError;

/// How long connecting to a local node may take before the run fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Flight client of the node at `addr` (the node, or its client hop).
pub async fn connect(addr: SocketAddr) -> Result<FlightClient, BoxError> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await?;
    Ok(FlightClient::new(channel))
}

/// The node's `stats` answer.
pub async fn stats(client: &mut FlightClient) -> Result<StatsReport, BoxError> {
    let out: Vec<Bytes> = client
        .do_action(Action::new("stats", Bytes::new()))
        .await?
        .try_collect()
        .await?;
    Ok(serde_json::from_slice(
        out.first().ok_or("stats returned nothing")?,
    )?)
}

/// Every batch of the node's answer to `req`.
pub async fn quiver_batches(
    client: &mut FlightClient,
    req: &ScanRequest,
) -> Result<Vec<RecordBatch>, BoxError> {
    Ok(client
        .do_get(Ticket::new(req.to_bytes()))
        .await?
        .try_collect()
        .await?)
}
