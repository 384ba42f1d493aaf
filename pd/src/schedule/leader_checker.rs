//! The leader checker.
//!
//! - A leader on a node being removed hands leadership to the most caught-up healthy voter
//!   (the node is drained of leaders before its replicas move, so clients see one leader
//!   change per partition, not two).
//! - A partition without a leader is an election in progress while a quorum of its voters
//!   is alive; raft resolves that by itself and PD does not interfere. Without a quorum it
//!   is **unavailable**: no operator can help (a membership change needs a quorum too), so
//!   it is reported ([`unavailable`], in `/cluster/stats` and the metrics) for an operator
//!   to bring the nodes back.

use std::collections::BTreeSet;
use std::time::Instant;

use super::operator::{Operator, OperatorKind, Step};
use super::ClusterView;

/// Leadership moves needed, for partitions not in `busy`.
pub fn check(view: &ClusterView, busy: &BTreeSet<u64>, now: Instant) -> Vec<Operator> {
    let mut out = Vec::new();
    for p in &view.partitions {
        let Some(leader) = p.leader else { continue };
        if busy.contains(&p.group) || !view.node(leader).is_some_and(|n| n.removing) {
            continue;
        }
        let successor = p
            .voters
            .iter()
            .copied()
            .filter(|v| *v != leader)
            .filter(|v| view.node(*v).is_some_and(|n| n.alive && n.keeps_replicas()))
            .min_by_key(|v| (p.lag.get(v).copied().unwrap_or(u64::MAX), *v));
        if let Some(to) = successor {
            out.push(Operator::new(
                OperatorKind::TransferLeader,
                p,
                vec![Step::TransferLeader { to }],
                format!("leader node {leader} is being removed"),
                now,
            ));
        }
    }
    out
}

/// Partitions with no leader and fewer than a quorum of their known voters alive.
pub fn unavailable(view: &ClusterView) -> Vec<String> {
    view.partitions
        .iter()
        .filter(|p| p.leader.is_none())
        .filter(|p| {
            let alive = p
                .known_voters
                .iter()
                .filter(|v| view.node(**v).is_some_and(|n| n.alive))
                .count();
            p.known_voters.is_empty() || alive <= p.known_voters.len() / 2
        })
        .map(|p| p.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::fake;

    #[test]
    fn leaders_leave_nodes_being_removed() {
        let mut view = fake::cluster(3, vec![fake::partition(1, &[1, 2, 3], 3)]);
        assert!(check(&view, &BTreeSet::new(), Instant::now()).is_empty());
        view.nodes.get_mut(&1).unwrap().removing = true;
        view.partitions[0].lag.insert(2, 40);
        view.partitions[0].lag.insert(3, 1);
        let ops = check(&view, &BTreeSet::new(), Instant::now());
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0].steps, vec![Step::TransferLeader { to: 3 }]);
        assert!(check(&view, &BTreeSet::from([1]), Instant::now()).is_empty());
    }

    #[test]
    fn leaderless_partitions_without_a_quorum_are_unavailable() {
        let mut view = fake::cluster(3, vec![fake::partition(1, &[1, 2, 3], 3)]);
        view.partitions[0].leader = None;
        // An election with two of three voters alive: not unavailable.
        view.nodes.get_mut(&3).unwrap().alive = false;
        assert!(unavailable(&view).is_empty());
        view.nodes.get_mut(&2).unwrap().alive = false;
        assert_eq!(unavailable(&view), vec!["ns-1".to_string()]);
    }
}
