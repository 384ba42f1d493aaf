//! The store loop: the one thread of a node that owns its [`RaftStore`] and drives every
//! raft group it hosts.
//!
//! Each iteration: wait for input (raft messages from the transport, client batches and
//! background changes from the RESP server and the partition workers, or the next tick),
//! drain what is queued, step/tick/propose, register the iteration's reads with ReadIndex
//! (one request per group for all its waiting read batches, and at most one out per group:
//! reads arriving meanwhile wait for the next), then `process_ready`: one
//! write batch and **one** fsync for the raft output of every group, messages handed to the
//! transport, committed entries and confirmed reads handed to the partition workers.
//!
//! Invariants:
//! - only a leader proposes; a batch reaching a non-leader is answered at once with
//!   `ERR_CLUSTER_CHANGED` naming the leader when known;
//! - a batch's plan is sent to its worker before any of its entries can be committed, so
//!   the worker always knows whom an entry answers;
//! - the loop never waits on a partition worker and never on a peer node (the transport
//!   drops instead). Worker queues are unbounded but their backlog is bounded by the
//!   clients: every entry answers a client batch (at most `max_clients` connections with
//!   a bounded pipeline each) or is a background change (a few per tick).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::eraftpb::MessageType;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};
use zankv_commands::{CommandError, ReadCommand, Reply};
use zankv_pd_api::node_of;

use super::blocking::{BlockedClients, BlockedPop, Popped, WaiterId, Wakes};
use super::log_store::GroupId;
use super::log_store::INIT_INDEX;
use super::membership::{self, AdminError, AdminOp, AdminOutcome, Step};
use super::peer::ProposeError;
use super::scripts::{Hold, ScriptHolds};
use super::snapshot::SnapshotFiles;
use super::store::{GroupMessage, RaftStore, Start, StoreOutput};
use super::transport::Transport;
use super::watches::WatchTables;
use crate::change::{Change, Touches};
use crate::clock::Clock;
use crate::node_stats::NodeStats;
use crate::routing::SharedRouting;
use crate::script::Outcome;
use crate::worker::{
    BatchItem, Plan, ReadBatch, Slot, ToStore, WorkerEvent, WorkerHandle, WorkerMsg,
};

/// Log writes of at least this many bytes are written and synced on a blocking thread, so
/// the transport (which runs on the loop's thread) goes on moving messages meanwhile; below
/// it, handing the sync over costs more than it saves.
const SYNC_ASIDE_BYTES: usize = 1 << 20;
/// Most inputs taken from each queue per iteration, so one source cannot starve the rest.
const DRAIN: usize = 4096;

/// A request to the store loop.
pub enum StoreRequest {
    /// A client batch for one group; one reply per item, all together.
    Batch {
        /// The group all items belong to.
        group: GroupId,
        /// The commands, in order.
        items: Vec<BatchItem>,
        /// Where the replies go.
        reply: oneshot::Sender<Vec<Reply>>,
    },
    /// An event from a partition worker: a background change to propose (if this node
    /// leads the group, else dropped), a checkpoint written, a durable index.
    Worker {
        /// The group.
        group: GroupId,
        /// What happened.
        event: WorkerEvent,
    },
    /// A snapshot transfer to replica `to` of `group` ended.
    SnapshotSent {
        /// The group.
        group: GroupId,
        /// The replica it went to.
        to: u64,
        /// Whether the follower stored it.
        delivered: bool,
    },
    /// WATCH `keys` of `group` (this node must lead it): answered with a token per key
    /// ([`super::watches`]).
    Watch {
        /// The group.
        group: GroupId,
        /// The keys.
        keys: Vec<Bytes>,
        /// The tokens, or the refusal.
        reply: oneshot::Sender<Reply>,
    },
    /// A blocking pop (BLPOP, BZMPOP, ...) of `group` (this node must lead it): answered
    /// when a pop finds something or `timeout_ms` (0: never) passes
    /// ([`super::blocking`]).
    Block {
        /// The group.
        group: GroupId,
        /// The pop.
        pop: BlockedPop,
        /// How long it may wait, in milliseconds; 0: for ever.
        timeout_ms: u64,
        /// The reply.
        reply: oneshot::Sender<Reply>,
    },
    /// A blocked client's pop answered (sent by the loop to itself).
    Popped {
        /// The waiter.
        id: WaiterId,
        /// The pop's reply.
        reply: Reply,
    },
    /// Report the raft status of every hosted group.
    Status {
        /// Where it goes.
        reply: oneshot::Sender<Vec<GroupStatus>>,
    },
    /// A membership or leadership operation on `group`, which this node must lead.
    Admin {
        /// The group.
        group: GroupId,
        /// The operation.
        op: AdminOp,
        /// Answered once the operation shows as done, or failed.
        reply: oneshot::Sender<Result<AdminOutcome, AdminError>>,
    },
    /// Start hosting a new, empty replica of `group` (it joins once the leader adds it);
    /// its worker is already running.
    Host {
        /// The group.
        group: GroupId,
        /// `<namespace>-<partition>`.
        name: String,
        /// The replica's worker.
        worker: WorkerHandle,
        /// Whether the namespace allows stale reads from followers.
        stale_reads: bool,
        /// As one of a new group's initial voters, or as a joiner with the replica id the
        /// leader gave it when adding it as a learner.
        start: HostAs,
        /// Answered once the replica is hosted (durably).
        reply: oneshot::Sender<Result<AdminOutcome, AdminError>>,
    },
    /// Stop hosting `group` and delete this node's replica of it.
    Unhost {
        /// The group.
        group: GroupId,
        /// When deleting it is allowed.
        when: UnhostWhen,
        /// Only if the hosted replica has this id (a late, repeated request must not delete
        /// a newer replica of the group); None: whichever is hosted.
        replica: Option<u64>,
        /// Answered once the replica is out of the group table and its log deleted.
        reply: oneshot::Sender<Result<AdminOutcome, AdminError>>,
        /// Dropped once its database is closed and deleted too.
        deleted: oneshot::Sender<()>,
    },
    /// Declare (or move) node `id`, persisted across restarts.
    AddNode {
        /// Its node id.
        id: u64,
        /// Where it receives raft traffic.
        raft_addr: SocketAddr,
        /// Where it serves RESP (named in leader hints).
        redis_addr: SocketAddr,
        /// Answered once recorded.
        reply: oneshot::Sender<Result<(), AdminError>>,
    },
    /// Whether this node's raft log holds `group` (hosted or not): a replica whose data
    /// must not be overwritten by a new one.
    HasLog {
        /// The group.
        group: GroupId,
        /// The answer (true when the log cannot be read: assume the worst).
        reply: oneshot::Sender<bool>,
    },
    /// The hosted partitions' workers.
    Workers {
        /// Where they go: group, name, worker.
        reply: oneshot::Sender<Vec<(GroupId, String, WorkerHandle)>>,
    },
    /// Reads of a READONLY connection, served by the local replica as it is (stale).
    StaleReads {
        /// The group.
        group: GroupId,
        /// The reads.
        items: Vec<ReadCommand>,
        /// Where the replies go.
        reply: oneshot::Sender<Vec<Reply>>,
    },
}

/// How a new replica starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAs {
    /// As one of a new group's initial voters (replica ids = node ids).
    Bootstrap(Vec<u64>),
    /// As the replica with this id, which the leader added as a learner: it waits for the
    /// leader's messages (and a snapshot) addressed to exactly this id.
    Joiner(u64),
}

/// When a replica may be deleted from its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnhostWhen {
    /// Only once it is no longer a member (the leader removed it) and does not lead.
    Removed,
    /// Even while it still counts itself a member (it may have missed its removal), but
    /// not while it leads.
    Forced,
    /// Always: its namespace was deleted, so every replica of the group goes.
    NamespaceDeleted,
}

