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
use std::time::{Instant, SystemTime, UNIX_EPOCH};

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

/// One command of a batch sent by a connection.
pub enum BatchItem {
    /// A read command, parsed.
    Read(Command),
    /// A write command's arguments (they become a [`Change`]).
    Write(Vec<Bytes>),
}

/// A request to a partition worker.
pub enum Request {
    /// Execute commands in order; one reply per item, all sent together. A pipelining
    /// connection sends its consecutive data commands as one batch, so the channel and the
    /// reply cost once per batch, not once per command.
    Batch {
        /// The commands.
        items: Vec<BatchItem>,
        /// Where the replies go.
        reply: oneshot::Sender<Vec<Reply>>,
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
    /// Queues a batch and returns a receiver for its replies (dropped, without replies, if
    /// the worker is gone).
    pub async fn batch(&self, items: Vec<BatchItem>) -> oneshot::Receiver<Vec<Reply>> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Batch { items, reply: tx }).await;
        rx
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
            // Replies of this iteration's batches, released after the sync.
            let mut done: Vec<(oneshot::Sender<Vec<Reply>>, Vec<Reply>)> = Vec::new();
            // Writes waiting to be applied: the change and where its reply goes.
            let mut writes: Vec<(Change, usize, usize)> = Vec::new();
            let mut wrote = false;
            let mut tick = false;
            let mut next = Some(first);
            let mut handled = 0;
            while let Some(req) = next {
                match req {
                    Request::Batch { items, reply } => {
                        let batch = done.len();
                        handled += items.len();
                        done.push((reply, vec![Reply::Nil; items.len()]));
                        for (slot, item) in items.into_iter().enumerate() {
                            match item {
                                BatchItem::Read(cmd) => {
                                    // Reads must see the writes queued before them.
                                    wrote |= self.apply_writes(&mut writes, &mut done);
                                    let now_ms = self.clock.now();
                                    let (r, expired) =
                                        self.partition.read(&cmd, now_ms, &mut self.cursors);
                                    done[batch].1[slot] = r;
                                    if !expired.is_empty() && self.failed.is_none() {
                                        // Delete what the read found expired before the next
                                        // command, as Redis does on access.
                                        self.expire(now_ms, expired);
                                        wrote = true;
                                    }
                                }
                                BatchItem::Write(argv) => {
                                    let now_ms = self.clock.now();
                                    writes.push((Change::Command { now_ms, argv }, batch, slot));
                                }
                            }
                        }
                    }
                    Request::State { reply } => {
                        wrote |= self.apply_writes(&mut writes, &mut done);
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
            wrote |= self.apply_writes(&mut writes, &mut done);
            if wrote {
                let started = Instant::now();
                let synced = self.partition.sync();
                self.stats.observe_sync(started.elapsed());
                self.stats.set_keys(self.partition.state().keys);
                if let Err(e) = synced {
                    error!(partition = %self.name, error = %e, "syncing the write-ahead log failed; refusing writes");
                    self.failed = Some(e.to_string());
                    for (_, replies) in &mut done {
                        for r in replies.iter_mut() {
                            *r = Reply::Error(CommandError::Internal(e.to_string()));
                        }
                    }
                }
            }
            for (tx, replies) in done {
                let _ = tx.send(replies);
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

    /// Applies the queued writes as one batch, putting each reply in its batch slot (released
    /// after the sync). Returns whether anything was written.
    fn apply_writes(
        &mut self,
        writes: &mut Vec<(Change, usize, usize)>,
        done: &mut [(oneshot::Sender<Vec<Reply>>, Vec<Reply>)],
    ) -> bool {
        if writes.is_empty() {
            return false;
        }
        let (changes, slots): (Vec<Change>, Vec<(usize, usize)>) =
            writes.drain(..).map(|(c, b, s)| (c, (b, s))).unzip();
        let results = match &self.failed {
            Some(why) => Err(why.clone()),
            None => {
                let started = Instant::now();
                let applied = self.partition.apply_all(&changes);
                self.stats.observe_apply(changes.len(), started.elapsed());
                applied.map_err(|e| {
                    error!(partition = %self.name, error = %e, "applying changes failed; refusing writes");
                    self.failed = Some(e.to_string());
                    e.to_string()
                })
            }
        };
        match results {
            Ok(replies) => {
                for ((b, s), r) in slots.into_iter().zip(replies) {
                    done[b].1[s] = r;
                }
            }
            Err(why) => {
                for (b, s) in slots {
                    done[b].1[s] = Reply::Error(CommandError::Internal(why.clone()));
                }
            }
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
