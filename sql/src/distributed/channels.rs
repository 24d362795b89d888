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

use crate::observe::{Role, StatementObserver};

/// Opens (and keeps) one channel per worker for one side of statements.
#[derive(Clone)]
pub(crate) struct PeerChannels {
    connector: Connector,
    /// `Bearer <peer credential>`, when the cluster uses tokens.
    authorization: Option<HeaderValue>,
    observer: Option<Arc<dyn StatementObserver>>,
    role: Role,
    open: Arc<Mutex<HashMap<Url, BoxCloneSyncChannel>>>,
}

impl PeerChannels {
    pub(crate) fn new(
        connector: Connector,
        token: Option<&str>,
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
        let service = ServiceBuilder::new()
            .map_request(move |mut req: http::Request<Body>| {
                if let Some(a) = &authorization {
                    req.headers_mut().insert(AUTHORIZATION, a.clone());
                }
                req
            })
            .map_response(move |res: http::Response<Body>| {
                let observer = observer.clone();
                res.map(|body| {
                    Body::new(Watched {
                        inner: body,
                        observer,
                        role,
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

/// A worker's response body, reporting the bytes of every data frame it
/// passes.
struct Watched {
    inner: Body,
    observer: Option<Arc<dyn StatementObserver>>,
    role: Role,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(observer)) = (&polled, &self.observer) {
            if let Some(data) = frame.data_ref() {
                observer.exchanged(self.role, u64::try_from(data.len()).unwrap_or(u64::MAX));
            }
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
