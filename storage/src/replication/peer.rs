//! One replica of one partition: raft-rs `RawNode` over a [`GroupLog`], as a pure state
//! machine.
//!
//! A peer does no IO and reads no clock. Its driver (the store loop, or a test) feeds it
//! ticks, messages and proposals, then runs the two halves of a ready cycle:
//!
//! 1. [`Peer::take_ready`]: the log changes (new entries, hard state, snapshot) are appended
//!    to the caller's write batch, and what may proceed before persistence is returned:
//!    messages (a leader's appends), entries already committed, confirmed reads;
//! 2. once the batch is durable, [`Peer::advance`]: returns the messages that had to wait
//!    for persistence and the entries that persistence committed.
//!
//! Between the two, the driver persists the batches of all its peers with one fsync.
//! `pre_vote` and `check_quorum` are on: a partitioned replica cannot disrupt the group when
//! it returns, and a leader that loses its quorum steps down.

use raft::eraftpb::{Entry, Message, Snapshot};
use raft::{Config, RawNode, StateRole};

use super::log_store::{GroupId, GroupLog};
use crate::engine::WriteBatch;

/// Raft timing, in ticks.
#[derive(Debug, Clone, Copy)]
pub struct RaftTiming {
    /// Ticks without hearing from a leader before a follower campaigns (randomised up to
    /// twice this by raft-rs).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Confirm reads by the leader's lease instead of a quorum round (ReadIndex): no
    /// round trip, but correct only while clocks drift less than the election timeout.
    pub lease_reads: bool,
    /// When set, every election timeout is exactly this many ticks (at least
    /// `election_ticks`) instead of raft-rs's random pick in `[election_ticks,
    /// 2 × election_ticks)`, which uses an RNG no seed reaches. Deterministic simulations
    /// choose it per replica from their seed; nodes leave it `None`.
    pub fixed_election_timeout: Option<usize>,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            election_ticks: 10,
            heartbeat_ticks: 2,
            lease_reads: false,
            fixed_election_timeout: None,
        }
    }
}

/// Why a proposal was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeError {
    /// This replica is not the leader; `leader` is its best guess (0 = unknown).
    NotLeader {
        /// Replica id of the leader this peer knows of, or 0.
        leader: u64,
    },
    /// raft-rs dropped the proposal (leadership transfer in progress, ...).
    Dropped,
    /// This replica leads but has not yet committed an entry of its term, so it cannot
    /// confirm reads yet (raft-rs would silently drop the request); ask again shortly.
    NotReady,
}

/// What a peer produced in the first half of a ready cycle.
#[derive(Debug, Default)]
pub struct ReadyOutput {
    /// Messages to send now (they do not depend on this peer's persistence).
    pub messages: Vec<Message>,
    /// A snapshot received from the leader: the state machine must be replaced by it.
    pub snapshot: Option<Snapshot>,
    /// Confirmed read indexes: `(context, index)` — a read registered with `context` may be
    /// answered once the state machine has applied `index`.
    pub reads: Vec<(u64, u64)>,
    /// Committed entries to apply, in order. raft-rs hands out only entries this replica
    /// has persisted, so they may be applied before this ready's batch is durable.
    pub committed: Vec<Entry>,
    /// Whether the batch must be synced before the messages that wait for persistence
    /// leave: it holds entries, a snapshot, or a new term or vote. A ready that only moves
    /// the commit index need not be (a commit index lost in a crash is learned again from
    /// the leader, and the state machine skips what it already applied).
    pub must_sync: bool,
}

/// A replica's view of its group, for status pages and PD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// This replica's id.
    pub id: u64,
    /// Current term.
    pub term: u64,
    /// Leader known to this replica (0 = none).
    pub leader: u64,
    /// Whether this replica leads.
    pub is_leader: bool,
    /// Highest committed index known.
    pub commit: u64,
    /// Last index of the log.
    pub last_index: u64,
    /// First index still in the log (those before it were compacted away).
    pub first_index: u64,
    /// Voting replicas.
    pub voters: Vec<u64>,
    /// Learners.
    pub learners: Vec<u64>,
    /// On the leader: each replica's matched index.
    pub matched: Vec<(u64, u64)>,
}

/// What a peer produced once its log changes are durable.
#[derive(Debug, Default)]
pub struct AdvanceOutput {
    /// Messages to send now.
    pub messages: Vec<Message>,
    /// Entries committed by the persistence just done, to apply in order.
    pub committed: Vec<Entry>,
}

