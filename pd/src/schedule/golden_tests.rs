//! Golden tests of whole scheduling runs: a fake cluster, the coordinator run round after
//! round, and fake storage nodes that carry out each command sent; every round's operators,
//! commands, waits and endings are written out as text and compared with the files in
//! `pd/tests/golden/schedule/`. A change in any rule shows as a diff of what PD would do.
//!
//! `ZANKV_BLESS=1 cargo test -p zankv-pd golden` rewrites the files; read the diff before
//! committing it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::coordinator::{self, Policy};
use super::{fake, ClusterView, NodeState, Operator, PartitionState, ScheduleLimits, Step};
use crate::command::NodeCommand;

/// Lag of a freshly hosted learner; halves every round (so promotion waits for a round).
const FRESH_LAG: u64 = 3000;

/// Storage nodes that do what they are told, at once, as a leader and its followers would,
/// and report it in the next round's view.
struct FakeNodes {
    view: ClusterView,
    next_replica: u64,
}

impl FakeNodes {
    fn new(view: ClusterView) -> FakeNodes {
        FakeNodes {
            view,
            next_replica: 100,
        }
    }

    fn alive(&self, node: u64) -> bool {
        self.view.node(node).is_some_and(|n| n.alive)
    }

    /// A node goes down past its grace period: it stops reporting.
    fn kill(&mut self, node: u64) {
        let n = self.view.nodes.get_mut(&node).unwrap();
        n.alive = false;
        n.dead = true;
        for p in &mut self.view.partitions {
            p.hosted_on.retain(|n| *n != node);
            p.hosted_replicas.remove(&node);
            p.member_views.retain(|(n, _)| *n != node);
            if p.leader == Some(node) {
                // The others elect the most caught-up alive voter (lowest id on a tie).
                p.leader = p.voters.iter().copied().find(|v| *v != node);
            }
        }
    }

    /// A new, empty node registers.
    fn join(&mut self, node: u64, dc_info: &str) {
        self.view.nodes.insert(
            node,
            NodeState {
                id: node,
                alive: true,
                dead: false,
                removing: false,
                dc_info: dc_info.into(),
                tags: vec![],
            },
        );
    }

    /// Carries out `command`; answers whether it changed anything (a command to a down
    /// node, or to a node that is not the leader, does nothing).
    fn apply(&mut self, command: &NodeCommand) -> &'static str {
        if !self.alive(command.node()) {
            return "node down";
        }
        let next_replica = &mut self.next_replica;
        let Some(p) = self
            .view
            .partitions
            .iter_mut()
            .find(|p| p.name == partition_of(command))
        else {
            return "no such partition";
        };
        let leads = |leader: u64| p.leader == Some(leader);
        let outcome = match command {
            NodeCommand::Host { node, replica, .. } => {
                let replica = replica.unwrap_or(*node);
                if p.hosted_replicas.contains_key(node) {
                    "unchanged"
                } else {
                    p.hosted_on.push(*node);
                    p.hosted_replicas.insert(*node, replica);
                    p.lag.insert(*node, FRESH_LAG);
                    "hosted"
                }
            }
            NodeCommand::AddLearner { leader, node, .. } if leads(*leader) => {
                if p.is_member(*node) {
                    "unchanged"
                } else {
                    *next_replica += 1;
                    p.learners.push(*node);
                    p.replica_of.insert(*node, *next_replica);
                    "added"
                }
            }
            NodeCommand::Promote { leader, node, .. } if leads(*leader) => {
                if p.learners.contains(node) && p.lag.get(node).is_some_and(|l| *l <= 1000) {
                    p.learners.retain(|n| n != node);
                    p.voters.push(*node);
                    "promoted"
                } else {
                    "refused"
                }
            }
            NodeCommand::TransferLeader { leader, to, .. } if leads(*leader) => {
                p.leader = Some(*to);
                "moved"
            }
            NodeCommand::RemoveMember { leader, node, .. } if leads(*leader) => {
                p.voters.retain(|n| n != node);
                p.learners.retain(|n| n != node);
                p.replica_of.remove(node);
                p.lag.remove(node);
                "removed"
            }
            NodeCommand::DeleteReplica { node, replica, .. } => {
                if p.hosted_replicas.get(node) == Some(replica) {
                    p.hosted_on.retain(|n| n != node);
                    p.hosted_replicas.remove(node);
                    p.member_views.retain(|(n, _)| n != node);
                    "deleted"
                } else {
                    "unchanged"
                }
            }
            _ => "not the leader",
        };
        p.known_voters = p.voters.clone();
        let members: Vec<u64> = p
            .voters
            .iter()
            .chain(&p.learners)
            .filter_map(|n| p.replica_of.get(n).copied())
            .collect();
        p.member_views = p.hosted_on.iter().map(|n| (*n, members.clone())).collect();
        outcome
    }

    /// Learners catch up between rounds.
    fn tick(&mut self) {
        for p in &mut self.view.partitions {
            for lag in p.lag.values_mut() {
                *lag /= 2;
            }
        }
    }
}