/// The raft status of one hosted group (the storage node's `/status`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupStatus {
    /// Group id.
    pub group: GroupId,
    /// `<namespace>-<partition>`.
    pub name: String,
    /// This node's raft replica id in the group (see `zankv_pd_api::replica_id`).
    pub replica: u64,
    /// `leader`, `follower`, `candidate`, `learner`, or `joining` (hosted here but not a
    /// member of the group, waiting to be added and sent a snapshot).
    pub role: &'static str,
    /// Current term.
    pub term: u64,
    /// Node of the leader known here (0 = none).
    pub leader: u64,
    /// Commit index.
    pub commit: u64,
    /// Last log index.
    pub last_index: u64,
    /// First index still in the log: the entries before it were compacted away.
    pub first_index: u64,
    /// Nodes of the voting replicas.
    pub voters: Vec<u64>,
    /// Nodes of the learners.
    pub learners: Vec<u64>,
    /// On the leader: each replica's node and its lag behind the last index, in entries;
    /// a replica that has acknowledged nothing yet (a learner waiting for its snapshot, or
    /// any follower just after an election) is left out: its progress is unknown.
    pub lag: Vec<(u64, u64)>,
    /// Raft replica ids of the voters and learners.
    pub member_replicas: Vec<u64>,
}

/// A cloneable handle to send requests to the store loop.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<StoreRequest>,
}

impl StoreHandle {
    /// Queues `make(reply)` (waiting while the loop's queue is full: back-pressure) and
    /// returns the receiver of its answer (closed without one if the node stops).
    async fn queue<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> StoreRequest,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let _ = self.tx.send(make(tx)).await;
        rx
    }

    /// Queues a client batch and returns a receiver for its replies.
    pub async fn batch(
        &self,
        group: GroupId,
        items: Vec<BatchItem>,
    ) -> oneshot::Receiver<Vec<Reply>> {
        self.queue(|reply| StoreRequest::Batch {
            group,
            items,
            reply,
        })
        .await
    }

    /// Sends `make(reply)` and waits for the answer; `None` if the loop is gone.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> StoreRequest) -> Option<T> {
        self.queue(make).await.await.ok()
    }

    /// The hosted partitions' workers (group, name, worker).
    pub async fn workers(&self) -> Vec<(GroupId, String, WorkerHandle)> {
        self.ask(|reply| StoreRequest::Workers { reply })
            .await
            .unwrap_or_default()
    }

    /// Queues the reads of a READONLY connection (see [`StoreRequest::StaleReads`]).
    pub async fn stale_reads(
        &self,
        group: GroupId,
        items: Vec<ReadCommand>,
    ) -> oneshot::Receiver<Vec<Reply>> {
        self.queue(|reply| StoreRequest::StaleReads {
            group,
            items,
            reply,
        })
        .await
    }

    /// WATCH `keys` of `group`: a token per key, or the refusal (`Reply::Error`).
    pub async fn watch(&self, group: GroupId, keys: Vec<Bytes>) -> oneshot::Receiver<Reply> {
        self.queue(|reply| StoreRequest::Watch { group, keys, reply })
            .await
    }

    /// A blocking pop of `group` (see [`StoreRequest::Block`]).
    pub async fn block(
        &self,
        group: GroupId,
        pop: BlockedPop,
        timeout_ms: u64,
    ) -> oneshot::Receiver<Reply> {
        self.queue(|reply| StoreRequest::Block {
            group,
            pop,
            timeout_ms,
            reply,
        })
        .await
    }

    /// The raft status of every hosted group.
    pub async fn status(&self) -> Option<Vec<GroupStatus>> {
        self.ask(|reply| StoreRequest::Status { reply }).await
    }

    /// The way `group`'s worker reaches the loop. Changes to propose are dropped when the
    /// queue is full (the worker recomputes them); other events wait for room (the loop
    /// never waits on a worker, so this cannot deadlock).
    pub fn to_store(&self, group: GroupId) -> ToStore {
        let tx = self.tx.clone();
        Box::new(move |event| {
            let request = StoreRequest::Worker { group, event };
            match &request {
                StoreRequest::Worker {
                    event: WorkerEvent::Propose(_),
                    ..
                } => tx.try_send(request).is_ok(),
                _ => tx.blocking_send(request).is_ok(),
            }
        })
    }

    /// Reports the end of a snapshot transfer (waits for room: raft keeps the follower
    /// paused until it hears).
    pub async fn snapshot_sent(&self, group: GroupId, to: u64, delivered: bool) {
        let _ = self
            .tx
            .send(StoreRequest::SnapshotSent {
                group,
                to,
                delivered,
            })
            .await;
    }
}

/// Creates the store loop's request queue.
pub fn channel(capacity: usize) -> (StoreHandle, mpsc::Receiver<StoreRequest>) {
    let (tx, rx) = mpsc::channel(capacity);
    (StoreHandle { tx }, rx)
}

/// A hosted group as the loop sees it.
pub struct HostedGroup {
    /// `<namespace>-<partition>`.
    pub name: String,
    /// Its partition worker.
    pub worker: WorkerHandle,
    /// Whether this replica answers reads itself when it does not lead (the namespace
    /// allows stale reads).
    pub stale_reads: bool,
}

/// Settings of the loop.
pub struct LoopSettings {
    /// This node's id.
    pub node_id: u64,
    /// Length of a tick.
    pub tick: Duration,
    /// Ticks a ReadIndex request may wait before its reads are refused.
    pub read_timeout_ticks: u64,
    /// RESP addresses of the cluster's nodes, for leader hints.
    pub redis_addrs: HashMap<u64, SocketAddr>,
    /// A group's log is compacted once it holds more entries than this...
    pub compact_entries: usize,
    /// ...or more bytes than this.
    pub compact_bytes: usize,
    /// Entries kept behind the compaction point for followers that lag a little (they
    /// catch up from the log instead of needing a snapshot).
    pub catchup_entries: u64,
    /// Ticks an admin operation may take to show as done.
    pub admin_timeout_ticks: u64,
    /// The cluster's partitions (names in errors).
    pub routing: Arc<SharedRouting>,
}

/// Everything the loop owns.
pub struct StoreLoop {
    /// The raft peers.
    pub store: RaftStore,
    /// Outbound raft messages.
    pub transport: Transport,
    /// Hosted groups.
    pub groups: HashMap<GroupId, HostedGroup>,
    /// Settings.
    pub settings: LoopSettings,
    /// Node counters.
    pub stats: Arc<NodeStats>,
}

/// A group's snapshot for lagging followers.
enum Checkpoint {
    /// The worker was asked for one at this tick.
    Requested(u64),
    /// Offered to raft; transfers in flight hold clones.
    Offered(Arc<SnapshotFiles>),
}

/// Ticks after which an unanswered checkpoint or compaction request is forgotten (and
/// asked again when still needed).
const WORKER_REQUEST_TICKS: u64 = 600;

/// Ticks after a compaction before the same group may be compacted again.
const COMPACT_COOLDOWN_TICKS: u64 = 10;

/// What a snapshot's data says: "the files come on the snapshot stream" (format 1).
const SNAPSHOT_DATA: &[u8] = b"zankv-checkpoint-1";

/// A ReadIndex request of one group not registered yet (its read batches are with the
/// worker already).
struct HeldReads {
    /// The request's context.
    ctx: u64,
    /// Tick by which it must be registered, or its reads refused.
    deadline: u64,
}

/// An admin operation proposed and waiting to show as done.
struct PendingAdmin {
    group: GroupId,
    op: AdminOp,
    deadline: u64,
    reply: oneshot::Sender<Result<AdminOutcome, AdminError>>,
}

