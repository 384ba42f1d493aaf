//! Simulated raft groups: several [`Peer`]s on an in-memory network with seeded fault
//! injection (message loss, delay, isolation of a replica, crash and restart from its
//! persisted log), checking raft's safety properties at every step and convergence at the
//! end.
//!
//! Faults come from a seeded RNG, so a failing seed names its fault schedule (raft-rs
//! randomises election timeouts with its own RNG, so timings can still vary between runs;
//! the checked properties must hold whatever they are). Properties checked:
//! - at most one leader per term;
//! - applied sequences are prefixes of one another (no replica applies a different entry at
//!   the same position), across crashes and snapshot installs;
//! - every entry any replica applied (a write a client would have seen succeed) is applied
//!   by every replica once the faults stop.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use raft::eraftpb::{Message, MessageType};

use super::log_store::GroupLog;
use super::peer::{Peer, RaftTiming};
use crate::engine::memory::MemoryEngine;
use crate::engine::{Engine, WriteBatch};

const GROUP: u64 = 42;

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// One simulated storage node hosting one replica of the group.
struct Node {
    id: u64,
    /// The raft-log engine: survives crashes.
    disk: MemoryEngine,
    /// None while crashed.
    peer: Option<Peer>,
    /// The state machine (durable, like a partition's data): applied proposal ids.
    applied: Vec<u64>,
    applied_index: u64,
}

impl Node {
    fn persist(&self, batch: WriteBatch) {
        self.disk.write(batch, true).expect("memory engine write");
    }

    fn start(&mut self, voters: &[u64]) {
        let log = match GroupLog::load(&self.disk, GROUP).expect("load log") {
            Some(log) => log,
            None => {
                let mut batch = WriteBatch::default();
                let log = GroupLog::new(GROUP, voters, &mut batch);
                self.persist(batch);
                log
            }
        };
        let timing = RaftTiming {
            election_ticks: 10,
            heartbeat_ticks: 2,
        };
        self.peer = Some(
            Peer::new(self.id, log, self.applied_index, timing, &logger()).expect("create peer"),
        );
    }

