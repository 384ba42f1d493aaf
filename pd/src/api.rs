//! PD's HTTP API: ZanRedisDB's paths where it has them, JSON everywhere, errors as an HTTP
//! status with `{"message": ...}` naming the problem. Mutating calls need
//! `Authorization: Bearer <admin_token>` when a token is configured. With several PD
//! members, only the leader answers changes, heartbeats and the live views (`/query`,
//! `/datanodes`, `/cluster/stats`, `/cluster/operators`, `/routing/watch`); the others
//! answer 400 `E_FAILED_ON_NOT_LEADER: ... the leader is member N at H:P`, and every member
//! answers reads of the metadata (`/namespaces`, `/catalog`, `/info`, `/listpd`,
//! `GET /stable/nodenum`).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/ping` | `OK` |
//! | GET | `/info` | version, this member, whether it leads |
//! | GET | `/namespaces` | `{"namespaces": [...]}` |
//! | GET | `/datanodes` | `{"nodes": [...]}` with liveness and replica counts |
//! | GET | `/listpd` | `{"pdnodes": [...], "pdleader": {...}}` |
//! | GET | `/query/{ns}?epoch=N` | the namespace's routing table; 304 when `epoch` is current |
//! | GET | `/catalog` | namespaces and nodes, as storage nodes get them |
//! | GET | `/cluster/stats` | `{"stable": ...}` and counts |
//! | POST | `/cluster/namespace/create?namespace=&partition_num=&replicator=[&expiration_policy=&tags=&hash_tags=&stale_reads=]` | create a namespace |
//! | DELETE | `/cluster/namespace/delete?namespace=[&partition=**]` | delete a namespace and its data |
//! | POST | `/cluster/namespace/meta/update?namespace=[&replicator=][&stale_reads=]` | change a namespace's replica count or whether any replica answers reads (its `hash_tags` rule is refused: it is fixed at creation) |
//! | POST | `/cluster/balance?enable=true\|false` | turn the balancers on or off |
//! | POST | `/cluster/node/remove?remove_node=N` | drain node N, then forget it once empty and stopped |
//! | DELETE | `/cluster/partition/remove_node?namespace=&partition=&node=` | drop one replica (it is re-created elsewhere) |
//! | POST | `/cluster/upgrade/begin`, `/cluster/upgrade/done` | pause / resume new operators for a rolling upgrade |
//! | GET | `/cluster/operators` | the running operators and their progress |
//! | GET, POST | `/stable/nodenum[?number=N]` | read / set the stable node number (1..=registered nodes) |
//! | POST | `/proxy/heartbeat?id=&addr=` | a proxy reports itself (every member takes it, leader or not); answers `{"proxies": [...]}`, the live proxies |
//! | GET | `/proxies` | `{"proxies": [...]}`: the proxies heard from in the last 3 s, by id |
//! | POST | `/proxy/peers/heartbeat?id=&addr=` | a proxy reports where the other proxies reach it (for Pub/Sub); answers `{"proxies": [...]}`, the live ones, as `/proxy/heartbeat` does for cluster addresses |
//! | POST | `/storage/heartbeat` | a storage node's heartbeat (JSON); answers the catalog when newer |
//! | POST | `/raft/messages` | raft messages from another PD member (length-prefixed protobufs) |
//! | GET | `/routing/watch[?namespace=a,b]` | the routing stream: newline-delimited JSON `RoutingEvent`s, every watched table first, then each change as it is published, a keepalive every 10 s |
//! | GET | `/metrics` | Prometheus text |

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::watch;
use zankv_pd_api::{
    valid_namespace_name, valid_proxy_id, ExpirationPolicy, Heartbeat, RoutingEvent,
    MAX_PARTITIONS, MAX_REPLICAS,
};

use crate::cluster::{CreateNamespace, Refusal};
use crate::config::Secret;
use crate::metrics::PdMetrics;
use crate::proxies::ProxyRegistry;
use crate::replication::member::{decode_messages, MemberHandle};
use crate::server::{PdHandle, RoutingTables, Unavailable};