/// Read batches registered under one ReadIndex context.
struct PendingRead {
    group: GroupId,
    deadline: u64,
    /// The group's term when the request was registered: raft forgets a leader's pending
    /// requests when its term changes, so one from an earlier term will not be confirmed.
    term: u64,
}

/// The ReadIndex requests registered with raft and not confirmed yet: at most one per
/// group. Reads that reach a group while its request is out wait for the next one, so one
/// quorum round serves every read that arrived during the previous round (under load a
/// round costs the same for one read as for many).
#[derive(Default)]
struct ReadsInFlight {
    by_ctx: HashMap<u64, PendingRead>,
    by_group: HashMap<GroupId, u64>,
}

impl ReadsInFlight {
    fn insert(&mut self, ctx: u64, read: PendingRead) {
        self.by_group.insert(read.group, ctx);
        self.by_ctx.insert(ctx, read);
    }

    fn remove(&mut self, ctx: u64) -> Option<PendingRead> {
        let read = self.by_ctx.remove(&ctx)?;
        if self.by_group.get(&read.group) == Some(&ctx) {
            self.by_group.remove(&read.group);
        }
        Some(read)
    }

    /// The request `group` has out, with its term.
    fn of_group(&self, group: GroupId) -> Option<(u64, u64)> {
        let ctx = *self.by_group.get(&group)?;
        Some((ctx, self.by_ctx.get(&ctx)?.term))
    }

    /// Requests whose deadline is at or before `now`.
    fn late(&self, now: u64) -> Vec<u64> {
        self.by_ctx
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(ctx, _)| *ctx)
            .collect()
    }

    fn clear(&mut self) {
        self.by_ctx.clear();
        self.by_group.clear();
    }
}

/// A read that could not be confirmed by a quorum in time.
fn unconfirmed_read_error() -> CommandError {
    CommandError::ClusterChanged(
        "the read could not be confirmed by a quorum in time; retry".into(),
    )
}

/// Where the output of a ready cycle goes; borrows only what the raft store does not, so it
/// can run while the store is in the middle of a cycle.
struct Outbox<'a> {
    transport: &'a Transport,
    stats: &'a NodeStats,
    groups: &'a HashMap<GroupId, HostedGroup>,
    pending_reads: &'a mut ReadsInFlight,
}

impl Outbox<'_> {
    /// Sends messages to the transport, committed entries and confirmed reads to the
    /// workers. Returns the snapshot messages, which need the loop's checkpoints.
    fn dispatch(&mut self, out: StoreOutput) -> Vec<GroupMessage> {
        let mut snapshots = Vec::new();
        for m in out.messages {
            if m.msg.get_msg_type() == MessageType::MsgSnapshot {
                snapshots.push(m);
            } else {
                self.transport.send(node_of(m.msg.to), m);
            }
        }
        for (group, entries) in out.committed {
            self.stats.add_committed(entries.len());
            if let Some(g) = self.groups.get(&group) {
                g.worker.send(WorkerMsg::Apply(entries));
            }
        }
        for (group, reads) in out.reads {
            for (ctx, _index) in reads {
                // The index is not needed: a read batch runs after the last entry the
                // leader had when it arrived, which is at or past everything committed
                // then; the confirmation proves the leadership.
                if let Some(p) = self.pending_reads.remove(ctx) {
                    if let Some(g) = self.groups.get(&p.group) {
                        g.worker.send(WorkerMsg::ReadConfirmed { ctx });
                    }
                } else {
                    warn!(group, ctx, "confirmed read nobody waits for");
                }
            }
        }
        snapshots
    }
}

struct Runner {
    l: StoreLoop,
    clock: Clock,
    ticks: u64,
    next_read: u64,
    /// Read batches not yet registered with ReadIndex, per group: those of this iteration,
    /// and those held because the group's new leader has not committed in its term yet.
    new_reads: HashMap<GroupId, HeldReads>,
    pending_reads: ReadsInFlight,
    checkpoints: HashMap<GroupId, Checkpoint>,
    /// Groups not to be asked for a compaction sync before the given tick: one was asked
    /// (and may still answer), or one just compacted (so a log that cannot shrink further
    /// does not make the partition flush on every tick).
    compacting: HashMap<GroupId, u64>,
    /// The loop's own request queue (transfers report back through it).
    handle: StoreHandle,
    pending_admin: Vec<PendingAdmin>,
    /// The keys clients WATCH in the groups this node leads.
    watches: WatchTables,
    /// The clients blocked in the groups this node leads.
    blocked: BlockedClients,
    /// The groups held while a script runs.
    holds: ScriptHolds,
}

/// The runtime the store loop runs in: one thread, which also runs the raft transport's
/// message connections ([`Transport::new`]'s `messages`), so messages pass between them
/// without waking another thread.
pub fn loop_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Its blocking threads run the raft log's syncs.
        .thread_name("raft-log-sync")
        .build()
}

/// Starts the loop on its own thread, in `runtime` (from [`loop_runtime`]); `handle` is a
/// handle to its own request queue (for reports of snapshot transfers). It stops when
/// `stop` turns true; the partition workers stop once it has (their queues close), and the
/// tasks left in `runtime` are dropped with it.
pub fn spawn(
    runtime: tokio::runtime::Runtime,
    l: StoreLoop,
    raft_in: mpsc::Receiver<GroupMessage>,
    requests: mpsc::Receiver<StoreRequest>,
    handle: StoreHandle,
    stop: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("store-loop".into())
        .spawn(move || {
            let runner = Runner {
                l,
                clock: Clock::default(),
                ticks: 0,
                next_read: 1,
                new_reads: HashMap::new(),
                pending_reads: ReadsInFlight::default(),
                checkpoints: HashMap::new(),
                compacting: HashMap::new(),
                handle,
                pending_admin: Vec::new(),
                watches: WatchTables::default(),
                blocked: BlockedClients::default(),
                holds: ScriptHolds::default(),
            };
            runtime.block_on(runner.run(raft_in, requests, stop));
        })
}

