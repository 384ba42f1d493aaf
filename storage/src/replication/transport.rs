//! Raft messages between storage nodes: one TCP connection per peer node, carrying batched
//! messages of every group.
//!
//! Sending never blocks the store loop: [`Transport::send`] puts a message on the peer
//! node's bounded queue and, when the queue is full, drops it and counts it (raft tolerates
//! loss; it retries). Message connections (sending and receiving) run on the store loop's
//! own runtime, so a message passes between them and the loop without waking another
//! thread; the listener and snapshot transfers run on the node's I/O runtime. One task per
//! peer node connects (reconnecting with exponential backoff), takes everything queued,
//! and writes it as one frame. [`serve`] accepts connections from peer nodes and forwards
//! decoded messages to the store loop's inbound queue, dropping (and counting) when that
//! queue is full.
//!
//! A connection starts with one kind byte: `R` for raft messages, `S` for one snapshot
//! transfer ([`super::snapshot`]), which gets a connection of its own so bulk data never
//! delays raft messages; transfers of a node share one rate limit.
//!
//! Frame: `u32-BE length` then `u32-BE count` and `count` × (`u64-BE group`,
//! `u32-BE length`, protobuf `Message`). A malformed frame closes the connection; a
//! `MsgSnapshot` on a message connection is dropped (its files would be missing).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::snapshot::{
    self, RateLimiter, SnapshotDirs, SnapshotFiles, SnapshotStats, RAFT_STREAM, SNAPSHOT_STREAM,
};
use super::store::GroupMessage;

/// Largest frame accepted from a peer: one message with the largest entry a node may be
/// configured to replicate (512 MiB), plus headers. Frames are read as their bytes arrive,
/// never allocated by the length a peer claims.
const MAX_FRAME: usize = 520 << 20;
/// Messages are packed into frames of about this many bytes (a larger message travels
/// alone), so one huge entry never makes a frame of many.
const FRAME_TARGET: usize = 4 << 20;
/// Most messages written in one frame.
const MAX_BATCH: usize = 4096;
/// Bytes a message connection reads at a time.
const RECEIVE_BUFFER: usize = 64 << 10;
/// Reconnection backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Counters of the transport.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Messages dropped because a peer's send queue was full.
    pub dropped_send: AtomicU64,
    /// Messages dropped because the store loop's inbound queue was full.
    pub dropped_receive: AtomicU64,
    /// Frames written.
    pub frames_sent: AtomicU64,
    /// Messages written.
    pub messages_sent: AtomicU64,
}

/// Encodes messages as one frame.
pub fn encode_frame(messages: &[GroupMessage]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + messages.len() * 64);
    body.extend_from_slice(&(messages.len() as u32).to_be_bytes());
    for m in messages {
        let bytes = m
            .msg
            .write_to_bytes()
            .expect("encoding a raft message into memory cannot fail");
        body.extend_from_slice(&m.group.to_be_bytes());
        body.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        body.extend_from_slice(&bytes);
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Splits messages into runs that each make a frame of about [`FRAME_TARGET`] bytes.
fn frame_chunks(messages: &[GroupMessage]) -> Vec<&[GroupMessage]> {
    let mut chunks = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, m) in messages.iter().enumerate() {
        let len = m.msg.compute_size() as usize;
        if i > start && size + len > FRAME_TARGET {
            chunks.push(&messages[start..i]);
            (start, size) = (i, 0);
        }
        size += len;
    }
    if start < messages.len() {
        chunks.push(&messages[start..]);
    }
    chunks
}

