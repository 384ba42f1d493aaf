//! The composition root: turns a [`StorageConfig`] into a running storage node (one
//! partition worker per hosted partition, the store loop with its raft transport, the RESP
//! and HTTP servers) and stops it cleanly on SIGINT/SIGTERM.
//!
//! This is the only module that wires concrete types together. Shutdown order: the servers
//! stop taking requests and finish the ones in flight; then the store loop and the
//! transport stop; then every partition worker drains its queue, syncs and exits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use zankv_commands::config::{process_overrides, Config, Override, ProcessFacts};
use zankv_commands::notify;
use zankv_commands::request::RequestLimits;

use zankv_pd_api::NodeInfo;

use crate::apply_pool::ApplyPool;
use crate::config::{ReadMode, StorageConfig};
use crate::engine::rocks::{RocksEngine, RocksOptions};
use crate::events::Notifier;
use crate::hosting::Hosting;
use crate::node_stats::NodeStats;
use crate::pd_link::{LinkSettings, PdLink};
use crate::replicas::ReplicaFactory;
use crate::replication::peer::RaftTiming;
use crate::replication::snapshot::{SnapshotDirs, SnapshotStats};
use crate::replication::store::{RaftStore, Start};
use crate::replication::store_loop::{self, HostedGroup, LoopSettings, StoreLoop};
use crate::replication::transport::{self, SnapshotInbox, Transport, TransportStats};
use crate::routing::{GroupLayout, NamespaceLayout, Routing, SharedRouting};
use crate::server::http::{self, HttpContext};
use crate::server::resp::{self, ServerContext};

/// Client batches and background changes queued for the store loop before senders wait.
const STORE_QUEUE: usize = 4096;
/// Raft messages queued from peer nodes before arrivals are dropped.
const RAFT_INBOUND_QUEUE: usize = 16 * 1024;
/// Raft messages queued per peer node before sends are dropped.
const RAFT_OUTBOUND_QUEUE: usize = 16 * 1024;
/// Directory (under the data directory) of the raft-log database shared by all groups.
const RAFT_LOG_DIR: &str = "raft";
/// Directory (under the data directory) of snapshots being sent or received.
const SNAPSHOT_DIR: &str = "snapshots";

/// How long a membership or leadership operation may take to show as done.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The partitions this node hosts at start-up, with each one's initial voters: those it
/// was given a replica of before (its raft log holds them) and, in a static cluster, those
/// of the layout that list this node; minus those removed from it. A node managed by PD
/// never creates a group at start: PD asks for that, once, when it creates a namespace.
fn hosted_at_start(
    config: &StorageConfig,
    routing: &Routing,
    store: &RaftStore,
) -> Result<Vec<(GroupLayout, Vec<u64>)>, String> {
    let persisted = store
        .persisted_groups()
        .map_err(|e| format!("cannot read the raft log: {e}"))?;
    let mut hosted = Vec::new();
    for layout in routing.groups() {
        let tombstoned = store
            .is_tombstoned(layout.id)
            .map_err(|e| format!("cannot read the raft log: {e}"))?;
        let listed =
            !config.pd_managed() && layout.replicas.contains(&config.node_id) && !tombstoned;
        if listed || persisted.contains(&layout.id) {
            let voters = layout.replicas.clone();
            hosted.push((layout, voters));
        }
    }
    for group in persisted {
        if routing.layout(group).is_none() {
            warn!(group, "the raft log holds a partition of a namespace the configuration (or PD's catalog) does not name; not served");
        }
    }
    Ok(hosted)
}

/// Raft and RESP addresses of every known node: the configuration's, then those declared
/// at run time (which win, being newer).
fn known_nodes(
    config: &StorageConfig,
    store: &RaftStore,
) -> Result<HashMap<u64, (SocketAddr, SocketAddr)>, String> {
    let mut nodes: HashMap<u64, (SocketAddr, SocketAddr)> = config
        .nodes
        .iter()
        .map(|n| (n.id, (n.raft_addr, n.redis_addr)))
        .collect();
    let saved = store
        .saved_nodes()
        .map_err(|e| format!("cannot read the raft log: {e}"))?;
    for (id, addrs) in saved {
        let mut parts = addrs.split(' ').map(str::parse::<SocketAddr>);
        match (parts.next(), parts.next()) {
            (Some(Ok(raft)), Some(Ok(redis))) => {
                nodes.insert(id, (raft, redis));
            }
            _ => warn!(node = id, record = %addrs, "unreadable node record ignored"),
        }
    }
    Ok(nodes)
}

