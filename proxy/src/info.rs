//! The proxy's INFO: Redis's sections with the proxy's own measures, and two cluster-wide
//! ones. The keyspace section totals the key counts of the partitions the connection covers
//! (each asked of its leader as `ZANKV.ON <partition> INFO KEYSPACE`); the memory section
//! adds to the proxy's own memory that of every storage node leading a partition (each
//! asked once for `INFO SERVER MEMORY`, told apart by its `run_id`).
//!
//! INFO always answers: a partition or node that does not answer after a few retries is
//! left out of the totals, and the keyspace section then ends with
//! `zankv_partitions_unanswered:<count>`.

use std::collections::HashSet;

use bytes::Bytes;
use zankv_commands::info::{wanted_sections, InfoFacts};
use zankv_commands::{Protocol, Reply};

use crate::forward::{on_partition, partitions_in, unexpected, Merge, Part, Plan, Scope};
use crate::reply_frames::{array_items, bulk_text, error_text, integer};
use crate::routing::{KeyTarget, RoutingTables};

/// Most times INFO asks a partition or node again (about 175 ms of back-off with the
/// default `retry_backoff_ms`): INFO answers without those that still have no leader rather
/// than wait out the full `max_retries` (about 4 s with the defaults).
const INFO_RETRIES: u32 = 3;

/// What INFO still needs from storage nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterInfo {
    /// The proxy's own measures.
    facts: InfoFacts,
    /// The sections asked for.
    sections: Vec<&'static str>,
    /// How many of the parts ask for key counts (the rest ask nodes for memory).
    keyspace_parts: usize,
}

/// INFO `args` for a connection reaching `scope`: answered from `facts` alone, or a plan
/// that asks the storage nodes for the keyspace and memory sections.
pub fn plan(args: &[Bytes], facts: InfoFacts, tables: &RoutingTables, scope: Scope) -> Plan {
    let sections = wanted_sections(args);
    let mut parts = Vec::new();
    if sections.contains(&"keyspace") {
        let argv = [Bytes::from_static(b"INFO"), Bytes::from_static(b"KEYSPACE")];
        parts.extend(partitions_in(tables, scope).iter().map(|t| {
            Part::new(on_partition(t, &argv), t.clone(), false, vec![]).with_retries(INFO_RETRIES)
        }));
    }
    let keyspace_parts = parts.len();
    if sections.contains(&"memory") {
        let request = crate::forward::encode_request(&[
            Bytes::from_static(b"INFO"),
            Bytes::from_static(b"SERVER"),
            Bytes::from_static(b"MEMORY"),
        ]);
        parts.extend(
            one_partition_per_leader(tables)
                .into_iter()
                .map(|t| Part::new(request.clone(), t, false, vec![]).with_retries(INFO_RETRIES)),
        );
    }
    let mut info = ClusterInfo {
        facts,
        sections,
        keyspace_parts,
    };
    if parts.is_empty() {
        if info.sections.contains(&"keyspace") {
            info.facts.keyspace = Some((0, 0));
        }
        return Plan::Reply(Reply::Verbatim(Bytes::from(
            info.facts.render(&info.sections),
        )));
    }
    Plan::Forward {
        parts,
        merge: Some(Merge::Info(Box::new(info))),
        keys: 0,
    }
}

/// A partition of each storage node that leads one, to ask that node for its INFO.
fn one_partition_per_leader(tables: &RoutingTables) -> Vec<KeyTarget> {
    let mut seen = HashSet::new();
    tables
        .all_partitions()
        .into_iter()
        .filter(|t| t.leader().is_some_and(|addr| seen.insert(addr)))
        .collect()
}

