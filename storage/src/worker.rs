//! The partition worker: one OS thread that owns a [`Partition`] and executes every request
//! for it, in arrival order.
//!
//! Requests arrive on a bounded channel (a full channel makes clients wait: back-pressure).
//! Each loop iteration drains what is queued, applies the writes, syncs the write-ahead log
//! **once** for all of them (group commit), and only then releases the replies, so a client
//! never sees a write (or a read of one) that a crash could still lose. Ticks drive
//! background expiry and reclamation, which are applied as ordinary changes.
//!
//! RocksDB is only ever called from this thread, never from an async task.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};
use zankv_commands::{Command, CommandError, Reply};

use crate::change::Change;
use crate::data::ScanCursors;
use crate::node_stats::NodeStats;
use crate::partition::{Partition, RECLAIM_BUDGET};
use crate::records::AppliedState;

/// Most requests handled between two syncs.
const MAX_BATCH: usize = 1024;
/// Most keys expired by one background change.
const EXPIRE_BATCH: usize = 256;
/// Most collection versions reclaimed by one background change.
const RECLAIM_BATCH: usize = 64;
/// Open SCAN cursors remembered per partition.
const SCAN_CURSORS: usize = 10_000;

/// A request to a partition worker.
pub enum Request {
    /// Execute a read command.
    Read {
        /// The parsed command.
        cmd: Command,
        /// Where the reply goes.
        reply: oneshot::Sender<Reply>,
    },
    /// Apply a write command (its raw arguments become a [`Change`]).
    Write {
        /// The command's arguments.
        argv: Vec<Bytes>,
        /// Where the reply goes.
        reply: oneshot::Sender<Reply>,
    },
    /// Report the applied state (key counts for INFO/DBSIZE).
    State {
        /// Where the state goes.
        reply: oneshot::Sender<AppliedState>,
    },
    /// Time passed: run background expiry and reclamation.
    Tick,
}

/// A cloneable handle to a partition worker.
#[derive(Clone)]
pub struct PartitionHandle {
    tx: mpsc::Sender<Request>,
}

impl PartitionHandle {
    async fn call(&self, make: impl FnOnce(oneshot::Sender<Reply>) -> Request) -> Reply {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(make(tx)).await.is_err() {
            return Reply::Error(CommandError::ShuttingDown);
        }
        rx.await.unwrap_or(Reply::Error(CommandError::ShuttingDown))
    }

    /// Queues a read and returns a receiver for its reply, so a connection can pipeline.
    pub async fn read(&self, cmd: Command) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        // If the worker is gone the sender is dropped and the receiver reports it.
        let _ = self.tx.send(Request::Read { cmd, reply: tx }).await;
        rx
    }

    /// Queues a write and returns a receiver for its reply.
    pub async fn write(&self, argv: Vec<Bytes>) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Write { argv, reply: tx }).await;
        rx
    }

    /// Executes a read and waits for the reply.
    pub async fn read_now(&self, cmd: Command) -> Reply {
        self.call(|reply| Request::Read { cmd, reply }).await
    }

    /// The partition's applied state.
    pub async fn state(&self) -> Option<AppliedState> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::State { reply: tx }).await.ok()?;
        rx.await.ok()
    }

    /// Sends a tick without waiting; dropped if the queue is full (the next one will do).
    pub fn tick(&self) {
        let _ = self.tx.try_send(Request::Tick);
    }
}

/// Starts a worker thread for `partition`.
pub fn spawn(
    name: String,
    partition: Partition,
    queue: usize,
    stats: Arc<NodeStats>,
) -> std::io::Result<(PartitionHandle, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(queue);
    let thread = std::thread::Builder::new()
        .name(format!("partition-{name}"))
        .spawn(move || {
            Worker {
                name,
                partition,
                stats,
                cursors: ScanCursors::new(SCAN_CURSORS),
                clock: Clock::default(),
                failed: None,
            }
            .run(rx)
        })?;
    Ok((PartitionHandle { tx }, thread))
}

/// Milliseconds since the epoch that never go backwards within a worker, so expiry
/// decisions stay monotonic even if the wall clock is stepped back.
#[derive(Default)]
struct Clock {
    last: i64,
}

impl Clock {
    fn now(&mut self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.last = self.last.max(wall);
        self.last
    }
}

struct Worker {
    name: String,
    partition: Partition,
    stats: Arc<NodeStats>,
    cursors: ScanCursors,
    clock: Clock,
    /// Set after a storage error while applying: writes are refused from then on, because
    /// the partition's state can no longer be trusted to match its log.
    failed: Option<String>,
}

