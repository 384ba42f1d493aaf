//! The composition root: turns a [`StorageConfig`] into a running storage node (partition
//! worker, background ticker, RESP server) and stops it cleanly on SIGINT/SIGTERM.
//!
//! This is the only module that wires concrete types together.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;
use zankv_commands::request::RequestLimits;

use crate::config::StorageConfig;
use crate::engine::rocks::{RocksEngine, RocksOptions};
use crate::node_stats::NodeStats;
use crate::partition::Partition;
use crate::server::http::{self, HttpContext};
use crate::server::resp::{self, ServerContext};
use crate::worker;

/// The namespace a standalone node serves.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Requests queued per partition before clients wait.
const PARTITION_QUEUE: usize = 4096;
/// Background expiry/reclamation period.
const TICK: Duration = Duration::from_millis(100);

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
    let rocks = RocksOptions::new(
        config.rocksdb.block_cache_mb << 20,
        config.rocksdb.write_buffer_mb << 20,
    )
    .map_err(|e| e.to_string())?;
    let partition_name = format!("{DEFAULT_NAMESPACE}-0");
    let dir = config.data_dir.join(&partition_name);
    let engine = RocksEngine::open(&dir, &rocks)
        .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    let partition = Partition::open(Box::new(engine))
        .map_err(|e| format!("cannot read partition {partition_name}: {e}"))?;
    let stats = Arc::new(NodeStats::default());
    let (handle, worker_thread) =
        worker::spawn(partition_name, partition, PARTITION_QUEUE, stats.clone())
            .map_err(|e| format!("cannot start partition worker: {e}"))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("zankv-io")
        .build()
        .map_err(|e| format!("cannot start async runtime: {e}"))?;
    let result = runtime.block_on(async {
        let listener = TcpListener::bind(config.redis_addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.redis_addr))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let http_addr = config.effective_http_addr();
        let http_listener = TcpListener::bind(http_addr)
            .await
            .map_err(|e| format!("cannot listen on {http_addr} (HTTP): {e}"))?;
        let http_local = http_listener.local_addr().map_err(|e| e.to_string())?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let ticker = {
            let handle = handle.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(TICK);
                loop {
                    tokio::select! {
                        _ = interval.tick() => handle.tick(),
                        _ = stop.changed() => break,
                    }
                }
            })
        };
        let http_ctx = Arc::new(HttpContext { stats: stats.clone(), partition: handle.clone() });
        let http = tokio::spawn(http::serve(http_listener, http_ctx, stop_rx.clone()));
        let ctx = Arc::new(ServerContext {
            partition: handle,
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
        let server = tokio::spawn(resp::serve(listener, ctx, stop_rx));
        info!(addr = %local, http_addr = %http_local, data_dir = %config.data_dir.display(), "zankv storage node ready");
        wait_for_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
        let _ = server.await;
        let _ = http.await;
        let _ = ticker.await;
        Ok::<(), String>(())
    });
    // Every handle to the worker is gone once the server and ticker have stopped: the worker
    // drains its queue, syncs, and exits.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let _ = worker_thread.join();
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