/// What the handlers share.
pub struct ApiContext {
    /// The cluster's owner.
    pub pd: PdHandle,
    /// Required by mutating calls when set.
    pub token: Option<Secret>,
    /// Metrics.
    pub metrics: Arc<PdMetrics>,
    /// This member's HTTP address.
    pub http_addr: SocketAddr,
    /// The routing tables as the owner last published them.
    pub routing: watch::Receiver<Arc<RoutingTables>>,
    /// Turns true when PD stops: open routing streams end.
    pub stopping: watch::Receiver<bool>,
    /// PD's raft thread, when PD runs as a group of members.
    pub raft: Option<MemberHandle>,
    /// The namespace of keys that name none; it takes hash tags unless told otherwise.
    pub default_namespace: String,
    /// The proxies heard from, at their cluster addresses.
    pub proxies: ProxyRegistry,
    /// The proxies heard from, at the addresses the other proxies reach them at (Pub/Sub).
    pub proxy_peers: ProxyRegistry,
}

type Ctx = State<Arc<ApiContext>>;

/// An error answer.
pub struct ApiError(Refusal);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({ "message": self.0.message }))).into_response()
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError(r)
    }
}

impl From<Unavailable> for ApiError {
    fn from(u: Unavailable) -> Self {
        ApiError(Refusal {
            status: 503,
            message: match u {
                Unavailable::Busy => "PD is busy; retry".into(),
                Unavailable::Stopped => "PD is stopping".into(),
                Unavailable::NotLeader(None) => {
                    return ApiError(Refusal::bad_request(
                        "E_FAILED_ON_NOT_LEADER: this PD member does not lead and knows no leader yet; retry or ask another member",
                    ))
                }
                Unavailable::NotLeader(Some((id, addr))) => {
                    return ApiError(Refusal::bad_request(format!(
                        "E_FAILED_ON_NOT_LEADER: this PD member does not lead; the leader is member {id} at {addr}"
                    )))
                }
            },
        })
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(Refusal::bad_request(message))
}

/// The routes.
pub fn router(ctx: Arc<ApiContext>) -> Router {
    Router::new()
        .route("/ping", get(|| async { "OK" }))
        .route("/info", get(info))
        .route("/namespaces", get(namespaces))
        .route("/datanodes", get(datanodes))
        .route("/listpd", get(listpd))
        .route("/query/{ns}", get(query))
        .route("/catalog", get(catalog))
        .route("/cluster/stats", get(stats))
        .route("/cluster/namespace/create", post(create_namespace))
        .route("/cluster/namespace/delete", delete(delete_namespace))
        .route("/cluster/namespace/meta/update", post(update_namespace))
        .route("/cluster/balance", post(balance))
        .route("/cluster/node/remove", post(remove_node))
        .route("/cluster/partition/remove_node", delete(remove_replica))
        .route("/cluster/upgrade/begin", post(upgrade_begin))
        .route("/cluster/upgrade/done", post(upgrade_done))
        .route("/cluster/operators", get(operators))
        .route(
            "/stable/nodenum",
            get(stable_nodenum).post(set_stable_nodenum),
        )
        .route("/routing/watch", get(watch_routing))
        .route("/storage/heartbeat", post(heartbeat))
        .route("/proxy/heartbeat", post(proxy_heartbeat))
        .route("/proxy/peers/heartbeat", post(proxy_peer_heartbeat))
        .route("/proxies", get(proxies))
        .route("/raft/messages", post(raft_messages))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(|| async {
            ApiError(Refusal {
                status: 405,
                message: "method not allowed".into(),
            })
        })
        .fallback(|| async { ApiError(Refusal::not_found("no such endpoint")) })
        .with_state(ctx)
}

/// Refuses a mutating call that lacks the token (when one is configured).
fn authorize(ctx: &ApiContext, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &ctx.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if token.matches(g) => Ok(()),
        Some(_) => Err(ApiError(Refusal {
            status: 401,
            message: "wrong admin token".into(),
        })),
        None => Err(ApiError(Refusal {
            status: 401,
            message: "this call needs the header Authorization: Bearer <admin_token>".into(),
        })),
    }
}

