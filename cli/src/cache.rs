//! `quiver ls`, `stats`, `prefetch` and `evict`: what the cache holds, and
//! changing it.

use std::collections::BTreeMap;

use bytes::Bytes;
use bytesize::ByteSize;
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use quiver_client::{ClientError, QuiverClient};
use quiver_protocol::{
    slot_of, EvictRequest, PrefetchProgress, PrefetchSummary, ScanRequest, StatsReport,
};

use super::target::Target;

fn decode<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode(format!("{what}: {e}")))
}

fn size(n: u64) -> String {
    ByteSize(n).display().si().to_string()
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.0}%", part as f64 * 100.0 / whole as f64)
}

pub async fn ls(client: &QuiverClient, spec: &str) -> Result<(), ClientError> {
    let target = Target::parse(spec)?;
    let objects = client.list(&target.source, &target.path).await?;
    println!(
        "{:>10}  {:>10}  {:>6}  {:>12}  path",
        "size", "cached", "", "rows"
    );
    let (mut total, mut cached) = (0u64, 0u64);
    for o in &objects {
        let l = &o.listing;
        total = total.saturating_add(l.size);
        cached = cached.saturating_add(l.cached_bytes);
        println!(
            "{:>10}  {:>10}  {:>6}  {:>12}  {}/{}",
            size(l.size),
            size(l.cached_bytes),
            percent(l.cached_bytes, l.size),
            o.rows.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
            l.source,
            l.path
        );
    }
    println!(
        "{} object(s), {} in all, {} cached ({})",
        objects.len(),
        size(total),
        size(cached),
        percent(cached, total)
    );
    Ok(())
}

fn describe(s: &StatsReport) -> String {
    let lookups = s.memory.hits + s.disk.hits + s.misses;
    format!(
        "node {}\n  memory   {} of {} used, {} hits\n  disk     {} of {} used{}, {} hits\n  misses   {} (hit ratio {})\n  origin   {} in {} requests\n  served   {} in {} rows, {} scans ({} running)\n",
        s.node_id,
        size(s.memory.usage),
        size(s.memory.capacity),
        s.memory.hits,
        size(s.disk.usage),
        size(s.disk.capacity),
        s.disk
            .allocated
            .map(|a| format!(" ({} allocated on disk)", size(a)))
            .unwrap_or_default(),
        s.disk.hits,
        s.misses,
        percent(s.memory.hits + s.disk.hits, lookups),
        size(s.origin_bytes),
        s.origin_requests,
        size(s.bytes_served),
        s.rows_served,
        s.scans,
        s.active_scans,
    )
}

/// Every node's statistics: the whole cluster, not only the node asked.
pub async fn stats(client: &QuiverClient, json: bool) -> Result<(), ClientError> {
    let topology = client.topology();
    let mut reports = Vec::new();
    for node in &topology.nodes {
        let answer = client.action_on(&node.url, "stats", Bytes::new()).await?;
        let body = answer
            .first()
            .ok_or_else(|| ClientError::Decode("stats returned nothing".into()))?;
        reports.push(decode::<StatsReport>("stats", body)?);
    }
    if json {
        let text = match reports.as_slice() {
            [one] => serde_json::to_string_pretty(one),
            all => serde_json::to_string_pretty(all),
        }
        .map_err(|e| ClientError::Decode(e.to_string()))?;
        println!("{text}");
    } else {
        for r in &reports {
            print!("{}", describe(r));
        }
    }
    Ok(())
}

/// Loads objects into the cache of the node that owns each, with a bar of
/// objects and bytes.
pub async fn prefetch(
    client: &QuiverClient,
    spec: &str,
    columns: Option<Vec<String>>,
) -> Result<(), ClientError> {
    let target = Target::parse(spec)?;
    let objects = client.list(&target.source, &target.path).await?;
    let total_bytes: u64 = objects.iter().map(|o| o.listing.size).sum();
    let topology = client.topology();
    // One request per owner: each node loads only the objects it serves.
    let mut by_owner: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in &objects {
        let slot = slot_of(&o.listing.source, &o.listing.path);
        let owner = topology
            .owners(slot)
            .first()
            .map(|n| n.url.clone())
            .ok_or_else(|| ClientError::Refused(format!("slot {slot} has no owner")))?;
        by_owner
            .entry(owner)
            .or_default()
            .push(o.listing.path.clone());
    }
    let bar = ProgressBar::new(objects.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} objects  {msg}  {elapsed_precise} {wide_msg:.dim}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let mut summary = PrefetchSummary::default();
    for (url, paths) in by_owner {
        for path in paths {
            let req = ScanRequest {
                source: Some(target.source.clone()),
                path: Some(path.clone()),
                columns: columns.clone(),
                ..Default::default()
            };
            let mut results = client
                .action_stream(&url, "prefetch", Bytes::from(req.to_bytes()))
                .await?;
            while let Some(body) = results.try_next().await? {
                if let Ok(p) = serde_json::from_slice::<PrefetchProgress>(&body) {
                    summary.objects += 1;
                    summary.bytes = summary.bytes.saturating_add(p.bytes);
                    bar.inc(1);
                    bar.set_message(format!(
                        "{} of {} loaded",
                        size(summary.bytes),
                        size(total_bytes)
                    ));
                }
            }
        }
    }
    bar.finish_and_clear();
    println!(
        "prefetched {} object(s), {}",
        summary.objects,
        size(summary.bytes)
    );
    Ok(())
}

/// Drops objects from every node's cache (any owner may hold a copy).
pub async fn evict(client: &QuiverClient, spec: &str) -> Result<(), ClientError> {
    let target = Target::parse(spec)?;
    let body = serde_json::to_vec(&EvictRequest {
        source: target.source.clone(),
        path: target.path.clone(),
    })
    .map_err(|e| ClientError::Decode(e.to_string()))?;
    let mut total = PrefetchSummary::default();
    for node in &client.topology().nodes {
        let answer = client
            .action_on(&node.url, "evict", Bytes::from(body.clone()))
            .await?;
        let body = answer
            .first()
            .ok_or_else(|| ClientError::Decode("evict returned nothing".into()))?;
        let s: PrefetchSummary = decode("evict", body)?;
        total.objects = total.objects.max(s.objects);
        total.bytes = total.bytes.saturating_add(s.bytes);
    }
    println!(
        "evicted {target}: {} object(s), {} dropped",
        total.objects,
        size(total.bytes)
    );
    Ok(())
}
