//! The leader balancer: when a node leads more than `leader_spread` partitions more than
//! another alive node that holds a voter of one of them, hand that partition's leadership
//! over. Only nodes that accept replicas take part; the new leader must be caught up
//! (lag within `promote_lag`). Up to `max` transfers per call, each planned on the counts
//! the earlier ones leave, on distinct partitions (a transfer is quick and cheap: doing
//! them one per round made a new namespace of 256 partitions take minutes to balance).

use std::collections::BTreeSet;
use std::time::Instant;

use super::operator::{Operator, OperatorKind, Step};
use super::{ClusterView, ScheduleLimits};

/// Up to `max` leadership transfers, each the one that most evens out the leader counts
/// left by those before it.
pub fn schedule(
    view: &ClusterView,
    busy: &BTreeSet<u64>,
    limits: &ScheduleLimits,
    now: Instant,
    max: usize,
) -> Vec<Operator> {
    let mut planned = Vec::new();
    if max == 0 {
        return planned;
    }
    let mut view = view.clone();
    let mut busy = busy.clone();
    while planned.len() < max {
        let Some(op) = one_transfer(&view, &busy, limits, now) else {
            break;
        };
        let Step::TransferLeader { to } = op.steps[0] else {
            unreachable!("a leader transfer has one step");
        };
        if let Some(p) = view.partitions.iter_mut().find(|p| p.group == op.group) {
            p.leader = Some(to);
        }
        busy.insert(op.group);
        planned.push(op);
    }
    planned
}

/// The one leadership transfer that most evens out leader counts, if any.
fn one_transfer(
    view: &ClusterView,
    busy: &BTreeSet<u64>,
    limits: &ScheduleLimits,
    now: Instant,
) -> Option<Operator> {
    let counts = view.leader_counts();
    let eligible = view.accepting_by_count(&counts);
    for &(heavy_count, heavy) in eligible.iter().rev() {
        for &(light_count, light) in &eligible {
            if heavy_count <= light_count + limits.leader_spread {
                break;
            }
            let candidate = view
                .partitions
                .iter()
                .filter(|p| !busy.contains(&p.group) && p.leader == Some(heavy))
                .filter(|p| p.voters.contains(&light))
                .find(|p| {
                    p.lag
                        .get(&light)
                        .is_some_and(|lag| *lag <= limits.promote_lag)
                });
            if let Some(p) = candidate {
                return Some(Operator::new(
                    OperatorKind::TransferLeader,
                    p,
                    vec![Step::TransferLeader { to: light }],
                    format!("node {heavy} leads {heavy_count} partitions and node {light} {light_count}"),
                    now,
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::fake;

    /// Does what a transfer operator asks, as the partition's nodes would.
    fn transfer(view: &mut ClusterView, op: &Operator) {
        let Step::TransferLeader { to } = op.steps[0] else {
            panic!("{op:?}")
        };
        view.partitions
            .iter_mut()
            .find(|p| p.group == op.group)
            .unwrap()
            .leader = Some(to);
    }

    #[test]
    fn leaders_spread_over_the_voters() {
        let parts = (1..=6).map(|g| fake::partition(g, &[1, 2, 3], 3)).collect();
        let mut view = fake::cluster(3, parts);
        let limits = ScheduleLimits::default();
        let mut transfers = 0;
        while let Some(op) = schedule(&view, &BTreeSet::new(), &limits, Instant::now(), 1).pop() {
            transfer(&mut view, &op);
            transfers += 1;
            assert!(transfers <= 6);
        }
        let counts = view.leader_counts();
        assert!(counts.values().all(|c| *c == 2), "{counts:?}");
    }

    #[test]
    fn one_call_plans_several_transfers_on_the_counts_they_leave() {
        // Node 1 leads six partitions, node 2 one (busy with another operator), node 3 none.
        let parts = (1..=7).map(|g| fake::partition(g, &[1, 2, 3], 3)).collect();
        let mut view = fake::cluster(3, parts);
        for p in &mut view.partitions {
            p.leader = Some(if p.group == 7 { 2 } else { 1 });
        }
        let limits = ScheduleLimits::default();
        let busy = BTreeSet::from([7]);
        let ops = schedule(&view, &busy, &limits, Instant::now(), 4);
        let groups: BTreeSet<u64> = ops.iter().map(|o| o.group).collect();
        assert_eq!(groups.len(), ops.len(), "two transfers of one partition");
        assert!(!groups.contains(&7), "a busy partition was planned");
        for op in &ops {
            transfer(&mut view, op);
        }
        // Planned on the counts each leaves, three transfers even out 6/1/0 in one call
        // (planned on the first counts, all four would go to node 3: 2/1/4).
        assert_eq!(ops.len(), 3, "{ops:?}");
        let counts = view.leader_counts();
        let (min, max) = (counts.values().min(), counts.values().max());
        assert!(max.unwrap() - min.unwrap() <= 1, "{counts:?}");
        assert!(schedule(&view, &busy, &limits, Instant::now(), 4).is_empty());
        // `max` bounds a call.
        assert!(schedule(&view, &BTreeSet::new(), &limits, Instant::now(), 0).is_empty());
    }

    #[test]
    fn lagging_or_removing_nodes_get_no_leadership() {
        let parts = (1..=4).map(|g| fake::partition(g, &[1, 2], 2)).collect();
        let mut view = fake::cluster(2, parts);
        for p in &mut view.partitions {
            p.lag.insert(2, 5000);
        }
        let limits = ScheduleLimits::default();
        assert!(schedule(&view, &BTreeSet::new(), &limits, Instant::now(), 4).is_empty());
        for p in &mut view.partitions {
            p.lag.insert(2, 0);
        }
        view.nodes.get_mut(&2).unwrap().removing = true;
        assert!(schedule(&view, &BTreeSet::new(), &limits, Instant::now(), 4).is_empty());
        view.nodes.get_mut(&2).unwrap().removing = false;
        assert!(!schedule(&view, &BTreeSet::new(), &limits, Instant::now(), 4).is_empty());
    }
}
