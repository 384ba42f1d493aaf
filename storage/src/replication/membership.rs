//! Membership and leadership operations on one raft group, as the storage node's admin API
//! (and PD) asks for them: add a learner, promote it, remove a replica, hand leadership on.
//!
//! The decisions are pure functions of the leader's view of its group ([`PeerStatus`]), so
//! they are unit-tested here; the store loop proposes what [`plan`] returns and answers the
//! caller once [`satisfied`] holds (raft-rs silently drops a membership proposal while
//! another is pending, so an operation is only done when the configuration shows it).
//!
//! Every operation is idempotent: asking for what already holds answers
//! [`AdminOutcome::Unchanged`], so a controller can re-send until it sees the result.

use raft::eraftpb::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};
use serde::Serialize;

use super::peer::PeerStatus;

/// A learner may be promoted once it is at most this many entries behind the leader's log.
pub const PROMOTE_MAX_LAG: u64 = 1000;

/// An operation on a group's membership or leadership; the number is a node id (which is
/// also its replica id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "op", content = "node")]
pub enum AdminOp {
    /// Add a non-voting replica that receives the log (and a snapshot when it needs one).
    AddLearner(u64),
    /// Make a caught-up learner a voter.
    Promote(u64),
    /// Remove a replica (voter or learner) from the group.
    Remove(u64),
    /// Hand leadership to a voter.
    TransferLeader(u64),
}

/// What an operation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminOutcome {
    /// The group changed as asked.
    Done,
    /// It already was as asked; nothing was proposed.
    Unchanged,
}

/// Why an operation was not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// This node hosts no replica of the group.
    NotHosted,
    /// This replica does not lead; the leader's node id (0 = unknown).
    NotLeader(u64),
    /// The operation makes no sense in the group's state (the text says why).
    Refused(String),
    /// Proposed, but not seen done in time (another change may have been in progress); it
    /// may still happen. Safe to ask again.
    Timeout,
    /// The node is stopping.
    Stopping,
    /// Something on this node failed (opening a database, writing a file); the text says
    /// what.
    Failed(String),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::NotHosted => write!(f, "this node hosts no replica of the partition"),
            AdminError::NotLeader(0) => write!(f, "this node does not lead the partition; no leader is known"),
            AdminError::NotLeader(id) => write!(f, "this node does not lead the partition; node {id} does"),
            AdminError::Refused(why) => write!(f, "{why}"),
            AdminError::Timeout => write!(
                f,
                "the change was proposed but not seen applied in time (another change may be in progress); ask again"
            ),
            AdminError::Stopping => write!(f, "the node is stopping"),
            AdminError::Failed(why) => write!(f, "{why}"),
        }
    }
}

/// What the leader must do for an operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing: it already holds.
    AlreadyDone,
    /// Propose this membership change.
    Propose(ConfChangeV2),
    /// Start a leadership transfer to this node.
    Transfer(u64),
}

fn change(kind: ConfChangeType, node: u64) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(kind);
    single.node_id = node;
    let mut cc = ConfChangeV2::default();
    cc.set_transition(ConfChangeTransition::Auto);
    cc.mut_changes().push(single);
    cc
}

/// Decides what the leader (whose view is `status`) does for `op`.
pub fn plan(op: AdminOp, status: &PeerStatus) -> Result<Step, AdminError> {
    if !status.is_leader {
        return Err(AdminError::NotLeader(status.leader));
    }
    let voter = |n: u64| status.voters.contains(&n);
    let learner = |n: u64| status.learners.contains(&n);
    match op {
        AdminOp::AddLearner(n) if voter(n) || learner(n) => Ok(Step::AlreadyDone),
        AdminOp::AddLearner(n) => Ok(Step::Propose(change(ConfChangeType::AddLearnerNode, n))),
        AdminOp::Promote(n) if voter(n) => Ok(Step::AlreadyDone),
        AdminOp::Promote(n) if !learner(n) => Err(AdminError::Refused(format!(
            "node {n} is not a learner of the partition; add it as a learner first"
        ))),
        AdminOp::Promote(n) => {
            let matched = status
                .matched
                .iter()
                .find(|(id, _)| *id == n)
                .map_or(0, |(_, m)| *m);
            let lag = status.last_index.saturating_sub(matched);
            if lag > PROMOTE_MAX_LAG {
                return Err(AdminError::Refused(format!(
                    "learner {n} is {lag} entries behind the leader; promote it once it has caught up"
                )));
            }
            Ok(Step::Propose(change(ConfChangeType::AddNode, n)))
        }
        AdminOp::Remove(n) if !voter(n) && !learner(n) => Ok(Step::AlreadyDone),
        AdminOp::Remove(n) if n == status.id => Err(AdminError::Refused(
            "the leader cannot remove itself; transfer leadership first".into(),
        )),
        AdminOp::Remove(n) if voter(n) && status.voters.len() == 1 => Err(AdminError::Refused(
            format!("node {n} is the partition's only voter"),
        )),
        AdminOp::Remove(n) => Ok(Step::Propose(change(ConfChangeType::RemoveNode, n))),
        AdminOp::TransferLeader(n) if n == status.id => Ok(Step::AlreadyDone),
        AdminOp::TransferLeader(n) if !voter(n) => Err(AdminError::Refused(format!(
            "node {n} is not a voter of the partition"
        ))),
        AdminOp::TransferLeader(n) => Ok(Step::Transfer(n)),
    }
}