/// Refuses parameters a call does not take.
fn only(params: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&str> = params
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    unknown.sort_unstable();
    match unknown.first() {
        None => Ok(()),
        Some(k) => Err(bad(format!(
            "INVALID_ARG: unknown parameter {k} (this call takes {})",
            allowed.join(", ")
        ))),
    }
}

fn required<'a>(params: &'a HashMap<String, String>, key: &str) -> Result<&'a str, ApiError> {
    params.get(key).map(String::as_str).ok_or_else(|| {
        bad(format!(
            "MISSING_ARG_{}: {key} is required",
            key.to_uppercase()
        ))
    })
}

fn number_in(
    params: &HashMap<String, String>,
    key: &str,
    low: u32,
    high: u32,
) -> Result<u32, ApiError> {
    let text = required(params, key)?;
    match text.parse::<u32>() {
        Ok(n) if (low..=high).contains(&n) => Ok(n),
        _ => Err(bad(format!(
            "INVALID_ARG_{}: {key} must be an integer within {low}..{high}, not {text:?}",
            key.to_uppercase()
        ))),
    }
}

fn flag(params: &HashMap<String, String>, key: &str) -> Result<Option<bool>, ApiError> {
    match params.get(key).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(bad(format!(
            "INVALID_ARG_{}: {key} must be true or false, not {other:?}",
            key.to_uppercase()
        ))),
    }
}

fn namespace_param(params: &HashMap<String, String>) -> Result<String, ApiError> {
    let name = required(params, "namespace")?;
    if !valid_namespace_name(name) {
        return Err(bad(format!(
            "INVALID_ARG_NAMESPACE: {name:?} is not 1 to 255 characters of [A-Za-z0-9_]"
        )));
    }
    Ok(name.to_string())
}

async fn info(State(ctx): Ctx) -> Result<Json<Value>, ApiError> {
    let l = ctx.pd.leadership().await?;
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "id": l.me,
        "http_address": ctx.http_addr.to_string(),
        "leader": l.leading,
    })))
}

async fn namespaces(State(ctx): Ctx) -> Result<Json<Value>, ApiError> {
    let names = ctx.pd.call(|c, _| c.namespaces()).await?;
    Ok(Json(json!({ "namespaces": names })))
}

async fn proxy_heartbeat(
    State(ctx): Ctx,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    report_proxy(&ctx.proxies, &params)
}

async fn proxy_peer_heartbeat(
    State(ctx): Ctx,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    report_proxy(&ctx.proxy_peers, &params)
}

/// Records the proxy `params` name in `registry`; answers the live ones.
fn report_proxy(
    registry: &ProxyRegistry,
    params: &HashMap<String, String>,
) -> Result<Json<Value>, ApiError> {
    only(params, &["id", "addr"])?;
    let id = required(params, "id")?;
    if !valid_proxy_id(id) {
        return Err(bad(format!(
            "INVALID_ARG_ID: {id:?} is not 40 lowercase hex digits"
        )));
    }
    let addr = required(params, "addr")?;
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| bad(format!("INVALID_ARG_ADDR: {addr:?} is not IP:PORT")))?;
    let live = registry.report(id.to_string(), addr, std::time::Instant::now());
    Ok(Json(json!({ "proxies": live })))
}

async fn proxies(State(ctx): Ctx) -> Json<Value> {
    Json(json!({ "proxies": ctx.proxies.live(std::time::Instant::now()) }))
}

