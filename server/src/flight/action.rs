//! Quiver's own actions: checks that the caller may run the one named,
//! runs it and streams its results, and lists them for ListActions.

use std::sync::Arc;

use arrow_flight::{Action, ActionType as FlightActionType};
use futures::stream::BoxStream;
use futures::StreamExt;
use quiver_protocol::{ActionType, Caller};
use tonic::{Request, Status};

use super::request::status;
use crate::actions;
use crate::cluster::handoff;
use crate::error::{QuiverError, Result};
use crate::node_core::NodeCore;
use crate::table_format;

/// Runs the action of `request`, whose results fail with statuses tagged
/// with `rid`.
pub(super) async fn run(
    core: Arc<NodeCore>,
    rid: String,
    request: Request<Action>,
) -> Result<BoxStream<'static, std::result::Result<arrow_flight::Result, Status>>> {
    core.auth.check(request.metadata(), Caller::Reader)?;
    let action = request.get_ref();
    let kind = ActionType::parse(&action.r#type).ok_or_else(|| {
        let known: Vec<&str> = ActionType::ALL.iter().map(|a| a.name()).collect();
        QuiverError::invalid(format!(
            "unknown action `{}`; this node knows {}",
            action.r#type,
            known.join(", ")
        ))
    })?;
    core.auth.check(request.metadata(), kind.caller())?;
    let body = &action.body;
    let results: BoxStream<'static, Result<bytes::Bytes>> = match kind {
        ActionType::Stats => one(actions::stats(&core)),
        ActionType::Health => one(actions::health(&core)),
        ActionType::ClusterShards => one(actions::cluster_shards(&core, body).await?),
        ActionType::ClusterUpdate => one(actions::cluster_update(&core, body).await?),
        ActionType::HandoffList => one(handoff::list(&core, body)?),
        ActionType::HandoffRead => handoff::read(core.clone(), body)?,
        ActionType::HandoffDone => one(handoff::done(&core, body).await?),
        ActionType::Evict => one(actions::evict(&core, body).await?),
        ActionType::Prefetch => actions::prefetch(core.clone(), body).await?,
        ActionType::RefreshCatalog => one(actions::refresh_catalog(&core).await?),
        ActionType::Warm => one(actions::warm(&core, body).await?),
        ActionType::Tables => one(table_format::tables(&core, body).await?),
        ActionType::TableSnapshot => one(table_format::snapshot(&core, body).await?),
    };
    Ok(results
        .map(move |r| match r {
            Ok(body) => Ok(arrow_flight::Result { body }),
            Err(e) => Err(status(&core, &rid, e)),
        })
        .boxed())
}

/// Quiver's own action types, with their descriptions.
pub(super) fn kinds() -> Vec<std::result::Result<FlightActionType, Status>> {
    ActionType::ALL
        .iter()
        .map(|a| {
            Ok(FlightActionType {
                r#type: a.name().to_string(),
                description: a.description().to_string(),
            })
        })
        .collect()
}

fn one(body: bytes::Bytes) -> BoxStream<'static, Result<bytes::Bytes>> {
    futures::stream::iter([Ok(body)]).boxed()
}
