//! Planning answers that describe data without returning it: FlightInfo with
//! one endpoint per object (several for a large one), schemas, and object
//! listings.

use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use futures::{StreamExt, TryStreamExt};
use parquet::file::metadata::ParquetMetaData;
use quiver_client::plan::wire_schema;
use quiver_protocol::{ActionType, ObjectListing, PresignedEndpoint, ScanRequest};

use crate::error::{QuiverError, Result};
use crate::miss::{MissRules, Offer, WarmJob};
use crate::node_core::NodeCore;
use crate::scan::column_ranges;
use crate::source::{ObjectId, Target};

/// Largest FlightInfo answered, counting its tickets: every ticket repeats
/// the request's filter, so a 16 KiB filter over ten thousand objects would
/// be 160 MiB of planning answer. 4 MiB is also what gRPC clients accept by
/// default.
pub const MAX_FLIGHT_INFO_BYTES: usize = 4 << 20;

/// Bytes of protobuf framing counted for each endpoint and location on top
/// of their contents (tags, lengths, the `Location` message): generous.
const ENCODING_OVERHEAD: usize = 16;

/// Longest a node waits for an owner to accept a warm-up it forwards.
const WARM_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Footers read at once while planning a prefix.
const PLAN_CONCURRENCY: usize = 16;

/// What `req` names, as [`schema`] finds it.
pub struct Described {
    pub target: Target,
    pub objects: Vec<ObjectId>,
    /// The projected schema as it is sent.
    pub schema: SchemaRef,
    /// For each object, the compressed bytes its scan reads, by row group.
    pub read_bytes: Vec<Vec<u64>>,
}

