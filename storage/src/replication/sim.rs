//! Simulated multi-raft: several nodes, each a [`RaftStore`] hosting replicas of several
//! groups, on an in-memory network with seeded fault injection: message loss and delay,
//! isolation of a node, a two-sided network partition, a cut link between two nodes (each
//! still reaching the others), and a crash (power loss: what the raft log did not sync is
//! lost, and so is what a partition applied after its last flush: partition databases
//! have no WAL) with a restart from what was durable, replaying the raft log from each
//! partition's durable applied index. A partition flushes now and then by itself, and
//! always before its group's log is compacted (as a worker syncs before it reports the
//! index the log may be compacted to). Snapshots stream for a while (the group goes on
//! writing and compacting meanwhile) and some streams break.
//!
//! A run is deterministic: faults, delays and every replica's election timeout come from
//! one seeded RNG (raft-rs's own random timeout is replaced by a fixed one per replica,
//! chosen from the seed at each start), so a failing seed replays exactly. Properties
//! checked:
//! - at most one leader per term in every group;
//! - applied sequences of a group are prefixes of one another (no replica applies a different
//!   entry at the same position), across crashes and snapshot installs;
//! - every entry any replica applied (a write a client would have seen succeed) is applied
//!   by every replica once the faults stop;
//! - linearizable reads: a ReadIndex read, issued at any replica that believes it leads
//!   (a deposed leader may), is confirmed only at an index at or above every entry any
//!   replica had applied when it was issued;
//! - group commit: one sync persists the raft output of several groups.
//!
//! With spare nodes, replicas also move as PD moves them, under the same faults: a learner
//! is added on a node without one (a node that held a replica before gets a new
//! incarnation), hosted there, promoted once caught up, and then another voter is removed
//! and its replica deleted (at once, or after a while if its node is down: meanwhile it
//! campaigns with the membership it last knew). Replica ids are then those of the storage
//! nodes (node and incarnation), so messages are routed by the node part.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use raft::eraftpb::MessageType;

use zankv_pd_api::node_of;

use super::log_store::GroupId;
use super::log_store::INIT_INDEX;
use super::membership::{self, AdminOp, Step};
use super::peer::{PeerStatus, RaftTiming};
use super::store::{GroupMessage, RaftStore, Start};
use crate::engine::memory::MemoryEngine;

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// One group's state machine on one node, like a partition's data: the applied proposal
/// ids, of which a crash keeps only what the last flush made durable.
#[derive(Default, Clone)]
struct StateMachine {
    applied: Vec<u64>,
    applied_index: u64,
    /// How much of `applied`, up to which index, a crash keeps.
    durable_len: usize,
    durable_index: u64,
}

impl StateMachine {
    /// A new group's state machine, where its log starts.
    fn at(index: u64) -> StateMachine {
        StateMachine {
            applied_index: index,
            durable_index: index,
            ..StateMachine::default()
        }
    }

    /// Makes everything applied durable.
    fn flush(&mut self) {
        self.durable_len = self.applied.len();
        self.durable_index = self.applied_index;
    }

    /// Power loss: back to the last flush.
    fn lose_unflushed(&mut self) {
        self.applied.truncate(self.durable_len);
        self.applied_index = self.durable_index;
    }

    fn snapshot_data(&self) -> Bytes {
        Bytes::from(
            self.applied
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect::<Vec<u8>>(),
        )
    }
}

/// Election timeouts are picked in `[ELECTION_TICKS, 2 × ELECTION_TICKS)`, as raft-rs does.
const ELECTION_TICKS: usize = 10;

/// How many steps a snapshot's stream takes, beyond a message's delay: up to twenty
/// election timeouts.
const SNAPSHOT_STREAM_STEPS: std::ops::Range<u64> = 5..200;

/// One simulated storage node.
struct Node {
    id: u64,
    /// This start's election timeout, in ticks.
    election_timeout: usize,
    /// The raft-log engine: survives crashes.
    disk: Arc<MemoryEngine>,
    /// None while crashed.
    store: Option<RaftStore>,
    machines: BTreeMap<GroupId, StateMachine>,
}

