//! Admin HTTP: `/metrics` for Prometheus, `/health` for liveness and
//! `/ready` for load balancers (not ready while starting or draining).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node_core::NodeCore;

async fn metrics(State(core): State<Arc<NodeCore>>) -> impl IntoResponse {
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

async fn ready(State(core): State<Arc<NodeCore>>) -> (StatusCode, &'static str) {
    if core.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

pub async fn serve(listener: TcpListener, core: Arc<NodeCore>, mut stop: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(core);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "the admin server stopped with an error");
    }
}
