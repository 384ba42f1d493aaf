//! The partition worker: one OS thread that owns a [`Partition`], applies its committed raft
//! entries in log order and answers the reads of client batches at the log position that
//! makes them linearizable.
//!
//! The store loop sends, in this order on one channel: the **plan** of a client batch as
//! soon as its writes are proposed (each write known by its log index and term, each read
//! anchored right after a log index), then the committed entries. So a plan always arrives
//! before the entries it waits for. Then:
//! - a write's reply is the result of applying its entry, if the entry at its index carries
//!   its term; otherwise a leader change replaced it and the client is told it was not
//!   applied;
//! - a read in a batch with writes runs right after the entry it is anchored to is applied
//!   (after the previous write of the batch, or just before the first one), so a pipeline
//!   sees exactly its own earlier writes; it is answered only if the batch's writes
//!   committed in their term, which proves this node still led when they were appended;
//! - a batch of reads alone is anchored after the last log index the leader had when the
//!   batch arrived: it runs once that entry is applied and the leader confirmed with
//!   ReadIndex that it still led after the batch arrived, and before the next entry is
//!   applied (applying waits for the confirmation, which a heartbeat round brings). So a
//!   pipeline's read never sees a write sent after it, and always sees every write
//!   acknowledged before it arrived.
//!
//! Reads of READONLY connections (and of namespaces that allow it) on a follower run at
//! once, on whatever is applied.
//!
//! Background expiry and reclamation, and keys a read found expired, become changes that
//! are **proposed** (only the leader is asked to, on ticks) and deleted when they come back
//! committed, so every replica deletes the same keys at the same log index.
//!
//! Snapshots: on the leader the worker writes a checkpoint of its database at its applied
//! index when raft needs one for a lagging follower; on a follower it swaps a received
//! checkpoint in for its database (see [`crate::replication::snapshot`]). Before the store
//! loop compacts the raft log, the worker syncs its database and reports the index that is
//! now durable, so the log never drops an entry the partition could still lose.
//!
//! RocksDB is only ever called from this thread, never from an async task.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::eraftpb::{Entry, EntryType};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};
use zankv_commands::notify;
use zankv_commands::{CommandError, ReadCommand, Reply};

use crate::change::{Change, Touches};
use crate::clock::Clock;
use crate::data::functions::FunctionChange;
use crate::data::ScanCursors;
use crate::engine::memory::MemoryEngine;
use crate::engine::{Engine, EngineError};
use crate::events::{Event, Notifier};
use crate::node_stats::NodeStats;
use crate::partition::{Partition, RECLAIM_BUDGET};
use crate::records::AppliedState;
use crate::replication::log_store::GroupId;
use crate::replication::snapshot::{self, SnapshotDirs, SnapshotStats};
use crate::script::{self, Outcome, ScriptJob};

/// Most keys expired by one background change.
const EXPIRE_BATCH: usize = 256;
/// Most collection versions reclaimed by one background change.
const RECLAIM_BATCH: usize = 64;
/// Open SCAN cursors remembered per partition.
const SCAN_CURSORS: usize = 10_000;
/// Keys found expired by reads and not deleted yet, remembered per partition.
const EXPIRED_SEEN: usize = 4096;

/// One command of a client batch.
pub enum BatchItem {
    /// A read command, parsed.
    Read(ReadCommand),
    /// A write command's arguments (they become a [`Change`]).
    Write(Vec<Bytes>),
    /// A MULTI/EXEC transaction, always alone in its batch: proposed as one
    /// [`Change::Transaction`] if its watched keys are unchanged
    /// ([`crate::replication::watches`]), else answered with a null array.
    Transaction {
        /// Each watched key with its WATCH token.
        watched: Vec<(Bytes, Bytes)>,
        /// The data commands, each name first.
        commands: Vec<Vec<Bytes>>,
    },
    /// A Lua script, always alone in its batch: the leader holds the partition's other
    /// proposals while the worker runs it, then proposes its effects
    /// ([`crate::script`]).
    Script(Box<ScriptJob>),
    /// A change to the libraries of functions, checked by the node that took it.
    Functions(FunctionChange),
}

impl ReadBatch {
    /// How many replies it takes.
    pub fn len(&self) -> usize {
        self.items.len() + usize::from(self.script.is_some())
    }

    /// Whether it takes no reply.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl BatchItem {
    /// The commands of a batch known to hold reads only.
    pub fn into_reads(items: Vec<BatchItem>) -> Vec<ReadCommand> {
        items
            .into_iter()
            .map(|i| match i {
                BatchItem::Read(cmd) => cmd,
                BatchItem::Write(_)
                | BatchItem::Transaction { .. }
                | BatchItem::Script(_)
                | BatchItem::Functions(_) => {
                    unreachable!("a batch of reads holds a write")
                }
            })
            .collect()
    }
}

/// One slot of a planned client batch.
pub enum Slot {
    /// Answered already (for example a proposal raft refused).
    Done(Reply),
    /// A write proposed as log entry `index` in `term`.
    Write {
        /// Its log index.
        index: u64,
        /// The leader's term when it was proposed.
        term: u64,
    },
    /// A script's effects proposed as log entry `index` in `term`: once applied, the plan
    /// answers the script's `reply` (or the entry's refusal).
    Script {
        /// Its log index.
        index: u64,
        /// The leader's term when it was proposed.
        term: u64,
        /// What the script answered.
        reply: Reply,
        /// The effects' time: a script that follows may run on top of them before they
        /// are applied (the worker's `run_scripts`).
        now_ms: i64,
        /// The effects' commands.
        commands: Vec<Vec<Bytes>>,
    },
    /// A read to run right after entry `after` is applied, before entry `after + 1`.
    Read {
        /// The command.
        cmd: ReadCommand,
        /// The log index it is anchored to.
        after: u64,
    },
}

