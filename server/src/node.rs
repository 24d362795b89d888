//! One running node: the parts wired together, the listeners bound, and a
//! graceful shutdown that lets running streams finish and flushes the cache.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use quiver_client::{ClientConfig, Connector, Credentials, Tls};
use quiver_sql::{DeclaredTable, DistributedOptions, QuiverSql, SqlOptions};

use crate::access_log::AccessLog;
use crate::activity::Activity;
use crate::admin;
use crate::auth::Auth;
use crate::cache::{CachingObjectStore, ChunkCache, DecodedCache, DiskHealth, FooterCache};
use crate::cluster::fill::PeerFill;
use crate::cluster::peers::{self, Peers};
use crate::cluster::{handoff, Cluster};
use crate::config::Config;
use crate::error::{QuiverError, Result};
use crate::flight::worker::{self, PeersOnly};
use crate::flight::QuiverFlight;
use crate::metrics::Metrics;
use crate::miss::{warm, MissRules, WarmContext, Warmer};
use crate::node_core::NodeCore;
use crate::scan::{ScanLimits, Scanner};
use crate::source::Sources;

/// Longest a shutdown waits for running streams before it closes the cache
/// anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Largest request message accepted: tickets and commands are small JSON.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// The Flight SQL service of a node. Its scans go through a client of the
/// cluster that reaches this node at its advertised URL, with its own
/// credentials, so they are routed to the owners like any client's.
fn sql_service(
    config: &Config,
    advertise: &str,
    auth: &Auth,
    metrics: Arc<Metrics>,
) -> Result<QuiverSql> {
    let mut client = ClientConfig::new(vec![advertise.to_string()]);
    // A distributed statement's tasks read their own node's cache first.
    client.local = Some(advertise.to_string());
    client.connector = Connector {
        tls: Tls {
            ca_file: peers::trust(&config.auth),
        },
        credentials: auth
            .scan_token()
            .map(Credentials::Bearer)
            .unwrap_or_default(),
    };
    client.timeout = config.limits.request_timeout.0;
    QuiverSql::new(SqlOptions {
        sources: config.sources.iter().map(|s| s.name.clone()).collect(),
        declared: config
            .sql
            .tables
            .iter()
            .map(|t| DeclaredTable {
                source: t.source.clone(),
                schema: t.schema.clone(),
                name: t.name.clone(),
                path: t.path.clone(),
            })
            .collect(),
        query_memory: usize::try_from(config.sql.query_memory.0).unwrap_or(usize::MAX),
        max_queries: config.sql.max_queries,
        max_prepared: config.sql.max_prepared,
        refresh: config.sql.refresh.0,
        client,
        observer: Some(metrics),
        distributed: DistributedOptions {
            mode: config.sql.distributed,
            peer_token: auth.peer_credential(),
            tokens_required: auth.enabled(),
        },
    })
    .map_err(|s| QuiverError::invalid(s.message().to_string()))
}

/// A node that is serving. Dropping it does not stop it; call `shutdown`.
pub struct RunningNode {
    pub core: Arc<NodeCore>,
    pub flight_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    stop: watch::Sender<bool>,
    flight_task: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
    admin_task: JoinHandle<()>,
    reload_task: JoinHandle<()>,
    handoff_task: JoinHandle<()>,
    warm_task: JoinHandle<()>,
    disk_task: JoinHandle<()>,
}

impl RunningNode {
    /// Binds the listeners, opens (and recovers) the cache and starts
    /// serving. Port 0 picks a free port; `advertise` then names it.
    pub async fn start(config: Config) -> Result<RunningNode> {
        quiver_client::tls::use_ring_provider();
        let flight_listener = TcpListener::bind(config.server.listen).await.map_err(|e| {
            QuiverError::Internal(format!("cannot listen on {}: {e}", config.server.listen))
        })?;
        let admin_listener = TcpListener::bind(config.server.admin_listen)
            .await
            .map_err(|e| {
                QuiverError::Internal(format!(
                    "cannot listen on {}: {e}",
                    config.server.admin_listen
                ))
            })?;
        let flight_addr = flight_listener
            .local_addr()
            .map_err(|e| QuiverError::Internal(e.to_string()))?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|e| QuiverError::Internal(e.to_string()))?;
        let mut config = config;
        config.server.listen = flight_addr;

