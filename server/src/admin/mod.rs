//! Admin HTTP: `/metrics` for Prometheus, `/health` for liveness, `/ready`
//! for load balancers (not ready while starting or draining), and the
//! status page: `/` with its script and style, which render
//! `/status.json`. The page's files are open, as they hold no data;
//! `/status.json` needs what the `prefetch` and `evict` actions need (the
//! admin token when one is configured, else a reader token when those are),
//! sent as `Authorization: Bearer`.

mod nodes;
mod page;
mod status;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use quiver_protocol::Caller;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::metadata::MetadataMap;

pub use nodes::{NodeHealth, PROBE_TIMEOUT};
pub use page::CSP;
pub use status::Status;

use crate::error::QuiverError;
use crate::node_core::NodeCore;

/// What the admin handlers share.
struct Admin {
    core: Arc<NodeCore>,
    probes: nodes::NodeProbes,
}

async fn metrics(State(admin): State<Arc<Admin>>) -> impl IntoResponse {
    let core = &admin.core;
    core.chunks.usage();
    core.scanner.hot().usage();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        core.metrics.render(),
    )
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(admin): State<Arc<Admin>>) -> (StatusCode, &'static str) {
    if admin.core.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

fn json_response(code: StatusCode, body: Vec<u8>) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// Checks the request's bearer token as the Flight actions that change
/// what a node holds do (the same constant-time comparisons). Only the
/// `authorization` header is handed over.
fn authorize(core: &NodeCore, headers: &HeaderMap) -> Result<(), QuiverError> {
    let mut only = HeaderMap::new();
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        only.insert(header::AUTHORIZATION, v.clone());
    }
    core.auth
        .check(&MetadataMap::from_headers(only), Caller::Admin)
}

/// 401 for a missing or unknown token, 403 for a token that is valid but
/// not the admin token.
fn refusal(err: &QuiverError) -> Response {
    let code = match err {
        QuiverError::PermissionDenied(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    let body = serde_json::json!({ "error": err.to_string() }).to_string();
    let mut response = json_response(code, body.into_bytes());
    if code == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"quiver-admin\""),
        );
    }
    response
}

async fn status_json(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&admin.core, &headers) {
        tracing::debug!(error = %e, "a /status.json request was refused");
        return refusal(&e);
    }
    let snapshot = status::gather(&admin.core, &admin.probes).await;
    match serde_json::to_vec(&snapshot) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the status snapshot");
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"error":"the status could not be encoded"}"#.to_vec(),
            )
        }
    }
}

pub async fn serve(listener: TcpListener, core: Arc<NodeCore>, mut stop: watch::Receiver<bool>) {
    let admin = Arc::new(Admin {
        core,
        probes: nodes::NodeProbes::default(),
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/", get(page::html))
        .route("/status.js", get(page::script))
        .route("/status.css", get(page::style))
        .route("/status.json", get(status_json))
        .with_state(admin);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "the admin server stopped with an error");
    }
}
