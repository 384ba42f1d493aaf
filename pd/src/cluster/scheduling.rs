//! The cluster's side of scheduling: building the [`ClusterView`] the pure rules of
//! `crate::schedule` read, deciding whether they may act (pauses), running a round, and
//! the operator-facing switches (node removal, dropping one replica, balance on/off,
//! rolling upgrade, replica count, stable node number).
//!
//! Pauses: no new operator starts during a rolling upgrade, nor while half or more of the
//! stable node number is down (the network-partition guard: PD may be the one cut off,
//! and moving replicas then would only make things worse). Running operators go on.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use zankv_pd_api::partition_name;

use super::{Cluster, Refusal};
use crate::command::NodeCommand;
use crate::schedule::coordinator::{self, Policy};
use crate::schedule::{
    ClusterView, NodeState, Operator, OperatorKind, PartitionState, ScheduleLimits, Step,
};

/// Timing and limits of the cluster model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// A node silent for this long is down.
    pub heartbeat_timeout: Duration,
    /// A node down for this long is dead: its replicas are replaced.
    pub dead_grace: Duration,
    /// Most operators at once.
    pub max_operators: usize,
    /// A step not done within this fails its operator.
    pub step_timeout: Duration,
    /// UTC hours `[start, end)` in which balancing may start moves (None: always).
    pub balance_window: Option<(u8, u8)>,
    /// Thresholds of the rules.
    pub limits: ScheduleLimits,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            heartbeat_timeout: Duration::from_secs(10),
            dead_grace: Duration::from_secs(900),
            max_operators: 4,
            step_timeout: Duration::from_secs(600),
            balance_window: None,
            limits: ScheduleLimits::default(),
        }
    }
}

/// What a scheduling round did, for the caller to send, log and count.
#[derive(Debug, Default)]
pub struct RoundReport {
    /// Commands to send: bootstrap hosting and the operators' next steps.
    pub commands: Vec<NodeCommand>,
    /// Operators started.
    pub started: Vec<Operator>,
    /// Operators finished.
    pub finished: Vec<Operator>,
    /// Operators failed, with why.
    pub failed: Vec<(Operator, String)>,
    /// Nodes forgotten (drained and stopped).
    pub forgotten: Vec<u64>,
}

/// The replica ids of the members `r` knows (for a report without them, from an older node:
/// its voters and learners, incarnation 0).
fn member_replicas(r: &zankv_pd_api::ReplicaReport) -> Vec<u64> {
    if r.member_replicas.is_empty() {
        r.voters.iter().chain(&r.learners).copied().collect()
    } else {
        r.member_replicas.clone()
    }
}

/// Whether `hour` falls in the window `[start, end)`, which may wrap midnight.
fn in_window(window: Option<(u8, u8)>, hour: u8) -> bool {
    match window {
        None => true,
        Some((start, end)) if start < end => (start..end).contains(&hour),
        Some((start, end)) => hour >= start || hour < end,
    }
}