impl Worker {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        info!(partition = %self.name, applied = self.partition.state().applied_index, "partition worker started");
        while let Some(first) = rx.blocking_recv() {
            let mut replies: Vec<(oneshot::Sender<Reply>, Reply)> = Vec::new();
            let mut writes: Vec<(Change, oneshot::Sender<Reply>)> = Vec::new();
            let mut wrote = false;
            let mut tick = false;
            let mut next = Some(first);
            let mut handled = 0;
            while let Some(req) = next {
                match req {
                    Request::Read { cmd, reply } => {
                        // Reads must see the writes queued before them.
                        wrote |= self.apply_writes(&mut writes, &mut replies);
                        let now_ms = self.clock.now();
                        let (r, expired) = self.partition.read(&cmd, now_ms, &mut self.cursors);
                        replies.push((reply, r));
                        if !expired.is_empty() && self.failed.is_none() {
                            // Delete what the read found expired before the next request,
                            // as Redis does on access.
                            self.expire(now_ms, expired);
                            wrote = true;
                        }
                    }
                    Request::Write { argv, reply } => {
                        let now_ms = self.clock.now();
                        writes.push((Change::Command { now_ms, argv }, reply));
                    }
                    Request::State { reply } => {
                        wrote |= self.apply_writes(&mut writes, &mut replies);
                        let _ = reply.send(self.partition.state());
                    }
                    Request::Tick => tick = true,
                }
                handled += 1;
                next = if handled < MAX_BATCH {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            wrote |= self.apply_writes(&mut writes, &mut replies);
            if wrote {
                if let Err(e) = self.partition.sync() {
                    error!(partition = %self.name, error = %e, "syncing the write-ahead log failed; refusing writes");
                    self.failed = Some(e.to_string());
                    for (_, r) in &mut replies {
                        *r = Reply::Error(CommandError::Internal(e.to_string()));
                    }
                }
            }
            for (tx, r) in replies {
                let _ = tx.send(r);
            }
            if tick {
                self.background();
            }
        }
        if let Err(e) = self.partition.sync() {
            error!(partition = %self.name, error = %e, "final sync failed");
        }
        info!(partition = %self.name, "partition worker stopped");
    }

    /// Applies the queued writes as one batch; their replies join `replies` (to be released
    /// after the sync). Returns whether anything was written.
    fn apply_writes(
        &mut self,
        writes: &mut Vec<(Change, oneshot::Sender<Reply>)>,
        replies: &mut Vec<(oneshot::Sender<Reply>, Reply)>,
    ) -> bool {
        if writes.is_empty() {
            return false;
        }
        let (changes, senders): (Vec<Change>, Vec<_>) = writes.drain(..).unzip();
        let results = match &self.failed {
            Some(why) => Err(why.clone()),
            None => self.partition.apply_all(&changes).map_err(|e| {
                error!(partition = %self.name, error = %e, "applying changes failed; refusing writes");
                self.failed = Some(e.to_string());
                e.to_string()
            }),
        };
        match results {
            Ok(rs) => replies.extend(senders.into_iter().zip(rs)),
            Err(why) => replies.extend(
                senders
                    .into_iter()
                    .map(|s| (s, Reply::Error(CommandError::Internal(why.clone())))),
            ),
        }
        self.failed.is_none()
    }

    /// Deletes keys found expired (by the background scan or by a read) with an expiry
    /// change, and counts them.
    fn expire(&mut self, now_ms: i64, keys: Vec<(Bytes, u64)>) {
        if let Reply::Integer(n) = self.apply(Change::Expire { now_ms, keys }) {
            self.stats.add_expired(n as u64);
        }
    }

    /// Applies one background change.
    fn apply(&mut self, change: Change) -> Reply {
        if let Some(why) = &self.failed {
            return Reply::Error(CommandError::Internal(why.clone()));
        }
        match self.partition.apply_all(std::slice::from_ref(&change)) {
            Ok(mut replies) => replies.pop().unwrap_or(Reply::Nil),
            Err(e) => {
                error!(partition = %self.name, error = %e, "applying a change failed; refusing writes");
                self.failed = Some(e.to_string());
                Reply::Error(CommandError::Internal(e.to_string()))
            }
        }
    }

    /// One round of background work: expire due keys, reclaim dropped collection elements.
    fn background(&mut self) {
        if self.failed.is_some() {
            return;
        }
        let now = self.clock.now();
        match self.partition.due_expirations(now, EXPIRE_BATCH) {
            Ok(keys) if !keys.is_empty() => self.expire(now, keys),
            Ok(_) => {}
            Err(e) => warn!(partition = %self.name, error = %e, "reading the expiry index failed"),
        }
        match self.partition.pending_reclaims(RECLAIM_BATCH) {
            Ok(versions) if !versions.is_empty() => {
                self.apply(Change::Reclaim {
                    versions,
                    budget: RECLAIM_BUDGET,
                });
            }
            Ok(_) => {}
            Err(e) => {
                warn!(partition = %self.name, error = %e, "reading reclamation records failed")
            }
        }
    }
}
