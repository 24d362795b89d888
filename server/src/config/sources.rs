//! The `[[source]]` tables: each store the node may read, with its
//! credentials, timeouts, retries and circuit breaker, and the checks on
//! each source and on the list (no name twice).

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use super::error::{invalid, ConfigError};
use super::values::Span;

#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    /// `s3://bucket/prefix/` or `file:///dir/`.
    pub url: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// How long a LIST or HEAD answer (ETag, size) is trusted.
    #[serde(default = "default_validate")]
    pub validate: Span,
    /// Longest wait for a connection to the origin.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Span,
    /// Longest one origin request may take, body included.
    #[serde(default = "default_origin_timeout")]
    pub request_timeout: Span,
    /// Retries of a failed origin request (server errors, timeouts, resets),
    /// with exponential backoff from 100 ms up to 5 s.
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// Origin requests in a row that fail (after their retries) before the
    /// source's circuit opens and misses fail fast; 0 never opens it.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open circuit fails misses at once before one request
    /// probes the origin again.
    #[serde(default = "default_breaker_cooldown")]
    pub breaker_cooldown: Span,
    /// How long an object the origin said does not exist is remembered, so
    /// that repeated requests for it cost no origin request.
    #[serde(default = "default_missing_ttl")]
    pub missing_ttl: Span,
    /// Least time between two origin HEADs of one object forced by clients
    /// (a ticket naming an ETag the node has not seen).
    #[serde(default = "default_revalidate_interval")]
    pub revalidate_interval: Span,
}

fn default_breaker_failures() -> u32 {
    5
}

fn default_breaker_cooldown() -> Span {
    Span(Duration::from_secs(10))
}

fn default_missing_ttl() -> Span {
    Span(Duration::from_secs(5))
}

fn default_revalidate_interval() -> Span {
    Span(Duration::from_secs(1))
}

fn default_connect_timeout() -> Span {
    Span(Duration::from_secs(5))
}

fn default_origin_timeout() -> Span {
    Span(Duration::from_secs(60))
}

fn default_retries() -> usize {
    3
}

fn default_validate() -> Span {
    Span(Duration::from_secs(30))
}

/// Written by hand so that a logged or printed config never shows the
/// secret key.
impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "******"),
            )
            .field("validate", &self.validate)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retries", &self.retries)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("missing_ttl", &self.missing_ttl)
            .field("revalidate_interval", &self.revalidate_interval)
            .finish()
    }
}

impl SourceConfig {
    pub fn new(name: &str, url: &str) -> Self {
        SourceConfig {
            name: name.to_string(),
            url: url.to_string(),
            region: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            validate: default_validate(),
            connect_timeout: default_connect_timeout(),
            request_timeout: default_origin_timeout(),
            retries: default_retries(),
            breaker_failures: default_breaker_failures(),
            breaker_cooldown: default_breaker_cooldown(),
            missing_ttl: default_missing_ttl(),
            revalidate_interval: default_revalidate_interval(),
        }
    }
}

/// Checks every source and that no name is configured twice.
pub(super) fn validate_sources(sources: &[SourceConfig]) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    for s in sources {
        s.validate_name()?;
        if !names.insert(s.name.as_str()) {
            return Err(invalid(
                "source.name",
                format!("`{}` is configured twice", s.name),
            ));
        }
        s.validate()?;
    }
    Ok(())
}

impl SourceConfig {
    fn validate_name(&self) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "source.name",
                format!("`{}` must be non-empty letters, digits, _ or -", self.name),
            ));
        }
        Ok(())
    }

    /// Checks one source's settings but its name.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.connect_timeout.0.is_zero() || self.request_timeout.0.is_zero() {
            return Err(invalid(
                "source.request_timeout",
                format!(
                    "source {}: connect_timeout and request_timeout must be above zero",
                    self.name
                ),
            ));
        }
        if self.retries > 10 {
            return Err(invalid(
                "source.retries",
                format!("source {}: at most 10 retries", self.name),
            ));
        }
        if self.breaker_failures > 0 && self.breaker_cooldown.0.is_zero() {
            return Err(invalid(
                "source.breaker_cooldown",
                format!(
                    "source {}: must be above zero while breaker_failures is set",
                    self.name
                ),
            ));
        }
        if self.missing_ttl.0 > self.validate.0.max(Duration::from_secs(60)) {
            return Err(invalid(
                "source.missing_ttl",
                format!(
                    "source {}: at most validate or 1m, so a new object shows up soon",
                    self.name
                ),
            ));
        }
        let url = url::Url::parse(&self.url).map_err(|e| {
            invalid(
                "source.url",
                format!("`{}` of source {}: {e}", self.url, self.name),
            )
        })?;
        if !matches!(url.scheme(), "s3" | "file") {
            return Err(invalid(
                "source.url",
                format!(
                    "`{}` of source {}: only s3:// and file:// are supported",
                    self.url, self.name
                ),
            ));
        }
        if url.scheme() == "s3" && url.host_str().unwrap_or("").is_empty() {
            return Err(invalid(
                "source.url",
                format!("`{}` of source {} names no bucket", self.url, self.name),
            ));
        }
        Ok(())
    }
}
