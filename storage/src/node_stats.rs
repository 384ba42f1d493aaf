//! Node-wide counters, reported by INFO and exported as Prometheus metrics on `/metrics`.
//!
//! Many connection tasks and the partition workers update them; INFO and the HTTP endpoint
//! read them. They are Prometheus collectors (atomics inside), registered in one registry
//! owned here. Metric names follow `zankv_storage_<subsystem>_<what>_<unit>`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Counters and histograms of one storage node.
pub struct NodeStats {
    /// When the node started.
    pub started: Instant,
    registry: Registry,
    connected_clients: IntGauge,
    blocked_clients: IntGauge,
    total_connections: IntCounter,
    rejected_connections: IntCounter,
    total_commands: IntCounter,
    expired_keys: IntCounter,
    keys: IntGaugeVec,
    entries_committed: IntCounter,
    apply_batch_changes: Histogram,
    apply_seconds: Histogram,
    script_seconds: Histogram,
    raft_log_sync_seconds: Histogram,
    groups_per_sync: Histogram,
    raft_proposals: IntCounter,
    raft_read_indexes: IntCounter,
    raft_not_leader: IntCounter,
    raft_dropped_send: IntCounter,
    raft_dropped_receive: IntCounter,
    raft_frames_sent: IntCounter,
    raft_messages_sent: IntCounter,
    snapshots_sent: IntCounter,
    snapshot_bytes_sent: IntCounter,
    snapshot_send_failures: IntCounter,
    snapshots_received: IntCounter,
    snapshot_bytes_received: IntCounter,
    snapshots_installed: IntCounter,
    pd_heartbeats: IntCounter,
    pd_heartbeat_failures: IntCounter,
    pd_catalog_epoch: IntGauge,
    pd_catalogs_refused: IntCounter,
    /// Serialises [`NodeStats::mirror`] (two scrapes at once would count twice).
    mirroring: Mutex<()>,
    /// INFO's counters when CONFIG RESETSTAT last ran (Prometheus's never go back).
    info_baseline: Mutex<Option<StatsSnapshot>>,
}

/// Counts a blocked client while it lives ([`NodeStats::client_blocked`]).
pub struct BlockedGuard(IntGauge);

