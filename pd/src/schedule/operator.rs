//! Operators: one partition's placement change as ordered steps, each executed by an admin
//! call to a storage node and done when the reports show it.
//!
//! A new replica is added as a learner first (the leader gives it a fresh replica id),
//! then hosted on its node with exactly that id, then promoted once caught up: a replica
//! never receives messages meant for an earlier incarnation on the same node.
//!
//! [`Operator::progress`] is level-triggered: given the current [`ClusterView`] it skips
//! every step that already shows as done, then answers the command for the first step that
//! does not (or why it waits, or why the operator failed). The same call made again after a
//! lost answer gives the same command, so the caller may re-send it freely.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{ClusterView, PartitionState, ScheduleLimits};
use crate::command::NodeCommand;

/// Why an operator exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorKind {
    /// Give an under-replicated partition one more voter.
    AddReplica,
    /// Take a voter away (dead, on a node being removed, extra, or asked for).
    RemoveReplica,
    /// Promote a learner left over that the partition needs.
    PromoteLearner,
    /// Remove a learner nobody needs.
    RemoveLearner,
    /// Delete a replica left on a node that is no longer a member.
    DeleteStale,
    /// Move a replica from a loaded node to a lighter one (balance).
    MoveReplica,
    /// Move leadership (balance, or off a node being removed).
    TransferLeader,
}

impl OperatorKind {
    /// Its name in metrics and in the API.
    pub fn name(self) -> &'static str {
        match self {
            OperatorKind::AddReplica => "add_replica",
            OperatorKind::RemoveReplica => "remove_replica",
            OperatorKind::PromoteLearner => "promote_learner",
            OperatorKind::RemoveLearner => "remove_learner",
            OperatorKind::DeleteStale => "delete_stale",
            OperatorKind::MoveReplica => "move_replica",
            OperatorKind::TransferLeader => "transfer_leader",
        }
    }
}

/// One step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum Step {
    /// Host, on `node`, an empty joiner with the replica id the leader gave the node's
    /// learner (deleting another incarnation found there first).
    HostJoiner {
        /// The node.
        node: u64,
    },
    /// Add `node` as a learner.
    AddLearner {
        /// The node.
        node: u64,
    },
    /// Promote learner `node` once it has caught up.
    Promote {
        /// The node.
        node: u64,
    },
    /// Move leadership to voter `to`.
    TransferLeader {
        /// The next leader.
        to: u64,
    },
    /// Remove `node`'s replica from the group (moving leadership away first if it leads).
    RemoveMember {
        /// The node.
        node: u64,
    },
    /// Delete the replica left on `node` (done at once if the node is down: the stale
    /// replica check deletes it when the node returns).
    DeleteReplica {
        /// The node.
        node: u64,
    },
}

/// What an operator needs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Every step is done.
    Finished,
    /// Send this.
    Act(NodeCommand),
    /// Nothing to send yet (the text says what it waits for).
    Wait(String),
    /// It cannot finish (the text says why); drop it. What it did stays, and the checkers
    /// clean up after it.
    Failed(String),
}

/// A placement change in progress.
#[derive(Debug, Clone, Serialize)]
pub struct Operator {
    /// Why.
    pub kind: OperatorKind,
    /// `<namespace>-<partition>`.
    pub partition: String,
    /// Its raft group.
    pub group: u64,
    /// What made a checker or scheduler create it.
    pub reason: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Index of the first step not known done.
    pub at: usize,
    /// What it waits for, if it waits.
    pub waiting: Option<String>,
    #[serde(skip)]
    started: Instant,
    #[serde(skip)]
    step_started: Instant,
}

impl Operator {
    /// An operator for `partition` starting at `now`.
    pub fn new(
        kind: OperatorKind,
        partition: &PartitionState,
        steps: Vec<Step>,
        reason: impl Into<String>,
        now: Instant,
    ) -> Operator {
        Operator {
            kind,
            partition: partition.name.clone(),
            group: partition.group,
            reason: reason.into(),
            steps,
            at: 0,
            waiting: None,
            started: now,
            step_started: now,
        }
    }

