//! PD's Prometheus metrics (`/metrics`). Names follow `zankv_pd_<what>_<unit>`.

use std::time::Instant;

use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};

use crate::cluster::Cluster;

/// PD's counters and gauges.
pub struct PdMetrics {
    registry: Registry,
    /// Heartbeats received.
    pub heartbeats: IntCounter,
    /// Commands sent to storage nodes.
    pub commands_sent: IntCounter,
    /// Commands that failed (they are sent again).
    pub command_failures: IntCounter,
    nodes: IntGauge,
    nodes_alive: IntGauge,
    namespaces: IntGauge,
    partitions_leaderless: IntGauge,
}

impl Default for PdMetrics {
    fn default() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        PdMetrics {
            heartbeats: counter(
                "zankv_pd_heartbeats_total",
                "Storage node heartbeats received.",
            ),
            commands_sent: counter(
                "zankv_pd_commands_sent_total",
                "Commands sent to storage nodes' admin API.",
            ),
            command_failures: counter(
                "zankv_pd_command_failures_total",
                "Commands to storage nodes that failed (they are sent again).",
            ),
            nodes: gauge("zankv_pd_nodes", "Registered storage nodes."),
            nodes_alive: gauge(
                "zankv_pd_nodes_alive",
                "Storage nodes that sent a recent heartbeat.",
            ),
            namespaces: gauge("zankv_pd_namespaces", "Namespaces."),
            partitions_leaderless: gauge(
                "zankv_pd_partitions_leaderless",
                "Partitions with no leader known to PD.",
            ),
            registry,
        }
    }
}

impl PdMetrics {
    /// Updates the gauges from the cluster.
    pub fn observe(&self, cluster: &Cluster, now: Instant) {
        let stats = cluster.stats(now);
        self.nodes.set(stats.nodes as i64);
        self.nodes_alive.set(stats.alive_nodes as i64);
        self.namespaces.set(stats.namespaces as i64);
        self.partitions_leaderless.set(stats.leaderless as i64);
    }

    /// Every metric in the Prometheus text format.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}
