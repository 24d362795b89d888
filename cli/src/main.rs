//! `quiver`: query and operate a Quiver cache cluster.
//!
//! Every subcommand reaches the cluster through one node (`--endpoint`),
//! learns the slot map from it, and reads each object straight from a node
//! that owns it.
//!
//! One module per group of subcommands; the client library
//! (`quiver-client`) does the reading.

mod cache;
mod cert;
mod cluster;
mod data;
mod output;
mod secret_file;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cert::CertOp;
use clap::{Parser, Subcommand};
use cluster::ClusterOp;
use output::Format;
use quiver_client::{ClientConfig, ClientError, Connector, Credentials, QuiverClient, Tls};

const ABOUT: &str = "Query and operate a Quiver cache cluster: Parquet from object storage, \
filtered and projected by the cache nodes, returned as Arrow.";

const EXAMPLES: &str = "\
Examples (against `target/release/quiver-server` of `cargo build --release --workspace`, which serves ./data as source `local`):
  quiver ls local/tpch/
  quiver query local/tpch/lineitem/ --columns l_orderkey,l_quantity --filter 'l_quantity > 45' --limit 10
  quiver query local/tpch/orders/ --format csv --output orders.csv
  quiver --presigned query lake/events/ --filter 'day = 3'     # cold objects read straight from S3
  quiver sql 'SELECT l_returnflag, count(*) FROM lineitem GROUP BY 1' --table lineitem=local/tpch/lineitem/
  quiver prefetch local/tpch/lineitem/ --columns l_shipdate,l_discount
  quiver stats
  quiver --endpoint grpc+tls://node1:50051 --tls-ca ca.pem --token \"$TOKEN\" cluster show
  quiver cert create-ca && quiver cert create-node --host node1 --ip 10.0.0.1

Environment: QUIVER_ENDPOINT, QUIVER_TOKEN, QUIVER_TLS_CA, QUIVER_ADMIN_TOKEN_FILE, QUIVER_PRESIGNED.";

#[derive(Parser)]
#[command(name = "quiver", version, about = ABOUT, after_help = EXAMPLES)]
struct Cli {
    /// Any node of the cluster (grpc://host:port, or grpc+tls:// for TLS).
    #[arg(
        long,
        global = true,
        visible_alias = "node",
        env = "QUIVER_ENDPOINT",
        default_value = "grpc://127.0.0.1:50051"
    )]
    endpoint: String,
    /// Bearer token, when the nodes require one.
    #[arg(long, global = true, env = "QUIVER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// With --token: authenticate by Flight Handshake as this user (Basic),
    /// as JDBC and ADBC clients do, instead of sending the token directly.
    #[arg(long, global = true)]
    user: Option<String>,
    /// PEM file of CA certificates to trust for grpc+tls:// nodes (default:
    /// the system's roots).
    #[arg(long, global = true, env = "QUIVER_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// File holding the admin token, for prefetch, evict and cluster changes
    /// when auth is on (used instead of --token for those).
    #[arg(long, global = true, env = "QUIVER_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Longest wait for a node's next answer, in seconds.
    #[arg(long, global = true, default_value_t = 60)]
    timeout: u64,
    /// Read cold objects straight from the object store through the
    /// pre-signed URLs nodes hand out (needs a network path to the store).
    #[arg(long, global = true, env = "QUIVER_PRESIGNED")]
    presigned: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read rows of one object or of every object under a prefix.
    #[command(
        after_help = "Examples:\n  quiver query local/tpch/lineitem/ --filter 'l_discount BETWEEN 0.05 AND 0.07' --limit 5\n  quiver query local/tpch/nation/part-0.parquet --format jsonl"
    )]
    Query {
        /// SOURCE/PATH: a source name, then an object key or a prefix ending in /.
        target: String,
        /// Columns to return, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
        /// A SQL condition on one row, evaluated by the nodes
        /// (e.g. "l_shipdate >= DATE '1995-01-01'").
        #[arg(long)]
        filter: Option<String>,
        /// At most this many rows in all.
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Write to FILE (created only once the result is complete).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Run SQL with DataFusion over tables read through Quiver; filters,
    /// projections and limits are pushed to the nodes.
    #[command(
        after_help = "Example:\n  quiver sql 'SELECT o_orderpriority, count(*) FROM orders WHERE o_orderdate >= DATE '\\''1995-01-01'\\'' GROUP BY 1 ORDER BY 1' --table orders=local/tpch/orders/"
    )]
    Sql {
        /// The statement (one SELECT).
        statement: String,
        /// NAME=SOURCE/PATH, once per table the statement uses. A
        /// directory with a `_delta_log/` is read as a Delta table (its
        /// latest version; `SOURCE/PATH/@v3` for version 3,
        /// `SOURCE/PATH/@2026-12-01T00:00:00Z` for the version at a time).
        #[arg(long = "table", required = true)]
        tables: Vec<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List objects with their size, rows and how much of each is cached.
    #[command(after_help = "Examples:\n  quiver ls local\n  quiver ls local/tpch/lineitem/")]
    Ls {
        /// SOURCE or SOURCE/PREFIX.
        target: String,
    },
    /// Cache statistics of every node: usage, hits, misses, origin traffic.
    Stats {
        /// Print the nodes' JSON reports.
        #[arg(long)]
        json: bool,
    },
    /// Load objects into the cache of the nodes that own them.
    #[command(
        after_help = "Example:\n  quiver prefetch local/tpch/lineitem/ --columns l_shipdate,l_extendedprice"
    )]
    Prefetch {
        /// SOURCE/PATH: an object or a prefix ending in /.
        target: String,
        /// Load only these columns (and the footer); default: whole objects.
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
    },
    /// Drop objects from every node's cache; the next read goes to the origin.
    Evict {
        /// SOURCE/PATH: an object or a prefix ending in /.
        target: String,
    },
    /// Read or change the cluster topology.
    Cluster {
        #[command(subcommand)]
        op: ClusterOp,
    },
    /// Create a CA and the node certificates it signs, for TLS.
    Cert {
        #[command(subcommand)]
        op: CertOp,
    },
}

