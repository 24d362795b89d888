//! Reading one endpoint whatever fails: each owner of its slot in turn,
//! best score first, following `MOVED` and a rewritten object once; then,
//! when no owner can serve it, a URL a node pre-signs, and last the source
//! read directly, so the query still completes.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow_flight::Ticket;
use futures::StreamExt;
use quiver_protocol::{slot_of, Accept, Changed, Moved, ScanRequest};

use crate::direct::read_direct;
use crate::error::ClientError;
use crate::plan::{to_wire, wire_schema, Endpoint};
use crate::presigned::{read_presigned, Presigned};
use crate::results::Served;
use crate::routing::QuiverClient;
use crate::stream::{with_progress_timeout, BatchStream};

/// A candidate for one read: a node URL and, when the map knows it, its id.
#[derive(Debug, Clone)]
struct Candidate {
    url: String,
    id: Option<String>,
}

/// The owners of one endpoint still to try, and the one-time detours
/// (`MOVED`, a rewritten object) already taken.
struct Attempts {
    ticket: ScanRequest,
    queue: Vec<Candidate>,
    tried: Vec<String>,
    followed_redirect: bool,
    followed_change: bool,
}

impl Attempts {
    fn new(ticket: ScanRequest, queue: Vec<Candidate>) -> Self {
        Attempts {
            ticket,
            queue,
            tried: Vec::new(),
            followed_redirect: false,
            followed_change: false,
        }
    }

    /// The next owner not tried yet.
    fn next(&mut self) -> Option<Candidate> {
        while !self.queue.is_empty() {
            let node = self.queue.remove(0);
            if self.tried.contains(&node.url) {
                continue;
            }
            self.tried.push(node.url.clone());
            return Some(node);
        }
        None
    }

    /// Whether a `MOVED` may still be followed; only the first one is.
    fn take_redirect(&mut self) -> bool {
        !std::mem::replace(&mut self.followed_redirect, true)
    }

    /// Whether a rewritten object may still be read at its new version;
    /// only the first change is followed.
    fn take_change(&mut self) -> bool {
        !std::mem::replace(&mut self.followed_change, true)
    }

    /// Starts over with `first`, the node a `MOVED` named, then `owners`.
    fn restart(&mut self, first: Candidate, owners: Vec<Candidate>) {
        self.tried.clear();
        self.queue = owners;
        self.queue.insert(0, first);
    }

    /// Tries `node` again first, for the object's version `etag`.
    fn retry_at(&mut self, node: Candidate, etag: &str) {
        self.ticket.etag = Some(etag.to_string());
        self.tried.retain(|u| u != &node.url);
        self.queue.insert(0, node);
    }
}

/// How trying the owners of an endpoint ended, short of an error every
/// owner would repeat.
enum Tried {
    Served(Served, BatchStream),
    /// Every owner failed; the last error, if any owner was tried.
    AllFailed(Option<ClientError>),
}

impl QuiverClient {
    /// Where to read an endpoint, best first: the owners of its slot in the
    /// client's map ranked by score (ties keep the topology's order, so the
    /// primary is preferred until there is evidence), then any location the
    /// planning node named that the map does not know.
    fn candidates(&self, endpoint: &Endpoint) -> Vec<Candidate> {
        let t = self.topology();
        let mut owners: Vec<Candidate> = match (&endpoint.ticket.source, &endpoint.ticket.path) {
            (Some(source), Some(path)) => t
                .owners(slot_of(source, path))
                .into_iter()
                .map(|n| Candidate {
                    url: n.url.clone(),
                    id: Some(n.id.clone()),
                })
                .collect(),
            _ => Vec::new(),
        };
        self.inner
            .health
            .rank(&mut owners, |c| c.id.as_deref(), &self.inner.cfg);
        if let Some(local) = &self.inner.cfg.local {
            if let Some(at) = owners.iter().position(|c| &c.url == local) {
                owners[..=at].rotate_right(1);
            }
        }
        for url in &endpoint.locations {
            if !owners.iter().any(|c| &c.url == url) {
                owners.push(Candidate {
                    url: url.clone(),
                    id: t.nodes.iter().find(|n| &n.url == url).map(|n| n.id.clone()),
                });
            }
        }
        owners
    }