impl Cluster {
    /// The cluster as the scheduling rules see it.
    pub fn view(&self, now: Instant) -> ClusterView {
        let nodes = self
            .meta()
            .nodes
            .keys()
            .map(|&id| {
                let alive = self.alive(id, now);
                let last = self.live.get(&id).map_or(self.started, |l| l.last);
                let dead = !alive && now.saturating_duration_since(last) > self.settings.dead_grace;
                let info = &self.meta().nodes[&id];
                (
                    id,
                    NodeState {
                        id,
                        alive,
                        dead,
                        removing: self.meta().removing.contains(&id),
                        dc_info: info.dc_info.clone(),
                        tags: info.tags.clone(),
                    },
                )
            })
            .collect();
        let mut partitions = Vec::new();
        for ns in &self.meta().namespaces {
            for p in 0..ns.partition_num {
                let name = partition_name(&ns.name, p);
                let reports = self.reports(&name, now);
                let leader = super::leader_report(&reports);
                let mut known_voters: Vec<u64> = reports
                    .iter()
                    .flat_map(|(_, r)| r.voters.iter().copied())
                    .collect();
                known_voters.sort_unstable();
                known_voters.dedup();
                partitions.push(PartitionState {
                    name,
                    group: zankv_pd_api::group_id(ns.id, p),
                    replicator: ns.replicator as usize,
                    tags: ns.tags.clone(),
                    leader: leader.map(|(id, _)| id),
                    voters: leader.map_or_else(Vec::new, |(_, r)| r.voters.clone()),
                    // Nodes older than replica ids with incarnations report no replica ids:
                    // their members are the initial replicas, whose id is the node id.
                    learners: leader.map_or_else(Vec::new, |(_, r)| r.learners.clone()),
                    lag: leader
                        .map_or_else(Default::default, |(_, r)| r.lag.iter().copied().collect()),
                    hosted_on: reports.iter().map(|(id, _)| *id).collect(),
                    // Reports of nodes older than replica ids with incarnations carry 0:
                    // their replicas are the initial ones, whose id is the node id.
                    hosted_replicas: reports
                        .iter()
                        .map(|(id, r)| (*id, if r.replica == 0 { *id } else { r.replica }))
                        .collect(),
                    replica_of: leader.map_or_else(Default::default, |(_, r)| {
                        member_replicas(r)
                            .iter()
                            .map(|m| (zankv_pd_api::node_of(*m), *m))
                            .collect()
                    }),
                    known_voters,
                    member_views: reports
                        .iter()
                        .map(|(id, r)| (*id, member_replicas(r)))
                        .collect(),
                });
            }
        }
        ClusterView { nodes, partitions }
    }

    /// Why no new operator may start now, if that is so.
    pub fn paused(&self, view: &ClusterView) -> Option<String> {
        if self.meta().upgrading {
            return Some("a rolling upgrade is in progress (/cluster/upgrade/done ends it)".into());
        }
        let stable = self.meta().stable_node_num;
        let alive = view
            .nodes
            .values()
            .filter(|n| n.alive && !n.removing)
            .count();
        if stable > 0 && alive * 2 <= stable {
            return Some(format!(
                "only {alive} of the stable {stable} nodes are alive (network-partition guard; POST /stable/nodenum lowers the number after a deliberate shrink)"
            ));
        }
        None
    }

    /// One scheduling round at `now` (`hour_utc` for the balance window): records the
    /// stable node number, forgets drained and stopped nodes, advances and starts
    /// operators, and answers what to send.
    pub fn schedule(&mut self, now: Instant, hour_utc: u8) -> Result<RoundReport, Refusal> {
        let mut report = RoundReport::default();
        let view = self.view(now);
        let alive = view
            .nodes
            .values()
            .filter(|n| n.alive && !n.removing)
            .count();
        // Drained nodes that stopped: no replica counts them, none is reported (judged only
        // when every partition's membership is known).
        let counts = view.replica_counts();
        let all_known = view.partitions.iter().all(|p| p.leader.is_some());
        let forget: Vec<u64> = view
            .nodes
            .values()
            .filter(|n| all_known && n.removing && !n.alive && counts.get(&n.id) == Some(&0))
            .map(|n| n.id)
            .collect();
        if alive > self.meta().stable_node_num || !forget.is_empty() {
            self.meta.update(|m| {
                m.stable_node_num = m.stable_node_num.max(alive);
                for id in &forget {
                    m.nodes.remove(id);
                    m.removing.remove(id);
                    m.bootstrapped.retain(|(_, n)| n != id);
                }
                if !forget.is_empty() {
                    m.catalog_epoch += 1;
                }
                Ok::<(), Refusal>(())
            })?;
            for id in &forget {
                self.forget_reports(*id);
                tracing::info!(
                    node = id,
                    "removed node forgotten: it holds no replica and stopped"
                );
            }
            report.forgotten = forget;
        }
        let view = self.view(now);
        let policy = Policy {
            max_operators: self.settings.max_operators,
            step_timeout: self.settings.step_timeout,
            limits: self.settings.limits,
            paused: self.paused(&view),
            balance: self.meta().balance_enabled
                && in_window(self.settings.balance_window, hour_utc),
        };
        let round = coordinator::run(&view, &mut self.operators, &policy, now);
        report.commands = self.bootstrap_commands(now);
        report.commands.extend(round.commands);
        report.started = round.started;
        report.finished = round.finished;
        report.failed = round.failed;
        Ok(report)
    }

