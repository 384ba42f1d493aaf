//! A PD-managed node's link to the placement driver (`pd_addrs` in the configuration).
//!
//! Every `heartbeat_ms` the node reports itself and the state of every hosted replica to
//! a PD member (trying the next member when one does not answer). When PD's catalog is
//! newer than the node's, the answer carries it and the node applies it:
//! 1. its namespaces become the routing table in effect (keys of a namespace the node
//!    did not know are routed from then on; hosting replicas stays PD's call, made
//!    through the admin API);
//! 2. every other node it lists is declared to the raft transport (addresses kept across
//!    restarts);
//! 3. the replicas of namespaces it no longer lists are deleted (a deleted namespace);
//! 4. only then it is written to `catalog.json` in the data directory (atomically
//!    replaced), and its epoch is what the next heartbeat reports.
//!
//! So a crash midway leaves the old file, and PD sends the catalog again.
//!
//! Owns the catalog in effect on this node. Invariants: a catalog is applied only if its
//! epoch is newer than the one in effect and it comes from the cluster this node joined
//! (the cluster id of the first catalog it accepted); a catalog of another cluster (a PD
//! whose metadata was replaced) is refused and counted, never applied, because applying
//! it could delete every replica here.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};
use zankv_pd_api::{Catalog, Heartbeat, HeartbeatReply, NodeInfo, ReplicaReport, Secret};

use crate::hosting::Hosting;
use crate::node_stats::NodeStats;
use crate::replication::store_loop::{StoreHandle, StoreRequest, UnhostWhen};
use crate::routing::{NamespaceLayout, Routing, SharedRouting};

