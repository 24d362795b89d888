//! The `[telemetry]` section: where traces are exported, if anywhere.

use super::error::{invalid, ConfigError};
use super::section::section;

section! {
    /// Trace export (docs/operations.md, "Tracing"): off unless an endpoint
    /// is set, so a node never dials a collector nobody asked for.
    pub struct TelemetryConfig / TelemetryFlags {
        /// Export traces to this OTLP/gRPC collector, e.g. http://127.0.0.1:4317.
        ///
        /// `https://` for TLS with the system's roots.
        otlp_endpoint: Option<String> = None,
            [long = "otlp-endpoint", env = "QUIVER_OTLP_ENDPOINT"];
    }
}

impl TelemetryConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.otlp_endpoint {
            let url = url::Url::parse(endpoint)
                .map_err(|e| invalid("telemetry.otlp_endpoint", format!("`{endpoint}`: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty)
            {
                return Err(invalid(
                    "telemetry.otlp_endpoint",
                    format!("`{endpoint}` is not an OTLP/gRPC endpoint; use http://host:4317 or https://host:4317"),
                ));
            }
        }
        Ok(())
    }
}
