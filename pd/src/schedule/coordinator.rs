//! One scheduling round: advance the running operators, then (unless scheduling is paused)
//! let the checkers and, when nothing needs repair, the balancers add operators up to the
//! limit, and answer the commands to send now.
//!
//! Pure: the caller passes the view, the operators it keeps between rounds, the policy and
//! the time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::operator::Progress;
use super::{leader_balance, leader_checker, replica_balance, replica_checker};
use super::{ClusterView, Operator, ScheduleLimits};
use crate::command::NodeCommand;

/// What a round may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Most operators running at once.
    pub max_operators: usize,
    /// A step not done within this fails its operator.
    pub step_timeout: Duration,
    /// Thresholds.
    pub limits: ScheduleLimits,
    /// Why no new operator may start (running ones go on), if that is so.
    pub paused: Option<String>,
    /// Whether balancing is on this round (enabled and in its window). It starts
    /// operators only while every node is up or being removed and every partition's
    /// leader is known (counts mean little otherwise), and nothing needs repair.
    pub balance: bool,
}

/// What a round did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Commands to send (the caller skips those already in flight).
    pub commands: Vec<NodeCommand>,
    /// Operators started this round.
    pub started: Vec<Operator>,
    /// Operators that finished.
    pub finished: Vec<Operator>,
    /// Operators that failed, with why.
    pub failed: Vec<(Operator, String)>,
}

/// Runs one round over `operators` (keyed by raft group).
pub fn run(
    view: &ClusterView,
    operators: &mut BTreeMap<u64, Operator>,
    policy: &Policy,
    now: Instant,
) -> Outcome {
    let mut out = Outcome::default();
    advance(view, operators, policy, now, &mut out);
    if policy.paused.is_some() {
        return out;
    }
    let busy: BTreeSet<u64> = operators.keys().copied().collect();
    let mut repairs = replica_checker::check(view, &busy, now);
    let busy_after: BTreeSet<u64> = busy
        .iter()
        .copied()
        .chain(repairs.iter().map(|o| o.group))
        .collect();
    repairs.extend(leader_checker::check(view, &busy_after, now));
    let needed_repair = !repairs.is_empty() || !busy.is_empty();
    let mut new_ops = repairs;
    if policy.balance && !needed_repair && balance_can_trust(view) {
        new_ops.extend(replica_balance::schedule(view, &busy, &policy.limits, now));
        if new_ops.is_empty() {
            let room = policy.max_operators.saturating_sub(operators.len());
            new_ops.extend(leader_balance::schedule(
                view,
                &busy,
                &policy.limits,
                now,
                room,
            ));
        }
    }
    for mut op in new_ops {
        if operators.len() >= policy.max_operators {
            break;
        }
        if operators.contains_key(&op.group) {
            continue;
        }
        // Its first command goes out this round too.
        match op.progress(view, &policy.limits, policy.step_timeout, now) {
            Progress::Finished => continue,
            Progress::Failed(why) => {
                out.failed.push((op, why));
                continue;
            }
            Progress::Act(command) => out.commands.push(command),
            Progress::Wait(_) => {}
        }
        out.started.push(op.clone());
        operators.insert(op.group, op);
    }
    out
}

/// Whether replica and leader counts are meaningful: every node is up (or leaving on
/// purpose) and every partition's membership is known from its leader.
fn balance_can_trust(view: &ClusterView) -> bool {
    view.nodes.values().all(|n| n.alive || n.removing)
        && view.partitions.iter().all(|p| p.leader.is_some())
}