/// Decodes a frame body (without its length prefix).
pub fn decode_frame(body: &[u8]) -> Result<Vec<GroupMessage>, String> {
    let take = |buf: &mut &[u8], n: usize| -> Result<Vec<u8>, String> {
        if buf.len() < n {
            return Err("truncated frame".into());
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head.to_vec())
    };
    let mut buf = body;
    let count = u32::from_be_bytes(take(&mut buf, 4)?.try_into().expect("4 bytes")) as usize;
    if count.saturating_mul(12) > buf.len() {
        return Err("message count exceeds the frame".into());
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let group = u64::from_be_bytes(take(&mut buf, 8)?.try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(take(&mut buf, 4)?.try_into().expect("4 bytes")) as usize;
        let msg = Message::parse_from_bytes(&take(&mut buf, len)?)
            .map_err(|e| format!("bad raft message: {e}"))?;
        out.push(GroupMessage { group, msg });
    }
    if !buf.is_empty() {
        return Err("trailing bytes in frame".into());
    }
    Ok(out)
}

/// Called with the outcome of a snapshot transfer (true: the follower stored it).
pub type SnapshotDone = Box<dyn FnOnce(bool) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Sends raft messages and snapshots to peer nodes.
pub struct Transport {
    queue: usize,
    peers: HashMap<u64, (SocketAddr, mpsc::Sender<GroupMessage>)>,
    stats: Arc<TransportStats>,
    snapshot_stats: Arc<SnapshotStats>,
    limiter: Arc<RateLimiter>,
    /// Where snapshot transfers run.
    runtime: tokio::runtime::Handle,
    /// Where the message connections' tasks run: the store loop's own runtime, so handing
    /// them a message wakes no other thread.
    messages: tokio::runtime::Handle,
    shutdown: watch::Receiver<bool>,
}

impl Transport {
    /// A transport whose per-peer queues hold `queue` messages and whose snapshot
    /// transfers together send at most `snapshot_bytes_per_sec` (0 = unlimited). Snapshot
    /// transfers run on the runtime it is created in, message connections on `messages`.
    pub fn new(
        queue: usize,
        snapshot_bytes_per_sec: u64,
        stats: Arc<TransportStats>,
        snapshot_stats: Arc<SnapshotStats>,
        shutdown: watch::Receiver<bool>,
        messages: tokio::runtime::Handle,
    ) -> Self {
        Transport {
            queue,
            peers: HashMap::new(),
            stats,
            snapshot_stats,
            limiter: Arc::new(RateLimiter::new(snapshot_bytes_per_sec)),
            runtime: tokio::runtime::Handle::current(),
            messages,
            shutdown,
        }
    }

    /// Declares (or moves) peer node `node` at `addr`.
    pub fn add_peer(&mut self, node: u64, addr: SocketAddr) {
        let (tx, rx) = mpsc::channel(self.queue);
        self.messages
            .spawn(sender(addr, rx, self.stats.clone(), self.shutdown.clone()));
        self.peers.insert(node, (addr, tx));
    }

    /// Streams a snapshot (`m` is its `MsgSnapshot`, `files` its checkpoint) to node
    /// `node` on a connection of its own; `done` learns the outcome. Never blocks.
    pub fn send_snapshot(
        &self,
        node: u64,
        m: GroupMessage,
        files: Arc<SnapshotFiles>,
        done: SnapshotDone,
    ) {
        let Some((addr, _)) = self.peers.get(&node) else {
            self.runtime.spawn(done(false));
            return;
        };
        let addr = *addr;
        let limiter = self.limiter.clone();
        let stats = self.snapshot_stats.clone();
        let mut shutdown = self.shutdown.clone();
        self.runtime.spawn(async move {
            let transfer = async {
                let mut stream = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("connecting: {e}"))?;
                snapshot::send(&mut stream, &m, &files, &limiter).await
            };
            let outcome = tokio::select! {
                _ = shutdown.changed() => Err("the node is stopping".to_string()),
                r = transfer => r,
            };
            let (group, index) = (m.group, m.msg.get_snapshot().get_metadata().index);
            match outcome {
                Ok(bytes) => {
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    stats.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
                    tracing::info!(group, index, bytes, %addr, "snapshot sent");
                    done(true).await;
                }
                Err(e) => {
                    stats.send_failures.fetch_add(1, Ordering::Relaxed);
                    warn!(group, index, %addr, error = %e, "snapshot transfer failed");
                    done(false).await;
                }
            }
        });
    }

    /// Queues a message for node `node`; drops it (counted) if the queue is full or the node
    /// is unknown. Never blocks.
    pub fn send(&self, node: u64, m: GroupMessage) {
        let queued = self
            .peers
            .get(&node)
            .is_some_and(|(_, tx)| tx.try_send(m).is_ok());
        if !queued {
            self.stats.dropped_send.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One peer node's sending task: connect, then write batches until shut down.
async fn sender(
    addr: SocketAddr,
    mut rx: mpsc::Receiver<GroupMessage>,
    stats: Arc<TransportStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut pending: Vec<GroupMessage> = Vec::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            s = TcpStream::connect(addr) => s,
        };
        let stream = match stream {
            Ok(mut s) => {
                let _ = s.set_nodelay(true);
                if s.write_all(&[RAFT_STREAM]).await.is_err() {
                    continue;
                }
                backoff = BACKOFF_MIN;
                s
            }
            Err(e) => {
                debug!(%addr, error = %e, "raft peer unreachable; retrying");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let mut out = BufWriter::new(stream);
        loop {
            if pending.is_empty() {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    m = rx.recv() => match m {
                        Some(m) => pending.push(m),
                        None => return,
                    },
                }
            }
            while pending.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => pending.push(m),
                    Err(_) => break,
                }
            }
            let written = async {
                for chunk in frame_chunks(&pending) {
                    out.write_all(&encode_frame(chunk)).await?;
                }
                out.flush().await
            };
            match written.await {
                Ok(()) => {
                    stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                    stats
                        .messages_sent
                        .fetch_add(pending.len() as u64, Ordering::Relaxed);
                    pending.clear();
                }
                Err(e) => {
                    // The batch is lost with the connection; raft resends what matters.
                    warn!(%addr, error = %e, "raft connection lost; reconnecting");
                    stats
                        .dropped_send
                        .fetch_add(pending.len() as u64, Ordering::Relaxed);
                    pending.clear();
                    break;
                }
            }
        }
    }
}