impl Node {
    /// Starts from the disk, as a storage node with a static layout does: the groups whose
    /// logs it holds, and, if it is one of their initial `voters`, the groups of `groups`
    /// it never held (no log, no tombstone) as new ones.
    fn start(&mut self, groups: &[GroupId], voters: &[u64], election_timeout: usize) {
        self.election_timeout = election_timeout;
        let timing = RaftTiming {
            election_ticks: ELECTION_TICKS,
            fixed_election_timeout: Some(election_timeout),
            ..RaftTiming::default()
        };
        let mut store = RaftStore::new(Box::new(self.disk.clone()), timing, logger());
        let persisted = store.persisted_groups().expect("persisted groups");
        let bootstrap: Vec<GroupId> = groups
            .iter()
            .copied()
            .filter(|g| {
                voters.contains(&self.id)
                    && !persisted.contains(g)
                    && !store.is_tombstoned(*g).expect("tombstone")
            })
            .collect();
        for g in bootstrap {
            // A new group's state machine starts where its log does.
            self.machines.insert(g, StateMachine::at(INIT_INDEX));
            store
                .host(g, self.id, Start::Bootstrap(voters), INIT_INDEX)
                .expect("host group");
        }
        for g in persisted {
            // The log records its replica id (the one passed is not used).
            let applied = self.machines.get(&g).map_or(0, |m| m.applied_index);
            store
                .host(g, self.id, Start::Join, applied)
                .expect("host group");
        }
        self.store = Some(store);
    }
}

/// A replica move in flight: `op` is the operation the group's leader is driven to now
/// (add a learner on the target node, promote it, remove another voter).
struct Move {
    group: GroupId,
    op: AdminOp,
    /// Step from which the current operation may be proposed again (raft-rs drops a
    /// membership proposal while another is pending, and a lost one must be re-sent).
    propose_at: u64,
}

struct InFlight {
    deliver_at: u64,
    m: GroupMessage,
}

struct Sim {
    rng: fastrand::Rng,
    groups: Vec<GroupId>,
    nodes: Vec<Node>,
    net: Vec<InFlight>,
    now: u64,
    drop_per_mille: u32,
    max_delay: u64,
    /// (node, until step): isolated nodes send and receive nothing.
    isolated: Vec<(u64, u64)>,
    /// (a, b, until step): messages between a and b (either way) are lost.
    cuts: Vec<(u64, u64, u64)>,
    /// (node, restart at step): crashed nodes.
    crashed: Vec<(u64, u64)>,
    /// (group, term) → leader.
    leaders: BTreeMap<(GroupId, u64), u64>,
    /// Reads registered and not confirmed yet: context → (group, the highest index any
    /// replica had applied when the read was issued).
    reads: BTreeMap<u64, (GroupId, u64)>,
    next_read: u64,
    reads_confirmed: usize,
    next_proposal: u64,
    snapshots_installed: usize,
    /// Snapshot streams that broke (their sender is told the snapshot failed).
    snapshots_broken: usize,
    crashes: usize,
    /// Unsynced raft-log batches lost by crashes.
    unsynced_lost: usize,
    /// Two-sided partitions and cut links injected.
    splits: usize,
    /// Nodes `1..=initial_voters` are the groups' initial voters; replicas move when there
    /// are more nodes than that.
    initial_voters: u64,
    /// Whether the faults have stopped.
    healed: bool,
    moves: Vec<Move>,
    moves_done: usize,
    /// Learners hosted on a node that had held a replica of their group.
    recreated: usize,
    /// Leadership transfers started.
    transfers: usize,
    /// (group, node, replica): removed replicas still to be deleted from their node.
    to_delete: Vec<(GroupId, u64, u64)>,
    /// Every proposal any replica applied, per group (committed, so never to be lost, even
    /// where a crash undid the apply or the replica was deleted since).
    ever_applied: BTreeMap<GroupId, HashSet<u64>>,
    /// Partition state machines set back to their last flush by crashes, and the applied
    /// entries that took away.
    rolled_back: usize,
    entries_rolled_back: u64,
}

impl Sim {
    /// `size` nodes hosting `groups` groups, plus `spares` nodes that start empty; with
    /// spares, replicas move.
    fn new(seed: u64, size: u64, groups: u64) -> Sim {
        Sim::with_spares(seed, size, groups, 0)
    }

    fn with_spares(seed: u64, size: u64, groups: u64, spares: u64) -> Sim {
        let groups: Vec<GroupId> = (1..=groups).collect();
        let nodes: Vec<Node> = (1..=size + spares)
            .map(|id| Node {
                id,
                election_timeout: 0,
                disk: Arc::new(MemoryEngine::new()),
                store: None,
                machines: BTreeMap::new(),
            })
            .collect();
        let mut sim = Sim {
            rng: fastrand::Rng::with_seed(seed),
            groups,
            nodes,
            net: Vec::new(),
            now: 0,
            drop_per_mille: 0,
            max_delay: 0,
            isolated: Vec::new(),
            cuts: Vec::new(),
            crashed: Vec::new(),
            leaders: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_read: 1,
            reads_confirmed: 0,
            next_proposal: 1,
            snapshots_installed: 0,
            snapshots_broken: 0,
            crashes: 0,
            unsynced_lost: 0,
            splits: 0,
            initial_voters: size,
            healed: false,
            moves: Vec::new(),
            moves_done: 0,
            recreated: 0,
            transfers: 0,
            to_delete: Vec::new(),
            ever_applied: BTreeMap::new(),
            rolled_back: 0,
            entries_rolled_back: 0,
        };
        for id in 1..=size + spares {
            sim.start_node(id);
        }
        sim
    }

