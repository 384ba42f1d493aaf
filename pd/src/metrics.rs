//! PD's Prometheus metrics (`/metrics`). Names follow `zankv_pd_<what>_<unit>`.

use std::time::Instant;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

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
    /// Open routing streams.
    pub routing_watchers: IntGauge,
    nodes: IntGauge,
    nodes_alive: IntGauge,
    namespaces: IntGauge,
    partitions_leaderless: IntGauge,
    partitions_under_replicated: IntGauge,
    partitions_unavailable: IntGauge,
    operators_running: IntGauge,
    scheduling_paused: IntGauge,
    operators: IntCounterVec,
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
            routing_watchers: gauge(
                "zankv_pd_routing_watchers",
                "Open routing streams (GET /routing/watch).",
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
            partitions_under_replicated: gauge(
                "zankv_pd_partitions_under_replicated",
                "Partitions with fewer voters than their namespace wants.",
            ),
            partitions_unavailable: gauge(
                "zankv_pd_partitions_unavailable",
                "Partitions with no leader and no quorum of alive voters.",
            ),
            operators_running: gauge(
                "zankv_pd_operators_running",
                "Placement operators in progress.",
            ),
            scheduling_paused: gauge(
                "zankv_pd_scheduling_paused",
                "1 while no new operator may start (rolling upgrade or network-partition guard).",
            ),
            operators: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "zankv_pd_operators_total",
                        "Placement operators by kind and event (started, finished, failed).",
                    ),
                    &["kind", "event"],
                )
                .expect("valid metric");
                registry
                    .register(Box::new(c.clone()))
                    .expect("unique metric");
                c
            },
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
        self.partitions_under_replicated
            .set(stats.under_replicated as i64);
        self.partitions_unavailable
            .set(stats.unavailable.len() as i64);
        self.operators_running.set(stats.operators as i64);
        self.scheduling_paused
            .set(i64::from(stats.paused.is_some()));
    }

    /// An operator of `kind` `event` (started, finished, failed).
    pub fn operator_event(&self, kind: &str, event: &str) {
        self.operators.with_label_values(&[kind, event]).inc();
    }

    /// Every metric in the Prometheus text format.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}
