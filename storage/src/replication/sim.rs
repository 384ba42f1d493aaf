//! Simulated multi-raft: several nodes, each a [`RaftStore`] hosting replicas of several
//! groups, on an in-memory network with seeded fault injection (message loss, delay,
//! isolation of a node, crash and restart of a node from its persisted raft log).
//!
//! Faults come from a seeded RNG, so a failing seed names its fault schedule (raft-rs
//! randomises election timeouts with its own RNG, so timings can still vary between runs;
//! the checked properties must hold whatever they are). Properties checked:
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

/// One simulated storage node.
struct Node {
    id: u64,
    /// The raft-log engine: survives crashes.
    disk: Arc<MemoryEngine>,
    /// None while crashed.
    store: Option<RaftStore>,
    machines: BTreeMap<GroupId, StateMachine>,
}

impl Node {
    fn start(&mut self, groups: &[GroupId], voters: &[u64]) {
        let timing = RaftTiming::default();
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
    /// (node, restart at step): crashed nodes.
    crashed: Vec<(u64, u64)>,
    /// (group, term) → leader.
    leaders: BTreeMap<(GroupId, u64), u64>,
    next_proposal: u64,
    snapshots_installed: usize,
    crashes: usize,
}

impl Sim {
    fn new(seed: u64, size: u64, groups: u64) -> Sim {
        let voters: Vec<u64> = (1..=size).collect();
        let groups: Vec<GroupId> = (1..=groups).collect();
        let mut nodes: Vec<Node> = voters
            .iter()
            .map(|&id| Node {
                id,
                disk: Arc::new(MemoryEngine::new()),
                store: None,
                machines: BTreeMap::new(),
            })
            .collect();
        for n in &mut nodes {
            n.start(&groups, &voters);
        }
        Sim {
            rng: fastrand::Rng::with_seed(seed),
            groups,
            nodes,
            net: Vec::new(),
            now: 0,
            drop_per_mille: 0,
            max_delay: 0,
            isolated: Vec::new(),
            crashed: Vec::new(),
            leaders: BTreeMap::new(),
            next_proposal: 1,
            snapshots_installed: 0,
            crashes: 0,
        }
    }

    fn voters(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn is_isolated(&self, id: u64) -> bool {
        self.isolated
            .iter()
            .any(|&(n, until)| n == id && until > self.now)
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
            let running = self.running(to);
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
                // Crash: volatile raft state and in-flight messages to it are lost.
                let node = self
                    .nodes
                    .iter_mut()
                    .find(|n| n.id == victim)
                    .expect("node");
                node.store = None;
                let at = self.now + self.rng.u64(10..150);
                self.crashed.push((victim, at));
                self.crashes += 1;
            }
            8..=12 => {
                self.drop_per_mille = self.rng.u32(0..300);
                self.max_delay = self.rng.u64(0..4);
            }
            _ => {}
        }
    }

    fn restart_due(&mut self) {
        let now = self.now;
        let voters = self.voters();
        let groups = self.groups.clone();
        let (due, later): (Vec<_>, Vec<_>) = self.crashed.iter().partition(|&&(_, at)| at <= now);
        self.crashed = later;
        for (id, _) in due {
            let node = self.nodes.iter_mut().find(|n| n.id == id).expect("node");
            node.start(&groups, &voters);
        }
    }

    fn heal(&mut self) {
        self.isolated.clear();
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

/// What a run exercised, so callers can check the faults really happened.
#[derive(Default)]
struct Exercised {
    snapshots: usize,
    crashes: usize,
    syncs: u64,
    groups_persisted: u64,
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
        total.syncs += ex.syncs;
        total.groups_persisted += ex.groups_persisted;
    }
    assert!(
        total.snapshots > 0 && total.crashes > 0,
        "faults not exercised"
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
    for seed in 100..103 {
        let _ = run(seed, 5, 2);
    }
}

#[test]
fn a_single_replica_group_commits_alone() {
    let mut sim = Sim::new(7, 1, 1);
    for _ in 0..200 {
        sim.step(false, true);
    }
    assert!(sim.nodes[0].machines[&1].applied.len() > 20);
}