    /// Starts (or restarts) node `id` from its disk, with an election timeout from the
    /// seed that no other running node has (equal timeouts would keep splitting votes).
    fn start_node(&mut self, id: u64) {
        let taken: Vec<usize> = self
            .nodes
            .iter()
            .filter(|n| n.id != id && n.store.is_some())
            .map(|n| n.election_timeout)
            .collect();
        let free: Vec<usize> = (ELECTION_TICKS..2 * ELECTION_TICKS)
            .filter(|t| !taken.contains(t))
            .collect();
        let timeout = free[self.rng.usize(0..free.len())];
        let voters: Vec<u64> = (1..=self.initial_voters).collect();
        let groups = self.groups.clone();
        let node = self.nodes.iter_mut().find(|n| n.id == id).expect("node");
        node.start(&groups, &voters, timeout);
    }

    fn voters(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn is_isolated(&self, id: u64) -> bool {
        self.isolated
            .iter()
            .any(|&(n, until)| n == id && until > self.now)
    }

    /// Whether a message from `a` reaches `b` (isolation aside).
    fn linked(&self, a: u64, b: u64) -> bool {
        !self
            .cuts
            .iter()
            .any(|&(x, y, until)| until > self.now && ((x, y) == (a, b) || (x, y) == (b, a)))
    }

    fn running(&self, id: u64) -> bool {
        !self.is_isolated(id) && self.nodes.iter().any(|n| n.id == id && n.store.is_some())
    }

    /// Tells the sender of a snapshot whether it arrived, as a snapshot transport does.
    fn report_snapshot(&mut self, m: &GroupMessage, delivered: bool) {
        if m.msg.get_msg_type() != MessageType::MsgSnapshot {
            return;
        }
        if let Some(s) = self
            .nodes
            .iter_mut()
            .find(|n| n.id == node_of(m.msg.from))
            .and_then(|n| n.store.as_mut())
        {
            s.report_snapshot(m.group, m.msg.to, delivered);
        }
    }

    fn send(&mut self, msgs: Vec<GroupMessage>) {
        for m in msgs {
            let (from, to) = (node_of(m.msg.from), node_of(m.msg.to));
            if self.is_isolated(from)
                || self.is_isolated(to)
                || !self.linked(from, to)
                || self.rng.u32(0..1000) < self.drop_per_mille
            {
                self.report_snapshot(&m, false);
                continue;
            }
            let mut deliver_at = self.now + 1 + self.rng.u64(0..=self.max_delay);
            if m.msg.get_msg_type() == MessageType::MsgSnapshot {
                // A checkpoint's files stream for a while (the group goes on writing and
                // compacting meanwhile), and a stream may break.
                if self.rng.u32(0..8) == 0 {
                    self.snapshots_broken += 1;
                    self.report_snapshot(&m, false);
                    continue;
                }
                deliver_at += self.rng.u64(SNAPSHOT_STREAM_STEPS);
            }
            self.net.push(InFlight { deliver_at, m });
        }
    }

    /// One step of simulated time: faults, ticks, deliveries, proposals, one loop iteration
    /// per node.
    fn step(&mut self, faults: bool, propose: bool) {
        self.now += 1;
        if faults {
            self.inject_faults();
        }
        self.restart_due();
        for n in &mut self.nodes {
            if let Some(s) = &mut n.store {
                s.tick();
            }
        }
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|m| m.deliver_at <= now);
        self.net = later;
        for InFlight { m, .. } in due {
            let to = node_of(m.msg.to);
            // A cut that started while the message was in flight loses it too.
            let running = self.running(to) && self.linked(node_of(m.msg.from), to);
            self.report_snapshot(&m, running);
            if running {
                if let Some(s) = self
                    .nodes
                    .iter_mut()
                    .find(|n| n.id == to)
                    .and_then(|n| n.store.as_mut())
                {
                    s.step(m);
                }
            }
        }
        if propose {
            for g in self.groups.clone() {
                if self.rng.u8(0..3) != 0 {
                    continue;
                }
                let leader = self
                    .nodes
                    .iter_mut()
                    .filter_map(|n| n.store.as_mut())
                    .find(|s| s.peer(g).is_some_and(|p| p.is_leader()));
                if let Some(store) = leader {
                    if store
                        .propose(g, self.next_proposal.to_be_bytes().to_vec())
                        .is_ok()
                    {
                        self.next_proposal += 1;
                    }
                }
            }
        }
        if propose {
            self.start_reads();
        }
        if self.nodes.len() as u64 > self.initial_voters {
            self.move_replicas(faults);
        }
        for i in 0..self.nodes.len() {
            self.loop_iteration(i);
        }
        self.check_safety();
    }

