//! CLUSTER: Redis Cluster's view of nodes sharing the 16,384 hash slots, and the slot of a
//! key (CRC16 of its hash tag, Redis Cluster's rule). Commands parse here and replies are
//! built here from a [`ClusterView`] the serving process gives (a proxy: the live proxies,
//! each serving every key).
//!
//! Invariant: a view's nodes hold disjoint slot ranges that together cover every slot, in
//! node order.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::error::CommandError;
use crate::partitioning::hash_tag;
use crate::reply::Reply;
use crate::spec::{spec, Access, CommandSpec, NO_KEYS};

/// Hash slots of Redis Cluster.
pub const SLOTS: u16 = 16384;

const C: Access = Access::Connection;

/// CLUSTER subcommands zankv answers (the others answer Redis's unknown subcommand error:
/// slot migration, failover and the cluster bus have no meaning in front of raft groups,
/// and COUNTKEYSINSLOT/GETKEYSINSLOT would need a slot index zankv does not keep).
pub static CLUSTER_SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "cluster|info",
        2,
        C,
        &["stale"],
        NO_KEYS,
        &["slow"],
        "cluster",
        "3.0.0",
        "Returns information about the state of a node.",
    ),
    spec(
        "cluster|slots",
        2,
        C,
        &["stale"],
        NO_KEYS,
        &["slow"],
        "cluster",
        "3.0.0",
        "Returns the mapping of cluster slots to nodes.",
    ),
    spec(
        "cluster|shards",
        2,
        C,
        &["stale"],
        NO_KEYS,
        &["slow"],
        "cluster",
        "7.0.0",
        "Returns the mapping of cluster slots to shards.",
    ),
    spec(
        "cluster|nodes",
        2,
        C,
        &["stale"],
        NO_KEYS,
        &["slow"],
        "cluster",
        "3.0.0",
        "Returns the cluster configuration for a node.",
    ),
    spec(
        "cluster|myid",
        2,
        C,
        &["stale"],
        NO_KEYS,
        &["slow"],
        "cluster",
        "3.0.0",
        "Returns the ID of a node.",
    ),
    spec(
        "cluster|keyslot",
        3,
        C,
        &["stale"],
        NO_KEYS,
        &["slow"],
        "cluster",
        "3.0.0",
        "Returns the hash slot for a key.",
    ),
    spec(
        "cluster|help",
        2,
        C,
        &["loading", "stale"],
        NO_KEYS,
        &["slow"],
        "cluster",
        "5.0.0",
        "Returns helpful text about the different subcommands.",
    ),
];

/// A CLUSTER subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterCommand {
    /// `CLUSTER INFO`
    Info,
    /// `CLUSTER SLOTS`
    Slots,
    /// `CLUSTER SHARDS`
    Shards,
    /// `CLUSTER NODES`
    Nodes,
    /// `CLUSTER MYID`
    MyId,
    /// `CLUSTER KEYSLOT key`
    KeySlot(Bytes),
    /// `CLUSTER HELP`
    Help,
}

impl ClusterCommand {
    /// Parses `cluster|<sub>` (arity checked).
    pub fn parse(name: &str, args: &[Bytes]) -> Option<ClusterCommand> {
        Some(match name {
            "cluster|info" => ClusterCommand::Info,
            "cluster|slots" => ClusterCommand::Slots,
            "cluster|shards" => ClusterCommand::Shards,
            "cluster|nodes" => ClusterCommand::Nodes,
            "cluster|myid" => ClusterCommand::MyId,
            "cluster|keyslot" => ClusterCommand::KeySlot(args[1].clone()),
            "cluster|help" => ClusterCommand::Help,
            _ => return None,
        })
    }
}

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), Redis Cluster's key hash.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of `key`: CRC16 of its hash tag (the whole key when it has none).
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

/// One node of a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// Its id: 40 hex digits.
    pub id: String,
    /// Where clients reach it.
    pub addr: SocketAddr,
    /// Its slots, first and last (inclusive).
    pub slots: (u16, u16),
}

/// The nodes a cluster client sees, and which one answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The nodes, in slot order.
    pub nodes: Vec<ClusterNode>,
    /// The index of the answering node.
    pub me: usize,
}