/// The projected schema of `req` as it is sent (every type mapped by
/// [`wire_schema`], `docs/protocol.md` "Type mapping"), checked against
/// every object it names so that a bad column or filter fails now rather
/// than in the middle of a read; with what each object's scan would read.
pub async fn schema(core: &NodeCore, req: &ScanRequest) -> Result<Described> {
    let target = core.sources.resolve(req)?;
    let objects = core.objects(&target, req.immutable).await?;
    let store = core.store(&target.source().name)?.clone();
    let (schemas, read_bytes): (Vec<Schema>, Vec<Vec<u64>>) =
        futures::stream::iter(objects.iter().cloned())
            .map(|id| {
                let store = store.clone();
                async move {
                    let projected = core.scanner.projected_schema(&store, &id, req).await?;
                    Ok::<_, QuiverError>((wire_schema(&projected.schema), projected.read_bytes))
                }
            })
            .buffered(PLAN_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .unzip();
    let first = &schemas[0];
    for (id, s) in objects.iter().zip(&schemas).skip(1) {
        if s.fields() != first.fields() {
            let a = format!("{}/{}", objects[0].source, objects[0].path);
            let b = format!("{}/{}", id.source, id.path);
            return Err(QuiverError::invalid(format!(
                "objects under this prefix have different schemas: {}; one Flight plan needs one schema (QuiverTable and Flight SQL read such a prefix with a merged schema)",
                difference(first, &a, s, &b)
            )));
        }
    }
    Ok(Described {
        target,
        objects,
        schema: Arc::new(first.clone()),
        read_bytes,
    })
}

/// Where schema `a` of object `first` and schema `b` of object `second`
/// first disagree, naming the column and both objects, so a user knows which
/// file to fix.
fn difference(a: &Schema, first: &str, b: &Schema, second: &str) -> String {
    for (x, y) in a.fields().iter().zip(b.fields()) {
        if x.name() != y.name() {
            return match b.field_with_name(x.name()) {
                Ok(_) => format!(
                    "column `{}` comes before `{}` in {first} but not in {second}",
                    x.name(),
                    y.name()
                ),
                Err(_) => format!("column `{}` of {first} is missing in {second}", x.name()),
            };
        }
        if x.data_type() != y.data_type() {
            return format!(
                "column `{}` is {} in {first} but {} in {second}",
                x.name(),
                x.data_type(),
                y.data_type()
            );
        }
        if x.is_nullable() != y.is_nullable() {
            let nullable = |f: &Field| {
                if f.is_nullable() {
                    "nullable"
                } else {
                    "not nullable"
                }
            };
            return format!(
                "column `{}` is {} in {first} but {} in {second}",
                x.name(),
                nullable(x.as_ref()),
                nullable(y.as_ref())
            );
        }
        if x.metadata() != y.metadata() {
            return format!(
                "column `{}` has other field metadata in {first} than in {second}",
                x.name()
            );
        }
    }
    let (longer, shorter, has, lacks) = if a.fields().len() > b.fields().len() {
        (a, b, first, second)
    } else {
        (b, a, second, first)
    };
    match longer.fields().get(shorter.fields().len()) {
        Some(f) => format!("column `{}` of {has} is missing in {lacks}", f.name()),
        None => format!("the fields of {first} and {second} differ"),
    }
}

/// Ranges of row groups of about `target` bytes each (`bytes` of each row
/// group), the endpoints a large object is planned as. Row groups of at
/// most `target` bytes in all, or one row group, are one range: a small
/// read stays one cheap stream.
fn row_group_ranges(bytes: &[u64], target: u64) -> Vec<Range<usize>> {
    let n = bytes.len();
    let total = bytes.iter().copied().fold(0u64, u64::saturating_add);
    if target == 0 || total <= target || n < 2 {
        return std::iter::once(0..n).collect();
    }
    let mut out = Vec::new();
    let (mut start, mut sum) = (0, 0u64);
    for (i, b) in bytes.iter().enumerate() {
        sum = sum.saturating_add(*b);
        if sum >= target {
            out.push(start..i + 1);
            start = i + 1;
            sum = 0;
        }
    }
    if start < n {
        out.push(start..n);
    }
    out
}

/// GetFlightInfo: one endpoint per object, each with a ticket naming that
/// object and the ETag it was planned against. An object whose needed
/// column chunks (the projected and filtered columns) are above
/// `limits.split_bytes`, read without a limit, is planned as one endpoint
/// per range of its row groups, in order, so that together they return
/// exactly its rows; their locations start at successive owners, so
/// replicas share the reads. What is split is what the scans read: a
/// narrow query over a wide file is one stream, not one per 64 MiB of
/// columns it never reads, each paying a round trip and a plan.
pub async fn flight_info(
    core: &NodeCore,
    descriptor: FlightDescriptor,
    req: &ScanRequest,
) -> Result<FlightInfo> {
    let Described {
        target,
        objects,
        schema,
        read_bytes,
    } = schema(core, req).await?;
    let store = core.store(&target.source().name)?.clone();
    // Row counts let a limit without a filter be split exactly across
    // objects, so the endpoints together return no more than `limit` rows.
    let footers: Vec<Arc<ParquetMetaData>> = futures::stream::iter(objects.iter().cloned())
        .map(|id| {
            let store = store.clone();
            async move { core.scanner.metadata(&store, &id).await }
        })
        .buffered(PLAN_CONCURRENCY)
        .try_collect()
        .await?;
    // Rows a deletion vector deletes are never sent; the scan checks the
    // vector holds as many as it says.
    let deleted = req.deletion_vector.as_ref().map_or(0, |dv| dv.cardinality);
    let rows = footers
        .iter()
        .map(|m| (m.file_metadata().num_rows().max(0) as u64).saturating_sub(deleted));
    let exact_rows = req.filter.is_none();
    let mut remaining = req.limit;
    let mut total: u64 = 0;
    let mut answer_bytes: usize = 0;
    let mut info = FlightInfo::new()
        .try_with_schema(&schema)
        .map_err(|e| QuiverError::Internal(format!("cannot encode the schema: {e}")))?
        .with_descriptor(descriptor)
        .with_ordered(true);
    for (((id, n), footer), read) in objects.iter().zip(rows).zip(&footers).zip(&read_bytes) {
        let limit = match (remaining, exact_rows) {
            (Some(0), true) => break,
            (Some(r), true) => {
                remaining = Some(r.saturating_sub(n));
                Some(r.min(n))
            }
            (limit, _) => limit,
        };
        total += limit.unwrap_or(n).min(n);
        let ticket = ScanRequest {
            source: Some(id.source.to_string()),
            path: Some(id.path.to_string()),
            columns: req.columns.clone(),
            filter: req.filter.clone(),
            limit,
            etag: Some(id.etag.clone()),
            compression: req.compression,
            deletion_vector: req.deletion_vector.clone(),
            immutable: req.immutable,
            ..Default::default()
        };
        let whole = ticket.to_bytes();
        let mut count = |bytes: usize| {
            answer_bytes = answer_bytes.saturating_add(bytes);
            if answer_bytes > MAX_FLIGHT_INFO_BYTES {
                return Err(QuiverError::ResourceExhausted(format!(
                    "the plan of {} objects with this filter would be larger than {} MiB; use a longer prefix or a shorter filter",
                    objects.len(),
                    MAX_FLIGHT_INFO_BYTES >> 20
                )));
            }
            Ok(())
        };
        if let Some(endpoint) = presigned(core, req, id, &whole).await? {
            count(whole.len())?;
            info = info.with_endpoint(endpoint);
            continue;
        }
        // A limit is one cap over the object's rows in order, so only a
        // read without one is split.
        let ranges = if limit.is_none() {
            row_group_ranges(read, core.split_bytes)
        } else {
            std::iter::once(0..footer.num_row_groups()).collect()
        };
        let owners = core.owners(id);
        // Each endpoint also carries its locations and protobuf framing,
        // which a split object repeats once per endpoint.
        let locations = owners
            .iter()
            .map(|o| o.url.len().saturating_add(ENCODING_OVERHEAD))
            .fold(ENCODING_OVERHEAD, usize::saturating_add);
        for (k, range) in ranges.iter().enumerate() {
            let ticket = if ranges.len() == 1 {
                whole.clone()
            } else {
                ScanRequest {
                    row_groups: Some(range.clone().collect()),
                    ..ticket.clone()
                }
                .to_bytes()
            };
            count(ticket.len().saturating_add(locations))?;
            let mut endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
            for i in 0..owners.len() {
                endpoint = endpoint.with_location(owners[(k + i) % owners.len()].url.clone());
            }
            info = info.with_endpoint(endpoint);
        }
    }
    if exact_rows {
        info = info.with_total_records(total as i64);
    }
    Ok(info)
}

/// The pre-signed endpoint of `id` when the miss policy sends this client to
/// the origin for it, after queueing the warm-up on the object's owner.
/// `None` means a Flight endpoint, including when signing fails: a client
/// is never worse off than without the policy.
async fn presigned(
    core: &NodeCore,
    req: &ScanRequest,
    id: &ObjectId,
    ticket: &[u8],
) -> Result<Option<FlightEndpoint>> {
    let source = core.sources.get(&id.source)?;
    // A client reading the object itself would see the rows a deletion
    // vector deletes.
    if req.deletion_vector.is_some() {
        return Ok(None);
    }
    let offer = core.miss.offer(req, id.size, source.presigner.is_some());
    let Some(presigner) = source.presigner.as_ref().filter(|_| offer != Offer::Flight) else {
        return Ok(None);
    };
    let store = core.store(&id.source)?;
    let columns = core.scanner.needed_columns(store, id, req).await?;
    if offer == Offer::CheckCache {
        let metadata = core.scanner.metadata(store, id).await?;
        let ranges = column_ranges(&metadata, id, &columns)?;
        let (needed, cached) = core.chunks.coverage(id, &ranges);
        if !MissRules::cold(needed, cached) {
            return Ok(None);
        }
    }
    let url = match presigner.get_url(&id.path, core.miss.expiry).await {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(source = %id.source, path = %id.path, error = %e,
                "cannot pre-sign a URL; planning a Flight endpoint instead");
            return Ok(None);
        }
    };
    core.metrics
        .presigned_urls
        .with_label_values(&[&*id.source])
        .inc();
    warm_on_owner(core, id, columns);
    let expires = std::time::SystemTime::now() + core.miss.expiry;
    let metadata = PresignedEndpoint::new(&id.source, id.path.as_ref(), &id.etag, id.size);
    Ok(Some(
        FlightEndpoint::new()
            .with_ticket(Ticket::new(ticket.to_vec()))
            .with_location(url.as_str())
            .with_expiration_time(prost_types::Timestamp::from(expires))
            .with_app_metadata(metadata.to_bytes()),
    ))
}

