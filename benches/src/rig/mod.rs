//! Where the benchmark data lives and who serves it: either everything on
//! this machine (s3s-fs behind the emulated link in a process of its own,
//! plus one or more quiver-server processes sharing a topology, each
//! optionally behind an emulated client hop), or a real S3 prefix and
//! already running Quiver nodes, as on the EC2 rig. What it is made of is
//! [`RigOptions`] (`options`); what its nodes report, [`NodeStats`]
//! (`stats`).

use std::path::PathBuf;
use std::sync::Arc;

use arrow_flight::{Action, FlightClient};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use quiver_client::{AdminClient, ClientConfig, Compression, Connector};
use quiver_protocol::{slot_of, EvictRequest, NodeInfo, StatsReport, Topology};
use quiver_testkit::{ACCESS_KEY, SECRET_KEY};
use tonic::transport::Channel;
use url::Url;

use crate::counting::CountingStore;
use crate::error::BoxError;
use crate::origin::{s3_store, NetProcess, Upstream};
use crate::server::{ensure_disk_room, ServerProcess};

mod options;
mod stats;

pub use options::{
    RigOptions, DEFAULT_DISK_MIB, DEFAULT_MEMORY_MIB, DEFAULT_SOURCE, QUICK_DISK_MIB,
};
pub use stats::NodeStats;

const LOCAL_BUCKET: &str = "bench";
/// Everything the benchmark writes goes under this directory of the source.
const DATA_DIR: &str = "quiver-bench";

pub struct Rig {
    work: tempfile::TempDir,
    /// The S3 server with its link, and the client hops: child processes,
    /// stopped when the rig is dropped.
    net: Vec<NetProcess>,
    /// What baselines read through: the emulated link or real S3, counted.
    baseline: Arc<CountingStore>,
    /// Uploads bypass the link: generating data is not what is measured.
    uploader: Arc<dyn ObjectStore>,
    bucket_url: Url,
    /// The source's root inside the bucket.
    root: String,
    source: String,
    servers: Vec<ServerProcess>,
    channels: Vec<Channel>,
    /// Node URLs in `channels` order, to route by the topology.
    urls: Vec<String>,
    topology: Option<Topology>,
    connector: Connector,
    /// The bearer token every call carries, when the nodes need one.
    token: Option<String>,
    ticket_only: bool,
    compression: Compression,
}

/// A client of the local S3 server's bucket at `endpoint`.
fn local_s3(endpoint: &str) -> Result<Arc<dyn ObjectStore>, BoxError> {
    Ok(Arc::new(s3_store(endpoint, LOCAL_BUCKET)?))
}

/// The cluster's topology if the node runs in one (epoch above 0).
async fn cluster_topology(url: &str, connector: &Connector) -> Result<Option<Topology>, BoxError> {
    let mut admin = AdminClient::connect_with(url, connector).await?;
    let t = admin.topology().await?;
    Ok((t.epoch > 0 && t.nodes.len() > 1).then_some(t))
}