/// A client batch with writes, as the store loop proposed it.
pub struct Plan {
    /// One slot per command, in order.
    pub slots: Vec<Slot>,
    /// Where the replies go, all together.
    pub reply: oneshot::Sender<Vec<Reply>>,
}

/// A client batch of reads alone.
pub struct ReadBatch {
    /// The reads, in order.
    pub items: Vec<ReadCommand>,
    /// Or a script that cannot write (EVAL_RO, ...), alone: it runs as a read.
    pub script: Option<Box<ScriptJob>>,
    /// Where the replies go.
    pub reply: oneshot::Sender<Vec<Reply>>,
}

/// A message to a partition worker.
pub enum WorkerMsg {
    /// A client batch whose writes were just proposed.
    Plan(Plan),
    /// Committed entries, in log order.
    Apply(Vec<Entry>),
    /// A batch of reads alone, to run right after entry `after` is applied, once the
    /// ReadIndex request `ctx` confirms this node still leads.
    Reads {
        /// The ReadIndex request that confirms it.
        ctx: u64,
        /// The log index it runs after.
        after: u64,
        /// The batch.
        batch: ReadBatch,
    },
    /// The ReadIndex request `ctx` was confirmed.
    ReadConfirmed {
        /// The request.
        ctx: u64,
    },
    /// The ReadIndex request `ctx` failed: its batches are answered with `error`.
    ReadFailed {
        /// The request.
        ctx: u64,
        /// The answer to each of its reads.
        error: CommandError,
    },
    /// Reads to run now on whatever is applied (stale reads).
    StaleReads(Vec<ReadBatch>),
    /// Run a script once entry `after` is applied (the leader proposes nothing meanwhile),
    /// then hand its outcome to the store loop ([`WorkerEvent::ScriptRan`]).
    Script {
        /// The log index whose state the script reads.
        after: u64,
        /// The leader's term when the script was handed over.
        term: u64,
        /// The script.
        job: Box<ScriptJob>,
        /// Where the client's reply goes.
        reply: oneshot::Sender<Vec<Reply>>,
    },
    /// Time passed. `leader`: whether this replica leads (then it proposes background
    /// expiry and reclamation).
    Tick {
        /// Whether this replica is the leader.
        leader: bool,
    },
    /// Write a checkpoint of the database at the applied index for a lagging follower;
    /// answered with [`WorkerEvent::CheckpointReady`].
    Checkpoint,
    /// Replace the database by the snapshot received for log index `index` (in its
    /// received directory), then continue from there.
    InstallSnapshot {
        /// The snapshot's log index.
        index: u64,
        /// The term of that entry.
        term: u64,
    },
    /// Sync the database and report the applied index that is durable
    /// ([`WorkerEvent::Durable`]), so the raft log can be compacted up to it.
    SyncForCompaction,
    /// The replica was removed from this node: answer who waits, close and delete the
    /// database, stop; then `done` is told (dropped).
    Destroy {
        /// Dropped once the database is closed and deleted.
        done: oneshot::Sender<()>,
    },
}

/// What a worker tells the store loop.
#[derive(Debug)]
pub enum WorkerEvent {
    /// A background change to propose (only if this node leads).
    Propose(Change),
    /// A checkpoint of the database at `index` is in `dir` (or could not be made).
    CheckpointReady {
        /// The applied index inside the checkpoint.
        index: u64,
        /// Where it is; `None` if writing it failed.
        dir: Option<PathBuf>,
    },
    /// The database holds everything up to `index` durably.
    Durable {
        /// The durable applied index.
        index: u64,
    },
    /// A script ran on the state at log index `base`: its effects are to be proposed (and
    /// the partition's held proposals let go).
    ScriptRan {
        /// The log index whose state it read.
        base: u64,
        /// The leader's term when it was handed over.
        term: u64,
        /// Its reply, effects and time.
        outcome: Outcome,
        /// Where the client's reply goes.
        reply: oneshot::Sender<Vec<Reply>>,
    },
}

/// Hands an event to the store loop; returns false when it could not be queued (a
/// background change is recomputed on the next tick; the store loop asks again for the
/// others).
pub type ToStore = Box<dyn Fn(WorkerEvent) -> bool + Send>;

/// Opens a partition's engine on a directory.
pub type EngineOpener =
    Box<dyn Fn(&std::path::Path) -> Result<Box<dyn Engine>, EngineError> + Send>;

/// Where a partition's files live and how to open them: what snapshots need.
pub struct PartitionFiles {
    /// The group the partition belongs to.
    pub group: GroupId,
    /// The database directory.
    pub dir: PathBuf,
    /// The node's snapshot directories.
    pub snapshots: SnapshotDirs,
    /// Opens an engine on a directory.
    pub open: EngineOpener,
}

impl PartitionFiles {
    /// Opens the partition's database.
    pub fn open_partition(&self) -> Result<Partition, EngineError> {
        (self.open)(&self.dir).and_then(Partition::open)
    }