async fn datanodes(State(ctx): Ctx) -> Result<Json<Value>, ApiError> {
    let nodes = ctx.pd.call_leader(|c, now| c.datanodes(now)).await?;
    Ok(Json(json!({ "nodes": nodes })))
}

async fn listpd(State(ctx): Ctx) -> Result<Json<Value>, ApiError> {
    let l = ctx.pd.leadership().await?;
    if l.members.is_empty() {
        let me = json!({ "id": "1", "http_address": ctx.http_addr.to_string() });
        return Ok(Json(json!({ "pdnodes": [me.clone()], "pdleader": me })));
    }
    let member = |id: &u64, addr: &SocketAddr| json!({ "id": id.to_string(), "http_address": addr.to_string() });
    let nodes: Vec<Value> = l.members.iter().map(|(id, a)| member(id, a)).collect();
    let leader = l
        .leader
        .and_then(|id| Some(member(&id, l.members.get(&id)?)))
        .unwrap_or(Value::Null);
    Ok(Json(json!({ "pdnodes": nodes, "pdleader": leader })))
}

async fn catalog(State(ctx): Ctx) -> Result<Json<Value>, ApiError> {
    let catalog = ctx.pd.call(|c, _| c.catalog()).await?;
    Ok(Json(
        serde_json::to_value(catalog).expect("catalog serializes"),
    ))
}

async fn stats(State(ctx): Ctx) -> Result<Json<Value>, ApiError> {
    let stats = ctx.pd.call_leader(|c, now| c.stats(now)).await?;
    Ok(Json(serde_json::to_value(stats).expect("stats serialize")))
}

async fn query(
    State(ctx): Ctx,
    Path(ns): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    only(&params, &["epoch", "disable_cache"])?;
    let epoch = match params.get("epoch") {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            bad(format!(
                "INVALID_ARG_EPOCH: epoch must be an integer, not {text:?}"
            ))
        })?),
    };
    let name = ns.clone();
    let table = ctx
        .pd
        .call_leader(move |c, now| c.query(&name, now))
        .await?
        .ok_or_else(|| ApiError(Refusal::not_found(format!("no namespace named {ns}"))))?;
    if epoch == Some(table.epoch) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    Ok(Json(table).into_response())
}

async fn create_namespace(
    State(ctx): Ctx,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    only(
        &params,
        &[
            "namespace",
            "partition_num",
            "replicator",
            "expiration_policy",
            "tags",
            "hash_tags",
            "stale_reads",
            "engtype",
            "data_version",
            "optimizedfsync",
        ],
    )?;
    let name = namespace_param(&params)?;
    let partition_num = number_in(&params, "partition_num", 1, MAX_PARTITIONS)?;
    let replicator = number_in(&params, "replicator", 1, MAX_REPLICAS)?;
    let expiration_policy = match params.get("expiration_policy").map(String::as_str) {
        None => ExpirationPolicy::WaitCompact,
        // Deleting outside raft, late and on each replica alone, is what zankv's exact
        // expiry replaces: refused rather than accepted and ignored.
        Some("local_deletion") => {
            return Err(bad(
                "INVALID_ARG_EXPIRATION_POLICY: local_deletion is not supported: zankv expires keys as Redis does (hidden at once, deleted through raft), which is wait_compact",
            ))
        }
        Some(text) => ExpirationPolicy::parse(text).ok_or_else(|| {
            bad(format!(
                "INVALID_ARG_EXPIRATION_POLICY: expiration_policy must be local_deletion or wait_compact, not {text:?}"
            ))
        })?,
    };
    let tags: Vec<String> = match params.get("tags") {
        None => Vec::new(),
        Some(text) => {
            let tags: Vec<String> = text.split(',').map(|t| t.trim().to_string()).collect();
            if tags.iter().any(String::is_empty) {
                return Err(bad(format!("INVALID_ARG_TAGS: {text:?} has an empty tag")));
            }
            tags
        }
    };
    // The default namespace holds plain keys, as a Redis Cluster app writes them: hash tags
    // unless told otherwise. Others hold ZanRedisDB's `ns:table:key` keys, hashed whole.
    let hash_tags = flag(&params, "hash_tags")?.unwrap_or(name == ctx.default_namespace);
    let stale_reads = flag(&params, "stale_reads")?.unwrap_or(false);
    flag(&params, "optimizedfsync")?;
    if let Some(e) = params.get("engtype").filter(|e| e.as_str() != "rockredis") {
        return Err(bad(format!(
            "INVALID_ARG_ENGTYPE: only rockredis is supported, not {e:?}"
        )));
    }
    if let Some(v) = params
        .get("data_version")
        .filter(|v| !matches!(v.as_str(), "" | "default" | "value_header_v1"))
    {
        return Err(bad(format!(
            "INVALID_ARG_DATA_VERSION: data_version must be value_header_v1 or default, not {v:?}"
        )));
    }
    let req = CreateNamespace {
        name,
        partition_num,
        replicator,
        expiration_policy,
        tags,
        hash_tags,
        stale_reads,
    };
    let created = ctx
        .pd
        .call_leader(move |c, now| c.create_namespace(req, now))
        .await??;
    Ok(Json(
        serde_json::to_value(created).expect("namespace serializes"),
    ))
}