fn partition_of(command: &NodeCommand) -> &str {
    match command {
        NodeCommand::Host { partition, .. }
        | NodeCommand::AddLearner { partition, .. }
        | NodeCommand::Promote { partition, .. }
        | NodeCommand::TransferLeader { partition, .. }
        | NodeCommand::RemoveMember { partition, .. }
        | NodeCommand::DeleteReplica { partition, .. } => partition,
    }
}

fn step_text(step: &Step) -> String {
    match step {
        Step::HostJoiner { node } => format!("host_joiner({node})"),
        Step::AddLearner { node } => format!("add_learner({node})"),
        Step::Promote { node } => format!("promote({node})"),
        Step::TransferLeader { to } => format!("transfer_leader({to})"),
        Step::RemoveMember { node } => format!("remove_member({node})"),
        Step::DeleteReplica { node } => format!("delete_replica({node})"),
    }
}

fn operator_text(op: &Operator) -> String {
    let steps: Vec<String> = op.steps.iter().map(step_text).collect();
    format!(
        "{} {} [{}] because {}",
        op.kind.name(),
        op.partition,
        steps.join(" → "),
        op.reason
    )
}

fn list(ids: &[u64]) -> String {
    let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
    ids.join(",")
}

fn counts_text(counts: &BTreeMap<u64, usize>) -> String {
    let parts: Vec<String> = counts.iter().map(|(n, c)| format!("{n}:{c}")).collect();
    parts.join(" ")
}

fn layout(view: &ClusterView, out: &mut String) {
    for n in view.nodes.values() {
        let state = match (n.alive, n.dead, n.removing) {
            (_, _, true) => "removing",
            (true, _, _) => "alive",
            (false, true, _) => "dead",
            (false, false, _) => "down",
        };
        let dc = if n.dc_info.is_empty() {
            String::new()
        } else {
            format!(" dc={}", n.dc_info)
        };
        writeln!(out, "  node {} {state}{dc}", n.id).unwrap();
    }
    for p in &view.partitions {
        let mut hosted = p.hosted_on.clone();
        hosted.sort_unstable();
        writeln!(
            out,
            "  {} leader={} voters={} learners={} hosted={} (wants {})",
            p.name,
            p.leader.map_or("-".into(), |l| l.to_string()),
            list(&p.voters),
            list(&p.learners),
            list(&hosted),
            p.replicator
        )
        .unwrap();
    }
    writeln!(
        out,
        "  replicas per node {}",
        counts_text(&view.replica_counts())
    )
    .unwrap();
    writeln!(
        out,
        "  leaders per node  {}",
        counts_text(&view.leader_counts())
    )
    .unwrap();
}

/// One scenario: its rounds until nothing is left to do (or `max_rounds`), written out.
struct Run {
    nodes: FakeNodes,
    operators: BTreeMap<u64, Operator>,
    policy: Policy,
    now: Instant,
    round: usize,
    out: String,
}

impl Run {
    fn new(title: &str, view: ClusterView, policy: Policy) -> Run {
        let mut out = format!("# {title}\n");
        writeln!(
            out,
            "policy: max_operators={} balance={} paused={}",
            policy.max_operators,
            policy.balance,
            policy.paused.as_deref().unwrap_or("no")
        )
        .unwrap();
        Run {
            nodes: FakeNodes::new(view),
            operators: BTreeMap::new(),
            policy,
            now: Instant::now(),
            round: 0,
            out,
        }
    }

    fn note(&mut self, what: &str) {
        writeln!(self.out, "\n== {what}").unwrap();
        layout(&self.nodes.view, &mut self.out);
    }

