//! PD's model of the cluster: the durable metadata plus what storage nodes last reported.
//!
//! [`Cluster`] is owned by one thread (see `server.rs`); everything else asks it through
//! messages. It is a plain value driven by inputs (heartbeats, API calls, ticks) and the
//! current time, so it is tested without sockets or clocks. The desired state is the
//! metadata; [`Cluster::schedule`] compares it with the reports and says what each node
//! must do (level-triggered: the same comparison runs again until reports show it done, so
//! every command is idempotent). Scheduling (operators, checkers, balancers, node removal,
//! pauses) is in the `scheduling` submodule.

mod scheduling;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde::Serialize;
use zankv_pd_api::{
    partition_name, Catalog, ExpirationPolicy, Heartbeat, HeartbeatReply, NamespaceMeta, NodeInfo,
    QueryNode, QueryPartition, QueryResponse, ReplicaReport,
};

pub use scheduling::{ClusterSettings, RoundReport};

use crate::command::NodeCommand;
use crate::meta::{ClusterMeta, MetaStore};
use crate::placement::{self, Candidate};
use crate::schedule::Operator;

/// Why a request failed: an HTTP status and a message naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

impl Refusal {
    /// A 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Refusal {
            status: 400,
            message: message.into(),
        }
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Refusal {
            status: 404,
            message: message.into(),
        }
    }

    /// A 409: the cluster's state does not allow it.
    pub fn conflict(message: impl Into<String>) -> Self {
        Refusal {
            status: 409,
            message: message.into(),
        }
    }
}

impl From<String> for Refusal {
    /// A failure to persist metadata: 400 when this member lost leadership on the way
    /// (`E_FAILED_ON_NOT_LEADER`, as every refusal by a non-leader), 500 otherwise.
    fn from(message: String) -> Self {
        let status = if message.starts_with("E_FAILED_ON_NOT_LEADER") {
            400
        } else {
            500
        };
        Refusal { status, message }
    }
}

/// A validated request to create a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateNamespace {
    /// Its name.
    pub name: String,
    /// Number of partitions.
    pub partition_num: u32,
    /// Replicas per partition.
    pub replicator: u32,
    /// Expiration policy.
    pub expiration_policy: ExpirationPolicy,
    /// Placement tags.
    pub tags: Vec<String>,
    /// Redis-style hash tags.
    pub hash_tags: bool,
    /// Reads answered by any replica.
    pub stale_reads: bool,
}

/// A storage node as `/datanodes` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// Its registration.
    #[serde(flatten)]
    pub info: NodeInfo,
    /// Whether it sent a heartbeat recently.
    pub alive: bool,
    /// Milliseconds since its last heartbeat (absent if none since PD started).
    pub last_heartbeat_ms: Option<u64>,
    /// Replicas it hosts.
    pub replicas: usize,
    /// Replicas it leads.
    pub leaders: usize,
    /// Being drained (`/cluster/node/remove`); forgotten once empty and stopped.
    pub removing: bool,
}

/// `/cluster/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStats {
    /// True when every registered node is alive, every partition has a leader and all its
    /// replicas, and no operator is running (ZanRedisDB's field).
    pub stable: bool,
    /// Registered nodes.
    pub nodes: usize,
    /// Nodes alive.
    pub alive_nodes: usize,
    /// Namespaces.
    pub namespaces: usize,
    /// Partitions of all namespaces.
    pub partitions: usize,
    /// Partitions with no known leader.
    pub leaderless: usize,
    /// Partitions with fewer voters than wanted.
    pub under_replicated: usize,
    /// Partitions without a leader and without a quorum of alive voters: they cannot
    /// serve until their nodes come back.
    pub unavailable: Vec<String>,
    /// Operators running.
    pub operators: usize,
    /// Why no new operator starts, if so.
    pub paused: Option<String>,
    /// The stable node number (network-partition guard).
    pub stable_node_num: usize,
}

/// What the last heartbeat of a node said.
struct NodeLive {
    last: Instant,
    catalog_epoch: u64,
    /// By partition name.
    replicas: BTreeMap<String, ReplicaReport>,
}

/// A routing table published for a namespace, with its epoch.
struct Published {
    epoch: u64,
    table: QueryResponse,
}