    /// Now and then, a linearizable read (ReadIndex) at a node that believes it leads (a
    /// deposed leader on the wrong side of a partition may still believe so), remembering
    /// the highest index any replica had applied: every write a client saw succeed.
    fn start_reads(&mut self) {
        for g in self.groups.clone() {
            if self.rng.u8(0..4) != 0 {
                continue;
            }
            let leaders: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| {
                    self.nodes[i]
                        .store
                        .as_ref()
                        .and_then(|s| s.peer(g))
                        .is_some_and(|p| p.is_leader())
                })
                .collect();
            if leaders.is_empty() {
                continue;
            }
            let at = leaders[self.rng.usize(0..leaders.len())];
            let floor = self
                .nodes
                .iter()
                .filter_map(|n| n.machines.get(&g))
                .map(|m| m.applied_index)
                .max()
                .unwrap_or(0);
            let ctx = self.next_read;
            let store = self.nodes[at].store.as_mut().expect("leads");
            if store.read_index(g, ctx).is_ok() {
                self.next_read += 1;
                self.reads.insert(ctx, (g, floor));
            }
        }
    }

    /// The view of `group`'s leader, and its node's index, if it has one running.
    fn leader_of(&self, group: GroupId) -> Option<(usize, PeerStatus)> {
        self.nodes.iter().enumerate().find_map(|(i, n)| {
            let p = n.store.as_ref()?.peer(group)?;
            p.is_leader().then(|| (i, p.status()))
        })
    }

    /// Every node's view of `group`, for failure messages.
    fn describe(&self, group: GroupId) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let view = match &n.store {
                    None => "down".to_string(),
                    Some(s) => match s.peer(group) {
                        None => "not hosted".to_string(),
                        Some(p) => format!("{:?}", p.status()),
                    },
                };
                let applied = n.machines.get(&group).map(|m| m.applied_index);
                format!(
                    "  node {} group {group}: {view}, applied {applied:?}\n",
                    n.id
                )
            })
            .collect()
    }

    /// Nodes with a replica of `group` in its leader's configuration.
    fn members(status: &PeerStatus) -> Vec<u64> {
        status
            .voters
            .iter()
            .chain(&status.learners)
            .map(|&r| node_of(r))
            .collect()
    }

    /// Drives the moves in flight, deletes removed replicas, and (when `start` and no
    /// move is in flight for it) starts a move of a random group now and then.
    fn move_replicas(&mut self, start: bool) {
        if start && self.rng.u32(0..1000) < 20 {
            let g = self.groups[self.rng.usize(0..self.groups.len())];
            if !self.moves.iter().any(|m| m.group == g) {
                if let Some((_, status)) = self.leader_of(g) {
                    let members = Self::members(&status);
                    // A node that runs and holds nothing of the group (a replica still to
                    // be deleted counts as held).
                    let free: Vec<u64> = self
                        .nodes
                        .iter()
                        .filter(|n| {
                            n.store.as_ref().is_some_and(|s| s.peer(g).is_none())
                                && !members.contains(&n.id)
                                && !self
                                    .to_delete
                                    .iter()
                                    .any(|&(dg, dn, _)| dg == g && dn == n.id)
                        })
                        .map(|n| n.id)
                        .collect();
                    if !free.is_empty() {
                        let to = free[self.rng.usize(0..free.len())];
                        self.moves.push(Move {
                            group: g,
                            op: AdminOp::AddLearner(to),
                            propose_at: self.now,
                        });
                    }
                }
            }
        }
        if start && self.rng.u32(0..1000) < 10 {
            // Leadership handed to another voter, as PD's leader balancer does.
            let g = self.groups[self.rng.usize(0..self.groups.len())];
            if let Some((leader, status)) = self.leader_of(g) {
                if self.transfer_away(leader, g, &status) {
                    self.transfers += 1;
                }
            }
        }
        let mut i = 0;
        while i < self.moves.len() {
            if self.drive_move(i) {
                self.moves.swap_remove(i);
                self.moves_done += 1;
            } else {
                i += 1;
            }
        }
        // A removed replica is deleted once its node runs, now or a while later (PD's
        // grace period): until then it may campaign with the membership it last knew.
        let healed = self.healed;
        let mut i = 0;
        while i < self.to_delete.len() {
            let (g, node, replica) = self.to_delete[i];
            let later = self.rng.u32(0..40) != 0 && !healed;
            let n = self.nodes.iter_mut().find(|n| n.id == node).expect("node");
            let Some(store) = n.store.as_mut() else {
                i += 1;
                continue;
            };
            if later {
                i += 1;
                continue;
            }
            if store.peer(g).is_some_and(|p| p.id() == replica) {
                store.unhost(g).expect("unhost");
                n.machines.remove(&g);
            }
            self.to_delete.swap_remove(i);
        }
    }

    /// One step of move `i`; true when it is finished.
    fn drive_move(&mut self, i: usize) -> bool {
        let (g, op) = (self.moves[i].group, self.moves[i].op);
        let Some((leader, status)) = self.leader_of(g) else {
            return false;
        };
        let leader_node = self.nodes[leader].id;
        if membership::satisfied(op, &status) {
            match op {
                AdminOp::AddLearner(to) => {
                    // The learner's node hosts it now (as PD tells it to), with nothing.
                    let replica = status
                        .learners
                        .iter()
                        .chain(&status.voters)
                        .copied()
                        .find(|&r| node_of(r) == to)
                        .expect("satisfied");
                    let n = self.nodes.iter_mut().find(|n| n.id == to).expect("node");
                    let Some(store) = n.store.as_mut() else {
                        return false;
                    };
                    if store.peer(g).is_none() {
                        if store.is_tombstoned(g).expect("tombstone") {
                            // It held a replica before: the new one starts from nothing.
                            store.forget(g).expect("forget");
                            self.recreated += 1;
                        }
                        n.machines.insert(g, StateMachine::default());
                        store.host(g, replica, Start::Join, 0).expect("host");
                    }
                    self.moves[i].op = AdminOp::Promote(to);
                }
                AdminOp::Promote(to) => {
                    let others: Vec<u64> = status
                        .voters
                        .iter()
                        .map(|&r| node_of(r))
                        .filter(|&n| n != to && n != leader_node)
                        .collect();
                    let from = others[self.rng.usize(0..others.len())];
                    self.moves[i].op = AdminOp::Remove(from);
                }
                AdminOp::Remove(from) => {
                    let replica = self
                        .nodes
                        .iter()
                        .find(|n| n.id == from)
                        .and_then(|n| n.store.as_ref()?.peer(g).map(|p| p.id()));
                    // A node that is down deletes it when it is back: its log names it.
                    let replica = replica.or_else(|| {
                        let n = self.nodes.iter().find(|n| n.id == from)?;
                        let log = super::log_store::GroupLog::load(n.disk.as_ref(), g).ok()??;
                        Some(log.replica().unwrap_or(from))
                    });
                    if let Some(replica) = replica {
                        self.to_delete.push((g, from, replica));
                    }
                    return true;
                }
                AdminOp::TransferLeader(_) => unreachable!("moves transfer no leadership"),
            }
            self.moves[i].propose_at = self.now;
            return false;
        }
        if self.now < self.moves[i].propose_at {
            return false;
        }
        self.moves[i].propose_at = self.now + 20;
        match (op, membership::plan(op, &status)) {
            (_, Ok(Step::Propose(cc))) => {
                let store = self.nodes[leader].store.as_mut().expect("leads");
                let _ = store.propose_conf_change(g, cc);
            }
            (AdminOp::Remove(from), Err(_)) if from == leader_node => {
                // The replica to remove leads now (its removal may even be pending): as PD
                // does, hand leadership to another voter first.
                self.transfer_away(leader, g, &status);
            }
            _ => {}
        }
        false
    }

    /// Starts handing `group`'s leadership from its leader (on node index `leader`, whose
    /// view is `status`) to another voter picked at random; false if there is none.
    fn transfer_away(&mut self, leader: usize, group: GroupId, status: &PeerStatus) -> bool {
        let others: Vec<u64> = status
            .voters
            .iter()
            .copied()
            .filter(|&r| r != status.id)
            .collect();
        if others.is_empty() {
            return false;
        }
        let to = others[self.rng.usize(0..others.len())];
        let peer = self.nodes[leader]
            .store
            .as_mut()
            .and_then(|s| s.peer_mut(group));
        peer.expect("leads").transfer_leader(to);
        true
    }

    /// What a store loop does once: persist and advance every group, install snapshots,
    /// apply committed entries, compact long logs, send messages.
    fn loop_iteration(&mut self, i: usize) {
        // Now and then one of the node's partitions flushes by itself.
        let flush = (self.rng.u32(0..16) == 0).then(|| self.rng.usize(..));
        let node = &mut self.nodes[i];
        let Some(store) = &mut node.store else {
            return;
        };
        if let Some(pick) = flush {
            let count = node.machines.len();
            if let Some(sm) = node.machines.values_mut().nth(pick % count.max(1)) {
                sm.flush();
            }
        }
        // What the store hands out before its sync and what it hands out after are
        // handled alike here, in that order.
        let mut early = None;
        let late = store
            .process_ready(&mut |o| early = Some(o))
            .expect("process ready");
        let mut messages = Vec::new();
        for out in early.into_iter().chain(Some(late)) {
            for (g, snap) in &out.snapshots {
                let data = &snap.data;
                let sm = node.machines.entry(*g).or_default();
                sm.applied = data
                    .chunks(8)
                    .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
                    .collect();
                sm.applied_index = snap.get_metadata().index;
                // A checkpoint is installed durably, as a whole.
                sm.flush();
                self.snapshots_installed += 1;
            }
            for (g, entries) in &out.committed {
                let sm = node.machines.entry(*g).or_default();
                for e in entries {
                    if e.index <= sm.applied_index {
                        continue;
                    }
                    assert_eq!(
                        e.index,
                        sm.applied_index + 1,
                        "node {} group {g} skipped an entry",
                        node.id
                    );
                    if e.data.len() == 8 {
                        let proposal = u64::from_be_bytes(e.data[..].try_into().expect("8 bytes"));
                        sm.applied.push(proposal);
                        self.ever_applied.entry(*g).or_default().insert(proposal);
                    }
                    sm.applied_index = e.index;
                }
            }
            for (g, confirmed) in &out.reads {
                for &(ctx, index) in confirmed {
                    let (group, floor) = self.reads.remove(&ctx).expect("a read was registered");
                    assert_eq!(group, *g, "a read confirmed for another group");
                    assert!(
                        index >= floor,
                        "group {g}: node {} confirmed a read at index {index}, below {floor}, \
                         which a replica had already applied: a stale read",
                        node.id
                    );
                    self.reads_confirmed += 1;
                }
            }
            messages.extend(out.messages);
        }
        // Long logs are compacted at the applied index once the partition has flushed it
        // (the log must keep every entry a crash could take from the partition); a
        // follower that needs one gets a snapshot of the state at exactly its index.
        for g in store.groups_with_long_logs(40, usize::MAX) {
            let sm = node
                .machines
                .get_mut(&g)
                .expect("a machine per hosted group");
            sm.flush();
            store.compact(g, sm.durable_index).expect("compact");
        }
        for g in store.groups_wanting_snapshots() {
            let sm = &node.machines[&g];
            store.offer_snapshot(g, sm.applied_index, sm.snapshot_data());
        }
        self.send(messages);
    }

    fn inject_faults(&mut self) {
        let roll = self.rng.u32(0..1000);
        let victim = self.rng.u64(1..=self.nodes.len() as u64);
        match roll {
            0..=4 => {
                let until = self.now + self.rng.u64(30..200);
                self.isolated.push((victim, until));
            }
            5..=7 if !self.crashed.iter().any(|&(n, _)| n == victim) => {
                // Crash (power loss): volatile raft state, what the raft log had not
                // synced, and in-flight messages to it are lost.
                let node = self
                    .nodes
                    .iter_mut()
                    .find(|n| n.id == victim)
                    .expect("node");
                node.store = None;
                self.unsynced_lost += node.disk.lose_unsynced();
                for sm in node.machines.values_mut() {
                    let lost = sm.applied_index - sm.durable_index;
                    if lost > 0 {
                        self.rolled_back += 1;
                        self.entries_rolled_back += lost;
                    }
                    sm.lose_unflushed();
                }
                let at = self.now + self.rng.u64(10..150);
                self.crashed.push((victim, at));
                self.crashes += 1;
            }
            8..=12 => {
                self.drop_per_mille = self.rng.u32(0..300);
                self.max_delay = self.rng.u64(0..4);
            }
            13..=15 => {
                // A two-sided partition: a random minority (with the victim) on one side.
                let until = self.now + self.rng.u64(30..200);
                let mut ids = self.voters();
                self.rng.shuffle(&mut ids);
                let minority = (ids.len() / 2).max(1);
                let side: Vec<u64> = std::iter::once(victim)
                    .chain(ids.into_iter().filter(|&n| n != victim))
                    .take(minority)
                    .collect();
                for a in self.voters() {
                    for &b in &side {
                        if !side.contains(&a) {
                            self.cuts.push((a, b, until));
                        }
                    }
                }
                self.splits += 1;
            }
            16..=17 => {
                // One link cut: the victim and one other node still reach everyone else.
                let other = self.rng.u64(1..=self.nodes.len() as u64);
                if other != victim {
                    let until = self.now + self.rng.u64(30..200);
                    self.cuts.push((victim, other, until));
                    self.splits += 1;
                }
            }
            _ => {}
        }
    }

    fn restart_due(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.crashed.iter().partition(|&&(_, at)| at <= now);
        self.crashed = later;
        for (id, _) in due {
            self.start_node(id);
        }
    }

    fn heal(&mut self) {
        self.healed = true;
        self.isolated.clear();
        self.cuts.clear();
        self.drop_per_mille = 0;
        self.max_delay = 0;
        for (_, at) in &mut self.crashed {
            *at = self.now;
        }
    }

    fn check_safety(&mut self) {
        for n in &self.nodes {
            let Some(store) = &n.store else { continue };
            for g in store.groups() {
                let peer = store.peer(g).expect("hosted");
                if peer.is_leader() {
                    let previous = self.leaders.insert((g, peer.term()), n.id);
                    assert!(
                        previous.is_none_or(|prev| prev == n.id),
                        "group {g}: two leaders in term {}: {:?} and {}",
                        peer.term(),
                        previous,
                        n.id
                    );
                }
            }
        }
        for &g in &self.groups {
            for a in &self.nodes {
                for b in &self.nodes {
                    let (Some(x), Some(y)) = (a.machines.get(&g), b.machines.get(&g)) else {
                        continue;
                    };
                    let common = x.applied.len().min(y.applied.len());
                    assert_eq!(
                        x.applied[..common],
                        y.applied[..common],
                        "group {g}: nodes {} and {} applied different entries",
                        a.id,
                        b.id
                    );
                }
            }
        }
    }
}