/// Queues the warm-up of `columns` of `id` here when this node owns it,
/// else on its primary owner with a `warm` action sent in the background
/// (bounded by [`WARM_CALL_TIMEOUT`]; a lost warm-up only costs a miss).
fn warm_on_owner(core: &NodeCore, id: &ObjectId, columns: Vec<String>) {
    let owners = core.owners(id);
    let local = owners.is_empty() || owners.iter().any(|n| n.id == core.node_id);
    if local {
        core.warmer.offer(WarmJob {
            id: id.clone(),
            columns,
        });
        return;
    }
    let Some(primary) = owners.first() else {
        return;
    };
    let url = primary.url.clone();
    let peers = core.peers.clone();
    let body = ScanRequest {
        source: Some(id.source.to_string()),
        path: Some(id.path.to_string()),
        columns: Some(columns),
        etag: Some(id.etag.clone()),
        ..Default::default()
    }
    .to_bytes();
    tokio::spawn(async move {
        let call = async {
            let mut peer = peers.client(&url).await?;
            peer.do_action(arrow_flight::Action::new(
                ActionType::Warm.name(),
                bytes::Bytes::from(body),
            ))
            .await
            .map_err(|e| QuiverError::Unavailable(e.to_string()))?
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| QuiverError::Unavailable(e.to_string()))
        };
        match tokio::time::timeout(WARM_CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(peer = %url, error = %e, "the owner did not queue a warm-up")
            }
            Err(_) => tracing::debug!(peer = %url, "the owner did not answer a warm-up in time"),
        }
    });
}

