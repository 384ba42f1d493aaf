//! PD's durable metadata: the namespaces (with where each partition was created), the
//! registered storage nodes and the catalog epoch.
//!
//! [`MetaStore`] keeps it either in `<data_dir>/meta.json` (a single PD) or in the raft
//! group of PD's members (`crate::replication`). A change is made on a copy and becomes the
//! current state only once it is durable: written to a temporary file, synced and renamed
//! over the old one (and the directory synced), or committed by a quorum of members. A
//! change that cannot be made durable is not made, and a crash leaves the old or the new
//! state, never a torn one.
//!
//! Invariants: `cluster_id` is chosen once, when the metadata is created, and never
//! changes (storage nodes refuse a catalog of another cluster); the catalog epoch grows
//! with every change of namespaces or nodes;
//! namespace ids are never reused; `generation` grows at every start, so routing epochs
//! built on it keep growing across restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use zankv_pd_api::{Catalog, NamespaceMeta, NodeInfo};

use crate::replication::member::{Committed, MemberHandle};

/// Everything PD must not forget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMeta {
    /// This cluster's identity, random, chosen when the metadata is created.
    #[serde(default)]
    pub cluster_id: String,
    /// Grows with every change of `namespaces` or `nodes`.
    pub catalog_epoch: u64,
    /// Grows at every start of PD.
    pub generation: u64,
    /// The next namespace id to hand out.
    pub next_namespace_id: u32,
    /// The namespaces.
    pub namespaces: Vec<NamespaceMeta>,
    /// The storage nodes that registered, by id.
    pub nodes: BTreeMap<u64, NodeInfo>,
    /// (raft group, node) pairs where the node has hosted the group as one of its initial
    /// voters. PD asks a node to bootstrap a group only while the pair is not here: a node
    /// that lost its replica later must rejoin as a new member, never start over from the
    /// initial configuration.
    #[serde(default)]
    pub bootstrapped: BTreeSet<(u64, u64)>,
    /// Nodes being drained (`/cluster/node/remove`): they get no new replicas, lose the
    /// ones they have, and are forgotten once empty and stopped.
    #[serde(default)]
    pub removing: BTreeSet<u64>,
    /// Whether the balancers may move replicas and leaders (`/cluster/balance`).
    #[serde(default = "enabled")]
    pub balance_enabled: bool,
    /// A rolling upgrade is in progress (`/cluster/upgrade/begin`): no new operator starts.
    #[serde(default)]
    pub upgrading: bool,
    /// The "stable node number": the most nodes seen alive at once (not counting nodes
    /// being removed), lowered only by an operator (`/stable/nodenum`) or a node removal.
    /// Automatic moves stop while half of it or more is gone (network-partition guard).
    #[serde(default)]
    pub stable_node_num: usize,
}

fn enabled() -> bool {
    true
}

impl ClusterMeta {
    /// The catalog storage nodes get.
    pub fn catalog(&self) -> Catalog {
        Catalog {
            cluster_id: self.cluster_id.clone(),
            epoch: self.catalog_epoch,
            namespaces: self.namespaces.clone(),
            nodes: self.nodes.values().cloned().collect(),
        }
    }

    /// The namespace named `name`.
    pub fn namespace(&self, name: &str) -> Option<&NamespaceMeta> {
        self.namespaces.iter().find(|ns| ns.name == name)
    }
}

/// Where the metadata is kept.
enum Backend {
    /// One file, for a single PD.
    File(PathBuf),
    /// PD's raft group: changes are proposed by the leader and apply once committed.
    Replicated {
        member: MemberHandle,
        committed: watch::Receiver<Committed>,
    },
}

/// How long a replicated change may take to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The metadata and what keeps it.
pub struct MetaStore {
    backend: Backend,
    meta: ClusterMeta,
}

/// The metadata a new cluster starts with.
pub fn initial_meta() -> ClusterMeta {
    ClusterMeta {
        next_namespace_id: 1,
        balance_enabled: true,
        ..ClusterMeta::default()
    }
}

impl MetaStore {
    /// Opens (or creates) the metadata in `dir`, and counts this start in `generation`.
    pub fn open(dir: &Path) -> Result<MetaStore, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
        let path = dir.join("meta.json");
        let meta = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is corrupt: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => initial_meta(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut store = MetaStore {
            backend: Backend::File(path),
            meta,
        };
        store.new_generation()?;
        Ok(store)
    }

    /// The current metadata.
    pub fn meta(&self) -> &ClusterMeta {
        &self.meta
    }

