//! Reading and changing the cluster topology through a node.
//!
//! Every change is computed here from the topology the node reports, then
//! sent as a compare-and-swap against the epoch it was computed from: two
//! operators editing at once cannot overwrite each other, the later one is
//! told to re-read.

use arrow_flight::{Action, FlightClient};
use bytes::Bytes;
use futures::TryStreamExt;
use quiver_protocol::{ClusterUpdate, NodeInfo, Topology};

use crate::connect::{flight_client, ClientError, Connector};

/// Tries of one change when the topology keeps moving under it.
const MAX_ATTEMPTS: usize = 3;

pub struct AdminClient {
    client: FlightClient,
}

impl AdminClient {
    /// A client for `url` with an optional bearer token and no TLS options
    /// beyond the system roots.
    pub async fn connect(url: &str, token: Option<&str>) -> Result<AdminClient, ClientError> {
        Ok(AdminClient {
            client: flight_client(url, token).await?,
        })
    }

    /// A client for `url` with the connector's TLS trust and credentials.
    pub async fn connect_with(
        url: &str,
        connector: &Connector,
    ) -> Result<AdminClient, ClientError> {
        Ok(AdminClient {
            client: connector.flight_client(url).await?,
        })
    }

    async fn action(&mut self, kind: &str, body: Bytes) -> Result<Bytes, ClientError> {
        crate::trace_context::inject(self.client.metadata_mut());
        let results: Vec<Bytes> = self
            .client
            .do_action(Action::new(kind, body))
            .await?
            .try_collect()
            .await?;
        results
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Decode(format!("{kind} returned nothing")))
    }

    /// The topology as stored: the node re-reads the document first.
    pub async fn topology(&mut self) -> Result<Topology, ClientError> {
        let body = self
            .action(
                "cluster-shards",
                Bytes::from_static(br#"{"refresh": true}"#),
            )
            .await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Stores `topology` if the cluster is still at `expected_epoch`.
    pub async fn update(
        &mut self,
        expected_epoch: u64,
        topology: Topology,
    ) -> Result<Topology, ClientError> {
        let body = serde_json::to_vec(&ClusterUpdate {
            expected_epoch,
            topology,
        })
        .map_err(|e| ClientError::Decode(e.to_string()))?;
        let answer = self.action("cluster-update", body.into()).await?;
        serde_json::from_slice(&answer).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Writes the first topology. Refused once one exists, so `init` can
    /// never silently reshuffle a running cluster.
    pub async fn init(
        &mut self,
        nodes: Vec<NodeInfo>,
        replication: usize,
    ) -> Result<Topology, ClientError> {
        let current = self.topology().await?;
        if current.epoch > 0 {
            return Err(ClientError::Refused(format!(
                "the cluster is already initialised (epoch {}); use add-node, remove-node or rebalance",
                current.epoch
            )));
        }
        let t = Topology::initial(nodes, replication)?;
        self.update(0, t).await
    }

    /// Applies `change` to the current topology and stores the result.
    ///
    /// If the topology moved on meanwhile (another operator, or a node that
    /// had not yet re-read the document), the change is computed again from
    /// the newer topology, as the operator re-running it would: each change
    /// states an intent ("n4 is a member", "slots are even") rather than a
    /// diff, so re-applying it is safe.
    pub async fn change(
        &mut self,
        change: impl Fn(&Topology) -> Result<Topology, quiver_protocol::TopologyError>,
    ) -> Result<(Topology, Topology), ClientError> {
        let mut attempts = 0;
        loop {
            let before = self.topology().await?;
            if before.epoch == 0 {
                return Err(ClientError::Refused(
                    "the cluster has no topology yet; run `quiver cluster init` first".into(),
                ));
            }
            let after = change(&before)?;
            match self.update(before.epoch, after).await {
                Ok(stored) => return Ok((before, stored)),
                Err(ClientError::Status { code, message, .. })
                    if code == tonic::Code::FailedPrecondition
                        && message.starts_with("EPOCH ")
                        && attempts < MAX_ATTEMPTS =>
                {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
