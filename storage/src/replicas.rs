//! Starting the replicas a node hosts: open a partition's database (finishing a snapshot
//! install a crash interrupted) and start its worker thread, at start-up and when the admin
//! API hosts a new replica.
//!
//! Invariants:
//! - a partition is served only if its database holds at least its raft log's compaction
//!   point; otherwise the snapshot received for that point is swapped in first, and without
//!   one the node refuses to start (the replica must be re-created from the others);
//! - a new replica starts from an empty database: whatever an earlier replica of the same
//!   partition left in its directory is deleted first.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::apply_pool::ApplyPool;
use crate::engine::rocks::{RocksEngine, RocksOptions};
use crate::engine::{Engine, EngineError};
use crate::node_stats::NodeStats;
use crate::partition::Partition;
use crate::replication::log_store::INIT_INDEX;
use crate::replication::snapshot::{self, SnapshotDirs, SnapshotStats};
use crate::replication::store_loop::StoreHandle;
use crate::routing::GroupLayout;
use crate::worker::{PartitionFiles, WorkerHandle, WorkerSettings};

/// Opens partitions and starts their workers.
pub struct ReplicaFactory {
    /// The node's data directory (each partition in `<data_dir>/<name>`).
    pub data_dir: PathBuf,
    /// RocksDB settings shared by every partition.
    pub rocks: RocksOptions,
    /// Snapshot directories.
    pub snapshots: SnapshotDirs,
    /// The store loop, for the workers' events.
    pub store: StoreHandle,
    /// How long a client batch may wait for its writes.
    pub write_timeout: Duration,
    /// Node counters.
    pub stats: Arc<NodeStats>,
    /// Snapshot counters.
    pub snapshot_stats: Arc<SnapshotStats>,
    /// Where keyspace events go.
    pub events: Arc<crate::events::Notifier>,
    /// The apply threads the workers run on.
    pub pool: ApplyPool,
}

impl ReplicaFactory {
    fn files(&self, layout: &GroupLayout) -> PartitionFiles {
        let rocks = self.rocks.clone();
        PartitionFiles {
            group: layout.id,
            dir: self.data_dir.join(&layout.name),
            snapshots: self.snapshots.clone(),
            open: Box::new(move |dir: &Path| {
                RocksEngine::open_unlogged(dir, &rocks).map(|e| Box::new(e) as Box<dyn Engine>)
            }),
        }
    }

    /// Opens the hosted partition `layout` whose raft log is compacted up to `compaction`
    /// and starts its worker. Returns the worker and the partition's applied index.
    /// With `bootstrap`, the group is new and this node one of its initial voters: an
    /// empty partition starts at the group log's first index.
    pub fn start(
        &self,
        layout: &GroupLayout,
        compaction: u64,
        bootstrap: bool,
    ) -> Result<(WorkerHandle, u64), String> {
        let files = self.files(layout);
        let mut partition = open_partition(&files, &layout.name, compaction)?;
        if bootstrap {
            partition
                .bootstrap_at(INIT_INDEX)
                .map_err(|e| format!("cannot create partition {}: {e}", layout.name))?;
        }
        let applied = partition.state().applied_index;
        Ok((self.spawn(layout, files, partition)?, applied))
    }

    /// Starts a new, empty replica of `layout`: one of the group's initial voters with
    /// `bootstrap`, else a replica that joins the existing group (and waits for a
    /// snapshot).
    pub fn start_empty(
        &self,
        layout: &GroupLayout,
        bootstrap: bool,
    ) -> Result<WorkerHandle, String> {
        let files = self.files(layout);
        if files.dir.exists() {
            std::fs::remove_dir_all(&files.dir).map_err(|e| {
                format!("cannot delete the old data of {}: {e}", files.dir.display())
            })?;
        }
        self.snapshots.remove_received(layout.id, None);
        let mut partition = files
            .open_partition()
            .map_err(|e| format!("cannot create partition {}: {e}", layout.name))?;
        if bootstrap {
            partition
                .bootstrap_at(INIT_INDEX)
                .map_err(|e| format!("cannot create partition {}: {e}", layout.name))?;
        }
        self.spawn(layout, files, partition)
    }

    fn spawn(
        &self,
        layout: &GroupLayout,
        files: PartitionFiles,
        partition: Partition,
    ) -> Result<WorkerHandle, String> {
        let settings = WorkerSettings {
            name: layout.name.clone(),
            files,
            to_store: self.store.to_store(layout.id),
            write_timeout: self.write_timeout,
            stats: self.stats.clone(),
            snapshot_stats: self.snapshot_stats.clone(),
            events: self.events.clone(),
        };
        Ok(self.pool.start(layout.id, partition, settings))
    }

    /// Stops every worker (once the store loop is gone) and waits for the apply threads.
    pub fn shutdown(&self) {
        self.pool.shutdown();
    }
}

/// Opens a hosted partition: an interrupted snapshot install is finished, and if the raft
/// log was compacted (or replaced by a snapshot) beyond what the database holds, the
/// snapshot received for that point is swapped in.
fn open_partition(
    files: &PartitionFiles,
    name: &str,
    compaction: u64,
) -> Result<Partition, String> {
    snapshot::recover_swap(&files.dir)
        .map_err(|e| format!("cannot recover {}: {e}", files.dir.display()))?;
    let partition = files.open_partition().map_err(|e: EngineError| {
        format!(
            "cannot open partition {name} in {}: {e}",
            files.dir.display()
        )
    })?;
    let applied = partition.state().applied_index;
    if applied >= compaction {
        return Ok(partition);
    }
    files.check_received(compaction).map_err(|e| {
        format!(
            "partition {name} holds index {applied} but its raft log starts after {compaction}, \
             and the snapshot for {compaction} cannot be used ({e}); this replica must be \
             re-created from the others"
        )
    })?;
    drop(partition);
    info!(
        partition = name,
        index = compaction,
        "installing a snapshot received before a restart"
    );
    files
        .install_received(compaction)
        .map_err(|e| format!("cannot install the snapshot of {name}: {e}"))
}