    /// The running operators.
    pub fn operators(&self) -> Vec<Operator> {
        self.operators.values().cloned().collect()
    }

    /// Starts draining node `id` (`/cluster/node/remove`).
    pub fn remove_node(&mut self, id: u64) -> Result<bool, Refusal> {
        if !self.meta().nodes.contains_key(&id) {
            return Err(Refusal::not_found(format!(
                "no storage node {id} is registered"
            )));
        }
        if self.meta().removing.contains(&id) {
            return Ok(false);
        }
        self.meta.update(|m| {
            m.removing.insert(id);
            // The node leaves on purpose: it no longer counts for the partition guard.
            m.stable_node_num = m.stable_node_num.saturating_sub(1);
            Ok::<(), Refusal>(())
        })?;
        tracing::info!(
            node = id,
            "node removal started: its replicas and leaders move away"
        );
        Ok(true)
    }

    /// Drops node `node`'s replica of partition `p` of namespace `ns`
    /// (`/cluster/partition/remove_node`); the replica checker then re-creates one
    /// elsewhere if the partition lacks voters.
    pub fn remove_replica(
        &mut self,
        ns: &str,
        p: u32,
        node: u64,
        now: Instant,
    ) -> Result<Operator, Refusal> {
        let meta = self
            .meta()
            .namespace(ns)
            .ok_or_else(|| Refusal::not_found(format!("no namespace named {ns}")))?;
        if p >= meta.partition_num {
            return Err(Refusal::bad_request(format!(
                "INVALID_ARG_PARTITION: {ns} has partitions 0..{}, not {p}",
                meta.partition_num
            )));
        }
        let group = zankv_pd_api::group_id(meta.id, p);
        let view = self.view(now);
        let state: &PartitionState = view
            .partitions
            .iter()
            .find(|x| x.group == group)
            .expect("every partition of a namespace is in the view");
        if state.leader.is_none() {
            return Err(Refusal::conflict(format!(
                "{} has no known leader; try again once it has one",
                state.name
            )));
        }
        if !state.is_member(node) {
            return Err(Refusal::not_found(format!(
                "node {node} holds no replica of {}",
                state.name
            )));
        }
        if state.voters == [node] {
            return Err(Refusal::conflict(format!(
                "node {node} holds the only voter of {}",
                state.name
            )));
        }
        if let Some(op) = self.operators.get(&group) {
            if op.kind == OperatorKind::RemoveReplica
                && op.steps.first() == Some(&Step::RemoveMember { node })
            {
                // Asked again: the same removal is under way.
                return Ok(op.clone());
            }
            return Err(Refusal::conflict(format!(
                "{} already has an operator running ({}); try again when it ends",
                state.name,
                op.kind.name()
            )));
        }
        let op = Operator::new(
            OperatorKind::RemoveReplica,
            state,
            vec![Step::RemoveMember { node }, Step::DeleteReplica { node }],
            format!("asked to remove node {node}'s replica"),
            now,
        );
        self.operators.insert(group, op.clone());
        Ok(op)
    }

    /// Turns the balancers on or off (`/cluster/balance`).
    pub fn set_balance(&mut self, enabled: bool) -> Result<(), Refusal> {
        self.meta.update(|m| {
            m.balance_enabled = enabled;
            Ok::<(), Refusal>(())
        })
    }

