//! Which raft group serves a command: the namespace layout of the cluster and the key rule
//! of [`zankv_commands::partitioning`].
//!
//! A group is one partition of one namespace; its id is `namespace id << 32 | partition`, so
//! ids are stable across restarts and identical on every node. The layout comes from the
//! static configuration or, on a node managed by PD, from PD's catalog; [`SharedRouting`]
//! holds the one in effect and replaces it whole when the catalog changes. Invariant: every
//! key of a command maps to one group, or the command is refused (`CROSSSLOT`).

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use zankv_commands::partitioning::{locate_key, partition_for};
use zankv_commands::sort::{pattern_keys, PatternOption};
use zankv_commands::{CommandError, CommandSpec};
use zankv_pd_api::NamespaceMeta;

use crate::config::NamespaceConfig;
use crate::replication::log_store::GroupId;

/// The group id of `partition` of namespace `ns_id`.
pub fn group_id(ns_id: u32, partition: u32) -> GroupId {
    zankv_pd_api::group_id(ns_id, partition)
}

/// One partition of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLayout {
    /// Its group id.
    pub id: GroupId,
    /// `<namespace>-<partition>`: its name in logs, metrics and on disk.
    pub name: String,
    /// Node ids holding its replicas initially (the group's initial voters).
    pub replicas: Vec<u64>,
    /// Whether followers answer reads from their own state (the namespace's setting).
    pub stale_reads: bool,
}

/// A namespace as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceLayout {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: u32,
    /// Number of partitions.
    pub partitions: u32,
    /// Per partition, its initial voters.
    pub initial_replicas: Vec<Vec<u64>>,
    /// Followers answer reads from their own state.
    pub stale_reads: bool,
    /// `{...}` in a key picks the hashed part.
    pub hash_tags: bool,
}

impl From<&NamespaceConfig> for NamespaceLayout {
    /// A static namespace: every partition on the same replicas.
    fn from(ns: &NamespaceConfig) -> Self {
        NamespaceLayout {
            name: ns.name.clone(),
            id: ns.id,
            partitions: ns.partitions,
            initial_replicas: vec![ns.replicas.clone(); ns.partitions as usize],
            stale_reads: ns.stale_reads,
            hash_tags: false,
        }
    }
}

impl From<&NamespaceMeta> for NamespaceLayout {
    /// A namespace of PD's catalog.
    fn from(ns: &NamespaceMeta) -> Self {
        NamespaceLayout {
            name: ns.name.clone(),
            id: ns.id,
            partitions: ns.partition_num,
            initial_replicas: ns.initial_replicas.clone(),
            stale_reads: ns.stale_reads,
            hash_tags: ns.hash_tags,
        }
    }
}

impl NamespaceLayout {
    fn group(&self, p: u32) -> GroupLayout {
        GroupLayout {
            id: group_id(self.id, p),
            name: format!("{}-{p}", self.name),
            replicas: self
                .initial_replicas
                .get(p as usize)
                .cloned()
                .unwrap_or_default(),
            stale_reads: self.stale_reads,
        }
    }

    fn key_group(&self, hashed: &[u8]) -> GroupId {
        group_id(
            self.id,
            partition_for(hashed, self.partitions, self.hash_tags),
        )
    }
}

/// The namespaces of the cluster and how keys map to their partitions.
#[derive(Debug, Clone)]
pub struct Routing {
    namespaces: Vec<NamespaceLayout>,
    /// Index of the default namespace, if it exists (on a PD-managed node it may not yet).
    default: Option<usize>,
    default_name: String,
}

impl Routing {
    /// A routing table over validated namespaces; keys of no known namespace go to
    /// `default`.
    pub fn new(namespaces: Vec<NamespaceLayout>, default: &str) -> Self {
        let index = namespaces.iter().position(|ns| ns.name == default);
        Routing {
            namespaces,
            default: index,
            default_name: default.to_string(),
        }
    }