/// A replica of one partition's raft group.
pub struct Peer {
    node: RawNode<GroupLog>,
    pending: Option<raft::Ready>,
}

impl Peer {
    /// Creates (or restarts, when `log` was loaded from disk) replica `id` of the log's group;
    /// `applied` is the index the state machine has applied.
    pub fn new(
        id: u64,
        log: GroupLog,
        applied: u64,
        timing: RaftTiming,
        logger: &slog::Logger,
    ) -> raft::Result<Self> {
        let config = Config {
            id,
            election_tick: timing.election_ticks,
            heartbeat_tick: timing.heartbeat_ticks,
            applied,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            read_only_option: if timing.lease_reads {
                raft::ReadOnlyOption::LeaseBased
            } else {
                raft::ReadOnlyOption::Safe
            },
            ..Config::default()
        };
        let config = match timing.fixed_election_timeout {
            // raft-rs picks in [min, max): a range of one value is no choice at all.
            Some(ticks) => Config {
                min_election_tick: ticks,
                max_election_tick: ticks + 1,
                ..config
            },
            None => config,
        };
        let group = log.group();
        let node = RawNode::new(
            &config,
            log,
            &logger.new(slog::o!("group" => group, "replica" => id)),
        )?;
        Ok(Peer {
            node,
            pending: None,
        })
    }

    /// The group this peer belongs to.
    pub fn group(&self) -> GroupId {
        self.node.store().group()
    }

    /// This replica's id.
    pub fn id(&self) -> u64 {
        self.node.raft.id
    }

    /// Current term.
    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// Whether this replica is the leader.
    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The leader this replica knows of (0 = none).
    pub fn leader(&self) -> u64 {
        self.node.raft.leader_id
    }

    /// The highest index known committed.
    pub fn commit_index(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    /// The log (for compaction and inspection).
    pub fn log(&self) -> &GroupLog {
        self.node.store()
    }

    /// Index of the last entry of the log (a proposal just accepted sits there).
    pub fn last_index(&self) -> u64 {
        self.node.raft.raft_log.last_index()
    }

    /// The replica's view of its group.
    pub fn status(&self) -> PeerStatus {
        let cs = self.node.store().conf_state();
        let mut matched: Vec<(u64, u64)> = if self.is_leader() {
            self.node
                .raft
                .prs()
                .iter()
                .map(|(id, pr)| (*id, pr.matched))
                .collect()
        } else {
            Vec::new()
        };
        matched.sort_unstable();
        PeerStatus {
            id: self.id(),
            term: self.term(),
            leader: self.leader(),
            is_leader: self.is_leader(),
            commit: self.commit_index(),
            last_index: self.last_index(),
            first_index: self.node.store().compacted_index() + 1,
            voters: cs.voters.clone(),
            learners: cs.learners.clone(),
            matched,
        }
    }

    /// Asks the group to confirm this leader's commit index for a linearizable read
    /// (ReadIndex); the answer comes out of a later ready as `(context, index)`. Refused
    /// with [`ProposeError::NotReady`] until the leader has committed an entry of its term;
    /// raft-rs drops the request if leadership is lost, so callers need a deadline.
    pub fn read_index(&mut self, context: u64) -> Result<(), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        if !self.node.raft.commit_to_current_term() {
            return Err(ProposeError::NotReady);
        }
        self.node.read_index(context.to_be_bytes().to_vec());
        Ok(())
    }