    /// Begins or ends a rolling upgrade (`/cluster/upgrade/begin|done`).
    pub fn set_upgrading(&mut self, upgrading: bool) -> Result<(), Refusal> {
        self.meta.update(|m| {
            m.upgrading = upgrading;
            Ok::<(), Refusal>(())
        })
    }

    /// Sets the stable node number (`/stable/nodenum`).
    pub fn set_stable_node_num(&mut self, number: usize) -> Result<(), Refusal> {
        let registered = self.meta().nodes.len();
        if number == 0 || number > registered {
            return Err(Refusal::bad_request(format!(
                "INVALID_ARG_NUMBER: the stable node number must be within 1..={registered} (the registered nodes), not {number}"
            )));
        }
        self.meta.update(|m| {
            m.stable_node_num = number;
            Ok::<(), Refusal>(())
        })
    }

    /// Changes a namespace's replica count (`/cluster/namespace/meta/update`); the
    /// replica checker then grows or shrinks every partition, one replica at a time.
    pub fn set_replicator(
        &mut self,
        ns: &str,
        replicator: u32,
        now: Instant,
    ) -> Result<(), Refusal> {
        let meta = self
            .meta()
            .namespace(ns)
            .ok_or_else(|| Refusal::not_found(format!("no namespace named {ns}")))?
            .clone();
        if meta.replicator == replicator {
            return Ok(());
        }
        let view = self.view(now);
        let eligible = view
            .nodes
            .values()
            .filter(|n| n.accepts_replicas() && meta.tags.iter().all(|t| n.tags.contains(t)))
            .count();
        if replicator as usize > eligible {
            return Err(Refusal::conflict(format!(
                "{replicator} replicas need {replicator} alive nodes{}, but there are {eligible}",
                if meta.tags.is_empty() {
                    String::new()
                } else {
                    format!(" with tags {:?}", meta.tags)
                }
            )));
        }
        self.meta.update(|m| {
            if let Some(n) = m.namespaces.iter_mut().find(|n| n.name == ns) {
                n.replicator = replicator;
            }
            m.catalog_epoch += 1;
            Ok::<(), Refusal>(())
        })?;
        tracing::info!(
            namespace = ns,
            from = meta.replicator,
            to = replicator,
            "replica count changed"
        );
        Ok(())
    }

    /// Lets any replica of namespace `ns` answer reads, or only leaders
    /// (`/cluster/namespace/meta/update?stale_reads=`). Storage nodes learn it with the
    /// catalog, proxies with the routing table.
    pub fn set_stale_reads(&mut self, ns: &str, stale_reads: bool) -> Result<(), Refusal> {
        let was = self
            .meta()
            .namespace(ns)
            .ok_or_else(|| Refusal::not_found(format!("no namespace named {ns}")))?
            .stale_reads;
        if was == stale_reads {
            return Ok(());
        }
        self.meta.update(|m| {
            if let Some(n) = m.namespaces.iter_mut().find(|n| n.name == ns) {
                n.stale_reads = stale_reads;
            }
            m.catalog_epoch += 1;
            Ok::<(), Refusal>(())
        })?;
        tracing::info!(namespace = ns, stale_reads, "stale reads changed");
        Ok(())
    }

