//! What a node reports beyond its metrics: its log lines, and, when
//! `telemetry.otlp_endpoint` is set, its spans, exported over OTLP/gRPC
//! (docs/operations.md, "Tracing").
//!
//! Both go through `tracing`'s one global subscriber, so they belong to the
//! process, not to a [`crate::RunningNode`]: the binary sets them up once
//! with [`Telemetry::init`] and flushes the spans with
//! [`Telemetry::shutdown`] after the node has stopped. Several nodes in one
//! process (the in-process tests) share its logs and export nothing; the
//! test of traces across nodes runs them as processes.
//!
//! `export` builds the span pipeline, `propagation` continues a caller's
//! trace on each request, and `tasks` keeps DataFusion's own tasks inside
//! the span that started them.

mod export;
pub mod propagation;
mod tasks;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing::Subscriber;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::Config;

pub use export::SERVICE_NAME;

/// Longest a shutdown waits for the last spans to reach the collector: a
/// collector that is gone must not hold the node's exit.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The process's telemetry; [`Telemetry::shutdown`] exports what is left.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber: log lines in `log_format` (`text` or
    /// `json`) filtered by `QUIVER_LOG` (default [`DEFAULT_LOG`]), and with an OTLP
    /// endpoint, the spans of Quiver's own crates at `info` and above,
    /// whatever `QUIVER_LOG` keeps in the log. Must run inside the Tokio
    /// runtime: the exporter's channel lives on it.
    pub fn init(log_format: &str, config: &Config) -> Result<Telemetry, String> {
        let provider = match &config.telemetry.otlp_endpoint {
            Some(endpoint) => Some(export::provider(endpoint, &config.node_id())?),
            None => None,
        };
        let spans = provider.as_ref().map(|p| {
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer(SERVICE_NAME))
                .with_filter(quiver_spans())
        });
        tracing_subscriber::registry()
            .with(spans)
            .with(log_layer(log_format))
            .try_init()
            .map_err(|e| format!("cannot set up logging: {e}"))?;
        if provider.is_some() {
            // Incoming `traceparent` headers are read, and calls to peers
            // and Flight SQL's scans write them, only while spans leave the
            // node: a node that exports nothing has no trace to continue.
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            tasks::follow_datafusion_tasks();
        }
        Ok(Telemetry { provider })
    }

    /// Exports the spans still queued, within [`FLUSH_TIMEOUT`].
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The SDK waits on a thread of its own; the runtime stays free to
        // drive the export's connection meanwhile.
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT))
                .await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the last spans could not be exported"),
            Err(e) => tracing::warn!(error = %e, "exporting the last spans failed"),
        }
    }
}

/// The spans exported: Quiver's own, not its libraries' internals.
fn quiver_spans() -> Targets {
    Targets::new()
        .with_target("quiver_server", LevelFilter::INFO)
        .with_target("quiver_sql", LevelFilter::INFO)
        .with_target("quiver_client", LevelFilter::INFO)
}

/// What the log keeps without `QUIVER_LOG`: `info`, but the Delta kernel
/// and deltalake-core only from `warn`, as they log every snapshot they
/// build (several lines per table at each catalog refresh).
const DEFAULT_LOG: &str = "info,buoyant_kernel=warn,deltalake_core=warn";

/// The log lines, filtered on their own so that a quieter `QUIVER_LOG`
/// never thins out the exported spans.
fn log_layer<S>(format: &str) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let filter =
        EnvFilter::try_from_env("QUIVER_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    if format == "json" {
        tracing_subscriber::fmt::layer()
            .json()
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_filter(filter).boxed()
    }
}
