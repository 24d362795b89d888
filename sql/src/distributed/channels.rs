//! How a node reaches the workers of a distributed statement: the same
//! TLS trust, timeouts and keep-alives as every other call between nodes
//! (`quiver_client::Connector`), the peer credential on every call (a
//! worker refuses reader tokens), and a count of the stage output
//! received, for `stats` and the metrics.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::common::DataFusionError;
use datafusion_distributed::grpc::{create_worker_client, BoxCloneSyncChannel};
use datafusion_distributed::{ChannelResolver, WorkerChannel};
use http::header::AUTHORIZATION;
use http::HeaderValue;
use http_body::{Body as HttpBody, Frame, SizeHint};
use quiver_client::Connector;
use tonic::body::Body;
use tower::ServiceBuilder;
use url::Url;

use super::workers::Workers;
use crate::observe::{Role, StatementObserver};

/// Opens (and keeps) one channel per worker for one side of statements.
#[derive(Clone)]
pub(crate) struct PeerChannels {
    connector: Connector,
    /// `Bearer <peer credential>`, when the cluster uses tokens.
    authorization: Option<HeaderValue>,
    workers: Arc<Workers>,
    observer: Option<Arc<dyn StatementObserver>>,
    role: Role,
    open: Arc<Mutex<HashMap<Url, BoxCloneSyncChannel>>>,
}

impl PeerChannels {
    pub(crate) fn new(
        connector: Connector,
        token: Option<&str>,
        workers: Arc<Workers>,
        observer: Option<Arc<dyn StatementObserver>>,
        role: Role,
    ) -> Result<PeerChannels, String> {
        let authorization = token
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
            .transpose()
            .map_err(|_| "the peer token is not a valid header value".to_string())?;
        Ok(PeerChannels {
            connector,
            authorization,
            workers,
            observer,
            role,
            open: Arc::default(),
        })
    }

    fn channel(&self, url: &Url) -> Result<BoxCloneSyncChannel, DataFusionError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = open.get(url) {
            return Ok(c.clone());
        }
        let channel = self
            .connector
            .channel(url.as_str())
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let authorization = self.authorization.clone();
        let (observer, role) = (self.observer.clone(), self.role);
        let (workers, failed) = (self.workers.clone(), url.clone());
        let (watched, worker) = (self.workers.clone(), url.clone());
        let service = ServiceBuilder::new()
            .map_err(move |e: tonic::transport::Error| {
                workers.failed(&failed);
                e
            })
            .map_request(move |mut req: http::Request<Body>| {
                if let Some(a) = &authorization {
                    req.headers_mut().insert(AUTHORIZATION, a.clone());
                }
                req
            })
            .map_response(move |res: http::Response<Body>| {
                let (observer, workers, url) = (observer.clone(), watched.clone(), worker.clone());
                res.map(|body| {
                    Body::new(Watched {
                        inner: body,
                        observer,
                        role,
                        workers,
                        url,
                    })
                })
            })
            .service(channel);
        let channel = BoxCloneSyncChannel::new(service);
        open.insert(url.clone(), channel.clone());
        Ok(channel)
    }
}

#[async_trait]
impl ChannelResolver for PeerChannels {
    async fn get_worker_client_for_url(
        &self,
        url: &Url,
    ) -> Result<Box<dyn WorkerChannel>, DataFusionError> {
        Ok(create_worker_client(self.channel(url)?))
    }
}

/// A worker's response body: reports the bytes of every data frame it
/// passes, and a body cut off (the worker died mid-stream) takes the worker
/// out of the next statements' plans until a probe finds it again.
struct Watched {
    inner: Body,
    observer: Option<Arc<dyn StatementObserver>>,
    role: Role,
    workers: Arc<Workers>,
    url: Url,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(observer)) = (frame.data_ref(), &self.observer) {
                    observer.exchanged(self.role, u64::try_from(data.len()).unwrap_or(u64::MAX));
                }
            }
            Poll::Ready(Some(Err(_))) => self.workers.failed(&self.url),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
