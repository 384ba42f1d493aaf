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

use zankv_pd_api::{node_of, replica_id};

use super::peer::PeerStatus;

/// A learner may be promoted once it is at most this many entries behind the leader's log.
pub const PROMOTE_MAX_LAG: u64 = 1000;

/// An operation on a group's membership or leadership; the number is a node id (the
/// replica of that node in the group is found, or for a new learner allocated, by
/// [`plan`]).
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

/// The replica of node `node` among `ids` (raft replica ids), if any.
fn replica_on(ids: &[u64], node: u64) -> Option<u64> {
    ids.iter().copied().find(|r| node_of(*r) == node)
}

/// Decides what the leader (whose view is `status`, in raft replica ids) does for `op`
/// (in node ids). A new learner gets a fresh replica id: its node and, as incarnation,
/// the log index its addition will take, which no earlier replica of the group had.
pub fn plan(op: AdminOp, status: &PeerStatus) -> Result<Step, AdminError> {
    if !status.is_leader {
        return Err(AdminError::NotLeader(node_of(status.leader)));
    }
    let voter = |n: u64| replica_on(&status.voters, n);
    let learner = |n: u64| replica_on(&status.learners, n);
    match op {
        AdminOp::AddLearner(n) if voter(n).is_some() || learner(n).is_some() => {
            Ok(Step::AlreadyDone)
        }
        AdminOp::AddLearner(n) => {
            let at = status.last_index + 1;
            let incarnation = ((at & u64::from(u32::MAX)) as u32).max(1);
            Ok(Step::Propose(change(
                ConfChangeType::AddLearnerNode,
                replica_id(n, incarnation),
            )))
        }
        AdminOp::Promote(n) if voter(n).is_some() => Ok(Step::AlreadyDone),
        AdminOp::Promote(n) => {
            let Some(r) = learner(n) else {
                return Err(AdminError::Refused(format!(
                    "node {n} is not a learner of the partition; add it as a learner first"
                )));
            };
            let matched = status
                .matched
                .iter()
                .find(|(id, _)| *id == r)
                .map_or(0, |(_, m)| *m);
            if matched == 0 {
                // It holds nothing yet (its snapshot is still to come), however short the
                // log: as a voter it could not vote, and the group could lose its quorum.
                return Err(AdminError::Refused(format!(
                    "learner {n} has no data yet (it waits for a snapshot); promote it once it has caught up"
                )));
            }
            let lag = status.last_index.saturating_sub(matched);
            if lag > PROMOTE_MAX_LAG {
                return Err(AdminError::Refused(format!(
                    "learner {n} is {lag} entries behind the leader; promote it once it has caught up"
                )));
            }
            Ok(Step::Propose(change(ConfChangeType::AddNode, r)))
        }
        AdminOp::Remove(n) => {
            let Some(r) = voter(n).or_else(|| learner(n)) else {
                return Ok(Step::AlreadyDone);
            };
            if r == status.id {
                return Err(AdminError::Refused(
                    "the leader cannot remove itself; transfer leadership first".into(),
                ));
            }
            if voter(n).is_some() && status.voters.len() == 1 {
                return Err(AdminError::Refused(format!(
                    "node {n} is the partition's only voter"
                )));
            }
            Ok(Step::Propose(change(ConfChangeType::RemoveNode, r)))
        }
        AdminOp::TransferLeader(n) if node_of(status.id) == n => Ok(Step::AlreadyDone),
        AdminOp::TransferLeader(n) => match voter(n) {
            Some(r) => Ok(Step::Transfer(r)),
            None => Err(AdminError::Refused(format!(
                "node {n} is not a voter of the partition"
            ))),
        },
    }
}

/// Whether `op` shows as done in `status` (this replica's view, leader or not).
pub fn satisfied(op: AdminOp, status: &PeerStatus) -> bool {
    let voter = replica_on(&status.voters, op.node()).is_some();
    let learner = replica_on(&status.learners, op.node()).is_some();
    match op {
        AdminOp::AddLearner(_) => learner || voter,
        AdminOp::Promote(_) => voter,
        AdminOp::Remove(_) => !learner && !voter,
        AdminOp::TransferLeader(n) => status.leader != 0 && node_of(status.leader) == n,
    }
}

impl AdminOp {
    /// The node it is about.
    pub fn node(self) -> u64 {
        match self {
            AdminOp::AddLearner(n)
            | AdminOp::Promote(n)
            | AdminOp::Remove(n)
            | AdminOp::TransferLeader(n) => n,
        }
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
            first_index: 1,
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
        // A fresh replica id: node 4, incarnation = the index the change will take.
        assert_eq!(
            kind(plan(AdminOp::AddLearner(4), &s).unwrap()),
            (ConfChangeType::AddLearnerNode, replica_id(4, 5001))
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
    fn a_learner_with_nothing_yet_is_not_promoted_however_short_the_log() {
        let mut young = leader(&[1, 2, 3], &[4], &[(4, 0)]);
        young.last_index = 300;
        young.commit = 300;
        let e = plan(AdminOp::Promote(4), &young).unwrap_err();
        assert!(e.to_string().contains("no data yet"), "{e}");
        young.matched = vec![(4, 290)];
        assert_eq!(
            kind(plan(AdminOp::Promote(4), &young).unwrap()),
            (ConfChangeType::AddNode, 4)
        );
    }

    #[test]
    fn operations_name_nodes_and_act_on_their_current_replica() {
        let r4 = replica_id(4, 77);
        let s = leader(&[1, 2, 3], &[r4], &[(r4, 4999)]);
        assert_eq!(plan(AdminOp::AddLearner(4), &s), Ok(Step::AlreadyDone));
        assert_eq!(
            kind(plan(AdminOp::Promote(4), &s).unwrap()),
            (ConfChangeType::AddNode, r4)
        );
        assert_eq!(
            kind(plan(AdminOp::Remove(4), &s).unwrap()),
            (ConfChangeType::RemoveNode, r4)
        );
        assert!(satisfied(AdminOp::AddLearner(4), &s));
        let promoted = leader(&[1, 2, 3, r4], &[], &[]);
        assert_eq!(
            plan(AdminOp::TransferLeader(4), &promoted),
            Ok(Step::Transfer(r4))
        );
        let led_by_4 = PeerStatus {
            is_leader: false,
            leader: r4,
            ..promoted
        };
        assert!(satisfied(AdminOp::TransferLeader(4), &led_by_4));
        assert_eq!(
            plan(AdminOp::AddLearner(5), &led_by_4),
            Err(AdminError::NotLeader(4)),
            "the leader hint is a node id"
        );
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