impl Drop for BlockedGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A snapshot of the counters INFO shows.
#[derive(Debug, Clone, Copy)]
pub struct StatsSnapshot {
    /// Open client connections.
    pub connected_clients: u64,
    /// Clients waiting in a blocking command.
    pub blocked_clients: u64,
    /// Connections accepted since start.
    pub total_connections: u64,
    /// Connections refused at the client limit.
    pub rejected_connections: u64,
    /// Commands executed since start.
    pub total_commands: u64,
    /// Keys deleted because they expired.
    pub expired_keys: u64,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Default for NodeStats {
    fn default() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            register(
                &registry,
                IntCounter::new(name, help).expect("valid metric"),
            )
        };
        let gauge = |name: &str, help: &str| {
            register(&registry, IntGauge::new(name, help).expect("valid metric"))
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            register(
                &registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                    .expect("valid metric"),
            )
        };
        let seconds = vec![
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ];
        NodeStats {
            started: Instant::now(),
            connected_clients: gauge(
                "zankv_storage_clients_connected",
                "Open client connections.",
            ),
            blocked_clients: gauge(
                "zankv_storage_clients_blocked",
                "Clients waiting in a blocking command (BLPOP, ...).",
            ),
            total_connections: counter(
                "zankv_storage_connections_total",
                "Client connections accepted.",
            ),
            rejected_connections: counter(
                "zankv_storage_connections_rejected_total",
                "Client connections refused at max_clients.",
            ),
            total_commands: counter(
                "zankv_storage_commands_total",
                "Commands received (including errors).",
            ),
            expired_keys: counter(
                "zankv_storage_expired_keys_total",
                "Keys deleted because they expired.",
            ),
            keys: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "zankv_storage_keys",
                        "Keys stored in each hosted partition (including expired keys not yet deleted).",
                    ),
                    &["partition"],
                )
                .expect("valid metric"),
            ),
            entries_committed: counter(
                "zankv_storage_raft_entries_committed_total",
                "Raft entries committed and handed to the partitions to apply.",
            ),
            apply_batch_changes: histogram(
                "zankv_storage_apply_batch_changes",
                "Changes applied per engine write batch (group commit).",
                vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ],
            ),
            apply_seconds: histogram(
                "zankv_storage_apply_seconds",
                "Time to apply one batch of changes.",
                seconds.clone(),
            ),
            script_seconds: histogram(
                "zankv_storage_script_seconds",
                "Time one Lua script ran on its partition leader (its effects not included).",
                seconds.clone(),
            ),
            raft_log_sync_seconds: histogram(
                "zankv_storage_raft_log_sync_seconds",
                "Time of one store-loop iteration's raft-log write and fsync (all groups).",
                seconds,
            ),
            groups_per_sync: histogram(
                "zankv_storage_raft_groups_per_sync",
                "Raft groups whose log changes one fsync persisted (group commit).",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
            raft_proposals: counter(
                "zankv_storage_raft_proposals_total",
                "Entries proposed by this node's leaders (client writes and background changes).",
            ),
            raft_read_indexes: counter(
                "zankv_storage_raft_read_indexes_total",
                "ReadIndex requests (each confirms every read batch of a group waiting then).",
            ),
            raft_not_leader: counter(
                "zankv_storage_raft_not_leader_total",
                "Client batches refused because this node does not lead their partition.",
            ),
            raft_dropped_send: counter(
                "zankv_storage_raft_messages_dropped_send_total",
                "Raft messages dropped on the way out (peer queue full or connection lost).",
            ),
            raft_dropped_receive: counter(
                "zankv_storage_raft_messages_dropped_receive_total",
                "Raft messages dropped on arrival (store loop queue full).",
            ),
            raft_frames_sent: counter(
                "zankv_storage_raft_frames_sent_total",
                "Batched frames written to peer nodes.",
            ),
            raft_messages_sent: counter(
                "zankv_storage_raft_messages_sent_total",
                "Raft messages written to peer nodes.",
            ),
            snapshots_sent: counter(
                "zankv_storage_raft_snapshots_sent_total",
                "Snapshots (partition checkpoints) sent to lagging followers and stored there.",
            ),
            snapshot_bytes_sent: counter(
                "zankv_storage_raft_snapshot_sent_bytes_total",
                "File bytes of snapshots sent.",
            ),
            snapshot_send_failures: counter(
                "zankv_storage_raft_snapshot_send_failures_total",
                "Snapshot transfers that failed (raft retries them).",
            ),
            snapshots_received: counter(
                "zankv_storage_raft_snapshots_received_total",
                "Snapshots received from leaders.",
            ),
            snapshot_bytes_received: counter(
                "zankv_storage_raft_snapshot_received_bytes_total",
                "File bytes of snapshots received.",
            ),
            snapshots_installed: counter(
                "zankv_storage_raft_snapshots_installed_total",
                "Snapshots swapped in for a partition's database.",
            ),
            pd_heartbeats: counter(
                "zankv_storage_pd_heartbeats_total",
                "Heartbeats PD accepted.",
            ),
            pd_heartbeat_failures: counter(
                "zankv_storage_pd_heartbeat_failures_total",
                "Heartbeats no PD member accepted.",
            ),
            pd_catalog_epoch: gauge(
                "zankv_storage_pd_catalog_epoch",
                "Epoch of the PD catalog in effect on this node (0 = none).",
            ),
            pd_catalogs_refused: counter(
                "zankv_storage_pd_catalogs_refused_total",
                "Catalogs refused because they describe another cluster.",
            ),
            mirroring: Mutex::new(()),
            info_baseline: Mutex::new(None),
            registry,
        }
    }
}

impl NodeStats {
    /// A client connected.
    pub fn client_connected(&self) {
        self.connected_clients.inc();
        self.total_connections.inc();
    }

    /// A client disconnected.
    pub fn client_disconnected(&self) {
        self.connected_clients.dec();
    }

    /// A client waits in a blocking command until the guard drops.
    pub fn client_blocked(&self) -> BlockedGuard {
        self.blocked_clients.inc();
        BlockedGuard(self.blocked_clients.clone())
    }

    /// A connection was refused at the limit.
    pub fn connection_rejected(&self) {
        self.rejected_connections.inc();
    }

    /// `n` commands were received.
    pub fn add_commands(&self, n: u64) {
        self.total_commands.inc_by(n);
    }

    /// `n` expired keys were deleted.
    pub fn add_expired(&self, n: u64) {
        self.expired_keys.inc_by(n);
    }

    /// The partition now holds `n` keys.
    pub fn set_keys(&self, partition: &str, n: u64) {
        self.keys.with_label_values(&[partition]).set(n as i64);
    }

    /// Partition `partition` is no longer hosted here.
    pub fn forget_partition(&self, partition: &str) {
        let _ = self.keys.remove_label_values(&[partition]);
    }

