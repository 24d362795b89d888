//! The status page's files, embedded in the binary: no build step, nothing
//! fetched from elsewhere. The HTML shell holds no data; its script fetches
//! `/status.json` (with the admin token the user typed, when the node asks
//! for one) and renders it with text nodes only. Script and style are
//! files of their own, so the Content-Security-Policy can forbid every
//! inline script and style and anything not from this origin.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const HTML: &str = include_str!("status.html");
const SCRIPT: &str = include_str!("status.js");
const STYLE: &str = include_str!("status.css");

/// Same-origin script, style and fetches only; no plugins, frames, forms
/// posting elsewhere or `<base>` rewriting.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn html() -> Response {
    asset("text/html; charset=utf-8", HTML)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
