//! Storage node configuration: a TOML file (see conf/storage.toml) overridden by command-line
//! flags. Every key has a default in code; unknown keys are rejected at start.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use zankv_pd_api::Secret;

/// The whole configuration of a storage node.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory holding every partition's database.
    pub data_dir: PathBuf,
    /// Address the RESP server listens on.
    pub redis_addr: SocketAddr,
    /// Address of the HTTP endpoint (`/ping`, `/status`, `/metrics`); by default the RESP
    /// address's host with the port just below it (12380 beside 12381), so nodes given
    /// only different RESP ports do not collide.
    pub http_addr: Option<SocketAddr>,
    /// Most simultaneous client connections (Redis's `maxclients`).
    pub max_clients: usize,
    /// Keyspace notifications for the node's own clients (Redis's
    /// `notify-keyspace-events`, e.g. `KEA`; empty: none). Proxies ask for their own.
    pub notify_keyspace_events: String,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing directive).
    pub log_level: String,
    /// Request-size limits.
    pub limits: LimitsConfig,
    /// RocksDB sizing shared by all partitions.
    pub rocksdb: RocksConfig,
    /// This node's id in the cluster; it is also the raft replica id of every replica the
    /// node hosts. Unique per cluster, never reused.
    pub node_id: u64,
    /// Address raft traffic from other storage nodes arrives on; by default the RESP
    /// address's host with the port just above it.
    pub raft_addr: Option<SocketAddr>,
    /// Namespace of keys that do not start with `<known namespace>:`.
    pub default_namespace: String,
    /// Raft timing and limits.
    pub raft: RaftConfig,
    /// The storage nodes of a static cluster (without PD); this node may be among them.
    pub nodes: Vec<NodeConfig>,
    /// When set, the HTTP endpoint's admin (mutating) operations require the header
    /// `Authorization: Bearer <admin_token>`. Never logged.
    pub admin_token: Option<Secret>,
    /// Threads that apply committed entries and serve reads, shared by all partitions
    /// (0 = as many as CPUs, at most 4).
    pub apply_threads: usize,
    /// Threads of the async runtime that serves RESP clients, the HTTP endpoint, the raft
    /// listener and snapshot transfers (0 = one per CPU; raft messages travel on the store
    /// loop's own thread). Where several nodes share a machine's cores, 1 wastes less on
    /// waking threads.
    pub io_threads: usize,
    /// Namespaces of a static cluster. When empty (and no PD is configured), one
    /// namespace named after `default_namespace` with one partition replicated on this
    /// node alone.
    pub namespaces: Vec<NamespaceConfig>,
    /// HTTP addresses of the placement driver's members. When set, the node is managed by
    /// PD: it registers and heartbeats there, takes its namespaces and peers from PD's
    /// catalog, and hosts the replicas PD asks for; `nodes` and `namespaces` must then be
    /// empty. The node sends `admin_token` with its heartbeats.
    pub pd_addrs: Vec<SocketAddr>,
    /// The IP address other nodes, PD and clients reach this node at; by default the
    /// RESP address's IP (which must then not be `0.0.0.0` or `::`).
    pub broadcast_address: Option<IpAddr>,
    /// Data center of this node: PD spreads each partition's replicas across data
    /// centers.
    pub dc_info: String,
    /// Placement tags: PD places a namespace created with tags only on nodes having all of
    /// them.
    pub tags: Vec<String>,
    /// Milliseconds between heartbeats to PD.
    pub heartbeat_ms: u64,
}