fn advance(
    view: &ClusterView,
    operators: &mut BTreeMap<u64, Operator>,
    policy: &Policy,
    now: Instant,
    out: &mut Outcome,
) {
    let mut ended = Vec::new();
    for (group, op) in operators.iter_mut() {
        match op.progress(view, &policy.limits, policy.step_timeout, now) {
            Progress::Finished => {
                out.finished.push(op.clone());
                ended.push(*group);
            }
            Progress::Failed(why) => {
                out.failed.push((op.clone(), why));
                ended.push(*group);
            }
            Progress::Act(command) => out.commands.push(command),
            Progress::Wait(_) => {}
        }
    }
    for g in ended {
        operators.remove(&g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{fake, OperatorKind};

    fn policy() -> Policy {
        Policy {
            max_operators: 2,
            step_timeout: Duration::from_secs(60),
            limits: ScheduleLimits::default(),
            paused: None,
            balance: true,
        }
    }

    #[test]
    fn repairs_start_within_the_limit_and_send_their_first_command() {
        let parts = (1..=3).map(|g| fake::partition(g, &[1, 2, 3], 3)).collect();
        let mut view = fake::cluster(4, parts);
        view.nodes.get_mut(&3).unwrap().alive = false;
        view.nodes.get_mut(&3).unwrap().dead = true;
        let mut ops = BTreeMap::new();
        let now = Instant::now();
        let out = run(&view, &mut ops, &policy(), now);
        assert_eq!(out.started.len(), 2, "the limit holds");
        assert_eq!(ops.len(), 2);
        assert_eq!(out.commands.len(), 2);
        assert!(out
            .commands
            .iter()
            .all(|c| matches!(c, NodeCommand::AddLearner { node: 4, .. })));
        // A second round re-sends the same commands and starts nothing new.
        let again = run(&view, &mut ops, &policy(), now);
        assert!(again.started.is_empty());
        assert_eq!(again.commands, out.commands);
    }

    #[test]
    fn a_pause_stops_new_operators_but_not_running_ones() {
        let parts = (1..=2).map(|g| fake::partition(g, &[1, 2, 3], 3)).collect();
        let mut view = fake::cluster(4, parts);
        view.nodes.get_mut(&3).unwrap().dead = true;
        let mut ops = BTreeMap::new();
        let now = Instant::now();
        let mut p = policy();
        p.max_operators = 1;
        run(&view, &mut ops, &p, now);
        assert_eq!(ops.len(), 1);
        p.paused = Some("upgrade".into());
        p.max_operators = 5;
        let out = run(&view, &mut ops, &p, now);
        assert!(out.started.is_empty());
        assert_eq!(out.commands.len(), 1, "the running operator goes on");
    }

    #[test]
    fn balancing_waits_for_repairs_and_operators_end_when_done() {
        let rings = [[1, 2, 3], [2, 3, 1], [3, 1, 2]];
        let parts = (1..=3)
            .map(|g| fake::partition(g, &rings[g as usize - 1], 3))
            .collect();
        let mut view = fake::cluster(4, parts);
        let mut ops = BTreeMap::new();
        let now = Instant::now();
        let mut p = policy();
        p.balance = false;
        assert!(run(&view, &mut ops, &p, now).started.is_empty());
        p.balance = true;
        let out = run(&view, &mut ops, &p, now);
        assert_eq!(out.started.len(), 1);
        assert_eq!(out.started[0].kind, OperatorKind::MoveReplica);
        let group = out.started[0].group;
        // The whole move shows as done at once: the operator ends.
        let part = view
            .partitions
            .iter_mut()
            .find(|x| x.group == group)
            .unwrap();
        let from = match out.started[0].steps[3] {
            crate::schedule::Step::RemoveMember { node } => node,
            _ => unreachable!(),
        };
        part.voters.retain(|v| *v != from);
        part.voters.push(4);
        part.hosted_on.retain(|v| *v != from);
        part.hosted_on.push(4);
        part.hosted_replicas.remove(&from);
        part.hosted_replicas.insert(4, 4);
        part.replica_of.remove(&from);
        part.replica_of.insert(4, 4);
        let out = run(&view, &mut ops, &p, now);
        assert_eq!(out.finished.len(), 1);
        assert!(!ops.contains_key(&group));
    }
}