async fn delete_namespace(
    State(ctx): Ctx,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    only(&params, &["namespace", "partition"])?;
    let name = namespace_param(&params)?;
    if let Some(p) = params.get("partition").filter(|p| p.as_str() != "**") {
        return Err(bad(format!(
            "INVALID_ARG_PARTITION: only a whole namespace can be deleted (partition=**), not {p:?}"
        )));
    }
    let target = name.clone();
    ctx.pd
        .call_leader(move |c, _| c.delete_namespace(&target))
        .await??;
    Ok(Json(json!({ "namespace": name, "deleted": true })))
}

async fn update_namespace(
    State(ctx): Ctx,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    only(
        &params,
        &[
            "namespace",
            "replicator",
            "optimizefsync",
            "snapcount",
            "hash_tags",
            "stale_reads",
        ],
    )?;
    let name = namespace_param(&params)?;
    if params.contains_key("hash_tags") {
        return Err(bad(
            "INVALID_ARG_HASH_TAGS: which part of a key is hashed is fixed when a namespace is created (changing it would move keys between partitions); create a new namespace with the rule wanted and copy the keys",
        ));
    }
    flag(&params, "optimizefsync")?;
    if params.contains_key("snapcount") {
        return Err(bad(
            "INVALID_ARG_SNAPCOUNT: log compaction is a storage node setting (raft.log_compact_entries in storage.toml)",
        ));
    }
    let stale_reads = flag(&params, "stale_reads")?;
    let replicator = match (params.contains_key("replicator"), stale_reads) {
        (false, Some(_)) => None,
        _ => Some(number_in(&params, "replicator", 1, MAX_REPLICAS)?),
    };
    let ns = ctx
        .pd
        .call_leader(move |c, now| {
            if let Some(r) = replicator {
                c.set_replicator(&name, r, now)?;
            }
            if let Some(on) = stale_reads {
                c.set_stale_reads(&name, on)?;
            }
            c.meta()
                .namespace(&name)
                .cloned()
                .ok_or_else(|| Refusal::not_found(format!("no namespace named {name}")))
        })
        .await??;
    Ok(Json(json!({
        "namespace": ns.name,
        "replicator": ns.replicator,
        "stale_reads": ns.stale_reads,
    })))
}

async fn balance(
    State(ctx): Ctx,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    only(&params, &["enable"])?;
    let enable = flag(&params, "enable")?
        .ok_or_else(|| bad("MISSING_ARG_ENABLE: enable=true or enable=false is required"))?;
    ctx.pd
        .call_leader(move |c, _| c.set_balance(enable))
        .await??;
    Ok(Json(json!({ "balance": enable })))
}