impl Runner {
    async fn run(
        mut self,
        mut raft_in: mpsc::Receiver<GroupMessage>,
        mut requests: mpsc::Receiver<StoreRequest>,
        mut stop: watch::Receiver<bool>,
    ) {
        info!(
            node = self.l.settings.node_id,
            groups = self.l.groups.len(),
            "store loop started"
        );
        let mut interval = tokio::time::interval(self.l.settings.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The earliest blocked client's timeout (no clock read without one).
            let deadline = self.blocked.next_deadline();
            let timeout = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = interval.tick() => self.on_tick(),
                () = timeout => self.blocked.expire(Instant::now()),
                Some(m) = raft_in.recv() => self.l.store.step(m),
                r = requests.recv() => match r {
                    Some(r) => self.on_request(r),
                    None => break,
                },
            }
            // The raft connections' tasks run on this thread: they get to read what arrived
            // meanwhile (say, during the last sync) before this iteration takes its input, so
            // that one iteration (and one sync) serves all of it.
            tokio::task::yield_now().await;
            for _ in 0..DRAIN {
                match raft_in.try_recv() {
                    Ok(m) => self.l.store.step(m),
                    Err(_) => break,
                }
            }
            for _ in 0..DRAIN {
                match requests.try_recv() {
                    Ok(r) => self.on_request(r),
                    Err(_) => break,
                }
            }
            self.register_reads();
            self.process_ready().await;
            if self.reads_to_register() {
                // A round confirmed in this cycle while later reads waited for it: their
                // round starts now, not at the next input.
                self.register_reads();
                self.process_ready().await;
            }
        }
        // Whoever still waits for a read is told the node is stopping (dropping the reply
        // senders does that).
        self.pending_reads.clear();
        info!("store loop stopped");
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        if self.ticks.is_multiple_of(100) {
            self.watches.prune(self.ticks);
        }
        self.blocked.expire(Instant::now());
        self.release_stale_holds();
        for (group, term) in self.blocked.terms() {
            let refusal = match self.l.store.peer(group) {
                None => self.not_hosted(group),
                Some(p) if p.is_leader() && p.term() == term => continue,
                Some(p) => self.not_leader(group, p.leader()),
            };
            self.blocked.refuse(group, term, &refusal);
        }
        self.l.store.tick();
        let now = self.ticks;
        for ctx in self.pending_reads.late(now) {
            if let Some(p) = self.pending_reads.remove(ctx) {
                self.read_failed(p.group, ctx, unconfirmed_read_error());
            }
        }
        for (group, hosted) in &self.l.groups {
            let leader = self.l.store.peer(*group).is_some_and(|p| p.is_leader());
            hosted.worker.tick(leader);
        }
        self.compacting.retain(|_, not_before| now < *not_before);
        self.checkpoints.retain(|_, c| match c {
            Checkpoint::Requested(asked) => now < *asked + WORKER_REQUEST_TICKS,
            Checkpoint::Offered(_) => true,
        });
        for group in self.l.store.groups_with_long_logs(
            self.l.settings.compact_entries,
            self.l.settings.compact_bytes,
        ) {
            if let (Some(hosted), Entry::Vacant(e)) =
                (self.l.groups.get(&group), self.compacting.entry(group))
            {
                e.insert(now + WORKER_REQUEST_TICKS);
                hosted.worker.send(WorkerMsg::SyncForCompaction);
            }
        }
    }

    fn on_worker_event(&mut self, group: GroupId, event: WorkerEvent) {
        match event {
            WorkerEvent::ScriptRan {
                base,
                term,
                outcome,
                reply,
            } => self.script_ran(group, (base, term), outcome, reply),
            // Proposed again on a later tick if the group is held for a script.
            WorkerEvent::Propose(_) if self.holds.is_held(group) => {}
            WorkerEvent::Propose(change) => {
                if self.l.store.peer(group).is_some_and(|p| p.is_leader()) {
                    let _ = self.propose(group, &change);
                }
            }
            WorkerEvent::Durable { index } => {
                self.compacting
                    .insert(group, self.ticks + COMPACT_COOLDOWN_TICKS);
                // Keep some entries for followers slightly behind, unless the log is too
                // big in bytes: then it goes down to what is durable.
                let too_big = self
                    .l
                    .store
                    .peer(group)
                    .is_some_and(|p| p.log().bytes() > self.l.settings.compact_bytes);
                let upto = if too_big {
                    index
                } else {
                    index.saturating_sub(self.l.settings.catchup_entries)
                };
                if let Err(e) = self.l.store.compact(group, upto) {
                    warn!(group, error = %e, "compacting the raft log failed");
                }
            }
            WorkerEvent::CheckpointReady { index, dir } => {
                let Some(dir) = dir else {
                    self.checkpoints.remove(&group);
                    return;
                };
                let files = Arc::new(SnapshotFiles { dir, index });
                if self
                    .l
                    .store
                    .offer_snapshot(group, index, Bytes::from_static(SNAPSHOT_DATA))
                {
                    self.checkpoints.insert(group, Checkpoint::Offered(files));
                } else {
                    // A membership change after `index`, or compacted past it: the files
                    // go with `files`, and raft asks again.
                    self.checkpoints.remove(&group);
                }
            }
        }
    }

    /// Asks the workers of groups that need a snapshot for a checkpoint.
    fn request_checkpoints(&mut self) {
        for group in self.l.store.groups_wanting_snapshots() {
            self.request_checkpoint(group);
        }
    }

    /// Asks `group`'s worker for a checkpoint, unless one is already asked for.
    fn request_checkpoint(&mut self, group: GroupId) {
        if matches!(self.checkpoints.get(&group), Some(Checkpoint::Requested(_))) {
            return;
        }
        if let Some(hosted) = self.l.groups.get(&group) {
            self.checkpoints
                .insert(group, Checkpoint::Requested(self.ticks));
            hosted.worker.send(WorkerMsg::Checkpoint);
        }
    }

    /// Hands a `MsgSnapshot` to the snapshot path with the files it describes.
    fn send_snapshot(&mut self, m: GroupMessage) {
        let index = m.msg.get_snapshot().get_metadata().index;
        let files = match self.checkpoints.get(&m.group) {
            Some(Checkpoint::Offered(f)) if f.index == index => f.clone(),
            _ => {
                warn!(
                    group = m.group,
                    index, "no checkpoint for an outgoing snapshot"
                );
                self.l.store.report_snapshot(m.group, m.msg.to, false);
                // Raft still offers that snapshot and would send it again and again: a new
                // checkpoint replaces the offer.
                self.request_checkpoint(m.group);
                return;
            }
        };
        let (group, to) = (m.group, m.msg.to);
        let handle = self.handle.clone();
        self.l.transport.send_snapshot(
            node_of(to),
            m,
            files,
            Box::new(move |delivered| {
                Box::pin(async move { handle.snapshot_sent(group, to, delivered).await })
            }),
        );
    }

    /// The error for a batch of a partition this node does not host.
    fn not_hosted(&self, group: GroupId) -> CommandError {
        let name = self
            .l
            .settings
            .routing
            .load()
            .layout(group)
            .map_or_else(|| group.to_string(), |l| l.name);
        CommandError::ClusterChanged(format!(
            "partition {name} is not hosted on node {}",
            self.l.settings.node_id
        ))
    }

    /// The error for a batch sent to a replica that does not lead; `leader` is the
    /// leader's replica id (0 = unknown).
    fn not_leader(&self, group: GroupId, leader: u64) -> CommandError {
        let leader = node_of(leader);
        let name = self
            .l
            .groups
            .get(&group)
            .map_or_else(|| group.to_string(), |g| g.name.clone());
        let text = match (leader, self.l.settings.redis_addrs.get(&leader)) {
            (0, _) => format!("no leader of {name} is known yet; retry"),
            (id, Some(addr)) => format!("not leader of {name}, leader is node {id} at {addr}"),
            (id, None) => format!("not leader of {name}, leader is node {id}"),
        };
        CommandError::ClusterChanged(text)
    }

    fn on_request(&mut self, r: StoreRequest) {
        // A group held for a script takes its client requests only once the script ran.
        let r = match held_group(&r) {
            Some(group) => match self.holds.defer(group, r) {
                Some(r) => r,
                None => return,
            },
            None => r,
        };
        match r {
            StoreRequest::Batch {
                group,
                items,
                reply,
            } => self.on_batch(group, items, reply),
            StoreRequest::Worker { group, event } => self.on_worker_event(group, event),
            StoreRequest::SnapshotSent {
                group,
                to,
                delivered,
            } => self.l.store.report_snapshot(group, to, delivered),
            StoreRequest::Status { reply } => {
                let _ = reply.send(self.status());
            }
            StoreRequest::Watch { group, keys, reply } => {
                let answer = match self.l.store.peer(group) {
                    None => Reply::Error(self.not_hosted(group)),
                    Some(peer) if !peer.is_leader() => {
                        Reply::Error(self.not_leader(group, peer.leader()))
                    }
                    Some(peer) => {
                        let term = peer.term();
                        let now_ms = self.clock.now_ms();
                        self.watches.watch(group, term, &keys, now_ms, self.ticks)
                    }
                };
                let _ = reply.send(answer);
            }
            StoreRequest::Block {
                group,
                pop,
                timeout_ms,
                reply,
            } => {
                let term = match self.l.store.peer(group) {
                    None => Err(self.not_hosted(group)),
                    Some(peer) if !peer.is_leader() => Err(self.not_leader(group, peer.leader())),
                    Some(peer) => Ok(peer.term()),
                };
                match term {
                    Ok(term) => {
                        let deadline = (timeout_ms > 0)
                            .then(|| Instant::now().checked_add(Duration::from_millis(timeout_ms)))
                            .flatten();
                        let id = self.blocked.block(group, term, pop, deadline, reply);
                        self.propose_pops(vec![id]);
                    }
                    Err(e) => {
                        let _ = reply.send(Reply::Error(e));
                    }
                }
            }
            StoreRequest::Popped { id, reply } => {
                match self.blocked.popped(id, reply, Instant::now()) {
                    Popped::Answered(next) => self.propose_pops(next),
                    Popped::TryAgain => self.propose_pops(vec![id]),
                    Popped::Waiting => {}
                }
            }
            StoreRequest::Admin { group, op, reply } => self.on_admin(group, op, reply),
            StoreRequest::Host {
                group,
                name,
                worker,
                stale_reads,
                start,
                reply,
            } => {
                let hosted = HostedGroup {
                    name,
                    worker,
                    stale_reads,
                };
                let _ = reply.send(self.host(group, hosted, start));
            }
            StoreRequest::Unhost {
                group,
                when,
                replica,
                reply,
                deleted,
            } => {
                let _ = reply.send(self.unhost(group, when, replica, deleted));
            }
            StoreRequest::AddNode {
                id,
                raft_addr,
                redis_addr,
                reply,
            } => {
                let _ = reply.send(self.add_node(id, raft_addr, redis_addr));
            }
            StoreRequest::HasLog { group, reply } => {
                let _ = reply.send(self.l.store.has_log(group).unwrap_or(true));
            }
            StoreRequest::Workers { reply } => {
                let mut workers: Vec<_> = self
                    .l
                    .groups
                    .iter()
                    .map(|(g, h)| (*g, h.name.clone(), h.worker.clone()))
                    .collect();
                workers.sort_by(|a, b| a.1.cmp(&b.1));
                let _ = reply.send(workers);
            }
            StoreRequest::StaleReads {
                group,
                items,
                reply,
            } => match self.l.groups.get(&group) {
                Some(g) => {
                    g.worker.send(WorkerMsg::StaleReads(vec![ReadBatch {
                        items,
                        script: None,
                        reply,
                    }]));
                }
                None => {
                    let err = self.not_hosted(group);
                    let _ = reply.send(vec![Reply::Error(err); items.len()]);
                }
            },
        }
    }

    fn on_admin(
        &mut self,
        group: GroupId,
        op: AdminOp,
        reply: oneshot::Sender<Result<AdminOutcome, AdminError>>,
    ) {
        let Some(peer) = self.l.store.peer_mut(group) else {
            let _ = reply.send(Err(AdminError::NotHosted));
            return;
        };
        let proposed = match membership::plan(op, &peer.status()) {
            Err(e) => Err(e),
            Ok(Step::AlreadyDone) => {
                let _ = reply.send(Ok(AdminOutcome::Unchanged));
                return;
            }
            Ok(Step::Propose(cc)) => peer.propose_conf_change(cc).map_err(|e| match e {
                ProposeError::NotLeader { leader } => AdminError::NotLeader(node_of(leader)),
                ProposeError::Dropped | ProposeError::NotReady => AdminError::Refused(
                    "the leader refused the change (leadership transfer in progress); ask again"
                        .into(),
                ),
            }),
            Ok(Step::Transfer(to)) => {
                peer.transfer_leader(to);
                Ok(())
            }
        };
        match proposed {
            Ok(()) => {
                info!(group, ?op, "admin operation started");
                self.pending_admin.push(PendingAdmin {
                    group,
                    op,
                    deadline: self.ticks + self.l.settings.admin_timeout_ticks,
                    reply,
                });
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Answers the admin operations that show as done or ran out of time.
    fn settle_admin(&mut self) {
        if self.pending_admin.is_empty() {
            return;
        }
        for p in std::mem::take(&mut self.pending_admin) {
            let done = self
                .l
                .store
                .peer(p.group)
                .map(|peer| membership::satisfied(p.op, &peer.status()));
            match done {
                Some(true) => {
                    info!(group = p.group, op = ?p.op, "admin operation done");
                    let _ = p.reply.send(Ok(AdminOutcome::Done));
                }
                None => {
                    let _ = p.reply.send(Err(AdminError::NotHosted));
                }
                Some(false) if self.ticks >= p.deadline => {
                    let _ = p.reply.send(Err(AdminError::Timeout));
                }
                Some(false) => self.pending_admin.push(p),
            }
        }
    }

    fn host(
        &mut self,
        group: GroupId,
        hosted: HostedGroup,
        start: HostAs,
    ) -> Result<AdminOutcome, AdminError> {
        let node = self.l.settings.node_id;
        let replica = match &start {
            HostAs::Bootstrap(_) => node,
            HostAs::Joiner(r) => *r,
        };
        if let Some(peer) = self.l.store.peer(group) {
            return if peer.id() == replica {
                Ok(AdminOutcome::Unchanged)
            } else {
                Err(AdminError::Refused(format!(
                    "this node hosts replica {} of {}, not {replica}; delete it first",
                    peer.id(),
                    hosted.name
                )))
            };
        }
        if matches!(start, HostAs::Bootstrap(_))
            && self.l.store.is_tombstoned(group).unwrap_or(true)
        {
            // Starting again from the initial configuration would let this replica vote
            // with a log that forgot what it had acknowledged.
            return Err(AdminError::Refused(format!(
                "this node hosted a replica of {} before; a group is bootstrapped only once: host it without bootstrap (it joins) and add it at the leader",
                hosted.name
            )));
        }
        let (start, applied) = match &start {
            HostAs::Bootstrap(voters) => (Start::Bootstrap(voters), INIT_INDEX),
            HostAs::Joiner(_) => (Start::Join, 0),
        };
        let started = self
            .l
            .store
            .forget(group)
            .and_then(|()| self.l.store.host(group, replica, start, applied));
        if let Err(e) = started {
            return Err(AdminError::Refused(format!(
                "cannot start the raft group: {e}"
            )));
        }
        info!(group, partition = %hosted.name, "hosting a new replica");
        self.l.groups.insert(group, hosted);
        Ok(AdminOutcome::Done)
    }

    fn unhost(
        &mut self,
        group: GroupId,
        when: UnhostWhen,
        replica: Option<u64>,
        deleted: oneshot::Sender<()>,
    ) -> Result<AdminOutcome, AdminError> {
        let Some(peer) = self.l.store.peer(group) else {
            return Ok(AdminOutcome::Unchanged);
        };
        if replica.is_some_and(|r| r != peer.id()) {
            // That replica is gone already; the one hosted now is another.
            return Ok(AdminOutcome::Unchanged);
        }
        let s = peer.status();
        if s.is_leader && when != UnhostWhen::NamespaceDeleted {
            return Err(AdminError::Refused(
                "this replica leads the partition; transfer leadership and remove it first".into(),
            ));
        }
        let member = s.voters.contains(&s.id) || s.learners.contains(&s.id);
        if member && when == UnhostWhen::Removed {
            return Err(AdminError::Refused(
                "this replica is still a member of the partition as far as it knows; remove it at the leader first (or force)".into(),
            ));
        }
        if let Err(e) = self.l.store.unhost(group) {
            return Err(AdminError::Refused(format!(
                "cannot delete the raft log: {e}"
            )));
        }
        self.watches.forget(group);
        let hold = self.holds.release(group);
        if let Some(hosted) = self.l.groups.remove(&group) {
            info!(group, partition = %hosted.name, "replica removed from this node");
            hosted.worker.send(WorkerMsg::Destroy { done: deleted });
        }
        // Its worker answers the script; what waited is refused as not hosted.
        if let Some(hold) = hold {
            self.let_go(hold);
        }
        self.checkpoints.remove(&group);
        self.compacting.remove(&group);
        Ok(AdminOutcome::Done)
    }

    fn add_node(
        &mut self,
        id: u64,
        raft_addr: SocketAddr,
        redis_addr: SocketAddr,
    ) -> Result<(), AdminError> {
        if id == self.l.settings.node_id {
            // Every node may be sent the same declarations; its own is nothing to do.
            return Ok(());
        }
        self.l
            .store
            .save_node(id, &format!("{raft_addr} {redis_addr}"))
            .map_err(|e| AdminError::Refused(format!("cannot record the node: {e}")))?;
        self.l.transport.add_peer(id, raft_addr);
        self.l.settings.redis_addrs.insert(id, redis_addr);
        info!(node = id, %raft_addr, %redis_addr, "node declared");
        Ok(())
    }

    fn on_batch(
        &mut self,
        group: GroupId,
        items: Vec<BatchItem>,
        reply: oneshot::Sender<Vec<Reply>>,
    ) {
        let refuse = |err: CommandError, reply: oneshot::Sender<Vec<Reply>>, n: usize| {
            let _ = reply.send(vec![Reply::Error(err); n]);
        };
        let (Some(peer), Some(hosted)) = (self.l.store.peer(group), self.l.groups.get(&group))
        else {
            let err = self.not_hosted(group);
            return refuse(err, reply, items.len());
        };
        let all_reads = items.iter().all(|i| matches!(i, BatchItem::Read(_)));
        if !peer.is_leader() && hosted.stale_reads && all_reads {
            // The namespace accepts reads from followers: answered at what is applied here.
            let items = BatchItem::into_reads(items);
            hosted.worker.send(WorkerMsg::StaleReads(vec![ReadBatch {
                items,
                script: None,
                reply,
            }]));
            return;
        }
        if !peer.is_leader() {
            self.l.stats.raft_not_leader();
            let err = self.not_leader(group, peer.leader());
            return refuse(err, reply, items.len());
        }
        if let [BatchItem::Script(_)] = items.as_slice() {
            let Some(BatchItem::Script(job)) = items.into_iter().next() else {
                unreachable!("matched above")
            };
            let (after, term, worker) = (peer.last_index(), peer.term(), hosted.worker.clone());
            if job.read_only {
                // A script that cannot write is a read: it runs where a read would, with
                // no hold and no entry of its own.
                let batch = ReadBatch {
                    items: Vec::new(),
                    script: Some(job),
                    reply,
                };
                self.send_reads(group, after, &worker, batch);
                return;
            }
            // The script reads everything proposed so far; nothing else is proposed in
            // the group until its effects are.
            self.holds.hold(group, after, term);
            worker.send(WorkerMsg::Script {
                after,
                term,
                job,
                reply,
            });
            return;
        }
        if all_reads {
            let (after, worker) = (peer.last_index(), hosted.worker.clone());
            let batch = ReadBatch {
                items: BatchItem::into_reads(items),
                script: None,
                reply,
            };
            self.send_reads(group, after, &worker, batch);
            return;
        }
        let worker = hosted.worker.clone();
        let now_ms = self.clock.now_ms();
        let mut slots: Vec<Slot> = Vec::with_capacity(items.len());
        // Reads before the first write, anchored once that write has an index.
        let mut leading: Vec<usize> = Vec::new();
        let mut last_write: Option<u64> = None;
        let mut failure: Option<CommandError> = None;
        for item in items {
            if let Some(err) = &failure {
                slots.push(Slot::Done(Reply::Error(err.clone())));
                continue;
            }
            let change = match item {
                BatchItem::Read(cmd) => {
                    match last_write {
                        Some(after) => slots.push(Slot::Read { cmd, after }),
                        None => {
                            leading.push(slots.len());
                            slots.push(Slot::Read { cmd, after: 0 });
                        }
                    }
                    continue;
                }
                BatchItem::Write(argv) => Change::Command { now_ms, argv },
                BatchItem::Functions(change) => Change::Functions(change),
                // Alone in its batch (above).
                BatchItem::Script(_) => {
                    slots.push(Slot::Done(Reply::Error(CommandError::Internal(
                        "a script batched with other commands".into(),
                    ))));
                    continue;
                }
                BatchItem::Transaction { watched, commands } => {
                    let term = self.l.store.peer(group).map_or(0, |p| p.term());
                    match self.watches.unchanged(group, term, &watched) {
                        Some(watched) => Change::Transaction {
                            now_ms,
                            watched,
                            commands,
                        },
                        // A watched key changed: EXEC answers a null array.
                        None => {
                            slots.push(Slot::Done(Reply::NilArray));
                            continue;
                        }
                    }
                }
            };
            match self.propose(group, &change) {
                Ok((index, term)) => {
                    if last_write.is_none() {
                        for &slot in &leading {
                            if let Slot::Read { after, .. } = &mut slots[slot] {
                                *after = index - 1;
                            }
                        }
                    }
                    last_write = Some(index);
                    slots.push(Slot::Write { index, term });
                    // Clients blocked on its keys try their pops right after it, as Redis
                    // serves them after each command.
                    self.wake_blocked(group, &change);
                }
                Err(err) => {
                    if last_write.is_none() {
                        for &slot in &leading {
                            slots[slot] = Slot::Done(Reply::Error(err.clone()));
                        }
                    }
                    slots.push(Slot::Done(Reply::Error(err.clone())));
                    failure = Some(err);
                }
            }
        }
        worker.send(WorkerMsg::Plan(Plan { slots, reply }));
    }

    /// Sends a batch of reads alone to run after entry `after` (everything this leader has
    /// proposed so far), once a ReadIndex request registered from now on confirms the
    /// leadership. All batches of a group until the request is registered share it.
    fn send_reads(&mut self, group: GroupId, after: u64, worker: &WorkerHandle, batch: ReadBatch) {
        let deadline = self.ticks + self.l.settings.read_timeout_ticks;
        let next_read = &mut self.next_read;
        let ctx = self
            .new_reads
            .entry(group)
            .or_insert_with(|| {
                *next_read += 1;
                HeldReads {
                    ctx: *next_read,
                    deadline,
                }
            })
            .ctx;
        worker.send(WorkerMsg::Reads { ctx, after, batch });
    }

    /// A script ran on `group`'s state at `base`: its effects are proposed as the next
    /// entry (if this node still leads in the same term and nothing was appended since),
    /// the client answered once that entry is applied, and the group let go.
    fn script_ran(
        &mut self,
        group: GroupId,
        (base, term): (u64, u64),
        outcome: Outcome,
        reply: oneshot::Sender<Vec<Reply>>,
    ) {
        // Only the hold this script made: one let go meanwhile (a leader change) may
        // have been followed by another script's.
        let hold = match self.holds.get(group) {
            Some(h) if h.base == base && h.term == term => self.holds.release(group),
            _ => None,
        };
        let unchanged = match (&hold, self.l.store.peer(group)) {
            (Some(hold), Some(peer)) => {
                peer.is_leader()
                    && peer.term() == hold.term
                    && peer.last_index() == base
                    && hold.base == base
            }
            _ => false,
        };
        let now_ms = outcome.now_ms;
        let proposed = if !unchanged {
            Err(CommandError::ClusterChanged(
                "leadership changed while the script ran; it was not applied".into(),
            ))
        } else {
            let change = Change::Effects {
                now_ms,
                base,
                commands: outcome.commands,
            };
            self.propose(group, &change).map(|at| {
                self.wake_blocked(group, &change);
                let Change::Effects { commands, .. } = change else {
                    unreachable!("built above")
                };
                (at, commands)
            })
        };
        match (proposed, self.l.groups.get(&group)) {
            (Ok(((index, term), commands)), Some(hosted)) => {
                hosted.worker.send(WorkerMsg::Plan(Plan {
                    slots: vec![Slot::Script {
                        index,
                        term,
                        reply: outcome.reply,
                        now_ms,
                        commands,
                    }],
                    reply,
                }));
            }
            (Ok(_), None) => {
                let _ = reply.send(vec![Reply::Error(CommandError::WriteAbandoned)]);
            }
            (Err(e), _) => {
                let _ = reply.send(vec![Reply::Error(e)]);
            }
        }
        if let Some(hold) = hold {
            self.let_go(hold);
        }
    }

    /// Lets go of the groups held for a script whose leadership this node lost (or whose
    /// worker is gone): the script's effects could not be proposed anyway, and what waited
    /// is answered now (refused, or served by whoever leads) instead of when the script
    /// ends. The script's own client is answered when its outcome comes back.
    fn release_stale_holds(&mut self) {
        for (group, term) in self.holds.held() {
            let stale = match (self.l.store.peer(group), self.l.groups.get(&group)) {
                (Some(peer), Some(hosted)) => {
                    !peer.is_leader() || peer.term() != term || hosted.worker.is_gone()
                }
                _ => true,
            };
            if stale {
                if let Some(hold) = self.holds.release(group) {
                    self.let_go(hold);
                }
            }
        }
    }

    /// Handles, in order, what waited while a group was held.
    fn let_go(&mut self, hold: Hold) {
        for request in hold.requests {
            self.on_request(request);
        }
        self.propose_pops(hold.pops);
    }

    /// Proposes `change` in `group` (whose leader this node must be) and touches the watched
    /// keys it names; answers its log index and term.
    fn propose(&mut self, group: GroupId, change: &Change) -> Result<(u64, u64), CommandError> {
        match self.l.store.propose(group, change.encode()) {
            Ok(()) => {
                self.l.stats.raft_proposed();
                let peer = self.l.store.peer(group).expect("hosted");
                let at = (peer.last_index(), peer.term());
                self.touch_watched(group, change);
                Ok(at)
            }
            Err(ProposeError::NotLeader { leader }) => Err(self.not_leader(group, leader)),
            Err(ProposeError::Dropped | ProposeError::NotReady) => {
                Err(CommandError::ClusterChanged(
                    "the leader refused the proposal (leadership transfer in progress); retry"
                        .into(),
                ))
            }
        }
    }

    /// A client's write `change` was proposed in `group`: the clients blocked on its keys
    /// that it may give something to pop try their pops.
    fn wake_blocked(&mut self, group: GroupId, change: &Change) {
        if !self.blocked.any(group) {
            return;
        }
        let commands: Vec<&[Bytes]> = match change {
            Change::Command { argv, .. } => vec![argv],
            Change::Transaction { commands, .. } | Change::Effects { commands, .. } => {
                commands.iter().map(Vec::as_slice).collect()
            }
            // Expiry, reclamation and pops never add elements (a pop's BLMOVE destination
            // wakes its waiters when the pop is answered).
            Change::Expire { .. }
            | Change::Reclaim { .. }
            | Change::Pop { .. }
            | Change::Functions(_)
            | Change::Noop => return,
        };
        let mut wake = Vec::new();
        for argv in commands {
            let Some(spec) = argv.first().and_then(|n| zankv_commands::lookup(n)) else {
                continue;
            };
            let keys = spec.key_positions(argv).map(|i| &argv[i][..]);
            wake.extend(self.blocked.touched(group, keys, Wakes::of(argv)));
        }
        self.propose_pops(wake);
    }

    /// Proposes the pops of blocked clients `ids`; each pop's reply comes back to the loop
    /// as [`StoreRequest::Popped`].
    fn propose_pops(&mut self, ids: Vec<WaiterId>) {
        // In the order given (the order the waiters blocked in), chained ones after.
        let mut ids: std::collections::VecDeque<WaiterId> = ids.into();
        while let Some(id) = ids.pop_front() {
            let Some(try_) = self.blocked.pop_of(id) else {
                continue;
            };
            let group = try_.group;
            if self.holds.defer_pop(group, id) {
                continue;
            }
            let change = Change::Pop {
                now_ms: self.clock.now_ms(),
                id: try_.id.unwrap_or_default(),
                retry: try_.retry,
                argv: try_.argv,
            };
            let proposed = match self.l.groups.get(&group) {
                Some(hosted) => {
                    let worker = hosted.worker.clone();
                    self.propose(group, &change).map(|at| (worker, at))
                }
                None => Err(self.not_hosted(group)),
            };
            match proposed {
                Ok((worker, (index, term))) => {
                    let (reply, rx) = oneshot::channel();
                    worker.send(WorkerMsg::Plan(Plan {
                        slots: vec![Slot::Write { index, term }],
                        reply,
                    }));
                    let handle = self.handle.clone();
                    tokio::spawn(async move {
                        let reply = match rx.await {
                            Ok(mut replies) => replies.pop(),
                            Err(_) => None,
                        };
                        let reply = reply.unwrap_or(Reply::Error(CommandError::ShuttingDown));
                        let _ = handle.tx.send(StoreRequest::Popped { id, reply }).await;
                    });
                }
                Err(e) => match self.blocked.popped(id, Reply::Error(e), Instant::now()) {
                    Popped::Answered(next) => ids.extend(next),
                    // Refused before it was proposed (a leader change is under way): it
                    // waits for the next write, or for the refusal of its clients.
                    Popped::TryAgain => {
                        let _ = self.blocked.popped(id, Reply::NilArray, Instant::now());
                    }
                    Popped::Waiting => {}
                },
            }
        }
    }

    /// A write `change` was proposed in `group`: the watched keys it names are touched.
    fn touch_watched(&mut self, group: GroupId, change: &Change) {
        if !self.watches.any(group) {
            return;
        }
        let term = self.l.store.peer(group).map_or(0, |p| p.term());
        match change.touches() {
            Touches::Every => self.watches.touch(group, term, None::<Vec<&[u8]>>),
            Touches::Keys(keys) => self.watches.touch(group, term, Some(keys)),
            Touches::Expired(keys) => self.watches.expire(group, term, keys),
        }
    }

    /// Registers one ReadIndex request per group for its waiting read batches. A group
    /// whose leader cannot confirm reads yet keeps them until it can or their deadline.
    fn register_reads(&mut self) {
        if self.new_reads.is_empty() {
            return;
        }
        for (group, held) in std::mem::take(&mut self.new_reads) {
            let term = self.l.store.peer(group).map_or(0, |p| p.term());
            if let Some((ctx, registered_in)) = self.pending_reads.of_group(group) {
                if registered_in == term {
                    // Served by the round after the one out now.
                    self.new_reads.insert(group, held);
                    continue;
                }
                // Raft dropped it with the term it belonged to.
                self.pending_reads.remove(ctx);
                self.read_failed(group, ctx, unconfirmed_read_error());
            }
            match self.l.store.read_index(group, held.ctx) {
                Ok(()) => {
                    self.l.stats.raft_read_index();
                    self.pending_reads.insert(
                        held.ctx,
                        PendingRead {
                            group,
                            deadline: held.deadline.max(self.ticks + 1),
                            term,
                        },
                    );
                }
                Err(ProposeError::NotReady) if held.deadline > self.ticks => {
                    self.new_reads.insert(group, held);
                }
                Err(e) => {
                    let err = match e {
                        ProposeError::NotLeader { leader } => self.not_leader(group, leader),
                        ProposeError::Dropped | ProposeError::NotReady => unconfirmed_read_error(),
                    };
                    self.read_failed(group, held.ctx, err);
                }
            }
        }
    }

    /// Whether a group holds reads and has no ReadIndex request out.
    fn reads_to_register(&self) -> bool {
        self.new_reads
            .keys()
            .any(|g| self.pending_reads.of_group(*g).is_none())
    }

    /// Tells `group`'s worker that ReadIndex request `ctx` failed.
    fn read_failed(&self, group: GroupId, ctx: u64, error: CommandError) {
        if let Some(g) = self.l.groups.get(&group) {
            g.worker.send(WorkerMsg::ReadFailed { ctx, error });
        }
    }

    async fn process_ready(&mut self) {
        let fatal = |e: crate::engine::EngineError| -> ! {
            // Continuing could acknowledge writes that are not durable.
            error!(error = %e, "writing the raft log failed; stopping the node to protect acknowledged writes");
            std::process::exit(70);
        };
        let (mut early, mut cycle) = match self.l.store.begin_ready() {
            Ok(Some(begun)) => begun,
            Ok(None) => return,
            Err(e) => fatal(e),
        };
        let mut changed = std::mem::take(&mut early.conf_changed);
        let mut unsent = !early.messages.is_empty();
        // Sent while the sync runs: leaders' appends, already committed entries,
        // confirmed reads.
        let mut deferred = Outbox {
            transport: &self.l.transport,
            stats: &self.l.stats,
            groups: &self.l.groups,
            pending_reads: &mut self.pending_reads,
        }
        .dispatch(early);
        let sync_took = if cycle.must_sync() && cycle.bytes() >= SYNC_ASIDE_BYTES {
            // A large write and sync run on a blocking thread while this one goes on running
            // the transport's tasks: large messages keep leaving (and arriving) while it
            // lasts, and the heartbeats queued behind them with them. Nothing else touches
            // the store meanwhile.
            let started = Instant::now();
            let log_engine = self.l.store.log_engine();
            let persisted = tokio::task::spawn_blocking(move || {
                cycle.persist(log_engine.as_ref()).map(|()| cycle)
            })
            .await;
            cycle = match persisted {
                Ok(Ok(cycle)) => cycle,
                Ok(Err(e)) => fatal(e),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            unsent = false;
            Some(started.elapsed())
        } else {
            let syncs = cycle.must_sync();
            if syncs && unsent {
                // The transport's tasks run on this thread: let them write the messages out
                // before the sync, so the followers' fsyncs overlap this one.
                tokio::task::yield_now().await;
                unsent = false;
            }
            // Only syncs are timed: a clock read per iteration shows in a read-only load.
            let started = syncs.then(Instant::now);
            if let Err(e) = cycle.persist(self.l.store.log_engine().as_ref()) {
                fatal(e);
            }
            started.map(|s| s.elapsed())
        };
        let late = match self.l.store.finish_ready(cycle) {
            Ok(out) => out,
            Err(e) => fatal(e),
        };
        if let Some(took) = sync_took {
            self.l.stats.observe_sync(took);
            self.l.stats.observe_groups_per_sync(late.groups_persisted);
        }
        changed.extend(late.conf_changed.iter().copied());
        for (group, snap) in &late.snapshots {
            // The raft log now records the snapshot; the worker swaps its files in before
            // it applies any later entry (its queue is ordered).
            let meta = snap.get_metadata();
            if let Some(g) = self.l.groups.get(group) {
                g.worker.send(WorkerMsg::InstallSnapshot {
                    index: meta.index,
                    term: meta.term,
                });
            }
        }
        unsent |= !late.messages.is_empty();
        let mut outbox = Outbox {
            transport: &self.l.transport,
            stats: &self.l.stats,
            groups: &self.l.groups,
            pending_reads: &mut self.pending_reads,
        };
        deferred.extend(outbox.dispatch(late));
        for m in deferred {
            self.send_snapshot(m);
        }
        if unsent {
            // The transport's tasks run on this thread: what was just handed to them leaves
            // now, not after the next iteration (whose inputs may be ready at once, without
            // a yield).
            tokio::task::yield_now().await;
        }
        for group in changed {
            if let Some(p) = self.l.store.peer(group) {
                let s = p.status();
                info!(group, voters = ?s.voters, learners = ?s.learners, "membership changed");
            }
        }
        self.request_checkpoints();
        self.settle_admin();
    }

    fn status(&self) -> Vec<GroupStatus> {
        let mut out: Vec<GroupStatus> = self
            .l
            .groups
            .iter()
            .filter_map(|(group, hosted)| {
                let s = self.l.store.peer(*group)?.status();
                Some(GroupStatus {
                    group: *group,
                    name: hosted.name.clone(),
                    replica: s.id,
                    role: if s.is_leader {
                        "leader"
                    } else if s.learners.contains(&s.id) {
                        "learner"
                    } else if !s.voters.contains(&s.id) {
                        // Hosted but not (yet, or any more) a member.
                        "joining"
                    } else if s.leader != 0 {
                        "follower"
                    } else {
                        "candidate"
                    },
                    term: s.term,
                    leader: node_of(s.leader),
                    commit: s.commit,
                    last_index: s.last_index,
                    first_index: s.first_index,
                    voters: s.voters.iter().map(|r| node_of(*r)).collect(),
                    learners: s.learners.iter().map(|r| node_of(*r)).collect(),
                    lag: s
                        .matched
                        .iter()
                        .filter(|(_, m)| *m > 0)
                        .map(|(id, m)| (node_of(*id), s.last_index.saturating_sub(*m)))
                        .collect(),
                    member_replicas: s.voters.iter().chain(&s.learners).copied().collect(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// The group of a client request that must wait while its group is held for a script.
fn held_group(r: &StoreRequest) -> Option<GroupId> {
    match r {
        StoreRequest::Batch { group, .. }
        | StoreRequest::Watch { group, .. }
        | StoreRequest::Block { group, .. } => Some(*group),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(group: GroupId, deadline: u64, term: u64) -> PendingRead {
        PendingRead {
            group,
            deadline,
            term,
        }
    }

    #[test]
    fn reads_in_flight_track_one_request_per_group() {
        let mut reads = ReadsInFlight::default();
        reads.insert(7, read(1, 30, 4));
        reads.insert(8, read(2, 20, 5));
        assert_eq!(reads.of_group(1), Some((7, 4)));
        assert_eq!(reads.of_group(2), Some((8, 5)));
        assert_eq!(reads.of_group(3), None);
        let mut late = reads.late(25);
        late.sort();
        assert_eq!(late, vec![8]);
        assert_eq!(reads.late(19), Vec::<u64>::new());
        // Confirming group 1's request frees the group for its next round.
        assert_eq!(reads.remove(7).map(|r| r.group), Some(1));
        assert_eq!(reads.of_group(1), None);
        assert!(reads.remove(7).is_none());
        assert_eq!(reads.of_group(2), Some((8, 5)));
        reads.clear();
        assert_eq!(reads.of_group(2), None);
        assert!(reads.late(u64::MAX).is_empty());
    }

    #[test]
    fn removing_an_older_request_keeps_the_groups_newer_one() {
        let mut reads = ReadsInFlight::default();
        reads.insert(7, read(1, 30, 4));
        // A newer term's request replaced it (the older one was dropped by raft).
        reads.insert(9, read(1, 40, 5));
        assert_eq!(reads.of_group(1), Some((9, 5)));
        assert!(reads.remove(7).is_some());
        assert_eq!(reads.of_group(1), Some((9, 5)));
    }
}
