//! Keeping the routing tables current from PD: [`follow`] reads PD's routing stream
//! (`GET /routing/watch`) from one member and moves to the next when it fails or goes
//! quiet; [`Refresher`] fetches one namespace's table (`GET /query/{ns}`) after a routing
//! error, once for all the requests that hit the same error.
//!
//! Nothing here waits for PD on a client's behalf except a refresh after a routing error;
//! while PD is unreachable the proxy keeps routing with the tables it has, and storage
//! nodes' leader hints keep them usable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Mutex};
use tracing::{debug, info, warn};
use zankv_pd_api::{QueryResponse, RoutingEvent};

use crate::metrics::ProxyMetrics;
use crate::routing::SharedTables;

/// How long connecting to a member and getting the answer's headers may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// PD sends a keepalive every 10 s: a stream silent for this long is dead.
const SILENCE: Duration = Duration::from_secs(35);
/// Pause after every member failed, growing to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Deadline of one on-demand fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Applies one stream event to the tables.
pub fn apply_event(tables: &SharedTables, metrics: &ProxyMetrics, event: RoutingEvent) {
    match event {
        RoutingEvent::Table { namespace, table } => {
            if tables.update(|t| t.apply_table(&namespace, &table)) {
                debug!(%namespace, epoch = table.epoch, "routing table updated");
                metrics.routing_epoch(&namespace, Some(table.epoch));
            }
        }
        RoutingEvent::Deleted { namespace } => {
            if tables.update(|t| t.remove(&namespace)) {
                info!(%namespace, "namespace deleted");
                metrics.routing_epoch(&namespace, None);
            }
        }
        RoutingEvent::Keepalive | RoutingEvent::Synced => {}
    }
}