fn bind(addr: SocketAddr, what: &str) -> Result<std::net::TcpListener, String> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))?;
    Ok(listener)
}

/// What CONFIG shows of this node in place of Redis's defaults. The node keeps no slow log
/// and closes no idle client (the proxy does both), and CONFIG SET changes none of its own
/// settings.
fn node_overrides(config: &StorageConfig, local: SocketAddr) -> Vec<Override> {
    let mut overrides = process_overrides(&ProcessFacts {
        bind: local.ip().to_string(),
        port: local.port(),
        max_clients: config.max_clients,
        max_bulk_len: config.limits.max_bulk_len,
        max_query_buffer: config.limits.max_query_buffer,
        password_set: false,
        dir: config.data_dir.display().to_string(),
    });
    overrides.extend([
        Override::fixed("timeout", 0),
        Override::fixed("slowlog-log-slower-than", -1),
        Override::fixed("slowlog-max-len", 0),
        Override::settable(
            "notify-keyspace-events",
            notify::text(notify::parse(&config.notify_keyspace_events).unwrap_or(0)),
        ),
    ]);
    overrides
}

/// Runs a storage node until it is told to stop. Errors are start-up failures, described
/// for an operator.
pub fn run(config: StorageConfig) -> Result<(), String> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    // Listeners first: a taken port is reported before any database is opened.
    let resp_listener = bind(config.redis_addr, "RESP")?;
    let http_listener = bind(config.effective_http_addr(), "HTTP")?;
    let raft_listener = bind(config.effective_raft_addr(), "raft")?;

    let open_files = zankv_process::raise_open_files()?;
    let budget = config.rocksdb.write_buffer_budget_mb << 20;
    let rocks = RocksOptions::new(config.rocksdb.block_cache_mb << 20, budget / 2)
        .map_err(|e| e.to_string())?;
    // A node managed by PD starts from the catalog it saved (PD sends newer ones).
    let catalog = if config.pd_managed() {
        crate::pd_link::load_catalog(&config.data_dir)?
    } else {
        zankv_pd_api::Catalog::default()
    };
    let routing = if config.pd_managed() {
        crate::pd_link::routing_of(&catalog, &config.default_namespace)
    } else {
        Routing::new(
            config
                .effective_namespaces()
                .iter()
                .map(NamespaceLayout::from)
                .collect(),
            &config.default_namespace,
        )
    };
    let stats = Arc::new(NodeStats::default());
    let transport_stats = Arc::new(TransportStats::default());
    let raft_dir = config.data_dir.join(RAFT_LOG_DIR);
    let log_engine = RocksEngine::open_log(&raft_dir, &rocks)
        .map_err(|e| format!("cannot open {}: {e}", raft_dir.display()))?;
    let timing = RaftTiming {
        election_ticks: config.raft.election_ticks,
        heartbeat_ticks: config.raft.heartbeat_ticks,
        lease_reads: config.raft.read_mode == ReadMode::Lease,
        fixed_election_timeout: None,
    };
    let mut store = RaftStore::new(Box::new(log_engine), timing, zankv_raft_tracing::logger());
    let (store_handle, store_requests) = store_loop::channel(STORE_QUEUE);
    let write_timeout = Duration::from_millis(config.raft.write_timeout_ms);

    let snapshot_dirs = SnapshotDirs::new(config.data_dir.join(SNAPSHOT_DIR)).map_err(|e| {
        format!(
            "cannot create {}: {e}",
            config.data_dir.join(SNAPSHOT_DIR).display()
        )
    })?;
    let snapshot_stats = Arc::new(SnapshotStats::default());
    let hosted = hosted_at_start(&config, &routing, &store)?;
    let routing = Arc::new(SharedRouting::new(routing));
    // Each database keeps a few files open besides its tables (lock, log, manifest); the
    // tables share what is left of the limit, leaving room for sockets.
    let reserve = (open_files / 4).min(1024);
    let per_partition = ((open_files - reserve) / (hosted.len() as u64 + 1)).clamp(16, 1 << 20);
    // At least 16 tables and a few other files per partition must fit.
    if 24 * hosted.len() as u64 > open_files - reserve {
        warn!(
            open_files,
            partitions = hosted.len(),
            "the open-file limit is low for this many partitions; raise it (ulimit -n)"
        );
    }
    // The node's Pub/Sub, which its clients subscribe to and its keyspace events reach.
    let pubsub = Arc::new(zankv_process::pubsub::Hub::default());
    let events = Arc::new(Notifier::new(
        pubsub.clone(),
        notify::parse(&config.notify_keyspace_events).unwrap_or(0),
    ));
    let factory = Arc::new(ReplicaFactory {
        data_dir: config.data_dir.clone(),
        // The partitions share the memtable budget.
        rocks: rocks
            .sharing(budget, hosted.len())
            .with_open_files(per_partition as i32),
        snapshots: snapshot_dirs.clone(),
        store: store_handle.clone(),
        write_timeout,
        stats: stats.clone(),
        snapshot_stats: snapshot_stats.clone(),
        events: events.clone(),
        pool: ApplyPool::new(config.apply_threads())
            .map_err(|e| format!("cannot start the apply threads: {e}"))?,
    });
    let mut groups = HashMap::new();
    let mut applied_at_start = HashMap::new();
    let persisted = store
        .persisted_groups()
        .map_err(|e| format!("cannot read the raft log: {e}"))?;
    for (layout, voters) in hosted {
        let compaction = store
            .persisted_compaction(layout.id)
            .map_err(|e| format!("cannot read the raft log of {}: {e}", layout.name))?;
        // A group without a log here is created now, from the configuration.
        let bootstrap = !persisted.contains(&layout.id);
        let (worker, applied) = factory.start(&layout, compaction, bootstrap)?;
        applied_at_start.insert(layout.id, applied);
        store
            .host(
                layout.id,
                config.node_id,
                Start::Bootstrap(&voters),
                applied,
            )
            .map_err(|e| format!("cannot start raft group of {}: {e}", layout.name))?;
        if voters == [config.node_id] {
            // The only voter: no need to wait an election timeout.
            let _ = store.peer_mut(layout.id).map(|p| p.campaign());
        }
        groups.insert(
            layout.id,
            HostedGroup {
                name: layout.name.clone(),
                worker,
                stale_reads: layout.stale_reads,
            },
        );
    }
    let hosted_count = groups.len();
    let hosting = Arc::new(Hosting::new(
        config.node_id,
        factory.clone(),
        store_handle.clone(),
    ));
    snapshot_dirs.clean_at_start(&|g| applied_at_start.get(&g).copied());

    let runtime = zankv_process::io_runtime("zankv-io", config.io_threads)
        .map_err(|e| format!("cannot start async runtime: {e}"))?;
    let (stop_front_tx, stop_front) = watch::channel(false);
    let (stop_store_tx, stop_store) = watch::channel(false);
    let (raft_in_tx, raft_in) = mpsc::channel(RAFT_INBOUND_QUEUE);

    let nodes = known_nodes(&config, &store)?;
    let loop_runtime = store_loop::loop_runtime()
        .map_err(|e| format!("cannot start the store loop's runtime: {e}"))?;
    let messages = loop_runtime.handle().clone();
    let transport = {
        let _entered = runtime.enter();
        let mut t = Transport::new(
            RAFT_OUTBOUND_QUEUE,
            config.raft.snapshot_rate_mb << 20,
            transport_stats.clone(),
            snapshot_stats.clone(),
            stop_store.clone(),
            messages.clone(),
        );
        for (id, (raft_addr, _)) in &nodes {
            if *id != config.node_id {
                t.add_peer(*id, *raft_addr);
            }
        }
        t
    };
    let mut redis_addrs: HashMap<u64, SocketAddr> =
        nodes.iter().map(|(id, (_, redis))| (*id, *redis)).collect();
    // This node's own entry, if listed, is the address others know it by.
    redis_addrs
        .entry(config.node_id)
        .or_insert(config.redis_addr);
    let store_thread = store_loop::spawn(
        loop_runtime,
        StoreLoop {
            store,
            transport,
            groups,
            settings: LoopSettings {
                node_id: config.node_id,
                tick: Duration::from_millis(config.raft.tick_ms),
                read_timeout_ticks: 2 * config.raft.election_ticks as u64,
                redis_addrs,
                compact_entries: config.raft.log_compact_entries,
                compact_bytes: config.raft.log_compact_mb << 20,
                catchup_entries: config.raft.log_catchup_entries,
                admin_timeout_ticks: ADMIN_TIMEOUT.as_millis() as u64 / config.raft.tick_ms,
                routing: routing.clone(),
            },
            stats: stats.clone(),
        },
        raft_in,
        store_requests,
        store_handle.clone(),
        stop_store.clone(),
    )
    .map_err(|e| format!("cannot start the store loop: {e}"))?;

    let result = runtime.block_on(async {
        let to_tokio = |l: std::net::TcpListener| {
            TcpListener::from_std(l).map_err(|e| format!("cannot listen: {e}"))
        };
        let listener = to_tokio(resp_listener)?;
        let http_listener = to_tokio(http_listener)?;
        let raft_listener = to_tokio(raft_listener)?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let http_local = http_listener.local_addr().map_err(|e| e.to_string())?;
        let raft_local = raft_listener.local_addr().map_err(|e| e.to_string())?;
        let raft_server = tokio::spawn(transport::serve(
            raft_listener,
            raft_in_tx,
            transport_stats.clone(),
            SnapshotInbox {
                dirs: snapshot_dirs.clone(),
                stats: snapshot_stats.clone(),
            },
            stop_store.clone(),
            messages,
        ));
        let http_ctx = Arc::new(HttpContext {
            node_id: config.node_id,
            stats: stats.clone(),
            transport: transport_stats.clone(),
            snapshots: snapshot_stats.clone(),
            store: store_handle.clone(),
            routing: routing.clone(),
            hosting: hosting.clone(),
            admin_token: config.admin_token.clone(),
        });
        let http = tokio::spawn(http::serve(http_listener, http_ctx, stop_front.clone()));
        let pd_link = config.pd_managed().then(|| {
            let link = PdLink::new(
                LinkSettings {
                    pd_addrs: config.pd_addrs.clone(),
                    interval: Duration::from_millis(config.heartbeat_ms),
                    token: config.admin_token.clone(),
                    me: NodeInfo {
                        node_id: config.node_id,
                        broadcast_address: config.effective_broadcast_address().to_string(),
                        redis_port: local.port(),
                        http_port: http_local.port(),
                        raft_port: raft_local.port(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        dc_info: config.dc_info.clone(),
                        tags: config.tags.clone(),
                    },
                    default_namespace: config.default_namespace.clone(),
                    data_dir: config.data_dir.clone(),
                },
                catalog,
                routing.clone(),
                hosting.clone(),
                store_handle.clone(),
                stats.clone(),
            );
            tokio::spawn(link.run(stop_front.clone()))
        });
        let ctx = Arc::new(ServerContext {
            base: zankv_process::session::Base::new(
                Config::new(&node_overrides(&config, local)),
                RequestLimits {
                    max_bulk_len: config.limits.max_bulk_len,
                    max_inline_len: config.limits.max_inline_len,
                    ..RequestLimits::default()
                },
                config.limits.max_query_buffer,
                config.max_clients,
                pubsub,
            ),
            store: store_handle,
            routing,
            stats,
            max_write_bytes: config.raft.max_entry_mb << 20,
            port: local.port(),
            run_id: zankv_process::usage::new_run_id(),
            peak_memory: Default::default(),
            rocks: rocks.clone(),
            scripts: Default::default(),
            events,
        });
        let server = tokio::spawn(resp::serve(listener, ctx, stop_front));
        info!(
            node_id = config.node_id,
            addr = %local,
            http_addr = %http_local,
            raft_addr = %raft_local,
            partitions = hosted_count,
            data_dir = %config.data_dir.display(),
            "zankv storage node ready"
        );
        zankv_process::wait_for_signal().await;
        info!("shutting down");
        let _ = stop_front_tx.send(true);
        if let Some(link) = pd_link {
            let _ = link.await;
        }
        let _ = server.await;
        let _ = http.await;
        let _ = stop_store_tx.send(true);
        let _ = raft_server.await;
        Ok::<(), String>(())
    });
    // With the servers gone, the store loop stops, dropping its worker handles; each worker
    // then drains its queue, syncs and exits.
    let _ = stop_store_tx.send(true);
    let _ = store_thread.join();
    factory.shutdown();
    runtime.shutdown_timeout(Duration::from_secs(5));
    info!("stopped");
    result
}
