//! zankv proxy: the Redis endpoint applications connect to. It holds the routing tables PD
//! pushes, hashes each key to its namespace partition and forwards the command to that
//! partition's raft leader.
//!
//! Modules:
//! - [`config`] holds the settings;
//! - [`routing`] holds the tables and the key rule, and [`pd_watch`] keeps them current
//!   from PD's routing stream and on-demand fetches;
//! - [`backend`] runs pipelined connections to storage nodes, and [`reply_frames`] reads
//!   their replies as raw RESP;
//! - [`forward`] decides a request's partitions, retries and merges replies;
//! - [`frontend`] serves client connections (RESP2/RESP3, pipelining, AUTH), [`http`]
//!   serves `/metrics` and friends, [`metrics`] counts.
//!
//! [`run`] wires them and stops cleanly on SIGINT/SIGTERM: the front end stops taking
//! requests and answers the ones it has read, then the process exits.

pub mod backend;
pub mod config;
pub mod events;
pub mod forward;
pub mod frontend;
pub mod http;
pub mod info;
pub mod mesh;
pub mod metrics;
pub mod pd_watch;
pub mod peers;
pub mod reply_frames;
pub mod routing;
pub mod scan;
pub mod transaction;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};
use zankv_commands::config::{process_overrides, Config, Override, ProcessFacts};
use zankv_commands::notify;
use zankv_commands::request::RequestLimits;

use crate::backend::BackendPool;
use crate::config::ProxyConfig;
use crate::forward::Forwarder;
use crate::frontend::FrontendContext;
use crate::metrics::ProxyMetrics;
use crate::pd_watch::Refresher;
use crate::peers::Peers;
use crate::routing::SharedTables;

/// Runs a proxy until SIGINT/SIGTERM.
pub fn run(config: ProxyConfig) -> Result<(), String> {
    config.validate()?;
    // One socket per client: 10,000 clients need more than the usual soft limit of 1024.
    let open_files = zankv_process::raise_open_files()?;
    info!(open_files, "open-file limit");
    let runtime = zankv_process::io_runtime("zankv-proxy", config.io_threads)
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = runtime.block_on(serve(config, zankv_process::wait_for_signal()));
    runtime.shutdown_timeout(Duration::from_secs(5));
    info!("stopped");
    result
}

/// What CONFIG shows of this proxy in place of Redis's defaults; `timeout` and the slow
/// log's settings are the ones CONFIG SET changes in effect.
fn proxy_overrides(
    config: &ProxyConfig,
    local: std::net::SocketAddr,
    cluster: bool,
) -> Vec<Override> {
    let mut overrides = process_overrides(&ProcessFacts {
        bind: local.ip().to_string(),
        port: local.port(),
        max_clients: config.max_clients,
        max_bulk_len: config.max_bulk_len,
        max_query_buffer: config.max_query_buffer,
        password_set: config.requirepass.is_some() || !config.namespace_passwords.is_empty(),
        dir: std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
    });
    overrides.extend([
        Override::settable("timeout", config.idle_timeout_s),
        Override::settable("slowlog-log-slower-than", config.slowlog_log_slower_than),
        Override::settable("slowlog-max-len", config.slowlog_max_len),
        Override::settable("notify-keyspace-events", notify::text(notify_flags(config))),
        Override::fixed("cluster-enabled", if cluster { "yes" } else { "no" }),
    ]);
    overrides
}

/// The keyspace notification classes of the configuration.
fn notify_flags(config: &ProxyConfig) -> u16 {
    notify::parse(&config.notify_keyspace_events).unwrap_or(0)
}

