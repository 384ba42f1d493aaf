//! The storage node's HTTP endpoint: liveness, a JSON status, and Prometheus metrics.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/ping` | `OK` |
//! | GET | `/status` | JSON: version, uptime, node id, and per hosted partition its applied index, key counts and raft status (role, term, leader, commit, replicas, lag) |
//! | GET | `/metrics` | Prometheus text format |
//!
//! Admin operations (membership, hosting replicas) are in [`super::admin`]. Anything else
//! answers 404 (unknown path) or 405 (wrong method) with `{"message": ...}`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::admin;
use crate::config::Secret;
use crate::hosting::Hosting;
use crate::node_stats::NodeStats;
use crate::replication::snapshot::SnapshotStats;
use crate::replication::store_loop::StoreHandle;
use crate::replication::transport::TransportStats;
use crate::routing::SharedRouting;

/// What the HTTP handlers read.
pub struct HttpContext {
    /// This node's id.
    pub node_id: u64,
    /// Node counters.
    pub stats: Arc<NodeStats>,
    /// Raft transport counters, mirrored into the metrics on each scrape.
    pub transport: Arc<TransportStats>,
    /// Snapshot counters, likewise.
    pub snapshots: Arc<SnapshotStats>,
    /// The store loop (raft status).
    pub store: StoreHandle,
    /// The cluster's partitions (admin operations name them).
    pub routing: Arc<SharedRouting>,
    /// Starts and deletes replicas.
    pub hosting: Arc<Hosting>,
    /// Required by admin operations when set.
    pub admin_token: Option<Secret>,
}

/// A JSON error answer.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    zankv_process::json_error(status, message)
}

async fn ping() -> &'static str {
    "OK"
}

async fn status(State(ctx): State<Arc<HttpContext>>) -> Response {
    let Some(raft) = ctx.store.status().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "store loop stopped");
    };
    let mut partitions = Vec::new();
    for (_, name, worker) in ctx.store.workers().await {
        let Some(state) = worker.state() else {
            return error(StatusCode::SERVICE_UNAVAILABLE, "partition worker stopped");
        };
        let (namespace, partition) = name.rsplit_once('-').unwrap_or((&name, "0"));
        partitions.push(json!({
            "name": name,
            "namespace": namespace,
            "partition": partition.parse::<u32>().unwrap_or(0),
            "applied_index": state.applied_index,
            "keys": state.keys,
            "expires": state.expires,
            "raft": raft.iter().find(|g| g.name == name),
        }));
    }
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node_id": ctx.node_id,
        "uptime_seconds": ctx.stats.started.elapsed().as_secs(),
        "partitions": partitions,
    }))
    .into_response()
}

async fn metrics(State(ctx): State<Arc<HttpContext>>) -> Response {
    ctx.stats.mirror(&ctx.transport, &ctx.snapshots);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.stats.prometheus_text(),
    )
        .into_response()
}

/// The router, separate from serving so tests can call it directly.
pub fn router(ctx: Arc<HttpContext>) -> Router {
    zankv_process::with_json_fallbacks(
        Router::new()
            .route("/ping", get(ping))
            .route("/status", get(status))
            .route("/metrics", get(metrics))
            .merge(admin::routes()),
    )
    .with_state(ctx)
}

/// Serves HTTP on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, ctx: Arc<HttpContext>, shutdown: watch::Receiver<bool>) {
    zankv_process::serve_http(listener, router(ctx), shutdown).await
}
