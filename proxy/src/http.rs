//! The proxy's HTTP endpoint.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/ping` | `OK` |
//! | GET | `/routing` | JSON: the routing tables in effect (per namespace: epoch, partitions, hash tags, each partition's leader) |
//! | GET | `/metrics` | Prometheus text format |
//!
//! Anything else answers 404 (unknown path) or 405 (wrong method) with `{"message": ...}`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::ProxyMetrics;
use crate::routing::SharedTables;

/// What the handlers read.
pub struct HttpContext {
    /// Metrics.
    pub metrics: Arc<ProxyMetrics>,
    /// The routing tables.
    pub tables: Arc<SharedTables>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

async fn ping() -> &'static str {
    "OK"
}

async fn routing(State(ctx): State<Arc<HttpContext>>) -> Response {
    let tables = ctx.tables.load();
    let mut namespaces: Vec<_> = tables.namespaces().collect();
    namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    let namespaces: Vec<_> = namespaces
        .into_iter()
        .map(|ns| {
            json!({
                "namespace": ns.name,
                "epoch": ns.epoch,
                "partitions": ns.partitions,
                "hash_tags": ns.hash_tags,
                "leaders": ns.leaders.iter().map(|l| l.map(|a| a.to_string())).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({
        "default_namespace": tables.default_name(),
        "namespaces": namespaces,
    }))
    .into_response()
}

async fn metrics(State(ctx): State<Arc<HttpContext>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
        .into_response()
}

/// The router.
pub fn router(ctx: Arc<HttpContext>) -> Router {
    Router::new()
        .route("/ping", get(ping))
        .route("/routing", get(routing))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(ctx)
}

/// Serves HTTP on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<HttpContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(e) = axum::serve(listener, router(ctx))
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
