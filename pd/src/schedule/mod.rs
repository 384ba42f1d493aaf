//! Scheduling: from a snapshot of the cluster to the operators that bring it where it should
//! be.
//!
//! Everything here is a pure function of a [`ClusterView`] (built by `cluster.rs` from the
//! metadata and the latest heartbeats) and returns [`Operator`]s; nothing here does IO or
//! reads a clock, so every rule is unit-tested on fake clusters.
//!
//! - [`operator`]: an operator is an ordered list of steps for one partition (host a joiner
//!   → add it as a learner → promote it once caught up → move leadership → remove the old
//!   replica → delete it), each done when the reports show it;
//! - checkers repair: [`replica_checker`] (under-replicated partitions, dead replicas,
//!   replicas of nodes being removed, extra replicas and stray learners, stale replicas
//!   left on nodes), [`leader_checker`] (leaderless partitions, leaders on nodes being
//!   removed);
//! - schedulers balance: [`replica_balance`] (replica counts per node) and
//!   [`leader_balance`] (leader counts per node);
//! - [`target`]: which node a new replica goes to.
//!
//! Invariants: at most one operator per partition; membership changes add before they
//! remove, one replica at a time, so a partition never has fewer healthy voters than it
//! started with; nothing is decided for a partition whose leader is unknown (its
//! membership is only trusted from its leader's report).

pub mod coordinator;
#[cfg(test)]
mod golden_tests;
pub mod leader_balance;
pub mod leader_checker;
pub mod operator;
pub mod replica_balance;
pub mod replica_checker;
pub mod target;

use std::collections::BTreeMap;

pub use operator::{Operator, OperatorKind, Step};

/// A storage node as scheduling sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Node id.
    pub id: u64,
    /// Sent a heartbeat within the heartbeat timeout.
    pub alive: bool,
    /// Down for longer than the grace period: its replicas are replaced.
    pub dead: bool,
    /// Being drained (`/cluster/node/remove`): it gets no new replicas and loses the ones
    /// it has.
    pub removing: bool,
    /// Data center.
    pub dc_info: String,
    /// Placement tags.
    pub tags: Vec<String>,
}

impl NodeState {
    /// Whether new replicas may go here.
    pub fn accepts_replicas(&self) -> bool {
        self.alive && !self.removing
    }

    /// Whether a replica here counts towards its partition's wanted replicas.
    pub fn keeps_replicas(&self) -> bool {
        !self.dead && !self.removing
    }
}

/// One partition as scheduling sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// `<namespace>-<partition>`.
    pub name: String,
    /// Its raft group id.
    pub group: u64,
    /// Wanted voters.
    pub replicator: usize,
    /// The namespace's placement tags.
    pub tags: Vec<String>,
    /// The leader, from the reports of alive nodes (None when none is known).
    pub leader: Option<u64>,
    /// Voters, as the leader reports them (empty when no leader is known).
    pub voters: Vec<u64>,
    /// Learners, as the leader reports them.
    pub learners: Vec<u64>,
    /// The leader's view of each replica's lag, in entries.
    pub lag: BTreeMap<u64, u64>,
    /// Alive nodes that report hosting a replica (members or not).
    pub hosted_on: Vec<u64>,
    /// The replica id each of those nodes hosts.
    pub hosted_replicas: BTreeMap<u64, u64>,
    /// The leader's view: each member node's replica id.
    pub replica_of: BTreeMap<u64, u64>,
    /// Voters known from any alive replica's report (used when no leader is known).
    pub known_voters: Vec<u64>,
    /// Each alive reporting node with the replica ids of the members (voters and
    /// learners) its replica knows.
    pub member_views: Vec<(u64, Vec<u64>)>,
}

impl PartitionState {
    /// Whether `node` is a voter or a learner in the leader's view.
    pub fn is_member(&self, node: u64) -> bool {
        self.voters.contains(&node) || self.learners.contains(&node)
    }

    /// Whether the replica on `node` is left over: neither the leader nor any other alive
    /// replica counts that replica (that incarnation) a member. (A leader that has not
    /// applied a recent membership change yet could miss a new member; the other replicas'
    /// views cover that case, so a replica is never deleted while any replica still counts
    /// on it.)
    pub fn is_stale(&self, node: u64) -> bool {
        let Some(replica) = self.hosted_replicas.get(&node) else {
            return false;
        };
        self.leader.is_some()
            && self.replica_of.get(&node) != Some(replica)
            && self
                .member_views
                .iter()
                .all(|(reporter, members)| *reporter == node || !members.contains(replica))
    }

