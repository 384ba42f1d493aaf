//! Where the partitions of a new namespace go: a pure function of the alive nodes.
//!
//! Nodes that carry every tag of the namespace are candidates. They are grouped by data
//! center (`dc_info`), sorted by id within each, and interleaved across data centers
//! (first node of each, then the second of each, ...). Partition `i` takes `replicator`
//! consecutive nodes of that ring starting at position `i`, so replicas and the first
//! replica of each partition (where its leadership is expected) spread evenly, and every
//! data center gets a copy when there are as many as replicas. This is ZanRedisDB's rule.

use std::collections::BTreeMap;

/// A node placement may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Node id.
    pub id: u64,
    /// Data center.
    pub dc_info: String,
    /// Placement tags.
    pub tags: Vec<String>,
}

/// The initial replicas of each of `partitions` partitions, `replicator` each, on the
/// candidates that carry all of `tags`.
pub fn place(
    candidates: &[Candidate],
    partitions: u32,
    replicator: u32,
    tags: &[String],
) -> Result<Vec<Vec<u64>>, String> {
    let mut by_dc: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for c in candidates
        .iter()
        .filter(|c| tags.iter().all(|t| c.tags.contains(t)))
    {
        by_dc.entry(&c.dc_info).or_default().push(c.id);
    }
    let mut ring = Vec::new();
    let mut lists: Vec<Vec<u64>> = by_dc
        .into_values()
        .map(|mut ids| {
            ids.sort_unstable();
            ids.dedup();
            ids
        })
        .collect();
    let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for list in &mut lists {
            if let Some(id) = list.get(i) {
                ring.push(*id);
            }
        }
    }
    let replicator = replicator as usize;
    if ring.len() < replicator {
        let which = if tags.is_empty() {
            String::new()
        } else {
            format!(" with tags {tags:?}")
        };
        return Err(format!(
            "{replicator} replicas need {replicator} alive nodes{which}, but there are {}",
            ring.len()
        ));
    }
    Ok((0..partitions as usize)
        .map(|p| {
            (0..replicator)
                .map(|r| ring[(p + r) % ring.len()])
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, dc: &str, tags: &[&str]) -> Candidate {
        Candidate {
            id,
            dc_info: dc.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn replicas_and_first_replicas_spread_evenly() {
        let nodes: Vec<Candidate> = (1..=4).map(|i| node(i, "", &[])).collect();
        let p = place(&nodes, 8, 3, &[]).unwrap();
        assert_eq!(p[0], vec![1, 2, 3]);
        assert_eq!(p[1], vec![2, 3, 4]);
        assert_eq!(p[3], vec![4, 1, 2]);
        let mut load = BTreeMap::new();
        let mut first = BTreeMap::new();
        for replicas in &p {
            *first.entry(replicas[0]).or_insert(0) += 1;
            for r in replicas {
                *load.entry(*r).or_insert(0) += 1;
            }
        }
        assert!(load.values().all(|&n| n == 6), "{load:?}");
        assert!(first.values().all(|&n| n == 2), "{first:?}");
    }

    #[test]
    fn every_data_center_gets_a_copy() {
        let nodes = vec![
            node(1, "a", &[]),
            node(2, "a", &[]),
            node(3, "b", &[]),
            node(4, "b", &[]),
            node(5, "c", &[]),
        ];
        let dc = |id: u64| nodes.iter().find(|n| n.id == id).unwrap().dc_info.clone();
        for replicas in place(&nodes, 16, 3, &[]).unwrap() {
            let mut dcs: Vec<String> = replicas.iter().map(|r| dc(*r)).collect();
            dcs.sort();
            dcs.dedup();
            assert!(dcs.len() >= 2, "{replicas:?} in {dcs:?}");
        }
        let first = place(&nodes, 1, 3, &[]).unwrap();
        assert_eq!(first[0], vec![1, 3, 5], "one per data center");
    }

    #[test]
    fn tags_restrict_and_too_few_nodes_are_refused() {
        let nodes = vec![
            node(1, "", &["ssd"]),
            node(2, "", &[]),
            node(3, "", &["ssd"]),
        ];
        let ssd = vec!["ssd".to_string()];
        let p = place(&nodes, 2, 2, &ssd).unwrap();
        assert!(p.iter().flatten().all(|id| *id != 2));
        let e = place(&nodes, 2, 3, &ssd).unwrap_err();
        assert_eq!(
            e,
            "3 replicas need 3 alive nodes with tags [\"ssd\"], but there are 2"
        );
        assert!(place(&[], 1, 1, &[]).is_err());
    }
}