impl ClusterView {
    /// `nodes` (id, address; at least one) sharing the slots evenly, in the given order;
    /// `me` is the answering node's index.
    pub fn spread(nodes: &[(String, SocketAddr)], me: usize) -> ClusterView {
        assert!(
            !nodes.is_empty() && me < nodes.len(),
            "a view holds its own node"
        );
        let n = nodes.len() as u32;
        let bound = |i: u32| (u32::from(SLOTS) * i / n) as u16;
        ClusterView {
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(i, (id, addr))| ClusterNode {
                    id: id.clone(),
                    addr: *addr,
                    slots: (bound(i as u32), bound(i as u32 + 1) - 1),
                })
                .collect(),
            me,
        }
    }

    /// The reply to `cmd`.
    pub fn answer(&self, cmd: &ClusterCommand) -> Reply {
        match cmd {
            ClusterCommand::Info => Reply::Verbatim(Bytes::from(self.info())),
            ClusterCommand::Slots => Reply::Array(
                self.nodes
                    .iter()
                    .map(|n| {
                        Reply::Array(vec![
                            Reply::Integer(i64::from(n.slots.0)),
                            Reply::Integer(i64::from(n.slots.1)),
                            Reply::Array(vec![
                                Reply::bulk(n.addr.ip().to_string()),
                                Reply::Integer(i64::from(n.addr.port())),
                                Reply::bulk(n.id.clone()),
                                Reply::Array(vec![]),
                            ]),
                        ])
                    })
                    .collect(),
            ),
            ClusterCommand::Shards => Reply::Array(
                self.nodes
                    .iter()
                    .map(|n| {
                        let node = Reply::Map(vec![
                            (Reply::bulk("id"), Reply::bulk(n.id.clone())),
                            (
                                Reply::bulk("port"),
                                Reply::Integer(i64::from(n.addr.port())),
                            ),
                            (Reply::bulk("ip"), Reply::bulk(n.addr.ip().to_string())),
                            (
                                Reply::bulk("endpoint"),
                                Reply::bulk(n.addr.ip().to_string()),
                            ),
                            (Reply::bulk("role"), Reply::bulk("master")),
                            (Reply::bulk("replication-offset"), Reply::Integer(0)),
                            (Reply::bulk("health"), Reply::bulk("online")),
                        ]);
                        Reply::Map(vec![
                            (
                                Reply::bulk("slots"),
                                Reply::Array(vec![
                                    Reply::Integer(i64::from(n.slots.0)),
                                    Reply::Integer(i64::from(n.slots.1)),
                                ]),
                            ),
                            (Reply::bulk("nodes"), Reply::Array(vec![node])),
                        ])
                    })
                    .collect(),
            ),
            ClusterCommand::Nodes => Reply::Verbatim(Bytes::from(self.nodes_text())),
            ClusterCommand::MyId => Reply::bulk(self.nodes[self.me].id.clone()),
            ClusterCommand::KeySlot(key) => Reply::Integer(i64::from(key_slot(key))),
            ClusterCommand::Help => help(),
        }
    }

    fn info(&self) -> String {
        let n = self.nodes.len();
        [
            "cluster_state:ok".to_string(),
            format!("cluster_slots_assigned:{SLOTS}"),
            format!("cluster_slots_ok:{SLOTS}"),
            "cluster_slots_pfail:0".into(),
            "cluster_slots_fail:0".into(),
            format!("cluster_known_nodes:{n}"),
            format!("cluster_size:{n}"),
            format!("cluster_current_epoch:{n}"),
            format!("cluster_my_epoch:{}", self.me + 1),
            "cluster_stats_messages_sent:0".into(),
            "cluster_stats_messages_received:0".into(),
            "total_cluster_links_buffer_limit_exceeded:0".into(),
        ]
        .iter()
        .map(|line| format!("{line}\r\n"))
        .collect()
    }

    fn nodes_text(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let flags = if i == self.me {
                    "myself,master"
                } else {
                    "master"
                };
                format!(
                    "{} {}@0 {flags} - 0 0 {} connected {}-{}\n",
                    n.id,
                    n.addr,
                    i + 1,
                    n.slots.0,
                    n.slots.1
                )
            })
            .collect()
    }
}

fn help() -> Reply {
    Reply::Array(
        [
            "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "INFO",
            "    Return information about the cluster.",
            "KEYSLOT <key>",
            "    Return the hash slot for <key>.",
            "MYID",
            "    Return the node id.",
            "NODES",
            "    Return cluster configuration seen by node. Output format:",
            "    <id> <ip:port@bus-port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
            "SHARDS",
            "    Return information about slot range mappings and the nodes associated with them.",
            "SLOTS",
            "    Return information about slots range mappings. Each range is made of:",
            "    start, end, master and replicas IP addresses, ports and ids",
            "HELP",
            "    Prints this help.",
        ]
        .iter()
        .map(|l| Reply::Status(l))
        .collect(),
    )
}

/// The answer of a server without cluster support (a storage node, or a proxy with no
/// cluster address).
pub fn disabled() -> Reply {
    Reply::Error(CommandError::ClusterDisabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_follow_redis_cluster() {
        // Redis Cluster's reference values.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag: the whole key is hashed.
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
    }

    #[test]
    fn slots_are_spread_evenly_and_cover_everything() {
        let nodes: Vec<(String, SocketAddr)> = (0..3)
            .map(|i| {
                (
                    format!("{i}").repeat(40),
                    format!("127.0.0.1:{}", 7000 + i).parse().unwrap(),
                )
            })
            .collect();
        let view = ClusterView::spread(&nodes, 1);
        let ranges: Vec<(u16, u16)> = view.nodes.iter().map(|n| n.slots).collect();
        assert_eq!(ranges, vec![(0, 5460), (5461, 10921), (10922, 16383)]);
        let Reply::Verbatim(text) = view.answer(&ClusterCommand::Nodes) else {
            panic!("text")
        };
        let text = String::from_utf8(text.to_vec()).unwrap();
        assert!(text.contains(&format!(
            "{} 127.0.0.1:7001@0 myself,master - 0 0 2 connected 5461-10921\n",
            "1".repeat(40)
        )));
        assert_eq!(
            ClusterView::spread(&nodes[..1], 0).nodes[0].slots,
            (0, SLOTS - 1)
        );
    }
}