    fn install_snapshot(&mut self, index: u64, data: &[u8]) {
        self.applied = data
            .chunks(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect();
        self.applied_index = index;
    }
}

struct InFlight {
    deliver_at: u64,
    msg: Message,
}

struct Sim {
    rng: fastrand::Rng,
    nodes: Vec<Node>,
    net: Vec<InFlight>,
    now: u64,
    drop_per_mille: u32,
    max_delay: u64,
    /// (node, until step): isolated nodes send and receive nothing.
    isolated: Vec<(u64, u64)>,
    /// (node, restart at step): crashed nodes.
    crashed: Vec<(u64, u64)>,
    leaders: BTreeMap<u64, u64>,
    next_proposal: u64,
    /// How many times a replica caught up by installing a snapshot.
    snapshots_installed: usize,
    /// How many crashes were injected.
    crashes: usize,
}

impl Sim {
    fn new(seed: u64, size: u64) -> Sim {
        let voters: Vec<u64> = (1..=size).collect();
        let mut nodes: Vec<Node> = voters
            .iter()
            .map(|&id| Node {
                id,
                disk: MemoryEngine::new(),
                peer: None,
                applied: Vec::new(),
                applied_index: 0,
            })
            .collect();
        for n in &mut nodes {
            n.start(&voters);
        }
        Sim {
            rng: fastrand::Rng::with_seed(seed),
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

    /// Tells the sender of a snapshot whether it arrived, as a snapshot transport does.
    fn report_snapshot(&mut self, msg: &Message, delivered: bool) {
        if msg.get_msg_type() != MessageType::MsgSnapshot {
            return;
        }
        if let Some(p) = self
            .nodes
            .iter_mut()
            .find(|n| n.id == msg.from)
            .and_then(|n| n.peer.as_mut())
        {
            p.report_snapshot(msg.to, delivered);
        }
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for msg in msgs {
            if self.is_isolated(msg.from)
                || self.is_isolated(msg.to)
                || self.rng.u32(0..1000) < self.drop_per_mille
            {
                self.report_snapshot(&msg, false);
                continue;
            }
            let deliver_at = self.now + 1 + self.rng.u64(0..=self.max_delay);
            self.net.push(InFlight { deliver_at, msg });
        }
    }

    /// One step of simulated time: faults, ticks, deliveries, proposals, ready cycles.
    fn step(&mut self, faults: bool, propose: bool) {
        self.now += 1;
        if faults {
            self.inject_faults();
        }
        self.restart_due();
        for n in &mut self.nodes {
            if let Some(p) = &mut n.peer {
                p.tick();
            }
        }
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|m| m.deliver_at <= now);
        self.net = later;
        for m in due {
            let to = m.msg.to;
            let running =
                !self.is_isolated(to) && self.nodes.iter().any(|n| n.id == to && n.peer.is_some());
            self.report_snapshot(&m.msg, running);
            if !running {
                continue;
            }
            if let Some(p) = self
                .nodes
                .iter_mut()
                .find(|n| n.id == to)
                .and_then(|n| n.peer.as_mut())
            {
                let _ = p.step(m.msg);
            }
        }
        if propose && self.rng.u8(0..3) == 0 {
            if let Some(n) = self
                .nodes
                .iter_mut()
                .find(|n| n.peer.as_ref().is_some_and(Peer::is_leader))
            {
                let id = self.next_proposal;
                if n.peer
                    .as_mut()
                    .expect("leader is running")
                    .propose(id.to_be_bytes().to_vec())
                    .is_ok()
                {
                    self.next_proposal += 1;
                }
            }
        }
        for i in 0..self.nodes.len() {
            self.ready_cycle(i);
        }
        self.check_safety();
    }

    fn ready_cycle(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let Some(peer) = &mut node.peer else {
            return;
        };
        let mut batch = WriteBatch::default();
        let Some(ready) = peer.take_ready(&mut batch) else {
            return;
        };
        node.persist(batch);
        if let Some(snap) = &ready.snapshot {
            let index = snap.get_metadata().index;
            let data = snap.data.clone();
            node.install_snapshot(index, &data);
            self.snapshots_installed += 1;
        }
        let peer = node.peer.as_mut().expect("running");
        let after = peer.advance();
        for e in &after.committed {
            if e.index <= node.applied_index {
                continue;
            }
            assert_eq!(
                e.index,
                node.applied_index + 1,
                "node {} skipped an entry",
                node.id
            );
            if e.data.len() == 8 {
                node.applied
                    .push(u64::from_be_bytes(e.data[..].try_into().expect("8 bytes")));
            }
            node.applied_index = e.index;
        }
        peer.applied_to(node.applied_index);
        // Compact long logs so that lagging replicas must catch up by snapshot.
        // The snapshot's data must be the state at exactly the compaction index. Compact when
        // the log is long, or when a follower needs a snapshot we do not have (after a
        // restart only its metadata survives).
        if peer.log().len() > 40 || peer.log().take_snapshot_request() {
            let data = Bytes::from(
                node.applied
                    .iter()
                    .flat_map(|v| v.to_be_bytes())
                    .collect::<Vec<u8>>(),
            );
            let mut batch = WriteBatch::default();
            peer.compact_log(node.applied_index, data, &mut batch);
            node.persist(batch);
        }
        let mut out = ready.messages;
        out.extend(after.messages);
        self.send(out);
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
                node.peer = None;
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
        let (due, later): (Vec<_>, Vec<_>) = self.crashed.iter().partition(|&&(_, at)| at <= now);
        self.crashed = later;
        for (id, _) in due {
            let node = self.nodes.iter_mut().find(|n| n.id == id).expect("node");
            node.start(&voters);
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
            if let Some(p) = &n.peer {
                if p.is_leader() {
                    let previous = self.leaders.insert(p.term(), n.id);
                    assert!(
                        previous.is_none_or(|prev| prev == n.id),
                        "two leaders in term {}: {:?} and {}",
                        p.term(),
                        previous,
                        n.id
                    );
                }
            }
        }
        for a in &self.nodes {
            for b in &self.nodes {
                let common = a.applied.len().min(b.applied.len());
                assert_eq!(
                    a.applied[..common],
                    b.applied[..common],
                    "nodes {} and {} applied different entries",
                    a.id,
                    b.id
                );
            }
        }
    }
}

/// Runs one seed; returns (snapshots installed, crashes) so callers can check the faults
/// really happened.
fn run(seed: u64, size: u64) -> (usize, usize) {
    let mut sim = Sim::new(seed, size);
    for _ in 0..3000 {
        sim.step(true, true);
    }
    sim.heal();
    for _ in 0..600 {
        sim.step(false, false);
    }
    let acknowledged: HashSet<u64> = sim
        .nodes
        .iter()
        .flat_map(|n| n.applied.iter().copied())
        .collect();
    let reference = &sim.nodes[0].applied;
    for n in &sim.nodes {
        assert_eq!(
            &n.applied, reference,
            "seed {seed}: node {} did not converge",
            n.id
        );
    }
    let final_set: HashSet<u64> = reference.iter().copied().collect();
    assert_eq!(
        final_set, acknowledged,
        "seed {seed}: an applied entry was lost"
    );
    assert!(
        reference.len() > 50,
        "seed {seed}: too little progress ({} entries)",
        reference.len()
    );
    (sim.snapshots_installed, sim.crashes)
}

#[test]
fn three_replicas_stay_safe_and_converge_under_faults() {
    let (mut snapshots, mut crashes) = (0, 0);
    for seed in 0..12 {
        let (s, c) = run(seed, 3);
        snapshots += s;
        crashes += c;
    }
    assert!(
        snapshots > 0 && crashes > 0,
        "faults not exercised: {snapshots} snapshots, {crashes} crashes"
    );
}

#[test]
fn five_replicas_stay_safe_and_converge_under_faults() {
    for seed in 100..104 {
        let _ = run(seed, 5);
    }
}

#[test]
fn a_single_replica_group_commits_alone() {
    let mut sim = Sim::new(7, 1);
    for _ in 0..200 {
        sim.step(false, true);
    }
    assert!(sim.nodes[0].applied.len() > 20);
}
