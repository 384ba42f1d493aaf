//! Where a new replica of a partition goes: an alive node that is not being removed, has
//! every tag of the namespace and holds no replica of the partition yet (or only a
//! left-over one no member counts on); among those, one
//! in a data center the partition's kept replicas do not cover yet, then the one with the
//! fewest replicas, then the lowest id (so the choice is deterministic).

use std::collections::BTreeMap;

use super::{ClusterView, PartitionState};

/// The node a new replica of `p` should go to, given each node's replica count (including
/// replicas already planned); `None` when no node qualifies.
pub fn pick(view: &ClusterView, p: &PartitionState, counts: &BTreeMap<u64, usize>) -> Option<u64> {
    let covered: Vec<&str> = p
        .voters
        .iter()
        .filter_map(|v| view.node(*v))
        .filter(|n| n.keeps_replicas())
        .map(|n| n.dc_info.as_str())
        .collect();
    view.nodes
        .values()
        .filter(|n| n.accepts_replicas())
        .filter(|n| p.tags.iter().all(|t| n.tags.contains(t)))
        // A node whose replica of the partition is left over may take a new one (the
        // left-over one is deleted first).
        .filter(|n| !p.is_member(n.id) && (!p.hosted_on.contains(&n.id) || p.is_stale(n.id)))
        .min_by_key(|n| {
            (
                covered.contains(&n.dc_info.as_str()),
                counts.get(&n.id).copied().unwrap_or(0),
                n.id,
            )
        })
        .map(|n| n.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::fake;

    #[test]
    fn the_lightest_eligible_node_in_an_uncovered_data_center_wins() {
        let mut view = fake::cluster(
            5,
            vec![
                fake::partition(1, &[1, 2], 3),
                fake::partition(2, &[3, 4], 3),
                fake::partition(3, &[3, 1], 3),
            ],
        );
        let counts = view.replica_counts();
        // Node 5 holds nothing.
        assert_eq!(pick(&view, &view.partitions[0], &counts), Some(5));
        // Data centers first: nodes 1 and 2 are in "a", so a node of "b" wins even if
        // it holds more.
        for (id, dc) in [(1, "a"), (2, "a"), (3, "b"), (4, "a"), (5, "a")] {
            view.nodes.get_mut(&id).unwrap().dc_info = dc.into();
        }
        assert_eq!(pick(&view, &view.partitions[0], &counts), Some(3));
        // Down, removing and untagged nodes do not qualify; members do not either.
        view.nodes.get_mut(&3).unwrap().alive = false;
        view.nodes.get_mut(&5).unwrap().removing = true;
        assert_eq!(pick(&view, &view.partitions[0], &counts), Some(4));
        view.partitions[0].tags = vec!["ssd".into()];
        assert_eq!(pick(&view, &view.partitions[0], &counts), None);
        view.nodes.get_mut(&4).unwrap().tags = vec!["ssd".into()];
        assert_eq!(pick(&view, &view.partitions[0], &counts), Some(4));
    }
}