/// Waits until every node follows `epoch`.
async fn wait_for_epoch(urls: &[String], epoch: u64) -> Result<(), BoxError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for url in urls {
        let mut admin = AdminClient::connect(url, None).await?;
        while admin.topology().await?.epoch < epoch {
            if std::time::Instant::now() > deadline {
                return Err(format!("{url} did not adopt topology epoch {epoch}").into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// A channel to `url` with the connector's TLS, connected now so that a
/// wrong URL fails the run at its start.
async fn connect(url: &str, connector: &Connector) -> Result<Channel, BoxError> {
    let endpoint = connector
        .channel(url)
        .map_err(|e| format!("bad node URL {url}: {e}"))?;
    let mut ready = tonic::client::Grpc::new(endpoint.clone());
    ready
        .ready()
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    Ok(endpoint)
}

impl Rig {
    pub async fn start(opts: &RigOptions) -> Result<Rig, BoxError> {
        let work = tempfile::tempdir()?;
        if opts.nodes.is_empty() != opts.s3.is_none() {
            return Err(
                "--nodes and --s3 go together: running nodes serve a real S3 prefix".into(),
            );
        }
        if let Some(s3) = &opts.s3 {
            let url = Url::parse(s3).map_err(|e| format!("bad --s3 URL {s3}: {e}"))?;
            if url.scheme() != "s3" || url.host_str().is_none() {
                return Err(format!("--s3 takes s3://bucket/prefix/, not {s3}").into());
            }
            let store: Arc<dyn ObjectStore> =
                Arc::new(AmazonS3Builder::from_env().with_url(s3.as_str()).build()?);
            let mut channels = Vec::new();
            for node in &opts.nodes {
                channels.push(connect(node, &opts.connector).await?);
            }
            let topology = cluster_topology(&opts.nodes[0], &opts.connector).await?;
            let token = opts.connector.token(&opts.nodes[0]).await?;
            let root = url.path().trim_matches('/').to_string();
            return Ok(Rig {
                ticket_only: opts.ticket_only,
                compression: opts.compression,
                work,
                net: Vec::new(),
                baseline: Arc::new(CountingStore::new(store.clone())),
                uploader: store,
                bucket_url: Url::parse(&format!("s3://{}", url.host_str().unwrap_or_default()))?,
                root,
                source: opts.source.clone(),
                servers: Vec::new(),
                channels,
                urls: opts.nodes.clone(),
                topology,
                connector: opts.connector.clone(),
                token,
            });
        }

        let count = opts.local_nodes.max(1);
        ensure_disk_room(
            work.path(),
            (count as u64).saturating_mul(opts.disk_mib.saturating_mul(1 << 20)),
        )?;
        let origin = NetProcess::start(
            &Upstream::S3 {
                dir: work.path().join("s3"),
                buckets: vec![LOCAL_BUCKET.to_string()],
            },
            opts.link.as_slice(),
        )?;
        let direct_endpoint = origin.s3_endpoint()?;
        let endpoint = match origin.links.first() {
            Some(link) => format!("http://{link}"),
            None => direct_endpoint.clone(),
        };
        let mut net = vec![origin];
        let mut servers = Vec::new();
        let mut channels = Vec::new();
        let mut urls = Vec::new();
        for i in 1..=count {
            let dir = work.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&dir)?;
            let cluster = if count > 1 {
                format!(
                    "[cluster]\nnode_id = \"n{i}\"\ntopology = \"{}\"\nreload = \"200ms\"\n\n",
                    work.path().join("topology.json").display()
                )
            } else {
                String::new()
            };
            let hot = opts
                .hot_mib
                .map(|m| format!("hot = \"{m}MiB\"\n"))
                .unwrap_or_default();
            let distributed = opts
                .sql_distributed
                .get(i - 1)
                .map(|m| format!("\n[sql]\ndistributed = \"{m}\"\n"))
                .unwrap_or_default();
            let validate = opts
                .validate_ms
                .map(|ms| format!("validate = \"{ms}ms\"\n"))
                .unwrap_or_default();
            let config = format!(
                "[cache]\nmemory = \"{}MiB\"\ndisk = \"{}MiB\"\ndisk_dir = \"{}\"\n{hot}\n\
                 [[source]]\nname = \"{}\"\nurl = \"s3://{LOCAL_BUCKET}/\"\nendpoint = \"{endpoint}\"\n{validate}\
                 region = \"us-east-1\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n\n\
                 {cluster}[limits]\nmax_concurrent_scans = {}\n{distributed}{}",
                opts.memory_mib,
                opts.disk_mib,
                dir.join("cache").display(),
                opts.source,
                opts.max_scans,
                opts.sql_tables
                    .iter()
                    .map(|(name, path)| format!(
                        "\n[[sql.table]]\nsource = \"{}\"\nname = \"{name}\"\npath = \"{path}\"\n",
                        opts.source
                    ))
                    .collect::<String>(),
            );
            let server = ServerProcess::start(&opts.server_bin, &dir, &config)?;
            let addr = match opts.client_link {
                Some(cfg) => {
                    let hop = NetProcess::start(&Upstream::Addr(server.flight), &[cfg])?;
                    let addr = *hop.links.first().ok_or("the client hop did not start")?;
                    net.push(hop);
                    addr
                }
                None => server.flight,
            };
            let url = format!("grpc://{addr}");
            channels.push(connect(&url, &Connector::default()).await?);
            urls.push(url);
            servers.push(server);
        }
        let topology = if count > 1 {
            let members = urls
                .iter()
                .enumerate()
                .map(|(i, url)| NodeInfo {
                    id: format!("n{}", i + 1),
                    url: url.clone(),
                })
                .collect();
            let mut admin = AdminClient::connect(&urls[0], None).await?;
            let t = admin.init(members, 1).await?;
            wait_for_epoch(&urls, t.epoch).await?;
            Some(t)
        } else {
            None
        };
        Ok(Rig {
            ticket_only: opts.ticket_only,
            compression: opts.compression,
            baseline: Arc::new(CountingStore::new(local_s3(&endpoint)?)),
            uploader: local_s3(&direct_endpoint)?,
            bucket_url: Url::parse(&format!("s3://{LOCAL_BUCKET}"))?,
            root: String::new(),
            source: opts.source.clone(),
            servers,
            channels,
            urls,
            topology,
            connector: Connector::default(),
            token: None,
            work,
            net,
        })
    }

    /// Scratch space for generated files.
    pub fn scratch(&self) -> PathBuf {
        self.work.path().join("staging")
    }

    /// The store baselines read through, with its request counters.
    pub fn baseline(&self) -> &Arc<CountingStore> {
        &self.baseline
    }

    pub fn bucket_url(&self) -> &Url {
        &self.bucket_url
    }

    /// The key of benchmark object `name` inside the bucket.
    pub fn object_path(&self, name: &str) -> Path {
        if self.root.is_empty() {
            Path::from(format!("{DATA_DIR}/{name}"))
        } else {
            Path::from(format!("{}/{DATA_DIR}/{name}", self.root))
        }
    }

    /// The path of benchmark object `name` in Quiver's source.
    pub fn quiver_path(&self, name: &str) -> String {
        format!("{DATA_DIR}/{name}")
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The Flight URLs of the nodes under test.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// A routing client's configuration for the nodes under test, with
    /// their TLS trust and credentials.
    /// What a ticket made by hand asks the nodes to compress with: what
    /// the rig's clients would ask of its first node (all of a rig's nodes
    /// are local, or all remote).
    pub fn ticket_compression(&self) -> Option<quiver_protocol::IpcCompression> {
        self.compression
            .for_node(self.urls.first().map_or("", String::as_str))
    }

    /// Whether Quiver is read by ticket alone; see [`RigOptions::ticket_only`].
    pub fn ticket_only(&self) -> bool {
        self.ticket_only
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new(self.urls.clone());
        cfg.connector = self.connector.clone();
        cfg.compression = self.compression;
        cfg
    }

    /// A Flight client on `channel` carrying the rig's token.
    fn flight(&self, channel: &Channel) -> FlightClient {
        let mut client = FlightClient::new(channel.clone());
        if let Some(token) = &self.token {
            // A token read from a file is checked when it is read; one that
            // is not header text is refused by the node as missing.
            let _ = client.add_header("authorization", &format!("Bearer {token}"));
        }
        client
    }

    /// The channel to node `index` (from 0) and the rig's token, for
    /// clients that are not Flight clients (Flight SQL).
    pub fn channel(&self, index: usize) -> Result<(Channel, Option<String>), BoxError> {
        let channel = self
            .channels
            .get(index)
            .ok_or_else(|| format!("the rig has no node {}", index + 1))?;
        Ok((channel.clone(), self.token.clone()))
    }

    /// Uploads with PUT, as a lake's writer would, so that s3s-fs keeps the
    /// object's ETag instead of re-hashing the file on every GET.
    pub async fn upload(&self, name: &str, bytes: Bytes) -> Result<(), BoxError> {
        self.uploader
            .put(&self.object_path(name), bytes.into())
            .await?;
        Ok(())
    }

    /// A Flight client for the node that owns `name`'s slot: the primary
    /// the topology names, or with several nodes and no topology, one
    /// chosen by slot so each object is cached on one node.
    pub fn client_for(&self, name: &str) -> FlightClient {
        let slot = slot_of(&self.source, &self.quiver_path(name));
        let by_topology = self.topology.as_ref().and_then(|t| {
            let owner = t.owners(slot).first().map(|n| n.url.clone())?;
            self.urls.iter().position(|u| *u == owner)
        });
        let index = by_topology.unwrap_or(slot as usize % self.channels.len());
        self.flight(&self.channels[index])
    }

    pub async fn stats(&self) -> Result<NodeStats, BoxError> {
        let mut sum = NodeStats::default();
        for channel in &self.channels {
            let mut client = self.flight(channel);
            let out: Vec<Bytes> = client
                .do_action(Action::new("stats", Bytes::new()))
                .await?
                .try_collect()
                .await?;
            let report: StatsReport =
                serde_json::from_slice(out.first().ok_or("stats returned nothing")?)?;
            sum.add(&report);
        }
        Ok(sum)
    }

    /// Drops everything the benchmark put in the nodes' caches, footers
    /// included, so the next Quiver run starts cold.
    pub async fn evict_all(&self) -> Result<(), BoxError> {
        let body = serde_json::to_vec(&EvictRequest {
            source: self.source.clone(),
            path: format!("{DATA_DIR}/"),
        })?;
        for channel in &self.channels {
            let mut client = self.flight(channel);
            let _: Vec<Bytes> = client
                .do_action(Action::new("evict", body.clone()))
                .await?
                .try_collect()
                .await?;
        }
        Ok(())
    }

    /// Starts a new peak-memory window on the local nodes.
    pub fn reset_peak_rss(&self) {
        for server in &self.servers {
            server.reset_peak_rss();
        }
    }

    /// The largest local node's peak RSS since the last reset; unknown for
    /// remote nodes.
    pub fn peak_rss(&self) -> Option<u64> {
        self.servers.iter().filter_map(|s| s.peak_rss()).max()
    }

    pub async fn stop(self) -> Result<(), BoxError> {
        for server in self.servers {
            server.stop()?;
        }
        drop(self.net);
        Ok(())
    }
}