    /// Whether `node` hosts the replica the leader counts a member.
    pub fn hosts_member(&self, node: u64) -> bool {
        self.hosted_replicas
            .get(&node)
            .is_some_and(|r| self.replica_of.get(&node) == Some(r))
    }
}

/// Tunables of scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleLimits {
    /// A learner within this many entries of the leader's log may be promoted (the storage
    /// node refuses more).
    pub promote_lag: u64,
    /// Replica counts of two nodes may differ by this much before a replica moves.
    pub replica_spread: usize,
    /// Leader counts of two nodes may differ by this much before leadership moves.
    pub leader_spread: usize,
}

impl Default for ScheduleLimits {
    fn default() -> Self {
        ScheduleLimits {
            promote_lag: 1000,
            replica_spread: 1,
            leader_spread: 1,
        }
    }
}

/// The cluster as scheduling sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Every registered node, by id.
    pub nodes: BTreeMap<u64, NodeState>,
    /// Every partition of every namespace.
    pub partitions: Vec<PartitionState>,
}

impl ClusterView {
    /// Replicas (voters and learners, in leaders' views) per node; every registered node
    /// appears.
    pub fn replica_counts(&self) -> BTreeMap<u64, usize> {
        let mut counts: BTreeMap<u64, usize> = self.nodes.keys().map(|id| (*id, 0)).collect();
        for p in &self.partitions {
            for n in p.voters.iter().chain(&p.learners) {
                *counts.entry(*n).or_default() += 1;
            }
        }
        counts
    }

    /// Leaders per node; every registered node appears.
    pub fn leader_counts(&self) -> BTreeMap<u64, usize> {
        let mut counts: BTreeMap<u64, usize> = self.nodes.keys().map(|id| (*id, 0)).collect();
        for p in &self.partitions {
            if let Some(l) = p.leader {
                *counts.entry(l).or_default() += 1;
            }
        }
        counts
    }

    /// The nodes that accept replicas as `(count, id)` from the least counted up, `counts`
    /// being replicas or leaders per node (what the balancers even out).
    pub fn accepting_by_count(&self, counts: &BTreeMap<u64, usize>) -> Vec<(usize, u64)> {
        let mut nodes: Vec<(usize, u64)> = self
            .nodes
            .values()
            .filter(|n| n.accepts_replicas())
            .map(|n| (counts.get(&n.id).copied().unwrap_or(0), n.id))
            .collect();
        nodes.sort_unstable();
        nodes
    }

    /// The node `id`, if registered.
    pub fn node(&self, id: u64) -> Option<&NodeState> {
        self.nodes.get(&id)
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! Fake clusters for the scheduling tests.

    use super::*;

    /// `n` alive nodes, ids 1..=n, no data center, no tags.
    pub fn nodes(n: u64) -> BTreeMap<u64, NodeState> {
        (1..=n)
            .map(|id| {
                (
                    id,
                    NodeState {
                        id,
                        alive: true,
                        dead: false,
                        removing: false,
                        dc_info: String::new(),
                        tags: vec![],
                    },
                )
            })
            .collect()
    }

    /// A healthy partition `ns-p` of group `p` led by the first of `voters`, every voter
    /// caught up.
    pub fn partition(p: u64, voters: &[u64], replicator: usize) -> PartitionState {
        PartitionState {
            name: format!("ns-{p}"),
            group: p,
            replicator,
            tags: vec![],
            leader: voters.first().copied(),
            voters: voters.to_vec(),
            learners: vec![],
            lag: voters.iter().map(|v| (*v, 0)).collect(),
            hosted_on: voters.to_vec(),
            hosted_replicas: voters.iter().map(|v| (*v, *v)).collect(),
            replica_of: voters.iter().map(|v| (*v, *v)).collect(),
            known_voters: voters.to_vec(),
            member_views: voters.iter().map(|v| (*v, voters.to_vec())).collect(),
        }
    }

    /// A cluster of `n` nodes and the given partitions.
    pub fn cluster(n: u64, partitions: Vec<PartitionState>) -> ClusterView {
        ClusterView {
            nodes: nodes(n),
            partitions,
        }
    }
}