    /// Checks that the snapshot received for `index` holds a partition at exactly `index`.
    pub fn check_received(&self, index: u64) -> Result<(), String> {
        let dir = self.snapshots.recv_dir(self.group, index);
        if !dir.exists() {
            return Err(format!("{} is missing", dir.display()));
        }
        let partition = (self.open)(&dir)
            .and_then(Partition::open)
            .map_err(|e| e.to_string())?;
        let applied = partition.state().applied_index;
        if applied != index {
            return Err(format!("{} holds index {applied}", dir.display()));
        }
        Ok(())
    }

    /// Swaps the snapshot received for `index` in for the database (which the caller has
    /// closed) and opens it; other received snapshots of the group are deleted.
    pub fn install_received(&self, index: u64) -> Result<Partition, String> {
        let dir = self.snapshots.recv_dir(self.group, index);
        snapshot::swap_in(&self.dir, &dir)
            .map_err(|e| format!("swapping in {}: {e}", dir.display()))?;
        let partition = self.open_partition().map_err(|e| e.to_string())?;
        self.snapshots.remove_received(self.group, None);
        Ok(partition)
    }
}

/// A message to an apply thread.
pub(crate) enum PoolMsg {
    /// Start serving a partition.
    Add(GroupId, Box<Worker>),
    /// A message for one partition's worker.
    Worker(GroupId, WorkerMsg),
    /// Finish what is queued, close every partition, end the thread.
    Stop,
}

/// A cloneable handle to a partition worker (which runs on one of the node's apply
/// threads).
#[derive(Clone)]
pub struct WorkerHandle {
    tx: mpsc::UnboundedSender<PoolMsg>,
    group: GroupId,
    shared: Arc<WorkerShared>,
}

/// What a worker shares with its handles.
#[derive(Default)]
pub(crate) struct WorkerShared {
    /// Set while a tick is queued and not yet handled.
    ticking: AtomicBool,
    /// The applied state as of the last message handled (keys known expired left out),
    /// so reading it never waits on a worker busy with a long script or apply.
    state: std::sync::Mutex<AppliedState>,
    /// The partition's libraries of functions and their functions, counted after each
    /// change to them (FUNCTION STATS).
    functions: std::sync::Mutex<(usize, usize)>,
}

impl WorkerHandle {
    pub(crate) fn new(
        tx: mpsc::UnboundedSender<PoolMsg>,
        group: GroupId,
        shared: Arc<WorkerShared>,
    ) -> Self {
        WorkerHandle { tx, group, shared }
    }

    /// Queues a tick unless one is queued already: a worker that falls behind sees one tick
    /// for all the time it missed, rather than a growing backlog of them.
    pub fn tick(&self, leader: bool) {
        if !self.shared.ticking.swap(true, Ordering::AcqRel) {
            self.send(WorkerMsg::Tick { leader });
        }
    }

    /// Sends a message; false if the worker is gone. Never blocks: the store loop must not
    /// wait on a slow partition (its backlog is bounded by raft's flow control and the
    /// store loop's admission limit).
    pub fn send(&self, msg: WorkerMsg) -> bool {
        self.tx.send(PoolMsg::Worker(self.group, msg)).is_ok()
    }

    /// Whether the worker is gone (its thread stopped or it was destroyed).
    pub fn is_gone(&self) -> bool {
        self.tx.is_closed()
    }

    /// How many libraries of functions, and functions, the partition holds.
    pub fn function_counts(&self) -> (usize, usize) {
        *self
            .shared
            .functions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The partition's applied state as the worker last published it (None once the
    /// worker is gone).
    pub fn state(&self) -> Option<AppliedState> {
        if self.tx.is_closed() {
            return None;
        }
        Some(*self.shared.state.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What a worker needs besides its partition.
pub struct WorkerSettings {
    /// `<namespace>-<partition>`, for logs and the thread name.
    pub name: String,
    /// Its files (snapshots).
    pub files: PartitionFiles,
    /// The way to the store loop.
    pub to_store: ToStore,
    /// How long a client batch with writes may wait for them to commit.
    pub write_timeout: Duration,
    /// Node counters.
    pub stats: Arc<NodeStats>,
    /// Snapshot counters.
    pub snapshot_stats: Arc<SnapshotStats>,
    /// Where keyspace events go.
    pub events: Arc<Notifier>,
}

impl Worker {
    /// A worker for `partition`, to run on an apply thread ([`crate::apply_pool`]);
    /// `shared` is shared with its handles.
    pub(crate) fn new(
        partition: Partition,
        settings: WorkerSettings,
        shared: Arc<WorkerShared>,
    ) -> Worker {
        let WorkerSettings {
            name,
            files,
            to_store,
            write_timeout,
            stats,
            snapshot_stats,
            events,
        } = settings;
        info!(partition = %name, applied = partition.state().applied_index, "partition worker started");
        *shared.state.lock().unwrap_or_else(|p| p.into_inner()) = partition.state();
        *shared.functions.lock().unwrap_or_else(|p| p.into_inner()) = count_functions(&partition);
        Worker {
            name,
            partition,
            stats,
            snapshot_stats,
            files,
            to_store,
            write_timeout,
            cursors: ScanCursors::new(SCAN_CURSORS),
            clock: Clock::default(),
            failed: None,
            plans: HashMap::new(),
            next_plan: 0,
            writes: BTreeMap::new(),
            anchored: BTreeMap::new(),
            shared,
            expired_seen: HashSet::new(),
            read_batches: BTreeMap::new(),
            confirmed_reads: HashSet::new(),
            held: VecDeque::new(),
            applied_term: 0,
            scripts: VecDeque::new(),
            pending_effects: BTreeMap::new(),
            events,
            leading: false,
        }
    }
}

/// Runs a script on `partition` (on top of `on_top`), timed; a panic in its commands
/// answers an error and the worker goes on.
fn run_contained_script(
    job: &ScriptJob,
    partition: &Partition,
    on_top: &[(i64, &[Vec<Bytes>])],
    now_ms: i64,
    cursors: &mut ScanCursors,
    stats: &NodeStats,
) -> script::Outcome {
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        script::run(job, partition, on_top, now_ms, cursors)
    }))
    .unwrap_or_else(|_| script::Outcome {
        reply: Reply::Error(CommandError::Internal("the script panicked".into())),
        commands: Vec::new(),
        now_ms,
    });
    stats.observe_script(started.elapsed());
    outcome
}

/// A script waiting for its entry: the log index it runs after, the leader's term then,
/// the script, where its client's reply goes.
type WaitingScript = (u64, u64, Box<ScriptJob>, oneshot::Sender<Vec<Reply>>);

/// Earlier scripts' effects a script runs on top of: (time, commands) each.
type OnTop<'a> = Vec<(i64, &'a [Vec<Bytes>])>;

