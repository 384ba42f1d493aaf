//! Turns a [`PdConfig`] into a running PD and stops it cleanly on SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::api::{self, ApiContext};
use crate::cluster::{Cluster, ClusterSettings};
use crate::config::PdConfig;
use crate::meta::{initial_meta, MetaStore};
use crate::metrics::PdMetrics;
use crate::replication::log::MetaLog;
use crate::replication::member::{self, MemberSettings};
use crate::schedule::ScheduleLimits;
use crate::server;
use crate::server::Membership;

/// Runs PD until it is told to stop. Errors are start-up failures, described for an
/// operator.
pub fn run(config: PdConfig) -> Result<(), String> {
    config.validate()?;
    let listener = std::net::TcpListener::bind(config.http_addr)
        .map_err(|e| format!("cannot listen on {} (HTTP): {e}", config.http_addr))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {}: {e}", config.http_addr))?;
    // Every storage node's heartbeats and every proxy's routing stream hold a connection.
    let open_files = zankv_process::raise_open_files()?;
    tracing::info!(open_files, "open file limit");
    let runtime = zankv_process::io_runtime("pd-io", 0)
        .map_err(|e| format!("cannot start async runtime: {e}"))?;
    let metrics = Arc::new(PdMetrics::default());
    // A single PD keeps its metadata in a file; members of a group replicate it by raft.
    let (meta, membership, raft_thread) = if config.members.is_empty() {
        (MetaStore::open(&config.data_dir)?, None, None)
    } else {
        let members: BTreeMap<u64, SocketAddr> =
            config.members.iter().map(|m| (m.id, m.http_addr)).collect();
        let voters: Vec<u64> = members.keys().copied().collect();
        let initial = serde_json::to_vec(&initial_meta()).expect("metadata serializes");
        let log = MetaLog::open(&config.data_dir, &voters, initial)?;
        let (member, thread) = member::spawn(
            MemberSettings {
                id: config.member_id,
                members: members.clone(),
                tick: Duration::from_millis(config.raft_tick_ms),
                election_ticks: config.raft_election_ticks,
                token: config.admin_token.clone(),
            },
            log,
            runtime.handle().clone(),
        )?;
        let meta = MetaStore::replicated(member.clone())?;
        (meta, Some(Membership { member, members }), Some(thread))
    };
    let raft = membership.as_ref().map(|m| m.member.clone());
    let settings = ClusterSettings {
        heartbeat_timeout: Duration::from_millis(config.heartbeat_timeout_ms),
        dead_grace: Duration::from_millis(config.dead_node_grace_ms),
        max_operators: config.max_operators,
        step_timeout: Duration::from_millis(config.operator_step_timeout_ms),
        balance_window: match config.balance_window.as_slice() {
            [start, end] => Some((*start, *end)),
            _ => None,
        },
        limits: ScheduleLimits::default(),
    };
    let cluster = Cluster::new(meta, settings, std::time::Instant::now());
    let (pd, routing, owner) = server::spawn_owner(
        cluster,
        Duration::from_millis(config.check_interval_ms),
        runtime.handle().clone(),
        config.admin_token.clone(),
        metrics.clone(),
        membership,
    )
    .map_err(|e| format!("cannot start the cluster thread: {e}"))?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("cannot listen: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
        let ctx = Arc::new(ApiContext {
            pd: pd.clone(),
            token: config.admin_token.clone(),
            metrics,
            http_addr: local,
            routing,
            stopping,
            raft: raft.clone(),
            default_namespace: config.default_namespace.clone(),
            proxies: Default::default(),
            proxy_peers: Default::default(),
        });
        info!(http_addr = %local, data_dir = %config.data_dir.display(), "zankv pd ready");
        axum::serve(listener, api::router(ctx))
            .with_graceful_shutdown(async move {
                zankv_process::wait_for_signal().await;
                // Routing streams end now, or the graceful shutdown would wait for them.
                let _ = stopping_tx.send(true);
            })
            .await
            .map_err(|e| format!("HTTP server failed: {e}"))
    });
    info!("shutting down");
    pd.stop();
    let _ = owner.join();
    if let Some(member) = &raft {
        member.stop();
    }
    if let Some(thread) = raft_thread {
        let _ = thread.join();
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    info!("stopped");
    result
}
