//! The JSON that PD, storage nodes and (later) proxies exchange.
//!
//! - [`NodeInfo`]: a storage node's identity and addresses;
//! - [`Heartbeat`] / [`HeartbeatReply`]: what a storage node reports every few seconds and
//!   what PD answers (the [`Catalog`] when it changed);
//! - [`Catalog`], [`NamespaceMeta`]: the cluster's namespaces and nodes, versioned by an
//!   epoch that only grows;
//! - [`QueryResponse`]: a namespace's routing table in ZanRedisDB's `/query/{ns}` shape, so
//!   its smart clients work unchanged;
//! - the naming and range rules every component checks the same way, and [`Secret`];
//! - [`client`] (feature `client`): the HTTP client the components call each other with.
//!
//! Invariant: every type here round-trips through `serde_json`; fields added later get
//! `#[serde(default)]` so older peers keep working.

#![warn(missing_docs)]

#[cfg(feature = "client")]
pub mod client;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Most partitions a namespace may have.
pub const MAX_PARTITIONS: u32 = 1024;
/// Most replicas a partition may have.
pub const MAX_REPLICAS: u32 = 5;

/// Whether `name` is a valid namespace name: 1 to 255 characters of `[A-Za-z0-9_]` (a `-`
/// would clash with partition names such as `default-3`).
pub fn valid_namespace_name(name: &str) -> bool {
    (1..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The name of partition `partition` of namespace `namespace`: `<namespace>-<partition>`.
pub fn partition_name(namespace: &str, partition: u32) -> String {
    format!("{namespace}-{partition}")
}

/// The raft group id of `partition` of the namespace with id `namespace_id`.
pub fn group_id(namespace_id: u32, partition: u32) -> u64 {
    (u64::from(namespace_id) << 32) | u64::from(partition)
}

/// Largest node id: node ids fill the low 32 bits of raft replica ids.
pub const MAX_NODE_ID: u64 = u32::MAX as u64;

/// The raft replica id of incarnation `incarnation` of a replica on node `node`.
///
/// A group's initial voters are incarnation 0, so their replica id is their node id. A
/// replica added later gets the incarnation its leader chose (from the log index at which
/// it was added, so it never repeats), which keeps a node removed from a group and added
/// back from receiving messages meant for its earlier replica.
pub fn replica_id(node: u64, incarnation: u32) -> u64 {
    (u64::from(incarnation) << 32) | (node & MAX_NODE_ID)
}

/// The node a raft replica lives on.
pub fn node_of(replica: u64) -> u64 {
    replica & MAX_NODE_ID
}

/// A secret from a configuration file (an admin token): compared, never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, to send to a peer.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is the secret, compared in time independent of where they differ.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// A storage node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its node id (also the raft replica id of every replica it hosts).
    pub node_id: u64,
    /// The address other nodes, PD and clients reach it at (an IP address).
    pub broadcast_address: String,
    /// RESP port.
    pub redis_port: u16,
    /// HTTP port (status, metrics, admin operations).
    pub http_port: u16,
    /// Raft transport port.
    pub raft_port: u16,
    /// Software version.
    pub version: String,
    /// Data center (placement spreads replicas across data centers).
    #[serde(default)]
    pub dc_info: String,
    /// Placement tags (a namespace with tags is placed on nodes having all of them).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// How a namespace expires keys. zankv implements Redis's exact semantics for both (an
/// expired key is hidden at once and deleted through raft); the setting is kept for
/// ZanRedisDB compatibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpirationPolicy {
    /// ZanRedisDB's per-replica background deletion.
    LocalDeletion,
    /// ZanRedisDB's default: expiry in the value header, space reclaimed later.
    WaitCompact,
}

impl ExpirationPolicy {
    /// Parses ZanRedisDB's names.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "local_deletion" => Some(ExpirationPolicy::LocalDeletion),
            "wait_compact" => Some(ExpirationPolicy::WaitCompact),
            _ => None,
        }
    }

    /// ZanRedisDB's name.
    pub fn name(self) -> &'static str {
        match self {
            ExpirationPolicy::LocalDeletion => "local_deletion",
            ExpirationPolicy::WaitCompact => "wait_compact",
        }
    }
}

