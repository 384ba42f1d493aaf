//! Node-wide counters reported by INFO. Plain atomics: many connection tasks and the
//! partition workers update them; INFO reads them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counters for INFO's clients and stats sections.
#[derive(Debug)]
pub struct NodeStats {
    /// When the node started.
    pub started: Instant,
    connected_clients: AtomicU64,
    total_connections: AtomicU64,
    rejected_connections: AtomicU64,
    total_commands: AtomicU64,
    expired_keys: AtomicU64,
}

impl Default for NodeStats {
    fn default() -> Self {
        NodeStats {
            started: Instant::now(),
            connected_clients: AtomicU64::new(0),
            total_connections: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            total_commands: AtomicU64::new(0),
            expired_keys: AtomicU64::new(0),
        }
    }
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy)]
pub struct StatsSnapshot {
    /// Open client connections.
    pub connected_clients: u64,
    /// Connections accepted since start.
    pub total_connections: u64,
    /// Connections refused at the client limit.
    pub rejected_connections: u64,
    /// Commands executed since start.
    pub total_commands: u64,
    /// Keys deleted by background expiry.
    pub expired_keys: u64,
}

impl NodeStats {
    /// A client connected.
    pub fn client_connected(&self) {
        self.connected_clients.fetch_add(1, Ordering::Relaxed);
        self.total_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A client disconnected.
    pub fn client_disconnected(&self) {
        self.connected_clients.fetch_sub(1, Ordering::Relaxed);
    }

    /// A connection was refused at the limit.
    pub fn connection_rejected(&self) {
        self.rejected_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` commands were executed.
    pub fn add_commands(&self, n: u64) {
        self.total_commands.fetch_add(n, Ordering::Relaxed);
    }

    /// Background expiry deleted `n` keys.
    pub fn add_expired(&self, n: u64) {
        self.expired_keys.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connected_clients: self.connected_clients.load(Ordering::Relaxed),
            total_connections: self.total_connections.load(Ordering::Relaxed),
            rejected_connections: self.rejected_connections.load(Ordering::Relaxed),
            total_commands: self.total_commands.load(Ordering::Relaxed),
            expired_keys: self.expired_keys.load(Ordering::Relaxed),
        }
    }
}
