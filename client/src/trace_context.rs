//! The caller's trace context on outgoing Flight calls, so that a node's
//! spans join the caller's trace (docs/operations.md, "Tracing").
//!
//! The context is OpenTelemetry's current one, and it is written by the
//! propagator the application installed with
//! `opentelemetry::global::set_text_map_propagator` (W3C `traceparent` and
//! `tracestate` with `opentelemetry_sdk`'s `TraceContextPropagator`). With
//! none installed, OpenTelemetry's default writes nothing, so a program that
//! does not trace pays only a call that returns at once. A node installs the
//! W3C propagator when it exports traces, so that its calls to peers and its
//! Flight SQL scans carry its own spans' context.

use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::Context;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

/// gRPC metadata as the propagator's carrier.
struct Headers<'a>(&'a mut MetadataMap);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        // A header gRPC cannot carry is left out: tracing must never fail
        // a call.
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Replaces the trace headers in `metadata` with the current context's. A
/// client kept across calls is injected again before each one, so no call
/// carries an earlier call's parent.
pub fn inject(metadata: &mut MetadataMap) {
    let cx = opentelemetry::Context::current();
    opentelemetry::global::get_text_map_propagator(|propagator| write(propagator, &cx, metadata));
}

fn write(propagator: &dyn TextMapPropagator, cx: &Context, metadata: &mut MetadataMap) {
    for field in propagator.fields() {
        metadata.remove(field);
    }
    propagator.inject_context(cx, &mut Headers(metadata));
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    use super::*;

    #[test]
    fn the_default_propagator_writes_nothing() {
        let mut metadata = MetadataMap::new();
        inject(&mut metadata);
        assert!(metadata.is_empty());
    }

    #[test]
    fn each_call_carries_the_current_context_and_no_earlier_one() {
        let w3c = TraceContextPropagator::new();
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(span);
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", "Bearer t".parse().unwrap());
        write(&w3c, &cx, &mut metadata);
        assert_eq!(
            metadata.get("traceparent").unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        // Outside any span, the earlier parent is removed, not kept.
        write(&w3c, &Context::new(), &mut metadata);
        assert!(metadata.get("traceparent").is_none());
        assert_eq!(metadata.get("authorization").unwrap(), "Bearer t");
    }
}
