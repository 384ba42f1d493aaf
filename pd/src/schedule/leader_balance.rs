//! The leader balancer: when a node leads more than `leader_spread` partitions more than
//! another alive node that holds a voter of one of them, hand that partition's leadership
//! over. Only nodes that accept replicas take part; the new leader must be caught up
//! (lag within `promote_lag`). One transfer per call.

use std::collections::BTreeSet;
use std::time::Instant;

use super::operator::{Operator, OperatorKind, Step};
use super::{ClusterView, ScheduleLimits};

/// The one leadership transfer that most evens out leader counts, if any.
pub fn schedule(
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

    #[test]
    fn leaders_spread_over_the_voters() {
        let parts = (1..=6).map(|g| fake::partition(g, &[1, 2, 3], 3)).collect();
        let mut view = fake::cluster(3, parts);
        let limits = ScheduleLimits::default();
        let mut transfers = 0;
        while let Some(op) = schedule(&view, &BTreeSet::new(), &limits, Instant::now()) {
            let Step::TransferLeader { to } = op.steps[0] else {
                panic!("{op:?}")
            };
            view.partitions
                .iter_mut()
                .find(|p| p.group == op.group)
                .unwrap()
                .leader = Some(to);
            transfers += 1;
            assert!(transfers <= 6);
        }
        let counts = view.leader_counts();
        assert!(counts.values().all(|c| *c == 2), "{counts:?}");
    }

    #[test]
    fn lagging_or_removing_nodes_get_no_leadership() {
        let parts = (1..=4).map(|g| fake::partition(g, &[1, 2], 2)).collect();
        let mut view = fake::cluster(2, parts);
        for p in &mut view.partitions {
            p.lag.insert(2, 5000);
        }
        let limits = ScheduleLimits::default();
        assert!(schedule(&view, &BTreeSet::new(), &limits, Instant::now()).is_none());
        for p in &mut view.partitions {
            p.lag.insert(2, 0);
        }
        view.nodes.get_mut(&2).unwrap().removing = true;
        assert!(schedule(&view, &BTreeSet::new(), &limits, Instant::now()).is_none());
        view.nodes.get_mut(&2).unwrap().removing = false;
        assert!(schedule(&view, &BTreeSet::new(), &limits, Instant::now()).is_some());
    }
}