    /// Proposes a membership change (raft-rs ConfChangeV2) on the leader.
    pub fn propose_conf_change(
        &mut self,
        change: raft::eraftpb::ConfChangeV2,
    ) -> Result<(), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        self.node
            .propose_conf_change(Vec::new(), change)
            .map_err(|_| ProposeError::Dropped)
    }

    /// Applies a committed membership change entry and records the new configuration in
    /// `batch`. Returns the new configuration, or `None` when the entry's change is already
    /// part of the configuration (an entry handed out again after a restart).
    pub fn apply_conf_change(
        &mut self,
        entry: &Entry,
        batch: &mut WriteBatch,
    ) -> raft::Result<Option<raft::eraftpb::ConfState>> {
        use protobuf::Message as _;
        if entry.index <= self.node.store().conf_index() {
            return Ok(None);
        }
        let cs = if entry.get_entry_type() == raft::eraftpb::EntryType::EntryConfChangeV2 {
            let cc = raft::eraftpb::ConfChangeV2::parse_from_bytes(&entry.data)
                .map_err(|e| raft::Error::ConfChangeError(e.to_string()))?;
            self.node.apply_conf_change(&cc)?
        } else {
            let cc = raft::eraftpb::ConfChange::parse_from_bytes(&entry.data)
                .map_err(|e| raft::Error::ConfChangeError(e.to_string()))?;
            self.node.apply_conf_change(&cc)?
        };
        self.node
            .mut_store()
            .set_conf_state(cs.clone(), entry.index, batch);
        if self.is_leader() && !cs.voters.contains(&self.id()) {
            // Removed while it led (it was a follower when the change was proposed).
            // raft-rs keeps such a leader leading, with no progress of its own, and panics
            // at its next commit; it steps down instead, and the remaining voters elect a
            // leader once its heartbeats stop (it no longer campaigns or votes).
            let term = self.node.raft.term;
            self.node.raft.become_follower(term, raft::INVALID_ID);
        }
        Ok(Some(cs))
    }

    /// Starts handing leadership to `to` (a caught-up voter).
    pub fn transfer_leader(&mut self, to: u64) {
        self.node.transfer_leader(to);
    }

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.node.tick();
    }

    /// Starts an election now (bootstrap, tests).
    pub fn campaign(&mut self) -> raft::Result<()> {
        self.node.campaign()
    }

    /// Handles a message from another replica of the group. Messages for other terms or
    /// from removed replicas are dropped by raft-rs. Vote requests to a replica that knows
    /// no configuration yet (a new replica waiting for its first snapshot: an empty log,
    /// no memory of anything) are dropped here: raft-rs would grant them to any candidate,
    /// vouching for a log it never held. A replica that knows the group answers them even
    /// when it is a learner in its own view: it may have been promoted without having
    /// applied that yet, and the voters may need its vote to elect anyone.
    pub fn step(&mut self, msg: Message) -> raft::Result<()> {
        use raft::eraftpb::MessageType::{MsgRequestPreVote, MsgRequestVote};
        if matches!(msg.get_msg_type(), MsgRequestVote | MsgRequestPreVote)
            && self.node.store().conf_state().voters.is_empty()
        {
            return Ok(());
        }
        self.node.step(msg)
    }

    /// Proposes a change on the leader.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader(),
            });
        }
        self.node
            .propose(Vec::new(), data)
            .map_err(|_| ProposeError::Dropped)
    }

    /// Reports that messages to `to` could not be delivered (so raft-rs probes instead of
    /// streaming).
    pub fn report_unreachable(&mut self, to: u64) {
        self.node.report_unreachable(to);
    }

    /// Reports whether a snapshot sent to `to` arrived. raft-rs keeps that follower paused
    /// until told; a failed send makes it retry.
    pub fn report_snapshot(&mut self, to: u64, delivered: bool) {
        let status = if delivered {
            raft::SnapshotStatus::Finish
        } else {
            raft::SnapshotStatus::Failure
        };
        self.node.report_snapshot(to, status);
    }

    /// Compacts the log up to `index` (durably applied by the state machine), but never
    /// past what raft-rs counts as applied: after a restart the state machine can be ahead
    /// of the log's durable commit index (commit moves are not synced on their own), and
    /// raft-rs still reads the entries between its applied and commit indexes (before a
    /// campaign, it looks for membership changes among them, and dies if they are gone).
    pub fn compact_log(&mut self, index: u64, batch: &mut WriteBatch) {
        let index = index.min(self.node.raft.raft_log.applied);
        self.node.mut_store().compact(index, batch);
    }

    /// Offers a snapshot of the state machine at `index` to followers that need one; `data`
    /// tells the receiver what to fetch. Returns false (nothing offered) when `index` cannot
    /// carry a snapshot: compacted away, beyond the log, or before the latest membership
    /// change.
    pub fn offer_snapshot(&mut self, index: u64, data: bytes::Bytes) -> bool {
        let Some(meta) = self.node.store().snapshot_metadata(index) else {
            return false;
        };
        let mut snap = Snapshot::default();
        snap.set_metadata(meta);
        snap.data = data;
        self.node.mut_store().offer_snapshot(snap);
        true
    }

    /// First half of a ready cycle: appends the log changes to `batch`. Returns `None` when
    /// there is nothing to do. [`Peer::advance`] must follow once `batch` is durable.
    pub fn take_ready(&mut self, batch: &mut WriteBatch) -> Option<ReadyOutput> {
        assert!(
            self.pending.is_none(),
            "take_ready called twice without advance"
        );
        if !self.node.has_ready() {
            return None;
        }
        let mut rd = self.node.ready();
        let mut out = ReadyOutput {
            messages: rd.take_messages(),
            snapshot: None,
            reads: rd
                .take_read_states()
                .into_iter()
                .filter_map(|rs| {
                    let ctx: [u8; 8] = rs.request_ctx.as_slice().try_into().ok()?;
                    Some((u64::from_be_bytes(ctx), rs.index))
                })
                .collect(),
            committed: Vec::new(),
            must_sync: false,
        };
        let previous = self.node.store().hard_state().clone();
        out.must_sync = !rd.entries().is_empty()
            || !rd.snapshot().is_empty()
            || rd
                .hs()
                .is_some_and(|hs| hs.term != previous.term || hs.vote != previous.vote);
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.node.mut_store().apply_snapshot(snap.clone(), batch);
            out.snapshot = Some(snap);
        }
        out.committed = rd.take_committed_entries();
        self.node.mut_store().append(rd.entries(), batch);
        if let Some(hs) = rd.hs() {
            self.node.mut_store().set_hard_state(hs.clone(), batch);
        }
        self.pending = Some(rd);
        Some(out)
    }

    /// Second half of a ready cycle, after the batch from [`Peer::take_ready`] is durable.
    pub fn advance(&mut self) -> AdvanceOutput {
        let Some(mut rd) = self.pending.take() else {
            return AdvanceOutput::default();
        };
        let mut out = AdvanceOutput {
            messages: rd.take_persisted_messages(),
            committed: Vec::new(),
        };
        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            // The commit index moved without a new hard state: raft-rs will not put it in
            // a later Ready, so it is kept in memory and written with the next hard state
            // or compaction (a compaction needs it); losing it in a crash before then is
            // harmless (it is re-learned from the leader).
            self.node.mut_store().note_commit(commit);
        }
        out.messages.extend(light.take_messages());
        out.committed.extend(light.take_committed_entries());
        // Everything handed out counts as applied for raft-rs (it gates campaigns and
        // membership proposals on it); the state machine applies it in order later.
        self.node.advance_apply();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::MessageType;

    fn logger() -> slog::Logger {
        slog::Logger::root(slog::Discard, slog::o!())
    }

    fn vote_request(from: u64, to: u64, term: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgRequestVote);
        m.from = from;
        m.to = to;
        m.term = term;
        m.index = 100;
        m.log_term = term - 1;
        m
    }

    /// The messages a peer sends, by type and whether each refuses.
    fn answers(peer: &mut Peer) -> Vec<(MessageType, bool)> {
        let mut batch = WriteBatch::default();
        let mut out = Vec::new();
        if let Some(ready) = peer.take_ready(&mut batch) {
            let later = peer.advance().messages;
            for m in ready.messages.iter().chain(&later) {
                out.push((m.get_msg_type(), m.reject));
            }
        }
        out
    }

    #[test]
    fn replicas_that_know_the_group_answer_vote_requests_and_new_ones_do_not() {
        let mut batch = WriteBatch::default();
        // Replica `id`, with the log of a group of voters 1-3, asked for its vote by 3.
        let mut asked = |id: u64| {
            let log = GroupLog::bootstrap(1, id, &[1, 2, 3], &mut batch);
            let mut peer = Peer::new(id, log, 0, RaftTiming::default(), &logger()).unwrap();
            peer.step(vote_request(3, id, 9)).unwrap();
            answers(&mut peer)
        };
        let granted = vec![(MessageType::MsgRequestVoteResponse, false)];
        assert_eq!(asked(1), granted);
        // Replica 4 holds the group's log but is no voter in its own view (it was promoted
        // and has not applied that yet): the candidate knows better, and it votes.
        assert_eq!(asked(4), granted);

        // A replica re-created with nothing (say, on a node that held one before) stays out
        // of elections until the leader has sent it the group's configuration.
        let joiner_log = GroupLog::joiner(1, 2, &mut batch);
        let mut joiner = Peer::new(2, joiner_log, 0, RaftTiming::default(), &logger()).unwrap();
        joiner.step(vote_request(3, 2, 9)).unwrap();
        assert!(answers(&mut joiner).is_empty());
        for _ in 0..100 {
            joiner.tick();
        }
        assert!(
            !answers(&mut joiner)
                .iter()
                .any(|(kind, _)| *kind == MessageType::MsgRequestPreVote),
            "a joiner never campaigns"
        );
    }
}