/// ListFlights: every object under the criteria, with its size, ETag, how
/// much of it is cached, and the schema a scan of it sends.
pub async fn list(core: &NodeCore, criteria: &[u8]) -> Result<Vec<FlightInfo>> {
    let targets: Vec<Target> = if criteria.is_empty() {
        core.sources
            .all()
            .iter()
            .map(|s| core.sources.resolve_named(&s.name, ""))
            .collect::<Result<_>>()?
    } else {
        let c: quiver_protocol::ListCriteria = serde_json::from_slice(criteria).map_err(|e| {
            QuiverError::invalid(format!(
                "ListFlights criteria must be {{\"source\", \"path\"}}: {e}"
            ))
        })?;
        vec![core.sources.resolve_named(&c.source, &c.path)?]
    };
    let mut out = Vec::new();
    for target in targets {
        let store = core.store(&target.source().name)?.clone();
        let objects = match &target {
            Target::Object { source, path } => vec![source.identity(path).await?],
            Target::Prefix { source, prefix } => source.list(prefix).await?,
        };
        let infos: Vec<FlightInfo> = futures::stream::iter(objects)
            .map(|id| {
                let store = store.clone();
                async move {
                    let metadata = core.scanner.metadata(&store, &id).await?;
                    let schema = wire_schema(&*core.scanner.file_schema(&store, &id).await?);
                    let listing = ObjectListing {
                        source: id.source.to_string(),
                        path: id.path.to_string(),
                        size: id.size,
                        etag: id.etag.clone(),
                        cached_bytes: core.chunks.cached_bytes(&id),
                    };
                    let cmd = ScanRequest {
                        source: Some(listing.source.clone()),
                        path: Some(listing.path.clone()),
                        ..Default::default()
                    };
                    let info = FlightInfo::new()
                        .try_with_schema(&schema)
                        .map_err(|e| {
                            QuiverError::Internal(format!("cannot encode the schema: {e}"))
                        })?
                        .with_descriptor(FlightDescriptor::new_cmd(cmd.to_bytes()))
                        .with_total_records(metadata.file_metadata().num_rows())
                        .with_total_bytes(id.size as i64)
                        .with_app_metadata(serde_json::to_vec(&listing).unwrap_or_default());
                    Ok::<_, QuiverError>(info)
                }
            })
            .buffered(PLAN_CONCURRENCY)
            .try_collect()
            .await?;
        out.extend(infos);
    }
    Ok(out)
}

/// Parses the ScanRequest a descriptor carries; only CMD descriptors do.
pub fn descriptor_request(descriptor: &FlightDescriptor) -> Result<ScanRequest> {
    if descriptor.r#type != arrow_flight::flight_descriptor::DescriptorType::Cmd as i32 {
        return Err(QuiverError::invalid(
            "Quiver takes CMD descriptors holding a JSON ScanRequest, not PATH descriptors",
        ));
    }
    parse_request(&descriptor.cmd)
}

pub fn parse_request(bytes: &[u8]) -> Result<ScanRequest> {
    ScanRequest::from_bytes(bytes).map_err(|e| QuiverError::invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::row_group_ranges;

    #[test]
    fn row_groups_are_cut_by_the_bytes_a_scan_reads() {
        // Ten row groups of 30 bytes read, a target of 64: ranges of three.
        assert_eq!(
            row_group_ranges(&[30; 10], 64),
            vec![0..3, 3..6, 6..9, 9..10]
        );
        // The same row groups read for 5 bytes each: one stream.
        assert_eq!(row_group_ranges(&[5; 10], 64), vec![0..10]);
        assert_eq!(row_group_ranges(&[500], 64), vec![0..1]);
        assert_eq!(row_group_ranges(&[30; 10], 0), vec![0..10]);
    }
}