        let metrics = Arc::new(Metrics::new());
        let auth = Auth::load(&config.auth).map_err(|e| QuiverError::invalid(e.to_string()))?;
        let sources = Sources::new(&config.sources, config.limits.max_objects, &metrics)?;
        let node_id = config.node_id();
        let advertise = config.advertise_url();
        let cluster = Arc::new(
            Cluster::open(
                &config.cluster,
                &config.sources,
                &node_id,
                &advertise,
                metrics.clone(),
            )
            .await?,
        );
        let peers = Peers::new(&config.auth, &auth);
        // During a hand-off, misses in gained slots ask the previous owner
        // before the origin.
        let chunks = ChunkCache::builder(&config.cache, metrics.clone())
            .with_peers(Arc::new(PeerFill::new(cluster.clone(), peers.clone())))
            .open()
            .await?;
        let stores: HashMap<Arc<str>, Arc<CachingObjectStore>> = sources
            .all()
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    Arc::new(CachingObjectStore::new(s.clone(), chunks.clone())),
                )
            })
            .collect();
        let scanner = Scanner::new(
            &stores.values().cloned().collect::<Vec<_>>(),
            FooterCache::new(config.cache.metadata.0),
            DecodedCache::new(config.cache.hot.0, config.cache.eviction, metrics.clone()),
            metrics.clone(),
            ScanLimits {
                max_filter_len: config.limits.max_filter_len,
                batch_rows: config.limits.batch_rows,
            },
        )?;
        let scanner = match &config.cache.access_log {
            Some(path) => {
                scanner.with_access_log(Arc::new(AccessLog::open(path, metrics.clone())?))
            }
            None => scanner,
        };
        let sql = if config.sql.enabled {
            Some(Arc::new(sql_service(
                &config,
                &advertise,
                &auth,
                metrics.clone(),
            )?))
        } else {
            None
        };
        let (warmer, warm_rx) = Warmer::new(config.miss.warm_queue, metrics.clone());
        let warmer = Arc::new(warmer);
        let warm_ctx = WarmContext {
            warmer: warmer.clone(),
            stores: stores.clone(),
            footers: scanner.footers().clone(),
            chunk: chunks.chunk_size(),
        };
        let disk_health = Arc::new(DiskHealth::new(
            chunks.disk_dir(),
            chunks.disk_problem(),
            metrics.clone(),
        ));
        let core = Arc::new(NodeCore {
            sql,
            disk_health,
            miss: MissRules::from(&config.miss),
            warmer,
            cluster: cluster.clone(),
            peers,
            handoff: Arc::new(handoff::Progress::new(metrics.clone())),
            node_id,
            advertise,
            sources,
            stores,
            chunks,
            scanner,
            metrics,
            auth,
            scan_slots: Arc::new(Semaphore::new(config.limits.max_concurrent_scans)),
            max_scans: config.limits.max_concurrent_scans,
            queue_slots: Arc::new(Semaphore::new(config.limits.max_queued_scans)),
            scan_queue_timeout: config.limits.scan_queue_timeout.0,
            plan_slots: Arc::new(Semaphore::new(config.limits.max_concurrent_plans)),
            max_plans: config.limits.max_concurrent_plans,
            split_bytes: config.limits.split_bytes.0,
            request_timeout: config.limits.request_timeout.0,
            stall_timeout: config.limits.stall_timeout.0,
            activity: Activity::default(),
            ready: AtomicBool::new(false),
        });

        let (stop, stopped) = watch::channel(false);
        // Keep-alives find clients that vanished without closing, so their
        // streams (and scan slots) are released.
        let mut server = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)));
        if let (Some(cert), Some(key)) = (&config.auth.tls_cert, &config.auth.tls_key) {
            let read = |p: &std::path::Path| {
                std::fs::read(p)
                    .map_err(|e| QuiverError::invalid(format!("cannot read {}: {e}", p.display())))
            };
            let cert_pem = read(cert)?;
            // Peers and Quiver's clients will refuse it; say so now, not
            // at the first hand-off.
            if let Some(problem) = quiver_client::tls::served_certificate_problem(&cert_pem) {
                tracing::warn!(cert = %cert.display(), "{problem}");
            }
            let identity = Identity::from_pem(cert_pem, read(key)?);
            server = server
                .tls_config(ServerTlsConfig::new().identity(identity))
                .map_err(|e| {
                    QuiverError::invalid(format!("the TLS certificate or key is not usable: {e}"))
                })?;
        }
        let service = FlightServiceServer::new(QuiverFlight::new(core.clone()))
            .max_decoding_message_size(MAX_REQUEST_BYTES);
        // Distributed statements' tasks run on every node that serves SQL,
        // whatever its own `sql.distributed`.
        let workers = core.sql.as_ref().map(|sql| {
            InterceptedService::new(
                worker::worker(sql)
                    .into_worker_server()
                    .max_decoding_message_size(worker::MAX_TASK_BYTES),
                PeersOnly(core.clone()),
            )
        });
        let incoming = flight_incoming(flight_listener);
        let mut flight_stop = stopped.clone();
        let router = server.add_service(service).add_optional_service(workers);
        let flight_task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
            let _ = flight_stop.wait_for(|s| *s).await;
        }));
        let reload_task =
            tokio::spawn(cluster.reload_every(config.cluster.reload.0, stopped.clone()));
        let handoff_task = tokio::spawn(handoff::run(
            core.clone(),
            core.handoff.clone(),
            stopped.clone(),
        ));
        let warm_task = tokio::spawn(warm::run(
            warm_ctx,
            warm_rx,
            config.miss.warm_fetches,
            stopped.clone(),
        ));
        let disk_task = tokio::spawn(core.disk_health.clone().run(stopped.clone()));
        let admin_task = tokio::spawn(admin::serve(admin_listener, core.clone(), stopped));
        core.ready.store(true, Ordering::SeqCst);
        Ok(RunningNode {
            core,
            flight_addr,
            admin_addr,
            stop,
            flight_task,
            admin_task,
            reload_task,
            handoff_task,
            warm_task,
            disk_task,
        })
    }

    /// Stops accepting, lets running streams finish (up to a grace period),
    /// then flushes the cache so a restart finds it.
    pub async fn shutdown(self) -> Result<()> {
        self.core.ready.store(false, Ordering::SeqCst);
        let _ = self.stop.send(true);
        match tokio::time::timeout(SHUTDOWN_GRACE, self.flight_task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the Flight server stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the Flight server task failed"),
            Err(_) => tracing::warn!("streams were still running after the shutdown grace period"),
        }
        let _ = self.admin_task.await;
        let _ = self.reload_task.await;
        let _ = self.handoff_task.await;
        let _ = self.warm_task.await;
        let _ = self.disk_task.await;
        settle(&self.core).await;
        self.core.chunks.close().await
    }
}

