//! Connections from the proxy to storage nodes: pipelined, shared by every client, one per
//! (node, protocol, partition lane), so a slow partition never holds up the replies of
//! another.
//!
//! A [`Backend`] is one connection run by its own task: requests queue on a bounded
//! channel, go out in batches (one write for whatever is queued; woken by a request, the
//! task first lets the other ready tasks run once, so requests that clients read at the same
//! time share the write), and replies come back in order, each to the request that waits
//! for it. Replies are passed on as the raw RESP
//! bytes the node sent, in the protocol the client speaks (a connection greets the node
//! first: `HELLO 3` for RESP3, `HELLO 2` for RESP2, then `READONLY` for a connection whose
//! reads any replica answers). The reply timeout is per connection (the oldest request waiting longer than it fails every request in flight on
//! that connection). Idle connections are closed by the pool (after their last
//! replies), also to nodes that no longer lead their partition (`backend_idle_s`).
//!
//! Invariants: a request gets exactly one answer: the node's reply, or
//! [`BackendError::NotSent`] when it never left the proxy (safe to send again), or
//! [`BackendError::Lost`] when it was sent and the connection failed or the oldest request
//! waited longer than the timeout (a write may or may not have been applied). A failed
//! connection is never reused; the pool opens a new one on the next request.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};
use zankv_commands::Protocol;

use crate::metrics::ProxyMetrics;
use crate::reply_frames::{frame_len, FrameScanner};

/// Requests queued per connection before senders wait.
const QUEUE: usize = 4096;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Most bytes gathered into one write.
const WRITE_BATCH: usize = 256 * 1024;
/// How often a connection checks its oldest request's age.
const TIMEOUT_CHECK: Duration = Duration::from_millis(250);

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// It never reached the node: sending it again is safe.
    NotSent(String),
    /// It was sent but no reply came: a write may or may not have been applied.
    Lost(String),
}

/// How a connection introduces itself before its first request.
#[derive(Clone)]
struct Greeting {
    /// `HELLO 3` for RESP3, `HELLO 2` for RESP2.
    protocol: Protocol,
    /// READONLY after it.
    readonly: bool,
    /// AUTH first (a connection to another proxy that requires a password).
    password: Option<Bytes>,
}

/// Which of a partition's connections to a node a request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The partition's requests.
    Shared,
    /// Reads any replica answers: a connection that sent READONLY.
    ReadOnly,
    /// Scripts: one may run long, and the requests behind it on its connection wait as
    /// long, so they have a connection of their own (the partition's other requests,
    /// SCRIPT KILL among them, reach the node meanwhile and meet its BUSY).
    Scripts,
}

/// What a request waits on.
pub type ReplyReceiver = oneshot::Receiver<Result<Bytes, BackendError>>;

struct Job {
    request: Bytes,
    reply: oneshot::Sender<Result<Bytes, BackendError>>,
    /// Waits for its reply however long it takes (a script: it may run long, and SCRIPT
    /// KILL is how it ends early).
    patient: bool,
}

/// One pipelined connection to a storage node.
#[derive(Clone)]
pub struct Backend {
    tx: mpsc::Sender<Job>,
}

impl Backend {
    fn spawn(
        addr: SocketAddr,
        greeting: Greeting,
        timeout: Duration,
        metrics: Arc<ProxyMetrics>,
    ) -> (Backend, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(addr, greeting, rx, timeout, metrics));
        (Backend { tx }, task)
    }

    /// Queues `request` (one encoded RESP request) and answers where its reply will come.
    pub async fn send(&self, request: Bytes) -> ReplyReceiver {
        self.queue(request, false).await
    }

    /// Like [`Backend::send`], for a request that waits for its reply however long it
    /// takes (the requests behind it on the connection wait as long).
    pub async fn send_patient(&self, request: Bytes) -> ReplyReceiver {
        self.queue(request, true).await
    }

    async fn queue(&self, request: Bytes, patient: bool) -> ReplyReceiver {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            request,
            reply,
            patient,
        };
        if let Err(mpsc::error::SendError(job)) = self.tx.send(job).await {
            let _ = job.reply.send(Err(BackendError::NotSent(
                "the connection to the storage node closed".into(),
            )));
        }
        rx
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A connection of one client's own, for requests that wait as long as they must (a
/// blocking pop holds its connection until answered, so it cannot share one): no reply
/// timeout, and closed at once when dropped, answered or not, so that the node ends the
/// wait of a client that left.
pub struct Dedicated {
    /// The node it goes to.
    pub addr: SocketAddr,
    /// The protocol it speaks.
    pub protocol: Protocol,
    backend: Backend,
    task: tokio::task::JoinHandle<()>,
}