fn node_param(params: &HashMap<String, String>, key: &str) -> Result<u64, ApiError> {
    let text = required(params, key)?;
    match text.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad(format!(
            "INVALID_ARG_{}: {key} must be a positive node id, not {text:?}",
            key.to_uppercase()
        ))),
    }
}

async fn remove_node(
    State(ctx): Ctx,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    only(&params, &["remove_node"])?;
    let id = node_param(&params, "remove_node")?;
    let started = ctx.pd.call_leader(move |c, _| c.remove_node(id)).await??;
    Ok(Json(
        json!({ "node": id, "removing": true, "started": started }),
    ))
}

async fn remove_replica(
    State(ctx): Ctx,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    only(&params, &["namespace", "partition", "node"])?;
    let name = namespace_param(&params)?;
    let partition = number_in(&params, "partition", 0, MAX_PARTITIONS - 1)?;
    let node = node_param(&params, "node")?;
    let op = ctx
        .pd
        .call_leader(move |c, now| c.remove_replica(&name, partition, node, now))
        .await??;
    Ok(Json(json!({ "operator": op })))
}

async fn upgrade_begin(State(ctx): Ctx, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    ctx.pd.call_leader(|c, _| c.set_upgrading(true)).await??;
    Ok(Json(json!({ "upgrading": true })))
}

async fn upgrade_done(State(ctx): Ctx, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    ctx.pd.call_leader(|c, _| c.set_upgrading(false)).await??;
    Ok(Json(json!({ "upgrading": false })))
}

async fn operators(State(ctx): Ctx) -> Result<Json<Value>, ApiError> {
    let ops = ctx.pd.call_leader(|c, _| c.operators()).await?;
    Ok(Json(json!({ "operators": ops })))
}

async fn stable_nodenum(State(ctx): Ctx) -> Result<Json<Value>, ApiError> {
    let n = ctx.pd.call(|c, _| c.meta().stable_node_num).await?;
    Ok(Json(json!({ "stable_node_num": n })))
}

async fn set_stable_nodenum(
    State(ctx): Ctx,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    only(&params, &["number"])?;
    let number = number_in(&params, "number", 1, u32::MAX)? as usize;
    ctx.pd
        .call_leader(move |c, _| c.set_stable_node_num(number))
        .await??;
    Ok(Json(json!({ "stable_node_num": number })))
}

/// A keepalive goes out after this long without a change.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(10);

/// One routing stream's state: what it has sent, what it still has to send.
struct Watch {
    routing: watch::Receiver<Arc<RoutingTables>>,
    stopping: watch::Receiver<bool>,
    /// Namespaces watched (None: all).
    only: Option<BTreeSet<String>>,
    /// Epoch last sent per namespace.
    sent: BTreeMap<String, u64>,
    queue: VecDeque<Bytes>,
    /// When the last line went out (a keepalive follows [`KEEPALIVE`] of silence).
    last_sent: std::time::Instant,
    /// This member's raft thread: the stream ends once the member no longer leads, since
    /// a follower's tables stop changing (None: a single PD, which always leads).
    raft: Option<MemberHandle>,
    /// Counts the stream as open while it lives.
    _open: WatcherGuard,
}

/// How often an open stream checks that its member still leads.
const LEADERSHIP_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

struct WatcherGuard(Arc<PdMetrics>);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.routing_watchers.dec();
    }
}

fn event_line(event: &RoutingEvent) -> Bytes {
    let mut line = serde_json::to_vec(event).expect("events serialize");
    line.push(b'\n');
    Bytes::from(line)
}

