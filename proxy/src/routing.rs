//! The proxy's routing tables: for every namespace PD publishes, its partition count, hash
//! tag setting, epoch and each partition's leader address; and the key rule of
//! [`zankv_commands::partitioning`] over them.
//!
//! [`SharedTables`] owns the tables in effect. Readers take a cheap snapshot
//! ([`SharedTables::load`]) and route a whole read of client requests with it; writers
//! (the PD stream, on-demand refreshes, leader hints from storage nodes) replace it whole.
//! Invariant: a table from PD replaces the namespace's table only when its epoch is newer
//! than the one held, so a late answer never rolls routing back; a leader hint changes
//! only the one partition's leader and keeps the epoch.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use zankv_commands::partitioning::{locate_key, partition_for};
use zankv_commands::CommandError;
use zankv_pd_api::QueryResponse;

/// One namespace's routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRoute {
    /// Its name.
    pub name: String,
    /// PD's epoch of this table.
    pub epoch: u64,
    /// Number of partitions.
    pub partitions: u32,
    /// `{...}` in a key picks the hashed part.
    pub hash_tags: bool,
    /// Per partition, its leader's RESP address (None while no leader is known).
    pub leaders: Vec<Option<SocketAddr>>,
    /// Per partition, its replicas' RESP addresses (the leader's among them), for reads
    /// that any replica may answer.
    pub replicas: Vec<Vec<SocketAddr>>,
    /// Whether any replica may answer reads of every connection (PD's `stale_reads`).
    pub stale_reads: bool,
}

impl NamespaceRoute {
    /// The route of PD's table `table` for namespace `name`.
    pub fn from_table(name: &str, table: &QueryResponse) -> NamespaceRoute {
        let addr = |node: &zankv_pd_api::QueryNode| {
            let ip: IpAddr = node.broadcast_address.parse().ok()?;
            let port: u16 = node.redis_port.parse().ok()?;
            Some(SocketAddr::new(ip, port))
        };
        let partition = |p: u32| table.partitions.get(&p.to_string());
        let leaders = (0..table.partition_num)
            .map(|p| addr(partition(p)?.leader.as_ref()?))
            .collect();
        let replicas = (0..table.partition_num)
            .map(|p| {
                partition(p)
                    .map(|q| q.replicas.iter().filter_map(addr).collect())
                    .unwrap_or_default()
            })
            .collect();
        NamespaceRoute {
            name: name.to_string(),
            epoch: table.epoch,
            partitions: table.partition_num,
            hash_tags: table.hash_tags,
            leaders,
            replicas,
            stale_reads: table.stale_reads,
        }
    }

    /// `<namespace>-<partition>`.
    pub fn partition_name(&self, partition: u32) -> String {
        zankv_pd_api::partition_name(&self.name, partition)
    }
}

/// Where one key goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTarget {
    /// The namespace.
    pub namespace: Arc<NamespaceRoute>,
    /// The partition.
    pub partition: u32,
}

impl KeyTarget {
    /// The partition's leader, if known.
    pub fn leader(&self) -> Option<SocketAddr> {
        self.namespace
            .leaders
            .get(self.partition as usize)
            .copied()
            .flatten()
    }

    /// A replica of the partition picked at random (a read any replica may answer), or
    /// the leader when no replica is known.
    pub fn any_replica(&self) -> Option<SocketAddr> {
        let replicas = self.namespace.replicas.get(self.partition as usize)?;
        if replicas.is_empty() {
            return self.leader();
        }
        Some(replicas[fastrand::usize(..replicas.len())])
    }

    /// Whether `other` is the same partition.
    pub fn same_partition(&self, other: &KeyTarget) -> bool {
        self.namespace.name == other.namespace.name && self.partition == other.partition
    }
}

/// Every namespace's route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingTables {
    namespaces: HashMap<String, Arc<NamespaceRoute>>,
    default: String,
}

impl RoutingTables {
    /// No tables yet; keys without a known namespace go to `default`.
    pub fn new(default: &str) -> RoutingTables {
        RoutingTables {
            namespaces: HashMap::new(),
            default: default.to_string(),
        }
    }

    /// The namespace `name`, if PD published it.
    pub fn namespace(&self, name: &str) -> Option<&Arc<NamespaceRoute>> {
        self.namespaces.get(name)
    }

    /// Every namespace, by name.
    pub fn namespaces(&self) -> impl Iterator<Item = &Arc<NamespaceRoute>> {
        self.namespaces.values()
    }