/// How many libraries of functions, and functions, `partition` holds.
fn count_functions(partition: &Partition) -> (usize, usize) {
    let view = crate::data::EngineView::new(partition.engine());
    crate::data::functions::libraries(&view).map_or((0, 0), |libraries| {
        let functions = libraries.iter().map(|l| l.functions.len()).sum();
        (libraries.len(), functions)
    })
}

/// A plan being answered.
struct PlanState {
    replies: Vec<Option<Reply>>,
    is_read: Vec<bool>,
    remaining: usize,
    /// A write of the batch was replaced by a leader change: its reads are not confirmed.
    lost: bool,
    reply: oneshot::Sender<Vec<Reply>>,
    deadline: Instant,
    /// A script's reply, answered in place of its effects entry's OK.
    script: Option<Reply>,
}

/// One partition's worker: its state machine and the client requests waiting on it.
pub(crate) struct Worker {
    name: String,
    partition: Partition,
    stats: Arc<NodeStats>,
    snapshot_stats: Arc<SnapshotStats>,
    files: PartitionFiles,
    to_store: ToStore,
    write_timeout: Duration,
    cursors: ScanCursors,
    clock: Clock,
    /// Set after a storage error while applying: this replica's state can no longer be
    /// trusted to match its log, so it stops applying and answers errors.
    failed: Option<String>,
    plans: HashMap<u64, PlanState>,
    next_plan: u64,
    /// Writes waiting for their entry: index → (plan, slot, term).
    writes: BTreeMap<u64, (u64, usize, u64)>,
    /// Reads waiting for an entry to be applied: index → (plan, slot, command).
    anchored: BTreeMap<u64, Vec<(u64, usize, ReadCommand)>>,
    /// Shared with the handles: the tick flag, the published state.
    shared: Arc<WorkerShared>,
    /// Keys a read found expired, whose deletion is proposed but not applied yet. Each
    /// still has its (expired) metadata record, so DBSIZE and INFO leave them out, as
    /// Redis, which deletes such a key on access, does. A key leaves the set as soon as
    /// any change touches it.
    expired_seen: HashSet<Bytes>,
    /// Batches of reads alone by the log index they run after, with their ReadIndex
    /// request.
    read_batches: BTreeMap<u64, Vec<(u64, ReadBatch)>>,
    /// ReadIndex requests confirmed whose batches have not all run yet.
    confirmed_reads: HashSet<u64>,
    /// Committed entries held back behind a read batch still waiting for confirmation.
    held: VecDeque<Entry>,
    /// Term of the last applied entry.
    applied_term: u64,
    /// Scripts waiting for the entry they run after, in order.
    scripts: VecDeque<WaitingScript>,
    /// Effects of this leader's scripts proposed and not applied yet, by log index: (term,
    /// time, commands).
    pending_effects: BTreeMap<u64, (u64, i64, Vec<Vec<Bytes>>)>,
    /// Where keyspace events go: the leader publishes those of what it applies.
    events: Arc<Notifier>,
    /// Whether this replica led at its last tick.
    leading: bool,
}

fn lost_write() -> Reply {
    Reply::Error(CommandError::ClusterChanged(
        "a leader change dropped the write before it committed; it was not applied".into(),
    ))
}

fn unconfirmed_read() -> Reply {
    Reply::Error(CommandError::ClusterChanged(
        "leadership changed before the read was confirmed; retry".into(),
    ))
}

impl Worker {
    fn applied(&self) -> u64 {
        self.partition.state().applied_index
    }