/// A namespace and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceMeta {
    /// Its name.
    pub name: String,
    /// Its id (1..65535), unique in the cluster; raft group ids derive from it.
    pub id: u32,
    /// Number of partitions (fixed at creation).
    pub partition_num: u32,
    /// Wanted replicas per partition.
    pub replicator: u32,
    /// Expiration policy.
    pub expiration_policy: ExpirationPolicy,
    /// Placement tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Whether `{...}` in a key picks the hashed part (Redis-style hash tags).
    #[serde(default)]
    pub hash_tags: bool,
    /// Whether any replica may answer reads from what it has applied (and proxies spread
    /// reads over the replicas): faster, but a read may miss recent writes.
    #[serde(default)]
    pub stale_reads: bool,
    /// Per partition, the node ids it was created on: its raft group's initial voters.
    pub initial_replicas: Vec<Vec<u64>>,
}

/// The cluster's namespaces and nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// The cluster it describes: a node refuses a catalog of another cluster than the one
    /// it joined.
    #[serde(default)]
    pub cluster_id: String,
    /// Grows with every change.
    pub epoch: u64,
    /// The namespaces.
    pub namespaces: Vec<NamespaceMeta>,
    /// The storage nodes.
    pub nodes: Vec<NodeInfo>,
}

/// One replica as its storage node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReport {
    /// `<namespace>-<partition>`.
    pub partition: String,
    /// Its raft group id.
    pub group: u64,
    /// `leader`, `follower` or `candidate`.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// Leader known to the replica (0 = none).
    pub leader: u64,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Voters.
    pub voters: Vec<u64>,
    /// Learners.
    pub learners: Vec<u64>,
    /// On the leader: each replica's lag behind the leader's log, in entries.
    #[serde(default)]
    pub lag: Vec<(u64, u64)>,
    /// Keys stored.
    #[serde(default)]
    pub keys: u64,
    /// This replica's raft id (see [`replica_id`]).
    #[serde(default)]
    pub replica: u64,
    /// The raft ids of the voters and learners this replica knows.
    #[serde(default)]
    pub member_replicas: Vec<u64>,
}

/// What a storage node sends PD every few seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node.
    pub node: NodeInfo,
    /// Every replica it hosts.
    pub replicas: Vec<ReplicaReport>,
    /// The epoch of the catalog the node has (0 = none).
    pub catalog_epoch: u64,
}

/// PD's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The catalog, when the node's is older.
    pub catalog: Option<Catalog>,
}

/// A node in ZanRedisDB's routing JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryNode {
    /// The node id, as a string (ZanRedisDB's ids are strings).
    pub node_id: String,
    /// Address clients reach it at.
    pub broadcast_address: String,
    /// Host name (the broadcast address here).
    pub hostname: String,
    /// RESP port.
    pub redis_port: String,
    /// HTTP port.
    pub http_port: String,
    /// gRPC port (unused by zankv: the raft port is given).
    pub grpc_port: String,
    /// Software version.
    pub version: String,
    /// Data center.
    pub dc_info: String,
}

impl From<&NodeInfo> for QueryNode {
    fn from(n: &NodeInfo) -> Self {
        QueryNode {
            node_id: n.node_id.to_string(),
            broadcast_address: n.broadcast_address.clone(),
            hostname: n.broadcast_address.clone(),
            redis_port: n.redis_port.to_string(),
            http_port: n.http_port.to_string(),
            grpc_port: n.raft_port.to_string(),
            version: n.version.clone(),
            dc_info: n.dc_info.clone(),
        }
    }
}

/// One partition's leader and replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryPartition {
    /// The leader (absent while none is known).
    pub leader: Option<QueryNode>,
    /// The voting replicas.
    pub replicas: Vec<QueryNode>,
}

/// A namespace's routing table (`GET /query/{ns}`), in ZanRedisDB's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryResponse {
    /// Grows with every change of this namespace's leaders or replicas.
    pub epoch: u64,
    /// Number of partitions.
    pub partition_num: u32,
    /// Wanted replicas per partition.
    pub replicator: u32,
    /// Expiration policy name.
    pub expire_policy: String,
    /// Always true (writes are fsynced by group commit).
    pub fsync_optimized: bool,
    /// Always `rockredis`.
    pub eng_type: String,
    /// Whether the namespace uses hash tags (a zankv extension).
    #[serde(default)]
    pub hash_tags: bool,
    /// Whether any replica may answer reads (a zankv extension).
    #[serde(default)]
    pub stale_reads: bool,
    /// Partition number (as a string) → its leader and replicas.
    pub partitions: BTreeMap<String, QueryPartition>,
}