    /// How long it has been running.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// Advances past the steps that show as done and answers what the next one needs. A
    /// step that has not shown as done within `step_timeout` fails the operator.
    pub fn progress(
        &mut self,
        view: &ClusterView,
        limits: &ScheduleLimits,
        step_timeout: Duration,
        now: Instant,
    ) -> Progress {
        let Some(p) = view.partitions.iter().find(|p| p.group == self.group) else {
            return Progress::Failed("the partition no longer exists".into());
        };
        while let Some(step) = self.steps.get(self.at) {
            if !done(step, p) {
                break;
            }
            self.at += 1;
            self.step_started = now;
        }
        let Some(step) = self.steps.get(self.at).copied() else {
            return Progress::Finished;
        };
        if now.saturating_duration_since(self.step_started) > step_timeout {
            return Progress::Failed(format!(
                "step {step:?} did not show as done within {step_timeout:?}"
            ));
        }
        let progress = self.act(step, p, view, limits);
        self.waiting = match &progress {
            Progress::Wait(why) => Some(why.clone()),
            _ => None,
        };
        progress
    }

    fn act(
        &self,
        step: Step,
        p: &PartitionState,
        view: &ClusterView,
        limits: &ScheduleLimits,
    ) -> Progress {
        let partition = self.partition.clone();
        let alive = |n: u64| view.node(n).is_some_and(|n| n.alive);
        if let Step::HostJoiner { node } = step {
            if !alive(node) {
                return Progress::Failed(format!("node {node} is down"));
            }
            let Some(&replica) = p.replica_of.get(&node) else {
                return Progress::Wait(format!("node {node} is not a member yet"));
            };
            return match p.hosted_replicas.get(&node) {
                // Another incarnation is in the way: it goes first.
                Some(&other) if other != replica => Progress::Act(NodeCommand::DeleteReplica {
                    node,
                    partition,
                    replica: other,
                }),
                _ => Progress::Act(NodeCommand::Host {
                    node,
                    partition,
                    replica: Some(replica),
                }),
            };
        }
        if let Step::DeleteReplica { node } = step {
            // Not done means the node reports a replica; that one goes.
            let replica = p.hosted_replicas.get(&node).copied().unwrap_or(node);
            return Progress::Act(NodeCommand::DeleteReplica {
                node,
                partition,
                replica,
            });
        }
        let Some(leader) = p.leader else {
            return Progress::Wait("no leader is known".into());
        };
        match step {
            Step::AddLearner { node } if !alive(node) => {
                Progress::Failed(format!("node {node} is down"))
            }
            Step::AddLearner { node } => Progress::Act(NodeCommand::AddLearner {
                leader,
                partition,
                node,
            }),
            Step::Promote { node } if !alive(node) => {
                Progress::Failed(format!("node {node} is down"))
            }
            Step::Promote { node } => match p.lag.get(&node) {
                Some(lag) if *lag <= limits.promote_lag => Progress::Act(NodeCommand::Promote {
                    leader,
                    partition,
                    node,
                }),
                Some(lag) => Progress::Wait(format!(
                    "learner on node {node} is {lag} entries behind the leader"
                )),
                None => Progress::Wait(format!("the leader reports no progress of node {node}")),
            },
            Step::TransferLeader { to } if !p.voters.contains(&to) || !alive(to) => {
                Progress::Failed(format!("node {to} is not an alive voter"))
            }
            Step::TransferLeader { to } => Progress::Act(NodeCommand::TransferLeader {
                leader,
                partition,
                to,
            }),
            Step::RemoveMember { node } if node == leader => {
                // A leader cannot remove itself: move leadership to the most caught-up
                // other alive voter first.
                match p
                    .voters
                    .iter()
                    .filter(|v| **v != node && alive(**v))
                    .min_by_key(|v| (p.lag.get(v).copied().unwrap_or(u64::MAX), **v))
                {
                    Some(&to) => Progress::Act(NodeCommand::TransferLeader {
                        leader,
                        partition,
                        to,
                    }),
                    None => Progress::Failed(format!(
                        "node {node} leads and no other alive voter can take over"
                    )),
                }
            }
            Step::RemoveMember { node } => {
                // The voters left must still have an alive majority, or the partition would
                // stop until nodes come back.
                let left: Vec<u64> = p.voters.iter().copied().filter(|v| *v != node).collect();
                let alive_left = left.iter().filter(|v| alive(**v)).count();
                if p.voters.contains(&node) && alive_left <= left.len() / 2 {
                    return Progress::Wait(format!(
                        "removing node {node} would leave {alive_left} of {} voters alive",
                        left.len()
                    ));
                }
                Progress::Act(NodeCommand::RemoveMember {
                    leader,
                    partition,
                    node,
                })
            }
            Step::HostJoiner { .. } | Step::DeleteReplica { .. } => {
                unreachable!("handled above")
            }
        }
    }