    /// The namespaces.
    pub fn namespaces(&self) -> &[NamespaceLayout] {
        &self.namespaces
    }

    /// Every partition of every namespace.
    pub fn groups(&self) -> Vec<GroupLayout> {
        self.namespaces
            .iter()
            .flat_map(|ns| (0..ns.partitions).map(move |p| ns.group(p)))
            .collect()
    }

    /// The partition with group id `group`.
    pub fn layout(&self, group: GroupId) -> Option<GroupLayout> {
        let ns = self
            .namespaces
            .iter()
            .find(|ns| u64::from(ns.id) == group >> 32)?;
        let p = (group & u64::from(u32::MAX)) as u32;
        (p < ns.partitions).then(|| ns.group(p))
    }

    /// The partition named `name` (`<namespace>-<partition>`).
    pub fn layout_by_name(&self, name: &str) -> Option<GroupLayout> {
        let (ns, p) = name.rsplit_once('-')?;
        let p: u32 = p.parse().ok()?;
        let ns = self.namespaces.iter().find(|n| n.name == ns)?;
        (p < ns.partitions && name == format!("{}-{p}", ns.name)).then(|| ns.group(p))
    }

    /// The group of every key a SORT pattern (with a `*`) can form, if they are all in one:
    /// when the cluster is one partition; or when the pattern fixes the namespace (its first
    /// `:` comes before the `*`, so no element can change it) and the partition (that
    /// namespace has one partition, or hashes tags and the pattern's tag closes before the
    /// `*`).
    fn pattern_group(&self, pattern: &[u8]) -> Option<GroupId> {
        if let [only] = self.namespaces.as_slice() {
            if only.partitions == 1 {
                return Some(group_id(only.id, 0));
            }
        }
        let star = pattern.iter().position(|&b| b == b'*')?;
        let prefix = &pattern[..star];
        prefix.iter().position(|&b| b == b':')?;
        let named = |name: &[u8]| self.namespaces.iter().find(|ns| ns.name.as_bytes() == name);
        let (ns, hashed) = match locate_key(prefix, |name| named(name).is_some()) {
            (Some(name), rest) => (named(name)?, rest),
            (None, whole) => (&self.namespaces[self.default?], whole),
        };
        if ns.partitions == 1 {
            return Some(group_id(ns.id, 0));
        }
        if !ns.hash_tags {
            return None;
        }
        let open = hashed.iter().position(|&b| b == b'{')?;
        let len = hashed[open + 1..].iter().position(|&b| b == b'}')?;
        (len > 0).then(|| ns.key_group(&hashed[open..open + len + 2]))
    }

    /// The group `key` belongs to.
    pub fn key_group(&self, key: &[u8]) -> Result<GroupId, CommandError> {
        let named = |name: &[u8]| self.namespaces.iter().find(|ns| ns.name.as_bytes() == name);
        if let (Some(name), rest) = locate_key(key, |name| named(name).is_some()) {
            if let Some(ns) = named(name) {
                return Ok(ns.key_group(rest));
            }
        }
        match self.default {
            Some(i) => Ok(self.namespaces[i].key_group(key)),
            None => Err(CommandError::ClusterChanged(format!(
                "no namespace named {} is known to this node",
                self.default_name
            ))),
        }
    }

    /// The group that must execute a data command: the group of all its keys, or, for a
    /// keyless command, the only partition of the cluster.
    pub fn route(&self, spec: &CommandSpec, argv: &[Bytes]) -> Result<GroupId, CommandError> {
        let mut group = None;
        for pos in spec.key_positions(argv) {
            let g = self.key_group(&argv[pos])?;
            if group.is_some_and(|other| other != g) {
                return Err(CommandError::CrossSlot);
            }
            group = Some(g);
        }
        if let Some(g) = group {
            for (option, pattern) in pattern_keys(spec, argv) {
                if self.pattern_group(pattern) != Some(g) {
                    return Err(match option {
                        PatternOption::By => CommandError::SortByDenied,
                        PatternOption::Get => CommandError::SortGetDenied,
                    });
                }
            }
        }
        match group {
            Some(g) => Ok(g),
            None => match self.namespaces.as_slice() {
                [only] if only.partitions == 1 => Ok(group_id(only.id, 0)),
                [] => Err(CommandError::ClusterChanged(
                    "no namespace is known to this node".into(),
                )),
                _ => Err(CommandError::KeylessOnManyPartitions),
            },
        }
    }
}