    fn record(&self, node: &Candidate, outcome: Option<f64>) {
        let Some(id) = &node.id else { return };
        self.inner.health.record(id, outcome);
    }

    /// Opens a DoGet at `url` and waits for its first batch, so that a node
    /// that fails before sending anything can be replaced by another owner
    /// without duplicating rows.
    /// The ticket asks for the compression the client's configuration
    /// chooses for this node, unless it names one already.
    async fn open(&self, url: &str, ticket: &ScanRequest) -> Result<BatchStream, ClientError> {
        let mut client = self.flight(url)?;
        let timeout = self.inner.cfg.timeout;
        let mut ticket = ticket.clone();
        if ticket.compression.is_none() {
            ticket.compression = self.inner.cfg.compression.for_node(url);
        }
        let stream = self
            .timed(url, async {
                Ok(client.do_get(Ticket::new(ticket.to_bytes())).await?)
            })
            .await?;
        let mut stream = with_progress_timeout(stream, timeout, url.to_string());
        match stream.next().await {
            Some(Ok(first)) => Ok(futures::stream::once(async { Ok(first) })
                .chain(stream)
                .boxed()),
            Some(Err(e)) => Err(e),
            None => Ok(futures::stream::empty().boxed()),
        }
    }

    /// Reads one endpoint. A pre-signed one is read from the store; when its
    /// URL has expired or the object changed, the object is planned again
    /// once. A Flight one (or a pre-signed one whose store cannot be read)
    /// goes to each owner in turn until one starts streaming, following
    /// `MOVED` once, then the last resorts.
    pub async fn read_endpoint(
        &self,
        endpoint: &Endpoint,
    ) -> Result<(Served, BatchStream), ClientError> {
        let Some(presigned) = &endpoint.presigned else {
            return self.read_flight(endpoint).await;
        };
        match self.read_url(presigned, &endpoint.ticket).await {
            Err(ClientError::UrlRefused(_) | ClientError::ObjectChanged(_)) => {
                let fresh = self.replan(&endpoint.ticket, None).await?;
                match &fresh.presigned {
                    Some(p) => self.read_url(p, &fresh.ticket).await,
                    None => self.read_flight(&fresh).await,
                }
            }
            Err(_) => self.read_flight(endpoint).await,
            ok => ok,
        }
    }

    async fn read_url(
        &self,
        presigned: &Presigned,
        ticket: &ScanRequest,
    ) -> Result<(Served, BatchStream), ClientError> {
        let batches = read_presigned(presigned, ticket, self.inner.cfg.timeout).await?;
        Ok((Served::Presigned, as_streamed(batches)?))
    }

    /// Plans the one object `ticket` names again, at its current version.
    async fn replan(
        &self,
        ticket: &ScanRequest,
        accept: Option<Vec<Accept>>,
    ) -> Result<Endpoint, ClientError> {
        let req = ScanRequest {
            source: ticket.source.clone(),
            path: ticket.path.clone(),
            columns: ticket.columns.clone(),
            filter: ticket.filter.clone(),
            limit: ticket.limit,
            accept,
            ..Default::default()
        };
        let mut plan = self.plan(&req).await?;
        match (plan.endpoints.pop(), plan.endpoints.is_empty()) {
            (Some(endpoint), true) => Ok(endpoint),
            _ => Err(ClientError::Decode(
                "planning one object again did not return one endpoint".into(),
            )),
        }
    }

    /// Reads a Flight endpoint from its owners, then, if none can serve it,
    /// from the last resorts.
    async fn read_flight(&self, endpoint: &Endpoint) -> Result<(Served, BatchStream), ClientError> {
        let mut attempts = Attempts::new(endpoint.ticket.clone(), self.candidates(endpoint));
        match self.try_owners(endpoint, &mut attempts).await? {
            Tried::Served(served, stream) => Ok((served, stream)),
            Tried::AllFailed(last) => self.read_without_owner(&attempts.ticket, last).await,
        }
    }