/// Where received snapshots go.
#[derive(Clone)]
pub struct SnapshotInbox {
    /// The node's snapshot directories.
    pub dirs: SnapshotDirs,
    /// Counters.
    pub stats: Arc<SnapshotStats>,
}

/// Accepts raft connections from peer nodes and forwards their messages (and received
/// snapshots) to `inbound`. Message connections are read on `messages` (the store loop's
/// runtime), snapshots where this runs.
pub async fn serve(
    listener: TcpListener,
    inbound: mpsc::Sender<GroupMessage>,
    stats: Arc<TransportStats>,
    inbox: SnapshotInbox,
    mut shutdown: watch::Receiver<bool>,
    messages: tokio::runtime::Handle,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(accept(
                    stream,
                    peer,
                    inbound.clone(),
                    stats.clone(),
                    inbox.clone(),
                    shutdown.clone(),
                    messages.clone(),
                ));
            }
            Err(e) => {
                warn!(error = %e, "accepting a raft connection failed");
                tokio::time::sleep(BACKOFF_MIN).await;
            }
        }
    }
}

/// Reads a connection's kind byte and serves it.
async fn accept(
    mut stream: TcpStream,
    peer: SocketAddr,
    inbound: mpsc::Sender<GroupMessage>,
    stats: Arc<TransportStats>,
    inbox: SnapshotInbox,
    mut shutdown: watch::Receiver<bool>,
    messages: tokio::runtime::Handle,
) {
    let mut kind = [0u8; 1];
    let read = tokio::select! {
        _ = shutdown.changed() => return,
        r = stream.read_exact(&mut kind) => r,
    };
    if read.is_err() {
        return;
    }
    match kind[0] {
        RAFT_STREAM => {
            // Moved to the store loop's runtime: a frame read there reaches the loop
            // without waking another thread.
            let stream = match stream.into_std() {
                Ok(s) => s,
                Err(e) => {
                    warn!(%peer, error = %e, "cannot hand a raft connection over; closing");
                    return;
                }
            };
            messages.spawn(async move {
                match TcpStream::from_std(stream) {
                    Ok(stream) => receive(stream, peer, inbound, stats, shutdown).await,
                    Err(e) => warn!(%peer, error = %e, "cannot register a raft connection"),
                }
            });
        }
        SNAPSHOT_STREAM => {
            let received = tokio::select! {
                _ = shutdown.changed() => return,
                r = snapshot::receive(&mut stream, &inbox.dirs, &inbound, &inbox.stats) => r,
            };
            if let Err(e) = received {
                warn!(%peer, error = %e, "receiving a snapshot failed");
                let _ = stream.write_all(&[0]).await;
            }
        }
        other => warn!(%peer, kind = other, "unknown raft connection kind; closing"),
    }
}