/// What a run exercised, so callers can check the faults really happened, and what it
/// produced, so two runs of one seed can be compared.
#[derive(Default, Debug, PartialEq)]
struct Exercised {
    snapshots: usize,
    snapshots_broken: usize,
    crashes: usize,
    unsynced_lost: usize,
    splits: usize,
    /// Replica moves finished.
    moves: usize,
    /// Learners hosted where a replica of their group had been.
    recreated: usize,
    /// Leadership transfers started.
    transfers: usize,
    /// Linearizable reads confirmed.
    reads: usize,
    /// Partitions a crash set back to their last flush, and the applied entries that undid
    /// (replayed from the raft log at the restart).
    rolled_back: usize,
    entries_rolled_back: u64,
    syncs: u64,
    groups_persisted: u64,
    /// Every (group, term) → leader observed.
    leaders: BTreeMap<(GroupId, u64), u64>,
    /// Each group's final applied sequence.
    applied: Vec<Vec<u64>>,
}

impl Exercised {
    /// Adds another run's counts (not its leaders and applied sequences) to these.
    fn add(&mut self, other: &Exercised) {
        self.snapshots += other.snapshots;
        self.snapshots_broken += other.snapshots_broken;
        self.crashes += other.crashes;
        self.unsynced_lost += other.unsynced_lost;
        self.splits += other.splits;
        self.moves += other.moves;
        self.recreated += other.recreated;
        self.transfers += other.transfers;
        self.reads += other.reads;
        self.rolled_back += other.rolled_back;
        self.entries_rolled_back += other.entries_rolled_back;
        self.syncs += other.syncs;
        self.groups_persisted += other.groups_persisted;
    }
}