/// Follows PD's routing stream until `shutdown` turns true.
pub async fn follow(
    members: Vec<SocketAddr>,
    tables: Arc<SharedTables>,
    metrics: Arc<ProxyMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut next = 0;
    loop {
        let addr = members[next % members.len()];
        next += 1;
        let followed = tokio::select! {
            r = follow_one(addr, &tables, &metrics) => r,
            _ = shutdown.changed() => return,
        };
        metrics.routing_stream(false);
        match followed {
            // It worked for a while: try again at once (another member first).
            Ok(()) => backoff = FIRST_BACKOFF,
            Err(e) => {
                debug!(pd = %addr, error = %e, "routing stream unavailable");
                if next % members.len() == 0 {
                    warn!(error = %e, "no PD member serves the routing stream; routing goes on with the tables held");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Reads one member's stream; `Ok` when it ended after delivering events.
async fn follow_one(
    addr: SocketAddr,
    tables: &SharedTables,
    metrics: &ProxyMetrics,
) -> Result<(), String> {
    let mut lines = zankv_pd_api::client::watch(addr, "/routing/watch", CONNECT_TIMEOUT).await?;
    info!(pd = %addr, "following PD's routing stream");
    metrics.routing_stream(true);
    let mut delivered = false;
    // The namespaces of the stream's first tables, until it says they were all.
    let mut first_tables: Option<Vec<String>> = Some(Vec::new());
    loop {
        let line = match tokio::time::timeout(SILENCE, lines.next_line()).await {
            Err(_) => return Err(format!("PD at {addr} sent nothing for {SILENCE:?}")),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(None)) if delivered => return Ok(()),
            Ok(Ok(None)) => return Err(format!("PD at {addr} ended the stream")),
            Ok(Ok(Some(line))) => line,
        };
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<RoutingEvent>(&line) {
            Ok(RoutingEvent::Synced) => {
                // A namespace deleted while the proxy was away is not in the snapshot; but
                // neither is one whose table PD has not published yet, so PD's metadata
                // decides: only a namespace `/query` does not know is forgotten.
                if let Some(named) = first_tables.take() {
                    let missing: Vec<String> = tables
                        .load()
                        .namespaces()
                        .map(|ns| ns.name.clone())
                        .filter(|n| !named.contains(n))
                        .collect();
                    for namespace in missing {
                        let path = format!("/query/{namespace}");
                        if let Ok(r) = zankv_pd_api::client::call(
                            addr,
                            "GET",
                            &path,
                            None,
                            None,
                            FETCH_TIMEOUT,
                        )
                        .await
                        {
                            if r.status == 404 {
                                apply_event(tables, metrics, RoutingEvent::Deleted { namespace });
                            }
                        }
                    }
                }
            }
            Ok(event) => {
                delivered = true;
                if let (Some(named), RoutingEvent::Table { namespace, .. }) =
                    (&mut first_tables, &event)
                {
                    named.push(namespace.clone());
                }
                apply_event(tables, metrics, event);
            }
            Err(e) => warn!(pd = %addr, error = %e, "ignoring a routing event that does not parse"),
        }
    }
}

/// On-demand fetches of one namespace's table, shared by the requests that need one.
pub struct Refresher {
    members: Vec<SocketAddr>,
    tables: Arc<SharedTables>,
    metrics: Arc<ProxyMetrics>,
    /// Per namespace, when its last fetch started; each namespace's lock is held while
    /// fetching it, so concurrent requests of one namespace wait for one fetch instead of
    /// each making their own, and namespaces do not wait for each other.
    fetched: std::sync::Mutex<HashMap<String, Arc<Mutex<Option<Instant>>>>>,
}

impl Refresher {
    /// Fetches from `members`, into `tables`.
    pub fn new(
        members: Vec<SocketAddr>,
        tables: Arc<SharedTables>,
        metrics: Arc<ProxyMetrics>,
    ) -> Refresher {
        Refresher {
            members,
            tables,
            metrics,
            fetched: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Makes sure `namespace`'s table was fetched after `since` (when a request saw it
    /// fail); fetches it now unless another request already did.
    pub async fn refresh(&self, namespace: &str, since: Instant) {
        let slot = self
            .fetched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(namespace.to_string())
            .or_default()
            .clone();
        let mut fetched = slot.lock().await;
        // A fetch that started after the failure saw what PD knew by then.
        if fetched.is_some_and(|at| at >= since) {
            return;
        }
        let started = Instant::now();
        let path = format!("/query/{namespace}");
        for addr in &self.members {
            match zankv_pd_api::client::call(*addr, "GET", &path, None, None, FETCH_TIMEOUT).await {
                Ok(r) if r.status == 200 => {
                    if let Ok(table) = r.json::<QueryResponse>() {
                        self.metrics.routing_refreshed();
                        if self
                            .tables
                            .update(|t| t.apply_fetched_table(namespace, &table))
                        {
                            self.metrics.routing_epoch(namespace, Some(table.epoch));
                        }
                        break;
                    }
                }
                Ok(r) if r.status == 404 => {
                    let event = RoutingEvent::Deleted {
                        namespace: namespace.to_string(),
                    };
                    apply_event(&self.tables, &self.metrics, event);
                    break;
                }
                // A follower (400 E_FAILED_ON_NOT_LEADER) or an unreachable member: next.
                Ok(_) | Err(_) => {}
            }
        }
        *fetched = Some(started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    /// A PD that answers every `GET /query/{ns}` with 404 (so the proxy forgets `ns`),
    /// reporting each request's namespace on `seen`; answers to `hold` wait for `release`.
    async fn fake_pd(
        hold: &'static str,
        mut release: mpsc::Receiver<()>,
        seen: mpsc::UnboundedSender<String>,
    ) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (held_tx, mut held_rx) = mpsc::unbounded_channel::<tokio::net::TcpStream>();
        tokio::spawn(async move {
            while let Some(mut held) = held_rx.recv().await {
                let _ = release.recv().await;
                let _ = held.write_all(NOT_FOUND).await;
            }
        });
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let ns = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.strip_prefix("/query/"))
                    .unwrap_or("")
                    .to_string();
                let _ = seen.send(ns.clone());
                if ns == hold {
                    let _ = held_tx.send(conn);
                } else {
                    let _ = conn.write_all(NOT_FOUND).await;
                }
            }
        });
        addr
    }

    const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 15\r\nconnection: close\r\n\r\n{\"message\":\"x\"}";

    /// The scenario, reporting what went wrong instead of panicking inside the runtime.
    async fn one_fetch_per_namespace() -> Result<(), String> {
        let within = |what: &'static str| move |_| format!("{what} did not happen within 10 s");
        let ten_s = Duration::from_secs(10);
        let (release_tx, release) = mpsc::channel(4);
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let pd = fake_pd("slow", release, seen_tx).await;
        let refresher = Arc::new(Refresher::new(
            vec![pd],
            Arc::new(SharedTables::new("default")),
            Arc::new(ProxyMetrics::default()),
        ));
        let since = Instant::now();
        // Ten requests of "slow" failed at once: one fetch, held by PD.
        let waiting: Vec<_> = (0..10)
            .map(|_| {
                let r = refresher.clone();
                tokio::spawn(async move { r.refresh("slow", since).await })
            })
            .collect();
        let first = tokio::time::timeout(ten_s, seen.recv())
            .await
            .map_err(within("the first fetch"))?;
        if first.as_deref() != Some("slow") {
            return Err(format!("PD saw {first:?} first"));
        }
        // Another namespace is fetched while "slow" is still held.
        tokio::time::timeout(ten_s, refresher.refresh("fast", since))
            .await
            .map_err(within("a refresh of another namespace while one is held"))?;
        let second = tokio::time::timeout(ten_s, seen.recv())
            .await
            .map_err(within("a fetch of the other namespace"))?;
        if second.as_deref() != Some("fast") {
            return Err(format!("PD saw {second:?} second"));
        }
        release_tx.send(()).await.map_err(|e| e.to_string())?;
        for w in waiting {
            tokio::time::timeout(ten_s, w)
                .await
                .map_err(within("the end of the held fetch"))?
                .map_err(|e| e.to_string())?;
        }
        if let Ok(extra) = seen.try_recv() {
            return Err(format!(
                "the ten requests made more than one fetch ({extra})"
            ));
        }
        // A failure after that fetch started asks again.
        release_tx.send(()).await.map_err(|e| e.to_string())?;
        tokio::time::timeout(ten_s, refresher.refresh("slow", Instant::now()))
            .await
            .map_err(within("a second fetch"))?;
        let third = tokio::time::timeout(ten_s, seen.recv())
            .await
            .map_err(within("a second fetch reaching PD"))?;
        match third.as_deref() {
            Some("slow") => Ok(()),
            other => Err(format!("PD saw {other:?} instead of a second fetch")),
        }
    }

    #[test]
    fn one_fetch_serves_a_namespace_and_namespaces_do_not_wait_for_each_other() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = runtime.block_on(one_fetch_per_namespace());
        // Whatever is still held (a refresh waiting on PD) is abandoned, not awaited.
        runtime.shutdown_background();
        outcome.unwrap();
    }
}
