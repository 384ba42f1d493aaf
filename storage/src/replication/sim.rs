//! Simulated multi-raft: several nodes, each a [`RaftStore`] hosting replicas of several
//! groups, on an in-memory network with seeded fault injection: message loss and delay,
//! isolation of a node, a two-sided network partition, a cut link between two nodes (each
//! still reaching the others), and a crash (power loss: what the raft log did not sync is
//! lost) with a restart from what was durable.
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
//! - group commit: one sync persists the raft output of several groups.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use raft::eraftpb::MessageType;

use super::log_store::GroupId;
use super::log_store::INIT_INDEX;
use super::peer::RaftTiming;
use super::store::{GroupMessage, RaftStore, Start};
use crate::engine::memory::MemoryEngine;

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// One group's state machine on one node (durable, like a partition's data): the applied
/// proposal ids.
#[derive(Default, Clone)]
struct StateMachine {
    applied: Vec<u64>,
    applied_index: u64,
}

impl StateMachine {
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
    fn start(&mut self, groups: &[GroupId], voters: &[u64], election_timeout: usize) {
        self.election_timeout = election_timeout;
        let timing = RaftTiming {
            election_ticks: ELECTION_TICKS,
            fixed_election_timeout: Some(election_timeout),
            ..RaftTiming::default()
        };
        let mut store = RaftStore::new(Box::new(self.disk.clone()), timing, logger());
        for &g in groups {
            // A new group's state machine starts where its log does.
            let machine = self.machines.entry(g).or_insert_with(|| StateMachine {
                applied: Vec::new(),
                applied_index: INIT_INDEX,
            });
            let applied = machine.applied_index;
            store
                .host(g, self.id, Start::Bootstrap(voters), applied)
                .expect("host group");
        }
        self.store = Some(store);
    }
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
    next_proposal: u64,
    snapshots_installed: usize,
    crashes: usize,
    /// Unsynced raft-log batches lost by crashes.
    unsynced_lost: usize,
    /// Two-sided partitions and cut links injected.
    splits: usize,
}

impl Sim {
    fn new(seed: u64, size: u64, groups: u64) -> Sim {
        let voters: Vec<u64> = (1..=size).collect();
        let groups: Vec<GroupId> = (1..=groups).collect();
        let nodes: Vec<Node> = voters
            .iter()
            .map(|&id| Node {
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
            next_proposal: 1,
            snapshots_installed: 0,
            crashes: 0,
            unsynced_lost: 0,
            splits: 0,
        };
        for id in voters {
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
        let voters = self.voters();
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
            .find(|n| n.id == m.msg.from)
            .and_then(|n| n.store.as_mut())
        {
            s.report_snapshot(m.group, m.msg.to, delivered);
        }
    }

    fn send(&mut self, msgs: Vec<GroupMessage>) {
        for m in msgs {
            if self.is_isolated(m.msg.from)
                || self.is_isolated(m.msg.to)
                || !self.linked(m.msg.from, m.msg.to)
                || self.rng.u32(0..1000) < self.drop_per_mille
            {
                self.report_snapshot(&m, false);
                continue;
            }
            let deliver_at = self.now + 1 + self.rng.u64(0..=self.max_delay);
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
            let to = m.msg.to;
            // A cut that started while the message was in flight loses it too.
            let running = self.running(to) && self.linked(m.msg.from, to);
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
        for i in 0..self.nodes.len() {
            self.loop_iteration(i);
        }
        self.check_safety();
    }

    /// What a store loop does once: persist and advance every group, install snapshots,
    /// apply committed entries, compact long logs, send messages.
    fn loop_iteration(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(store) = &mut node.store else {
            return;
        };
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
                        sm.applied
                            .push(u64::from_be_bytes(e.data[..].try_into().expect("8 bytes")));
                    }
                    sm.applied_index = e.index;
                }
            }
            messages.extend(out.messages);
        }
        // Long logs are compacted at the applied index (the machines here are durable);
        // a follower that needs one gets a snapshot of the state at exactly its index.
        for g in store.groups_with_long_logs(40, usize::MAX) {
            store
                .compact(g, node.machines[&g].applied_index)
                .expect("compact");
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
    crashes: usize,
    unsynced_lost: usize,
    splits: usize,
    syncs: u64,
    groups_persisted: u64,
    /// Every (group, term) → leader observed.
    leaders: BTreeMap<(GroupId, u64), u64>,
    /// Each group's final applied sequence.
    applied: Vec<Vec<u64>>,
}

fn run(seed: u64, size: u64, groups: u64) -> Exercised {
    let mut sim = Sim::new(seed, size, groups);
    for _ in 0..3000 {
        sim.step(true, true);
    }
    sim.heal();
    for _ in 0..600 {
        sim.step(false, false);
    }
    for &g in &sim.groups {
        let acknowledged: HashSet<u64> = sim
            .nodes
            .iter()
            .flat_map(|n| n.machines[&g].applied.iter().copied())
            .collect();
        let reference = &sim.nodes[0].machines[&g].applied;
        for n in &sim.nodes {
            assert_eq!(
                &n.machines[&g].applied, reference,
                "seed {seed} group {g}: node {} did not converge",
                n.id
            );
        }
        let final_set: HashSet<u64> = reference.iter().copied().collect();
        assert_eq!(
            final_set, acknowledged,
            "seed {seed} group {g}: an applied entry was lost"
        );
        assert!(
            reference.len() > 30,
            "seed {seed} group {g}: too little progress ({} entries)",
            reference.len()
        );
    }
    let mut ex = Exercised {
        snapshots: sim.snapshots_installed,
        crashes: sim.crashes,
        unsynced_lost: sim.unsynced_lost,
        splits: sim.splits,
        leaders: sim.leaders.clone(),
        applied: sim
            .groups
            .iter()
            .map(|g| sim.nodes[0].machines[g].applied.clone())
            .collect(),
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
        let ex = run(seed, 3, 4);
        total.snapshots += ex.snapshots;
        total.crashes += ex.crashes;
        total.unsynced_lost += ex.unsynced_lost;
        total.splits += ex.splits;
        total.syncs += ex.syncs;
        total.groups_persisted += ex.groups_persisted;
    }
    assert!(
        total.snapshots > 0 && total.crashes > 0 && total.splits > 0,
        "faults not exercised: {total:?}"
    );
    assert!(
        total.unsynced_lost > 0,
        "no crash lost an unsynced raft-log write"
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
