//! The proxy's Prometheus metrics (`/metrics`) and the counters INFO shows. Names follow
//! `zankv_proxy_<what>_<unit>`; per-command series are labelled with the command's name
//! from the command table, so their number is bounded.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The proxy's counters and gauges.
pub struct ProxyMetrics {
    registry: Registry,
    /// When the proxy started (INFO's uptime).
    pub started: Instant,
    commands: IntCounterVec,
    total_commands: IntCounter,
    command_errors: IntCounterVec,
    command_seconds: HistogramVec,
    /// Each command's series once it was first answered.
    command_series: LabelCache<CommandSeries>,
    namespace_commands: IntCounterVec,
    /// Each namespace's series once a command was sent to it.
    namespace_series: LabelCache<IntCounter>,
    clients: IntGauge,
    blocked_clients: IntGauge,
    connections_received: IntCounter,
    connections_rejected: IntCounter,
    backend_connections: IntGauge,
    backend_connect_failures: IntCounter,
    backend_writes: IntCounter,
    backend_requests: IntCounter,
    retries: IntCounterVec,
    routing_refreshes: IntCounter,
    routing_epoch: IntGaugeVec,
    routing_stream_connected: IntGauge,
    /// INFO's counters when CONFIG RESETSTAT last ran (Prometheus's never go back).
    info_baseline: std::sync::Mutex<InfoCounters>,
}

/// The series of a labelled metric, kept once looked up: looking one up by its label hashes
/// and compares the label and counts a reference, on every request.
struct LabelCache<S>(RwLock<HashMap<String, S>>);

impl<S> Default for LabelCache<S> {
    fn default() -> Self {
        LabelCache(RwLock::default())
    }
}

impl<S> LabelCache<S> {
    /// Runs `with` on `label`'s series, made by `make` the first time.
    fn with(&self, label: &str, make: impl FnOnce() -> S, with: impl Fn(&S)) {
        if let Some(series) = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(label)
        {
            return with(series);
        }
        let series = make();
        with(&series);
        self.0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(label.to_string(), series);
    }
}

/// One command's series (its error count is looked up by label: errors are rare).
struct CommandSeries {
    answered: IntCounter,
    seconds: Histogram,
}

/// Counts a blocked client while it lives ([`ProxyMetrics::client_blocked`]).
pub struct BlockedGuard(IntGauge);

