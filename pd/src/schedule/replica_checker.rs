//! The replica checker: for each partition with a known leader and no operator, at most one
//! repair, the most urgent first:
//!
//! 1. a learner left over (by a failed operator or a PD restart): promoted if the partition
//!    lacks healthy voters and the learner's node is fine, removed otherwise;
//! 2. fewer healthy voters than wanted (a voter on a dead node, on a node being removed, or
//!    a raised replica count): add one on the best node ([`super::target`]);
//! 3. more voters than wanted: remove one, preferring a dead node, then a node being
//!    removed, then the node holding the most replicas, then a follower;
//! 4. a replica left on a node that no replica counts a member any more: delete it.
//!
//! A voter is *healthy* when its node is neither dead (down beyond the grace period) nor
//! being removed. Adding comes before removing, so replacing a dead or drained replica
//! never lowers the number of healthy voters. A node down but within its grace period
//! keeps its replicas: nothing moves for a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::operator::{add_steps, Operator, OperatorKind, Step};
use super::{target, ClusterView, PartitionState};

/// The repairs needed, most urgent first, for partitions not in `busy` (group ids that
/// already have an operator).
pub fn check(view: &ClusterView, busy: &BTreeSet<u64>, now: Instant) -> Vec<Operator> {
    let mut counts = view.replica_counts();
    let mut found: Vec<(i64, Operator)> = Vec::new();
    for p in &view.partitions {
        if busy.contains(&p.group) || p.leader.is_none() {
            continue;
        }
        if let Some((urgency, op)) = repair(view, p, &mut counts, now) {
            found.push((urgency, op));
        }
    }
    found.sort_by_key(|(urgency, op)| (*urgency, op.group));
    found.into_iter().map(|(_, op)| op).collect()
}

fn repair(
    view: &ClusterView,
    p: &PartitionState,
    counts: &mut BTreeMap<u64, usize>,
    now: Instant,
) -> Option<(i64, Operator)> {
    let keeps = |n: u64| view.node(n).is_some_and(|n| n.keeps_replicas());
    let healthy: Vec<u64> = p.voters.iter().copied().filter(|v| keeps(*v)).collect();
    // Negative while under-replicated: the fewer healthy voters, the more urgent.
    let urgency = healthy.len() as i64 - p.replicator as i64;

    if let Some(&learner) = p.learners.first() {
        let usable = keeps(learner) && view.node(learner).is_some_and(|n| n.alive);
        let op = if healthy.len() < p.replicator && usable {
            Operator::new(
                OperatorKind::PromoteLearner,
                p,
                vec![
                    Step::HostJoiner { node: learner },
                    Step::Promote { node: learner },
                ],
                format!(
                    "{} of {} wanted voters are healthy and node {learner} is a learner",
                    healthy.len(),
                    p.replicator
                ),
                now,
            )
        } else {
            Operator::new(
                OperatorKind::RemoveLearner,
                p,
                vec![
                    Step::RemoveMember { node: learner },
                    Step::DeleteReplica { node: learner },
                ],
                format!("learner on node {learner} is not needed"),
                now,
            )
        };
        return Some((urgency, op));
    }

    if healthy.len() < p.replicator {
        let Some(to) = target::pick(view, p, counts) else {
            // No node can take a replica: at least clear what is left over, which may be
            // what blocks a node from taking one.
            return stale_cleanup(p, urgency, now);
        };
        *counts.entry(to).or_default() += 1;
        let unhealthy: Vec<String> = p
            .voters
            .iter()
            .filter(|v| !keeps(**v))
            .map(|v| match view.node(*v) {
                Some(n) if n.removing => format!("node {v} is being removed"),
                _ => format!("node {v} is dead"),
            })
            .collect();
        let why = if unhealthy.is_empty() {
            String::new()
        } else {
            format!(" ({})", unhealthy.join(", "))
        };
        return Some((
            urgency,
            Operator::new(
                OperatorKind::AddReplica,
                p,
                add_steps(to),
                format!(
                    "{} of {} wanted voters are healthy{why}",
                    healthy.len(),
                    p.replicator
                ),
                now,
            ),
        ));
    }

    if p.voters.len() > p.replicator {
        let dead = |n: u64| view.node(n).is_none_or(|n| n.dead);
        let down = |n: u64| view.node(n).is_none_or(|n| !n.alive);
        let removing = |n: u64| view.node(n).is_some_and(|n| n.removing);
        // Removing an alive voter while others are down could leave no alive majority:
        // down voters go first. Between equally loaded nodes a follower goes, so no
        // leadership has to move.
        let victim = p.voters.iter().copied().max_by_key(|v| {
            (
                dead(*v),
                down(*v),
                removing(*v),
                counts.get(v).copied().unwrap_or(0),
                p.leader != Some(*v),
                *v,
            )
        })?;
        *counts.entry(victim).or_default() -= 1;
        return Some((
            urgency,
            Operator::new(
                OperatorKind::RemoveReplica,
                p,
                vec![
                    Step::RemoveMember { node: victim },
                    Step::DeleteReplica { node: victim },
                ],
                format!(
                    "{} voters where {} are wanted",
                    p.voters.len(),
                    p.replicator
                ),
                now,
            ),
        ));
    }

    stale_cleanup(p, urgency, now)
}