    /// Rounds until one starts, sends and ends nothing with no operator left, or
    /// `max_rounds`. Answers how many rounds did something.
    fn settle(&mut self, max_rounds: usize) -> usize {
        let mut busy_rounds = 0;
        for _ in 0..max_rounds {
            self.round += 1;
            self.now += Duration::from_secs(1);
            let outcome = coordinator::run(
                &self.nodes.view,
                &mut self.operators,
                &self.policy,
                self.now,
            );
            let mut text = String::new();
            for op in &outcome.started {
                writeln!(text, "  start {}", operator_text(op)).unwrap();
            }
            for op in &outcome.finished {
                writeln!(text, "  finish {} {}", op.kind.name(), op.partition).unwrap();
            }
            for (op, why) in &outcome.failed {
                writeln!(text, "  fail {} {}: {why}", op.kind.name(), op.partition).unwrap();
            }
            for op in self.operators.values() {
                if let Some(why) = &op.waiting {
                    writeln!(text, "  wait {} {}: {why}", op.kind.name(), op.partition).unwrap();
                }
            }
            for command in &outcome.commands {
                let (method, path) = command.http();
                let result = self.nodes.apply(command);
                writeln!(
                    text,
                    "  node {}: {method} {path} → {result}",
                    command.node()
                )
                .unwrap();
            }
            self.nodes.tick();
            if text.is_empty() {
                if self.operators.is_empty() {
                    break;
                }
                continue;
            }
            busy_rounds += 1;
            writeln!(self.out, "round {}", self.round).unwrap();
            self.out.push_str(&text);
        }
        if !self.operators.is_empty() {
            writeln!(
                self.out,
                "(stopped after {max_rounds} rounds with operators left)"
            )
            .unwrap();
        }
        busy_rounds
    }

    /// Compares the text with `pd/tests/golden/schedule/<name>.txt` (or writes it when
    /// `ZANKV_BLESS` is set).
    fn check(self, name: &str) {
        let path: PathBuf = [
            env!("CARGO_MANIFEST_DIR"),
            "tests",
            "golden",
            "schedule",
            &format!("{name}.txt"),
        ]
        .iter()
        .collect();
        if std::env::var_os("ZANKV_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &self.out).unwrap();
            return;
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with ZANKV_BLESS=1 to write it)\n{}",
                path.display(),
                self.out
            )
        });
        if golden != self.out {
            let first = golden
                .lines()
                .zip(self.out.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| golden.lines().count().min(self.out.lines().count()));
            panic!(
                "{} differs from this run at line {} (ZANKV_BLESS=1 rewrites it):\n{}",
                path.display(),
                first + 1,
                self.out
            );
        }
    }
}

fn policy(max_operators: usize) -> Policy {
    Policy {
        max_operators,
        step_timeout: Duration::from_secs(30),
        limits: ScheduleLimits::default(),
        paused: None,
        balance: true,
    }
}

/// Partition `g` of `count` with three voters rotated over `nodes` nodes.
fn rotated(g: u64, nodes: u64, replicator: usize) -> PartitionState {
    let voters: Vec<u64> = (0..replicator as u64)
        .map(|i| (g + i - 1) % nodes + 1)
        .collect();
    fake::partition(g, &voters, replicator)
}

fn assert_balanced(view: &ClusterView) {
    let alive: Vec<u64> = view
        .nodes
        .values()
        .filter(|n| n.accepts_replicas())
        .map(|n| n.id)
        .collect();
    let counts = view.replica_counts();
    let on_alive: Vec<usize> = alive.iter().map(|n| counts[n]).collect();
    let (min, max) = (on_alive.iter().min(), on_alive.iter().max());
    assert!(
        max.unwrap() - min.unwrap() <= 1,
        "replicas {counts:?} over {alive:?}"
    );
}

#[test]
fn golden_a_dead_node_is_replaced_on_the_spare_node() {
    let parts = (1..=4).map(|g| fake::partition(g, &[1, 2, 3], 3)).collect();
    let mut run = Run::new(
        "node 3 dies; node 4 is spare",
        fake::cluster(4, parts),
        policy(2),
    );
    run.nodes.kill(3);
    run.note("node 3 dead past its grace period");
    run.settle(60);
    run.note("replaced; no balancing while node 3 is down and not removed");
    for p in &run.nodes.view.partitions {
        let mut voters = p.voters.clone();
        voters.sort_unstable();
        assert_eq!(voters, [1, 2, 4], "{}", p.name);
    }
    assert_eq!(run.nodes.view.leader_counts()[&1], 4);
    run.nodes.view.nodes.get_mut(&3).unwrap().removing = true;
    run.note("node 3 removed by the operator");
    run.settle(60);
    run.note("after: leaders balanced");
    let leaders = run.nodes.view.leader_counts();
    assert!([1, 2, 4].iter().all(|n| leaders[n] >= 1), "{leaders:?}");
    run.check("dead_node_replaced");
}

#[test]
fn golden_a_new_node_gets_replicas_then_leaders() {
    let parts = (1..=6).map(|g| rotated(g, 3, 3)).collect();
    let mut run = Run::new(
        "6 partitions × 3 on nodes 1-3; node 4 joins",
        fake::cluster(3, parts),
        policy(2),
    );
    run.nodes.join(4, "");
    run.note("node 4 joined, empty");
    run.settle(100);
    run.note("after");
    let view = &run.nodes.view;
    assert_balanced(view);
    let leaders = view.leader_counts();
    assert!(leaders.values().all(|c| (1..=2).contains(c)), "{leaders:?}");
    run.check("new_node_balanced");
}

