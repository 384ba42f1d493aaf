//! The storage node's admin operations on its HTTP endpoint: what PD (or an operator)
//! uses to move replicas. Every operation is idempotent: asking again for what already
//! holds answers `"outcome": "unchanged"`.
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/nodes/{id}?raft_addr=H:P&redis_addr=H:P` | declare (or move) a node; kept across restarts |
//! | POST | `/partitions/{name}/replica?replica=R` or `?bootstrap=true` | host a new, empty replica of partition `name` here: the replica `R` the leader answered when it added this node as a learner (it fills from the leader's snapshot), or, with `bootstrap`, one of a new group's initial voters (the partition's `replicas` in the layout) |
//! | DELETE | `/partitions/{name}/replica[?force=true][&replica=R]` | delete this node's replica (after the leader removed it); with `replica`, only if that is the replica hosted (otherwise `unchanged`) |
//! | POST | `/partitions/{name}/learners/{node}` | at the leader: add `node` as a learner; answers its new `"replica"` id |
//! | POST | `/partitions/{name}/voters/{node}` | at the leader: promote learner `node` (once caught up) |
//! | DELETE | `/partitions/{name}/members/{node}` | at the leader: remove `node`'s replica from the group |
//! | POST | `/partitions/{name}/leader/{node}` | at the leader: hand leadership to voter `node` |
//!
//! Answers: 200 `{"partition", "op", "outcome"}`; errors are JSON `{"message": ...}`: 400
//! bad parameters, 401 missing or wrong token (when `admin_token` is set, every call needs
//! `Authorization: Bearer <token>`), 404 unknown partition or not hosted here, 409 not the
//! leader (with `"leader"`) or refused, 503 stopping, 504 proposed but not seen done in
//! time (ask again).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::http::{error, HttpContext};
use crate::replication::membership::{AdminError, AdminOp, AdminOutcome};
use crate::replication::store_loop::{HostAs, StoreRequest, UnhostWhen};
use crate::routing::GroupLayout;

/// The admin routes.
pub fn routes() -> Router<Arc<HttpContext>> {
    Router::new()
        .route("/nodes/{id}", post(add_node))
        .route(
            "/partitions/{name}/replica",
            post(host_replica).delete(remove_replica),
        )
        .route("/partitions/{name}/learners/{node}", post(add_learner))
        .route("/partitions/{name}/voters/{node}", post(promote))
        .route("/partitions/{name}/members/{node}", delete(remove_member))
        .route("/partitions/{name}/leader/{node}", post(transfer_leader))
}

/// An error answer: its status and `{"message": ...}` (plus `"leader"` when this node does
/// not lead).
pub struct ApiError {
    status: StatusCode,
    message: String,
    leader: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            leader: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.leader {
            Some(leader) => (
                self.status,
                Json(json!({ "message": self.message, "leader": leader })),
            )
                .into_response(),
            None => error(self.status, &self.message),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        let status = match e {
            AdminError::NotHosted => StatusCode::NOT_FOUND,
            AdminError::NotLeader(_) | AdminError::Refused(_) => StatusCode::CONFLICT,
            AdminError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            AdminError::Stopping => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let leader = match e {
            AdminError::NotLeader(id) => Some(id),
            _ => None,
        };
        ApiError {
            status,
            message: e.to_string(),
            leader,
        }
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// Refuses the call unless it carries the admin token (when one is configured).
fn authorize(ctx: &HttpContext, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &ctx.admin_token else {
        return Ok(());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if token.matches(g) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong admin token")),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this operation needs the header Authorization: Bearer <admin_token>",
        )),
    }
}

fn partition(ctx: &HttpContext, name: &str) -> Result<GroupLayout, ApiError> {
    ctx.routing.load().layout_by_name(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no partition named {name:?} (expected <namespace>-<number>)"),
        )
    })
}

fn node_id(text: &str) -> Result<u64, ApiError> {
    match text.parse::<u64>() {
        Ok(id) if id > 0 && id <= zankv_pd_api::MAX_NODE_ID => Ok(id),
        _ => Err(ApiError::bad_request(format!(
            "node id must be an integer within 1..={}, not {text:?}",
            zankv_pd_api::MAX_NODE_ID
        ))),
    }
}

fn answer(name: &str, op: &str, result: Option<Result<AdminOutcome, AdminError>>) -> ApiResult {
    let outcome = result.unwrap_or(Err(AdminError::Stopping))?;
    Ok(Json(
        json!({ "partition": name, "op": op, "outcome": outcome }),
    ))
}

async fn membership(
    ctx: Arc<HttpContext>,
    headers: HeaderMap,
    (name, node): (String, String),
    make: fn(u64) -> AdminOp,
    op: &str,
) -> ApiResult {
    authorize(&ctx, &headers)?;
    let layout = partition(&ctx, &name)?;
    let node = node_id(&node)?;
    let result = ctx
        .store
        .ask(|reply| StoreRequest::Admin {
            group: layout.id,
            op: make(node),
            reply,
        })
        .await;
    let Json(mut answered) = answer(&name, op, result)?;
    if matches!(make(node), AdminOp::AddLearner(_)) {
        // The id the new replica must be hosted with on its node.
        let replica = ctx.store.status().await.and_then(|groups| {
            let g = groups.into_iter().find(|g| g.group == layout.id)?;
            g.member_replicas
                .into_iter()
                .find(|r| zankv_pd_api::node_of(*r) == node)
        });
        answered["replica"] = json!(replica);
    }
    Ok(Json(answered))
}

async fn add_learner(
    State(ctx): State<Arc<HttpContext>>,
    headers: HeaderMap,
    Path(p): Path<(String, String)>,
) -> ApiResult {
    membership(ctx, headers, p, AdminOp::AddLearner, "add_learner").await
}

async fn promote(
    State(ctx): State<Arc<HttpContext>>,
    headers: HeaderMap,
    Path(p): Path<(String, String)>,
) -> ApiResult {
    membership(ctx, headers, p, AdminOp::Promote, "promote").await
}

async fn remove_member(
    State(ctx): State<Arc<HttpContext>>,
    headers: HeaderMap,
    Path(p): Path<(String, String)>,
) -> ApiResult {
    membership(ctx, headers, p, AdminOp::Remove, "remove").await
}

async fn transfer_leader(
    State(ctx): State<Arc<HttpContext>>,
    headers: HeaderMap,
    Path(p): Path<(String, String)>,
) -> ApiResult {
    membership(ctx, headers, p, AdminOp::TransferLeader, "transfer_leader").await
}

async fn host_replica(
    State(ctx): State<Arc<HttpContext>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    authorize(&ctx, &headers)?;
    let layout = partition(&ctx, &name)?;
    let bootstrap = match params.get("bootstrap").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "bootstrap must be true or false, not {other:?}"
            )))
        }
    };
    let replica = match params.get("replica") {
        None => None,
        Some(text) => match text.parse::<u64>() {
            Ok(r) if r > 0 => Some(r),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "replica must be a positive replica id, not {text:?}"
                )))
            }
        },
    };
    let start = match (bootstrap, replica) {
        (true, None) => HostAs::Bootstrap(layout.replicas.clone()),
        (false, Some(r)) => HostAs::Joiner(r),
        (true, Some(_)) => {
            return Err(ApiError::bad_request(
                "bootstrap and replica exclude each other: initial voters use their node id",
            ))
        }
        (false, None) => {
            return Err(ApiError::bad_request(
                "missing parameter replica: add this node as a learner at the partition's leader first and pass the replica id it answers (or bootstrap=true for a new group's initial voters)",
            ))
        }
    };
    let result = ctx.hosting.host(&layout, start).await;
    answer(&name, "host", Some(result))
}

async fn remove_replica(
    State(ctx): State<Arc<HttpContext>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    authorize(&ctx, &headers)?;
    let layout = partition(&ctx, &name)?;
    let force = match params.get("force").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "force must be true or false, not {other:?}"
            )))
        }
    };
    let when = if force {
        UnhostWhen::Forced
    } else {
        UnhostWhen::Removed
    };
    let replica = match params.get("replica") {
        None => None,
        Some(text) => match text.parse::<u64>() {
            Ok(r) if r > 0 => Some(r),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "replica must be a positive replica id, not {text:?}"
                )))
            }
        },
    };
    let result = ctx.hosting.unhost(layout.id, when, replica).await;
    answer(&name, "remove_replica", Some(result))
}

async fn add_node(
    State(ctx): State<Arc<HttpContext>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    authorize(&ctx, &headers)?;
    let id = node_id(&id)?;
    let addr = |key: &str| -> Result<SocketAddr, ApiError> {
        let text = params
            .get(key)
            .ok_or_else(|| ApiError::bad_request(format!("missing parameter {key} (HOST:PORT)")))?;
        text.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "{key} must be HOST:PORT with an IP address, not {text:?}"
            ))
        })
    };
    let raft_addr = addr("raft_addr")?;
    let redis_addr = addr("redis_addr")?;
    let result = ctx
        .store
        .ask(|reply| StoreRequest::AddNode {
            id,
            raft_addr,
            redis_addr,
            reply,
        })
        .await;
    result.unwrap_or(Err(AdminError::Stopping))?;
    Ok(Json(json!({
        "node": id,
        "raft_addr": raft_addr.to_string(),
        "redis_addr": redis_addr.to_string(),
    })))
}
