//! Storage node configuration: a TOML file (see conf/storage.toml) overridden by command-line
//! flags. Every key has a default in code; unknown keys are rejected at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing directive).
    pub log_level: String,
    /// Request-size limits.
    pub limits: LimitsConfig,
    /// RocksDB sizing shared by all partitions.
    pub rocksdb: RocksConfig,
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
    /// Memtable size per partition, in MiB.
    pub write_buffer_mb: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./zankv-data/storage"),
            redis_addr: SocketAddr::from(([127, 0, 0, 1], 12381)),
            http_addr: None,
            max_clients: 10_000,
            log_level: "info".into(),
            limits: LimitsConfig::default(),
            rocksdb: RocksConfig::default(),
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
            write_buffer_mb: 64,
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

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_clients == 0 {
            return Err("max_clients must be at least 1".into());
        }
        if self.limits.max_bulk_len == 0 || self.limits.max_inline_len == 0 {
            return Err("limits must be positive".into());
        }
        if self.limits.max_query_buffer < self.limits.max_inline_len {
            return Err("limits.max_query_buffer must be at least limits.max_inline_len".into());
        }
        if self.rocksdb.write_buffer_mb == 0 {
            return Err("rocksdb.write_buffer_mb must be at least 1".into());
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
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<StorageConfig>("data_dri = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("data_dri"), "{err}");
    }
}
