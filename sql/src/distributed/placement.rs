//! Where the scans of a distributed plan run: each Quiver scan is split
//! into one part per worker that owns its endpoints' slots (every endpoint
//! in exactly one part, so every row is read once), and the task reading a
//! part is sent to that worker, so the scan reads the node's own cache
//! with no network hop.
//!
//! These are DataFusion-distributed's three planning events for a leaf:
//! how many tasks it wants ([`desired`]), how its work is split among the
//! tasks it is given ([`scale_up`]), and where each task runs ([`route`],
//! asked again just before execution, with the workers reachable then).

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::Result as DfResult;
use datafusion::physical_plan::{displayable, ExecutionPlan};
use datafusion::prelude::SessionConfig;
use datafusion_distributed::{
    DesiredTaskCountEvent, DesiredTaskCountEventResponse, DistributedGetterExt,
    DistributedLeafExec, RouteTasksEvent, RouteTasksEventResponse, ScaleUpLeafNodeEvent,
    ScaleUpLeafNodeEventResponse,
};
use quiver_client::exec::as_quiver_scan;
use quiver_client::Endpoint;
use url::Url;

use super::mode::DistributedMode;
use super::workers::worker_url;

/// The workers `config`'s resolver names now, sorted.
fn workers(config: &SessionConfig) -> Vec<Url> {
    let mut urls = config
        .get_distributed_worker_resolver()
        .and_then(|r| r.get_urls())
        .unwrap_or_default();
    urls.sort();
    urls.dedup();
    urls
}

/// The indexes in `workers` of the nodes `endpoint` names as owners.
fn owners(endpoint: &Endpoint, workers: &[Url]) -> Vec<usize> {
    endpoint
        .locations
        .iter()
        .filter_map(|l| worker_url(l))
        .filter_map(|u| workers.iter().position(|w| *w == u))
        .collect()
}

/// `endpoints` grouped by the worker that should read them, as (index in
/// `workers`, endpoints) in the order of `workers`, non-empty groups only.
/// An endpoint goes to its first reachable owner, or with `spread` to the
/// reachable owner with the fewest endpoints so far; one with no reachable
/// owner to the least loaded worker (its reader fails over to the slot's
/// last resorts).
pub(crate) fn assign(
    endpoints: &[Endpoint],
    workers: &[Url],
    spread: bool,
) -> Vec<(usize, Vec<Endpoint>)> {
    let mut groups: Vec<Vec<Endpoint>> = vec![Vec::new(); workers.len()];
    if workers.is_empty() {
        return Vec::new();
    }
    let least_loaded = |groups: &[Vec<Endpoint>], among: &[usize]| {
        among
            .iter()
            .copied()
            .min_by_key(|&i| groups.get(i).map_or(usize::MAX, Vec::len))
    };
    let all: Vec<usize> = (0..workers.len()).collect();
    for e in endpoints {
        let owners = owners(e, workers);
        let to = match (owners.first(), spread) {
            (Some(&first), false) => Some(first),
            (Some(_), true) => least_loaded(&groups, &owners),
            (None, _) => least_loaded(&groups, &all),
        };
        if let Some(group) = to.and_then(|i| groups.get_mut(i)) {
            group.push(e.clone());
        }
    }
    groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
        .collect()
}

/// A Quiver scan wants one task per worker that will read a part of it.
pub(crate) fn desired(
    ev: DesiredTaskCountEvent,
    mode: DistributedMode,
) -> Option<DfResult<DesiredTaskCountEventResponse>> {
    let scan = as_quiver_scan(ev.plan.as_ref())?;
    let groups = assign(
        &scan.spec().endpoints,
        &workers(ev.session_config),
        mode == DistributedMode::On,
    );
    Some(Ok(DesiredTaskCountEventResponse::desired(
        groups.len().max(1),
    )))
}