/// Raft timing and limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RaftConfig {
    /// Length of one raft tick in milliseconds.
    pub tick_ms: u64,
    /// Ticks without a leader before a follower campaigns (randomised up to twice this).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// How long a client waits for its write to commit before it is told the outcome is
    /// unknown, in milliseconds.
    pub write_timeout_ms: u64,
    /// A group's raft log is compacted once it holds more entries than this (ZanRedisDB's
    /// snap_count).
    pub log_compact_entries: usize,
    /// Entries kept after compaction so that a follower a little behind catches up from
    /// the log rather than by snapshot (ZanRedisDB's snap_catchup).
    pub log_catchup_entries: u64,
    /// A group's raft log is also compacted once its entries hold more than this many MiB
    /// (the log is kept in memory).
    pub log_compact_mb: usize,
    /// Most MiB per second all snapshot transfers of this node send together (0 = no
    /// limit).
    pub snapshot_rate_mb: u64,
    /// How a leader confirms that it still leads before answering a read.
    pub read_mode: ReadMode,
    /// Largest replicated write (a command's arguments), in MiB, 1..512. Larger writes are
    /// refused: every one is held in memory by the raft log of each replica.
    pub max_entry_mb: usize,
}

/// How leaders confirm linearizable reads.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// ReadIndex: one heartbeat round to a quorum, shared by all reads waiting then.
    ReadIndex,
    /// The leader's lease (check-quorum): no round trip; assumes clocks drift less than
    /// an election timeout.
    Lease,
}

/// Another storage node of a static cluster.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Its node id.
    pub id: u64,
    /// Where it receives raft traffic.
    pub raft_addr: SocketAddr,
    /// Where it serves RESP (named in leader hints).
    pub redis_addr: SocketAddr,
}

/// A namespace of a static cluster.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Its name: 1 to 255 characters of `[A-Za-z0-9_]`.
    pub name: String,
    /// Its id (1..65535), unique in the cluster; raft groups are numbered from it.
    pub id: u32,
    /// Number of partitions (1..1024).
    pub partitions: u32,
    /// Node ids holding a replica of every partition (1 to 5 nodes): the initial
    /// membership of each partition's raft group.
    pub replicas: Vec<u64>,
    /// Followers answer reads from their own applied state (possibly stale) instead of
    /// sending clients to the leader. Off by default: reads are linearizable.
    #[serde(default)]
    pub stale_reads: bool,
}

/// Request-size limits (Redis's defaults).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest bulk argument in bytes (`proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Largest inline request in bytes.
    pub max_inline_len: usize,
    /// Largest unparsed request buffer per client in bytes (`client-query-buffer-limit`).
    pub max_query_buffer: usize,
}

/// RocksDB sizing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RocksConfig {
    /// Block cache shared by every partition, in MiB.
    pub block_cache_mb: usize,
    /// Memtable memory of all partitions together, in MiB: each partition hosted at start
    /// gets an equal share (between 1 and 64 MiB), and the raft log gets half of it (at
    /// most 64 MiB).
    pub write_buffer_budget_mb: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./zankv-data/storage"),
            redis_addr: SocketAddr::from(([127, 0, 0, 1], 12381)),
            http_addr: None,
            max_clients: 10_000,
            notify_keyspace_events: String::new(),
            log_level: "info".into(),
            limits: LimitsConfig::default(),
            rocksdb: RocksConfig::default(),
            node_id: 1,
            raft_addr: None,
            default_namespace: "default".into(),
            raft: RaftConfig::default(),
            nodes: Vec::new(),
            admin_token: None,
            apply_threads: 0,
            io_threads: 0,
            namespaces: Vec::new(),
            pd_addrs: Vec::new(),
            broadcast_address: None,
            dc_info: String::new(),
            tags: Vec::new(),
            heartbeat_ms: 2000,
        }
    }
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            write_timeout_ms: 10_000,
            log_compact_entries: 20_000,
            log_catchup_entries: 5_000,
            log_compact_mb: 64,
            snapshot_rate_mb: 100,
            read_mode: ReadMode::ReadIndex,
            max_entry_mb: 64,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_bulk_len: 512 * 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_query_buffer: 1024 * 1024 * 1024,
        }
    }
}

impl Default for RocksConfig {
    fn default() -> Self {
        RocksConfig {
            block_cache_mb: 256,
            write_buffer_budget_mb: 256,
        }
    }
}

