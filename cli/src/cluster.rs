//! `quiver cluster init|show|add-node|remove-node|rebalance`: read and change
//! the topology through any node; changes need the admin token when auth is
//! on.

use clap::Subcommand;
use quiver_client::{AdminClient, ClientError, Connector};
use quiver_protocol::{NodeInfo, Topology, SLOT_COUNT};

#[derive(Clone, Subcommand)]
pub enum ClusterOp {
    /// Print the topology: epoch, nodes with their slot counts, slot ranges.
    Show {
        /// Print the topology document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the first topology: slots split evenly over the nodes.
    #[command(
        after_help = "Example:\n  quiver cluster init --nodes n1=grpc://10.0.0.1:50051,n2=grpc://10.0.0.2:50051 --replication 2"
    )]
    Init {
        /// The nodes as ID=URL, comma-separated (e.g. n1=grpc://10.0.0.1:50051).
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
        /// Owners per slot: the primary plus replicas.
        #[arg(long, default_value_t = 1)]
        replication: usize,
    },
    /// Add a node that owns nothing yet; `rebalance` then moves slots to it.
    #[command(
        after_help = "Example:\n  quiver cluster add-node --id n4 --url grpc://10.0.0.4:50051 && quiver cluster rebalance"
    )]
    AddNode {
        #[arg(long)]
        id: String,
        /// The Flight URL clients and peers reach it at.
        #[arg(long)]
        url: String,
    },
    /// Remove a node; its slots go to the others.
    RemoveNode {
        #[arg(long)]
        id: String,
    },
    /// Even out slots across nodes, moving as few as possible.
    Rebalance,
}

fn parse_node(spec: &str) -> Result<NodeInfo, ClientError> {
    let (id, url) = spec.split_once('=').ok_or_else(|| {
        ClientError::Refused(format!(
            "`{spec}` is not ID=URL (e.g. n1=grpc://10.0.0.1:50051)"
        ))
    })?;
    Ok(NodeInfo {
        id: id.trim().to_string(),
        url: url.trim().to_string(),
    })
}

fn describe(t: &Topology) -> String {
    let mut out = format!(
        "epoch {}, replication {}, {} node(s)\n\nnode            slots  url\n",
        t.epoch,
        t.replication,
        t.nodes.len()
    );
    for n in &t.nodes {
        let primary: usize = t
            .slots
            .iter()
            .filter(|r| r.owners.first() == Some(&n.id))
            .map(|r| usize::from(r.end - r.start) + 1)
            .sum();
        out.push_str(&format!("{:<15} {primary:>6}  {}\n", n.id, n.url));
    }
    out.push_str("\nslots          owners (primary first)\n");
    for r in &t.slots {
        out.push_str(&format!(
            "{:>5}..={:<5}  {}\n",
            r.start,
            r.end,
            r.owners.join(", ")
        ));
    }
    out
}

/// Slots whose primary differs between two topologies.
fn moved(before: &Topology, after: &Topology) -> usize {
    (0..SLOT_COUNT)
        .filter(|&s| {
            let a = before.owners(s).first().map(|n| n.id.clone());
            let b = after.owners(s).first().map(|n| n.id.clone());
            a != b
        })
        .count()
}

pub async fn run(endpoint: &str, connector: &Connector, op: ClusterOp) -> Result<(), ClientError> {
    let mut admin = AdminClient::connect_with(endpoint, connector).await?;
    match op {
        ClusterOp::Show { json } => {
            let t = admin.topology().await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&t)
                        .map_err(|e| ClientError::Decode(e.to_string()))?
                );
            } else {
                print!("{}", describe(&t));
            }
        }
        ClusterOp::Init { nodes, replication } => {
            let nodes = nodes
                .iter()
                .map(|s| parse_node(s))
                .collect::<Result<Vec<_>, _>>()?;
            let t = admin.init(nodes, replication).await?;
            println!("initialised the cluster at epoch {}", t.epoch);
            print!("{}", describe(&t));
        }
        ClusterOp::AddNode { id, url } => {
            let node = NodeInfo {
                id: id.clone(),
                url,
            };
            let (_, t) = admin.change(|t| t.with_node(node.clone())).await?;
            println!(
                "added {id} at epoch {}; it owns no slots until `quiver cluster rebalance`",
                t.epoch
            );
        }
        ClusterOp::RemoveNode { id } => {
            let (before, t) = admin.change(|t| t.without_node(&id)).await?;
            println!(
                "removed {id} at epoch {}; {} slots moved to the other nodes",
                t.epoch,
                moved(&before, &t)
            );
        }
        ClusterOp::Rebalance => {
            let (before, t) = admin.change(Topology::rebalance).await?;
            println!(
                "rebalanced at epoch {}; {} slots moved",
                t.epoch,
                moved(&before, &t)
            );
            print!("{}", describe(&t));
        }
    }
    Ok(())
}