    /// Changes the metadata with `change` and makes it durable before it counts. If `change`
    /// fails or the file cannot be written, nothing changes.
    pub fn update<T, E: From<String>>(
        &mut self,
        change: impl FnOnce(&mut ClusterMeta) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut next = self.meta.clone();
        let out = change(&mut next)?;
        if next != self.meta {
            match &self.backend {
                Backend::File(path) => write_atomically(path, &next).map_err(E::from)?,
                Backend::Replicated { member, .. } => {
                    let data = serde_json::to_vec(&next).expect("metadata serializes");
                    member
                        .propose_and_wait(data, COMMIT_TIMEOUT)
                        .map_err(E::from)?;
                }
            }
            self.meta = next;
        }
        Ok(out)
    }

    /// Metadata replicated by `member`'s raft group; [`MetaStore::refresh`] keeps it
    /// current.
    pub fn replicated(member: MemberHandle) -> Result<MetaStore, String> {
        let committed = member.committed();
        let meta = decode(&committed.borrow().data)?;
        Ok(MetaStore {
            backend: Backend::Replicated { member, committed },
            meta,
        })
    }

    /// Takes in what the raft group committed since the last call (a follower's view, or a
    /// new leader catching up). A no-op for a single PD.
    pub fn refresh(&mut self) {
        if let Backend::Replicated { committed, .. } = &mut self.backend {
            if committed.has_changed().unwrap_or(false) {
                let data = committed.borrow_and_update().data.clone();
                match decode(&data) {
                    Ok(meta) => self.meta = meta,
                    Err(e) => {
                        tracing::error!(error = %e, "committed metadata does not decode; keeping the previous")
                    }
                }
            }
        }
    }

    /// Counts a start (a single PD's open) or a new leader's term in `generation`, and
    /// gives the cluster its id if it has none yet.
    pub fn new_generation(&mut self) -> Result<(), String> {
        self.update(|m| {
            m.generation += 1;
            if m.cluster_id.is_empty() {
                m.cluster_id = new_cluster_id();
            }
            Ok::<(), String>(())
        })
    }
}

fn decode(data: &[u8]) -> Result<ClusterMeta, String> {
    serde_json::from_slice(data).map_err(|e| format!("replicated metadata: {e}"))
}

/// 16 random hex digits (std's per-process random hash keys, mixed with the time).
fn new_cluster_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

fn write_atomically(path: &Path, meta: &ClusterMeta) -> Result<(), String> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(meta).expect("metadata serializes");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zankv_pd_api::ExpirationPolicy;

    fn ns(name: &str, id: u32) -> NamespaceMeta {
        NamespaceMeta {
            name: name.into(),
            id,
            partition_num: 2,
            replicator: 1,
            expiration_policy: ExpirationPolicy::WaitCompact,
            tags: vec![],
            hash_tags: false,
            stale_reads: false,
            initial_replicas: vec![vec![1], vec![1]],
        }
    }

    #[test]
    fn changes_survive_a_reopen_and_failed_changes_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = MetaStore::open(dir.path()).unwrap();
        assert_eq!(store.meta().generation, 1);
        assert_eq!(store.meta().next_namespace_id, 1);
        store
            .update(|m| {
                m.namespaces.push(ns("a", 1));
                m.next_namespace_id = 2;
                m.catalog_epoch += 1;
                Ok::<(), String>(())
            })
            .unwrap();
        let failed: Result<(), String> = store.update(|m| {
            m.namespaces.clear();
            Err("refused".into())
        });
        assert!(failed.is_err());
        assert_eq!(
            store.meta().namespaces.len(),
            1,
            "a failed change changes nothing"
        );
        drop(store);
        let store = MetaStore::open(dir.path()).unwrap();
        assert_eq!(store.meta().namespace("a"), Some(&ns("a", 1)));
        assert_eq!(store.meta().catalog_epoch, 1);
        assert_eq!(store.meta().generation, 2, "every start counts");
        assert_eq!(store.meta().cluster_id.len(), 16);
        let id = store.meta().cluster_id.clone();
        drop(store);
        let store = MetaStore::open(dir.path()).unwrap();
        assert_eq!(store.meta().cluster_id, id, "the cluster id never changes");
        let other = tempfile::tempdir().unwrap();
        assert_ne!(MetaStore::open(other.path()).unwrap().meta().cluster_id, id);
    }

    #[test]
    fn a_corrupt_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meta.json"), b"{not json").unwrap();
        let err = MetaStore::open(dir.path()).err().unwrap();
        assert!(err.contains("meta.json is corrupt"), "{err}");
    }
}
