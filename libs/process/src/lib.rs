//! What every zankv process (storage node, PD, proxy) does at its edges, written once:
//! setting up logging ([`init_logging`]), waiting for SIGINT/SIGTERM ([`wait_for_signal`]),
//! accepting RESP clients within a connection limit ([`serve_clients`]) and noticing one
//! leave while it waits on a blocking command ([`read_while_blocked`]), serving an
//! HTTP router until shutdown ([`serve_http`], [`json_error`]), and raising the open-file
//! limit ([`raise_open_files`]), building the async runtime ([`io_runtime`]); and the
//! registry of connected clients behind CLIENT LIST, INFO and KILL ([`clients`]); Pub/Sub
//! subscriptions ([`pubsub`]); the RESP session the proxy and the storage node share, whose
//! executor each supplies ([`session`]); and what the process uses, for INFO ([`usage`]).
//!
//! Invariants: [`serve_clients`] never serves more than `max_clients` connections at once
//! (one more is sent Redis's error and closed) and returns only after every connection task
//! it started has ended (cut after a drain period); [`serve_http`] stops accepting when shutdown turns true and lets
//! requests in progress finish.

pub mod clients;
mod limits;
pub mod pubsub;
pub mod session;
pub mod usage;

pub use limits::raise_open_files;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

/// While a client waits on a blocking command (BLPOP, ...), reads what it sends meanwhile
/// into `input` (those requests run once it is answered), up to `limit` bytes; returns
/// when the client is gone, so that its wait can end with it.
pub async fn read_while_blocked(socket: &mut TcpStream, input: &mut BytesMut, limit: usize) {
    loop {
        if input.len() > limit {
            return std::future::pending().await;
        }
        input.reserve(4096);
        match socket.read_buf(input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The multi-threaded async runtime a process serves its sockets on, its threads named
/// `thread_name`: `threads` of them, or one per CPU when 0.
pub fn io_runtime(thread_name: &str, threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder.enable_all().thread_name(thread_name).build()
}

/// Logs to stderr with `level` (a tracing filter such as `info` or `zankv=debug`), which
/// `RUST_LOG` overrides; colours only on a terminal.
pub fn init_logging(level: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .map_err(|e| format!("invalid log level {level:?}: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

/// Returns on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
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

/// How long connections get to finish after shutdown before they are cut (a client that
/// stops reading must not keep the process alive).
const DRAIN: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` until `shutdown` turns true, running `handle` for
/// each in a task of its own while fewer than `max_clients` run; a connection beyond that
/// gets `-ERR max number of clients reached` and is closed (`rejected` is called). Returns
/// once every connection task has ended, or after a drain period (10 s) with the rest cut.
pub async fn serve_clients<H, F>(
    listener: TcpListener,
    max_clients: usize,
    mut shutdown: watch::Receiver<bool>,
    rejected: impl Fn(),
    handle: H,
) where
    H: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_clients));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let served = handle(socket, peer);
                        tasks.spawn(async move {
                            served.await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        rejected();
                        tasks.spawn(async move {
                            let mut socket = socket;
                            let _ = socket.write_all(b"-ERR max number of clients reached\r\n").await;
                        });
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    info!("no longer accepting clients; waiting for connections to finish");
    let drained =
        tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            connections = tasks.len(),
            "connections still open after {DRAIN:?}; closing them"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// A JSON error answer: `status` with `{"message": message}`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "message": message }))).into_response()
}

/// `router` with JSON answers for unknown paths (404) and wrong methods (405).
pub fn with_json_fallbacks<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .method_not_allowed_fallback(|| async {
            json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "no such endpoint") })
}

/// Serves `router` on `listener` until `shutdown` turns true.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