/// Splits a Quiver scan into `task_count` parts, group by group (more
/// groups than tasks share tasks); every part has as many partitions, as
/// the distributed plan requires, the shorter ones padded with empty ones.
pub(crate) fn scale_up(
    ev: ScaleUpLeafNodeEvent,
    mode: DistributedMode,
) -> Option<DfResult<ScaleUpLeafNodeEventResponse>> {
    let scan = as_quiver_scan(ev.plan.as_ref())?;
    let tasks = ev.task_count.max(1);
    let groups = assign(
        &scan.spec().endpoints,
        &workers(ev.session_config),
        mode == DistributedMode::On,
    );
    let mut parts: Vec<Vec<Endpoint>> = vec![Vec::new(); tasks];
    for (k, (_, endpoints)) in groups.into_iter().enumerate() {
        if let Some(part) = parts.get_mut(k % tasks) {
            part.extend(endpoints);
        }
    }
    // With no worker to group by, one task reads every endpoint: an
    // endpoint in no part would be a row never read.
    let placed: usize = parts.iter().map(Vec::len).sum();
    if placed != scan.spec().endpoints.len() {
        parts = vec![Vec::new(); tasks];
        if let Some(first) = parts.first_mut() {
            first.clone_from(&scan.spec().endpoints);
        }
    }
    let partitions = parts.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let variants: Vec<Arc<dyn ExecutionPlan>> = parts
        .into_iter()
        .map(|endpoints| Arc::new(scan.part(endpoints, partitions)) as Arc<dyn ExecutionPlan>)
        .collect();
    Some(
        DistributedLeafExec::try_new(Arc::clone(ev.plan), variants)
            .map(|leaf| ScaleUpLeafNodeEventResponse::new(Arc::new(leaf))),
    )
}

/// The worker each part is read on, by task: among the workers owning the
/// most of the part's endpoints (normally all of them: its primary and
/// replicas), the one given the fewest parts so far, so parts whose slots
/// share owners still go to different nodes, and of those the primary of
/// the most endpoints, whose cache holds them; an empty part goes round
/// the workers. `None` with no workers.
fn place(parts: &[Vec<Endpoint>], workers: &[Url]) -> Option<Vec<Url>> {
    if workers.is_empty() {
        return None;
    }
    let mut load = vec![0usize; workers.len()];
    let mut placed = Vec::with_capacity(parts.len());
    for (task, part) in parts.iter().enumerate() {
        let mut held = vec![0usize; workers.len()];
        let mut primary = vec![0usize; workers.len()];
        for e in part {
            let owners = owners(e, workers);
            if let Some(n) = owners.first().and_then(|&i| primary.get_mut(i)) {
                *n += 1;
            }
            for i in owners {
                if let Some(n) = held.get_mut(i) {
                    *n += 1;
                }
            }
        }
        let most = held.iter().copied().max().unwrap_or(0);
        let best = if most == 0 {
            task % workers.len()
        } else {
            (0..workers.len())
                .filter(|&i| held.get(i) == Some(&most))
                .min_by_key(|&i| {
                    (
                        load.get(i).copied().unwrap_or(usize::MAX),
                        std::cmp::Reverse(primary.get(i).copied().unwrap_or(0)),
                        i,
                    )
                })?
        };
        if let Some(n) = load.get_mut(best) {
            *n += 1;
        }
        placed.push(workers.get(best)?.clone());
    }
    Some(placed)
}

/// The endpoints each part of a scan reads.
fn endpoints(parts: &[Arc<dyn ExecutionPlan>]) -> Vec<Vec<Endpoint>> {
    parts
        .iter()
        .map(|p| as_quiver_scan(p.as_ref()).map_or_else(Vec::new, |s| s.spec().endpoints.clone()))
        .collect()
}