fn run(seed: u64, size: u64, groups: u64) -> Exercised {
    run_with_spares(seed, size, groups, 0)
}

/// Runs under faults, heals, lets moves in flight finish, and checks that every group's
/// replicas are exactly its members, hold `size` voters and applied the same entries,
/// which include every entry any replica ever applied.
fn run_with_spares(seed: u64, size: u64, groups: u64, spares: u64) -> Exercised {
    let mut sim = Sim::with_spares(seed, size, groups, spares);
    for _ in 0..3000 {
        sim.step(true, true);
    }
    sim.heal();
    let mut settling = 0;
    while !(sim.moves.is_empty() && sim.to_delete.is_empty()) {
        sim.step(false, false);
        settling += 1;
        assert!(
            settling < 3000,
            "seed {seed}: moves did not finish after the faults stopped: {:?}\n{}",
            sim.moves
                .iter()
                .map(|m| (m.group, m.op))
                .collect::<Vec<_>>(),
            sim.moves
                .iter()
                .map(|m| sim.describe(m.group))
                .collect::<String>()
        );
    }
    for _ in 0..600 {
        sim.step(false, false);
    }
    let mut applied = Vec::new();
    for &g in &sim.groups {
        let (leader, status) = sim.leader_of(g).unwrap_or_else(|| {
            panic!(
                "seed {seed} group {g}: no leader after healing\n{}",
                sim.describe(g)
            )
        });
        let mut members = Sim::members(&status);
        members.sort_unstable();
        let hosting: Vec<u64> = sim
            .nodes
            .iter()
            .filter(|n| n.store.as_ref().is_some_and(|s| s.peer(g).is_some()))
            .map(|n| n.id)
            .collect();
        assert_eq!(
            hosting, members,
            "seed {seed} group {g}: the nodes hosting it are not its members"
        );
        assert_eq!(
            (status.voters.len(), status.learners.len()),
            (size as usize, 0),
            "seed {seed} group {g}: not back to {size} voters"
        );
        let reference = &sim.nodes[leader].machines[&g].applied;
        for n in sim.nodes.iter().filter(|n| hosting.contains(&n.id)) {
            assert_eq!(
                &n.machines[&g].applied, reference,
                "seed {seed} group {g}: node {} did not converge",
                n.id
            );
        }
        let final_set: HashSet<u64> = reference.iter().copied().collect();
        assert_eq!(
            Some(&final_set),
            sim.ever_applied.get(&g),
            "seed {seed} group {g}: an applied entry was lost"
        );
        assert!(
            reference.len() > 30,
            "seed {seed} group {g}: too little progress ({} entries)",
            reference.len()
        );
        applied.push(reference.clone());
    }
    let mut ex = Exercised {
        snapshots: sim.snapshots_installed,
        snapshots_broken: sim.snapshots_broken,
        crashes: sim.crashes,
        unsynced_lost: sim.unsynced_lost,
        splits: sim.splits,
        moves: sim.moves_done,
        recreated: sim.recreated,
        transfers: sim.transfers,
        reads: sim.reads_confirmed,
        rolled_back: sim.rolled_back,
        entries_rolled_back: sim.entries_rolled_back,
        leaders: sim.leaders.clone(),
        applied,
        ..Default::default()
    };
    for n in &sim.nodes {
        if let Some(s) = &n.store {
            ex.syncs += s.stats().syncs;
            ex.groups_persisted += s.stats().groups_persisted;
        }
    }
    ex
}