fn read_token_file(path: &PathBuf) -> Result<String, ClientError> {
    let token = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Refused(format!("cannot read {}: {e}", path.display())))?;
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(ClientError::Refused(format!("{} is empty", path.display())));
    }
    Ok(token)
}

/// The connector for reader calls, or for admin calls (the admin token when
/// one is given).
fn connector(cli: &Cli, admin: bool) -> Result<Connector, ClientError> {
    let token = match (&cli.admin_token_file, admin) {
        (Some(path), true) => Some(read_token_file(path)?),
        _ => cli.token.clone(),
    };
    let credentials = match (token, &cli.user) {
        (None, None) => Credentials::None,
        (None, Some(_)) => {
            return Err(ClientError::Refused(
                "--user needs --token (the password of the handshake)".into(),
            ))
        }
        (Some(t), None) => Credentials::Bearer(t),
        (Some(t), Some(user)) => Credentials::Basic {
            user: user.clone(),
            password: t,
        },
    };
    Ok(Connector {
        tls: Tls {
            ca_file: cli.tls_ca.clone(),
        },
        credentials,
    })
}

async fn client(cli: &Cli, admin: bool) -> Result<QuiverClient, ClientError> {
    let mut cfg = ClientConfig::new(vec![cli.endpoint.clone()]);
    cfg.connector = connector(cli, admin)?;
    cfg.timeout = Duration::from_secs(cli.timeout.max(1));
    cfg.accept_presigned = cli.presigned;
    QuiverClient::connect(cfg).await
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    match &cli.command {
        Command::Query {
            target,
            columns,
            filter,
            limit,
            format,
            output,
        } => {
            let args = data::QueryArgs {
                target: target.clone(),
                columns: columns.clone(),
                filter: filter.clone(),
                limit: *limit,
                format: *format,
                output: output.clone(),
            };
            data::query(&client(&cli, false).await?, args).await
        }
        Command::Sql {
            statement,
            tables,
            format,
            output,
        } => {
            let c = client(&cli, false).await?;
            data::sql(&c, statement, tables, *format, output.clone()).await
        }
        Command::Ls { target } => cache::ls(&client(&cli, false).await?, target).await,
        Command::Stats { json } => cache::stats(&client(&cli, false).await?, *json).await,
        Command::Prefetch { target, columns } => {
            cache::prefetch(&client(&cli, true).await?, target, columns.clone()).await
        }
        Command::Evict { target } => cache::evict(&client(&cli, true).await?, target).await,
        Command::Cluster { op } => {
            let connector = connector(&cli, true)?;
            cluster::run(&cli.endpoint, &connector, op.clone()).await
        }
        Command::Cert { op } => cert::run(op.clone()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    quiver_client::tls::use_ring_provider();
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("quiver: internal error: {info}");
    }));
    // `QUIVER_NODE` was the variable's name before `--endpoint`; it still
    // works when `QUIVER_ENDPOINT` is not set.
    if std::env::var_os("QUIVER_ENDPOINT").is_none() {
        if let Some(node) = std::env::var_os("QUIVER_NODE") {
            std::env::set_var("QUIVER_ENDPOINT", node);
        }
    }
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quiver: {e}");
            ExitCode::FAILURE
        }
    }
}
