//! PD configuration: a TOML file (see conf/pd.toml) overridden by command-line flags. Every
//! key has a default in code; unknown keys are rejected at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use zankv_pd_api::Secret;

/// Everything PD is configured with.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PdConfig {
    /// Directory of PD's metadata.
    pub data_dir: PathBuf,
    /// Address of the HTTP API (loopback by default).
    pub http_addr: SocketAddr,
    /// Log filter (`info`, `debug`, or a tracing directive).
    pub log_level: String,
    /// When set, mutating calls require `Authorization: Bearer <admin_token>`; PD also
    /// sends it with its calls to storage nodes' admin API. Never logged.
    pub admin_token: Option<Secret>,
    /// A storage node that sent no heartbeat for this long is considered down.
    pub heartbeat_timeout_ms: u64,
    /// How often PD compares the cluster with what it should be and acts.
    pub check_interval_ms: u64,
    /// A node down for longer than this is dead: its replicas are re-created elsewhere.
    pub dead_node_grace_ms: u64,
    /// Most placement operators (replica adds, moves, removals, leader transfers) running
    /// at once.
    pub max_operators: usize,
    /// A step of an operator that does not show as done within this fails the operator.
    pub operator_step_timeout_ms: u64,
    /// This member's id among `members`.
    pub member_id: u64,
    /// Every PD member (this one included; the same list everywhere). Empty: a single PD
    /// keeping its metadata in `meta.json`. Otherwise the members replicate the metadata
    /// by raft; the leader serves changes and the others answer reads of the metadata.
    pub members: Vec<MemberConfig>,
    /// Length of one raft tick of PD's group, in ms.
    pub raft_tick_ms: u64,
    /// Ticks without a leader before a member campaigns.
    pub raft_election_ticks: usize,
    /// `[start_hour, end_hour]` (UTC, 0..23): the balancers start moves only in this
    /// window (it may wrap midnight, as `[22, 4]`). Empty: at any time. Repairs (dead
    /// replicas, node removal, replica count changes) do not wait for it.
    pub balance_window: Vec<u8>,
    /// The namespace of keys that name none (the proxies' and storage nodes'
    /// `default_namespace`): created without saying otherwise, it follows Redis Cluster's
    /// hash tags; any other namespace keeps ZanRedisDB's whole-key hashing unless created
    /// with `hash_tags=true`.
    pub default_namespace: String,
}

/// One PD member.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Its member id (positive, unique).
    pub id: u64,
    /// Its HTTP address (API and raft messages).
    pub http_addr: SocketAddr,
}

impl Default for PdConfig {
    fn default() -> Self {
        PdConfig {
            data_dir: PathBuf::from("./zankv-data/pd"),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 18001)),
            log_level: "info".into(),
            admin_token: None,
            heartbeat_timeout_ms: 10_000,
            check_interval_ms: 1_000,
            dead_node_grace_ms: 900_000,
            max_operators: 4,
            operator_step_timeout_ms: 600_000,
            balance_window: Vec::new(),
            member_id: 1,
            members: Vec::new(),
            raft_tick_ms: 100,
            raft_election_ticks: 10,
            default_namespace: "default".into(),
        }
    }
}

impl PdConfig {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if !zankv_pd_api::valid_namespace_name(&self.default_namespace) {
            return Err(format!(
                "default_namespace: {:?} is not a valid namespace name",
                self.default_namespace
            ));
        }
        if self.heartbeat_timeout_ms < 1000 {
            return Err("heartbeat_timeout_ms must be at least 1000".into());
        }
        if self.check_interval_ms == 0 {
            return Err("check_interval_ms must be positive".into());
        }
        if self.dead_node_grace_ms < self.heartbeat_timeout_ms {
            return Err("dead_node_grace_ms must be at least heartbeat_timeout_ms".into());
        }
        if self.max_operators == 0 || self.operator_step_timeout_ms == 0 {
            return Err("max_operators and operator_step_timeout_ms must be positive".into());
        }
        if !self.members.is_empty() {
            let mut ids: Vec<u64> = self.members.iter().map(|m| m.id).collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() != self.members.len() || ids.contains(&0) {
                return Err("members: ids must be positive and unique".into());
            }
            if !ids.contains(&self.member_id) {
                return Err(format!(
                    "member_id {} is not among the members {ids:?}",
                    self.member_id
                ));
            }
            if self.raft_tick_ms == 0 || self.raft_election_ticks < 5 {
                return Err(
                    "raft_tick_ms must be positive and raft_election_ticks at least 5".into(),
                );
            }
        }
        match self.balance_window.as_slice() {
            [] => {}
            [start, end] if *start < 24 && *end < 24 && start != end => {}
            other => {
                return Err(format!(
                    "balance_window must be [] or [start_hour, end_hour] with two different hours within 0..23, not {other:?}"
                ))
            }
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.expose().is_empty())
        {
            return Err("admin_token must not be empty".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_in_conf_loads_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/pd.toml");
        let config = PdConfig::load(&path).expect("conf/pd.toml loads");
        config.validate().unwrap();
        assert_eq!(config, PdConfig::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let err = toml::from_str::<PdConfig>("http_adr = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("http_adr"), "{err}");
        let c: PdConfig = toml::from_str("heartbeat_timeout_ms = 10").unwrap();
        assert!(c.validate().unwrap_err().contains("heartbeat_timeout_ms"));
        for bad in [
            "balance_window = [1]",
            "balance_window = [3, 3]",
            "balance_window = [1, 24]",
            "max_operators = 0",
            "dead_node_grace_ms = 5000",
        ] {
            let c: PdConfig = toml::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
        for bad in [
            "member_id = 4\n[[members]]\nid = 1\nhttp_addr = \"127.0.0.1:1\"",
            "[[members]]\nid = 1\nhttp_addr = \"127.0.0.1:1\"\n[[members]]\nid = 1\nhttp_addr = \"127.0.0.1:2\"",
            "raft_election_ticks = 2\n[[members]]\nid = 1\nhttp_addr = \"127.0.0.1:1\"",
        ] {
            let c: PdConfig = toml::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/pd.toml"))
                .unwrap();
        // Uncommenting the member list gives a valid member.
        let members: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|l| {
                        l.starts_with("[[members]]")
                            || l.starts_with("id =")
                            || l.starts_with("http_addr =")
                    })
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c: PdConfig = toml::from_str(&members).unwrap();
        c.validate().unwrap();
        assert_eq!(c.members.len(), 3);
        let c: PdConfig = toml::from_str("balance_window = [22, 4]").unwrap();
        c.validate().unwrap();
        let c: PdConfig = toml::from_str("admin_token = \"s3cret\"").unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