/// The report of a partition's leader among `reports`: a replica that says it leads in the
/// highest term any replica reports. A leader whose term is behind another replica's (it
/// was deposed and has not heard yet) is not trusted.
pub(crate) fn leader_report<'a>(
    reports: &[(u64, &'a ReplicaReport)],
) -> Option<(u64, &'a ReplicaReport)> {
    let term = reports.iter().map(|(_, r)| r.term).max()?;
    reports
        .iter()
        .find(|(_, r)| r.role == "leader" && r.term == term)
        .map(|(id, r)| (*id, *r))
}

/// The cluster as PD sees it.
pub struct Cluster {
    meta: MetaStore,
    live: HashMap<u64, NodeLive>,
    /// Partition name → the nodes whose last heartbeat reported a replica of it (an index
    /// over `live`, kept in step with it).
    hosts: HashMap<String, BTreeSet<u64>>,
    published: HashMap<String, Published>,
    routing_counter: u64,
    settings: ClusterSettings,
    /// When this PD started: a node not heard of since counts as down from then.
    started: Instant,
    /// Running operators, by raft group (in memory: after a restart the checkers find what
    /// is still needed).
    operators: BTreeMap<u64, Operator>,
}

impl Cluster {
    /// A cluster over `meta`, starting at `now`.
    pub fn new(meta: MetaStore, settings: ClusterSettings, now: Instant) -> Self {
        Cluster {
            meta,
            live: HashMap::new(),
            hosts: HashMap::new(),
            published: HashMap::new(),
            routing_counter: 0,
            settings,
            started: now,
            operators: BTreeMap::new(),
        }
    }

    /// The metadata.
    pub fn meta(&self) -> &ClusterMeta {
        self.meta.meta()
    }

    /// Takes in metadata the raft group committed (see [`MetaStore::refresh`]).
    pub fn refresh_meta(&mut self) {
        self.meta.refresh();
    }

    /// This member now leads PD's raft group: what it knew of the nodes is stale (the
    /// heartbeats went to the old leader), so it starts over as if PD had just started, and
    /// counts a new generation so routing epochs keep growing.
    pub fn became_leader(&mut self, now: Instant) -> Result<(), Refusal> {
        self.live.clear();
        self.hosts.clear();
        self.published.clear();
        self.operators.clear();
        self.started = now;
        self.meta.new_generation()?;
        tracing::info!(generation = self.meta().generation, "this PD member leads");
        Ok(())
    }

    /// This member no longer leads: its operators stop (the new leader's checkers find
    /// what is still needed).
    pub fn lost_leadership(&mut self) {
        self.operators.clear();
        self.live.clear();
        self.hosts.clear();
    }

    /// Whether node `id` sent a heartbeat within the timeout.
    pub fn alive(&self, id: u64, now: Instant) -> bool {
        self.live
            .get(&id)
            .is_some_and(|l| now.duration_since(l.last) < self.settings.heartbeat_timeout)
    }

    /// A storage node's heartbeat: registers (or updates) it and records its replicas.
    pub fn heartbeat(&mut self, hb: Heartbeat, now: Instant) -> Result<HeartbeatReply, Refusal> {
        if hb.node.node_id == 0 || hb.node.node_id > zankv_pd_api::MAX_NODE_ID {
            return Err(Refusal::bad_request(format!(
                "node_id must be within 1..={}",
                zankv_pd_api::MAX_NODE_ID
            )));
        }
        let known = self.meta().nodes.get(&hb.node.node_id).cloned();
        if known.as_ref() != Some(&hb.node) {
            let node = hb.node.clone();
            self.meta.update(|m| {
                m.nodes.insert(node.node_id, node);
                m.catalog_epoch += 1;
                Ok::<(), Refusal>(())
            })?;
            tracing::info!(node = hb.node.node_id, address = %hb.node.broadcast_address, "storage node registered");
        }
        let node = hb.node.node_id;
        let first_reports: Vec<(u64, u64)> = hb
            .replicas
            .iter()
            .map(|r| (r.group, node))
            .filter(|pair| {
                !self.meta().bootstrapped.contains(pair)
                    && self.meta().namespaces.iter().any(|ns| {
                        u64::from(ns.id) == pair.0 >> 32
                            && ns
                                .initial_replicas
                                .get((pair.0 & u64::from(u32::MAX)) as usize)
                                .is_some_and(|voters| voters.contains(&node))
                    })
            })
            .collect();
        if !first_reports.is_empty() {
            self.meta.update(|m| {
                m.bootstrapped.extend(first_reports);
                Ok::<(), Refusal>(())
            })?;
        }
        let catalog = (hb.catalog_epoch < self.meta().catalog_epoch).then(|| self.meta().catalog());
        self.forget_reports(node);
        for r in &hb.replicas {
            self.hosts
                .entry(r.partition.clone())
                .or_default()
                .insert(node);
        }
        self.live.insert(
            node,
            NodeLive {
                last: now,
                // What the node says it has applied, not what was just sent: it may crash
                // before applying it, and PD must not act as if it knew the namespace.
                catalog_epoch: hb.catalog_epoch,
                replicas: hb
                    .replicas
                    .into_iter()
                    .map(|r| (r.partition.clone(), r))
                    .collect(),
            },
        );
        Ok(HeartbeatReply { catalog })
    }

    /// Creates a namespace, placing its partitions on the alive nodes that are not being
    /// removed.
    pub fn create_namespace(
        &mut self,
        req: CreateNamespace,
        now: Instant,
    ) -> Result<NamespaceMeta, Refusal> {
        if self.meta().namespace(&req.name).is_some() {
            return Err(Refusal::conflict(format!(
                "namespace {} already exists",
                req.name
            )));
        }
        let candidates: Vec<Candidate> = self
            .meta()
            .nodes
            .values()
            .filter(|n| self.alive(n.node_id, now) && !self.meta().removing.contains(&n.node_id))
            .map(|n| Candidate {
                id: n.node_id,
                dc_info: n.dc_info.clone(),
                tags: n.tags.clone(),
            })
            .collect();
        let initial = placement::place(&candidates, req.partition_num, req.replicator, &req.tags)
            .map_err(Refusal::conflict)?;
        let created = self.meta.update(|m| {
            let id = m.next_namespace_id;
            if id > u32::from(u16::MAX) {
                return Err(Refusal::conflict("every namespace id has been used"));
            }
            let ns = NamespaceMeta {
                name: req.name.clone(),
                id,
                partition_num: req.partition_num,
                replicator: req.replicator,
                expiration_policy: req.expiration_policy,
                tags: req.tags.clone(),
                hash_tags: req.hash_tags,
                stale_reads: req.stale_reads,
                initial_replicas: initial,
            };
            m.next_namespace_id += 1;
            m.namespaces.push(ns.clone());
            m.catalog_epoch += 1;
            Ok(ns)
        })?;
        tracing::info!(namespace = %created.name, partitions = created.partition_num, replicas = created.replicator, "namespace created");
        Ok(created)
    }

    /// Deletes a namespace. Storage nodes drop its replicas once their catalog no longer
    /// lists it.
    pub fn delete_namespace(&mut self, name: &str) -> Result<(), Refusal> {
        if self.meta().namespace(name).is_none() {
            return Err(Refusal::not_found(format!("no namespace named {name}")));
        }
        self.meta.update(|m| {
            m.namespaces.retain(|ns| ns.name != name);
            let kept: Vec<u64> = m.namespaces.iter().map(|ns| u64::from(ns.id)).collect();
            m.bootstrapped
                .retain(|(group, _)| kept.contains(&(group >> 32)));
            m.catalog_epoch += 1;
            Ok::<(), Refusal>(())
        })?;
        self.published.remove(name);
        tracing::info!(namespace = name, "namespace deleted");
        Ok(())
    }

    /// The names of the namespaces.
    pub fn namespaces(&self) -> Vec<String> {
        self.meta()
            .namespaces
            .iter()
            .map(|ns| ns.name.clone())
            .collect()
    }

    /// The catalog.
    pub fn catalog(&self) -> Catalog {
        self.meta().catalog()
    }

    /// Drops what node `node` last reported (its entry in `live` and the index).
    fn forget_reports(&mut self, node: u64) {
        if let Some(old) = self.live.remove(&node) {
            for name in old.replicas.keys() {
                if let Some(nodes) = self.hosts.get_mut(name) {
                    nodes.remove(&node);
                    if nodes.is_empty() {
                        self.hosts.remove(name);
                    }
                }
            }
        }
    }

    /// Every alive replica report of partition `name`, with its node, by node id.
    fn reports(&self, name: &str, now: Instant) -> Vec<(u64, &ReplicaReport)> {
        let Some(nodes) = self.hosts.get(name) else {
            return Vec::new();
        };
        nodes
            .iter()
            .filter(|id| self.alive(**id, now))
            .filter_map(|id| Some((*id, self.live.get(id)?.replicas.get(name)?)))
            .collect()
    }

    /// The leader of partition `name` (the alive replica that says it leads, in the
    /// highest term) and its voters.
    fn leader_of(&self, name: &str, now: Instant) -> Option<(u64, Vec<u64>)> {
        leader_report(&self.reports(name, now)).map(|(id, r)| (id, r.voters.clone()))
    }

    /// The routing table of namespace `ns`, with an epoch that grows whenever it changes.
    pub fn query(&mut self, ns: &str, now: Instant) -> Option<QueryResponse> {
        let meta = self.meta().namespace(ns)?.clone();
        let node = |id: u64| self.meta().nodes.get(&id).map(QueryNode::from);
        let mut partitions = BTreeMap::new();
        for p in 0..meta.partition_num {
            let name = partition_name(&meta.name, p);
            let (leader, voters) = match self.leader_of(&name, now) {
                Some((leader, voters)) => (node(leader), voters),
                None => (None, meta.initial_replicas[p as usize].clone()),
            };
            partitions.insert(
                p.to_string(),
                QueryPartition {
                    leader,
                    replicas: voters.into_iter().filter_map(node).collect(),
                },
            );
        }
        let mut table = QueryResponse {
            epoch: 0,
            partition_num: meta.partition_num,
            replicator: meta.replicator,
            expire_policy: meta.expiration_policy.name().to_string(),
            fsync_optimized: true,
            eng_type: "rockredis".into(),
            hash_tags: meta.hash_tags,
            stale_reads: meta.stale_reads,
            partitions,
        };
        let generation = self.meta().generation;
        let changed = self.published.get(ns).is_none_or(|p| {
            p.table.partitions != table.partitions || p.table.stale_reads != table.stale_reads
        });
        if changed {
            self.routing_counter += 1;
            let epoch = (generation << 32) | self.routing_counter;
            table.epoch = epoch;
            self.published.insert(
                ns.to_string(),
                Published {
                    epoch,
                    table: table.clone(),
                },
            );
        }
        let published = &self.published[ns];
        table.epoch = published.epoch;
        Some(table)
    }

    /// The routing table of every namespace (see [`Cluster::query`]).
    pub fn routing_tables(&mut self, now: Instant) -> BTreeMap<String, QueryResponse> {
        let names = self.namespaces();
        names
            .into_iter()
            .filter_map(|ns| Some((ns.clone(), self.query(&ns, now)?)))
            .collect()
    }

    /// The registered nodes.
    pub fn datanodes(&self, now: Instant) -> Vec<NodeView> {
        self.meta()
            .nodes
            .values()
            .map(|n| {
                let live = self.live.get(&n.node_id);
                let replicas = live.map_or(0, |l| l.replicas.len());
                let leaders = live.map_or(0, |l| {
                    l.replicas.values().filter(|r| r.role == "leader").count()
                });
                NodeView {
                    info: n.clone(),
                    alive: self.alive(n.node_id, now),
                    last_heartbeat_ms: live.map(|l| now.duration_since(l.last).as_millis() as u64),
                    replicas,
                    leaders,
                    removing: self.meta().removing.contains(&n.node_id),
                }
            })
            .collect()
    }

    /// `/cluster/stats`.
    pub fn stats(&self, now: Instant) -> ClusterStats {
        let nodes = self.meta().nodes.len();
        let alive_nodes = self
            .meta()
            .nodes
            .keys()
            .filter(|id| self.alive(**id, now))
            .count();
        let mut partitions = 0;
        let mut leaderless = 0;
        let mut under_replicated = 0;
        for ns in &self.meta().namespaces {
            for p in 0..ns.partition_num {
                partitions += 1;
                let name = partition_name(&ns.name, p);
                match self.leader_of(&name, now) {
                    None => leaderless += 1,
                    Some((_, voters)) if voters.len() < ns.replicator as usize => {
                        under_replicated += 1
                    }
                    Some(_) => {}
                }
            }
        }
        let view = self.view(now);
        ClusterStats {
            stable: alive_nodes == nodes
                && leaderless == 0
                && under_replicated == 0
                && self.operators.is_empty(),
            nodes,
            alive_nodes,
            namespaces: self.meta().namespaces.len(),
            partitions,
            leaderless,
            under_replicated,
            unavailable: crate::schedule::leader_checker::unavailable(&view),
            operators: self.operators.len(),
            paused: self.paused(&view),
            stable_node_num: self.meta().stable_node_num,
        }
    }

    /// What nodes must do so that a new namespace's groups form: an alive node that is
    /// one of a partition's initial replicas, knows the namespace (its catalog is recent
    /// enough), has never hosted it (see `bootstrapped`), does not report it, and has not
    /// been removed from the group by its leader already, must host it as an initial
    /// voter. (Everything after creation is the operators' work.)
    pub fn bootstrap_commands(&self, now: Instant) -> Vec<NodeCommand> {
        let epoch = self.meta().catalog_epoch;
        let mut out = Vec::new();
        for (id, live) in &self.live {
            if !self.alive(*id, now) || live.catalog_epoch < epoch {
                continue;
            }
            for ns in &self.meta().namespaces {
                for (p, replicas) in ns.initial_replicas.iter().enumerate() {
                    if !replicas.contains(id) {
                        continue;
                    }
                    let name = partition_name(&ns.name, p as u32);
                    let group = zankv_pd_api::group_id(ns.id, p as u32);
                    let removed = self
                        .leader_of(&name, now)
                        .is_some_and(|(_, voters)| !voters.contains(id));
                    if !removed
                        && !self.meta().bootstrapped.contains(&(group, *id))
                        && !live.replicas.contains_key(&name)
                    {
                        out.push(NodeCommand::Host {
                            node: *id,
                            partition: name,
                            replica: None,
                        });
                    }
                }
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    fn node(id: u64) -> NodeInfo {
        NodeInfo {
            node_id: id,
            broadcast_address: "127.0.0.1".into(),
            redis_port: 10000 + id as u16,
            http_port: 11000 + id as u16,
            raft_port: 12000 + id as u16,
            version: "0.1.0".into(),
            dc_info: String::new(),
            tags: vec![],
        }
    }

    pub(crate) fn report(
        partition: &str,
        group: u64,
        role: &str,
        term: u64,
        voters: &[u64],
    ) -> ReplicaReport {
        ReplicaReport {
            partition: partition.into(),
            group,
            role: role.into(),
            term,
            leader: 0,
            commit: 1,
            applied: 1,
            voters: voters.to_vec(),
            learners: vec![],
            lag: vec![],
            keys: 0,
            replica: 0,
            member_replicas: voters.to_vec(),
        }
    }

    pub(crate) fn hb(id: u64, epoch: u64, replicas: Vec<ReplicaReport>) -> Heartbeat {
        Heartbeat {
            node: node(id),
            replicas,
            catalog_epoch: epoch,
        }
    }

    pub(crate) fn create(name: &str, partitions: u32, replicas: u32) -> CreateNamespace {
        CreateNamespace {
            name: name.into(),
            partition_num: partitions,
            replicator: replicas,
            expiration_policy: ExpirationPolicy::WaitCompact,
            tags: vec![],
            hash_tags: false,
            stale_reads: false,
        }
    }

    #[test]
    fn nodes_register_create_namespaces_and_are_told_to_host_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster::new(
            MetaStore::open(dir.path()).unwrap(),
            ClusterSettings::default(),
            Instant::now(),
        );
        let t0 = Instant::now();
        for id in 1..=3 {
            let reply = c.heartbeat(hb(id, 0, vec![]), t0).unwrap();
            assert!(reply.catalog.is_some(), "a new node gets the catalog");
        }
        assert_eq!(c.meta().nodes.len(), 3);
        let ns = c.create_namespace(create("users", 2, 3), t0).unwrap();
        assert_eq!(ns.id, 1);
        assert_eq!(ns.initial_replicas, vec![vec![1, 2, 3], vec![2, 3, 1]]);
        assert_eq!(
            c.create_namespace(create("users", 1, 1), t0)
                .unwrap_err()
                .status,
            409
        );
        assert_eq!(
            c.create_namespace(create("big", 1, 4), t0)
                .unwrap_err()
                .status,
            409,
            "not enough nodes"
        );
        // Nodes with an old catalog are not told yet; once they have it, they are.
        assert!(c.bootstrap_commands(t0).is_empty());
        let epoch = c.meta().catalog_epoch;
        for id in 1..=3 {
            let reply = c.heartbeat(hb(id, epoch - 1, vec![]), t0).unwrap();
            assert_eq!(reply.catalog.unwrap().namespaces.len(), 1);
        }
        // Sent is not applied: only a node that reports the catalog's epoch is told.
        assert!(c.bootstrap_commands(t0).is_empty());
        for id in 1..=3 {
            let reply = c.heartbeat(hb(id, epoch, vec![]), t0).unwrap();
            assert!(reply.catalog.is_none());
        }
        let commands = c.bootstrap_commands(t0);
        assert_eq!(commands.len(), 6, "{commands:?}");
        assert!(commands.contains(&NodeCommand::Host {
            node: 2,
            partition: "users-1".into(),
            replica: None
        }));
        // Node 1 now hosts users-0: it is not told again; silent nodes are not told at all.
        let g0 = zankv_pd_api::group_id(1, 0);
        c.heartbeat(
            hb(
                1,
                epoch,
                vec![report("users-0", g0, "leader", 2, &[1, 2, 3])],
            ),
            t0,
        )
        .unwrap();
        let later = t0 + Duration::from_secs(11);
        c.heartbeat(
            hb(
                1,
                epoch,
                vec![report("users-0", g0, "leader", 2, &[1, 2, 3])],
            ),
            later,
        )
        .unwrap();
        let commands = c.bootstrap_commands(later);
        assert_eq!(
            commands,
            vec![NodeCommand::Host {
                node: 1,
                partition: "users-1".into(),
                replica: None
            }]
        );
        // Node 1 lost its users-0 replica (say, its disk): it is not told to bootstrap the
        // group again, which would let it vote with a log that forgot acknowledged writes.
        c.heartbeat(hb(1, epoch, vec![]), later).unwrap();
        assert!(c.meta().bootstrapped.contains(&(g0, 1)));
        assert!(!c.bootstrap_commands(later).contains(&NodeCommand::Host {
            node: 1,
            partition: "users-0".into(),
            replica: None
        }));
        c.delete_namespace("users").unwrap();
        assert!(c.meta().bootstrapped.is_empty());
    }

    #[test]
    fn routing_epochs_grow_only_when_the_table_changes_and_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let first_epoch;
        {
            let mut c = Cluster::new(
                MetaStore::open(dir.path()).unwrap(),
                ClusterSettings::default(),
                t0,
            );
            c.heartbeat(hb(1, 0, vec![]), t0).unwrap();
            c.create_namespace(create("default", 1, 1), t0).unwrap();
            let q1 = c.query("default", t0).unwrap();
            assert!(q1.partitions["0"].leader.is_none());
            assert_eq!(c.query("default", t0).unwrap().epoch, q1.epoch, "unchanged");
            let g = zankv_pd_api::group_id(1, 0);
            c.heartbeat(
                hb(1, 2, vec![report("default-0", g, "leader", 1, &[1])]),
                t0,
            )
            .unwrap();
            let q2 = c.query("default", t0).unwrap();
            assert!(q2.epoch > q1.epoch);
            assert_eq!(q2.partitions["0"].leader.as_ref().unwrap().node_id, "1");
            assert_eq!(q2.partitions["0"].replicas.len(), 1);
            assert!(c.stats(t0).stable);
            first_epoch = q2.epoch;
            assert!(c.query("nope", t0).is_none());
        }
        let mut c = Cluster::new(
            MetaStore::open(dir.path()).unwrap(),
            ClusterSettings::default(),
            Instant::now(),
        );
        assert_eq!(c.namespaces(), vec!["default".to_string()]);
        let q = c.query("default", t0).unwrap();
        assert!(q.epoch > first_epoch, "epochs keep growing after a restart");
        c.delete_namespace("default").unwrap();
        assert_eq!(c.delete_namespace("default").unwrap_err().status, 404);
        assert!(c.catalog().namespaces.is_empty());
    }
}
