//! INFO's text: every section Redis 7.0 has, with Redis's field names and order, so tools
//! that read INFO (exporters, GUIs, monitoring checks) find what they expect. A process
//! fills an [`InfoFacts`] with what it measures; fields of machinery zankv does not have
//! (RDB/AOF rewrites, forks, eviction, Lua, active defragmentation, tracking, ...) read as a
//! Redis server shows them when that machinery is idle, and zankv adds a few `zankv_` fields
//! of its own (its version, the process's role, the raft roles of a node's replicas).
//!
//! Invariant: sections come out in Redis's order whatever order they were asked in, each
//! once; names INFO does not know select nothing.

use bytes::Bytes;

/// The sections, in the order Redis writes them.
const ORDER: [&str; 13] = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "commandstats",
    "errorstats",
    "latencystats",
    "cluster",
    "keyspace",
];

/// The sections INFO without arguments (or `default`) writes: all but the per-command ones.
fn is_default(section: &str) -> bool {
    !matches!(section, "commandstats" | "latencystats")
}

/// The sections `args` ask for (none: the default ones), in Redis's order.
pub fn wanted_sections(args: &[Bytes]) -> Vec<&'static str> {
    let asked: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let every = asked.iter().any(|a| a == "all" || a == "everything");
    let default = asked.is_empty() || asked.iter().any(|a| a == "default");
    ORDER
        .into_iter()
        .filter(|s| every || (default && is_default(s)) || asked.iter().any(|a| a == s))
        .collect()
}

/// What a process knows of itself for INFO.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InfoFacts {
    /// `proxy` or `storage`.
    pub zankv_role: &'static str,
    /// The port clients connect to.
    pub tcp_port: u16,
    /// 40 hex digits, new at every start.
    pub run_id: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// CONFIG's `hz`.
    pub hz: String,
    /// The configuration file given at start, if any.
    pub config_file: String,
    /// Whether the process speaks the cluster protocol.
    pub cluster_enabled: bool,
    /// Clients connected now.
    pub connected_clients: u64,
    /// Clients waiting in a blocking command (BLPOP, ...) now.
    pub blocked_clients: u64,
    /// Channels, patterns and shard channels with subscribers on this process.
    pub pubsub: (u64, u64, u64),
    /// Most simultaneous clients.
    pub maxclients: u64,
    /// Bytes in use: the process's resident memory plus, for a storage node, the memory
    /// RocksDB reports (`used_memory_dataset`); for a proxy, its own and the storage nodes'.
    pub used_memory: u64,
    /// The process's resident memory.
    pub used_memory_rss: u64,
    /// The largest `used_memory` seen.
    pub used_memory_peak: u64,
    /// Of `used_memory`, what holds data (RocksDB's memtables, block cache and table
    /// readers).
    pub used_memory_dataset: u64,
    /// CONFIG's `maxmemory` (not enforced).
    pub maxmemory: u64,
    /// CONFIG's `maxmemory-policy`.
    pub maxmemory_policy: String,
    /// The machine's memory.
    pub total_system_memory: u64,
    /// Connections accepted.
    pub total_connections: u64,
    /// Commands answered.
    pub total_commands: u64,
    /// Connections refused at `maxclients`.
    pub rejected_connections: u64,
    /// Keys deleted because they expired.
    pub expired_keys: u64,
    /// Error replies sent.
    pub total_error_replies: u64,
    /// Error replies by their first word (`ERR`, `WRONGTYPE`, ...).
    pub errorstats: Vec<(String, u64)>,
    /// The replication section after `role:master`: zankv's raft roles.
    pub replication: Vec<(String, String)>,
    /// CPU seconds: system and user, of the process and of its children.
    pub cpu: [f64; 4],
    /// Keys and keys with an expiry, when the process knows them.
    pub keyspace: Option<(u64, u64)>,
}

/// Memory in Redis's human form (`1.50M`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, f64); 5] = [
        ("P", 1125899906842624.0),
        ("T", 1099511627776.0),
        ("G", 1073741824.0),
        ("M", 1048576.0),
        ("K", 1024.0),
    ];
    let v = n as f64;
    for (unit, size) in UNITS {
        if v >= size {
            return format!("{:.2}{unit}", v / size);
        }
    }
    format!("{n}B")
}

