//! The composition root: turns a [`StorageConfig`] into a running storage node (one
//! partition worker per hosted partition, the store loop with its raft transport, the RESP
//! and HTTP servers) and stops it cleanly on SIGINT/SIGTERM.
//!
//! This is the only module that wires concrete types together. Shutdown order: the servers
//! stop taking requests and finish the ones in flight; then the store loop and the
//! transport stop; then every partition worker drains its queue, syncs and exits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::info;
use zankv_commands::request::RequestLimits;

use crate::config::StorageConfig;
use crate::engine::rocks::{RocksEngine, RocksOptions};
use crate::engine::{Engine, EngineError};
use crate::node_stats::NodeStats;
use crate::partition::Partition;
use crate::replication::peer::RaftTiming;
use crate::replication::raft_logging;
use crate::replication::snapshot::{self, SnapshotDirs, SnapshotStats};
use crate::replication::store::RaftStore;
use crate::replication::store_loop::{self, HostedGroup, LoopSettings, StoreLoop};
use crate::replication::transport::SnapshotInbox;
use crate::replication::transport::{self, Transport, TransportStats};
use crate::routing::Routing;
use crate::server::http::{self, HttpContext};
use crate::server::resp::{self, ServerContext};
use crate::worker;
use crate::worker::{PartitionFiles, WorkerSettings};

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

/// Opens a hosted partition at start-up. An interrupted snapshot install is finished: if
/// the raft log was compacted (or replaced by a snapshot) beyond what the database holds,
/// the snapshot received for that point is swapped in; without it the replica cannot go on,
/// and the node refuses to start rather than serve data that does not match its log.
fn open_partition(
    files: &PartitionFiles,
    name: &str,
    compaction: Result<u64, EngineError>,
) -> Result<Partition, String> {
    let compaction = compaction.map_err(|e| format!("cannot read the raft log of {name}: {e}"))?;
    snapshot::recover_swap(&files.dir)
        .map_err(|e| format!("cannot recover {}: {e}", files.dir.display()))?;
    let partition = files.open_partition().map_err(|e| {
        format!(
            "cannot open partition {name} in {}: {e}",
            files.dir.display()
        )
    })?;
    let applied = partition.state().applied_index;
    if applied >= compaction {
        return Ok(partition);
    }
    files.check_received(compaction).map_err(|e| {
        format!(
            "partition {name} holds index {applied} but its raft log starts after {compaction}, \
             and the snapshot for {compaction} cannot be used ({e}); this replica must be \
             re-created from the others"
        )
    })?;
    drop(partition);
    info!(
        partition = name,
        index = compaction,
        "installing a snapshot received before a restart"
    );
    files
        .install_received(compaction)
        .map_err(|e| format!("cannot install the snapshot of {name}: {e}"))
}