async fn receive(
    stream: TcpStream,
    peer: SocketAddr,
    inbound: mpsc::Sender<GroupMessage>,
    stats: Arc<TransportStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Buffered: a frame's length and body (often the whole of what one read returns, and
    // sometimes several frames) come in one system call, not two or three.
    let mut stream = BufReader::with_capacity(RECEIVE_BUFFER, stream);
    let mut body = Vec::new();
    loop {
        let mut len = [0u8; 4];
        let read = tokio::select! {
            _ = shutdown.changed() => return,
            r = stream.read_exact(&mut len) => r,
        };
        if read.is_err() {
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            warn!(%peer, len, "raft frame too large; closing connection");
            return;
        }
        body.clear();
        match (&mut stream).take(len as u64).read_to_end(&mut body).await {
            Ok(n) if n == len => {}
            _ => return,
        }
        match decode_frame(&body) {
            Ok(messages) => {
                for m in messages {
                    if m.msg.get_msg_type() == MessageType::MsgSnapshot {
                        warn!(%peer, group = m.group, "snapshot message outside a snapshot stream; dropped");
                        stats.dropped_receive.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if inbound.try_send(m).is_err() {
                        stats.dropped_receive.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(e) => {
                warn!(%peer, error = %e, "malformed raft frame; closing connection");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::MessageType;

    fn message(i: u64) -> GroupMessage {
        let mut msg = Message::default();
        msg.set_msg_type(MessageType::MsgHeartbeat);
        msg.from = 1;
        msg.to = 2;
        msg.term = i;
        GroupMessage { group: i % 7, msg }
    }

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let msgs: Vec<_> = (0..5).map(message).collect();
        let frame = encode_frame(&msgs);
        let back = decode_frame(&frame[4..]).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back[3].group, 3);
        assert_eq!(back[3].msg.term, 3);
        assert!(decode_frame(&frame[4..frame.len() - 1]).is_err());
        assert!(decode_frame(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_frame(&[]).is_err());
    }

    async fn wait_for(rx: &mut mpsc::Receiver<GroupMessage>, n: usize) -> Vec<GroupMessage> {
        let mut got = Vec::new();
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(m)) => got.push(m),
                _ => panic!("only {} of {n} messages arrived", got.len()),
            }
        }
        got
    }

    fn inbox(dir: &std::path::Path) -> SnapshotInbox {
        SnapshotInbox {
            dirs: SnapshotDirs::new(dir.join("snapshots")).unwrap(),
            stats: Arc::new(SnapshotStats::default()),
        }
    }

    fn transport(
        queue: usize,
        stats: &Arc<TransportStats>,
        stop: watch::Receiver<bool>,
    ) -> Transport {
        let snapshot_stats = Arc::new(SnapshotStats::default());
        Transport::new(
            queue,
            0,
            stats.clone(),
            snapshot_stats,
            stop,
            tokio::runtime::Handle::current(),
        )
    }

    #[test]
    fn frames_hold_about_four_mebibytes_and_a_huge_message_travels_alone() {
        let mut big = message(1);
        big.msg.mut_entries().push(raft::eraftpb::Entry {
            data: vec![0u8; 10 << 20].into(),
            ..Default::default()
        });
        let mut msgs: Vec<GroupMessage> = (0..3).map(message).collect();
        msgs.push(big);
        msgs.extend((0..3).map(message));
        let chunks = frame_chunks(&msgs);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![3, 1, 3]);
        let total: Vec<GroupMessage> = chunks
            .iter()
            .flat_map(|c| decode_frame(&encode_frame(c)[4..]).unwrap())
            .collect();
        assert_eq!(total.len(), msgs.len());
        assert!(frame_chunks(&[]).is_empty());
    }

    #[tokio::test]
    async fn snapshots_travel_on_their_own_connection_and_only_there() {
        let (_stop_tx, stop) = watch::channel(false);
        let stats = Arc::new(TransportStats::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (in_tx, mut in_rx) = mpsc::channel(100);
        let tmp = tempfile::tempdir().unwrap();
        let receiving = inbox(tmp.path());
        tokio::spawn(serve(
            listener,
            in_tx,
            stats.clone(),
            receiving.clone(),
            stop.clone(),
            tokio::runtime::Handle::current(),
        ));
        let mut transport = transport(100, &stats, stop);
        transport.add_peer(2, addr);
        let mut snap = message(5);
        snap.msg.set_msg_type(MessageType::MsgSnapshot);
        snap.msg.mut_snapshot().mut_metadata().index = 77;
        // Not on the message connection: it would arrive without its files.
        transport.send(2, snap.clone());
        transport.send(2, message(6));
        let got = wait_for(&mut in_rx, 1).await;
        assert_eq!(got[0].msg.get_msg_type(), MessageType::MsgHeartbeat);

        let dir = tmp.path().join("checkpoint");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("CURRENT"), b"x").unwrap();
        let files = Arc::new(SnapshotFiles { dir, index: 77 });
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        transport.send_snapshot(
            2,
            snap,
            files,
            Box::new(move |ok| {
                Box::pin(async move {
                    let _ = done_tx.send(ok);
                })
            }),
        );
        let got = wait_for(&mut in_rx, 1).await;
        assert_eq!(got[0].msg.get_msg_type(), MessageType::MsgSnapshot);
        assert!(done_rx.await.unwrap(), "the transfer reports success");
        let stored = receiving.dirs.recv_dir(5, 77); // message(5) is for group 5
        assert_eq!(std::fs::read(stored.join("CURRENT")).unwrap(), b"x");
        // Nothing listens for node 3: the failure is reported, not lost.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let files = Arc::new(SnapshotFiles {
            dir: tmp.path().join("gone"),
            index: 1,
        });
        transport.send_snapshot(
            3,
            message(1),
            files,
            Box::new(move |ok| {
                Box::pin(async move {
                    let _ = done_tx.send(ok);
                })
            }),
        );
        assert!(!done_rx.await.unwrap());
    }

    #[tokio::test]
    async fn messages_arrive_in_order_and_survive_a_receiver_restart() {
        let (stop_tx, stop) = watch::channel(false);
        let stats = Arc::new(TransportStats::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (in_tx, mut in_rx) = mpsc::channel(10_000);
        let (recv_stop_tx, recv_stop) = watch::channel(false);
        let tmp = tempfile::tempdir().unwrap();
        let server = tokio::spawn(serve(
            listener,
            in_tx.clone(),
            stats.clone(),
            inbox(tmp.path()),
            recv_stop,
            tokio::runtime::Handle::current(),
        ));
        let mut transport = transport(10_000, &stats, stop.clone());
        transport.add_peer(2, addr);
        for i in 0..1000 {
            transport.send(2, message(i));
        }
        let got = wait_for(&mut in_rx, 1000).await;
        assert!(
            got.iter().enumerate().all(|(i, m)| m.msg.term == i as u64),
            "out of order"
        );
        assert!(
            stats.frames_sent.load(Ordering::Relaxed) < 1000,
            "messages were not batched"
        );

        // The receiver goes away and comes back on the same address: the sender reconnects.
        let _ = recv_stop_tx.send(true);
        let _ = server.await;
        let listener = TcpListener::bind(addr).await.unwrap();
        let (_again_tx, again) = watch::channel(false);
        tokio::spawn(serve(
            listener,
            in_tx,
            stats.clone(),
            inbox(tmp.path()),
            again,
            tokio::runtime::Handle::current(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut i = 1000;
        loop {
            transport.send(2, message(i));
            i += 1;
            if let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(100), in_rx.recv()).await
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sender never reconnected"
            );
        }
        let _ = stop_tx.send(true);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (_stop_tx, stop) = watch::channel(false);
        let stats = Arc::new(TransportStats::default());
        // A peer that never answers: nothing drains the queue of 4 messages.
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut transport = transport(4, &stats, stop);
        transport.add_peer(2, addr);
        transport.send(3, message(0));
        for i in 0..100 {
            transport.send(2, message(i));
        }
        assert!(stats.dropped_send.load(Ordering::Relaxed) >= 90);
    }
}