/// INFO's text from the parts' replies (in plan order).
pub fn merge(info: ClusterInfo, replies: &[Bytes], protocol: Protocol) -> Bytes {
    let ClusterInfo {
        mut facts,
        sections,
        keyspace_parts,
    } = info;
    let (counts, nodes) = replies.split_at(keyspace_parts);
    let mut unanswered = 0;
    if sections.contains(&"keyspace") {
        let (mut keys, mut expires) = (0u64, 0u64);
        for r in counts {
            let pair = array_items(r, protocol)
                .and_then(|items| Some((integer(items.first()?)?, integer(items.get(1)?)?)));
            match pair {
                Some((k, e)) => {
                    keys += k.max(0) as u64;
                    expires += e.max(0) as u64;
                }
                // No leader even after the retries: left out of the totals.
                None if error_text(r).is_some() => unanswered += 1,
                // A reply of the wrong shape is a bug, not a missing partition.
                None => return unexpected(protocol),
            }
        }
        facts.keyspace = Some((keys, expires));
    }
    let mut seen = HashSet::new();
    for r in nodes {
        let Some(text) = bulk_text(r) else { continue };
        let text = String::from_utf8_lossy(&text);
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let number = |name: &str| value(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // Two partitions led by one node (or a leader change between retries) count once.
        if !seen.insert(value("run_id").unwrap_or_default().to_string()) {
            continue;
        }
        facts.used_memory += number("used_memory");
        facts.used_memory_rss += number("used_memory_rss");
        facts.used_memory_dataset += number("used_memory_dataset");
    }
    facts.used_memory_peak = facts.used_memory_peak.max(facts.used_memory);
    let mut text = facts.render(&sections);
    if unanswered > 0 {
        // The keyspace section is the last one.
        text.push_str(&format!("zankv_partitions_unanswered:{unanswered}\r\n"));
    }
    let mut out = bytes::BytesMut::new();
    Reply::Verbatim(Bytes::from(text)).encode(protocol, &mut out);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: Bytes) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    fn asked(sections: &[&str], keyspace_parts: usize) -> ClusterInfo {
        let args: Vec<Bytes> = sections
            .iter()
            .map(|s| Bytes::from(s.to_string()))
            .collect();
        ClusterInfo {
            facts: InfoFacts {
                zankv_role: "proxy",
                used_memory: 100,
                used_memory_rss: 100,
                ..InfoFacts::default()
            },
            sections: wanted_sections(&args),
            keyspace_parts,
        }
    }

    #[test]
    fn info_sums_the_partitions_that_answered_and_counts_the_others() {
        let counts = |k: i64, e: i64| Bytes::from(format!("*2\r\n:{k}\r\n:{e}\r\n"));
        let no_leader = Bytes::from_static(b"-ERR_CLUSTER_CHANGED: no leader\r\n");
        let all = text(merge(
            asked(&["keyspace"], 2),
            &[counts(5, 1), counts(7, 0)],
            Protocol::Resp2,
        ));
        let body = "# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=0\r\n";
        assert_eq!(all, format!("${}\r\n{body}\r\n", body.len()));
        let partial = text(merge(
            asked(&["server", "keyspace"], 3),
            &[counts(5, 1), no_leader.clone(), counts(7, 0)],
            Protocol::Resp2,
        ));
        assert!(partial.contains("zankv_role:proxy"), "{partial}");
        assert!(
            partial
                .contains("db0:keys=12,expires=1,avg_ttl=0\r\nzankv_partitions_unanswered:1\r\n"),
            "{partial}"
        );
        // Nobody answered: no db0 line, still an answer.
        let none = text(merge(
            asked(&["keyspace"], 2),
            &[no_leader.clone(), no_leader],
            Protocol::Resp3,
        ));
        assert!(none.starts_with('='), "{none}");
        assert!(
            none.ends_with("# Keyspace\r\nzankv_partitions_unanswered:2\r\n\r\n"),
            "{none}"
        );
        assert!(!none.contains("db0"), "{none}");
        // A reply of the wrong shape is a bug, not a missing partition.
        let odd = text(merge(
            asked(&["keyspace"], 1),
            &[Bytes::from_static(b"+OK\r\n")],
            Protocol::Resp2,
        ));
        assert!(odd.starts_with("-ERR"), "{odd}");
    }

    #[test]
    fn memory_adds_each_node_once() {
        let node = |run_id: &str, used: u64| {
            let body = format!(
                "# Server\r\nrun_id:{run_id}\r\n\r\n# Memory\r\nused_memory:{used}\r\nused_memory_rss:{used}\r\nused_memory_dataset:10\r\n"
            );
            Bytes::from(format!("${}\r\n{body}\r\n", body.len()))
        };
        let out = text(merge(
            asked(&["memory"], 0),
            &[node("a", 1000), node("b", 2000), node("a", 1000)],
            Protocol::Resp2,
        ));
        assert!(out.contains("\r\nused_memory:3100\r\n"), "{out}");
        assert!(out.contains("\r\nused_memory_dataset:20\r\n"), "{out}");
    }
}