/// The routing table in effect, replaced whole when the layout changes (a PD catalog).
/// Readers take a cheap snapshot ([`SharedRouting::load`]) and use it for a whole batch.
#[derive(Debug)]
pub struct SharedRouting {
    current: RwLock<Arc<Routing>>,
}

impl SharedRouting {
    /// Starts with `routing`.
    pub fn new(routing: Routing) -> Self {
        SharedRouting {
            current: RwLock::new(Arc::new(routing)),
        }
    }

    /// The table in effect now.
    pub fn load(&self) -> Arc<Routing> {
        self.current.read().expect("routing lock poisoned").clone()
    }

    /// Puts `routing` in effect.
    pub fn replace(&self, routing: Routing) {
        *self.current.write().expect("routing lock poisoned") = Arc::new(routing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zankv_commands::partitioning::partition_of;

    fn ns(name: &str, id: u32, partitions: u32) -> NamespaceLayout {
        NamespaceLayout::from(&NamespaceConfig {
            name: name.into(),
            id,
            partitions,
            replicas: vec![1, 2, 3],
            stale_reads: false,
        })
    }

    fn argv(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn sort_patterns_must_stay_in_the_sorted_keys_partition() {
        let route = |r: &Routing, words: &[&str]| {
            let v = argv(words);
            let (_, spec) = zankv_commands::parse(&v).expect("parses");
            r.route(spec, &v)
        };
        // One partition in all: every pattern is fine.
        let single = Routing::new(vec![ns("default", 1, 1)], "default");
        assert!(route(&single, &["sort", "k", "by", "w_*", "get", "o_*->f"]).is_ok());
        // Several partitions, no hash tags: a pattern's keys could be anywhere.
        let plain = Routing::new(vec![ns("default", 1, 8)], "default");
        assert_eq!(
            route(&plain, &["sort", "k", "by", "w_*"]),
            Err(CommandError::SortByDenied)
        );
        assert_eq!(
            route(&plain, &["sort_ro", "k", "get", "#", "get", "o_*"]),
            Err(CommandError::SortGetDenied)
        );
        // Patterns that read nothing: BY without `*` (no sorting), GET # and GET without `*`.
        assert!(route(
            &plain,
            &["sort", "k", "by", "nosort", "get", "#", "get", "x"]
        )
        .is_ok());
        // With hash tags, a tag before the `*` fixes the partition: the key's is accepted.
        let mut tagged = ns("default", 1, 8);
        tagged.hash_tags = true;
        let tagged = Routing::new(vec![tagged], "default");
        let key = "user:{42}:list";
        assert!(route(&tagged, &["sort", key, "by", "user:{42}:w_*"]).is_ok());
        let other = (0..100)
            .map(|i| format!("{i}"))
            .find(|t| {
                tagged.key_group(format!("{{{t}}}").as_bytes()) != tagged.key_group(key.as_bytes())
            })
            .expect("some tag lives elsewhere");
        let elsewhere = format!("user:{{{other}}}:w_*");
        assert_eq!(
            route(&tagged, &["sort", key, "by", &elsewhere]),
            Err(CommandError::SortByDenied)
        );
        // A tag the element could change (after the `*`) or no colon before it: denied.
        assert!(route(&tagged, &["sort", key, "by", "user:w_*:{42}"]).is_err());
        assert!(route(&tagged, &["sort", key, "by", "{42}w_*"]).is_err());
        // STORE's destination is a key too.
        assert_eq!(
            route(&plain, &["sort", "k", "store", "elsewhere-dst-1"]).is_ok(),
            plain.key_group(b"k") == plain.key_group(b"elsewhere-dst-1")
        );
    }

    #[test]
    fn keys_go_to_their_namespace_or_the_default() {
        let r = Routing::new(vec![ns("default", 1, 8), ns("users", 2, 4)], "default");
        // A known namespace prefix: the rest is hashed.
        assert_eq!(
            r.key_group(b"users:t:k"),
            Ok(group_id(2, partition_of(b"t:k", 4)))
        );
        // An unknown prefix or none: the whole key, in the default namespace.
        assert_eq!(
            r.key_group(b"other:k"),
            Ok(group_id(1, partition_of(b"other:k", 8)))
        );
        assert_eq!(
            r.key_group(b"plain"),
            Ok(group_id(1, partition_of(b"plain", 8)))
        );
        assert_eq!(r.groups().len(), 12);
        assert_eq!(r.groups()[9].name, "users-1");
        assert_eq!(r.layout(group_id(2, 1)), Some(r.groups()[9].clone()));
        assert_eq!(r.layout_by_name("users-1"), Some(r.groups()[9].clone()));
        for missing in ["users-4", "users-01", "users", "nobody-0", "users-x", "-1"] {
            assert_eq!(r.layout_by_name(missing), None, "{missing}");
        }
        assert_eq!(r.layout(group_id(2, 4)), None);
        assert_eq!(r.layout(group_id(3, 0)), None);
    }

    #[test]
    fn hash_tags_keep_related_keys_together_only_where_enabled() {
        let mut tagged = ns("tagged", 3, 64);
        tagged.hash_tags = true;
        let r = Routing::new(vec![ns("default", 1, 64), tagged], "default");
        let name = r.key_group(b"tagged:{user1}:name").unwrap();
        assert_eq!(r.key_group(b"tagged:{user1}:mail"), Ok(name));
        assert_eq!(name, group_id(3, partition_of(b"user1", 64)));
        // Without hash tags the braces are ordinary bytes.
        assert_eq!(
            r.key_group(b"{user1}:name"),
            Ok(group_id(1, partition_of(b"{user1}:name", 64)))
        );
    }

    #[test]
    fn a_node_without_the_default_namespace_says_so() {
        let r = Routing::new(vec![ns("users", 2, 4)], "default");
        assert!(r.key_group(b"users:t:k").is_ok());
        let err = r.key_group(b"plain").unwrap_err();
        assert_eq!(
            err.to_string(),
            "ERR_CLUSTER_CHANGED: no namespace named default is known to this node"
        );
        let none = Routing::new(vec![], "default");
        let dbsize = zankv_commands::lookup(b"dbsize").unwrap();
        assert_eq!(
            none.route(dbsize, &argv(&["dbsize"]))
                .unwrap_err()
                .to_string(),
            "ERR_CLUSTER_CHANGED: no namespace is known to this node"
        );
    }

    #[test]
    fn pd_namespaces_keep_each_partition_s_replicas() {
        let meta = NamespaceMeta {
            name: "orders".into(),
            id: 9,
            partition_num: 2,
            replicator: 2,
            expiration_policy: zankv_pd_api::ExpirationPolicy::WaitCompact,
            tags: vec![],
            hash_tags: true,
            stale_reads: false,
            initial_replicas: vec![vec![1, 2], vec![2, 3]],
        };
        let r = Routing::new(vec![NamespaceLayout::from(&meta)], "default");
        assert_eq!(r.layout_by_name("orders-1").unwrap().replicas, vec![2, 3]);
        assert_eq!(r.layout(group_id(9, 0)).unwrap().replicas, vec![1, 2]);
        let shared = SharedRouting::new(Routing::new(vec![], "default"));
        let before = shared.load();
        shared.replace(r);
        assert!(
            before.groups().is_empty(),
            "a snapshot taken before stays as it was"
        );
        assert_eq!(shared.load().groups().len(), 2);
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
            r.key_group(a.as_bytes())
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