impl InfoFacts {
    /// INFO's text for `sections` (from [`wanted_sections`]); the keyspace section only
    /// when [`InfoFacts::keyspace`] is known.
    pub fn render(&self, sections: &[&str]) -> String {
        let mut out = String::new();
        for section in sections {
            let lines = match *section {
                "server" => self.server(),
                "clients" => self.clients(),
                "memory" => self.memory(),
                "persistence" => persistence(),
                "stats" => self.stats(),
                "replication" => self.replication(),
                "cpu" => self.cpu(),
                "modules" => (String::from("Modules"), vec![]),
                "commandstats" => (String::from("Commandstats"), vec![]),
                "errorstats" => self.errorstats(),
                "latencystats" => (String::from("Latencystats"), vec![]),
                "cluster" => (
                    String::from("Cluster"),
                    vec![field("cluster_enabled", u8::from(self.cluster_enabled))],
                ),
                "keyspace" => match self.keyspace {
                    Some(counts) => keyspace(counts),
                    None => continue,
                },
                _ => continue,
            };
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            out.push_str(&format!("# {}\r\n", lines.0));
            for line in lines.1 {
                out.push_str(&line);
                out.push_str("\r\n");
            }
        }
        out
    }

    fn server(&self) -> (String, Vec<String>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (
            "Server".into(),
            vec![
                field("redis_version", crate::connection::REDIS_COMPAT_VERSION),
                field("redis_git_sha1", "00000000"),
                field("redis_git_dirty", 0),
                field("redis_build_id", "0"),
                field(
                    "redis_mode",
                    if self.cluster_enabled {
                        "cluster"
                    } else {
                        "standalone"
                    },
                ),
                field("os", os_name()),
                field("arch_bits", usize::BITS),
                field("monotonic_clock", "POSIX clock_gettime"),
                field("multiplexing_api", "epoll"),
                field("atomicvar_api", "c11-builtin"),
                field("gcc_version", "0.0.0"),
                field("process_id", std::process::id()),
                field("process_supervised", "no"),
                field("run_id", &self.run_id),
                field("tcp_port", self.tcp_port),
                field("server_time_usec", now.as_micros()),
                field("uptime_in_seconds", self.uptime_s),
                field("uptime_in_days", self.uptime_s / 86400),
                field("hz", &self.hz),
                field("configured_hz", &self.hz),
                field("lru_clock", now.as_secs() & ((1 << 24) - 1)),
                field(
                    "executable",
                    std::env::current_exe()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                ),
                field("config_file", &self.config_file),
                field("io_threads_active", 0),
                field("zankv_version", env!("CARGO_PKG_VERSION")),
                field("zankv_role", self.zankv_role),
            ],
        )
    }

    fn clients(&self) -> (String, Vec<String>) {
        (
            "Clients".into(),
            vec![
                field("connected_clients", self.connected_clients),
                field("cluster_connections", 0),
                field("maxclients", self.maxclients),
                field("client_recent_max_input_buffer", 0),
                field("client_recent_max_output_buffer", 0),
                field("blocked_clients", self.blocked_clients),
                field("tracking_clients", 0),
                field("clients_in_timeout_table", 0),
            ],
        )
    }