    /// The namespace of keys that name none (the default namespace's name).
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// Where `key` goes: the namespace it names, or the default namespace.
    pub fn locate(&self, key: &[u8]) -> Result<KeyTarget, CommandError> {
        let named = |name: &[u8]| {
            std::str::from_utf8(name)
                .ok()
                .and_then(|n| self.namespaces.get(n))
        };
        let (ns, hashed) = match locate_key(key, |name| named(name).is_some()) {
            (Some(name), rest) => (named(name), rest),
            (None, whole) => (self.namespaces.get(&self.default), whole),
        };
        let Some(ns) = ns else {
            return Err(CommandError::ClusterChanged(format!(
                "the proxy knows no namespace named {} yet",
                self.default
            )));
        };
        Ok(KeyTarget {
            namespace: ns.clone(),
            partition: partition_for(hashed, ns.partitions, ns.hash_tags),
        })
    }

    /// Every partition of every namespace, ordered by namespace name then partition (the
    /// order SCAN walks them in).
    pub fn all_partitions(&self) -> Vec<KeyTarget> {
        let mut namespaces: Vec<&Arc<NamespaceRoute>> = self.namespaces.values().collect();
        namespaces.sort_by(|a, b| a.name.cmp(&b.name));
        namespaces
            .into_iter()
            .flat_map(|ns| {
                (0..ns.partitions).map(move |partition| KeyTarget {
                    namespace: ns.clone(),
                    partition,
                })
            })
            .collect()
    }

    /// Takes PD's table for `name` if it is newer than the one held; answers whether it
    /// was.
    pub fn apply_table(&mut self, name: &str, table: &QueryResponse) -> bool {
        if self
            .namespaces
            .get(name)
            .is_some_and(|held| held.epoch >= table.epoch)
        {
            return false;
        }
        self.namespaces.insert(
            name.to_string(),
            Arc::new(NamespaceRoute::from_table(name, table)),
        );
        true
    }

    /// Takes a table fetched from PD after a routing error unless the one held is newer:
    /// at the same epoch PD's table replaces leaders learned from hints, which may have
    /// been wrong (a hinted leader that then died stays wrong until PD's epoch moves).
    pub fn apply_fetched_table(&mut self, name: &str, table: &QueryResponse) -> bool {
        if self
            .namespaces
            .get(name)
            .is_some_and(|held| held.epoch > table.epoch)
        {
            return false;
        }
        let fresh = Arc::new(NamespaceRoute::from_table(name, table));
        if self
            .namespaces
            .get(name)
            .is_some_and(|held| **held == *fresh)
        {
            return false;
        }
        self.namespaces.insert(name.to_string(), fresh);
        true
    }

    /// Forgets a deleted namespace.
    pub fn remove(&mut self, name: &str) -> bool {
        self.namespaces.remove(name).is_some()
    }

    /// A storage node named `leader` as the leader of `namespace`'s `partition`.
    pub fn hint_leader(&mut self, namespace: &str, partition: u32, leader: SocketAddr) -> bool {
        let Some(ns) = self.namespaces.get_mut(namespace) else {
            return false;
        };
        match ns.leaders.get(partition as usize) {
            Some(Some(held)) if *held == leader => false,
            Some(_) => {
                Arc::make_mut(ns).leaders[partition as usize] = Some(leader);
                true
            }
            None => false,
        }
    }
}

/// The tables in effect, replaced whole on every change.
#[derive(Debug)]
pub struct SharedTables {
    current: RwLock<Arc<RoutingTables>>,
}

impl SharedTables {
    /// Empty tables with `default` as the default namespace.
    pub fn new(default: &str) -> SharedTables {
        SharedTables {
            current: RwLock::new(Arc::new(RoutingTables::new(default))),
        }
    }

    /// A snapshot of the tables in effect.
    pub fn load(&self) -> Arc<RoutingTables> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Changes the tables with `change` (which answers whether it changed anything).
    pub fn update(&self, change: impl FnOnce(&mut RoutingTables) -> bool) -> bool {
        let mut guard = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = (**guard).clone();
        let changed = change(&mut next);
        if changed {
            *guard = Arc::new(next);
        }
        changed
    }
}