/// One line of PD's routing stream (`GET /routing/watch`): newline-delimited JSON, one
/// event per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RoutingEvent {
    /// A namespace's routing table: every watched table first, then each one again
    /// whenever its epoch changes.
    Table {
        /// The namespace.
        namespace: String,
        /// Its table.
        table: QueryResponse,
    },
    /// Every watched table published so far has been sent (once per stream, after the
    /// first tables): a watcher that reconnected can check the namespaces this stream did
    /// not name (deleted meanwhile, or not published yet by a leader that just took over).
    Synced,
    /// A watched namespace was deleted.
    Deleted {
        /// The namespace.
        namespace: String,
    },
    /// Nothing changed for a while; a watcher that hears nothing at all for several of
    /// these intervals should reconnect (perhaps to another PD member).
    Keepalive,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64) -> NodeInfo {
        NodeInfo {
            node_id: id,
            broadcast_address: "127.0.0.1".into(),
            redis_port: 12381,
            http_port: 12380,
            raft_port: 12382,
            version: "0.1.0".into(),
            dc_info: String::new(),
            tags: vec![],
        }
    }

    #[test]
    fn names_and_ids() {
        assert!(valid_namespace_name("user_data_2"));
        assert!(!valid_namespace_name(""));
        assert!(!valid_namespace_name("a-b"));
        assert!(!valid_namespace_name(&"x".repeat(256)));
        assert_eq!(partition_name("default", 3), "default-3");
        assert_eq!(group_id(1, 3), (1 << 32) | 3);
        assert_eq!(replica_id(7, 0), 7, "initial voters: the node id");
        let r = replica_id(7, 1234);
        assert_ne!(r, 7);
        assert_eq!(node_of(r), 7);
        assert_eq!(node_of(replica_id(MAX_NODE_ID, u32::MAX)), MAX_NODE_ID);
        assert_eq!(
            ExpirationPolicy::parse("wait_compact"),
            Some(ExpirationPolicy::WaitCompact)
        );
        assert_eq!(ExpirationPolicy::parse("other"), None);
    }

    #[test]
    fn json_round_trips_and_keeps_zanredisdb_field_names() {
        let catalog = Catalog {
            cluster_id: "0123456789abcdef".into(),
            epoch: 3,
            namespaces: vec![NamespaceMeta {
                name: "default".into(),
                id: 1,
                partition_num: 2,
                replicator: 1,
                expiration_policy: ExpirationPolicy::WaitCompact,
                tags: vec![],
                hash_tags: false,
                stale_reads: false,
                initial_replicas: vec![vec![1], vec![2]],
            }],
            nodes: vec![node(1), node(2)],
        };
        let text = serde_json::to_string(&catalog).unwrap();
        assert_eq!(serde_json::from_str::<Catalog>(&text).unwrap(), catalog);
        let q = QueryResponse {
            epoch: 7,
            partition_num: 1,
            replicator: 1,
            expire_policy: "wait_compact".into(),
            fsync_optimized: true,
            eng_type: "rockredis".into(),
            hash_tags: false,
            stale_reads: false,
            partitions: BTreeMap::from([(
                "0".to_string(),
                QueryPartition {
                    leader: Some((&node(1)).into()),
                    replicas: vec![(&node(1)).into()],
                },
            )]),
        };
        let v: serde_json::Value = serde_json::to_value(&q).unwrap();
        assert_eq!(v["partitions"]["0"]["leader"]["redis_port"], "12381");
        assert_eq!(v["partitions"]["0"]["leader"]["node_id"], "1");
        assert_eq!(v["expire_policy"], "wait_compact");
        // A report from an older node without the newer fields still reads.
        let old = r#"{"partition":"default-0","group":1,"role":"leader","term":2,"leader":1,
            "commit":5,"applied":5,"voters":[1],"learners":[]}"#;
        let r: ReplicaReport = serde_json::from_str(old).unwrap();
        assert_eq!((r.keys, r.lag.len()), (0, 0));
        let event = RoutingEvent::Table {
            namespace: "users".into(),
            table: q,
        };
        let line = serde_json::to_string(&event).unwrap();
        assert!(
            line.starts_with(r#"{"event":"table","namespace":"users""#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<RoutingEvent>(&line).unwrap(), event);
        assert_eq!(
            serde_json::to_string(&RoutingEvent::Keepalive).unwrap(),
            r#"{"event":"keepalive"}"#
        );
    }
}

/// A proxy as PD lists it to the proxies (`POST /proxy/heartbeat`, `GET /proxies`): the
/// live proxies share Redis Cluster's slots between them when a cluster client asks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProxyInfo {
    /// Its cluster node id: 40 lowercase hex digits, stable across its restarts.
    pub id: String,
    /// The address cluster clients reach it at.
    pub addr: SocketAddr,
}

/// Whether `id` is a cluster node id: 40 lowercase hex digits.
pub fn valid_proxy_id(id: &str) -> bool {
    id.len() == 40 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
