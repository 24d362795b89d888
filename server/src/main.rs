use std::process::ExitCode;

use clap::Parser;
use quiver_sample as sample;
use quiver_server::config::{Config, Flags, SourceConfig};
use quiver_server::telemetry::Telemetry;
use quiver_server::RunningNode;

/// With no source configured, serve the data directory as source `local`,
/// writing a TPC-H sample there first if it holds no Parquet.
fn embedded_default(config: &mut Config, flags: &Flags) -> Result<(), String> {
    if !config.sources.is_empty() {
        return Ok(());
    }
    let dir = &flags.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if !sample::has_parquet(dir) {
        tracing::info!(dir = %dir.display(), scale = flags.sample_scale, "writing a TPC-H sample");
        let tables = sample::write_tpch(dir, flags.sample_scale).map_err(|e| e.to_string())?;
        for (table, rows) in tables {
            tracing::info!(table, rows, "sample table written");
        }
    }
    let abs = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let url = url::Url::from_directory_path(&abs)
        .map_err(|_| format!("{} is not an absolute directory", abs.display()))?;
    config
        .sources
        .push(SourceConfig::new("local", url.as_str()));
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Worker stacks above tokio's 2 MiB default: DataFusion plans expressions
/// recursively, and filters are only bounded, not tiny.
const WORKER_STACK: usize = 8 << 20;

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK)
        .build();
    match runtime {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("quiver-server: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let flags = Flags::parse();
    let mut config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("quiver-server: {e}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match Telemetry::init(&flags.log_format, &config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("quiver-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = embedded_default(&mut config, &flags) {
        eprintln!("quiver-server: {e}");
        return ExitCode::from(2);
    }
    let open = config.auth.tokens_file.is_none() && config.auth.admin_token_file.is_none();
    if open && config.server.insecure && !config.server.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.server.listen,
            "--insecure: serving beyond loopback without tokens; anyone who can reach this address can read every source"
        );
    }
    if config.server.advertise.is_none() && config.server.listen.ip().is_unspecified() {
        tracing::warn!(
            listen = %config.server.listen,
            "no server.advertise: clients are told to dial {}, which only works on this machine; set --advertise to the address clients reach",
            config.advertise_url()
        );
    }
    let node = match RunningNode::start(config.clone()).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("quiver-server: {e}");
            return ExitCode::from(2);
        }
    };
    let source = &config.sources[0].name;
    tracing::info!(flight = %node.flight_addr, admin = %node.admin_addr, node_id = %node.core.node_id, "serving");
    println!(
        "Quiver is serving source `{source}` on grpc://{flight} (metrics on http://{admin}/metrics).\n\
         Query it from Python:\n\
         \n  import json, pyarrow.flight as fl\n  c = fl.connect(\"grpc://{flight}\")\n  \
         info = c.get_flight_info(fl.FlightDescriptor.for_command(json.dumps({{\"source\": \"{source}\", \"path\": \"tpch/lineitem/\", \"columns\": [\"l_orderkey\", \"l_quantity\"], \"filter\": \"l_quantity > 45\"}})))\n  \
         print(c.do_get(info.endpoints[0].ticket).read_all())\n",
        flight = node.flight_addr,
        admin = node.admin_addr,
    );
    wait_for_signal().await;
    tracing::info!("shutting down: letting running scans finish and flushing the cache");
    let stopped = node.shutdown().await;
    // After the node: the spans of the requests it let finish go too.
    telemetry.shutdown().await;
    match stopped {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quiver-server: {e}");
            ExitCode::FAILURE
        }
    }
}
