//! Proxy configuration: a TOML file (see conf/proxy.toml) overridden by command-line flags.
//! Every key has a default in code; unknown keys are rejected at start.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
pub use zankv_pd_api::Secret;

/// The whole configuration of a proxy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Address clients connect to with RESP.
    pub redis_addr: SocketAddr,
    /// Address of the HTTP endpoint (`/ping`, `/routing`, `/metrics`).
    pub http_addr: SocketAddr,
    /// HTTP addresses of PD's members: the proxy follows PD's routing stream from one of
    /// them and moves to another when it fails.
    pub pd_addrs: Vec<SocketAddr>,
    /// Namespace of keys that do not start with `<known namespace>:` (the storage nodes'
    /// `default_namespace`).
    pub default_namespace: String,
    /// When set, clients must AUTH with this password (or `AUTH default <password>`)
    /// before any other command. Never logged.
    pub requirepass: Option<Secret>,
    /// Passwords that give access to one namespace only: a client that authenticates
    /// with one (`AUTH <namespace> <password>`, or `AUTH <password>`) may use that
    /// namespace's keys and nothing else. Once any password is configured, every client
    /// must authenticate. Never logged.
    pub namespace_passwords: Vec<NamespacePassword>,
    /// Most simultaneous client connections (Redis's `maxclients`).
    pub max_clients: usize,
    /// Seconds a client may stay idle before the proxy closes its connection (0 = never,
    /// Redis's `timeout`).
    pub idle_timeout_s: u64,
    /// Largest bulk argument in bytes (`proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Largest inline request in bytes.
    pub max_inline_len: usize,
    /// Largest unparsed request buffer per client in bytes (`client-query-buffer-limit`).
    pub max_query_buffer: usize,
    /// How long the proxy waits for a storage node's reply before it gives up on that
    /// connection, in milliseconds (longer than the nodes' `raft.write_timeout_ms`).
    pub backend_timeout_ms: u64,
    /// A connection to a storage node that no request used for this many seconds is closed
    /// (after its last replies), e.g. one to a node that no longer leads its partition.
    pub backend_idle_s: u64,
    /// Most times one command is sent again after a routing error (not the leader,
    /// partition moved, node unreachable before the command was sent).
    pub max_retries: u32,
    /// Pause before the first retry, doubled at each next one, in milliseconds.
    pub retry_backoff_ms: u64,
    /// Commands taking at least this many microseconds, from reading them to having their
    /// reply, go into the slow log (Redis's `slowlog-log-slower-than`; -1: none, 0: all).
    /// CONFIG SET changes it at run time.
    pub slowlog_log_slower_than: i64,
    /// Most slow log entries kept (Redis's `slowlog-max-len`); CONFIG SET changes it.
    pub slowlog_max_len: usize,
    /// Keyspace notifications for the proxy's subscribers (Redis's `notify-keyspace-events`,
    /// e.g. `KEA`; empty: none); CONFIG SET changes it.
    pub notify_keyspace_events: String,
    /// Threads of the async runtime (0 = one per CPU). Where the proxy shares a machine's
    /// cores with storage nodes, 1 spends less CPU on waking threads.
    pub io_threads: usize,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing directive).
    pub log_level: String,
    /// Where Redis Cluster clients connect (unset: no cluster protocol). The proxy answers
    /// CLUSTER SLOTS/SHARDS/NODES with the live proxies sharing the slots, each at its
    /// cluster address, and reports itself to PD every second to be listed.
    pub cluster_addr: Option<SocketAddr>,
    /// The cluster address announced to PD and cluster clients when it differs from
    /// `cluster_addr` (a wildcard bind, NAT).
    pub cluster_announce_addr: Option<SocketAddr>,
    /// Sent with the proxy's reports to PD, which requires it when PD has an
    /// `admin_token`. Never logged.
    pub admin_token: Option<Secret>,
    /// Where the other proxies reach this one to pass Pub/Sub messages on (reported to PD
    /// each second); unset: `redis_addr`, unless it binds a wildcard address (then this
    /// proxy's subscribers get only the messages published through it).
    pub peer_announce_addr: Option<SocketAddr>,
}

/// A password restricted to one namespace.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamespacePassword {
    /// The namespace.
    pub namespace: String,
    /// Its password.
    pub password: Secret,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            redis_addr: SocketAddr::from(([127, 0, 0, 1], 12379)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 12378)),
            pd_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 18001))],
            default_namespace: "default".into(),
            requirepass: None,
            namespace_passwords: Vec::new(),
            max_clients: 10_000,
            idle_timeout_s: 0,
            max_bulk_len: 512 * 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_query_buffer: 1024 * 1024 * 1024,
            backend_timeout_ms: 15_000,
            backend_idle_s: 60,
            max_retries: 8,
            retry_backoff_ms: 25,
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
            notify_keyspace_events: String::new(),
            io_threads: 0,
            log_level: "info".into(),
            cluster_addr: None,
            cluster_announce_addr: None,
            admin_token: None,
            peer_announce_addr: None,
        }
    }
}