/// Serves until `stop` completes.
pub async fn serve(
    config: ProxyConfig,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let listener = TcpListener::bind(config.redis_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.redis_addr))?;
    let http_listener = TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.http_addr))?;
    let cluster_listener = match config.cluster_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (cluster_addr): {e}"))?,
        ),
        None => None,
    };
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let cluster_local = match &cluster_listener {
        Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    let peers = cluster_local
        .map(|bound| Arc::new(Peers::new(config.cluster_announce_addr.unwrap_or(bound))));
    let http_local = http_listener.local_addr().map_err(|e| e.to_string())?;
    let metrics = Arc::new(ProxyMetrics::default());
    let tables = Arc::new(SharedTables::new(&config.default_namespace));
    let (stop_tx, stop_rx) = watch::channel(false);
    let watcher = tokio::spawn(pd_watch::follow(
        config.pd_addrs.clone(),
        tables.clone(),
        metrics.clone(),
        stop_rx.clone(),
    ));
    let http = tokio::spawn(http::serve(
        http_listener,
        Arc::new(http::HttpContext {
            metrics: metrics.clone(),
            tables: tables.clone(),
        }),
        stop_rx.clone(),
    ));
    let pubsub = Arc::new(zankv_process::pubsub::Hub::default());
    let (event_setting, followed) = events::EventSetting::new(notify_flags(&config));
    let relay = tokio::spawn(events::follow(
        tables.clone(),
        pubsub.clone(),
        followed,
        stop_rx.clone(),
    ));
    let ctx = Arc::new(FrontendContext {
        base: zankv_process::session::Base::new(
            Config::new(&proxy_overrides(&config, local, peers.is_some())),
            RequestLimits {
                max_bulk_len: config.max_bulk_len,
                max_inline_len: config.max_inline_len,
                ..RequestLimits::default()
            },
            config.max_query_buffer,
            config.max_clients,
            pubsub,
        ),
        events: event_setting,
        forwarder: Forwarder {
            tables: tables.clone(),
            backends: BackendPool::new(
                config.backend_timeout(),
                Duration::from_secs(config.backend_idle_s),
                metrics.clone(),
            ),
            refresher: Refresher::new(config.pd_addrs.clone(), tables, metrics.clone()),
            metrics,
            max_retries: config.max_retries,
            retry_backoff: Duration::from_millis(config.retry_backoff_ms),
        },
        passwords: frontend::Passwords {
            requirepass: config.requirepass.clone(),
            namespaces: config.namespace_passwords.clone(),
        },
        port: local.port(),
        peers: peers.clone(),
        run_id: zankv_process::usage::new_run_id(),
        peak_memory: Default::default(),
        mesh: match config.peer_announce_addr {
            // The other proxies authenticate with requirepass: with only namespace
            // passwords they could not.
            _ if config.requirepass.is_none() && !config.namespace_passwords.is_empty() => {
                warn!("namespace passwords without requirepass: Pub/Sub stays within this proxy (the proxies authenticate to each other with requirepass)");
                None
            }
            Some(addr) => Some(addr),
            None if !local.ip().is_unspecified() => Some(local),
            None => {
                warn!("redis_addr binds a wildcard address and peer_announce_addr is unset: messages published through other proxies will not reach this proxy's subscribers");
                None
            }
        }
        .map(|addr| mesh::Mesh {
            peers: Arc::new(Peers::new(addr)),
            password: config
                .requirepass
                .as_ref()
                .map(|p| Bytes::copy_from_slice(p.expose().as_bytes())),
        }),
    });
    let reporter = peers.clone().map(|peers| {
        tokio::spawn(peers::follow(
            peers,
            config.pd_addrs.clone(),
            config.admin_token.clone(),
            "/proxy/heartbeat",
            stop_rx.clone(),
        ))
    });
    let mesh_reporter = ctx.mesh.as_ref().map(|mesh| {
        tokio::spawn(peers::follow(
            mesh.peers.clone(),
            config.pd_addrs.clone(),
            config.admin_token.clone(),
            "/proxy/peers/heartbeat",
            stop_rx.clone(),
        ))
    });
    let cluster_front = cluster_listener
        .map(|l| tokio::spawn(frontend::serve(l, ctx.clone(), stop_rx.clone(), true)));
    let sweeper = {
        let ctx = ctx.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => ctx.forwarder.backends.close_idle(),
                    _ = stop.changed() => return,
                }
            }
        })
    };
    let front = tokio::spawn(frontend::serve(listener, ctx, stop_rx, false));
    info!(
        addr = %local,
        http_addr = %http_local,
        cluster_addr = ?cluster_local,
        cluster_id = peers.as_ref().map(|p| p.me().id.clone()),
        pd = ?config.pd_addrs,
        default_namespace = %config.default_namespace,
        auth = config.requirepass.is_some() || !config.namespace_passwords.is_empty(),
        "zankv proxy ready"
    );
    stop.await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = front.await;
    if let Some(task) = cluster_front {
        let _ = task.await;
    }
    for task in [reporter, mesh_reporter].into_iter().flatten() {
        let _ = task.await;
    }
    let _ = sweeper.await;
    let _ = relay.await;
    let _ = http.await;
    let _ = watcher.await;
    Ok(())
}