    /// `n` entries were committed.
    pub fn add_committed(&self, n: usize) {
        self.entries_committed.inc_by(n as u64);
    }

    /// A batch of `changes` was applied in `took`.
    pub fn observe_apply(&self, changes: usize, took: Duration) {
        self.apply_batch_changes.observe(changes as f64);
        self.apply_seconds.observe(took.as_secs_f64());
    }

    /// A script ran for `took`.
    pub fn observe_script(&self, took: Duration) {
        self.script_seconds.observe(took.as_secs_f64());
    }

    /// A raft-log write and sync took `took`.
    pub fn observe_sync(&self, took: Duration) {
        self.raft_log_sync_seconds.observe(took.as_secs_f64());
    }

    /// One sync persisted the log changes of `groups` groups.
    pub fn observe_groups_per_sync(&self, groups: usize) {
        self.groups_per_sync.observe(groups as f64);
    }

    /// An entry was proposed.
    pub fn raft_proposed(&self) {
        self.raft_proposals.inc();
    }

    /// A ReadIndex request was made.
    pub fn raft_read_index(&self) {
        self.raft_read_indexes.inc();
    }

    /// A batch reached a replica that does not lead.
    pub fn raft_not_leader(&self) {
        self.raft_not_leader.inc();
    }

    /// PD accepted a heartbeat (`true`) or no member did.
    pub fn pd_heartbeat(&self, accepted: bool) {
        if accepted {
            self.pd_heartbeats.inc();
        } else {
            self.pd_heartbeat_failures.inc();
        }
    }

    /// The catalog of epoch `epoch` is in effect.
    pub fn pd_catalog_applied(&self, epoch: u64) {
        self.pd_catalog_epoch.set(epoch as i64);
    }

    /// A catalog of another cluster was refused.
    pub fn pd_catalog_refused(&self) {
        self.pd_catalogs_refused.inc();
    }

    /// Brings the transport's and the snapshot path's counters (plain atomics, updated
    /// where the work happens) into the registry; called before each scrape.
    pub fn mirror(
        &self,
        t: &crate::replication::transport::TransportStats,
        s: &crate::replication::snapshot::SnapshotStats,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let _one_at_a_time = self.mirroring.lock().expect("stats lock poisoned");
        let catch_up = |c: &IntCounter, v: &std::sync::atomic::AtomicU64| {
            c.inc_by(v.load(Relaxed).saturating_sub(c.get()))
        };
        catch_up(&self.raft_dropped_send, &t.dropped_send);
        catch_up(&self.raft_dropped_receive, &t.dropped_receive);
        catch_up(&self.raft_frames_sent, &t.frames_sent);
        catch_up(&self.raft_messages_sent, &t.messages_sent);
        catch_up(&self.snapshots_sent, &s.sent);
        catch_up(&self.snapshot_bytes_sent, &s.sent_bytes);
        catch_up(&self.snapshot_send_failures, &s.send_failures);
        catch_up(&self.snapshots_received, &s.received);
        catch_up(&self.snapshot_bytes_received, &s.received_bytes);
        catch_up(&self.snapshots_installed, &s.installed);
    }

    /// Reads INFO's counters, counted from the last CONFIG RESETSTAT.
    pub fn snapshot(&self) -> StatsSnapshot {
        let now = self.since_start();
        match *self.baseline() {
            None => now,
            Some(base) => StatsSnapshot {
                connected_clients: now.connected_clients,
                blocked_clients: now.blocked_clients,
                total_connections: now.total_connections - base.total_connections,
                rejected_connections: now.rejected_connections - base.rejected_connections,
                total_commands: now.total_commands - base.total_commands,
                expired_keys: now.expired_keys - base.expired_keys,
            },
        }
    }

    fn baseline(&self) -> std::sync::MutexGuard<'_, Option<StatsSnapshot>> {
        self.info_baseline
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// CONFIG RESETSTAT: INFO's counters start again from zero (the Prometheus series do
    /// not: they only grow).
    pub fn reset_info(&self) {
        *self.baseline() = Some(self.since_start());
    }

    fn since_start(&self) -> StatsSnapshot {
        StatsSnapshot {
            connected_clients: self.connected_clients.get().max(0) as u64,
            blocked_clients: self.blocked_clients.get().max(0) as u64,
            total_connections: self.total_connections.get(),
            rejected_connections: self.rejected_connections.get(),
            total_commands: self.total_commands.get(),
            expired_keys: self.expired_keys.get(),
        }
    }

    /// Every metric in the Prometheus text format.
    pub fn prometheus_text(&self) -> String {
        let mut out = Vec::new();
        // Encoding into memory cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}
