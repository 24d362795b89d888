//! A caller's trace continued on this node: the W3C `traceparent` and
//! `tracestate` of a request's gRPC metadata (Flight headers) become the
//! parent of its request span. The other direction, writing this node's
//! context into its calls to peers, is the client library's
//! `quiver_client::trace_context`, which nodes use for every such call.

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use tonic::metadata::{KeyRef, MetadataMap};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// gRPC metadata as the propagator's carrier.
struct Headers<'a>(&'a MetadataMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                KeyRef::Ascii(k) => Some(k.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Makes the caller's span, when `headers` name a valid one, the parent of
/// `span`, which must not have been entered yet. Without one (or while no
/// spans are exported) `span` stays where it is.
pub fn continue_trace(span: &tracing::Span, headers: &MetadataMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    if parent.span().span_context().is_valid() {
        // Fails only when no layer records spans for OpenTelemetry: then
        // there is no trace to continue.
        let _ = span.set_parent(parent);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    use super::*;

    #[test]
    fn reads_the_w3c_headers_of_a_request() {
        let mut headers = MetadataMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        headers.insert("tracestate", "vendor=x".parse().unwrap());
        headers.insert_bin(
            "trace-bin",
            tonic::metadata::MetadataValue::from_bytes(b"\0"),
        );
        let cx = TraceContextPropagator::new().extract(&Headers(&headers));
        let parent = cx.span().span_context().clone();
        assert!(parent.is_valid() && parent.is_remote());
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(parent.trace_state().header(), "vendor=x");
        let mut bad = MetadataMap::new();
        bad.insert("traceparent", "00-not-a-trace-01".parse().unwrap());
        let cx = TraceContextPropagator::new().extract(&Headers(&bad));
        assert!(!cx.span().span_context().is_valid());
    }
}