#[test]
fn golden_a_removed_node_is_drained_leaders_first() {
    let parts = (1..=4).map(|g| rotated(g, 4, 3)).collect();
    let mut view = fake::cluster(4, parts);
    view.nodes.get_mut(&2).unwrap().removing = true;
    let mut run = Run::new("node 2 removed from 4 nodes", view, policy(4));
    run.note("node 2 being removed");
    run.settle(60);
    run.note("after");
    assert!(run
        .nodes
        .view
        .partitions
        .iter()
        .all(|p| { !p.is_member(2) && !p.hosted_on.contains(&2) && p.voters.len() == 3 }));
    run.check("removed_node_drained");
}

#[test]
fn golden_replica_counts_grow_and_shrink() {
    let parts = vec![
        fake::partition(1, &[1], 3),
        fake::partition(2, &[2, 3, 1], 1),
    ];
    let mut run = Run::new(
        "ns-1 raised from 1 to 3 replicas, ns-2 lowered from 3 to 1",
        fake::cluster(3, parts),
        policy(4),
    );
    run.note("before");
    run.settle(60);
    run.note("after");
    let view = &run.nodes.view;
    assert_eq!(view.partitions[0].voters.len(), 3);
    assert_eq!(view.partitions[1].voters.len(), 1);
    assert_eq!(view.partitions[1].hosted_on.len(), 1);
    run.check("replica_counts_changed");
}

#[test]
fn golden_replicas_spread_over_data_centers() {
    let parts = (1..=2).map(|g| fake::partition(g, &[1, 2, 3], 3)).collect();
    let mut view = fake::cluster(3, parts);
    for (id, dc) in [(1, "a"), (2, "a"), (3, "b")] {
        view.nodes.get_mut(&id).unwrap().dc_info = dc.into();
    }
    let mut run = Run::new(
        "node 2 (dc a) dies; spare nodes 4 (dc a) and 5 (dc c)",
        view,
        policy(1),
    );
    run.nodes.join(4, "a");
    run.nodes.join(5, "c");
    run.nodes.kill(2);
    run.note("before");
    run.settle(60);
    run.note("after");
    for p in &run.nodes.view.partitions {
        assert!(p.voters.contains(&5), "dc c is covered first: {p:?}");
    }
    run.check("data_centers");
}

#[test]
fn golden_an_operator_whose_target_dies_fails_and_the_repair_goes_elsewhere() {
    let parts = vec![fake::partition(1, &[1, 2, 3], 3)];
    let mut run = Run::new(
        "node 3 dies; the replacement on node 4 dies half-way; node 5 is spare",
        fake::cluster(5, parts),
        policy(1),
    );
    // Node 5 is heavier, so node 4 is chosen first.
    run.nodes.view.partitions.push(fake::partition(2, &[5], 1));
    run.nodes.kill(3);
    run.note("before");
    run.settle(2);
    run.nodes.kill(4);
    run.note("node 4 dies");
    run.settle(60);
    run.note("after");
    let mut voters = run.nodes.view.partitions[0].voters.clone();
    voters.sort_unstable();
    assert_eq!(voters, [1, 2, 5]);
    run.check("target_dies");
}

#[test]
fn golden_nothing_starts_while_paused_and_balancing_off_only_repairs() {
    let parts = (1..=3).map(|g| fake::partition(g, &[1, 2, 3], 3)).collect();
    let mut p = policy(4);
    p.paused = Some("a rolling upgrade is in progress".into());
    let mut run = Run::new(
        "node 3 dead, nodes 4 and 5 spare, scheduling paused",
        fake::cluster(5, parts),
        p,
    );
    run.nodes.kill(3);
    run.note("before");
    assert_eq!(run.settle(5), 0, "paused: nothing happens");
    run.policy.paused = None;
    run.policy.balance = false;
    run.note("resumed with balancing off");
    run.settle(60);
    run.nodes.view.nodes.get_mut(&3).unwrap().removing = true;
    run.note("repaired; node 3 removed by the operator; balancing still off");
    assert_eq!(run.settle(5), 0, "balancing off: nothing happens");
    assert_eq!(run.nodes.view.leader_counts()[&1], 3);
    run.policy.balance = true;
    run.note("balancing on");
    run.settle(60);
    run.note("after");
    let leaders = run.nodes.view.leader_counts();
    assert!(leaders.values().all(|c| *c <= 1), "{leaders:?}");
    run.check("paused_then_repair_only");
}