impl ProxyConfig {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let config: ProxyConfig =
            toml::from_str(&text).map_err(|e| format!("invalid config {}: {e}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.pd_addrs.is_empty() {
            return Err("pd_addrs: at least one PD member is needed".into());
        }
        if !zankv_pd_api::valid_namespace_name(&self.default_namespace) {
            return Err(format!(
                "default_namespace: {:?} is not a valid namespace name",
                self.default_namespace
            ));
        }
        if self.cluster_addr.is_some_and(|a| a.ip().is_unspecified())
            && self.cluster_announce_addr.is_none()
        {
            return Err(
                "cluster_announce_addr: needed when cluster_addr binds a wildcard address (cluster clients must be told where to connect)".into(),
            );
        }
        if self.max_clients == 0 {
            return Err("max_clients must be at least 1".into());
        }
        if self.max_bulk_len == 0 || self.max_inline_len == 0 || self.max_query_buffer == 0 {
            return Err(
                "max_bulk_len, max_inline_len and max_query_buffer must be positive".into(),
            );
        }
        if self.slowlog_log_slower_than < -1 {
            return Err("slowlog_log_slower_than must be -1 (off) or more".into());
        }
        zankv_commands::notify::parse(&self.notify_keyspace_events)
            .map_err(|e| format!("notify_keyspace_events: {e}"))?;
        if self.idle_timeout_s > i32::MAX as u64 {
            return Err(format!("idle_timeout_s must be at most {}", i32::MAX));
        }
        if self.backend_idle_s == 0 {
            return Err("backend_idle_s must be positive".into());
        }
        if self.backend_timeout_ms == 0 {
            return Err("backend_timeout_ms must be positive".into());
        }
        if self
            .requirepass
            .as_ref()
            .is_some_and(|p| p.expose().is_empty())
        {
            return Err("requirepass must not be empty (leave it out for no password)".into());
        }
        for (i, np) in self.namespace_passwords.iter().enumerate() {
            if !zankv_pd_api::valid_namespace_name(&np.namespace) {
                return Err(format!(
                    "namespace_passwords: {:?} is not a valid namespace name",
                    np.namespace
                ));
            }
            if np.password.expose().is_empty() {
                return Err(format!(
                    "namespace_passwords: the password of {} is empty",
                    np.namespace
                ));
            }
            // `AUTH <password>` must say which access it gives.
            let others = &self.namespace_passwords[i + 1..];
            if others.iter().any(|o| o.namespace == np.namespace) {
                return Err(format!(
                    "namespace_passwords: {} is listed twice",
                    np.namespace
                ));
            }
            let clashes = self
                .requirepass
                .as_ref()
                .is_some_and(|r| r.matches(np.password.expose()))
                || others
                    .iter()
                    .any(|o| o.password.matches(np.password.expose()));
            if clashes {
                return Err(format!(
                    "namespace_passwords: the password of {} is also another password",
                    np.namespace
                ));
            }
        }
        Ok(())
    }

    /// [`ProxyConfig::backend_timeout_ms`] as a duration.
    pub fn backend_timeout(&self) -> Duration {
        Duration::from_millis(self.backend_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_bad_values_are_refused() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/proxy.toml");
        let config = ProxyConfig::load(Path::new(path)).unwrap();
        assert_eq!(config.default_namespace, "default");
        assert!(config.redis_addr.ip().is_loopback(), "loopback by default");
        for bad in [
            "pd_addrs = []",
            "default_namespace = \"a:b\"",
            "max_clients = 0",
            "backend_timeout_ms = 0",
            "requirepass = \"\"",
            "no_such_key = 1",
            "[[namespace_passwords]]\nnamespace = \"a:b\"\npassword = \"x\"",
            "[[namespace_passwords]]\nnamespace = \"a\"\npassword = \"\"",
            "requirepass = \"p\"\n[[namespace_passwords]]\nnamespace = \"a\"\npassword = \"p\"",
            "[[namespace_passwords]]\nnamespace = \"a\"\npassword = \"x\"\n[[namespace_passwords]]\nnamespace = \"a\"\npassword = \"y\"",
            "[[namespace_passwords]]\nnamespace = \"a\"\npassword = \"x\"\n[[namespace_passwords]]\nnamespace = \"b\"\npassword = \"x\"",
        ] {
            let parsed: Result<ProxyConfig, _> = toml::from_str(bad);
            assert!(
                parsed
                    .map_err(|e| e.to_string())
                    .and_then(|c| c.validate())
                    .is_err(),
                "{bad} accepted"
            );
        }
    }
}