#[test]
fn three_nodes_four_groups_stay_safe_and_converge_under_faults() {
    let mut total = Exercised::default();
    for seed in 0..8 {
        total.add(&run(seed, 3, 4));
    }
    assert!(
        total.snapshots > 0 && total.snapshots_broken > 0 && total.crashes > 0 && total.splits > 0,
        "faults not exercised: {total:?}"
    );
    assert!(total.reads > 1000, "few reads confirmed: {}", total.reads);
    assert!(
        total.unsynced_lost > 0,
        "no crash lost an unsynced raft-log write"
    );
    assert!(
        total.rolled_back > 0 && total.entries_rolled_back > total.rolled_back as u64,
        "no crash took applied entries from a partition: {total:?}"
    );
    // Several groups share each sync.
    assert!(
        total.groups_persisted > total.syncs * 2,
        "group commit not happening: {} group cycles over {} syncs",
        total.groups_persisted,
        total.syncs
    );
}

#[test]
fn five_nodes_stay_safe_and_converge_under_faults() {
    let mut splits = 0;
    for seed in 100..103 {
        splits += run(seed, 5, 2).splits;
    }
    assert!(splits > 0, "no network partition injected");
}

#[test]
fn replicas_and_leaders_move_under_faults() {
    let mut total = Exercised::default();
    for seed in 200..212 {
        total.add(&run_with_spares(seed, 3, 3, 2));
    }
    eprintln!(
        "{} moves, {} re-created replicas, {} leader transfers, {} reads, {} snapshots, {} crashes, \
         {} partitions rolled back",
        total.moves,
        total.recreated,
        total.transfers,
        total.reads,
        total.snapshots,
        total.crashes,
        total.rolled_back
    );
    assert!(
        total.moves > 20
            && total.recreated > 0
            && total.transfers > 20
            && total.snapshots > 0
            && total.crashes > 0,
        "moves not exercised under faults: {total:?}"
    );
}

#[test]
fn a_seed_replays_exactly() {
    let first = run(5, 3, 2);
    let again = run(5, 3, 2);
    assert!(first.leaders.len() > 1, "no leader change to compare");
    assert_eq!(first, again, "two runs of one seed differ");
}

#[test]
fn a_single_replica_group_commits_alone() {
    let mut sim = Sim::new(7, 1, 1);
    for _ in 0..200 {
        sim.step(false, true);
    }
    assert!(sim.nodes[0].machines[&1].applied.len() > 20);
}