impl StorageConfig {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let config: StorageConfig =
            toml::from_str(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// The HTTP address in effect (see [`StorageConfig::http_addr`]).
    pub fn effective_http_addr(&self) -> SocketAddr {
        self.http_addr.unwrap_or_else(|| {
            let port = self.redis_addr.port().saturating_sub(1);
            SocketAddr::new(self.redis_addr.ip(), port)
        })
    }

    /// The number of apply threads in effect (see [`StorageConfig::apply_threads`]).
    pub fn apply_threads(&self) -> usize {
        match self.apply_threads {
            0 => std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(4),
            n => n,
        }
    }

    /// The raft address in effect (see [`StorageConfig::raft_addr`]).
    pub fn effective_raft_addr(&self) -> SocketAddr {
        self.raft_addr.unwrap_or_else(|| {
            // Port 0 (any free port) stays 0.
            let port = match self.redis_addr.port() {
                0 => 0,
                p => p.saturating_add(1),
            };
            SocketAddr::new(self.redis_addr.ip(), port)
        })
    }

    /// Whether PD manages this node (see [`StorageConfig::pd_addrs`]).
    pub fn pd_managed(&self) -> bool {
        !self.pd_addrs.is_empty()
    }

    /// The address this node is reached at (see [`StorageConfig::broadcast_address`]).
    pub fn effective_broadcast_address(&self) -> IpAddr {
        self.broadcast_address.unwrap_or(self.redis_addr.ip())
    }

    /// The namespaces of the static configuration in effect (see
    /// [`StorageConfig::namespaces`]); none on a node managed by PD.
    pub fn effective_namespaces(&self) -> Vec<NamespaceConfig> {
        if self.pd_managed() {
            Vec::new()
        } else if self.namespaces.is_empty() {
            vec![NamespaceConfig {
                name: self.default_namespace.clone(),
                id: 1,
                partitions: 1,
                replicas: vec![self.node_id],
                stale_reads: false,
            }]
        } else {
            self.namespaces.clone()
        }
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        self.validate_limits()?;
        self.validate_cluster()
    }

    fn validate_pd(&self) -> Result<(), String> {
        if !self.pd_managed() {
            return Ok(());
        }
        if !self.namespaces.is_empty() || !self.nodes.is_empty() {
            return Err("a node managed by PD (pd_addrs) takes its namespaces and nodes from PD: remove [[namespaces]] and [[nodes]]".into());
        }
        if self.effective_broadcast_address().is_unspecified() {
            return Err(format!(
                "redis_addr {} listens on every address: set broadcast_address to the IP other nodes reach this node at",
                self.redis_addr
            ));
        }
        if self.heartbeat_ms == 0 {
            return Err("heartbeat_ms must be positive".into());
        }
        if self.tags.iter().any(|t| t.is_empty()) {
            return Err("tags must not be empty strings".into());
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), String> {
        if self.node_id == 0 || self.node_id > zankv_pd_api::MAX_NODE_ID {
            return Err(format!(
                "node_id must be within 1..={}",
                zankv_pd_api::MAX_NODE_ID
            ));
        }
        self.validate_pd()?;
        let r = &self.raft;
        if r.tick_ms == 0 || r.heartbeat_ticks == 0 || r.election_ticks <= r.heartbeat_ticks {
            return Err(
                "raft: tick_ms and heartbeat_ticks must be positive and election_ticks larger than heartbeat_ticks"
                    .into(),
            );
        }
        if r.write_timeout_ms == 0 {
            return Err("raft.write_timeout_ms must be positive".into());
        }
        if r.log_compact_mb == 0 {
            return Err("raft.log_compact_mb must be at least 1".into());
        }
        if !(1..=512).contains(&r.max_entry_mb) {
            return Err("raft.max_entry_mb must be within 1..512".into());
        }
        if r.log_catchup_entries >= r.log_compact_entries as u64 {
            return Err(
                "raft.log_catchup_entries must be smaller than raft.log_compact_entries".into(),
            );
        }
        // This node may be listed too, so that every node of a cluster can share one list.
        let mut known = vec![self.node_id];
        for (i, n) in self.nodes.iter().enumerate() {
            if n.id == 0
                || n.id > zankv_pd_api::MAX_NODE_ID
                || self.nodes[..i].iter().any(|o| o.id == n.id)
            {
                return Err(format!("nodes: node id {} is zero or listed twice", n.id));
            }
            known.push(n.id);
        }
        let namespaces = self.effective_namespaces();
        if !self.pd_managed()
            && !namespaces
                .iter()
                .any(|ns| ns.name == self.default_namespace)
        {
            return Err(format!(
                "default_namespace {:?} is not among the namespaces",
                self.default_namespace
            ));
        }
        for (i, ns) in namespaces.iter().enumerate() {
            if !zankv_pd_api::valid_namespace_name(&ns.name) {
                return Err(format!(
                    "namespace name {:?} must be 1 to 255 characters of [A-Za-z0-9_]",
                    ns.name
                ));
            }
            if ns.id == 0 || ns.id > 65535 {
                return Err(format!("namespace {}: id must be within 1..65535", ns.name));
            }
            if !(1..=1024).contains(&ns.partitions) {
                return Err(format!(
                    "namespace {}: partitions must be within 1..1024",
                    ns.name
                ));
            }
            if !(1..=5).contains(&ns.replicas.len()) {
                return Err(format!(
                    "namespace {}: replicas must list 1 to 5 node ids",
                    ns.name
                ));
            }
            for (j, id) in ns.replicas.iter().enumerate() {
                if !known.contains(id) {
                    return Err(format!(
                        "namespace {}: replica node {id} is neither node_id nor in [[nodes]]",
                        ns.name
                    ));
                }
                if ns.replicas[..j].contains(id) {
                    return Err(format!("namespace {}: node {id} listed twice", ns.name));
                }
            }
            if namespaces[..i]
                .iter()
                .any(|o| o.name == ns.name || o.id == ns.id)
            {
                return Err(format!("namespace {}: name or id used twice", ns.name));
            }
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), String> {
        if self.max_clients == 0 {
            return Err("max_clients must be at least 1".into());
        }
        zankv_commands::notify::parse(&self.notify_keyspace_events)
            .map_err(|e| format!("notify_keyspace_events: {e}"))?;
        if self.limits.max_bulk_len == 0 || self.limits.max_inline_len == 0 {
            return Err("limits must be positive".into());
        }
        if self.limits.max_query_buffer < self.limits.max_inline_len {
            return Err("limits.max_query_buffer must be at least limits.max_inline_len".into());
        }
        if self.rocksdb.write_buffer_budget_mb == 0 {
            return Err("rocksdb.write_buffer_budget_mb must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_in_conf_loads_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/storage.toml");
        let config = StorageConfig::load(&path).expect("conf/storage.toml loads");
        let defaults = StorageConfig::default();
        assert_eq!(config.limits, defaults.limits);
        assert_eq!(config.rocksdb, defaults.rocksdb);
        assert_eq!(config.max_clients, defaults.max_clients);
        // The file spells out the default addresses.
        assert_eq!(config.redis_addr, defaults.redis_addr);
        assert_eq!(config.effective_http_addr(), defaults.effective_http_addr());
        assert_eq!(
            defaults.effective_http_addr().to_string(),
            "127.0.0.1:12380"
        );
        assert_eq!(config.raft, defaults.raft);
        assert_eq!(config.node_id, defaults.node_id);
        assert_eq!(config.default_namespace, defaults.default_namespace);
        assert!(config.namespaces.is_empty() && config.nodes.is_empty());
        assert_eq!(
            (config.heartbeat_ms, &config.dc_info, &config.tags),
            (defaults.heartbeat_ms, &defaults.dc_info, &defaults.tags)
        );
        assert!(!config.pd_managed());
        // Uncommenting pd_addrs gives a valid PD-managed node.
        let text = std::fs::read_to_string(&path).unwrap();
        let managed: StorageConfig =
            toml::from_str(&text.replace("# pd_addrs = [", "pd_addrs = [")).unwrap();
        managed.validate().unwrap();
        assert!(managed.pd_managed());
    }

    #[test]
    fn the_commented_cluster_example_is_a_valid_cluster() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/storage.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let (_, example) = text
            .split_once("# A static three-node cluster")
            .expect("the example is in the file");
        let at = example
            .find("# [[nodes]]")
            .expect("the example lists nodes");
        // Uncomment it, as an operator would.
        let uncommented: String = example[at..]
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .map(|l| format!("{l}\n"))
            .collect();
        let config: StorageConfig = toml::from_str(&uncommented).expect("the example parses");
        config.validate().expect("the example is valid");
        assert_eq!(config.nodes.len(), 3);
        assert_eq!(config.namespaces[0].replicas, vec![1, 2, 3]);
        let admin: StorageConfig = toml::from_str("admin_token = \"t0ken\"").unwrap();
        assert!(
            !format!("{admin:?}").contains("t0ken"),
            "the token is never printed"
        );
        assert!(admin.admin_token.unwrap().matches("t0ken"));
    }

    #[test]
    fn cluster_settings_are_validated() {
        let bad = [
            ("node_id = 0", "node_id"),
            ("[raft]\nlog_compact_entries = 10\nlog_catchup_entries = 10", "log_catchup_entries"),
            ("[raft]\nread_mode = \"fast\"", "read_mode"),
            ("default_namespace = \"a-b\"\n[[namespaces]]\nname = \"a-b\"\nid = 1\npartitions = 1\nreplicas = [1]", "namespace name"),
            ("[[namespaces]]\nname = \"default\"\nid = 1\npartitions = 0\nreplicas = [1]", "partitions"),
            ("[[namespaces]]\nname = \"default\"\nid = 1\npartitions = 1\nreplicas = [1, 9]", "replica node 9"),
            ("[[namespaces]]\nname = \"other\"\nid = 1\npartitions = 1\nreplicas = [1]", "default_namespace"),
            ("pd_addrs = [\"127.0.0.1:18001\"]\n[[namespaces]]\nname = \"default\"\nid = 1\npartitions = 1\nreplicas = [1]", "takes its namespaces and nodes from PD"),
            ("pd_addrs = [\"127.0.0.1:18001\"]\nredis_addr = \"0.0.0.0:6379\"", "broadcast_address"),
            ("pd_addrs = [\"127.0.0.1:18001\"]\nheartbeat_ms = 0", "heartbeat_ms"),
            ("pd_addrs = [\"127.0.0.1:18001\"]\ntags = [\"\"]", "tags"),
        ];
        for (text, says) in bad {
            let err = match toml::from_str::<StorageConfig>(text) {
                Err(e) => e.to_string(),
                Ok(c) => c.validate().expect_err(text),
            };
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn a_pd_managed_node_has_no_static_namespaces() {
        let c: StorageConfig = toml::from_str(
            "pd_addrs = [\"127.0.0.1:18001\"]\nredis_addr = \"0.0.0.0:6379\"\nbroadcast_address = \"10.0.0.7\"\ndc_info = \"east\"",
        )
        .unwrap();
        c.validate().unwrap();
        assert!(c.pd_managed());
        assert!(c.effective_namespaces().is_empty());
        assert_eq!(c.effective_broadcast_address().to_string(), "10.0.0.7");
        assert!(!StorageConfig::default().pd_managed());
        assert_eq!(StorageConfig::default().effective_namespaces().len(), 1);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<StorageConfig>("data_dri = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("data_dri"), "{err}");
    }
}