/// Waits, at most [`SETTLE`], for the work a finished request leaves
/// behind: a scan whose client stopped reading still runs until it notices,
/// and read-ahead and hot-tier fills run on their own (fills are told to
/// stop after the row group they decode). Until they end they use the
/// cache, which must not be closed under them, nor its runtime dropped
/// while one is in a cache lookup (foyer spawns there, and a spawn on a
/// runtime that is shutting down deadlocks the lookup: the process would
/// never exit).
async fn settle(core: &NodeCore) {
    core.scanner.stop_background();
    let idle = || core.metrics.active_scans.get() <= 0 && core.scanner.background_idle();
    let waited = tokio::time::timeout(SETTLE, async {
        while !idle() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if waited.is_err() {
        tracing::warn!(
            "scans, read-ahead or hot-tier fills were still running when the node stopped"
        );
    }
}

/// How long a stopping node waits for scans and read-ahead to end.
const SETTLE: Duration = Duration::from_secs(10);

/// Accepted Flight connections, with Nagle's algorithm off. tonic leaves
/// it on for a listener it is handed, and then a response's last small
/// frame waits for the client's delayed ACK, which adds about 40 ms to
/// every small answer on Linux.
fn flight_incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    #[tokio::test]
    async fn accepted_flight_connections_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = super::flight_incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}