impl Watch {
    /// Queues what changed since the last call.
    fn diff(&mut self) {
        let tables = self.routing.borrow_and_update().clone();
        let watched = |ns: &str, only: &Option<BTreeSet<String>>| {
            only.as_ref().is_none_or(|set| set.contains(ns))
        };
        for (ns, table) in tables.iter() {
            if watched(ns, &self.only) && self.sent.get(ns) != Some(&table.epoch) {
                self.sent.insert(ns.clone(), table.epoch);
                self.queue.push_back(event_line(&RoutingEvent::Table {
                    namespace: ns.clone(),
                    table: table.clone(),
                }));
            }
        }
        let gone: Vec<String> = self
            .sent
            .keys()
            .filter(|ns| !tables.contains_key(*ns))
            .cloned()
            .collect();
        for ns in gone {
            self.sent.remove(&ns);
            self.queue
                .push_back(event_line(&RoutingEvent::Deleted { namespace: ns }));
        }
    }

    /// The next line to send, waiting for a change (or a keepalive) when none is queued;
    /// None once PD stops or this member no longer leads (the watcher then reconnects,
    /// to the leader).
    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            if let Some(line) = self.queue.pop_front() {
                self.last_sent = std::time::Instant::now();
                return Some(line);
            }
            if *self.stopping.borrow() || self.raft.as_ref().is_some_and(|m| !m.state().leading) {
                return None;
            }
            tokio::select! {
                changed = self.routing.changed() => match changed {
                    Ok(()) => self.diff(),
                    Err(_) => return None,
                },
                _ = self.stopping.changed() => return None,
                _ = tokio::time::sleep(LEADERSHIP_CHECK) => {
                    if self.last_sent.elapsed() >= KEEPALIVE {
                        self.queue.push_back(event_line(&RoutingEvent::Keepalive));
                    }
                }
            }
        }
    }
}

async fn watch_routing(
    State(ctx): Ctx,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    only(&params, &["namespace"])?;
    let only = match params.get("namespace") {
        None => None,
        Some(text) => {
            let names: BTreeSet<String> = text.split(',').map(|n| n.trim().to_string()).collect();
            if let Some(bad_name) = names.iter().find(|n| !valid_namespace_name(n)) {
                return Err(bad(format!(
                    "INVALID_ARG_NAMESPACE: {bad_name:?} is not 1 to 255 characters of [A-Za-z0-9_]"
                )));
            }
            Some(names)
        }
    };
    // Only the leader hears the storage nodes, so only its tables are current.
    ctx.pd.call_leader(|_, _| ()).await?;
    ctx.metrics.routing_watchers.inc();
    let mut watch = Watch {
        routing: ctx.routing.clone(),
        stopping: ctx.stopping.clone(),
        only,
        sent: BTreeMap::new(),
        queue: VecDeque::new(),
        last_sent: std::time::Instant::now(),
        raft: ctx.raft.clone(),
        _open: WatcherGuard(ctx.metrics.clone()),
    };
    // Every watched table first, then the mark that they were all.
    watch.diff();
    watch.queue.push_back(event_line(&RoutingEvent::Synced));
    let stream = futures_util::stream::unfold(watch, |mut w| async move {
        let line = w.next_line().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(line), w))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

async fn raft_messages(
    State(ctx): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    authorize(&ctx, &headers)?;
    let Some(raft) = &ctx.raft else {
        return Err(ApiError(Refusal::not_found(
            "this PD runs alone (no members configured): it takes no raft messages",
        )));
    };
    let messages =
        decode_messages(&body).map_err(|e| bad(format!("INVALID_BODY: not raft messages: {e}")))?;
    if raft.step(messages) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(Refusal {
            status: 503,
            message: "PD's raft thread is busy; messages dropped".into(),
        }))
    }
}

async fn heartbeat(
    State(ctx): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&ctx, &headers)?;
    let hb: Heartbeat = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("INVALID_BODY: not a heartbeat: {e}")))?;
    ctx.metrics.heartbeats.inc();
    let reply = ctx
        .pd
        .call_leader(move |c, now| c.heartbeat(hb, now))
        .await??;
    Ok(Json(serde_json::to_value(reply).expect("reply serializes")))
}

async fn metrics(State(ctx): Ctx) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.text(),
    )
        .into_response()
}