    fn memory(&self) -> (String, Vec<String>) {
        let used = self.used_memory;
        let peak = self.used_memory_peak.max(used);
        let pct = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                part as f64 * 100.0 / whole as f64
            }
        };
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let overhead = used.saturating_sub(self.used_memory_dataset);
        (
            "Memory".into(),
            vec![
                field("used_memory", used),
                field("used_memory_human", human_bytes(used)),
                field("used_memory_rss", self.used_memory_rss),
                field("used_memory_rss_human", human_bytes(self.used_memory_rss)),
                field("used_memory_peak", peak),
                field("used_memory_peak_human", human_bytes(peak)),
                field("used_memory_peak_perc", format!("{:.2}%", pct(used, peak))),
                field("used_memory_overhead", overhead),
                field("used_memory_startup", 0),
                field("used_memory_dataset", self.used_memory_dataset),
                field(
                    "used_memory_dataset_perc",
                    format!("{:.2}%", pct(self.used_memory_dataset, used)),
                ),
                field("allocator_allocated", used),
                field("allocator_active", used),
                field("allocator_resident", self.used_memory_rss),
                field("total_system_memory", self.total_system_memory),
                field(
                    "total_system_memory_human",
                    human_bytes(self.total_system_memory),
                ),
                field("used_memory_lua", 0),
                field("used_memory_vm_eval", 0),
                field("used_memory_lua_human", "0B"),
                field("used_memory_scripts_eval", 0),
                field("number_of_cached_scripts", 0),
                field("number_of_functions", 0),
                field("number_of_libraries", 0),
                field("used_memory_vm_functions", 0),
                field("used_memory_vm_total", 0),
                field("used_memory_vm_total_human", "0B"),
                field("used_memory_functions", 0),
                field("used_memory_scripts", 0),
                field("used_memory_scripts_human", "0B"),
                field("maxmemory", self.maxmemory),
                field("maxmemory_human", human_bytes(self.maxmemory)),
                field("maxmemory_policy", &self.maxmemory_policy),
                field("allocator_frag_ratio", "1.00"),
                field("allocator_frag_bytes", 0),
                field("allocator_rss_ratio", "1.00"),
                field("allocator_rss_bytes", 0),
                field("rss_overhead_ratio", "1.00"),
                field("rss_overhead_bytes", 0),
                field(
                    "mem_fragmentation_ratio",
                    format!("{:.2}", ratio(self.used_memory_rss, used)),
                ),
                field(
                    "mem_fragmentation_bytes",
                    self.used_memory_rss as i128 - used as i128,
                ),
                field("mem_not_counted_for_evict", 0),
                field("mem_replication_backlog", 0),
                field("mem_total_replication_buffers", 0),
                field("mem_clients_slaves", 0),
                field("mem_clients_normal", 0),
                field("mem_cluster_links", 0),
                field("mem_aof_buffer", 0),
                field("mem_allocator", "libc"),
                field("active_defrag_running", 0),
                field("lazyfree_pending_objects", 0),
                field("lazyfreed_objects", 0),
            ],
        )
    }

    fn stats(&self) -> (String, Vec<String>) {
        let zero = |name: &str| field(name, 0);
        let mut lines = vec![
            field("total_connections_received", self.total_connections),
            field("total_commands_processed", self.total_commands),
        ];
        lines.extend(
            [
                "instantaneous_ops_per_sec",
                "total_net_input_bytes",
                "total_net_output_bytes",
                "total_net_repl_input_bytes",
                "total_net_repl_output_bytes",
            ]
            .map(zero),
        );
        lines.extend(
            [
                "instantaneous_input_kbps",
                "instantaneous_output_kbps",
                "instantaneous_input_repl_kbps",
                "instantaneous_output_repl_kbps",
            ]
            .map(|name| field(name, "0.00")),
        );
        lines.push(field("rejected_connections", self.rejected_connections));
        lines.extend(["sync_full", "sync_partial_ok", "sync_partial_err"].map(zero));
        lines.push(field("expired_keys", self.expired_keys));
        lines.push(field("expired_stale_perc", "0.00"));
        lines.extend(
            [
                "expired_time_cap_reached_count",
                "expire_cycle_cpu_milliseconds",
                "evicted_keys",
                "evicted_clients",
                "total_eviction_exceeded_time",
                "current_eviction_exceeded_time",
                "keyspace_hits",
                "keyspace_misses",
            ]
            .map(zero),
        );
        lines.extend([
            field("pubsub_channels", self.pubsub.0),
            field("pubsub_patterns", self.pubsub.1),
            field("pubsubshard_channels", self.pubsub.2),
        ]);
        lines.extend(
            [
                "latest_fork_usec",
                "total_forks",
                "migrate_cached_sockets",
                "slave_expires_tracked_keys",
                "active_defrag_hits",
                "active_defrag_misses",
                "active_defrag_key_hits",
                "active_defrag_key_misses",
                "total_active_defrag_time",
                "current_active_defrag_time",
                "tracking_total_keys",
                "tracking_total_items",
                "tracking_total_prefixes",
                "unexpected_error_replies",
            ]
            .map(zero),
        );
        lines.push(field("total_error_replies", self.total_error_replies));
        lines.extend(
            [
                "dump_payload_sanitizations",
                "total_reads_processed",
                "total_writes_processed",
                "io_threaded_reads_processed",
                "io_threaded_writes_processed",
                "reply_buffer_shrinks",
                "reply_buffer_expands",
            ]
            .map(zero),
        );
        ("Stats".into(), lines)
    }

    fn replication(&self) -> (String, Vec<String>) {
        let mut lines = vec![
            field("role", "master"),
            field("connected_slaves", 0),
            field("master_failover_state", "no-failover"),
            field("master_replid", &self.run_id),
            field("master_replid2", "0".repeat(40)),
            field("master_repl_offset", 0),
            field("second_repl_offset", -1),
            field("repl_backlog_active", 0),
            field("repl_backlog_size", 0),
            field("repl_backlog_first_byte_offset", 0),
            field("repl_backlog_histlen", 0),
        ];
        lines.extend(self.replication.iter().map(|(k, v)| field(k, v)));
        ("Replication".into(), lines)
    }

    fn cpu(&self) -> (String, Vec<String>) {
        let [sys, user, sys_children, user_children] = self.cpu;
        (
            "CPU".into(),
            vec![
                field("used_cpu_sys", format!("{sys:.6}")),
                field("used_cpu_user", format!("{user:.6}")),
                field("used_cpu_sys_children", format!("{sys_children:.6}")),
                field("used_cpu_user_children", format!("{user_children:.6}")),
                field("used_cpu_sys_main_thread", format!("{sys:.6}")),
                field("used_cpu_user_main_thread", format!("{user:.6}")),
            ],
        )
    }

    fn errorstats(&self) -> (String, Vec<String>) {
        (
            "Errorstats".into(),
            self.errorstats
                .iter()
                .map(|(prefix, n)| format!("errorstat_{prefix}:count={n}"))
                .collect(),
        )
    }
}