    /// The groups with an operator.
    pub fn busy(&self) -> BTreeSet<u64> {
        self.operators.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tests::{hb, report};
    use crate::cluster::CreateNamespace;
    use crate::meta::MetaStore;
    use zankv_pd_api::ExpirationPolicy;

    fn settings() -> ClusterSettings {
        ClusterSettings {
            heartbeat_timeout: Duration::from_secs(10),
            dead_grace: Duration::from_secs(60),
            ..ClusterSettings::default()
        }
    }

    #[test]
    fn windows_may_wrap_midnight() {
        assert!(in_window(None, 13));
        assert!(in_window(Some((2, 6)), 2) && !in_window(Some((2, 6)), 6));
        assert!(in_window(Some((22, 4)), 23) && in_window(Some((22, 4)), 3));
        assert!(!in_window(Some((22, 4)), 12));
    }

    /// Three nodes hosting `users` (1 partition, 3 replicas), node 1 leading.
    fn three_node_cluster(dir: &std::path::Path, t0: Instant) -> Cluster {
        let mut c = Cluster::new(MetaStore::open(dir).unwrap(), settings(), t0);
        for id in 1..=3 {
            c.heartbeat(hb(id, 0, vec![]), t0).unwrap();
        }
        c.create_namespace(
            CreateNamespace {
                name: "users".into(),
                partition_num: 1,
                replicator: 3,
                expiration_policy: ExpirationPolicy::WaitCompact,
                tags: vec![],
                hash_tags: false,
                stale_reads: false,
            },
            t0,
        )
        .unwrap();
        let g = zankv_pd_api::group_id(1, 0);
        let epoch = c.meta().catalog_epoch;
        for id in 1..=3 {
            let role = if id == 1 { "leader" } else { "follower" };
            c.heartbeat(
                hb(id, epoch, vec![report("users-0", g, role, 2, &[1, 2, 3])]),
                t0,
            )
            .unwrap();
        }
        c
    }

    #[test]
    fn a_dead_node_s_replicas_move_after_the_grace_period_unless_paused() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut c = three_node_cluster(dir.path(), t0);
        let r = c.schedule(t0, 12).unwrap();
        assert!(r.started.is_empty() && r.commands.is_empty(), "{r:?}");
        assert_eq!(c.meta().stable_node_num, 3);
        // Node 4 joins; node 3 goes silent.
        let g = zankv_pd_api::group_id(1, 0);
        let epoch = c.meta().catalog_epoch + 1;
        let t1 = t0 + Duration::from_secs(30);
        c.heartbeat(hb(4, 0, vec![]), t1).unwrap();
        for id in 1..=2 {
            let role = if id == 1 { "leader" } else { "follower" };
            c.heartbeat(
                hb(id, epoch, vec![report("users-0", g, role, 2, &[1, 2, 3])]),
                t1,
            )
            .unwrap();
        }
        // Down but within the grace period: nothing moves.
        let r = c.schedule(t1, 12).unwrap();
        assert!(r.started.is_empty(), "{r:?}");
        let t2 = t0 + Duration::from_secs(65);
        for id in [1, 2, 4] {
            let replicas = if id == 4 {
                vec![]
            } else {
                let role = if id == 1 { "leader" } else { "follower" };
                vec![report("users-0", g, role, 2, &[1, 2, 3])]
            };
            c.heartbeat(hb(id, epoch, replicas), t2).unwrap();
        }
        // A rolling upgrade holds it back.
        c.set_upgrading(true).unwrap();
        assert!(c.schedule(t2, 12).unwrap().started.is_empty());
        assert!(c.stats(t2).paused.unwrap().contains("rolling upgrade"));
        c.set_upgrading(false).unwrap();
        let r = c.schedule(t2, 12).unwrap();
        assert_eq!(r.started.len(), 1, "{r:?}");
        assert_eq!(r.started[0].kind, OperatorKind::AddReplica);
        assert!(r.commands.contains(&NodeCommand::AddLearner {
            leader: 1,
            partition: "users-0".into(),
            node: 4
        }));
        assert_eq!(c.operators().len(), 1);
        assert!(!c.stats(t2).stable);
    }