/// The file (in the data directory) holding the catalog in effect.
pub const CATALOG_FILE: &str = "catalog.json";
/// Deadline of one heartbeat call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The catalog saved in `data_dir`, or an empty one (epoch 0) if there is none yet.
pub fn load_catalog(data_dir: &Path) -> Result<Catalog, String> {
    let path = data_dir.join(CATALOG_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{} is corrupt ({e}); remove it to fetch the catalog from PD again",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalog::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn save_catalog(data_dir: &Path, catalog: &Catalog) -> Result<(), String> {
    let path = data_dir.join(CATALOG_FILE);
    let tmp = data_dir.join(format!("{CATALOG_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(catalog).expect("a catalog serializes");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The routing table of `catalog`'s namespaces.
pub fn routing_of(catalog: &Catalog, default_namespace: &str) -> Routing {
    Routing::new(
        catalog
            .namespaces
            .iter()
            .map(NamespaceLayout::from)
            .collect(),
        default_namespace,
    )
}

/// What the link needs to know about this node.
pub struct LinkSettings {
    /// PD members' HTTP addresses.
    pub pd_addrs: Vec<SocketAddr>,
    /// Time between heartbeats.
    pub interval: Duration,
    /// Sent as `Authorization: Bearer` with every call.
    pub token: Option<Secret>,
    /// This node as it registers.
    pub me: NodeInfo,
    /// Namespace of keys without a known namespace prefix.
    pub default_namespace: String,
    /// Where `catalog.json` lives.
    pub data_dir: PathBuf,
}

/// The link: the catalog in effect and what applying one touches.
pub struct PdLink {
    settings: LinkSettings,
    catalog: Catalog,
    routing: Arc<SharedRouting>,
    hosting: Arc<Hosting>,
    store: StoreHandle,
    stats: Arc<NodeStats>,
    /// The member that answered last (tried first).
    current: usize,
    /// Whether the last heartbeat was accepted (failures are logged when this changes).
    reachable: bool,
}

impl PdLink {
    /// A link starting from `catalog` (the saved one, already in `routing`).
    pub fn new(
        settings: LinkSettings,
        catalog: Catalog,
        routing: Arc<SharedRouting>,
        hosting: Arc<Hosting>,
        store: StoreHandle,
        stats: Arc<NodeStats>,
    ) -> Self {
        stats.pd_catalog_applied(catalog.epoch);
        PdLink {
            settings,
            catalog,
            routing,
            hosting,
            store,
            stats,
            current: 0,
            reachable: true,
        }
    }

    /// Heartbeats until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.settings.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.beat().await,
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One heartbeat, and the catalog it brings back, if any.
    async fn beat(&mut self) {
        let heartbeat = Heartbeat {
            node: self.settings.me.clone(),
            replicas: self.reports().await,
            catalog_epoch: self.catalog.epoch,
        };
        let body = serde_json::to_vec(&heartbeat).expect("a heartbeat serializes");
        let members = self.settings.pd_addrs.len();
        let mut failures = Vec::new();
        for attempt in 0..members {
            let i = (self.current + attempt) % members;
            let addr = self.settings.pd_addrs[i];
            match self.call(addr, body.clone()).await {
                Ok(reply) => {
                    self.current = i;
                    self.stats.pd_heartbeat(true);
                    if !self.reachable {
                        info!(pd = %addr, "PD reachable again");
                        self.reachable = true;
                    }
                    if let Some(catalog) = reply.catalog {
                        self.apply(catalog).await;
                    }
                    return;
                }
                Err(e) => failures.push(e),
            }
        }
        self.stats.pd_heartbeat(false);
        if self.reachable {
            warn!(errors = ?failures, "no PD member accepted the heartbeat; the node keeps serving what it hosts and tries again");
            self.reachable = false;
        } else {
            debug!(errors = ?failures, "PD still unreachable");
        }
    }

    async fn call(&self, addr: SocketAddr, body: Vec<u8>) -> Result<HeartbeatReply, String> {
        let r = zankv_pd_api::client::call(
            addr,
            "POST",
            "/storage/heartbeat",
            Some(body),
            self.settings.token.as_ref().map(Secret::expose),
            CALL_TIMEOUT,
        )
        .await?;
        if r.status != 200 {
            return Err(format!(
                "{addr} answered the heartbeat with {}: {}",
                r.status,
                r.message()
            ));
        }
        r.json()
    }

    /// The state of every hosted replica.
    async fn reports(&self) -> Vec<ReplicaReport> {
        let raft = self.store.status().await.unwrap_or_default();
        let mut out = Vec::with_capacity(raft.len());
        for (group, name, worker) in self.store.workers().await {
            let Some(g) = raft.iter().find(|g| g.group == group) else {
                continue;
            };
            let state = worker.state();
            out.push(ReplicaReport {
                partition: name,
                group,
                role: g.role.to_string(),
                term: g.term,
                leader: g.leader,
                commit: g.commit,
                applied: state.as_ref().map_or(0, |s| s.applied_index),
                voters: g.voters.clone(),
                learners: g.learners.clone(),
                lag: g.lag.clone(),
                keys: state.as_ref().map_or(0, |s| s.keys),
                replica: g.replica,
                member_replicas: g.member_replicas.clone(),
            });
        }
        out
    }

    /// Applies a catalog from PD (see the module docs for the order).
    async fn apply(&mut self, catalog: Catalog) {
        if catalog.epoch <= self.catalog.epoch {
            return;
        }
        if !self.catalog.cluster_id.is_empty() && catalog.cluster_id != self.catalog.cluster_id {
            self.stats.pd_catalog_refused();
            warn!(
                joined = %self.catalog.cluster_id,
                offered = %catalog.cluster_id,
                "refusing a catalog of another cluster (was PD's metadata replaced?); nothing changes here"
            );
            return;
        }
        self.routing
            .replace(routing_of(&catalog, &self.settings.default_namespace));
        let mut complete = true;
        for node in &catalog.nodes {
            if node.node_id == self.settings.me.node_id
                || self.catalog.nodes.iter().any(|n| n == node)
            {
                continue;
            }
            if let Err(e) = self.declare(node).await {
                warn!(node = node.node_id, error = %e, "cannot declare a node of the catalog; it is applied again");
                complete = false;
            }
        }
        let kept: BTreeSet<u32> = catalog.namespaces.iter().map(|ns| ns.id).collect();
        for group in self.hosting.hosted().await {
            let namespace = (group >> 32) as u32;
            if kept.contains(&namespace) {
                continue;
            }
            match self
                .hosting
                .unhost(group, UnhostWhen::NamespaceDeleted, None)
                .await
            {
                Ok(_) => info!(group, "replica of a deleted namespace removed"),
                Err(e) => {
                    complete = false;
                    warn!(group, error = %e, "cannot remove a replica of a deleted namespace; will try again");
                }
            }
        }
        if !complete {
            // Not recorded: the next heartbeat reports the old epoch and PD resends it.
            return;
        }
        if let Err(e) = save_catalog(&self.settings.data_dir, &catalog) {
            warn!(error = %e, "cannot save the catalog; PD will send it again");
            return;
        }
        info!(
            epoch = catalog.epoch,
            namespaces = catalog.namespaces.len(),
            nodes = catalog.nodes.len(),
            "PD catalog in effect"
        );
        self.stats.pd_catalog_applied(catalog.epoch);
        self.catalog = catalog;
    }

    /// Declares `node`'s addresses to the raft transport.
    async fn declare(&self, node: &NodeInfo) -> Result<(), String> {
        let ip: std::net::IpAddr = node
            .broadcast_address
            .parse()
            .map_err(|_| format!("address {:?} is not an IP address", node.broadcast_address))?;
        let raft_addr = SocketAddr::new(ip, node.raft_port);
        let redis_addr = SocketAddr::new(ip, node.redis_port);
        self.store
            .ask(|reply| StoreRequest::AddNode {
                id: node.node_id,
                raft_addr,
                redis_addr,
                reply,
            })
            .await
            .unwrap_or(Err(crate::replication::membership::AdminError::Stopping))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zankv_pd_api::{ExpirationPolicy, NamespaceMeta};

    fn catalog(epoch: u64) -> Catalog {
        Catalog {
            cluster_id: "c1".into(),
            epoch,
            namespaces: vec![NamespaceMeta {
                name: "default".into(),
                id: 1,
                partition_num: 4,
                replicator: 1,
                expiration_policy: ExpirationPolicy::WaitCompact,
                tags: vec![],
                hash_tags: false,
                stale_reads: false,
                initial_replicas: vec![vec![1]; 4],
            }],
            nodes: vec![],
        }
    }

    #[test]
    fn the_saved_catalog_reads_back_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_catalog(dir.path()).unwrap(), Catalog::default());
        save_catalog(dir.path(), &catalog(3)).unwrap();
        assert_eq!(load_catalog(dir.path()).unwrap(), catalog(3));
        assert!(!dir.path().join("catalog.json.tmp").exists());
        std::fs::write(dir.path().join(CATALOG_FILE), b"{oops").unwrap();
        let err = load_catalog(dir.path()).unwrap_err();
        assert!(err.contains("catalog.json is corrupt"), "{err}");
    }

    #[test]
    fn a_catalog_routes_its_namespaces() {
        let r = routing_of(&catalog(1), "default");
        assert_eq!(r.groups().len(), 4);
        assert!(r.key_group(b"k").is_ok());
        assert!(routing_of(&catalog(1), "other").key_group(b"k").is_err());
    }
}