impl Drop for BlockedGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What INFO shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InfoCounters {
    /// Clients connected now.
    pub connected_clients: i64,
    /// Clients waiting in a blocking command now.
    pub blocked_clients: i64,
    /// Connections accepted since start.
    pub total_connections: u64,
    /// Connections refused (max clients).
    pub rejected_connections: u64,
    /// Commands processed since start.
    pub total_commands: u64,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        let registry = Registry::new();
        fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        }
        let counter = |name: &str, help: &str| {
            register(
                &registry,
                IntCounter::new(name, help).expect("valid metric"),
            )
        };
        let gauge = |name: &str, help: &str| {
            register(&registry, IntGauge::new(name, help).expect("valid metric"))
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        ProxyMetrics {
            started: Instant::now(),
            commands: counter_vec(
                "zankv_proxy_commands_total",
                "Commands answered, by command.",
                &["command"],
            ),
            total_commands: counter(
                "zankv_proxy_commands_processed_total",
                "Commands answered, all commands together.",
            ),
            command_errors: counter_vec(
                "zankv_proxy_command_errors_total",
                "Commands answered with an error, by command.",
                &["command"],
            ),
            command_seconds: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "zankv_proxy_command_duration_seconds",
                        "Time from the read that brought a command to the write of its reply, by command.",
                    )
                    .buckets(vec![
                        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25, 0.5, 1.0, 2.5, 10.0,
                    ]),
                    &["command"],
                )
                .expect("valid metric"),
            ),
            command_series: LabelCache::default(),
            namespace_commands: counter_vec(
                "zankv_proxy_namespace_commands_total",
                "Commands sent to storage nodes, by namespace.",
                &["namespace"],
            ),
            namespace_series: LabelCache::default(),
            clients: gauge("zankv_proxy_connected_clients", "Client connections open."),
            blocked_clients: gauge(
                "zankv_proxy_blocked_clients",
                "Clients waiting in a blocking command (BLPOP, ...).",
            ),
            connections_received: counter(
                "zankv_proxy_connections_received_total",
                "Client connections accepted.",
            ),
            connections_rejected: counter(
                "zankv_proxy_connections_rejected_total",
                "Client connections refused because max_clients were connected.",
            ),
            backend_connections: gauge(
                "zankv_proxy_backend_connections",
                "Connections open to storage nodes.",
            ),
            backend_connect_failures: counter(
                "zankv_proxy_backend_connect_failures_total",
                "Failed attempts to connect to a storage node.",
            ),
            backend_writes: counter(
                "zankv_proxy_backend_writes_total",
                "Writes to storage node connections; each carries every request queued on its connection by then.",
            ),
            backend_requests: counter(
                "zankv_proxy_backend_requests_total",
                "Requests sent to storage nodes (divided by the writes: requests per write).",
            ),
            retries: counter_vec(
                "zankv_proxy_retries_total",
                "Commands sent again after a routing error, by reason.",
                &["reason"],
            ),
            routing_refreshes: counter(
                "zankv_proxy_routing_refreshes_total",
                "Routing tables fetched from PD on demand after a routing error.",
            ),
            routing_epoch: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "zankv_proxy_routing_epoch",
                        "Epoch of the routing table in effect, by namespace.",
                    ),
                    &["namespace"],
                )
                .expect("valid metric"),
            ),
            routing_stream_connected: gauge(
                "zankv_proxy_routing_stream_connected",
                "1 while the proxy follows PD's routing stream.",
            ),
            info_baseline: Default::default(),
            registry,
        }
    }
}

impl ProxyMetrics {
    /// A command answered after `took`.
    pub fn command(&self, name: &'static str, error: bool, took: Duration) {
        self.total_commands.inc();
        if error {
            self.command_errors.with_label_values(&[name]).inc();
        }
        let seconds = took.as_secs_f64();
        self.command_series.with(
            name,
            || CommandSeries {
                answered: self.commands.with_label_values(&[name]),
                seconds: self.command_seconds.with_label_values(&[name]),
            },
            |series| {
                series.answered.inc();
                series.seconds.observe(seconds);
            },
        );
    }

    /// A command sent to a partition of `namespace`.
    pub fn namespace_command(&self, namespace: &str) {
        self.namespace_series.with(
            namespace,
            || self.namespace_commands.with_label_values(&[namespace]),
            IntCounter::inc,
        );
    }

    /// A client connected.
    pub fn client_connected(&self) {
        self.clients.inc();
        self.connections_received.inc();
    }

    /// A client disconnected.
    pub fn client_disconnected(&self) {
        self.clients.dec();
    }

    /// A client waits in a blocking command until the guard drops.
    pub fn client_blocked(&self) -> BlockedGuard {
        self.blocked_clients.inc();
        BlockedGuard(self.blocked_clients.clone())
    }

    /// A client was refused (max clients).
    pub fn client_rejected(&self) {
        self.connections_rejected.inc();
    }

    /// A storage node connection opened.
    pub fn backend_connected(&self) {
        self.backend_connections.inc();
    }

    /// A storage node connection closed.
    pub fn backend_disconnected(&self) {
        self.backend_connections.dec();
    }

    /// Connecting to a storage node failed.
    pub fn backend_connect_failed(&self) {
        self.backend_connect_failures.inc();
    }

    /// One write of `requests` requests went to a storage node.
    pub fn backend_write(&self, requests: usize) {
        self.backend_writes.inc();
        self.backend_requests.inc_by(requests as u64);
    }

    /// A command is sent again (`reason`: `moved`, `unreachable`, `no_leader`, `lost_read`,
    /// `lost_pop`).
    pub fn retry(&self, reason: &'static str) {
        self.retries.with_label_values(&[reason]).inc();
    }