    #[test]
    fn the_partition_guard_stops_moves_when_half_the_nodes_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut c = three_node_cluster(dir.path(), t0);
        c.heartbeat(hb(4, 0, vec![]), t0).unwrap();
        c.schedule(t0, 12).unwrap();
        assert_eq!(c.meta().stable_node_num, 4);
        // Only nodes 1 and 4 keep talking: 2 of 4 alive.
        let g = zankv_pd_api::group_id(1, 0);
        let t1 = t0 + Duration::from_secs(120);
        let epoch = c.meta().catalog_epoch;
        c.heartbeat(
            hb(
                1,
                epoch,
                vec![report("users-0", g, "leader", 2, &[1, 2, 3])],
            ),
            t1,
        )
        .unwrap();
        c.heartbeat(hb(4, epoch, vec![]), t1).unwrap();
        let r = c.schedule(t1, 12).unwrap();
        assert!(r.started.is_empty());
        assert!(c
            .stats(t1)
            .paused
            .unwrap()
            .contains("network-partition guard"));
        // An operator who knows the cluster shrank lowers the number.
        assert_eq!(c.set_stable_node_num(0).unwrap_err().status, 400);
        assert_eq!(c.set_stable_node_num(9).unwrap_err().status, 400);
        c.set_stable_node_num(3).unwrap();
        assert!(c.stats(t1).paused.is_none());
        assert_eq!(c.schedule(t1, 12).unwrap().started.len(), 1);
    }

    #[test]
    fn removing_a_node_drains_it_and_forgets_it_once_empty_and_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut c = three_node_cluster(dir.path(), t0);
        c.heartbeat(hb(4, 0, vec![]), t0).unwrap();
        assert_eq!(c.remove_node(9).unwrap_err().status, 404);
        assert!(c.remove_node(3).unwrap());
        assert!(!c.remove_node(3).unwrap(), "asking twice changes nothing");
        // A new namespace avoids the node being removed.
        let other = c
            .create_namespace(crate::cluster::tests::create("other", 4, 3), t0)
            .unwrap();
        assert!(
            other.initial_replicas.iter().all(|r| !r.contains(&3)),
            "{other:?}"
        );
        c.delete_namespace("other").unwrap();
        let r = c.schedule(t0, 12).unwrap();
        assert_eq!(r.started.len(), 1);
        assert_eq!(r.started[0].kind, OperatorKind::AddReplica);
        assert_eq!(r.started[0].steps[0], Step::AddLearner { node: 4 });
        // The move happened: node 3 is out of the group and stopped.
        let g = zankv_pd_api::group_id(1, 0);
        let t1 = t0 + Duration::from_secs(20);
        let epoch = c.meta().catalog_epoch;
        for id in [1, 2, 4] {
            let role = if id == 1 { "leader" } else { "follower" };
            c.heartbeat(
                hb(id, epoch, vec![report("users-0", g, role, 3, &[1, 2, 4])]),
                t1,
            )
            .unwrap();
        }
        let r = c.schedule(t1, 12).unwrap();
        assert_eq!(r.finished.len(), 1, "{r:?}");
        assert_eq!(r.forgotten, vec![3]);
        assert!(!c.meta().nodes.contains_key(&3));
    }

    #[test]
    fn manual_replica_removal_and_replica_count_changes() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut c = three_node_cluster(dir.path(), t0);
        assert_eq!(c.remove_replica("nope", 0, 1, t0).unwrap_err().status, 404);
        assert_eq!(c.remove_replica("users", 5, 1, t0).unwrap_err().status, 400);
        assert_eq!(c.remove_replica("users", 0, 9, t0).unwrap_err().status, 404);
        let op = c.remove_replica("users", 0, 2, t0).unwrap();
        assert_eq!(op.steps[0], Step::RemoveMember { node: 2 });
        assert_eq!(c.remove_replica("users", 0, 3, t0).unwrap_err().status, 409);
        let r = c.schedule(t0, 12).unwrap();
        assert!(r.commands.contains(&NodeCommand::RemoveMember {
            leader: 1,
            partition: "users-0".into(),
            node: 2
        }));
        assert_eq!(c.set_replicator("users", 4, t0).unwrap_err().status, 409);
        let epoch = c.meta().catalog_epoch;
        c.set_replicator("users", 1, t0).unwrap();
        assert_eq!(c.meta().namespace("users").unwrap().replicator, 1);
        assert!(c.meta().catalog_epoch > epoch, "nodes learn the new count");
        c.set_balance(false).unwrap();
        assert!(!c.meta().balance_enabled);
    }
}