/// Whether `op` shows as done in `status` (this replica's view, leader or not).
pub fn satisfied(op: AdminOp, status: &PeerStatus) -> bool {
    match op {
        AdminOp::AddLearner(n) => status.learners.contains(&n) || status.voters.contains(&n),
        AdminOp::Promote(n) => status.voters.contains(&n),
        AdminOp::Remove(n) => !status.learners.contains(&n) && !status.voters.contains(&n),
        AdminOp::TransferLeader(n) => status.leader == n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(voters: &[u64], learners: &[u64], matched: &[(u64, u64)]) -> PeerStatus {
        PeerStatus {
            id: 1,
            term: 3,
            leader: 1,
            is_leader: true,
            commit: 5000,
            last_index: 5000,
            voters: voters.to_vec(),
            learners: learners.to_vec(),
            matched: matched.to_vec(),
        }
    }

    fn kind(step: Step) -> (ConfChangeType, u64) {
        match step {
            Step::Propose(cc) => (cc.changes[0].get_change_type(), cc.changes[0].node_id),
            other => panic!("expected a proposal, got {other:?}"),
        }
    }

    #[test]
    fn learners_are_added_once_and_promoted_when_caught_up() {
        let s = leader(&[1, 2, 3], &[], &[]);
        assert_eq!(
            kind(plan(AdminOp::AddLearner(4), &s).unwrap()),
            (ConfChangeType::AddLearnerNode, 4)
        );
        assert_eq!(plan(AdminOp::AddLearner(2), &s), Ok(Step::AlreadyDone));
        assert!(matches!(
            plan(AdminOp::Promote(4), &s),
            Err(AdminError::Refused(_))
        ));
        let behind = leader(&[1, 2, 3], &[4], &[(4, 100)]);
        let e = plan(AdminOp::Promote(4), &behind).unwrap_err();
        assert!(e.to_string().contains("4900 entries behind"), "{e}");
        let close = leader(&[1, 2, 3], &[4], &[(4, 4990)]);
        assert_eq!(
            kind(plan(AdminOp::Promote(4), &close).unwrap()),
            (ConfChangeType::AddNode, 4)
        );
        assert!(satisfied(AdminOp::AddLearner(4), &close));
        assert!(!satisfied(AdminOp::Promote(4), &close));
        let promoted = leader(&[1, 2, 3, 4], &[], &[]);
        assert!(satisfied(AdminOp::Promote(4), &promoted));
        assert_eq!(plan(AdminOp::Promote(4), &promoted), Ok(Step::AlreadyDone));
    }

    #[test]
    fn removal_and_transfer_guard_the_group() {
        let s = leader(&[1, 2, 3], &[4], &[]);
        assert_eq!(
            kind(plan(AdminOp::Remove(4), &s).unwrap()),
            (ConfChangeType::RemoveNode, 4)
        );
        assert_eq!(
            kind(plan(AdminOp::Remove(3), &s).unwrap()),
            (ConfChangeType::RemoveNode, 3)
        );
        assert_eq!(plan(AdminOp::Remove(9), &s), Ok(Step::AlreadyDone));
        assert!(plan(AdminOp::Remove(1), &s)
            .unwrap_err()
            .to_string()
            .contains("transfer leadership first"));
        let alone = PeerStatus {
            id: 2,
            leader: 2,
            ..leader(&[1], &[], &[])
        };
        assert!(plan(AdminOp::Remove(1), &alone)
            .unwrap_err()
            .to_string()
            .contains("only voter"));
        assert_eq!(plan(AdminOp::TransferLeader(2), &s), Ok(Step::Transfer(2)));
        assert_eq!(plan(AdminOp::TransferLeader(1), &s), Ok(Step::AlreadyDone));
        assert!(
            plan(AdminOp::TransferLeader(4), &s).is_err(),
            "a learner cannot lead"
        );
        let follower = PeerStatus {
            is_leader: false,
            leader: 2,
            ..s
        };
        assert_eq!(
            plan(AdminOp::AddLearner(5), &follower),
            Err(AdminError::NotLeader(2))
        );
        assert!(satisfied(AdminOp::TransferLeader(2), &follower));
    }
}