    /// A routing table was fetched on demand.
    pub fn routing_refreshed(&self) {
        self.routing_refreshes.inc();
    }

    /// The routing epoch of `namespace` now (None: the namespace is gone).
    pub fn routing_epoch(&self, namespace: &str, epoch: Option<u64>) {
        match epoch {
            Some(e) => self
                .routing_epoch
                .with_label_values(&[namespace])
                .set(e as i64),
            None => {
                let _ = self.routing_epoch.remove_label_values(&[namespace]);
            }
        }
    }

    /// Whether the PD routing stream is followed now.
    pub fn routing_stream(&self, connected: bool) {
        self.routing_stream_connected.set(i64::from(connected));
    }

    /// INFO's counters.
    pub fn info(&self) -> InfoCounters {
        let now = self.info_since_start();
        let base = *self.baseline();
        InfoCounters {
            connected_clients: now.connected_clients,
            blocked_clients: now.blocked_clients,
            total_connections: now.total_connections - base.total_connections,
            rejected_connections: now.rejected_connections - base.rejected_connections,
            total_commands: now.total_commands - base.total_commands,
        }
    }

    fn info_since_start(&self) -> InfoCounters {
        InfoCounters {
            connected_clients: self.clients.get(),
            blocked_clients: self.blocked_clients.get(),
            total_connections: self.connections_received.get(),
            rejected_connections: self.connections_rejected.get(),
            total_commands: self.total_commands.get(),
        }
    }

    fn baseline(&self) -> std::sync::MutexGuard<'_, InfoCounters> {
        self.info_baseline
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// CONFIG RESETSTAT: INFO's counters start again from zero (the Prometheus series do
    /// not: they only grow).
    pub fn reset_stats(&self) {
        *self.baseline() = self.info_since_start();
    }

    /// Everything, in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("metrics are text")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric families the proxy exports, each observed once so labelled ones show.
    fn exported() -> std::collections::BTreeSet<String> {
        let m = ProxyMetrics::default();
        m.command("get", true, Duration::from_millis(1));
        m.namespace_command("default");
        m.client_connected();
        m.client_rejected();
        m.backend_connected();
        m.backend_connect_failed();
        m.retry("moved");
        m.routing_refreshed();
        m.routing_epoch("default", Some(3));
        m.routing_stream(true);
        m.render()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_answer_is_counted_by_command_and_namespace() {
        let m = ProxyMetrics::default();
        for _ in 0..3 {
            m.command("get", false, Duration::from_micros(50));
            m.namespace_command("default");
        }
        m.command("get", true, Duration::from_millis(2));
        m.command("set", false, Duration::from_millis(2));
        m.namespace_command("other");
        let text = m.render();
        for line in [
            "zankv_proxy_commands_total{command=\"get\"} 4",
            "zankv_proxy_commands_total{command=\"set\"} 1",
            "zankv_proxy_command_errors_total{command=\"get\"} 1",
            "zankv_proxy_commands_processed_total 5",
            "zankv_proxy_command_duration_seconds_count{command=\"get\"} 4",
            "zankv_proxy_command_duration_seconds_bucket{command=\"get\",le=\"0.0001\"} 3",
            "zankv_proxy_namespace_commands_total{namespace=\"default\"} 3",
            "zankv_proxy_namespace_commands_total{namespace=\"other\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        assert!(
            !text.contains("command_errors_total{command=\"set\"}"),
            "{text}"
        );
    }

    #[test]
    fn the_grafana_dashboard_uses_only_metrics_the_proxy_exports() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/monitoring/grafana-proxy.json"
        );
        let text = std::fs::read_to_string(path).expect("the dashboard exists");
        let _: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
        let exported = exported();
        let mut used = std::collections::BTreeSet::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("zankv_proxy_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| exported.contains(*f)))
                .unwrap_or(&name)
                .to_string();
            used.insert(family);
        }
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "the dashboard queries {unknown:?}, which the proxy does not export ({exported:?})"
        );
        assert!(
            used.len() >= 10,
            "the dashboard shows most metrics: {used:?}"
        );
    }
}