impl Dedicated {
    /// Queues `request` (see [`Backend::send`]).
    pub async fn send(&self, request: Bytes) -> ReplyReceiver {
        self.backend.send(request).await
    }

    /// Whether it failed (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.backend.is_closed() || self.task.is_finished()
    }
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Most connections the pool keeps (moka then evicts by its own policy; a connection it
/// lets go of closes once its replies are in).
const MAX_CONNECTIONS: u64 = 65_536;

/// Every backend connection of the proxy: a bounded cache (moka) of connection handles, so
/// connections to nodes that no longer lead a partition, or to nodes gone, are closed once
/// idle instead of piling up.
pub struct BackendPool {
    connections: moka::sync::Cache<(SocketAddr, Protocol, u64), Backend>,
    timeout: Duration,
    metrics: Arc<ProxyMetrics>,
}

impl BackendPool {
    /// A pool whose connections give up on a request after `timeout` and close once no
    /// request used them for `idle` (after their last replies are in).
    pub fn new(timeout: Duration, idle: Duration, metrics: Arc<ProxyMetrics>) -> BackendPool {
        BackendPool {
            connections: moka::sync::Cache::builder()
                .max_capacity(MAX_CONNECTIONS)
                .time_to_idle(idle)
                .build(),
            timeout,
            metrics,
        }
    }

    /// A new connection of one client's own to `addr` ([`Dedicated`]).
    pub fn dedicated(&self, addr: SocketAddr, protocol: Protocol) -> Dedicated {
        let greeting = Greeting {
            protocol,
            readonly: false,
            password: None,
        };
        let (backend, task) = Backend::spawn(addr, greeting, Duration::MAX, self.metrics.clone());
        Dedicated {
            addr,
            protocol,
            backend,
            task,
        }
    }

    /// How long a shared connection waits for a reply.
    pub fn reply_timeout(&self) -> Duration {
        self.timeout
    }

    /// Lets go of the connections idle too long (the cache does this only when it is used,
    /// so a quiet proxy calls this now and then).
    pub fn close_idle(&self) {
        self.connections.run_pending_tasks();
    }

    /// The connection to `addr` for `protocol` that serves `lane` of `partition` of
    /// `namespace` (opened now if there is none or the last one failed).
    pub fn get(
        &self,
        addr: SocketAddr,
        protocol: Protocol,
        namespace: &str,
        partition: u32,
        lane: Lane,
    ) -> Backend {
        let mut h = DefaultHasher::new();
        (namespace, partition, lane).hash(&mut h);
        let greeting = Greeting {
            protocol,
            readonly: lane == Lane::ReadOnly,
            password: None,
        };
        self.cached((addr, protocol, h.finish()), greeting)
    }

    /// The connection to the proxy at `addr` that passes Pub/Sub messages on (RESP2,
    /// authenticated with `password` when given).
    pub fn peer(&self, addr: SocketAddr, password: Option<Bytes>) -> Backend {
        let greeting = Greeting {
            protocol: Protocol::Resp2,
            readonly: false,
            password,
        };
        // No partition's connection hashes to this.
        self.cached((addr, Protocol::Resp2, u64::MAX), greeting)
    }

    /// The live connection cached under `key`, opened now (greeted with `greeting`) if
    /// there is none or the last one failed.
    fn cached(&self, key: (SocketAddr, Protocol, u64), greeting: Greeting) -> Backend {
        if let Some(b) = self.connections.get(&key) {
            if !b.is_closed() {
                return b;
            }
        }
        // None, or a failed one: replaced under the key's lock, so that two requests never
        // open two live connections for one partition (their requests could then run out
        // of order).
        let start =
            || Backend::spawn(key.0, greeting.clone(), self.timeout, self.metrics.clone()).0;
        self.connections
            .entry(key)
            .and_compute_with(|entry| match entry {
                Some(e) if !e.value().is_closed() => moka::ops::compute::Op::Nop,
                _ => moka::ops::compute::Op::Put(start()),
            })
            .into_entry()
            .map_or_else(start, |e| e.into_value())
    }
}

/// The replies a connection waits for, oldest first, with when each request was queued.
/// Where a request's reply goes, and when it was queued (None: a patient request, which
/// no timeout ends).
type Waiter = (
    Option<Instant>,
    oneshot::Sender<Result<Bytes, BackendError>>,
);

#[derive(Default)]
struct InFlight {
    waiting: VecDeque<Waiter>,
    /// How many of the last `waiting` are not written yet (gathered for the next write).
    unwritten: usize,
}

async fn run(
    addr: SocketAddr,
    greeting: Greeting,
    mut rx: mpsc::Receiver<Job>,
    timeout: Duration,
    metrics: Arc<ProxyMetrics>,
) {
    let protocol = greeting.protocol;
    let why = match connect(addr, &greeting).await {
        Ok((stream, leftover)) => {
            metrics.backend_connected();
            debug!(%addr, "connected to storage node");
            let why = serve(stream, leftover, protocol, &mut rx, timeout, &metrics).await;
            metrics.backend_disconnected();
            why
        }
        Err(e) => {
            metrics.backend_connect_failed();
            e
        }
    };
    debug!(%addr, reason = %why, "storage node connection ended");
    // Whatever is still queued never left the proxy.
    rx.close();
    while let Some(job) = rx.recv().await {
        let _ = job.reply.send(Err(BackendError::NotSent(format!(
            "storage node {addr}: {why}"
        ))));
    }
}

async fn connect(addr: SocketAddr, greeting: &Greeting) -> Result<(TcpStream, BytesMut), String> {
    let (protocol, readonly) = (greeting.protocol, greeting.readonly);
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("connecting: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut input = BytesMut::with_capacity(16 * 1024);
    // Every connection is greeted before use, so a refusal (too many clients) is never
    // taken for the reply to a request.
    let mut hello: Vec<u8> = Vec::new();
    if let Some(password) = &greeting.password {
        hello.extend_from_slice(&crate::forward::encode_request(&[
            Bytes::from_static(b"AUTH"),
            password.clone(),
        ]));
    }
    hello.extend_from_slice(match protocol {
        Protocol::Resp3 => b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n",
        // HELLO, not PING: a node busy with a script still answers it (allow_busy).
        Protocol::Resp2 => b"*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n",
    });
    if readonly {
        hello.extend_from_slice(b"*1\r\n$8\r\nREADONLY\r\n");
    }
    let mut replies_due = 1 + usize::from(readonly) + usize::from(greeting.password.is_some());
    {
        let greet = async {
            stream
                .write_all(&hello)
                .await
                .map_err(|e| format!("greeting: {e}"))?;
            loop {
                while let Some(len) = frame_len(&input, protocol)? {
                    let reply = input.split_to(len);
                    if reply.first() == Some(&b'-') {
                        return Err(format!(
                            "greeting refused: {}",
                            String::from_utf8_lossy(&reply).trim_end()
                        ));
                    }
                    replies_due -= 1;
                    if replies_due == 0 {
                        return Ok(());
                    }
                }
                match stream.read_buf(&mut input).await {
                    Ok(0) => return Err("closed during the greeting".to_string()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("reading the greeting's reply: {e}")),
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, greet)
            .await
            .map_err(|_| "no greeting reply in time".to_string())??;
    }
    Ok((stream, input))
}

/// Runs the connection until it fails; answers why. Requests taken off `rx` and not
/// answered by then are answered [`BackendError::Lost`], or [`BackendError::NotSent`] when
/// their write had not started.
async fn serve(
    stream: TcpStream,
    mut input: BytesMut,
    protocol: Protocol,
    rx: &mut mpsc::Receiver<Job>,
    timeout: Duration,
    metrics: &ProxyMetrics,
) -> String {
    let (mut rd, mut wr) = stream.into_split();
    let in_flight = Mutex::new(InFlight::default());
    let lock = || {
        in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    let writer = async {
        let mut out = BytesMut::with_capacity(16 * 1024);
        loop {
            let Some(job) = rx.recv().await else {
                // The pool let go of this connection: close it once its replies are in.
                while !lock().waiting.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                return "closed after being idle".to_string();
            };
            let now = Instant::now();
            let queue = |job: Job, out: &mut BytesMut| {
                out.extend_from_slice(&job.request);
                let mut f = lock();
                f.waiting
                    .push_back(((!job.patient).then_some(now), job.reply));
                f.unwritten += 1;
            };
            queue(job, &mut out);
            // Let the other tasks that are ready run first: what they queue for this
            // connection meanwhile goes out in the same write (many clients' requests in one
            // syscall, and one read for the node).
            tokio::task::yield_now().await;
            while out.len() < WRITE_BATCH {
                let Ok(job) = rx.try_recv() else { break };
                queue(job, &mut out);
            }
            // From here on the node may receive them.
            let requests = std::mem::take(&mut lock().unwritten);
            metrics.backend_write(requests);
            if let Err(e) = wr.write_all(&out).await {
                return format!("writing: {e}");
            }
            out.clear();
        }
    };
    let reader = async {
        let mut scanner = FrameScanner::default();
        loop {
            match tokio::time::timeout(TIMEOUT_CHECK, rd.read_buf(&mut input)).await {
                Err(_) => {
                    let oldest = lock()
                        .waiting
                        .front()
                        .and_then(|(at, _)| at.map(|at| at.elapsed()));
                    if oldest.is_some_and(|age| age > timeout) {
                        return format!("no reply within {timeout:?}");
                    }
                    continue;
                }
                Ok(Ok(0)) => return "the storage node closed the connection".to_string(),
                Ok(Err(e)) => return format!("reading: {e}"),
                Ok(Ok(_)) => {}
            }
            loop {
                let len = match scanner.next(&input, protocol) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(e) => return e,
                };
                let reply = input.split_to(len).freeze();
                let waiter = {
                    let mut f = lock();
                    if f.waiting.len() > f.unwritten {
                        f.waiting.pop_front()
                    } else {
                        None
                    }
                };
                match waiter {
                    Some((_, waiter)) => {
                        let _ = waiter.send(Ok(reply));
                    }
                    None => return "a reply that no request asked for".to_string(),
                }
            }
            if input.capacity() - input.len() < 4096 {
                input.reserve(16 * 1024);
            }
        }
    };
    let why = tokio::select! {
        why = writer => why,
        why = reader => why,
    };
    let (lost, unsent) = {
        let mut f = lock();
        let sent = f.waiting.len() - f.unwritten;
        let unsent = f.waiting.split_off(sent);
        (std::mem::take(&mut f.waiting), unsent)
    };
    if !lost.is_empty() {
        warn!(requests = lost.len(), reason = %why, "storage node connection failed with requests in flight");
    }
    for (_, waiter) in lost {
        let _ = waiter.send(Err(BackendError::Lost(why.clone())));
    }
    for (_, waiter) in unsent {
        let _ = waiter.send(Err(BackendError::NotSent(why.clone())));
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
    const HELLO2: &[u8] = b"*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n";

    /// A storage node that answers the greeting (HELLO 2) and every PING (with PONG).
    async fn pong_node() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut input = BytesMut::new();
            loop {
                match socket.read_buf(&mut input).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let mut out = Vec::new();
                loop {
                    if input.starts_with(PING) {
                        let _ = input.split_to(PING.len());
                        out.extend_from_slice(b"+PONG\r\n");
                    } else if input.starts_with(HELLO2) {
                        let _ = input.split_to(HELLO2.len());
                        out.extend_from_slice(b"*2\r\n$5\r\nproto\r\n:2\r\n");
                    } else {
                        break;
                    }
                }
                if socket.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
        addr
    }

    fn counter(metrics: &ProxyMetrics, name: &str) -> u64 {
        let text = metrics.render();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"));
        line[name.len() + 1..].parse().unwrap()
    }

    // One worker thread, as when a proxy's cores are busy: a task woken by another runs
    // right after it (tokio's LIFO slot), so without the writer's yield every client's
    // request would go out in a write of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn requests_of_clients_ready_together_go_out_in_one_write() {
        let metrics = Arc::new(ProxyMetrics::default());
        let greeting = Greeting {
            protocol: Protocol::Resp2,
            readonly: false,
            password: None,
        };
        let (backend, _task) = Backend::spawn(
            pong_node().await,
            greeting,
            Duration::from_secs(5),
            metrics.clone(),
        );
        let ping = || Bytes::from_static(PING);
        // Connected, greeted and answering.
        assert_eq!(
            backend.send(ping()).await.await.unwrap(),
            Ok(Bytes::from_static(b"+PONG\r\n"))
        );
        let writes = counter(&metrics, "zankv_proxy_backend_writes_total");
        let requests = counter(&metrics, "zankv_proxy_backend_requests_total");
        assert_eq!((writes, requests), (1, 1));
        // Eight clients, each with one request, all ready in the same scheduler round.
        let clients = tokio::spawn(async move {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let backend = backend.clone();
                    tokio::spawn(async move { backend.send(ping()).await.await.unwrap() })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap(), Ok(Bytes::from_static(b"+PONG\r\n")));
            }
        });
        clients.await.unwrap();
        assert_eq!(counter(&metrics, "zankv_proxy_backend_requests_total"), 9);
        assert_eq!(counter(&metrics, "zankv_proxy_backend_writes_total"), 2);
    }
}