fn stale_cleanup(p: &PartitionState, urgency: i64, now: Instant) -> Option<(i64, Operator)> {
    let stale = p.hosted_on.iter().copied().find(|n| p.is_stale(*n))?;
    Some((
        urgency,
        Operator::new(
            OperatorKind::DeleteStale,
            p,
            vec![Step::DeleteReplica { node: stale }],
            format!("node {stale} hosts a replica no member counts on"),
            now,
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::fake;

    fn only(view: &ClusterView) -> Operator {
        let mut ops = check(view, &BTreeSet::new(), Instant::now());
        assert_eq!(ops.len(), 1, "{ops:?}");
        ops.remove(0)
    }

    #[test]
    fn a_healthy_cluster_needs_nothing() {
        let view = fake::cluster(
            3,
            vec![
                fake::partition(1, &[1, 2, 3], 3),
                fake::partition(2, &[2, 3, 1], 3),
            ],
        );
        assert!(check(&view, &BTreeSet::new(), Instant::now()).is_empty());
    }

    #[test]
    fn a_dead_replica_is_replaced_then_removed() {
        let mut view = fake::cluster(4, vec![fake::partition(1, &[1, 2, 3], 3)]);
        // Down within the grace period: nothing moves.
        view.nodes.get_mut(&3).unwrap().alive = false;
        assert!(check(&view, &BTreeSet::new(), Instant::now()).is_empty());
        view.nodes.get_mut(&3).unwrap().dead = true;
        let op = only(&view);
        assert_eq!(op.kind, OperatorKind::AddReplica);
        assert_eq!(
            op.steps,
            vec![
                Step::AddLearner { node: 4 },
                Step::HostJoiner { node: 4 },
                Step::Promote { node: 4 }
            ]
        );
        assert!(op.reason.contains("node 3 is dead"), "{}", op.reason);
        // Once node 4 votes, the dead voter is the extra one.
        view.partitions[0].voters.push(4);
        let op = only(&view);
        assert_eq!(op.kind, OperatorKind::RemoveReplica);
        assert_eq!(op.steps[0], Step::RemoveMember { node: 3 });
        // A busy partition is left to its operator.
        assert!(check(&view, &BTreeSet::from([1]), Instant::now()).is_empty());
        // Without a leader nothing is decided.
        view.partitions[0].leader = None;
        assert!(check(&view, &BTreeSet::new(), Instant::now()).is_empty());
    }

    #[test]
    fn with_no_spare_node_a_dead_voter_stays() {
        let mut view = fake::cluster(3, vec![fake::partition(1, &[1, 2, 3], 3)]);
        view.nodes.get_mut(&3).unwrap().alive = false;
        view.nodes.get_mut(&3).unwrap().dead = true;
        assert!(check(&view, &BTreeSet::new(), Instant::now()).is_empty());
    }

    #[test]
    fn a_node_being_removed_is_drained_add_first() {
        let mut view = fake::cluster(4, vec![fake::partition(1, &[1, 2, 3], 3)]);
        view.nodes.get_mut(&1).unwrap().removing = true;
        let op = only(&view);
        assert_eq!(op.kind, OperatorKind::AddReplica);
        assert_eq!(op.steps[0], Step::AddLearner { node: 4 });
        assert!(op.reason.contains("node 1 is being removed"));
        view.partitions[0].voters.push(4);
        let op = only(&view);
        assert_eq!(op.steps[0], Step::RemoveMember { node: 1 });
    }

    #[test]
    fn replica_count_changes_grow_and_shrink_partitions() {
        let mut view = fake::cluster(3, vec![fake::partition(1, &[1, 2, 3], 3)]);
        view.partitions[0].replicator = 1;
        // Node 3 holds the most replicas (a second partition) and goes first.
        view.partitions.push(fake::partition(2, &[3], 1));
        let op = only(&view);
        assert_eq!(op.kind, OperatorKind::RemoveReplica);
        assert_eq!(op.steps[0], Step::RemoveMember { node: 3 });
        view.partitions[1].replicator = 2;
        let ops = check(&view, &BTreeSet::new(), Instant::now());
        assert_eq!(ops.len(), 2);
        // The under-replicated partition first.
        assert_eq!(ops[0].kind, OperatorKind::AddReplica);
        assert_eq!(ops[0].group, 2);
    }

    #[test]
    fn leftover_learners_are_promoted_when_needed_and_removed_otherwise() {
        let mut view = fake::cluster(4, vec![fake::partition(1, &[1, 2], 3)]);
        view.partitions[0].learners = vec![4];
        view.partitions[0].hosted_on.push(4);
        let op = only(&view);
        assert_eq!(op.kind, OperatorKind::PromoteLearner);
        view.partitions[0].replicator = 2;
        let op = only(&view);
        assert_eq!(op.kind, OperatorKind::RemoveLearner);
        assert_eq!(
            op.steps,
            vec![
                Step::RemoveMember { node: 4 },
                Step::DeleteReplica { node: 4 }
            ]
        );
    }

    #[test]
    fn stale_replicas_are_deleted_only_when_no_replica_counts_on_them() {
        let mut view = fake::cluster(4, vec![fake::partition(1, &[1, 2, 3], 3)]);
        view.partitions[0].hosted_on.push(4);
        // Node 4 still lists itself (it missed its removal): that does not count.
        view.partitions[0].hosted_replicas.insert(4, 4);
        view.partitions[0].member_views.push((4, vec![1, 2, 3, 4]));
        let op = only(&view);
        assert_eq!(op.kind, OperatorKind::DeleteStale);
        assert_eq!(op.steps, vec![Step::DeleteReplica { node: 4 }]);
        // Another replica still counts node 4 a member (the leader may lag behind a
        // membership change): nothing is deleted.
        view.partitions[0].member_views[1].1.push(4);
        assert!(check(&view, &BTreeSet::new(), Instant::now()).is_empty());
    }
}
