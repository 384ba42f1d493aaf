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
use axum::http::header;
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
                "stale_reads": ns.stale_reads,
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
    zankv_process::with_json_fallbacks(
        Router::new()
            .route("/ping", get(ping))
            .route("/routing", get(routing))
            .route("/metrics", get(metrics)),
    )
    .with_state(ctx)
}

/// Serves HTTP on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, ctx: Arc<HttpContext>, shutdown: watch::Receiver<bool>) {
    zankv_process::serve_http(listener, router(ctx), shutdown).await
}
