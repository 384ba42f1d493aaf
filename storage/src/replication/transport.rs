//! Raft messages between storage nodes: one TCP connection per peer node, carrying batched
//! messages of every group.
//!
//! Sending never blocks the store loop: [`Transport::send`] puts a message on the peer
//! node's bounded queue and, when the queue is full, drops it and counts it (raft tolerates
//! loss; it retries). One task per peer node connects (reconnecting with exponential
//! backoff), takes everything queued, and writes it as one frame. [`serve`] accepts
//! connections from peer nodes and forwards decoded messages to the store loop's inbound
//! queue, dropping (and counting) when that queue is full.
//!
//! Frame: `u32-BE length` then `u32-BE count` and `count` × (`u64-BE group`,
//! `u32-BE length`, protobuf `Message`). A malformed frame closes the connection.
//!
//! Snapshots travel on a separate, rate-limited path (not here yet).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::store::GroupMessage;

/// Largest frame accepted from a peer (a batch of messages, snapshots excluded).
const MAX_FRAME: usize = 64 << 20;
/// Most messages written in one frame.
const MAX_BATCH: usize = 4096;
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

/// Sends raft messages to peer nodes.
pub struct Transport {
    queue: usize,
    peers: HashMap<u64, mpsc::Sender<GroupMessage>>,
    stats: Arc<TransportStats>,
    shutdown: watch::Receiver<bool>,
}

impl Transport {
    /// A transport whose per-peer queues hold `queue` messages.
    pub fn new(queue: usize, stats: Arc<TransportStats>, shutdown: watch::Receiver<bool>) -> Self {
        Transport {
            queue,
            peers: HashMap::new(),
            stats,
            shutdown,
        }
    }

    /// Declares (or moves) peer node `node` at `addr`; must run inside a tokio runtime.
    pub fn add_peer(&mut self, node: u64, addr: SocketAddr) {
        let (tx, rx) = mpsc::channel(self.queue);
        tokio::spawn(sender(addr, rx, self.stats.clone(), self.shutdown.clone()));
        self.peers.insert(node, tx);
    }

    /// Queues a message for node `node`; drops it (counted) if the queue is full or the node
    /// is unknown. Never blocks.
    pub fn send(&self, node: u64, m: GroupMessage) {
        let queued = self
            .peers
            .get(&node)
            .is_some_and(|tx| tx.try_send(m).is_ok());
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
            Ok(s) => {
                backoff = BACKOFF_MIN;
                let _ = s.set_nodelay(true);
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
            let frame = encode_frame(&pending);
            let written = async {
                out.write_all(&frame).await?;
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

/// Accepts raft connections from peer nodes and forwards their messages to `inbound`.
pub async fn serve(
    listener: TcpListener,
    inbound: mpsc::Sender<GroupMessage>,
    stats: Arc<TransportStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(receive(
                    stream,
                    peer,
                    inbound.clone(),
                    stats.clone(),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                warn!(error = %e, "accepting a raft connection failed");
                tokio::time::sleep(BACKOFF_MIN).await;
            }
        }
    }
}

async fn receive(
    mut stream: TcpStream,
    peer: SocketAddr,
    inbound: mpsc::Sender<GroupMessage>,
    stats: Arc<TransportStats>,
    mut shutdown: watch::Receiver<bool>,
) {
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
        body.resize(len, 0);
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        match decode_frame(&body) {
            Ok(messages) => {
                for m in messages {
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

    #[tokio::test]
    async fn messages_arrive_in_order_and_survive_a_receiver_restart() {
        let (stop_tx, stop) = watch::channel(false);
        let stats = Arc::new(TransportStats::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (in_tx, mut in_rx) = mpsc::channel(10_000);
        let (recv_stop_tx, recv_stop) = watch::channel(false);
        let server = tokio::spawn(serve(listener, in_tx.clone(), stats.clone(), recv_stop));
        let mut transport = Transport::new(10_000, stats.clone(), stop.clone());
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
        tokio::spawn(serve(listener, in_tx, stats.clone(), again));
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
        let mut transport = Transport::new(4, stats.clone(), stop);
        transport.add_peer(2, addr);
        transport.send(3, message(0));
        for i in 0..100 {
            transport.send(2, message(i));
        }
        assert!(stats.dropped_send.load(Ordering::Relaxed) >= 90);
    }
}