/// The persistence section: zankv's durability is its raft log, fsynced before a write is
/// acknowledged, so it reads as an AOF that is always on and never rewriting.
fn persistence() -> (String, Vec<String>) {
    let zero = |name: &str| field(name, 0);
    let mut lines: Vec<String> = [
        "loading",
        "async_loading",
        "current_cow_peak",
        "current_cow_size",
        "current_cow_size_age",
    ]
    .map(zero)
    .to_vec();
    lines.push(field("current_fork_perc", "0.00"));
    lines.extend(
        [
            "current_save_keys_processed",
            "current_save_keys_total",
            "rdb_changes_since_last_save",
            "rdb_bgsave_in_progress",
        ]
        .map(zero),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    lines.extend([
        field("rdb_last_save_time", now.as_secs()),
        field("rdb_last_bgsave_status", "ok"),
        field("rdb_last_bgsave_time_sec", -1),
        field("rdb_current_bgsave_time_sec", -1),
    ]);
    lines.extend(
        [
            "rdb_saves",
            "rdb_last_cow_size",
            "rdb_last_load_keys_expired",
            "rdb_last_load_keys_loaded",
        ]
        .map(zero),
    );
    lines.extend([
        field("aof_enabled", 1),
        field("aof_rewrite_in_progress", 0),
        field("aof_rewrite_scheduled", 0),
        field("aof_last_rewrite_time_sec", -1),
        field("aof_current_rewrite_time_sec", -1),
        field("aof_last_bgrewrite_status", "ok"),
        field("aof_rewrites", 0),
        field("aof_rewrites_consecutive_failures", 0),
        field("aof_last_write_status", "ok"),
    ]);
    lines.extend(
        [
            "aof_last_cow_size",
            "module_fork_in_progress",
            "module_fork_last_cow_size",
            "aof_current_size",
            "aof_base_size",
            "aof_pending_rewrite",
            "aof_buffer_length",
            "aof_pending_bio_fsync",
            "aof_delayed_fsync",
        ]
        .map(zero),
    );
    ("Persistence".into(), lines)
}

/// The keyspace section for these counts: no `db0` line without keys, as in Redis.
fn keyspace((keys, expires): (u64, u64)) -> (String, Vec<String>) {
    let mut lines = vec![];
    if keys > 0 {
        lines.push(format!("db0:keys={keys},expires={expires},avg_ttl=0"));
    }
    ("Keyspace".into(), lines)
}

fn field(name: &str, value: impl std::fmt::Display) -> String {
    format!("{name}:{value}")
}

/// `uname -srm`, as Redis's `os` field.
fn os_name() -> String {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "{} {} {}",
        read("ostype"),
        read("osrelease"),
        std::env::consts::ARCH
    )
}