/// For EXPLAIN: each Quiver scan task of `plan` with the worker it is sent
/// to, one line per task (`t<n>` as the plan shows it).
pub(crate) fn readers(plan: &Arc<dyn ExecutionPlan>, config: &SessionConfig) -> DfResult<String> {
    let workers = workers(config);
    let mut lines = String::new();
    plan.apply(|node| {
        if let Some(leaf) = node.downcast_ref::<DistributedLeafExec>() {
            if as_quiver_scan(leaf.original().as_ref()).is_some() {
                lines.push_str(&displayable(leaf.original().as_ref()).one_line().to_string());
                let parts = endpoints(leaf.variants());
                let placed = place(&parts, &workers).unwrap_or_default();
                for (task, part) in parts.iter().enumerate() {
                    let at = placed
                        .get(task)
                        .map_or_else(|| "no worker".to_string(), |u| u.to_string());
                    lines.push_str(&format!("  t{task}: {} endpoints on {at}\n", part.len()));
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(lines)
}

/// Sends each task of a stage that reads a Quiver scan to a reachable owner
/// of its part's endpoints ([`place`]); stages without one are left to the
/// default.
pub(crate) fn route(ev: RouteTasksEvent) -> Option<DfResult<RouteTasksEventResponse>> {
    let workers = workers(ev.task_ctx.session_config());
    if workers.is_empty() {
        return None;
    }
    let mut parts: Option<Vec<Arc<dyn ExecutionPlan>>> = None;
    let found = ev.plan.apply(|node| {
        if let Some(leaf) = node.downcast_ref::<DistributedLeafExec>() {
            if as_quiver_scan(leaf.original().as_ref()).is_some() {
                parts = Some(leaf.variants().to_vec());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if let Err(e) = found {
        return Some(Err(e));
    }
    let parts = parts.filter(|p| p.len() == ev.task_count)?;
    let urls = place(&endpoints(&parts), &workers)?;
    Some(Ok(RouteTasksEventResponse::new(urls)))
}

#[cfg(test)]
mod tests {
    use quiver_protocol::ScanRequest;

    use super::*;

    fn endpoint(path: &str, locations: &[&str]) -> Endpoint {
        Endpoint {
            ticket: ScanRequest {
                path: Some(path.into()),
                ..Default::default()
            },
            locations: locations.iter().map(|l| l.to_string()).collect(),
            presigned: None,
        }
    }

    fn paths(group: &[Endpoint]) -> Vec<&str> {
        group
            .iter()
            .filter_map(|e| e.ticket.path.as_deref())
            .collect()
    }

    #[test]
    fn every_endpoint_is_in_exactly_one_group_of_a_reachable_owner() {
        let (a, b, c) = (
            "grpc://10.0.0.1:1",
            "grpc://10.0.0.2:1",
            "grpc://10.0.0.3:1",
        );
        let workers: Vec<Url> = [a, b, c].iter().map(|u| Url::parse(u).unwrap()).collect();
        let endpoints = vec![
            endpoint("p0", &[a, b]),
            endpoint("p1", &[a, c]),
            endpoint("p2", &[b, c]),
            endpoint("p3", &[a, b]),
            // Its owners are gone: any worker reads it, failing over.
            endpoint("p4", &["grpc://10.0.0.9:1"]),
        ];
        let primaries = assign(&endpoints, &workers, false);
        let flat: Vec<(usize, Vec<&str>)> = primaries.iter().map(|(i, g)| (*i, paths(g))).collect();
        assert_eq!(
            flat,
            vec![
                (0, vec!["p0", "p1", "p3"]),
                (1, vec!["p2"]),
                (2, vec!["p4"])
            ]
        );
        // Spread: replicas take some, each endpoint still once and only
        // with an owner.
        let spread = assign(&endpoints, &workers, true);
        let mut all: Vec<&str> = spread.iter().flat_map(|(_, g)| paths(g)).collect();
        all.sort();
        assert_eq!(all, vec!["p0", "p1", "p2", "p3", "p4"]);
        for (i, g) in &spread {
            for e in g.iter().filter(|e| e.ticket.path.as_deref() != Some("p4")) {
                assert!(owners(e, &workers).contains(i), "{e:?} on {i}");
            }
        }
        assert_eq!(spread.len(), 3, "{spread:?}");
        assert!(assign(&endpoints, &[], true).is_empty());
    }

    #[test]
    fn parts_sharing_owners_go_to_different_owners() {
        let (a, b, c) = (
            "grpc://10.0.0.1:1",
            "grpc://10.0.0.2:1",
            "grpc://10.0.0.3:1",
        );
        let workers: Vec<Url> = [a, b, c].iter().map(|u| Url::parse(u).unwrap()).collect();
        // Each part's slots are owned by two nodes (replication 2); the
        // first two parts share both owners.
        let parts = vec![
            vec![endpoint("p0", &[a, b]), endpoint("p1", &[a, b])],
            vec![endpoint("p2", &[a, b])],
            vec![endpoint("p3", &[c, a]), endpoint("p4", &[b, c])],
            vec![],
        ];
        let placed = place(&parts, &workers).unwrap();
        let at = |i: usize| placed[i].as_str().trim_end_matches('/').to_string();
        assert_eq!((at(0), at(1)), (a.to_string(), b.to_string()));
        // p3 and p4 share only c; an empty part goes round.
        assert_eq!(at(2), c);
        assert_eq!(at(3), workers[0].as_str().trim_end_matches('/'));
        assert_eq!(place(&parts, &[]), None);
        // Parts grouped by primary (auto) go to their primaries, though
        // each part's replica holds it too.
        let by_primary = vec![
            vec![endpoint("q0", &[b, c])],
            vec![endpoint("q1", &[c, a])],
            vec![endpoint("q2", &[a, b])],
        ];
        let placed = place(&by_primary, &workers).unwrap();
        let hosts: Vec<&str> = placed
            .iter()
            .map(|u| u.as_str().trim_end_matches('/'))
            .collect();
        assert_eq!(hosts, vec![b, c, a]);
    }
}