    /// The nodes this operator adds a replica to (so checkers leave those replicas alone).
    pub fn adds(&self) -> Vec<u64> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::HostJoiner { node } => Some(*node),
                _ => None,
            })
            .collect()
    }
}

/// Whether the reports show `step` done.
fn done(step: &Step, p: &PartitionState) -> bool {
    match *step {
        Step::HostJoiner { node } => p.hosts_member(node),
        Step::AddLearner { node } => p.is_member(node),
        Step::Promote { node } => p.voters.contains(&node),
        Step::TransferLeader { to } => p.leader == Some(to),
        // Only the leader's view counts: without a leader nothing is known to be done.
        Step::RemoveMember { node } => p.leader.is_some() && !p.is_member(node),
        // Reports come from alive nodes only, so a replica on a down node counts as gone.
        Step::DeleteReplica { node } => !p.hosted_on.contains(&node),
    }
}

/// The steps that add a voter on `to`: learner, hosted, promoted once caught up.
pub fn add_steps(to: u64) -> Vec<Step> {
    vec![
        Step::AddLearner { node: to },
        Step::HostJoiner { node: to },
        Step::Promote { node: to },
    ]
}

/// The steps that move a partition's replica from `from` to `to`: add before remove.
pub fn move_steps(from: u64, to: u64) -> Vec<Step> {
    vec![
        Step::AddLearner { node: to },
        Step::HostJoiner { node: to },
        Step::Promote { node: to },
        Step::RemoveMember { node: from },
        Step::DeleteReplica { node: from },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::fake;

    fn run(op: &mut Operator, view: &ClusterView, now: Instant) -> Progress {
        op.progress(
            view,
            &ScheduleLimits::default(),
            Duration::from_secs(60),
            now,
        )
    }

    #[test]
    fn a_move_walks_its_steps_as_the_reports_show_them_done() {
        let t0 = Instant::now();
        let mut view = fake::cluster(4, vec![fake::partition(1, &[1, 2, 3], 3)]);
        let mut op = Operator::new(
            OperatorKind::MoveReplica,
            &view.partitions[0],
            move_steps(3, 4),
            "balance",
            t0,
        );
        let partition = || "ns-1".to_string();
        let add = Progress::Act(NodeCommand::AddLearner {
            leader: 1,
            partition: partition(),
            node: 4,
        });
        assert_eq!(run(&mut op, &view, t0), add);
        // Asked again before anything changed: the same command (re-sending is safe).
        assert_eq!(run(&mut op, &view, t0), add);
        let r4 = 4 | (20 << 32);
        view.partitions[0].learners.push(4);
        view.partitions[0].replica_of.insert(4, r4);
        view.partitions[0].lag.insert(4, 50_000);
        assert_eq!(
            run(&mut op, &view, t0),
            Progress::Act(NodeCommand::Host {
                node: 4,
                partition: partition(),
                replica: Some(r4)
            })
        );
        // An earlier incarnation on node 4 is deleted first.
        view.partitions[0].hosted_on.push(4);
        view.partitions[0].hosted_replicas.insert(4, 4);
        assert_eq!(
            run(&mut op, &view, t0),
            Progress::Act(NodeCommand::DeleteReplica {
                node: 4,
                partition: partition(),
                replica: 4
            })
        );
        view.partitions[0].hosted_replicas.insert(4, r4);
        assert!(
            matches!(run(&mut op, &view, t0), Progress::Wait(w) if w.contains("50000 entries behind"))
        );
        assert!(op.waiting.is_some());
        view.partitions[0].lag.insert(4, 10);
        assert_eq!(
            run(&mut op, &view, t0),
            Progress::Act(NodeCommand::Promote {
                leader: 1,
                partition: partition(),
                node: 4
            })
        );
        view.partitions[0].learners.clear();
        view.partitions[0].voters.push(4);
        assert_eq!(
            run(&mut op, &view, t0),
            Progress::Act(NodeCommand::RemoveMember {
                leader: 1,
                partition: partition(),
                node: 3
            })
        );
        view.partitions[0].voters.retain(|v| *v != 3);
        view.partitions[0].replica_of.remove(&3);
        assert_eq!(
            run(&mut op, &view, t0),
            Progress::Act(NodeCommand::DeleteReplica {
                node: 3,
                partition: partition(),
                replica: 3
            })
        );
        view.partitions[0].hosted_on.retain(|v| *v != 3);
        view.partitions[0].hosted_replicas.remove(&3);
        assert_eq!(run(&mut op, &view, t0), Progress::Finished);
    }

    #[test]
    fn a_leader_is_moved_away_before_it_is_removed() {
        let t0 = Instant::now();
        let mut view = fake::cluster(3, vec![fake::partition(1, &[1, 2, 3], 3)]);
        view.partitions[0].lag.insert(2, 7);
        view.partitions[0].lag.insert(3, 2);
        let mut op = Operator::new(
            OperatorKind::RemoveReplica,
            &view.partitions[0],
            vec![Step::RemoveMember { node: 1 }],
            "extra",
            t0,
        );
        assert_eq!(
            run(&mut op, &view, t0),
            Progress::Act(NodeCommand::TransferLeader {
                leader: 1,
                partition: "ns-1".into(),
                to: 3
            }),
            "to the most caught-up voter"
        );
        view.partitions[0].leader = None;
        assert_eq!(
            run(&mut op, &view, t0),
            Progress::Wait("no leader is known".into()),
            "nothing counts as removed without a leader"
        );
        view.partitions[0].leader = Some(3);
        assert_eq!(
            run(&mut op, &view, t0),
            Progress::Act(NodeCommand::RemoveMember {
                leader: 3,
                partition: "ns-1".into(),
                node: 1
            })
        );
    }

    #[test]
    fn a_removal_waits_while_it_would_leave_no_alive_majority() {
        let t0 = Instant::now();
        let mut view = fake::cluster(5, vec![fake::partition(1, &[1, 2, 3, 4, 5], 3)]);
        // Nodes 4 and 5 are rebooting (down, not dead).
        view.nodes.get_mut(&4).unwrap().alive = false;
        view.nodes.get_mut(&5).unwrap().alive = false;
        let mut op = Operator::new(
            OperatorKind::RemoveReplica,
            &view.partitions[0],
            vec![Step::RemoveMember { node: 2 }],
            "extra",
            t0,
        );
        assert!(
            matches!(run(&mut op, &view, t0), Progress::Wait(w) if w.contains("2 of 4 voters alive"))
        );
        view.nodes.get_mut(&4).unwrap().alive = true;
        assert!(matches!(
            run(&mut op, &view, t0),
            Progress::Act(NodeCommand::RemoveMember { node: 2, .. })
        ));
    }

    #[test]
    fn operators_fail_on_timeouts_down_targets_and_vanished_partitions() {
        let t0 = Instant::now();
        let mut view = fake::cluster(4, vec![fake::partition(1, &[1, 2, 3], 3)]);
        let mut op = Operator::new(
            OperatorKind::AddReplica,
            &view.partitions[0],
            add_steps(4),
            "under-replicated",
            t0,
        );
        assert!(matches!(run(&mut op, &view, t0), Progress::Act(_)));
        let late = t0 + Duration::from_secs(61);
        assert!(
            matches!(run(&mut op, &view, late), Progress::Failed(w) if w.contains("did not show as done"))
        );
        let mut op = Operator::new(
            OperatorKind::AddReplica,
            &view.partitions[0],
            add_steps(4),
            "under-replicated",
            t0,
        );
        view.nodes.get_mut(&4).unwrap().alive = false;
        assert_eq!(
            run(&mut op, &view, t0),
            Progress::Failed("node 4 is down".into())
        );
        view.partitions.clear();
        assert!(matches!(run(&mut op, &view, t0), Progress::Failed(_)));
    }
}
