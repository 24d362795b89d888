//! The span pipeline of a node that exports: the SDK's batch processor, so
//! a request only ever hands a finished span to a bounded queue (spans are
//! dropped when it is full, never waited for), in front of an OTLP/gRPC
//! exporter whose every export has a timeout, and which says when the
//! collector cannot be reached.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tonic::transport::ClientTlsConfig;

/// The `service.name` of every node's spans; `service.instance.id` tells
/// the nodes apart.
pub const SERVICE_NAME: &str = "quiver-server";

/// Longest one export (with its retries) may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Least time between two warnings that exports fail: a collector that is
/// down costs one log line a minute, not one per batch.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A tracer provider exporting to `endpoint`, its spans tagged with
/// `node_id`. The batch processor's queue, batch size and delay are the
/// SDK's defaults, which the standard `OTEL_BSP_*` variables change.
pub fn provider(endpoint: &str, node_id: &str) -> Result<SdkTracerProvider, String> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT);
    if endpoint.starts_with("https://") {
        exporter = exporter.with_tls_config(ClientTlsConfig::new().with_native_roots());
    }
    let exporter = exporter
        .build()
        .map_err(|e| format!("cannot export traces to {endpoint}: {e}"))?;
    let resource = Resource::builder()
        .with_service_name(SERVICE_NAME)
        .with_attributes([
            KeyValue::new("service.instance.id", node_id.to_string()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build();
    let processor = BatchSpanProcessor::builder(Warned::new(exporter, endpoint)).build();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(processor)
        .build())
}

/// An exporter that logs a warning when exports fail, at most once per
/// [`WARN_EVERY`]; the spans of a failed export are dropped.
#[derive(Debug)]
struct Warned<E> {
    inner: E,
    endpoint: String,
    warned: Mutex<Option<Instant>>,
}

impl<E> Warned<E> {
    fn new(inner: E, endpoint: &str) -> Self {
        Warned {
            inner,
            endpoint: endpoint.to_string(),
            warned: Mutex::new(None),
        }
    }

    /// Whether a warning is due now; if so, the next is due in a minute.
    fn due(&self) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        match *warned {
            Some(at) if at.elapsed() < WARN_EVERY => false,
            _ => {
                *warned = Some(Instant::now());
                true
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Warned<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            if self.due() {
                tracing::warn!(
                    collector = %self.endpoint,
                    spans,
                    error = %e,
                    "spans could not be exported and were dropped; requests are not affected (repeats are logged once a minute)"
                );
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_collector_is_reported_once_a_minute() {
        let w = Warned::new((), "http://127.0.0.1:4317");
        assert!(w.due());
        assert!(!w.due());
        *w.warned.lock().unwrap() = Instant::now().checked_sub(WARN_EVERY);
        assert!(w.due());
    }
}