    /// Tries each owner in turn until one starts streaming. An error every
    /// owner would repeat is returned at once.
    async fn try_owners(
        &self,
        endpoint: &Endpoint,
        attempts: &mut Attempts,
    ) -> Result<Tried, ClientError> {
        let mut last: Option<ClientError> = None;
        while let Some(node) = attempts.next() {
            let started = Instant::now();
            let e = match self.open(&node.url, &attempts.ticket).await {
                Ok(stream) => {
                    self.record(&node, Some(started.elapsed().as_secs_f64() * 1000.0));
                    let who = node.id.clone().unwrap_or(node.url);
                    return Ok(Tried::Served(Served::Node(who), stream));
                }
                Err(e) => e,
            };
            if let Some(moved) = e.message().and_then(Moved::parse) {
                if attempts.take_redirect() {
                    self.follow_moved(&moved).await;
                    let owners = self.candidates(endpoint);
                    let first = Candidate {
                        id: self.node_id(&moved.url),
                        url: moved.url,
                    };
                    attempts.restart(first, owners);
                    continue;
                }
            }
            // The object was rewritten since it was planned, and nothing of
            // it was read yet: read the new version once, as a fresh plan
            // would.
            if let Some(changed) = e.message().and_then(Changed::parse) {
                if attempts.take_change() {
                    attempts.retry_at(node, &changed.etag);
                    continue;
                }
            }
            if e.is_final() {
                return Err(e);
            }
            self.record(&node, None);
            last = Some(e);
        }
        Ok(Tried::AllFailed(last))
    }

    /// The last resorts once no owner could serve the object: a URL a node
    /// pre-signs for it, then its source read directly.
    async fn read_without_owner(
        &self,
        ticket: &ScanRequest,
        last: Option<ClientError>,
    ) -> Result<(Served, BatchStream), ClientError> {
        let (Some(source), Some(path)) = (&ticket.source, &ticket.path) else {
            return Err(last.unwrap_or_else(|| {
                ClientError::Refused("the ticket names no object and has no location".into())
            }));
        };
        if let Some(read) = self.read_signed_anew(ticket).await {
            return Ok(read);
        }
        match self.inner.cfg.direct.get(source) {
            Some(direct) => {
                let batches = read_direct(direct, path, ticket).await?;
                Ok((Served::Direct, as_streamed(batches)?))
            }
            None => Err(last.unwrap_or_else(|| {
                ClientError::Refused(format!(
                    "no node owns {source}/{path}, and no direct source is configured"
                ))
            })),
        }
    }

    /// A node that cannot serve the object may still sign a URL for it;
    /// `None` when pre-signed reads are off, the ticket reads only some row
    /// groups, or no signed URL could be read.
    async fn read_signed_anew(&self, ticket: &ScanRequest) -> Option<(Served, BatchStream)> {
        if !self.inner.cfg.accept_presigned || ticket.row_groups.is_some() {
            return None;
        }
        let Ok(Endpoint {
            presigned: Some(p),
            ticket: fresh,
            ..
        }) = self.replan(ticket, Some(vec![Accept::Presigned])).await
        else {
            return None;
        };
        self.read_url(&p, &fresh).await.ok()
    }
}

/// Batches read from the file itself, with its own types (dictionaries,
/// views), as a node would have streamed them (`docs/protocol.md`, "Type
/// mapping"), so a plan's schema holds whoever served an endpoint.
fn as_streamed(batches: Vec<RecordBatch>) -> Result<BatchStream, ClientError> {
    let batches = batches
        .into_iter()
        .map(|b| {
            let wire = Arc::new(wire_schema(&b.schema()));
            to_wire(&b, &wire).map_err(|e| ClientError::Decode(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(futures::stream::iter(batches.into_iter().map(Ok)).boxed())
}