fn bind(addr: SocketAddr, what: &str) -> Result<std::net::TcpListener, String> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))?;
    Ok(listener)
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

    let rocks = RocksOptions::new(
        config.rocksdb.block_cache_mb << 20,
        config.rocksdb.write_buffer_mb << 20,
    )
    .map_err(|e| e.to_string())?;
    let routing = Arc::new(Routing::new(
        config.effective_namespaces(),
        &config.default_namespace,
    ));
    let stats = Arc::new(NodeStats::default());
    let transport_stats = Arc::new(TransportStats::default());
    let raft_dir = config.data_dir.join(RAFT_LOG_DIR);
    let log_engine = RocksEngine::open(&raft_dir, &rocks)
        .map_err(|e| format!("cannot open {}: {e}", raft_dir.display()))?;
    let timing = RaftTiming {
        election_ticks: config.raft.election_ticks,
        heartbeat_ticks: config.raft.heartbeat_ticks,
    };
    let mut store = RaftStore::new(Box::new(log_engine), timing, raft_logging::logger());
    let (store_handle, store_requests) = store_loop::channel(STORE_QUEUE);
    let write_timeout = Duration::from_millis(config.raft.write_timeout_ms);

    let snapshot_dirs = SnapshotDirs::new(config.data_dir.join(SNAPSHOT_DIR)).map_err(|e| {
        format!(
            "cannot create {}: {e}",
            config.data_dir.join(SNAPSHOT_DIR).display()
        )
    })?;
    let snapshot_stats = Arc::new(SnapshotStats::default());
    let mut groups = HashMap::new();
    let mut workers: Vec<(String, worker::WorkerHandle)> = Vec::new();
    let mut worker_map = HashMap::new();
    let mut worker_threads: Vec<JoinHandle<()>> = Vec::new();
    let mut applied_at_start = HashMap::new();
    for layout in routing.groups() {
        if !layout.replicas.contains(&config.node_id) {
            continue;
        }
        let opener_options = rocks.clone();
        let files = PartitionFiles {
            group: layout.id,
            dir: config.data_dir.join(&layout.name),
            snapshots: snapshot_dirs.clone(),
            open: Box::new(move |dir: &Path| {
                RocksEngine::open(dir, &opener_options).map(|e| Box::new(e) as Box<dyn Engine>)
            }),
        };
        let partition =
            open_partition(&files, &layout.name, store.persisted_compaction(layout.id))?;
        let applied = partition.state().applied_index;
        applied_at_start.insert(layout.id, applied);
        store
            .host(layout.id, config.node_id, &layout.replicas, applied)
            .map_err(|e| format!("cannot start raft group of {}: {e}", layout.name))?;
        if layout.replicas == [config.node_id] {
            // The only voter: no need to wait an election timeout.
            let _ = store.peer_mut(layout.id).map(|p| p.campaign());
        }
        let (handle, thread) = worker::spawn(
            partition,
            WorkerSettings {
                name: layout.name.clone(),
                files,
                to_store: store_handle.to_store(layout.id),
                write_timeout,
                stats: stats.clone(),
                snapshot_stats: snapshot_stats.clone(),
            },
        )
        .map_err(|e| format!("cannot start partition worker: {e}"))?;
        groups.insert(
            layout.id,
            HostedGroup {
                name: layout.name.clone(),
                worker: handle.clone(),
            },
        );
        worker_map.insert(layout.id, handle.clone());
        workers.push((layout.name.clone(), handle));
        worker_threads.push(thread);
    }

    snapshot_dirs.clean_at_start(&|g| applied_at_start.get(&g).copied());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("zankv-io")
        .build()
        .map_err(|e| format!("cannot start async runtime: {e}"))?;
    let (stop_front_tx, stop_front) = watch::channel(false);
    let (stop_store_tx, stop_store) = watch::channel(false);
    let (raft_in_tx, raft_in) = mpsc::channel(RAFT_INBOUND_QUEUE);

    let transport = {
        let _entered = runtime.enter();
        let mut t = Transport::new(
            RAFT_OUTBOUND_QUEUE,
            config.raft.snapshot_rate_mb << 20,
            transport_stats.clone(),
            snapshot_stats.clone(),
            stop_store.clone(),
        );
        for n in config.nodes.iter().filter(|n| n.id != config.node_id) {
            t.add_peer(n.id, n.raft_addr);
        }
        t
    };
    let mut redis_addrs: HashMap<u64, SocketAddr> =
        config.nodes.iter().map(|n| (n.id, n.redis_addr)).collect();
    // This node's own entry, if listed, is the address others know it by.
    redis_addrs
        .entry(config.node_id)
        .or_insert(config.redis_addr);
    let store_thread = store_loop::spawn(
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
                catchup_entries: config.raft.log_catchup_entries,
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
        ));
        let http_ctx = Arc::new(HttpContext {
            node_id: config.node_id,
            stats: stats.clone(),
            transport: transport_stats.clone(),
            snapshots: snapshot_stats.clone(),
            store: store_handle.clone(),
            partitions: workers.clone(),
        });
        let http = tokio::spawn(http::serve(http_listener, http_ctx, stop_front.clone()));
        let ctx = Arc::new(ServerContext {
            store: store_handle,
            routing,
            workers: worker_map,
            stats,
            limits: RequestLimits {
                max_bulk_len: config.limits.max_bulk_len,
                max_inline_len: config.limits.max_inline_len,
                ..RequestLimits::default()
            },
            max_query_buffer: config.limits.max_query_buffer,
            max_clients: config.max_clients,
            port: local.port(),
        });
        let server = tokio::spawn(resp::serve(listener, ctx, stop_front));
        info!(
            node_id = config.node_id,
            addr = %local,
            http_addr = %http_local,
            raft_addr = %raft_local,
            partitions = workers.len(),
            data_dir = %config.data_dir.display(),
            "zankv storage node ready"
        );
        wait_for_signal().await;
        info!("shutting down");
        let _ = stop_front_tx.send(true);
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
    drop(workers);
    for t in worker_threads {
        let _ = t.join();
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    info!("stopped");
    result
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