    /// Handles one message. Returns false once the partition was destroyed (the worker
    /// must be dropped).
    pub(crate) fn handle(&mut self, msg: WorkerMsg) -> bool {
        match msg {
            WorkerMsg::Destroy { done } => {
                self.destroy();
                drop(done);
                return false;
            }
            WorkerMsg::Plan(plan) => self.on_plan(plan),
            WorkerMsg::Apply(entries) => self.apply_entries(entries),
            WorkerMsg::Reads { ctx, after, batch } => {
                self.read_batches
                    .entry(after)
                    .or_default()
                    .push((ctx, batch));
            }
            WorkerMsg::ReadConfirmed { ctx } => {
                self.confirmed_reads.insert(ctx);
                self.apply_held();
            }
            WorkerMsg::ReadFailed { ctx, error } => {
                for batches in self.read_batches.values_mut() {
                    for (_, b) in batches.extract_if(.., |(c, _)| *c == ctx) {
                        let n = b.len();
                        let _ = b.reply.send(vec![Reply::Error(error.clone()); n]);
                    }
                }
                self.read_batches.retain(|_, b| !b.is_empty());
                self.apply_held();
            }
            WorkerMsg::StaleReads(batches) => {
                for b in batches {
                    self.answer_reads(b);
                }
            }
            WorkerMsg::Script {
                after,
                term,
                job,
                reply,
            } => {
                self.scripts.push_back((after, term, job, reply));
                self.run_scripts();
            }
            WorkerMsg::Tick { leader } => {
                self.shared.ticking.store(false, Ordering::Release);
                self.leading = leader;
                self.expire_plans();
                if leader {
                    self.background();
                }
            }
            WorkerMsg::Checkpoint => self.checkpoint(),
            WorkerMsg::InstallSnapshot { index, term } => self.install_snapshot(index, term),
            WorkerMsg::SyncForCompaction => match self.partition.sync() {
                Ok(()) => {
                    (self.to_store)(WorkerEvent::Durable {
                        index: self.applied(),
                    });
                }
                Err(e) => {
                    warn!(partition = %self.name, error = %e, "sync before log compaction failed")
                }
            },
        }
        true
    }