/// The leader address in a storage node's `ERR_CLUSTER_CHANGED: not leader of ns-p, leader
/// is node N at H:P` refusal, if it names one.
pub fn leader_hint(error: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(error).ok()?;
    let (_, after) = text.rsplit_once(" at ")?;
    after.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use zankv_commands::partitioning::partition_of;
    use zankv_pd_api::{QueryNode, QueryPartition};

    fn node(port: u16) -> QueryNode {
        QueryNode {
            node_id: port.to_string(),
            broadcast_address: "127.0.0.1".into(),
            hostname: "127.0.0.1".into(),
            redis_port: port.to_string(),
            http_port: "0".into(),
            grpc_port: "0".into(),
            version: "0".into(),
            dc_info: String::new(),
        }
    }

    fn table(epoch: u64, partitions: u32, hash_tags: bool) -> QueryResponse {
        QueryResponse {
            epoch,
            partition_num: partitions,
            replicator: 1,
            expire_policy: "wait_compact".into(),
            fsync_optimized: true,
            eng_type: "rockredis".into(),
            hash_tags,
            stale_reads: false,
            partitions: (0..partitions)
                .map(|p| {
                    (
                        p.to_string(),
                        QueryPartition {
                            // Partition 0 has no leader yet.
                            leader: (p > 0).then(|| node(1000 + p as u16)),
                            replicas: vec![],
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn keys_go_to_the_namespace_they_name_or_to_the_default_one() {
        let mut t = RoutingTables::new("default");
        assert!(matches!(
            t.locate(b"k"),
            Err(CommandError::ClusterChanged(_))
        ));
        assert!(t.apply_table("default", &table(1, 8, false)));
        assert!(t.apply_table("users", &table(1, 4, true)));
        let plain = t.locate(b"plain").unwrap();
        assert_eq!(plain.namespace.name, "default");
        assert_eq!(plain.partition, partition_of(b"plain", 8));
        let named = t.locate(b"users:t:k").unwrap();
        assert_eq!(named.namespace.name, "users");
        assert_eq!(named.partition, partition_of(b"t:k", 4));
        // An unknown prefix is part of a default-namespace key.
        let other = t.locate(b"other:k").unwrap();
        assert_eq!(other.namespace.name, "default");
        assert_eq!(other.partition, partition_of(b"other:k", 8));
        // Hash tags where the namespace enables them.
        let a = t.locate(b"users:{u1}:name").unwrap();
        assert_eq!(a.partition, partition_of(b"u1", 4));
        assert!(a.same_partition(&t.locate(b"users:{u1}:mail").unwrap()));
        assert_eq!(t.all_partitions().len(), 12);
    }

    #[test]
    fn older_tables_never_replace_newer_ones_and_hints_change_one_leader() {
        let mut t = RoutingTables::new("default");
        assert!(t.apply_table("default", &table(5, 2, false)));
        assert!(!t.apply_table("default", &table(4, 3, false)), "older");
        assert!(!t.apply_table("default", &table(5, 3, false)), "same epoch");
        let ns = t.namespace("default").unwrap().clone();
        assert_eq!(ns.partitions, 2);
        assert_eq!(ns.leaders[0], None);
        assert_eq!(ns.leaders[1], Some("127.0.0.1:1001".parse().unwrap()));
        let hinted: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        assert!(t.hint_leader("default", 0, hinted));
        assert!(!t.hint_leader("default", 0, hinted), "already so");
        assert!(!t.hint_leader("default", 9, hinted), "no such partition");
        assert_eq!(t.namespace("default").unwrap().leaders[0], Some(hinted));
        assert_eq!(
            ns.leaders[0], None,
            "snapshots taken before stay as they were"
        );
        // A fetched table of the same epoch undoes the hint; an older one does not.
        assert!(!t.apply_fetched_table("default", &table(4, 2, false)));
        assert!(t.apply_fetched_table("default", &table(5, 2, false)));
        assert_eq!(t.namespace("default").unwrap().leaders[0], None);
        assert!(
            !t.apply_fetched_table("default", &table(5, 2, false)),
            "unchanged"
        );
        assert!(t.remove("default"));
        assert!(t.locate(b"k").is_err());
    }

    #[test]
    fn leader_hints_are_read_from_refusals() {
        assert_eq!(
            leader_hint(b"ERR_CLUSTER_CHANGED: not leader of default-3, leader is node 2 at 127.0.0.1:22381"),
            Some("127.0.0.1:22381".parse().unwrap())
        );
        assert_eq!(
            leader_hint(b"ERR_CLUSTER_CHANGED: a leader change dropped the write"),
            None
        );
    }
}