/// Error replies counted by their first word, for INFO's errorstats and
/// `total_error_replies` (at most [`ERROR_PREFIXES`] different words, as Redis; later new
/// ones count in the total only).
#[derive(Debug, Default)]
pub struct ErrorStats {
    counts: std::sync::Mutex<(std::collections::BTreeMap<String, u64>, u64)>,
}

/// Most different error prefixes counted.
pub const ERROR_PREFIXES: usize = 128;

impl ErrorStats {
    /// Counts `reply` (an encoded reply) if it is an error.
    pub fn record_encoded(&self, reply: &[u8]) {
        let Some(text) = reply.strip_prefix(b"-") else {
            return;
        };
        let end = text
            .iter()
            .position(|&b| b == b' ' || b == b'\r')
            .unwrap_or(text.len());
        self.record_prefix(&String::from_utf8_lossy(&text[..end]));
    }

    /// Counts an error whose text is `message`.
    pub fn record_message(&self, message: &str) {
        self.record_prefix(message.split([' ', '\r']).next().unwrap_or(""));
    }

    fn record_prefix(&self, prefix: &str) {
        let mut counts = self.lock();
        counts.1 += 1;
        if let Some(n) = counts.0.get_mut(prefix) {
            *n += 1;
        } else if counts.0.len() < ERROR_PREFIXES {
            counts.0.insert(prefix.to_string(), 1);
        }
    }

    /// The counts by prefix and the total.
    pub fn snapshot(&self) -> (Vec<(String, u64)>, u64) {
        let counts = self.lock();
        (
            counts.0.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            counts.1,
        )
    }

    /// CONFIG RESETSTAT: from zero again.
    pub fn reset(&self) {
        *self.lock() = Default::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (std::collections::BTreeMap<String, u64>, u64)> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn sections_are_chosen_as_redis_chooses_them() {
        let default = wanted_sections(&[]);
        assert_eq!(default.len(), 11);
        assert!(!default.contains(&"commandstats"));
        assert_eq!(wanted_sections(&[b("DEFAULT")]), default);
        assert_eq!(wanted_sections(&[b("everything")]).len(), 13);
        assert_eq!(wanted_sections(&[b("all")]), ORDER.to_vec());
        assert_eq!(
            wanted_sections(&[b("keyspace"), b("Server"), b("server")]),
            vec!["server", "keyspace"]
        );
        assert!(wanted_sections(&[b("nothing")]).is_empty());
    }

    #[test]
    fn sections_render_with_their_headers() {
        let facts = InfoFacts {
            keyspace: Some((3, 1)),
            errorstats: vec![("ERR".into(), 2)],
            ..InfoFacts::default()
        };
        let text = facts.render(&["cluster", "errorstats", "keyspace"]);
        assert_eq!(
            text,
            "# Cluster\r\ncluster_enabled:0\r\n\r\n# Errorstats\r\nerrorstat_ERR:count=2\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n"
        );
        assert_eq!(human_bytes(1536 * 1024), "1.50M");
        let errors = ErrorStats::default();
        errors.record_encoded(b"-ERR wrong\r\n");
        errors.record_encoded(b"+OK\r\n");
        errors.record_message("WRONGTYPE Operation against a key");
        errors.record_encoded(b"-ERR again\r\n");
        assert_eq!(
            errors.snapshot(),
            (vec![("ERR".into(), 2), ("WRONGTYPE".into(), 1)], 3)
        );
        assert_eq!(human_bytes(10), "10B");
    }
}
