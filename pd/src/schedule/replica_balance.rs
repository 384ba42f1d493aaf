//! The replica balancer: when the most loaded node holds more than `replica_spread` replicas
//! more than the least loaded one, move one replica between them (add on the light node,
//! then remove from the heavy one).
//!
//! Only nodes that accept replicas take part. A partition moves only if it is complete
//! (as many voters as wanted, no learner), its leader is known, the light node may hold it
//! (tags) and the move covers at least as many data centers as before; partitions the
//! heavy node does not lead go first, so a move rarely changes a leader. One move per
//! call: the caller calls again once it is done.

use std::collections::BTreeSet;
use std::time::Instant;

use super::operator::{move_steps, Operator, OperatorKind};
use super::{ClusterView, PartitionState, ScheduleLimits};

/// The one move that most evens out replica counts, if any is needed and possible.
pub fn schedule(
    view: &ClusterView,
    busy: &BTreeSet<u64>,
    limits: &ScheduleLimits,
    now: Instant,
) -> Option<Operator> {
    let counts = view.replica_counts();
    let eligible = view.accepting_by_count(&counts);
    for &(heavy_count, heavy) in eligible.iter().rev() {
        for &(light_count, light) in &eligible {
            if heavy_count <= light_count + limits.replica_spread {
                break;
            }
            if let Some(p) = movable(view, busy, heavy, light) {
                return Some(Operator::new(
                    OperatorKind::MoveReplica,
                    p,
                    move_steps(heavy, light),
                    format!(
                        "node {heavy} holds {heavy_count} replicas and node {light} {light_count}"
                    ),
                    now,
                ));
            }
        }
    }
    None
}

fn movable<'a>(
    view: &'a ClusterView,
    busy: &BTreeSet<u64>,
    from: u64,
    to: u64,
) -> Option<&'a PartitionState> {
    let target = view.node(to)?;
    let dcs = |voters: &mut dyn Iterator<Item = u64>| -> usize {
        let mut set: Vec<&str> = voters
            .filter_map(|v| view.node(v))
            .map(|n| n.dc_info.as_str())
            .collect();
        set.sort_unstable();
        set.dedup();
        set.len()
    };
    view.partitions
        .iter()
        .filter(|p| !busy.contains(&p.group) && p.leader.is_some())
        .filter(|p| p.voters.len() == p.replicator && p.learners.is_empty())
        .filter(|p| p.voters.contains(&from) && !p.is_member(to) && !p.hosted_on.contains(&to))
        .filter(|p| p.tags.iter().all(|t| target.tags.contains(t)))
        .filter(|p| {
            let before = dcs(&mut p.voters.iter().copied());
            let after = dcs(&mut p
                .voters
                .iter()
                .copied()
                .filter(|v| *v != from)
                .chain(std::iter::once(to)));
            after >= before
        })
        .min_by_key(|p| (p.leader == Some(from), p.group))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::fake;
    use crate::schedule::Step;

    #[test]
    fn a_new_node_receives_replicas_until_counts_are_even() {
        // Three nodes with 4 partitions × 3 replicas; node 4 just joined.
        let rings = [[1, 2, 3], [2, 3, 1], [3, 1, 2], [1, 2, 3]];
        let parts = (1..=4)
            .map(|g| fake::partition(g, &rings[g as usize - 1], 3))
            .collect();
        let mut view = fake::cluster(4, parts);
        let limits = ScheduleLimits::default();
        let mut moves = 0;
        while let Some(op) = schedule(&view, &BTreeSet::new(), &limits, Instant::now()) {
            assert_eq!(op.kind, OperatorKind::MoveReplica);
            let (Step::AddLearner { node: to }, Step::RemoveMember { node: from }) =
                (op.steps[0], op.steps[3])
            else {
                panic!("{op:?}")
            };
            assert_eq!(to, 4);
            // Apply the move to the fake cluster.
            let p = view
                .partitions
                .iter_mut()
                .find(|p| p.group == op.group)
                .unwrap();
            assert_ne!(p.leader, Some(from), "a follower moves first");
            p.voters.retain(|v| *v != from);
            p.voters.push(to);
            moves += 1;
            assert!(moves <= 4, "too many moves");
        }
        let counts = view.replica_counts();
        assert_eq!(counts[&4], 3, "{counts:?}");
        assert!(counts.values().all(|c| (3..=3).contains(c)), "{counts:?}");
    }

    #[test]
    fn balanced_busy_and_constrained_clusters_do_not_move() {
        let limits = ScheduleLimits::default();
        let even = fake::cluster(
            3,
            vec![
                fake::partition(1, &[1, 2], 2),
                fake::partition(2, &[3, 1], 2),
            ],
        );
        assert!(schedule(&even, &BTreeSet::new(), &limits, Instant::now()).is_none());
        let parts = (1..=2).map(|g| fake::partition(g, &[1, 2, 3], 3)).collect();
        let mut view = fake::cluster(4, parts);
        assert!(schedule(&view, &BTreeSet::from([1, 2]), &limits, Instant::now()).is_none());
        // The light node lacks the namespace's tag.
        for p in &mut view.partitions {
            p.tags = vec!["ssd".into()];
        }
        assert!(schedule(&view, &BTreeSet::new(), &limits, Instant::now()).is_none());
        // A move that would lose a data center does not happen.
        for p in &mut view.partitions {
            p.tags.clear();
        }
        for (id, dc) in [(1, "a"), (2, "b"), (3, "c"), (4, "a")] {
            view.nodes.get_mut(&id).unwrap().dc_info = dc.into();
        }
        let op = schedule(&view, &BTreeSet::new(), &limits, Instant::now()).unwrap();
        assert_eq!(
            op.steps[3],
            Step::RemoveMember { node: 1 },
            "only node 1's dc is kept"
        );
    }
}
