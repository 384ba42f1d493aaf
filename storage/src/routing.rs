//! Which raft group serves a command: the static namespace layout of the cluster and the key
//! rule of [`zankv_commands::partitioning`].
//!
//! A group is one partition of one namespace; its id is `namespace id << 32 | partition`, so
//! ids are stable across restarts and identical on every node. Invariant: every key of a
//! command maps to one group, or the command is refused with `CROSSSLOT`.

use bytes::Bytes;
use zankv_commands::partitioning::{partition_of, split_namespace};
use zankv_commands::{CommandError, CommandSpec};

use crate::config::NamespaceConfig;
use crate::replication::log_store::GroupId;

/// The group id of `partition` of namespace `ns_id`.
pub fn group_id(ns_id: u32, partition: u32) -> GroupId {
    (u64::from(ns_id) << 32) | u64::from(partition)
}

/// One partition of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLayout {
    /// Its group id.
    pub id: GroupId,
    /// `<namespace>-<partition>`: its name in logs, metrics and on disk.
    pub name: String,
    /// Node ids holding its replicas initially.
    pub replicas: Vec<u64>,
    /// Whether followers answer reads from their own state (the namespace's setting).
    pub stale_reads: bool,
}

/// The namespaces of the cluster and how keys map to their partitions.
#[derive(Debug, Clone)]
pub struct Routing {
    namespaces: Vec<NamespaceConfig>,
    default: usize,
}

impl Routing {
    /// A routing table over validated namespaces; `default` must be one of them.
    pub fn new(namespaces: Vec<NamespaceConfig>, default: &str) -> Self {
        let default = namespaces
            .iter()
            .position(|ns| ns.name == default)
            .expect("the default namespace is validated to exist");
        Routing {
            namespaces,
            default,
        }
    }

    /// Every partition of every namespace.
    pub fn groups(&self) -> Vec<GroupLayout> {
        self.namespaces
            .iter()
            .flat_map(|ns| {
                (0..ns.partitions).map(move |p| GroupLayout {
                    id: group_id(ns.id, p),
                    name: format!("{}-{p}", ns.name),
                    replicas: ns.replicas.clone(),
                    stale_reads: ns.stale_reads,
                })
            })
            .collect()
    }

    /// The partition with group id `group`.
    pub fn layout(&self, group: GroupId) -> Option<GroupLayout> {
        self.groups().into_iter().find(|g| g.id == group)
    }

    /// The partition named `name` (`<namespace>-<partition>`).
    pub fn layout_by_name(&self, name: &str) -> Option<GroupLayout> {
        self.groups().into_iter().find(|g| g.name == name)
    }

    /// The group `key` belongs to.
    pub fn key_group(&self, key: &[u8]) -> GroupId {
        let (ns, hashed) = match split_namespace(key) {
            Some((name, rest)) => {
                match self.namespaces.iter().find(|ns| ns.name.as_bytes() == name) {
                    Some(ns) => (ns, rest),
                    None => (&self.namespaces[self.default], key),
                }
            }
            None => (&self.namespaces[self.default], key),
        };
        group_id(ns.id, partition_of(hashed, ns.partitions))
    }

    /// The group that must execute a data command: the group of all its keys, or, for a
    /// keyless command, the only partition of the cluster.
    pub fn route(&self, spec: &CommandSpec, argv: &[Bytes]) -> Result<GroupId, CommandError> {
        let mut group = None;
        for pos in spec.key_positions(argv.len()) {
            let g = self.key_group(&argv[pos]);
            if group.is_some_and(|other| other != g) {
                return Err(CommandError::CrossSlot);
            }
            group = Some(g);
        }
        match group {
            Some(g) => Ok(g),
            None => match self.namespaces.as_slice() {
                [only] if only.partitions == 1 => Ok(group_id(only.id, 0)),
                _ => Err(CommandError::KeylessOnManyPartitions),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, id: u32, partitions: u32) -> NamespaceConfig {
        NamespaceConfig {
            name: name.into(),
            id,
            partitions,
            replicas: vec![1, 2, 3],
            stale_reads: false,
        }
    }

    fn argv(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn keys_go_to_their_namespace_or_the_default() {
        let r = Routing::new(vec![ns("default", 1, 8), ns("users", 2, 4)], "default");
        // A known namespace prefix: the rest is hashed.
        assert_eq!(
            r.key_group(b"users:t:k"),
            group_id(2, partition_of(b"t:k", 4))
        );
        // An unknown prefix or none: the whole key, in the default namespace.
        assert_eq!(
            r.key_group(b"other:k"),
            group_id(1, partition_of(b"other:k", 8))
        );
        assert_eq!(
            r.key_group(b"plain"),
            group_id(1, partition_of(b"plain", 8))
        );
        assert_eq!(r.groups().len(), 12);
        assert_eq!(r.groups()[9].name, "users-1");
    }

    #[test]
    fn multi_key_commands_must_stay_in_one_group() {
        let r = Routing::new(vec![ns("default", 1, 8)], "default");
        let mset = zankv_commands::lookup(b"mset").unwrap();
        let (a, b) = (0..100)
            .map(|i| format!("k{i}"))
            .find_map(|k| {
                let other = (0..100)
                    .map(|j| format!("j{j}"))
                    .find(|j| r.key_group(j.as_bytes()) != r.key_group(k.as_bytes()))?;
                Some((k, other))
            })
            .unwrap();
        assert_eq!(
            r.route(mset, &argv(&["mset", &a, "1", &b, "2"])),
            Err(CommandError::CrossSlot)
        );
        // Values of MSET are not keys: only the keys decide.
        assert_eq!(
            r.route(mset, &argv(&["mset", &a, &b])),
            Ok(r.key_group(a.as_bytes()))
        );
        let dbsize = zankv_commands::lookup(b"dbsize").unwrap();
        assert_eq!(
            r.route(dbsize, &argv(&["dbsize"])),
            Err(CommandError::KeylessOnManyPartitions)
        );
        let single = Routing::new(vec![ns("default", 7, 1)], "default");
        assert_eq!(single.route(dbsize, &argv(&["dbsize"])), Ok(group_id(7, 0)));
    }
}
