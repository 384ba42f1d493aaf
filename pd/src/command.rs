//! The calls PD makes to storage nodes' admin API, as values: what the scheduler decides
//! and what `server.rs` sends (and re-sends until the reports show it done).
//!
//! Every command is idempotent on the storage node: asking again for what already holds
//! answers "unchanged", so re-sending after a lost answer is harmless.

/// One admin call to one storage node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeCommand {
    /// Host a new, empty replica of the partition on `node`: as one of the group's initial
    /// voters (`replica` None, only when the namespace is created) or as the joiner with
    /// the replica id the leader gave it when it added the node as a learner.
    Host {
        /// The node.
        node: u64,
        /// `<namespace>-<partition>`.
        partition: String,
        /// The joiner's replica id; None for an initial voter.
        replica: Option<u64>,
    },
    /// At the leader: add `node` as a learner.
    AddLearner {
        /// The partition's leader.
        leader: u64,
        /// `<namespace>-<partition>`.
        partition: String,
        /// The new learner.
        node: u64,
    },
    /// At the leader: promote learner `node` to voter.
    Promote {
        /// The partition's leader.
        leader: u64,
        /// `<namespace>-<partition>`.
        partition: String,
        /// The learner.
        node: u64,
    },
    /// At the leader: hand leadership to voter `to`.
    TransferLeader {
        /// The partition's leader.
        leader: u64,
        /// `<namespace>-<partition>`.
        partition: String,
        /// The next leader.
        to: u64,
    },
    /// At the leader: remove `node`'s replica from the group.
    RemoveMember {
        /// The partition's leader.
        leader: u64,
        /// `<namespace>-<partition>`.
        partition: String,
        /// The replica's node.
        node: u64,
    },
    /// On `node`: delete its replica `replica` (it is no longer a member, though it may not
    /// know); a node hosting another replica of the partition by then keeps it.
    DeleteReplica {
        /// The node.
        node: u64,
        /// `<namespace>-<partition>`.
        partition: String,
        /// The replica to delete.
        replica: u64,
    },
}

impl NodeCommand {
    /// The node the call goes to.
    pub fn node(&self) -> u64 {
        match self {
            NodeCommand::Host { node, .. } | NodeCommand::DeleteReplica { node, .. } => *node,
            NodeCommand::AddLearner { leader, .. }
            | NodeCommand::Promote { leader, .. }
            | NodeCommand::TransferLeader { leader, .. }
            | NodeCommand::RemoveMember { leader, .. } => *leader,
        }
    }

    /// The HTTP method and path of the call (see the storage node's `server/admin.rs`).
    pub fn http(&self) -> (&'static str, String) {
        match self {
            NodeCommand::Host {
                partition,
                replica: None,
                ..
            } => (
                "POST",
                format!("/partitions/{partition}/replica?bootstrap=true"),
            ),
            NodeCommand::Host {
                partition,
                replica: Some(r),
                ..
            } => (
                "POST",
                format!("/partitions/{partition}/replica?replica={r}"),
            ),
            NodeCommand::AddLearner {
                partition, node, ..
            } => ("POST", format!("/partitions/{partition}/learners/{node}")),
            NodeCommand::Promote {
                partition, node, ..
            } => ("POST", format!("/partitions/{partition}/voters/{node}")),
            NodeCommand::TransferLeader { partition, to, .. } => {
                ("POST", format!("/partitions/{partition}/leader/{to}"))
            }
            NodeCommand::RemoveMember {
                partition, node, ..
            } => ("DELETE", format!("/partitions/{partition}/members/{node}")),
            // Forced: a removed replica may not have heard of its removal (it gets no more
            // messages from the group), and PD only asks once the leader no longer lists
            // it.
            NodeCommand::DeleteReplica {
                partition, replica, ..
            } => (
                "DELETE",
                format!("/partitions/{partition}/replica?force=true&replica={replica}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_go_to_the_right_node_and_path() {
        let p = || "ns-1".to_string();
        let cases = [
            (
                NodeCommand::Host {
                    node: 4,
                    partition: p(),
                    replica: None,
                },
                4,
                "POST /partitions/ns-1/replica?bootstrap=true",
            ),
            (
                NodeCommand::Host {
                    node: 4,
                    partition: p(),
                    replica: Some(4 | (9 << 32)),
                },
                4,
                "POST /partitions/ns-1/replica?replica=38654705668",
            ),
            (
                NodeCommand::AddLearner {
                    leader: 1,
                    partition: p(),
                    node: 4,
                },
                1,
                "POST /partitions/ns-1/learners/4",
            ),
            (
                NodeCommand::Promote {
                    leader: 1,
                    partition: p(),
                    node: 4,
                },
                1,
                "POST /partitions/ns-1/voters/4",
            ),
            (
                NodeCommand::TransferLeader {
                    leader: 1,
                    partition: p(),
                    to: 2,
                },
                1,
                "POST /partitions/ns-1/leader/2",
            ),
            (
                NodeCommand::RemoveMember {
                    leader: 1,
                    partition: p(),
                    node: 3,
                },
                1,
                "DELETE /partitions/ns-1/members/3",
            ),
            (
                NodeCommand::DeleteReplica {
                    node: 3,
                    partition: p(),
                    replica: 3,
                },
                3,
                "DELETE /partitions/ns-1/replica?force=true&replica=3",
            ),
        ];
        for (command, node, call) in cases {
            let (method, path) = command.http();
            assert_eq!(command.node(), node, "{command:?}");
            assert_eq!(format!("{method} {path}"), call);
        }
    }
}