    /// Publishes the applied state for the handles ([`WorkerHandle::state`]): wherever it
    /// changes (entries applied, keys found expired, a snapshot installed), before anyone
    /// is answered.
    fn publish(&self) {
        let mut state = self.partition.state();
        state.keys = state.keys.saturating_sub(self.expired_seen.len() as u64);
        *self.shared.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// The node is stopping: answers whoever still waits and makes the data durable.
    pub(crate) fn stop(&mut self) {
        for (_, plan) in self.plans.drain() {
            let _ = plan.reply.send(vec![
                Reply::Error(CommandError::ShuttingDown);
                plan.is_read.len()
            ]);
        }
        self.drop_read_batches(|| Reply::Error(CommandError::ShuttingDown));
        for (_, _, _, reply) in self.scripts.drain(..) {
            let _ = reply.send(vec![Reply::Error(CommandError::ShuttingDown)]);
        }
        if let Err(e) = self.partition.sync() {
            error!(partition = %self.name, error = %e, "final sync failed");
        }
        info!(partition = %self.name, "partition worker stopped");
    }

    fn on_plan(&mut self, plan: Plan) {
        let id = self.next_plan;
        self.next_plan += 1;
        let n = plan.slots.len();
        self.plans.insert(
            id,
            PlanState {
                replies: vec![None; n],
                is_read: plan
                    .slots
                    .iter()
                    .map(|s| matches!(s, Slot::Read { .. }))
                    .collect(),
                remaining: n,
                lost: false,
                reply: plan.reply,
                deadline: Instant::now() + self.write_timeout,
                script: None,
            },
        );
        let applied = self.applied();
        for (slot, s) in plan.slots.into_iter().enumerate() {
            match s {
                Slot::Done(reply) => self.fill(id, slot, reply),
                Slot::Write { index, term } => {
                    self.writes.insert(index, (id, slot, term));
                }
                Slot::Script {
                    index,
                    term,
                    reply,
                    now_ms,
                    commands,
                } => {
                    if let Some(state) = self.plans.get_mut(&id) {
                        state.script = Some(reply);
                    }
                    self.writes.insert(index, (id, slot, term));
                    if index > applied {
                        self.pending_effects.insert(index, (term, now_ms, commands));
                    }
                }
                Slot::Read { cmd, after } if after == applied => {
                    let reply = self.read(&cmd);
                    self.fill(id, slot, reply);
                }
                // Its position has been applied past already: it cannot be answered at it.
                Slot::Read { after, .. } if after < applied => {
                    self.fill(id, slot, unconfirmed_read())
                }
                Slot::Read { cmd, after } => self
                    .anchored
                    .entry(after)
                    .or_default()
                    .push((id, slot, cmd)),
            }
        }
    }

    /// Records one reply of a plan and sends the plan's replies once complete.
    fn fill(&mut self, plan: u64, slot: usize, reply: Reply) {
        let Some(state) = self.plans.get_mut(&plan) else {
            return;
        };
        if state.replies[slot].is_none() {
            state.remaining -= 1;
        }
        state.replies[slot] = Some(reply);
        if state.remaining > 0 {
            return;
        }
        let state = self.plans.remove(&plan).expect("present");
        let mut script = state.script;
        let replies = state
            .replies
            .into_iter()
            .zip(state.is_read)
            .map(|(r, is_read)| match r.expect("every slot filled") {
                _ if is_read && state.lost => unconfirmed_read(),
                // The script's effects applied: its own reply is the answer.
                r if !r.is_error() => script.take().unwrap_or(r),
                r => r,
            })
            .collect();
        let _ = state.reply.send(replies);
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) {
        self.held.extend(entries);
        self.apply_held();
    }

    /// Runs the read batches anchored at or before the applied index whose ReadIndex is
    /// confirmed. Returns false if one of them is still unconfirmed: entries must wait.
    fn serve_read_batches(&mut self) -> bool {
        let applied = self.applied();
        while let Some(mut entry) = self.read_batches.first_entry() {
            if *entry.key() > applied {
                break;
            }
            let confirmed = &self.confirmed_reads;
            let ready: Vec<(u64, ReadBatch)> = entry
                .get_mut()
                .extract_if(.., |(ctx, _)| confirmed.contains(ctx))
                .collect();
            let blocked = !entry.get().is_empty();
            if !blocked {
                entry.remove();
            }
            for (_, batch) in ready {
                self.answer_reads(batch);
            }
            if blocked {
                return false;
            }
        }
        if self.read_batches.is_empty() {
            self.confirmed_reads.clear();
        }
        true
    }

    /// Applies the held entries in order, stopping before an entry that a read batch
    /// anchored ahead of it is still waiting to run in front of.
    fn apply_held(&mut self) {
        let mut run: Vec<(u64, u64, Change)> = Vec::new();
        let mut next = self.applied() + 1;
        loop {
            if self
                .read_batches
                .first_key_value()
                .is_some_and(|(after, _)| *after < next)
            {
                self.apply_run(&mut run);
                if !self.serve_read_batches() {
                    return;
                }
            }
            let Some(e) = self.held.pop_front() else {
                break;
            };
            if e.index < next {
                // Already applied before a restart: raft replays from its durable commit.
                continue;
            }
            if e.index != next {
                self.fail(format!(
                    "entry {} handed out after {} (a gap)",
                    e.index,
                    next - 1
                ));
                self.held.clear();
                return;
            }
            next += 1;
            let change = if e.get_entry_type() == EntryType::EntryNormal {
                Change::decode(&e.data).unwrap_or_else(|err| {
                    // Every replica decodes the same bytes the same way: skipping keeps them
                    // identical.
                    error!(partition = %self.name, index = e.index, error = %err, "undecodable entry applied as a no-op");
                    Change::Noop
                })
            } else {
                Change::Noop
            };
            let anchor = self.anchored.contains_key(&e.index);
            run.push((e.index, e.term, change));
            if anchor {
                self.apply_run(&mut run);
            }
        }
        self.apply_run(&mut run);
        self.serve_read_batches();
        self.run_scripts();
    }

    /// Runs the scripts whose entry is applied, or whose entries not applied yet are all
    /// effects of this leader's earlier scripts in the same term (the script then runs on
    /// top of them: the scripts of a partition follow each other without waiting for a
    /// raft round each; if those effects never commit, neither can this script's, proposed
    /// after them in that term). Hands their outcomes to the store loop.
    fn run_scripts(&mut self) {
        let applied = self.applied();
        self.pending_effects.retain(|index, _| *index > applied);
        while let Some(&(after, term, _, _)) = self.scripts.front() {
            let on_top: Option<OnTop> = if after <= applied {
                Some(Vec::new())
            } else {
                (applied + 1..=after)
                    .map(|i| match self.pending_effects.get(&i) {
                        Some((t, now_ms, commands)) if *t == term => {
                            Some((*now_ms, commands.as_slice()))
                        }
                        _ => None,
                    })
                    .collect()
            };
            let Some(on_top) = on_top else {
                break;
            };
            let (base, term, job, reply) = self.scripts.pop_front().expect("checked");
            let outcome = match &self.failed {
                Some(why) => script::Outcome {
                    reply: Reply::Error(CommandError::Internal(why.clone())),
                    commands: Vec::new(),
                    now_ms: 0,
                },
                None => {
                    let now_ms = self.clock.now_ms();
                    let (partition, cursors, stats) =
                        (&self.partition, &mut self.cursors, &self.stats);
                    run_contained_script(&job, partition, &on_top, now_ms, cursors, stats)
                }
            };
            (self.to_store)(WorkerEvent::ScriptRan {
                base,
                term,
                outcome,
                reply,
            });
        }
    }

    /// Applies a run of consecutive entries as one engine batch, then answers what waited
    /// for them.
    fn apply_run(&mut self, run: &mut Vec<(u64, u64, Change)>) {
        if run.is_empty() {
            return;
        }
        let (last_index, last_term) = {
            let (i, t, _) = run.last().expect("non-empty");
            (*i, *t)
        };
        let (meta, changes): (Vec<(u64, u64)>, Vec<Change>) =
            run.drain(..).map(|(i, t, c)| ((i, t), c)).unzip();
        let results = match &self.failed {
            Some(why) => Err(why.clone()),
            None => {
                let started = Instant::now();
                // Only the leader records keyspace events, and only those someone wants.
                self.partition.notify = if self.leading {
                    self.events.wanted()
                } else {
                    0
                };
                let applied = self.partition.apply_all(&changes, &mut self.cursors);
                self.stats.observe_apply(changes.len(), started.elapsed());
                applied.map_err(|e| e.to_string())
            }
        };
        match results {
            Ok(replies) => {
                for change in &changes {
                    self.forget_expired(change);
                }
                // Published before any client hears of these changes: an INFO sent after
                // their replies must count them.
                self.publish();
                let events = self.partition.take_events();
                if !events.is_empty() {
                    self.events.publish(&events);
                }
                if changes.iter().any(|c| matches!(c, Change::Functions(_))) {
                    *self
                        .shared
                        .functions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = count_functions(&self.partition);
                }
                for (((index, term), reply), change) in meta.into_iter().zip(replies).zip(&changes)
                {
                    if let (Change::Expire { .. }, Reply::Integer(n)) = (change, &reply) {
                        self.stats.add_expired(*n as u64);
                    }
                    self.resolve_write(index, term, reply);
                }
                self.stats.set_keys(&self.name, self.partition.state().keys);
            }
            Err(why) => {
                self.fail(why.clone());
                for (index, term) in meta {
                    self.resolve_write(
                        index,
                        term,
                        Reply::Error(CommandError::Internal(why.clone())),
                    );
                }
                return;
            }
        }
        self.note_term(last_term);
        if let Some(reads) = self.anchored.remove(&last_index) {
            for (plan, slot, cmd) in reads {
                let reply = self.read(&cmd);
                self.fill(plan, slot, reply);
            }
        }
    }

    fn resolve_write(&mut self, index: u64, entry_term: u64, reply: Reply) {
        let Some((plan, slot, term)) = self.writes.remove(&index) else {
            return;
        };
        if term == entry_term {
            self.fill(plan, slot, reply);
        } else {
            self.lose(plan, slot);
        }
    }

    fn lose(&mut self, plan: u64, slot: usize) {
        if let Some(state) = self.plans.get_mut(&plan) {
            state.lost = true;
        }
        self.fill(plan, slot, lost_write());
    }

    /// An entry of `term` was applied: a waiting write proposed in an older term at a later
    /// index can no longer commit (terms never decrease along the log).
    fn note_term(&mut self, term: u64) {
        if term <= self.applied_term {
            return;
        }
        self.applied_term = term;
        let doomed: Vec<(u64, u64, usize)> = self
            .writes
            .iter()
            .filter(|(_, (_, _, t))| *t < term)
            .map(|(i, (p, s, _))| (*i, *p, *s))
            .collect();
        for (index, plan, slot) in doomed {
            self.writes.remove(&index);
            self.lose(plan, slot);
        }
    }

    /// Answers the plans whose time is up: their writes' outcome is unknown.
    fn expire_plans(&mut self) {
        let now = Instant::now();
        let late: Vec<u64> = self
            .plans
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        if late.is_empty() {
            return;
        }
        let timeout_ms = self.write_timeout.as_millis() as u64;
        self.writes.retain(|_, (p, _, _)| !late.contains(p));
        for reads in self.anchored.values_mut() {
            reads.retain(|(p, _, _)| !late.contains(p));
        }
        self.anchored.retain(|_, reads| !reads.is_empty());
        for id in late {
            let Some(state) = self.plans.get(&id) else {
                continue;
            };
            let open: Vec<(usize, bool)> = state
                .replies
                .iter()
                .zip(&state.is_read)
                .enumerate()
                .filter(|(_, (r, _))| r.is_none())
                .map(|(slot, (_, is_read))| (slot, *is_read))
                .collect();
            for (slot, is_read) in open {
                let reply = if is_read {
                    unconfirmed_read()
                } else {
                    Reply::Error(CommandError::WriteTimeout(timeout_ms))
                };
                self.fill(id, slot, reply);
            }
        }
    }

    fn answer_reads(&mut self, batch: ReadBatch) {
        // The batch runs between two applied entries, as of one instant.
        let now_ms = self.clock.now_ms();
        if let Some(job) = batch.script {
            let outcome = run_contained_script(
                &job,
                &self.partition,
                &[],
                now_ms,
                &mut self.cursors,
                &self.stats,
            );
            let reply = if outcome.commands.is_empty() {
                outcome.reply
            } else {
                Reply::Error(CommandError::Internal("a read-only script wrote".into()))
            };
            let _ = batch.reply.send(vec![reply]);
            return;
        }
        let replies = batch
            .items
            .iter()
            .map(|cmd| self.read_at(cmd, now_ms))
            .collect();
        let _ = batch.reply.send(replies);
    }

    /// Executes a read now; keys it found expired are proposed for deletion.
    fn read(&mut self, cmd: &ReadCommand) -> Reply {
        let now_ms = self.clock.now_ms();
        self.read_at(cmd, now_ms)
    }

    /// [`Worker::read`] as of `now_ms`.
    fn read_at(&mut self, cmd: &ReadCommand, now_ms: i64) -> Reply {
        let hidden = self.expired_seen.len() as u64;
        // Key misses are announced by the replica that serves the read.
        self.partition.notify = self.events.wanted();
        let outcome = self.partition.read(cmd, now_ms, hidden, &mut self.cursors);
        let (reply, expired) = (outcome.reply, outcome.expired);
        if !outcome.missed.is_empty() {
            let misses: Vec<Event> = outcome
                .missed
                .into_iter()
                .map(|key| Event {
                    class: notify::KEY_MISS,
                    name: "keymiss",
                    key,
                })
                .collect();
            self.events.publish(&misses);
        }
        for (key, _) in &expired {
            if self.expired_seen.len() < EXPIRED_SEEN {
                self.expired_seen.insert(key.clone());
            }
        }
        if !expired.is_empty() {
            // Keys found expired leave the published count before the reply goes.
            self.publish();
            if self.failed.is_none() {
                (self.to_store)(WorkerEvent::Propose(Change::Expire {
                    now_ms,
                    keys: expired,
                }));
            }
        }
        reply
    }

    /// Drops the keys `change` touched from the keys known expired.
    fn forget_expired(&mut self, change: &Change) {
        if self.expired_seen.is_empty() {
            return;
        }
        match change.touches() {
            Touches::Every => self.expired_seen.clear(),
            Touches::Keys(keys) => {
                for key in keys {
                    self.expired_seen.remove(key);
                }
            }
            Touches::Expired(keys) => {
                for (key, _) in keys {
                    self.expired_seen.remove(key);
                }
            }
        }
    }

    /// Writes a checkpoint at the applied index and tells the store loop where it is.
    fn checkpoint(&mut self) {
        let index = self.applied();
        let dir = self.files.snapshots.send_dir(self.files.group, index);
        let made = match &self.failed {
            Some(why) => Err(EngineError::Backend(why.clone())),
            None => self.partition.engine().checkpoint(&dir),
        };
        let dir = match made {
            Ok(()) => {
                info!(partition = %self.name, index, "checkpoint written for a snapshot");
                Some(dir)
            }
            Err(e) => {
                warn!(partition = %self.name, error = %e, "writing a checkpoint failed");
                let _ = std::fs::remove_dir_all(&dir);
                None
            }
        };
        (self.to_store)(WorkerEvent::CheckpointReady { index, dir });
    }

    /// Replaces the database by the snapshot received for `index`. The raft log already
    /// records the snapshot, so a replica that cannot install it must not go on: a failure
    /// after the old database is closed stops the process (a restart finishes the install
    /// from the received directory).
    fn install_snapshot(&mut self, index: u64, term: u64) {
        if index <= self.applied() {
            // Already there (a snapshot raft handed out again after a restart).
            self.files.snapshots.remove_received(self.files.group, None);
            return;
        }
        if let Err(e) = self.files.check_received(index) {
            fatal(
                &self.name,
                &format!("received snapshot at {index} is unusable: {e}"),
            );
        }
        let placeholder = Partition::open(Box::new(MemoryEngine::new()))
            .expect("an empty in-memory partition opens");
        drop(std::mem::replace(&mut self.partition, placeholder));
        match self.files.install_received(index) {
            Ok(p) => self.partition = p,
            Err(e) => fatal(
                &self.name,
                &format!("installing the snapshot at {index}: {e}"),
            ),
        }
        self.snapshot_stats
            .installed
            .fetch_add(1, Ordering::Relaxed);
        self.cursors = ScanCursors::new(SCAN_CURSORS);
        self.expired_seen.clear();
        self.note_term(term);
        self.stats.set_keys(&self.name, self.partition.state().keys);
        *self
            .shared
            .functions
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = count_functions(&self.partition);
        self.publish();
        info!(partition = %self.name, index, "snapshot installed");
        // Reads anchored in a log this replica no longer follows cannot run where they
        // were meant to; entries up to the snapshot are in it.
        self.drop_read_batches(unconfirmed_read);
        while self.held.front().is_some_and(|e| e.index <= index) {
            self.held.pop_front();
        }
    }

    /// Answers every batch of reads alone still waiting.
    fn drop_read_batches(&mut self, reply: impl Fn() -> Reply) {
        for (_, batch) in std::mem::take(&mut self.read_batches)
            .into_values()
            .flatten()
        {
            let n = batch.len();
            let _ = batch.reply.send(vec![reply(); n]);
        }
        self.confirmed_reads.clear();
    }

    /// Closes and deletes the partition's database; the worker is dropped after.
    fn destroy(&mut self) {
        let gone = || {
            Reply::Error(CommandError::ClusterChanged(
                "the partition is no longer hosted on this node".into(),
            ))
        };
        // A write proposed but not confirmed may still commit on the other replicas: its
        // outcome is unknown (a refusal would let the proxy send it again). Reads and
        // answered slots are safe.
        for (_, plan) in self.plans.drain() {
            let replies = plan
                .replies
                .into_iter()
                .zip(plan.is_read)
                .map(|(reply, is_read)| match reply {
                    Some(reply) => reply,
                    None if is_read => gone(),
                    None => Reply::Error(CommandError::WriteAbandoned),
                })
                .collect();
            let _ = plan.reply.send(replies);
        }
        self.drop_read_batches(gone);
        for (_, _, _, reply) in self.scripts.drain(..) {
            let _ = reply.send(vec![gone()]);
        }
        self.pending_effects.clear();
        let placeholder = Partition::open(Box::new(MemoryEngine::new()))
            .expect("an empty in-memory partition opens");
        drop(std::mem::replace(&mut self.partition, placeholder));
        if let Err(e) = std::fs::remove_dir_all(&self.files.dir) {
            warn!(partition = %self.name, error = %e, "deleting the removed replica's data failed");
        }
        self.files.snapshots.remove_received(self.files.group, None);
        self.stats.forget_partition(&self.name);
        info!(partition = %self.name, "replica deleted");
    }

    fn fail(&mut self, why: String) {
        if self.failed.is_none() {
            error!(partition = %self.name, error = %why, "applying failed; this replica stops applying");
            self.failed = Some(why);
        }
    }

    /// One round of background work on the leader: propose the deletion of due keys and the
    /// reclamation of dropped collection elements.
    fn background(&mut self) {
        if self.failed.is_some() {
            return;
        }
        let now_ms = self.clock.now_ms();
        match self.partition.due_expirations(now_ms, EXPIRE_BATCH) {
            Ok(keys) if !keys.is_empty() => {
                (self.to_store)(WorkerEvent::Propose(Change::Expire { now_ms, keys }));
            }
            Ok(_) => {}
            Err(e) => warn!(partition = %self.name, error = %e, "reading the expiry index failed"),
        }
        match self.partition.pending_reclaims(RECLAIM_BATCH) {
            Ok(versions) if !versions.is_empty() => {
                (self.to_store)(WorkerEvent::Propose(Change::Reclaim {
                    versions,
                    budget: RECLAIM_BUDGET,
                }));
            }
            Ok(_) => {}
            Err(e) => {
                warn!(partition = %self.name, error = %e, "reading reclamation records failed")
            }
        }
    }
}

/// Stops the process: this replica's data no longer matches its raft log, and serving on
/// would risk acknowledged writes.
fn fatal(partition: &str, why: &str) -> ! {
    error!(
        partition,
        error = why,
        "stopping the node to protect the data"
    );
    std::process::exit(70);
}
